//! Group coordinator steps (the pure state machine the driver runs on the
//! shard that owns a `__consumer_offsets` partition): a one-member join +
//! sync round, a heartbeat of a stable member, and an offset commit and
//! fetch of 16 partitions.

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ringbroker_groups::{
    CoordinatorState, Effect, GroupConfig, HeartbeatRequest, JoinReply, JoinRequest, OffsetCommitPartition,
    OffsetCommitRequest, SyncRequest,
};
use std::hint::black_box;

fn cfg() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() }
}

fn join_req() -> JoinRequest {
    JoinRequest {
        member_id: String::new(),
        group_instance_id: None,
        client_id: "bench".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        // ConsumerProtocolSubscription v0: topics ["orders"].
        protocols: vec![(
            "range".into(),
            Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e', b'r', b's', 0xff, 0xff, 0xff, 0xff]),
        )],
        require_known_member_id: false,
        supports_skip_assignment: true,
    }
}

/// Join, sync and the metadata write's acknowledgement: one member reaches Stable.
fn stable_member(s: &mut CoordinatorState, group: &str) -> String {
    let mut n = 0u32;
    let mut suffix = || {
        n += 1;
        n.to_string()
    };
    let (r, _) = s.join(group, join_req(), 0, &mut suffix);
    let Ok(JoinReply::Done(resp)) = r else { panic!("join: {r:?}") };
    let member = resp.member_id;
    let sync = SyncRequest {
        member_id: member.clone(),
        group_instance_id: None,
        generation_id: resp.generation_id,
        protocol_type: None,
        protocol_name: None,
        assignments: vec![(member.clone(), Bytes::from_static(b"assignment"))],
    };
    let (r, effects) = s.sync(group, sync, 0);
    assert!(r.is_ok(), "sync: {r:?}");
    for e in effects {
        if let Effect::PersistGroupMetadata { ack: Some(ack), .. } = e {
            s.on_persisted(group, ack, Ok(()), 0);
        }
    }
    member
}

fn commit_req(member: &str, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest {
        member_id: member.into(),
        group_instance_id: None,
        generation_id: 1,
        partitions: (0..16)
            .map(|p| OffsetCommitPartition {
                topic: "orders".into(),
                partition: p,
                offset,
                leader_epoch: 0,
                metadata: None,
            })
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_coordinator");
    g.bench_function("join_sync_one_member", |b| {
        b.iter_batched(
            || CoordinatorState::new(cfg()),
            |mut s| black_box(stable_member(&mut s, "g")),
            BatchSize::SmallInput,
        )
    });
    let mut s = CoordinatorState::new(cfg());
    let member = stable_member(&mut s, "g");
    let hb = HeartbeatRequest { member_id: member.clone(), group_instance_id: None, generation_id: 1 };
    g.bench_function("heartbeat_stable", |b| {
        b.iter(|| {
            let (r, effects) = s.heartbeat("g", black_box(&hb), 1);
            assert!(r.is_ok());
            effects
        })
    });
    let mut offset = 0i64;
    g.bench_function("commit_16_partitions", |b| {
        b.iter(|| {
            offset += 1;
            let out = s.commit_offsets("g", &commit_req(&member, offset), 1);
            assert!(out.results.iter().all(|(_, _, r)| r.is_ok()));
            s.apply_commit(out.prepared, 1);
            out.records.len()
        })
    });
    g.bench_function("fetch_offsets_all", |b| b.iter(|| s.fetch_offsets("g", None).map(|v| v.len())));
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
