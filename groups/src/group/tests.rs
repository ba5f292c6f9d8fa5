//! Unit tests for every transition and error of the group state machine.

use super::*;

const SESSION: i32 = 10_000;
const REBALANCE: i32 = 30_000;

fn cfg() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn protocols() -> Vec<(String, Bytes)> {
    vec![("range".into(), Bytes::from_static(b"range-meta")), ("roundrobin".into(), Bytes::from_static(b"rr-meta"))]
}

fn jreq(client: &str, member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION,
        rebalance_timeout_ms: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols(),
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

fn static_jreq(client: &str, member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest { group_instance_id: Some(instance.into()), ..jreq(client, member_id) }
}

struct H {
    g: Group,
    n: u32,
    now: i64,
}

impl H {
    fn new() -> Self {
        H::with(cfg())
    }
    fn with(config: GroupConfig) -> Self {
        H { g: Group::new("g", config, 0), n: 0, now: 0 }
    }
    fn join(&mut self, req: JoinRequest) -> (Result<JoinReply, GroupError>, Vec<Effect>) {
        let n = &mut self.n;
        let mut suffix = || {
            *n += 1;
            format!("u{n}")
        };
        self.g.join(req, self.now, &mut suffix)
    }
    fn sync(
        &mut self,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> (Result<SyncReply, GroupError>, Vec<Effect>) {
        self.g.sync(sreq(member, generation, assignments), self.now)
    }
    fn hb(&mut self, member: &str, generation: i32) -> Result<(), GroupError> {
        self.g
            .heartbeat(
                &HeartbeatRequest { member_id: member.into(), group_instance_id: None, generation_id: generation },
                self.now,
            )
            .0
    }
    fn hb_static(&mut self, member: &str, instance: &str, generation: i32) -> Result<(), GroupError> {
        let req = HeartbeatRequest {
            member_id: member.into(),
            group_instance_id: Some(instance.into()),
            generation_id: generation,
        };
        self.g.heartbeat(&req, self.now).0
    }
    /// Completes every persist-with-ack successfully; returns the effects.
    fn ack_all(&mut self, effects: &[Effect]) -> Vec<Effect> {
        let mut out = Vec::new();
        for (_, ack) in persists(effects) {
            if let Some(ack) = ack {
                out.extend(self.g.on_persisted(ack, Ok(()), self.now));
            }
        }
        out
    }
    /// Leader syncs with the given assignment and the write succeeds.
    fn leader_sync(&mut self, leader: &str, generation: i32, assignments: &[(&str, &str)]) -> Vec<Effect> {
        let (r, eff) = self.sync(leader, generation, assignments);
        assert_eq!(r, Ok(SyncReply::Pending));
        let mut all = eff.clone();
        all.extend(self.ack_all(&eff));
        all
    }
}

fn sreq(member: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments.iter().map(|(m, a)| (m.to_string(), Bytes::from(a.to_string()))).collect(),
    }
}

fn joins(effects: &[Effect]) -> Vec<(String, Result<JoinResponse, GroupError>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::CompleteJoins { completions, .. } => Some(completions.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn syncs(effects: &[Effect]) -> Vec<(String, Result<SyncResponse, GroupError>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::CompleteSyncs { completions, .. } => Some(completions.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn persists(effects: &[Effect]) -> Vec<(Record, Option<PersistAck>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::PersistGroupMetadata { record, ack, .. } => Some((record.clone(), ack.clone())),
            _ => None,
        })
        .collect()
}

fn sessions(effects: &[Effect]) -> Vec<(String, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::ScheduleSessionTimeout { member_id, deadline_ms, .. } => Some((member_id.clone(), *deadline_ms)),
            _ => None,
        })
        .collect()
}

fn rebalance_deadline(effects: &[Effect]) -> Option<i64> {
    effects.iter().rev().find_map(|e| match e {
        Effect::ScheduleRebalanceTimeout { deadline_ms, .. } => Some(*deadline_ms),
        _ => None,
    })
}

fn done(r: Result<JoinReply, GroupError>) -> JoinResponse {
    match r {
        Ok(JoinReply::Done(resp)) => resp,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn pending(r: Result<JoinReply, GroupError>) -> String {
    match r {
        Ok(JoinReply::Pending { member_id }) => member_id,
        other => panic!("expected Pending, got {other:?}"),
    }
}

fn assignment(r: &Result<SyncResponse, GroupError>) -> &[u8] {
    &r.as_ref().expect("sync ok").assignment
}

/// One member "a" joined and synced: generation 1, Stable. Returns its member id.
fn one_member(h: &mut H) -> String {
    let resp = done(h.join(jreq("a", "")).0);
    assert_eq!(resp.generation_id, 1);
    let a = resp.member_id.clone();
    assert_eq!(resp.leader_id, a);
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    let eff = h.leader_sync(&a, 1, &[(&a, "A1")]);
    assert_eq!(syncs(&eff).len(), 1);
    assert_eq!(h.g.state(), GroupState::Stable);
    a
}

/// Two members "a" (leader) and "b", generation 2, Stable with assignments A2/B2.
fn two_members(h: &mut H) -> (String, String) {
    let a = one_member(h);
    let (r, _) = h.join(jreq("b", ""));
    let b = pending(r);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.hb(&a, 1), Err(GroupError::RebalanceInProgress));
    let (r, eff) = h.join(jreq("a", &a));
    let resp = done(r);
    assert_eq!(resp.generation_id, 2);
    assert_eq!(resp.leader_id, a);
    assert_eq!(resp.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), vec![a.as_str(), b.as_str()]);
    assert_eq!(resp.members[1].metadata, Bytes::from_static(b"range-meta"));
    let completed = joins(&eff);
    assert_eq!(completed.len(), 1);
    let b_resp = completed[0].1.clone().unwrap();
    assert_eq!((b_resp.member_id.as_str(), b_resp.generation_id, b_resp.members.len()), (b.as_str(), 2, 0));
    assert_eq!(b_resp.protocol_name.as_deref(), Some("range"));
    let eff = h.leader_sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    assert_eq!(syncs(&eff).len(), 1);
    (a, b)
}

#[test]
fn member_ids_are_client_id_dash_suffix() {
    let mut h = H::new();
    let a = one_member(&mut h);
    assert_eq!(a, "a-u1");
}

#[test]
fn two_member_join_sync_heartbeat_cycle() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    assert_eq!(h.g.generation_id(), 2);
    // Follower syncing after the leader gets its assignment at once.
    let (r, eff) = h.sync(&b, 2, &[]);
    let SyncReply::Done(resp) = r.unwrap() else { panic!() };
    assert_eq!(&resp.assignment[..], b"B2");
    assert_eq!(sessions(&eff), vec![(b.clone(), h.now + SESSION as i64)]);
    h.now = 5_000;
    assert_eq!(h.hb(&a, 2), Ok(()));
    assert_eq!(h.hb(&b, 2), Ok(()));
    assert_eq!(h.g.member(&a).unwrap().assignment, Bytes::from_static(b"A2"));
    assert_eq!(h.g.member(&a).unwrap().last_heartbeat_ms, 5_000);
}

#[test]
fn follower_sync_before_leader_waits_for_the_leader_and_the_write() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let (_, _) = h.join(jreq("a", &a));
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    assert_eq!(h.hb(&b, 2), Ok(()), "heartbeats are fine while completing");
    let (r, eff) = h.sync(&b, 2, &[]);
    assert_eq!(r, Ok(SyncReply::Pending));
    assert!(syncs(&eff).is_empty());
    let (r, eff) = h.sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    assert_eq!(r, Ok(SyncReply::Pending));
    let p = persists(&eff);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1, Some(PersistAck::SyncAssignment { generation_id: 2 }));
    // The record carries the new assignment before it is applied in memory.
    let v = records::decode_group_metadata_value(p[0].0.value.as_ref().unwrap()).unwrap();
    assert_eq!(v.members.iter().map(|m| m.assignment.clone()).collect::<Vec<_>>(), vec!["A2", "B2"]);
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    let eff = h.g.on_persisted(p[0].1.clone().unwrap(), Ok(()), 0);
    let s = syncs(&eff);
    assert_eq!(s.len(), 2);
    let by_id: BTreeMap<_, _> = s.into_iter().collect();
    assert_eq!(assignment(&by_id[&a]), b"A2");
    assert_eq!(assignment(&by_id[&b]), b"B2");
    assert_eq!(h.g.state(), GroupState::Stable);
}

#[test]
fn leader_assignment_missing_members_get_empty() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let _ = h.join(jreq("a", &a));
    h.leader_sync(&a, 2, &[(&a, "A2"), ("stranger", "X")]);
    let SyncReply::Done(resp) = h.sync(&b, 2, &[]).0.unwrap() else { panic!() };
    assert!(resp.assignment.is_empty());
}

#[test]
fn persist_failure_fails_syncs_and_rebalances() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let _ = h.join(jreq("a", &a));
    let _ = h.sync(&b, 2, &[]);
    let (_, eff) = h.sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    let ack = persists(&eff)[0].1.clone().unwrap();
    let eff = h.g.on_persisted(ack, Err(GroupError::NotCoordinator), 0);
    let s = syncs(&eff);
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|(_, r)| r == &Err(GroupError::NotCoordinator)));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert!(h.g.member(&a).unwrap().assignment.is_empty());
}

#[test]
fn stale_persist_ack_is_ignored() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let _ = h.join(jreq("a", &a));
    let (_, eff) = h.sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    let ack = persists(&eff)[0].1.clone().unwrap();
    // A third member arrives before the write completes: everyone must rejoin.
    let (_, eff) = h.join(jreq("c", ""));
    assert_eq!(syncs(&eff), vec![(a.clone(), Err(GroupError::RebalanceInProgress))]);
    assert!(h.g.on_persisted(ack, Ok(()), 0).is_empty());
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn third_member_join_forces_everyone_to_rejoin_and_bumps_generation() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let c = pending(h.join(jreq("c", "")).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.hb(&a, 2), Err(GroupError::RebalanceInProgress));
    assert_eq!(h.hb(&b, 2), Err(GroupError::RebalanceInProgress));
    // Syncing the old generation during the rebalance is refused.
    assert_eq!(h.sync(&b, 2, &[]).0, Err(GroupError::RebalanceInProgress));
    assert_eq!(pending(h.join(jreq("b", &b)).0), b);
    let (r, eff) = h.join(jreq("a", &a));
    let resp = done(r);
    assert_eq!(resp.generation_id, 3);
    assert_eq!(resp.members.len(), 3);
    let completed = joins(&eff);
    assert_eq!(completed.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), vec![b.clone(), c.clone()]);
    assert!(completed.iter().all(|(_, r)| r.as_ref().unwrap().generation_id == 3));
    assert_eq!(h.sync(&c, 2, &[]).0, Err(GroupError::IllegalGeneration));
    h.leader_sync(&a, 3, &[(&a, "A3"), (&b, "B3"), (&c, "C3")]);
    let SyncReply::Done(resp) = h.sync(&c, 3, &[]).0.unwrap() else { panic!() };
    assert_eq!(&resp.assignment[..], b"C3");
}

#[test]
fn member_leave_rebalances_the_remaining_members() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let req = LeaveRequest { members: vec![LeaveMember { member_id: b.clone(), group_instance_id: None }] };
    let (r, eff) = h.g.leave(&req, 0);
    assert_eq!(r.unwrap()[0].1, Ok(()));
    assert!(eff.contains(&Effect::CancelSessionTimeout { group_id: "g".into(), member_id: b.clone() }));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(h.hb(&b, 2), Err(GroupError::UnknownMemberId));
    let resp = done(h.join(jreq("a", &a)).0);
    assert_eq!(resp.generation_id, 3);
    assert_eq!(resp.members.len(), 1);
}

#[test]
fn leader_leaving_hands_leadership_to_a_rejoined_member() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let _ =
        h.g.leave(&LeaveRequest { members: vec![LeaveMember { member_id: a.clone(), group_instance_id: None }] }, 0);
    assert_eq!(h.g.leader_id(), Some(b.as_str()));
    let resp = done(h.join(jreq("b", &b)).0);
    assert_eq!(resp.leader_id, b);
    assert_eq!(resp.members.len(), 1);
}

#[test]
fn last_member_leaving_empties_the_group_and_persists() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let (_, eff) = h.g.leave(&LeaveRequest { members: vec![LeaveMember { member_id: a, group_instance_id: None }] }, 7);
    assert_eq!(h.g.state(), GroupState::Empty);
    assert_eq!(h.g.generation_id(), 2);
    assert_eq!(h.g.protocol_name(), None);
    assert_eq!(h.g.protocol_type(), Some("consumer"), "protocol type survives for ListGroups");
    let p = persists(&eff);
    assert_eq!(p.len(), 1);
    let v = records::decode_group_metadata_value(p[0].0.value.as_ref().unwrap()).unwrap();
    assert_eq!((v.generation, v.members.len(), v.protocol.clone(), v.current_state_timestamp), (2, 0, None, 7));
}

#[test]
fn leave_errors_per_member() {
    let mut h = H::new();
    let (a, _b) = two_members(&mut h);
    let req = LeaveRequest {
        members: vec![
            LeaveMember { member_id: "nobody".into(), group_instance_id: None },
            LeaveMember { member_id: String::new(), group_instance_id: Some("unknown-instance".into()) },
            LeaveMember { member_id: a.clone(), group_instance_id: Some("unknown-instance".into()) },
        ],
    };
    let (r, _) = h.g.leave(&req, 0);
    let results: Vec<_> = r.unwrap().into_iter().map(|(_, r)| r).collect();
    assert_eq!(results, vec![Err(GroupError::UnknownMemberId), Err(GroupError::UnknownMemberId), Ok(())]);
    h.g.mark_dead(GroupError::CoordinatorNotAvailable, 0);
    assert_eq!(h.g.leave(&req, 0).0, Err(GroupError::CoordinatorNotAvailable));
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    h.now = 4_000;
    assert_eq!(h.hb(&a, 2), Ok(()));
    // b's deadline (set at join completion, t=0) passes; a's (t=14000) does not.
    assert!(h.g.on_session_timeout(&a, 10_000).is_empty(), "stale timer");
    let eff = h.g.on_session_timeout(&b, 10_000);
    assert!(!h.g.has(&b));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert_eq!(rebalance_deadline(&eff), Some(10_000 + REBALANCE as i64));
    assert!(h.g.on_session_timeout("nobody", 10_000).is_empty());
}

#[test]
fn members_waiting_in_a_rebalance_do_not_expire() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    pending(h.join(jreq("c", "")).0);
    pending(h.join(jreq("a", &a)).0);
    // a is waiting for b: its session deadline passing does not remove it.
    assert!(h.g.on_session_timeout(&a, 20_000).is_empty());
    assert!(h.g.has(&a));
    // b, not rejoining and silent, does expire, which completes the rebalance.
    let eff = h.g.on_session_timeout(&b, 20_000);
    assert!(!h.g.has(&b));
    assert_eq!(joins(&eff).len(), 2);
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
}

#[test]
fn new_member_stuck_in_join_expires_after_new_member_timeout() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let (r, eff) = h.join(jreq("b", ""));
    let b = pending(r);
    let deadline = GroupConfig::default().new_member_join_timeout_ms as i64;
    assert!(sessions(&eff).contains(&(b.clone(), deadline)));
    let eff = h.g.on_session_timeout(&b, deadline);
    assert_eq!(joins(&eff), vec![(b.clone(), Err(GroupError::UnknownMemberId))]);
    assert!(!h.g.has(&b));
    assert!(h.g.has(&a));
}

#[test]
fn rebalance_timeout_evicts_members_that_did_not_rejoin() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let (r, eff) = h.join(jreq("c", ""));
    let c = pending(r);
    let deadline = rebalance_deadline(&eff).unwrap();
    assert_eq!(deadline, REBALANCE as i64);
    pending(h.join(jreq("a", &a)).0);
    assert!(h.g.on_rebalance_timeout(deadline - 1).is_empty(), "early timer is ignored");
    h.now = deadline;
    let eff = h.g.on_rebalance_timeout(deadline);
    assert!(!h.g.has(&b), "b never rejoined");
    assert_eq!(h.g.generation_id(), 3);
    let completed: BTreeMap<_, _> = joins(&eff).into_iter().collect();
    assert_eq!(completed.keys().cloned().collect::<Vec<_>>(), {
        let mut v = vec![a.clone(), c.clone()];
        v.sort();
        v
    });
    assert_eq!(completed[&a].as_ref().unwrap().members.len(), 2);
    assert_eq!(h.hb(&b, 2), Err(GroupError::UnknownMemberId));
}

#[test]
fn sync_timeout_evicts_members_that_never_synced() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let (_, eff) = h.join(jreq("a", &a));
    let deadline = rebalance_deadline(&eff).unwrap();
    h.leader_sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    assert_eq!(h.g.state(), GroupState::Stable);
    let eff = h.g.on_rebalance_timeout(deadline);
    assert!(!h.g.has(&b));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    assert!(rebalance_deadline(&eff).is_some());
    // If everyone synced, the timer is a no-op.
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let _ = h.sync(&b, 2, &[]);
    assert!(h.g.on_rebalance_timeout(i64::MAX / 2).is_empty());
    assert!(h.g.has(&a) && h.g.has(&b));
}

#[test]
fn member_id_required_round_trip() {
    let mut h = H::new();
    let req = JoinRequest { require_known_member_id: true, ..jreq("a", "") };
    let (r, eff) = h.join(req.clone());
    let Err(GroupError::MemberIdRequired { member_id }) = r else { panic!("{r:?}") };
    assert_eq!(member_id, "a-u1");
    assert_eq!(sessions(&eff), vec![(member_id.clone(), SESSION as i64)]);
    assert_eq!(h.g.members().len(), 0);
    assert_eq!(h.g.pending_member_ids().collect::<Vec<_>>(), vec![member_id.as_str()]);
    let resp = done(h.join(JoinRequest { member_id: member_id.clone(), ..req }).0);
    assert_eq!(resp.member_id, member_id);
    assert_eq!(resp.generation_id, 1);
    assert_eq!(h.g.pending_member_ids().count(), 0);
}

#[test]
fn pending_member_holds_the_rebalance_until_it_joins_or_expires() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let (r, _) = h.join(JoinRequest { require_known_member_id: true, ..jreq("c", "") });
    let Err(GroupError::MemberIdRequired { member_id: c }) = r else { panic!() };
    // The group is not disturbed until c really joins.
    assert_eq!(h.g.state(), GroupState::Stable);
    pending(h.join(jreq("c", &c)).0);
    pending(h.join(jreq("a", &a)).0);
    let (r, _) = h.join(JoinRequest { require_known_member_id: true, ..jreq("d", "") });
    let Err(GroupError::MemberIdRequired { member_id: d }) = r else { panic!() };
    // b rejoins but d is pending: not complete yet.
    pending(h.join(jreq("b", &b)).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    // d never comes back: its expiry completes the rebalance.
    assert!(h.g.on_session_timeout(&d, SESSION as i64 - 1).is_empty());
    let eff = h.g.on_session_timeout(&d, SESSION as i64);
    assert_eq!(joins(&eff).len(), 3);
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    // A pending member can also be removed by LeaveGroup.
    let (r, _) = h.join(JoinRequest { require_known_member_id: true, ..jreq("e", "") });
    let Err(GroupError::MemberIdRequired { member_id: e }) = r else { panic!() };
    let (r, _) = h.g.leave(&LeaveRequest { members: vec![LeaveMember { member_id: e, group_instance_id: None }] }, 0);
    assert_eq!(r.unwrap()[0].1, Ok(()));
    assert_eq!(h.g.pending_member_ids().count(), 0);
}

#[test]
fn join_errors() {
    let mut h = H::new();
    let bad = JoinRequest { session_timeout_ms: 5_999, ..jreq("a", "") };
    assert_eq!(h.join(bad).0, Err(GroupError::InvalidSessionTimeout));
    let bad = JoinRequest { session_timeout_ms: 1_800_001, ..jreq("a", "") };
    assert_eq!(h.join(bad).0, Err(GroupError::InvalidSessionTimeout));
    assert_eq!(
        h.join(JoinRequest { protocols: vec![], ..jreq("a", "") }).0,
        Err(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        h.join(JoinRequest { protocol_type: String::new(), ..jreq("a", "") }).0,
        Err(GroupError::InconsistentGroupProtocol)
    );
    let a = one_member(&mut h);
    assert_eq!(
        h.join(JoinRequest { protocol_type: "connect".into(), ..jreq("b", "") }).0,
        Err(GroupError::InconsistentGroupProtocol)
    );
    let other = JoinRequest { protocols: vec![("sticky".into(), Bytes::new())], ..jreq("b", "") };
    assert_eq!(h.join(other).0, Err(GroupError::InconsistentGroupProtocol));
    assert_eq!(h.join(jreq("b", "b-unknown")).0, Err(GroupError::UnknownMemberId));
    assert_eq!(h.join(static_jreq("a", &a, "not-registered")).0, Err(GroupError::UnknownMemberId));
    h.g.mark_dead(GroupError::CoordinatorNotAvailable, 0);
    assert_eq!(h.join(jreq("a", &a)).0, Err(GroupError::CoordinatorNotAvailable));
    assert_eq!(h.join(jreq("c", "")).0, Err(GroupError::CoordinatorNotAvailable));
}

#[test]
fn protocol_is_chosen_by_vote_among_common_protocols() {
    let p =
        |names: &[&str]| names.iter().map(|n| (n.to_string(), Bytes::from(format!("{n}-meta")))).collect::<Vec<_>>();
    let mut h = H::with(GroupConfig { initial_rebalance_delay_ms: 1_000, ..cfg() });
    let _ = h.join(JoinRequest { protocols: p(&["roundrobin", "range", "sticky"]), ..jreq("a", "") });
    let _ = h.join(JoinRequest { protocols: p(&["roundrobin", "range"]), ..jreq("b", "") });
    let _ = h.join(JoinRequest { protocols: p(&["range", "roundrobin"]), ..jreq("c", "") });
    // Members kept arriving during the initial delay: it is extended once more.
    assert!(joins(&h.g.on_rebalance_timeout(1_000)).is_empty());
    let eff = h.g.on_rebalance_timeout(2_000);
    let completed = joins(&eff);
    assert_eq!(completed.len(), 3);
    assert_eq!(completed[0].1.as_ref().unwrap().protocol_name.as_deref(), Some("roundrobin"));
    // The leader's member list carries each member's metadata for the chosen protocol.
    let leader = completed.iter().find(|(_, r)| !r.as_ref().unwrap().members.is_empty()).unwrap();
    assert!(leader.1.as_ref().unwrap().members.iter().all(|m| &m.metadata[..] == b"roundrobin-meta"));
    // A member supporting only "range" narrows the candidates to it.
    let mut h = H::with(GroupConfig { initial_rebalance_delay_ms: 1_000, ..cfg() });
    let _ = h.join(JoinRequest { protocols: p(&["roundrobin", "range"]), ..jreq("a", "") });
    let _ = h.join(JoinRequest { protocols: p(&["range"]), ..jreq("b", "") });
    h.g.on_rebalance_timeout(1_000);
    h.g.on_rebalance_timeout(2_000);
    assert_eq!(h.g.protocol_name(), Some("range"));
}

#[test]
fn initial_rebalance_delay_waits_for_more_members() {
    let mut h = H::with(GroupConfig { initial_rebalance_delay_ms: 3_000, ..cfg() });
    let (r, eff) = h.join(jreq("a", ""));
    let a = pending(r);
    assert_eq!(rebalance_deadline(&eff), Some(3_000));
    h.now = 1_000;
    let b = pending(h.join(jreq("b", "")).0);
    // A new member arrived during the delay: extend by another delay.
    let eff = h.g.on_rebalance_timeout(3_000);
    assert_eq!(rebalance_deadline(&eff), Some(6_000));
    assert!(joins(&eff).is_empty());
    assert!(h.g.on_rebalance_timeout(5_999).is_empty());
    let eff = h.g.on_rebalance_timeout(6_000);
    let completed: BTreeMap<_, _> = joins(&eff).into_iter().collect();
    assert_eq!(completed.len(), 2);
    assert_eq!(completed[&a].as_ref().unwrap().leader_id, a);
    assert_eq!(completed[&b].as_ref().unwrap().generation_id, 1);
}

#[test]
fn initial_delay_extension_is_bounded_by_the_rebalance_timeout() {
    let mut h = H::with(GroupConfig { initial_rebalance_delay_ms: 3_000, ..cfg() });
    let _ = h.join(JoinRequest { rebalance_timeout_ms: 4_000, ..jreq("a", "") });
    let _ = h.join(JoinRequest { rebalance_timeout_ms: 4_000, ..jreq("b", "") });
    // Budget left after the first delay: 1000 ms.
    let eff = h.g.on_rebalance_timeout(3_000);
    assert_eq!(rebalance_deadline(&eff), Some(4_000));
    let _ = h.join(JoinRequest { rebalance_timeout_ms: 4_000, ..jreq("c", "") });
    let eff = h.g.on_rebalance_timeout(4_000);
    assert_eq!(joins(&eff).len(), 3, "budget exhausted: complete now");
}

#[test]
fn rejoin_while_completing_with_same_metadata_repeats_the_answer() {
    let mut h = H::new();
    let a = one_member(&mut h);
    let b = pending(h.join(jreq("b", "")).0);
    let _ = h.join(jreq("a", &a));
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    let resp = done(h.join(jreq("b", &b)).0);
    assert_eq!((resp.generation_id, resp.members.len()), (2, 0));
    let resp = done(h.join(jreq("a", &a)).0);
    assert_eq!((resp.generation_id, resp.members.len()), (2, 2));
    // Changed metadata while completing forces a new rebalance; parked syncs are told so.
    let _ = h.sync(&a, 2, &[]);
    let changed = JoinRequest { protocols: vec![("range".into(), Bytes::from_static(b"new"))], ..jreq("b", &b) };
    let (r, eff) = h.join(changed);
    pending(r);
    assert_eq!(syncs(&eff), vec![(a.clone(), Err(GroupError::RebalanceInProgress))]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn rejoin_while_stable() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    // A follower with unchanged metadata just gets the current generation.
    let resp = done(h.join(jreq("b", &b)).0);
    assert_eq!((resp.generation_id, resp.leader_id.as_str()), (2, a.as_str()));
    assert_eq!(h.g.state(), GroupState::Stable);
    // The leader rejoining forces a rebalance.
    pending(h.join(jreq("a", &a)).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn follower_metadata_change_while_stable_rebalances() {
    let mut h = H::new();
    let (_a, b) = two_members(&mut h);
    let changed =
        JoinRequest { protocols: vec![("range".into(), Bytes::from_static(b"more-topics"))], ..jreq("b", &b) };
    pending(h.join(changed).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn heartbeat_errors() {
    let mut h = H::new();
    assert_eq!(h.hb("x", 0), Err(GroupError::UnknownMemberId), "empty group");
    let (a, _b) = two_members(&mut h);
    assert_eq!(h.hb("nobody", 2), Err(GroupError::UnknownMemberId));
    assert_eq!(h.hb(&a, 1), Err(GroupError::IllegalGeneration));
    assert_eq!(h.hb(&a, 3), Err(GroupError::IllegalGeneration));
    assert_eq!(h.hb_static(&a, "not-registered", 2), Err(GroupError::UnknownMemberId));
    pending(h.join(jreq("c", "")).0);
    assert_eq!(h.hb(&a, 2), Err(GroupError::RebalanceInProgress));
    h.g.mark_dead(GroupError::CoordinatorNotAvailable, 0);
    assert_eq!(h.hb(&a, 2), Err(GroupError::CoordinatorNotAvailable));
}

#[test]
fn sync_errors() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    assert_eq!(h.sync("nobody", 2, &[]).0, Err(GroupError::UnknownMemberId));
    assert_eq!(h.sync(&b, 1, &[]).0, Err(GroupError::IllegalGeneration));
    let wrong_type = SyncRequest { protocol_type: Some("connect".into()), ..sreq(&b, 2, &[]) };
    assert_eq!(h.g.sync(wrong_type, 0).0, Err(GroupError::InconsistentGroupProtocol));
    let wrong_name = SyncRequest { protocol_name: Some("roundrobin".into()), ..sreq(&b, 2, &[]) };
    assert_eq!(h.g.sync(wrong_name, 0).0, Err(GroupError::InconsistentGroupProtocol));
    let unchecked = SyncRequest { protocol_type: None, protocol_name: None, ..sreq(&b, 2, &[]) };
    assert!(matches!(h.g.sync(unchecked, 0).0, Ok(SyncReply::Done(_))));
    pending(h.join(jreq("a", &a)).0);
    assert_eq!(h.sync(&b, 2, &[]).0, Err(GroupError::RebalanceInProgress));
    h.g.mark_dead(GroupError::CoordinatorNotAvailable, 0);
    assert_eq!(h.sync(&b, 2, &[]).0, Err(GroupError::CoordinatorNotAvailable));
    let mut empty = H::new();
    assert_eq!(empty.sync("x", 0, &[]).0, Err(GroupError::UnknownMemberId));
}

/// Two static members "ia" (leader) and "ib", generation 2, Stable.
fn two_static_members(h: &mut H) -> (String, String) {
    let a = done(h.join(static_jreq("a", "", "ia")).0).member_id;
    h.leader_sync(&a, 1, &[(&a, "A1")]);
    let b = pending(h.join(static_jreq("b", "", "ib")).0);
    done(h.join(static_jreq("a", &a, "ia")).0);
    h.leader_sync(&a, 2, &[(&a, "A2"), (&b, "B2")]);
    let _ = h.g.sync(SyncRequest { group_instance_id: Some("ib".into()), ..sreq(&b, 2, &[]) }, h.now).0.unwrap();
    (a, b)
}

#[test]
fn static_member_rejoins_without_rebalance_and_old_id_is_fenced() {
    let mut h = H::new();
    let (a, b) = two_static_members(&mut h);
    // ib restarts: it comes back with an empty member id.
    h.now = 1_000;
    let (r, eff) = h.join(static_jreq("b", "", "ib"));
    let b2 = pending(r);
    assert_ne!(b2, b);
    assert_eq!(h.g.state(), GroupState::Stable, "no rebalance");
    assert_eq!(h.g.generation_id(), 2);
    assert_eq!(h.g.static_member_id("ib"), Some(b2.as_str()));
    let p = persists(&eff);
    assert_eq!(p.len(), 1);
    let v = records::decode_group_metadata_value(p[0].0.value.as_ref().unwrap()).unwrap();
    assert!(v.members.iter().any(|m| m.member_id == b2 && &m.assignment[..] == b"B2"));
    let eff = h.g.on_persisted(p[0].1.clone().unwrap(), Ok(()), 1_000);
    let completed = joins(&eff);
    assert_eq!(completed.len(), 1);
    let resp = completed[0].1.as_ref().unwrap();
    assert_eq!((resp.member_id.as_str(), resp.generation_id, resp.leader_id.as_str()), (b2.as_str(), 2, a.as_str()));
    assert!(resp.members.is_empty() && !resp.skip_assignment);
    // Its previous assignment comes back through SyncGroup.
    let SyncReply::Done(s) =
        h.g.sync(SyncRequest { group_instance_id: Some("ib".into()), ..sreq(&b2, 2, &[]) }, 1_000).0.unwrap()
    else {
        panic!()
    };
    assert_eq!(&s.assignment[..], b"B2");
    // The old member id is fenced everywhere it shows up with the instance id.
    assert_eq!(h.hb_static(&b, "ib", 2), Err(GroupError::FencedInstanceId));
    assert_eq!(h.hb(&b, 2), Err(GroupError::UnknownMemberId));
    let old_sync = SyncRequest { group_instance_id: Some("ib".into()), ..sreq(&b, 2, &[]) };
    assert_eq!(h.g.sync(old_sync, 1_000).0, Err(GroupError::FencedInstanceId));
    assert_eq!(h.join(static_jreq("b", &b, "ib")).0, Err(GroupError::FencedInstanceId));
    let leave =
        LeaveRequest { members: vec![LeaveMember { member_id: b.clone(), group_instance_id: Some("ib".into()) }] };
    assert_eq!(h.g.leave(&leave, 1_000).0.unwrap()[0].1, Err(GroupError::FencedInstanceId));
    assert_eq!(h.hb_static(&b2, "ib", 2), Ok(()));
    assert_eq!(h.hb_static(&a, "ia", 2), Ok(()));
}

#[test]
fn static_leader_rejoin_skips_assignment_or_hides_leadership() {
    let mut h = H::new();
    let (a, b) = two_static_members(&mut h);
    let (r, eff) = h.join(static_jreq("a", "", "ia"));
    let a2 = pending(r);
    let eff = h.ack_all(&eff);
    let resp = joins(&eff)[0].1.clone().unwrap();
    assert_eq!(resp.leader_id, a2);
    assert!(resp.skip_assignment);
    assert_eq!(resp.members.len(), 2);
    // Pre-v9 clients: leadership is hidden behind the old leader id so nobody reassigns.
    let (r, eff) = h.join(JoinRequest { supports_skip_assignment: false, ..static_jreq("a", "", "ia") });
    let a3 = pending(r);
    let eff = h.ack_all(&eff);
    let resp = joins(&eff)[0].1.clone().unwrap();
    assert_eq!((resp.member_id.as_str(), resp.leader_id.as_str()), (a3.as_str(), a2.as_str()));
    assert!(resp.members.is_empty() && !resp.skip_assignment);
    assert_eq!(h.g.state(), GroupState::Stable);
    assert!(h.g.has(&b) && !h.g.has(&a));
}

#[test]
fn static_rejoin_with_failed_write_reports_the_error() {
    let mut h = H::new();
    two_static_members(&mut h);
    let (r, eff) = h.join(static_jreq("b", "", "ib"));
    let b2 = pending(r);
    let ack = persists(&eff)[0].1.clone().unwrap();
    let eff = h.g.on_persisted(ack, Err(GroupError::CoordinatorNotAvailable), 0);
    assert_eq!(joins(&eff), vec![(b2, Err(GroupError::CoordinatorNotAvailable))]);
}

#[test]
fn static_rejoin_with_new_protocols_rebalances() {
    let mut h = H::new();
    two_static_members(&mut h);
    let req = JoinRequest { protocols: vec![("roundrobin".into(), Bytes::new())], ..static_jreq("b", "", "ib") };
    pending(h.join(req).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn static_rejoin_fences_parked_requests_of_the_old_id() {
    // While PreparingRebalance: the old id's parked JoinGroup is fenced.
    let mut h = H::new();
    let (a, b) = two_static_members(&mut h);
    let changed =
        JoinRequest { protocols: vec![("range".into(), Bytes::from_static(b"v2"))], ..static_jreq("b", &b, "ib") };
    pending(h.join(changed).0);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
    let (r, eff) = h.join(static_jreq("b", "", "ib"));
    let b2 = pending(r);
    assert_eq!(joins(&eff), vec![(b.clone(), Err(GroupError::FencedInstanceId))]);
    let (r, eff) = h.join(static_jreq("a", &a, "ia"));
    assert_eq!(done(r).generation_id, 3);
    assert_eq!(joins(&eff)[0].0, b2);
    // While CompletingRebalance: the old id's parked SyncGroup is fenced and everyone rejoins.
    let _ = h.g.sync(SyncRequest { group_instance_id: Some("ib".into()), ..sreq(&b2, 3, &[]) }, 0);
    let (r, eff) = h.join(static_jreq("b", "", "ib"));
    pending(r);
    assert_eq!(syncs(&eff), vec![(b2, Err(GroupError::FencedInstanceId))]);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn static_member_that_does_not_rejoin_stays_until_its_session_expires() {
    let mut h = H::new();
    let (a, b) = two_static_members(&mut h);
    // The leader forces a rebalance; b (static, offline) never rejoins.
    let (_, eff) = h.join(static_jreq("a", &a, "ia"));
    let deadline = rebalance_deadline(&eff).unwrap();
    let eff = h.g.on_rebalance_timeout(deadline);
    assert!(h.g.has(&b), "static members are not evicted by the rebalance timeout");
    assert_eq!(h.g.state(), GroupState::CompletingRebalance);
    let leader = joins(&eff).into_iter().find(|(m, _)| *m == a).unwrap().1.unwrap();
    assert_eq!(leader.members.len(), 2, "the leader still assigns to the static member");
    // Its session timeout removes it (and rebalances).
    h.now = deadline;
    h.leader_sync(&a, 3, &[]);
    h.hb_static(&a, "ia", 3).unwrap();
    h.g.on_session_timeout(&b, deadline + SESSION as i64);
    assert!(!h.g.has(&b));
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn static_member_leave_by_instance_id_rebalances() {
    let mut h = H::new();
    let (_a, b) = two_static_members(&mut h);
    let leave =
        LeaveRequest { members: vec![LeaveMember { member_id: String::new(), group_instance_id: Some("ib".into()) }] };
    assert_eq!(h.g.leave(&leave, 0).0.unwrap()[0].1, Ok(()));
    assert!(!h.g.has(&b));
    assert_eq!(h.g.static_member_id("ib"), None);
    assert_eq!(h.g.state(), GroupState::PreparingRebalance);
}

#[test]
fn describe_and_list_views() {
    let mut h = H::new();
    assert_eq!(h.g.describe().state, "Empty");
    let (a, b) = two_members(&mut h);
    let d = h.g.describe();
    assert_eq!((d.state, d.protocol_type.as_str(), d.protocol.as_str()), ("Stable", "consumer", "range"));
    assert_eq!(d.members.len(), 2);
    assert_eq!(&d.members[0].metadata[..], b"range-meta");
    assert_eq!(&d.members[1].assignment[..], b"B2");
    assert_eq!(d.members[0].client_host, "/127.0.0.1");
    let l = h.g.listing();
    assert_eq!((l.group_id.as_str(), l.protocol_type.as_str(), l.state), ("g", "consumer", "Stable"));
    pending(h.join(jreq("a", &a)).0);
    let d = h.g.describe();
    assert_eq!((d.state, d.protocol.as_str()), ("PreparingRebalance", ""));
    assert!(d.members.iter().all(|m| m.metadata.is_empty() && m.assignment.is_empty()));
    done(h.join(jreq("b", &b)).0);
    assert_eq!(h.g.describe().state, "CompletingRebalance");
    h.g.mark_dead(GroupError::CoordinatorNotAvailable, 0);
    assert_eq!(h.g.listing().state, "Dead");
}

#[test]
fn mark_dead_answers_parked_requests() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    pending(h.join(jreq("a", &a)).0);
    let eff = h.g.mark_dead(GroupError::NotCoordinator, 0);
    assert_eq!(joins(&eff), vec![(a.clone(), Err(GroupError::NotCoordinator))]);
    assert!(eff.contains(&Effect::CancelSessionTimeout { group_id: "g".into(), member_id: b }));
    assert!(eff.contains(&Effect::CancelRebalanceTimeout { group_id: "g".into() }));
    assert_eq!(h.g.state(), GroupState::Dead);
    assert!(h.g.on_rebalance_timeout(i64::MAX / 2).is_empty());
    assert!(h.g.on_session_timeout(&a, i64::MAX / 2).is_empty());
}

#[test]
fn metadata_value_restores_a_stable_group() {
    let mut h = H::new();
    let (a, b) = two_members(&mut h);
    let v = h.g.metadata_value(None);
    let mut g = Group::from_metadata("g", cfg(), &v);
    assert_eq!(g.state(), GroupState::Stable);
    assert_eq!((g.generation_id(), g.leader_id(), g.protocol_name()), (2, Some(a.as_str()), Some("range")));
    assert_eq!(g.member(&b).unwrap().assignment, Bytes::from_static(b"B2"));
    let eff = g.schedule_loaded_sessions(100);
    assert_eq!(sessions(&eff).len(), 2);
    let SyncReply::Done(s) = g.sync(sreq(&b, 2, &[]), 100).0.unwrap() else { panic!() };
    assert_eq!(&s.assignment[..], b"B2");
    // Restored members only know the selected protocol: rejoining with exactly that is not a
    // rebalance, rejoining with more protocols is (as in Kafka).
    let mut suffix = || "x".to_string();
    let same = JoinRequest { protocols: vec![("range".into(), Bytes::from_static(b"range-meta"))], ..jreq("b", &b) };
    let (r, _) = g.join(same, 100, &mut suffix);
    assert!(matches!(r, Ok(JoinReply::Done(_))));
    let (r, _) = g.join(jreq("b", &b), 100, &mut suffix);
    assert!(matches!(r, Ok(JoinReply::Pending { .. })));
}

#[test]
fn generated_ids_never_collide() {
    let mut h = H::new();
    let mut suffix = || "same".to_string();
    let (r1, _) = h.g.join(JoinRequest { require_known_member_id: true, ..jreq("c", "") }, 0, &mut suffix);
    let (r2, _) = h.g.join(JoinRequest { require_known_member_id: true, ..jreq("c", "") }, 0, &mut suffix);
    let (Err(GroupError::MemberIdRequired { member_id: m1 }), Err(GroupError::MemberIdRequired { member_id: m2 })) =
        (r1, r2)
    else {
        panic!()
    };
    assert_ne!(m1, m2);
}
