//! A follower's two writes on real O_DIRECT files: `append_replicated`
//! (offsets and epochs as the leader gave them) and `truncate_to` (a
//! diverged suffix taken back), with what must follow a truncation: segment
//! files, indexes, the cache, producer state, the durable watch, and a
//! reopen that finds exactly the truncated log.

use std::cell::RefCell;
use std::path::Path;

use bytes::{Bytes, BytesMut};
use ringbroker_engine::batch::{build_batch_with, validate_batch, BatchHeader, BatchOptions, RecordSpec};
use ringbroker_engine::cache::CacheLedger;
use ringbroker_engine::config::LogConfig;
use ringbroker_engine::io::DmaStorage;
use ringbroker_engine::log::PartitionLog;
use ringbroker_engine::producer_state::SequenceCheck;

type Log = PartitionLog<DmaStorage>;

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap();
}

fn batch_with(opts: BatchOptions, n: usize, tag: &str) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (0..n).map(|i| format!("{tag}-{i}").into_bytes()).collect();
    let specs: Vec<RecordSpec> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec { key: None, value: Some(v), headers: vec![], timestamp_delta: i as i64 })
        .collect();
    build_batch_with(&opts, &specs)
}

fn batch(n: usize, tag: &str) -> Vec<u8> {
    batch_with(BatchOptions { base_timestamp: 1000, ..BatchOptions::default() }, n, tag)
}

fn append(log: &RefCell<Log>, raw: &[u8], epoch: i32) -> (i64, i64) {
    let h = validate_batch(raw).unwrap();
    let info = log.borrow_mut().append(BytesMut::from(raw), &h, 0, epoch).unwrap();
    (info.base_offset, info.last_offset)
}

async fn open(dir: &Path, cfg: LogConfig) -> RefCell<Log> {
    ringbroker_engine::io::probe_direct_io(Path::new(env!("CARGO_TARGET_TMPDIR"))).await.unwrap();
    RefCell::new(Log::open(DmaStorage, dir, cfg, CacheLedger::new(1 << 20)).await.unwrap())
}

/// Every batch from `from` to the log end, via cache or disk, with its bytes.
async fn read_all(log: &RefCell<Log>, from: i64) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut off = from;
    loop {
        let upper = log.borrow().next_offset();
        let cached = log.borrow().read_cached(off, 64 << 10, upper);
        let r = match cached {
            Some(r) if !r.chunks.is_empty() => r,
            _ => Log::read_disk(log, off, 64 << 10, upper).await.unwrap(),
        };
        if r.chunks.is_empty() {
            break;
        }
        let data = r.into_bytes();
        let mut at = 0;
        while at < data.len() {
            let len = BatchHeader::parse(&data[at..]).unwrap().total_len();
            let h = validate_batch(&data[at..at + len]).unwrap();
            out.push((h, data.slice(at..at + len)));
            at += len;
            off = h.last_offset() + 1;
        }
    }
    out
}

fn small_segments() -> LogConfig {
    let mut cfg = LogConfig::kafka_defaults();
    cfg.segment_bytes = 4 << 10;
    cfg
}

#[test]
fn truncation_cuts_across_segments_and_survives_reopen() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = open(d.path(), small_segments()).await;
        for i in 0..200 {
            append(&log, &batch(5, &format!("b{i}")), 0);
            if i % 9 == 0 {
                Log::flush_once(&log, 0, false).await.unwrap();
            }
        }
        Log::flush_once(&log, 0, false).await.unwrap();
        let segments_before = log.borrow().segment_count();
        assert!(segments_before > 5);
        // 503 is inside the batch 500..=504: that batch goes too.
        let end = Log::truncate_to(&log, 503).await.unwrap();
        assert_eq!(end, 500);
        assert_eq!(log.borrow().next_offset(), 500);
        assert_eq!(log.borrow().durable.get(), 500);
        assert!(log.borrow().segment_count() < segments_before);
        let kept = read_all(&log, 0).await;
        assert_eq!(kept.len(), 100);
        assert_eq!(kept.last().unwrap().0.last_offset(), 499);
        // The log goes on from the cut, under a new epoch.
        assert_eq!(append(&log, &batch(3, "new"), 4), (500, 502));
        Log::flush_once(&log, 0, false).await.unwrap();
        Log::close(&log, 0).await.unwrap();
        drop(log);

        let log = open(d.path(), small_segments()).await;
        assert_eq!(log.borrow().next_offset(), 503);
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 101);
        let (last, bytes) = all.last().unwrap();
        assert_eq!((last.base_offset, last.last_offset(), last.partition_leader_epoch), (500, 502, 4));
        assert!(bytes.windows(5).any(|w| w == b"new-2"), "the new batch, not the truncated one");
        // Reads from the middle of the kept log still find their batch (indexes were cut too).
        let mid = read_all(&log, 251).await;
        assert_eq!(mid[0].0.base_offset, 250);
    });
}

#[test]
fn truncation_among_queued_batches_fails_their_waiters() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = open(d.path(), LogConfig::kafka_defaults()).await;
        append(&log, &batch(10, "a"), 0);
        Log::flush_once(&log, 0, false).await.unwrap();
        // Queued, not written.
        append(&log, &batch(10, "b"), 0);
        append(&log, &batch(10, "c"), 0);
        let durable = log.borrow().durable.clone();
        let waiter = glommio::spawn_local(async move { durable.wait_for(30).await });
        glommio::yield_if_needed().await;
        assert_eq!(Log::truncate_to(&log, 20).await.unwrap(), 20);
        assert_eq!(waiter.await, Err("log truncated".to_string()));
        assert_eq!(log.borrow().next_offset(), 20);
        Log::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(log.borrow().durable.get(), 20);
        // Truncating at or past the end changes nothing; below the start is refused.
        assert_eq!(Log::truncate_to(&log, 25).await.unwrap(), 20);
        assert!(Log::truncate_to(&log, -1).await.is_err());
        Log::close(&log, 0).await.unwrap();
        drop(log);
        let log = open(d.path(), LogConfig::kafka_defaults()).await;
        assert_eq!(log.borrow().next_offset(), 20);
        assert_eq!(read_all(&log, 0).await.len(), 2);
    });
}

#[test]
fn replicated_batches_keep_the_leaders_offsets_and_epochs() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = open(d.path(), small_segments()).await;
        let mut base = 0;
        for i in 0..60 {
            // The leader's log has a gap after batch 30 (compaction).
            if i == 30 {
                base += 7;
            }
            let raw = batch_with(
                BatchOptions { base_offset: base, partition_leader_epoch: 2 + i / 20, ..BatchOptions::default() },
                4,
                &format!("r{i}"),
            );
            let h = validate_batch(&raw).unwrap();
            log.borrow_mut().append_replicated(Bytes::from(raw), &h, 0).unwrap();
            base += 4;
        }
        assert_eq!(log.borrow().next_offset(), base);
        // A batch below the log end is refused: the follower must truncate first.
        let stale = batch_with(BatchOptions { base_offset: 10, ..BatchOptions::default() }, 1, "x");
        let h = validate_batch(&stale).unwrap();
        assert!(log.borrow_mut().append_replicated(Bytes::from(stale), &h, 0).is_err());
        Log::flush_once(&log, 0, false).await.unwrap();
        Log::close(&log, 0).await.unwrap();
        drop(log);

        let log = open(d.path(), small_segments()).await;
        let all = read_all(&log, 0).await;
        assert_eq!(all.len(), 60);
        for (i, (h, _)) in all.iter().enumerate() {
            let i = i as i64;
            let want = if i < 30 { i * 4 } else { i * 4 + 7 };
            assert_eq!(h.base_offset, want);
            assert_eq!(h.partition_leader_epoch, 2 + (i as i32) / 20);
        }
        // A truncation into the gap keeps everything before it.
        assert_eq!(Log::truncate_to(&log, 123).await.unwrap(), 123);
        assert_eq!(read_all(&log, 0).await.len(), 30);
    });
}

#[test]
fn producer_state_follows_truncation() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let log = open(d.path(), small_segments()).await;
        let idem = |seq: i32| BatchOptions {
            base_timestamp: 1000,
            producer_id: 77,
            producer_epoch: 0,
            base_sequence: seq,
            ..BatchOptions::default()
        };
        for i in 0..40 {
            append(&log, &batch_with(idem(i * 5), 5, &format!("p{i}")), 0);
        }
        Log::flush_once(&log, 0, false).await.unwrap();
        // Sequences 150.. (offsets 150..) are taken back.
        assert_eq!(Log::truncate_to(&log, 150).await.unwrap(), 150);
        let check = log.borrow().producers().clone().check(77, 0, 150, 154).unwrap();
        assert_eq!(check, SequenceCheck::Append, "a truncated batch is not a duplicate");
        let check = log.borrow().producers().clone().check(77, 0, 145, 149).unwrap();
        assert!(matches!(check, SequenceCheck::Duplicate { first_offset: 145, .. }));
        // The producer's retry lands at the cut.
        assert_eq!(append(&log, &batch_with(idem(150), 5, "retry"), 1), (150, 154));
        Log::close(&log, 0).await.unwrap();
        drop(log);
        let log = open(d.path(), small_segments()).await;
        let check = log.borrow().producers().clone().check(77, 0, 155, 159).unwrap();
        assert_eq!(check, SequenceCheck::Append);
    });
}
