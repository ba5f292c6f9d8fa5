//! Tests for routing, the loading flag, committed offsets, admin operations and replay.

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::group::{JoinResponse, SyncResponse};
use crate::offsets::OffsetCommitPartition;

fn cfg() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn jreq(client: &str, member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: client.into(),
        client_host: "/10.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        // ConsumerProtocolSubscription v0: topics ["orders"], no user data.
        protocols: vec![(
            "range".into(),
            Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff]),
        )],
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

fn part(topic: &str, partition: i32, offset: i64) -> OffsetCommitPartition {
    OffsetCommitPartition { topic: topic.into(), partition, offset, leader_epoch: 3, metadata: Some("m".into()) }
}

fn commit_req(member: &str, generation: i32, parts: Vec<OffsetCommitPartition>) -> OffsetCommitRequest {
    OffsetCommitRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        partitions: parts,
    }
}

/// Records the driver would append, in order.
#[derive(Default)]
struct Log(Vec<Record>);

impl Log {
    fn persist(&mut self, effects: &[Effect]) {
        for e in effects {
            if let Effect::PersistGroupMetadata { record, .. } = e {
                self.0.push(record.clone());
            }
        }
    }
}

struct C {
    s: CoordinatorState,
    log: Log,
    n: u32,
}

impl C {
    fn new() -> Self {
        C { s: CoordinatorState::new(cfg()), log: Log::default(), n: 0 }
    }
    fn join(&mut self, group: &str, req: JoinRequest) -> (Result<JoinReply, GroupError>, Vec<Effect>) {
        let n = &mut self.n;
        let mut suffix = || {
            *n += 1;
            n.to_string()
        };
        let (r, eff) = self.s.join(group, req, 0, &mut suffix);
        self.log.persist(&eff);
        (r, eff)
    }
    /// A Stable group with one member; returns its member id.
    fn stable_group(&mut self, group: &str) -> String {
        let (r, _) = self.join(group, jreq("c", ""));
        let Ok(JoinReply::Done(JoinResponse { member_id, .. })) = r else { panic!("{r:?}") };
        let req = SyncRequest {
            member_id: member_id.clone(),
            group_instance_id: None,
            generation_id: 1,
            protocol_type: None,
            protocol_name: None,
            assignments: vec![(member_id.clone(), Bytes::from_static(b"assign"))],
        };
        let (_, eff) = self.s.sync(group, req, 0);
        self.log.persist(&eff);
        for e in eff {
            if let Effect::PersistGroupMetadata { ack: Some(ack), .. } = e {
                self.s.on_persisted(group, ack, Ok(()), 0);
            }
        }
        member_id
    }
    /// Commits and applies (the write succeeded).
    fn commit(&mut self, group: &str, req: OffsetCommitRequest, now: i64) -> Vec<Result<(), GroupError>> {
        let out = self.s.commit_offsets(group, &req, now);
        self.log.0.extend(out.records.clone());
        self.s.apply_commit(out.prepared, now);
        out.results.into_iter().map(|(_, _, r)| r).collect()
    }
}

fn replayed(log: &Log) -> CoordinatorState {
    let (state, errors) = CoordinatorState::replay(cfg(), log.0.iter().map(|r| (r.key.clone(), r.value.clone())));
    assert!(errors.is_empty(), "{errors:?}");
    state
}

#[test]
fn loading_flag_answers_like_kafka() {
    let mut c = C::new();
    let m = c.stable_group("g");
    c.s.set_loading(true);
    assert!(c.s.is_loading());
    assert_eq!(c.join("g", jreq("x", "")).0, Err(GroupError::CoordinatorLoadInProgress));
    let sync = SyncRequest {
        member_id: m.clone(),
        group_instance_id: None,
        generation_id: 1,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    assert_eq!(c.s.sync("g", sync, 0).0, Err(GroupError::RebalanceInProgress));
    let hb = HeartbeatRequest { member_id: "anyone".into(), group_instance_id: None, generation_id: 9 };
    assert_eq!(c.s.heartbeat("g", &hb, 0).0, Ok(()));
    let leave = LeaveRequest { members: vec![LeaveMember { member_id: m.clone(), group_instance_id: None }] };
    assert_eq!(c.s.leave("g", &leave, 0).0, Err(GroupError::CoordinatorLoadInProgress));
    let out = c.s.commit_offsets("g", &commit_req(&m, 1, vec![part("t", 0, 1)]), 0);
    assert_eq!(out.results[0].2, Err(GroupError::CoordinatorLoadInProgress));
    assert!(out.records.is_empty());
    assert_eq!(c.s.fetch_offsets("g", None), Err(GroupError::CoordinatorLoadInProgress));
    assert_eq!(c.s.delete_offsets("g", &[]), Err(GroupError::CoordinatorLoadInProgress));
    assert_eq!(c.s.describe_group("g"), Err(GroupError::CoordinatorLoadInProgress));
    assert_eq!(c.s.list_groups(), Err(GroupError::CoordinatorLoadInProgress));
    assert_eq!(c.s.delete_groups(&["g".into()], 0)[0].1, Err(GroupError::CoordinatorLoadInProgress));
    assert!(c.s.expire_offsets(i64::MAX / 2, 0).is_empty());
    let eff = c.s.finish_loading(500);
    assert!(!c.s.is_loading());
    assert!(eff.contains(&Effect::ScheduleSessionTimeout { group_id: "g".into(), member_id: m, deadline_ms: 10_500 }));
}

#[test]
fn unknown_groups() {
    let mut c = C::new();
    assert_eq!(c.join("g", jreq("a", "a-1")).0, Err(GroupError::UnknownMemberId));
    assert_eq!(c.join("", jreq("a", "")).0, Err(GroupError::InvalidGroupId));
    let bad_timeout = JoinRequest { session_timeout_ms: 1, ..jreq("a", "a-1") };
    assert_eq!(c.join("g", bad_timeout).0, Err(GroupError::InvalidSessionTimeout));
    let hb = HeartbeatRequest { member_id: "m".into(), group_instance_id: None, generation_id: 1 };
    assert_eq!(c.s.heartbeat("g", &hb, 0).0, Err(GroupError::UnknownMemberId));
    assert_eq!(c.s.heartbeat("", &hb, 0).0, Err(GroupError::InvalidGroupId));
    let sync = SyncRequest {
        member_id: "m".into(),
        group_instance_id: None,
        generation_id: 1,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![],
    };
    assert_eq!(c.s.sync("g", sync, 0).0, Err(GroupError::UnknownMemberId));
    let leave = LeaveRequest { members: vec![LeaveMember { member_id: "m".into(), group_instance_id: None }] };
    assert_eq!(c.s.leave("g", &leave, 0).0.unwrap()[0].1, Err(GroupError::UnknownMemberId));
    let d = c.s.describe_group("g").unwrap();
    assert_eq!((d.state, d.members.len(), d.protocol_type.as_str()), ("Dead", 0, ""));
    let f = c.s.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])])).unwrap();
    assert_eq!(
        f.iter().map(|p| (p.partition, p.offset, p.leader_epoch)).collect::<Vec<_>>(),
        vec![(0, -1, -1), (1, -1, -1)]
    );
    assert_eq!(c.s.fetch_offsets("g", None).unwrap(), vec![]);
    assert_eq!(c.s.delete_offsets("g", &[("t".into(), 0)]), Err(GroupError::GroupIdNotFound));
    assert_eq!(c.s.delete_groups(&["g".into()], 0)[0].1, Err(GroupError::GroupIdNotFound));
    // A failed first join leaves no group behind.
    let bad = JoinRequest { protocols: vec![], ..jreq("a", "") };
    assert_eq!(c.join("g", bad).0, Err(GroupError::InconsistentGroupProtocol));
    assert!(c.s.group("g").is_none());
    assert_eq!(c.s.list_groups().unwrap(), vec![]);
}

#[test]
fn standalone_commits() {
    let mut c = C::new();
    // Unknown group + generation -1: allowed, and the group appears once applied.
    let out = c.s.commit_offsets("solo", &commit_req("", -1, vec![part("t", 0, 42)]), 100);
    assert_eq!(out.results[0].2, Ok(()));
    assert_eq!(out.records.len(), 1);
    assert!(c.s.group("solo").is_none(), "not visible before the write is durable");
    c.s.apply_commit(out.prepared, 100);
    let f = c.s.fetch_offsets("solo", None).unwrap();
    assert_eq!((f[0].offset, f[0].leader_epoch, f[0].metadata.as_str()), (42, 3, "m"));
    assert_eq!(c.s.group("solo").unwrap().offsets().get("t", 0).unwrap().commit_timestamp_ms, 100);
    let l = c.s.list_groups().unwrap();
    assert_eq!((l[0].group_id.as_str(), l[0].protocol_type.as_str(), l[0].state), ("solo", "", "Empty"));
    // Unknown group + a real generation: ILLEGAL_GENERATION.
    assert_eq!(
        c.commit("other", commit_req("m", 1, vec![part("t", 0, 1)]), 0),
        vec![Err(GroupError::IllegalGeneration)]
    );
    // The empty group id is legal for commits (legacy clients).
    assert_eq!(c.commit("", commit_req("", -1, vec![part("t", 0, 1)]), 0), vec![Ok(())]);
}

#[test]
fn member_commits_are_validated() {
    let mut c = C::new();
    let m = c.stable_group("g");
    // A simple commit to a group with members is refused.
    assert_eq!(c.commit("g", commit_req("", -1, vec![part("t", 0, 1)]), 0), vec![Err(GroupError::UnknownMemberId)]);
    assert_eq!(
        c.commit("g", commit_req("nobody", 1, vec![part("t", 0, 1)]), 0),
        vec![Err(GroupError::UnknownMemberId)]
    );
    assert_eq!(c.commit("g", commit_req(&m, 0, vec![part("t", 0, 1)]), 0), vec![Err(GroupError::IllegalGeneration)]);
    let fenced =
        OffsetCommitRequest { group_instance_id: Some("i".into()), ..commit_req(&m, 1, vec![part("t", 0, 1)]) };
    assert_eq!(c.commit("g", fenced, 0), vec![Err(GroupError::UnknownMemberId)]);
    let too_big = OffsetCommitPartition { metadata: Some("x".repeat(4097)), ..part("t", 1, 1) };
    let out = c.s.commit_offsets("g", &commit_req(&m, 1, vec![part("t", 0, 7), too_big]), 50);
    assert_eq!(out.results[0].2, Ok(()));
    assert_eq!(out.results[1].2, Err(GroupError::OffsetMetadataTooLarge));
    assert_eq!(out.records.len(), 1);
    // A member's commit counts as a heartbeat.
    assert!(out.effects.contains(&Effect::ScheduleSessionTimeout {
        group_id: "g".into(),
        member_id: m.clone(),
        deadline_ms: 10_050
    }));
    c.s.apply_commit(out.prepared, 50);
    assert_eq!(c.s.fetch_offsets("g", Some(&[("t".into(), vec![0, 1])])).unwrap()[0].offset, 7);
    // A null metadata is stored as "".
    let null_meta = OffsetCommitPartition { metadata: None, ..part("t", 2, 9) };
    assert_eq!(c.commit("g", commit_req(&m, 1, vec![null_meta]), 60), vec![Ok(())]);
    assert_eq!(c.s.group("g").unwrap().offsets().get("t", 2).unwrap().metadata, "");
}

#[test]
fn commits_during_rebalances() {
    let mut c = C::new();
    let m = c.stable_group("g");
    // PreparingRebalance: commits from current members are still accepted.
    let (r, _) = c.join("g", jreq("d", ""));
    assert!(matches!(r, Ok(JoinReply::Pending { .. })));
    assert_eq!(c.commit("g", commit_req(&m, 1, vec![part("t", 0, 5)]), 0), vec![Ok(())]);
    // CompletingRebalance: REBALANCE_IN_PROGRESS.
    let (r, _) = c.join("g", jreq("c", &m));
    assert!(matches!(r, Ok(JoinReply::Done(_))));
    assert_eq!(c.s.group("g").unwrap().state(), GroupState::CompletingRebalance);
    assert_eq!(c.commit("g", commit_req(&m, 2, vec![part("t", 0, 6)]), 0), vec![Err(GroupError::RebalanceInProgress)]);
}

#[test]
fn fetch_all_and_specific_partitions() {
    let mut c = C::new();
    c.commit("g", commit_req("", -1, vec![part("a", 0, 1), part("a", 1, 2), part("b", 0, 3)]), 0);
    let all = c.s.fetch_offsets("g", None).unwrap();
    assert_eq!(
        all.iter().map(|p| (p.topic.as_str(), p.partition, p.offset)).collect::<Vec<_>>(),
        vec![("a", 0, 1), ("a", 1, 2), ("b", 0, 3)]
    );
    let some = c.s.fetch_offsets("g", Some(&[("a".into(), vec![1, 5]), ("z".into(), vec![0])])).unwrap();
    assert_eq!(
        some.iter().map(|p| (p.topic.as_str(), p.partition, p.offset)).collect::<Vec<_>>(),
        vec![("a", 1, 2), ("a", 5, -1), ("z", 0, -1)]
    );
    // Later commits overwrite.
    c.commit("g", commit_req("", -1, vec![part("a", 0, 10)]), 0);
    assert_eq!(c.s.fetch_offsets("g", Some(&[("a".into(), vec![0])])).unwrap()[0].offset, 10);
}

#[test]
fn offset_delete() {
    let mut c = C::new();
    c.commit("g", commit_req("", -1, vec![part("orders", 0, 1), part("other", 0, 2)]), 0);
    // Empty group: anything goes, tombstones are returned.
    let (results, tombstones) = c.s.delete_offsets("g", &[("other".into(), 0), ("missing".into(), 0)]).unwrap();
    assert!(results.iter().all(|(_, _, r)| r.is_ok()));
    assert_eq!(tombstones.len(), 1);
    assert_eq!(tombstones[0].value, None);
    assert_eq!(
        records::decode_key(&tombstones[0].key).unwrap(),
        RecordKey::OffsetCommit { group: "g".into(), topic: "other".into(), partition: 0 }
    );
    // Non-empty consumer group: the subscribed topic is protected, others can go.
    let mut c = C::new();
    let m = c.stable_group("g");
    c.commit("g", commit_req(&m, 1, vec![part("orders", 0, 1), part("old", 0, 2)]), 0);
    let (results, tombstones) = c.s.delete_offsets("g", &[("orders".into(), 0), ("old".into(), 0)]).unwrap();
    assert_eq!(results[0].2, Err(GroupError::GroupSubscribedToTopic));
    assert_eq!(results[1].2, Ok(()));
    assert_eq!(tombstones.len(), 1);
    assert_eq!(c.s.fetch_offsets("g", None).unwrap().len(), 1);
    // A subscription we cannot parse protects everything.
    let mut c = C::new();
    let garbage = JoinRequest { protocols: vec![("range".into(), Bytes::from_static(b"??"))], ..jreq("c", "") };
    let _ = c.join("g", garbage);
    let (results, _) = c.s.delete_offsets("g", &[("old".into(), 0)]).unwrap();
    assert_eq!(results[0].2, Err(GroupError::GroupSubscribedToTopic));
    // A non-empty group of another protocol type: NON_EMPTY_GROUP.
    let mut c = C::new();
    let connect = JoinRequest { protocol_type: "connect".into(), ..jreq("c", "") };
    let _ = c.join("g", connect);
    assert_eq!(c.s.delete_offsets("g", &[("old".into(), 0)]), Err(GroupError::NonEmptyGroup));
    assert_eq!(c.s.delete_offsets("", &[]), Err(GroupError::InvalidGroupId));
}

#[test]
fn offset_expiry() {
    const RETENTION: i64 = 7 * 24 * 3600 * 1000;
    // Standalone group: each offset expires `retention` after its commit.
    let mut c = C::new();
    c.commit("solo", commit_req("", -1, vec![part("t", 0, 1)]), 1_000);
    c.commit("solo", commit_req("", -1, vec![part("t", 1, 1)]), 5_000);
    assert!(c.s.expire_offsets(1_000 + RETENTION - 1, RETENTION).is_empty());
    let t = c.s.expire_offsets(1_000 + RETENTION, RETENTION);
    assert_eq!(t.len(), 1);
    assert_eq!(c.s.fetch_offsets("solo", None).unwrap().len(), 1);
    // The last offset going also removes the group, with a group metadata tombstone.
    let t = c.s.expire_offsets(5_000 + RETENTION, RETENTION);
    assert_eq!(t.len(), 2);
    assert_eq!(records::decode_key(&t[1].key).unwrap(), RecordKey::GroupMetadata { group: "solo".into() });
    assert!(t.iter().all(|r| r.value.is_none()));
    assert!(c.s.group("solo").is_none());

    // Consumer group: nothing expires while it has members...
    let mut c = C::new();
    let m = c.stable_group("g");
    c.commit("g", commit_req(&m, 1, vec![part("orders", 0, 1)]), 0);
    assert!(c.s.expire_offsets(10 * RETENTION, RETENTION).is_empty());
    // ...and once Empty, retention counts from when it became Empty, not from the commit.
    let leave = LeaveRequest { members: vec![LeaveMember { member_id: m, group_instance_id: None }] };
    c.s.leave("g", &leave, 20 * RETENTION).0.unwrap();
    assert_eq!(c.s.group("g").unwrap().state(), GroupState::Empty);
    assert!(c.s.expire_offsets(21 * RETENTION - 1, RETENTION).is_empty());
    assert_eq!(c.s.expire_offsets(21 * RETENTION, RETENTION).len(), 2);
    assert!(c.s.group("g").is_none());
}

#[test]
fn delete_groups() {
    let mut c = C::new();
    let m = c.stable_group("busy");
    c.commit("busy", commit_req(&m, 1, vec![part("orders", 0, 1)]), 0);
    c.commit("idle", commit_req("", -1, vec![part("t", 0, 1), part("t", 1, 1)]), 0);
    let res = c.s.delete_groups(&["busy".into(), "idle".into(), "nope".into()], 0);
    assert_eq!(res[0].1, Err(GroupError::NonEmptyGroup));
    let tombstones = res[1].1.clone().unwrap();
    assert_eq!(tombstones.len(), 3);
    assert_eq!(records::decode_key(&tombstones[2].key).unwrap(), RecordKey::GroupMetadata { group: "idle".into() });
    assert_eq!(res[2].1, Err(GroupError::GroupIdNotFound));
    assert!(c.s.group("idle").is_none());
    // Replaying the log with the tombstones forgets the group.
    c.log.0.extend(tombstones);
    assert!(replayed(&c.log).group("idle").is_none());
}

#[test]
fn unload_answers_parked_requests_with_not_coordinator() {
    let mut c = C::new();
    c.stable_group("g");
    let (r, _) = c.join("g", jreq("d", "")); // parks until the first member rejoins
    let Ok(JoinReply::Pending { member_id: d }) = r else { panic!("{r:?}") };
    let eff = c.s.unload(0);
    assert!(eff.iter().any(|e| matches!(e, Effect::CompleteJoins { completions, .. }
        if completions == &vec![(d.clone(), Err::<JoinResponse, _>(GroupError::NotCoordinator))])));
    assert!(c.s.group("g").is_none());
}

#[test]
fn replay_rebuilds_groups_and_offsets() {
    let mut c = C::new();
    let m = c.stable_group("g");
    c.commit("g", commit_req(&m, 1, vec![part("orders", 0, 5), part("orders", 1, 6)]), 10);
    c.commit("g", commit_req(&m, 1, vec![part("orders", 0, 7)]), 20);
    c.commit("solo", commit_req("", -1, vec![part("t", 0, 1)]), 30);
    let (_, tombstones) = c.s.delete_offsets("solo", &[("t".into(), 0)]).unwrap();
    c.log.0.extend(tombstones);
    let mut s = replayed(&c.log);
    assert!(s.is_loading());
    s.finish_loading(0);
    let g = s.group("g").unwrap();
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!((g.generation_id(), g.leader_id(), g.protocol_name()), (1, Some(m.as_str()), Some("range")));
    assert_eq!(g.member(&m).unwrap().assignment, Bytes::from_static(b"assign"));
    assert_eq!(g.member(&m).unwrap().client_host, "/10.0.0.1");
    assert_eq!(s.fetch_offsets("g", None).unwrap(), c.s.fetch_offsets("g", None).unwrap());
    assert_eq!(s.group("g").unwrap().offsets().get("orders", 0).unwrap().commit_timestamp_ms, 20);
    assert!(s.group("solo").is_none(), "offset tombstone deleted its only offset");
    // The member can carry on after the restart: heartbeat and sync with its generation.
    let hb = HeartbeatRequest { member_id: m.clone(), group_instance_id: None, generation_id: 1 };
    assert_eq!(s.heartbeat("g", &hb, 0).0, Ok(()));
    let sync = SyncRequest {
        member_id: m.clone(),
        group_instance_id: None,
        generation_id: 1,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: vec![],
    };
    let (r, _) = s.sync("g", sync, 0);
    assert_eq!(
        r,
        Ok(SyncReply::Done(SyncResponse {
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"assign")
        }))
    );
}

#[test]
fn replay_group_tombstone_keeps_offsets_and_later_metadata_wins() {
    let mut c = C::new();
    let m = c.stable_group("g");
    c.commit("g", commit_req(&m, 1, vec![part("orders", 0, 5)]), 10);
    c.log.0.push(records::group_tombstone("g"));
    let s = replayed(&c.log);
    let g = s.group("g").unwrap();
    assert_eq!((g.state(), g.generation_id(), g.members().len()), (GroupState::Empty, 0, 0));
    assert_eq!(g.offsets().len(), 1);
    // The group's Empty metadata after a leave wins over the earlier Stable one.
    let mut c = C::new();
    let m = c.stable_group("g");
    let leave = LeaveRequest { members: vec![LeaveMember { member_id: m, group_instance_id: None }] };
    let (_, eff) = c.s.leave("g", &leave, 99);
    c.log.persist(&eff);
    let s = replayed(&c.log);
    let g = s.group("g").unwrap();
    assert_eq!((g.state(), g.generation_id(), g.state_timestamp_ms()), (GroupState::Empty, 2, Some(99)));
    assert_eq!(g.protocol_type(), Some("consumer"));
}

#[test]
fn replay_skips_and_reports_corrupt_records() {
    let good = records::offset_commit_record(
        "g",
        "t",
        0,
        &records::OffsetCommitValue {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
            expire_timestamp: None,
        },
    );
    let input: Vec<(Bytes, Option<Bytes>)> = vec![
        (Bytes::from_static(&[0, 9]), None),
        (good.key.clone(), Some(Bytes::from_static(&[0, 3, 1]))),
        (good.key.clone(), good.value.clone()),
    ];
    let (s, errors) = CoordinatorState::replay(cfg(), input);
    assert_eq!(errors.iter().map(|e| e.index).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(errors[0].error, RecordError::UnknownKeyVersion(9));
    assert_eq!(s.group("g").unwrap().offsets().get("t", 0).unwrap().offset, 1);
}

proptest! {
    /// Replaying any sequence of offset commits and tombstones gives the last value per key.
    #[test]
    fn replay_matches_a_last_write_wins_model(ops in proptest::collection::vec((0u8..3, 0u8..3, 0i32..3, proptest::option::of(any::<i64>())), 0..60)) {
        let mut model: std::collections::BTreeMap<(String, String, i32), i64> = Default::default();
        let mut log = Vec::new();
        for (g, t, p, offset) in ops {
            let (g, t) = (format!("g{g}"), format!("t{t}"));
            match offset {
                Some(o) => {
                    let v = records::OffsetCommitValue { offset: o, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0, expire_timestamp: None };
                    log.push(records::offset_commit_record(&g, &t, p, &v));
                    model.insert((g, t, p), o);
                }
                None => {
                    log.push(records::offset_tombstone(&g, &t, p));
                    model.remove(&(g, t, p));
                }
            }
        }
        let (s, errors) = CoordinatorState::replay(cfg(), log.iter().map(|r| (r.key.clone(), r.value.clone())));
        prop_assert!(errors.is_empty());
        let mut got = std::collections::BTreeMap::new();
        for g in s.groups() {
            prop_assert!(!g.offsets().is_empty(), "groups without offsets or metadata are dropped");
            for (t, p, o) in g.offsets().iter() {
                got.insert((g.id().to_owned(), t.to_owned(), p), o.offset);
            }
        }
        prop_assert_eq!(got, model);
    }
}
