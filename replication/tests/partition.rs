//! The partition layer on a real log: the high watermark apart from the log
//! end, leader epochs and their persisted history (OffsetForLeaderEpoch),
//! roles, and truncation.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use ringbroker_engine::batch::{build_batch_with, validate_batch, BatchOptions, RecordSpec};
use ringbroker_engine::cache::CacheLedger;
use ringbroker_engine::config::{FlushPolicy, LogConfig};
use ringbroker_engine::ids::LeaderEpoch;
use ringbroker_engine::io::DmaStorage;
use ringbroker_engine::log::PartitionLog;
use ringbroker_replication::partition::{Partition, PartitionError, Role};
use ringbroker_replication::{Acks, CommitWait};

type Replica = Partition<DmaStorage>;

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap();
}

fn batch(opts: BatchOptions, n: usize) -> Vec<u8> {
    let v = b"value".to_vec();
    let specs: Vec<RecordSpec> =
        (0..n).map(|i| RecordSpec { key: None, value: Some(&v), headers: vec![], timestamp_delta: i as i64 }).collect();
    build_batch_with(&opts, &specs)
}

fn produce(r: &Replica, n: usize) -> i64 {
    let raw = batch(BatchOptions { base_timestamp: 1000, ..BatchOptions::default() }, n);
    let h = validate_batch(&raw).unwrap();
    r.append(BytesMut::from(&raw[..]), &h, 0).unwrap().last_offset + 1
}

async fn open(dir: &Path, cfg: LogConfig) -> Replica {
    // glommio must probe polled I/O on a file with data (see probe_direct_io).
    ringbroker_engine::io::probe_direct_io(Path::new(env!("CARGO_TARGET_TMPDIR"))).await.unwrap();
    let log = PartitionLog::open(DmaStorage, dir, cfg, CacheLedger::new(1 << 20)).await.unwrap();
    Partition::new(log).unwrap()
}

#[test]
fn high_watermark_follows_what_is_durable() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let r = open(d.path(), LogConfig::kafka_defaults()).await;
        assert_eq!(r.role(), Role::Offline);
        r.become_leader(LeaderEpoch(0), 1).unwrap();
        let end = produce(&r, 10);
        assert_eq!(end, 10);
        // Appended but not synced: not committed, not readable.
        assert_eq!(r.high_watermark(), 0);
        assert!(r.read_cached(0, 1 << 20).unwrap().chunks.is_empty());
        assert_eq!(r.commit_wait(Acks::All, end), CommitWait::LocalDurable { end_offset: 10 });
        r.flush_once(0, false).await.unwrap();
        assert_eq!(r.high_watermark(), 10);
        r.wait_committed(r.commit_wait(Acks::All, end)).await.unwrap();
        assert_eq!(r.read_cached(0, 1 << 20).unwrap().chunks.len(), 1);
        r.check_invariants();

        // Under flush.policy=interval a single replica commits on append.
        let mut cfg = LogConfig::kafka_defaults();
        cfg.flush_policy = FlushPolicy::Interval;
        r.log().borrow_mut().set_config(cfg);
        let end = produce(&r, 5);
        assert_eq!(r.high_watermark(), end);
        assert_eq!(r.commit_wait(Acks::All, end), CommitWait::Nothing);
        r.close(0).await.unwrap();
    });
}

#[test]
fn epochs_are_stamped_remembered_and_answer_offset_for_leader_epoch() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let r = open(d.path(), LogConfig::kafka_defaults()).await;
        r.become_leader(LeaderEpoch(0), 1).unwrap();
        produce(&r, 10);
        r.become_leader(LeaderEpoch(3), 1).unwrap();
        let end = produce(&r, 4);
        r.flush_once(0, false).await.unwrap();
        assert_eq!(r.epoch_history().entries(), &[(0, 0), (3, 10)]);
        // The batch carries the epoch it was written in.
        let data = r.read_cached(10, 1 << 20).unwrap().into_bytes();
        assert_eq!(validate_batch(&data).unwrap().partition_leader_epoch, 3);
        assert_eq!(r.end_offset_for_epoch(0), (0, 10));
        assert_eq!(r.end_offset_for_epoch(2), (0, 10), "an epoch this log never had ends where the next began");
        assert_eq!(r.end_offset_for_epoch(3), (3, end));
        assert_eq!(r.end_offset_for_epoch(4), (-1, -1));
        r.close(0).await.unwrap();
        drop(r);

        // The history is durable, and the reopened replica knows its epoch.
        let r = open(d.path(), LogConfig::kafka_defaults()).await;
        assert_eq!(r.epoch_history().entries(), &[(0, 0), (3, 10)]);
        assert_eq!(r.leader_epoch(), LeaderEpoch(3));
        r.become_leader(LeaderEpoch(3), 1).unwrap();
        assert_eq!(r.end_offset_for_epoch(3), (3, 14));
        // DeleteRecords drops the epochs that ended before the new start.
        assert_eq!(r.delete_records_before(12).unwrap(), 12);
        assert_eq!(r.epoch_history().entries(), &[(3, 12)]);
        r.check_invariants();
        r.close(0).await.unwrap();
    });
}

#[test]
fn a_follower_appends_the_leaders_batches_and_truncates_a_diverged_tail() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let r = open(d.path(), LogConfig::kafka_defaults()).await;
        r.become_leader(LeaderEpoch(1), 1).unwrap();
        produce(&r, 10);
        produce(&r, 10);
        r.flush_once(0, false).await.unwrap();
        assert_eq!(r.high_watermark(), 20);

        // A new leader (epoch 2) had only the first 15 offsets of epoch 1.
        r.become_follower(LeaderEpoch(2));
        let raw = batch(BatchOptions::default(), 1);
        let h = validate_batch(&raw).unwrap();
        assert!(matches!(r.append(BytesMut::from(&raw[..]), &h, 0), Err(PartitionError::NotLeader(Role::Follower))));
        assert_eq!(r.truncate_to(15).await.unwrap(), 10, "the batch holding offset 15 goes whole");
        assert_eq!(r.high_watermark(), 10);
        assert_eq!(r.epoch_history().entries(), &[(1, 0)]);
        // The leader's batches arrive with their offsets and epoch.
        let raw = batch(BatchOptions { base_offset: 10, partition_leader_epoch: 2, ..BatchOptions::default() }, 6);
        let h = validate_batch(&raw).unwrap();
        r.append_replicated(Bytes::from(raw), &h, 0).unwrap();
        assert_eq!(r.epoch_history().entries(), &[(1, 0), (2, 10)]);
        // Refused batches leave the history alone: one below the log end,
        // one with an epoch no leader of this follower wrote, a negative one.
        for (base, epoch) in [(12, 2), (16, 3), (16, -5)] {
            let raw =
                batch(BatchOptions { base_offset: base, partition_leader_epoch: epoch, ..BatchOptions::default() }, 1);
            let h = validate_batch(&raw).unwrap();
            assert!(r.append_replicated(Bytes::from(raw), &h, 0).is_err(), "base {base} epoch {epoch}");
        }
        assert_eq!(r.epoch_history().entries(), &[(1, 0), (2, 10)]);
        r.flush_once(0, false).await.unwrap();
        // A follower's high watermark comes from the leader, never past its own end.
        assert_eq!(r.high_watermark(), 10);
        r.set_high_watermark(1_000);
        assert_eq!(r.high_watermark(), 16);
        r.check_invariants();
        r.close(0).await.unwrap();
        drop(r);
        let r = open(d.path(), LogConfig::kafka_defaults()).await;
        assert_eq!(r.epoch_history().entries(), &[(1, 0), (2, 10)]);
        assert_eq!(r.log().borrow().next_offset(), 16);
    });
}
