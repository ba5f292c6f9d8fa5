//! Partition log behaviour on real O_DIRECT files driven by a glommio executor:
//! append, group-committed flush, reads from cache and from disk, roll,
//! recovery after a clean close and after torn tails, retention, DeleteRecords.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;
use ringbroker_engine::batch::{build_batch, validate_batch, BatchHeader, RecordSpec};
use ringbroker_engine::cache::CacheLedger;
use ringbroker_engine::config::LogConfig;
use ringbroker_engine::io::DmaStorage;
use ringbroker_engine::log::PartitionLog;

type Log = PartitionLog<DmaStorage>;

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap();
}

fn batch(n: usize, tag: &str, ts: i64) -> Vec<u8> {
    let vals: Vec<Vec<u8>> = (0..n).map(|i| format!("{tag}-{i}").into_bytes()).collect();
    let specs: Vec<RecordSpec> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec { key: None, value: Some(v), headers: vec![], timestamp_delta: i as i64 })
        .collect();
    build_batch(0, ts, &specs)
}

fn append(log: &RefCell<Log>, raw: &[u8], now: i64) -> (i64, i64) {
    let h = validate_batch(raw).unwrap();
    let info = log.borrow_mut().append(BytesMut::from(raw), &h, now, 0).unwrap();
    (info.base_offset, info.last_offset)
}

async fn open(dir: &Path, cfg: LogConfig) -> RefCell<Log> {
    open_sharing(dir, cfg, &ringbroker_engine::cache::CacheLedger::new(1 << 20)).await
}

/// Opens a partition on the shard-wide cache ledger `ledger`.
async fn open_sharing(dir: &Path, cfg: LogConfig, ledger: &Rc<CacheLedger>) -> RefCell<Log> {
    ringbroker_engine::io::probe_direct_io(Path::new(env!("CARGO_TARGET_TMPDIR"))).await.unwrap();
    RefCell::new(Log::open(DmaStorage, dir, cfg, ledger.clone()).await.unwrap())
}

/// Reads everything from `from` to the high watermark, via cache or disk.
async fn read_all(log: &RefCell<Log>, from: i64) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut off = from;
    loop {
        let upper = log.borrow().local_commit_end();
        let cached = log.borrow().read_cached(off, 64 << 10, upper);
        let r = match cached {
            Some(r) => r,
            None => Log::read_disk(log, off, 64 << 10, upper).await.unwrap(),
        };
        if r.chunks.is_empty() {
            break;
        }
        let data = r.into_bytes();
        let mut at = 0;
        while at < data.len() {
            let h = validate_batch(&data[at..at + BatchHeader::parse(&data[at..]).unwrap().total_len()]).unwrap();
            at += h.total_len();
            off = h.last_offset() + 1;
            out.push(h);
        }
    }
    out
}

#[test]
fn append_flush_read_and_recover() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut cfg = LogConfig::kafka_defaults();
        cfg.segment_bytes = 4 << 10; // force several segments
        let log = open(d.path(), cfg.clone()).await;
        let mut expected = Vec::new();
        for i in 0..200 {
            let (b, l) = append(&log, &batch(5, &format!("b{i}"), 1000 + i), 0);
            expected.push((b, l));
            if i % 7 == 0 {
                Log::flush_once(&log, 0, false).await.unwrap();
            }
        }
        Log::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(log.borrow().local_commit_end(), 1000);
        assert!(log.borrow().segment_count() > 3, "rolled into several segments");
        let got = read_all(&log, 0).await;
        assert_eq!(got.iter().map(|h| (h.base_offset, h.last_offset())).collect::<Vec<_>>(), expected);
        // Reading from the middle of a batch starts at that batch.
        let mid = read_all(&log, 502).await;
        assert_eq!(mid[0].base_offset, 500);
        Log::close(&log, 0).await.unwrap();
        drop(log);

        // Reopen: everything is there, read from disk.
        let log = open(d.path(), cfg.clone()).await;
        assert_eq!(log.borrow().next_offset(), 1000);
        let got = read_all(&log, 0).await;
        assert_eq!(got.len(), 200);
        // Appends continue after recovery at the right offsets.
        let (b, _) = append(&log, &batch(3, "after", 5000), 0);
        assert_eq!(b, 1000);
        Log::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(read_all(&log, 999).await.last().unwrap().last_offset(), 1002);
        // Timestamp lookup finds the first batch with a late enough timestamp.
        let hit = Log::find_by_timestamp(&log, 1100, i64::MAX).await.unwrap().unwrap();
        let h = BatchHeader::parse(&hit).unwrap();
        assert!(h.max_timestamp >= 1100 && h.base_offset <= 500);
    });
}

/// Flushes larger than one direct-I/O write are cut into chunks written
/// concurrently; whatever the carry (partial last block) and batch sizes,
/// the file must hold exactly the batches, in order, after a restart.
#[test]
fn multi_chunk_flushes_land_in_order() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = LogConfig::kafka_defaults();
        let log = open(d.path(), cfg.clone()).await;
        // A small batch first so the big flushes start at a partial block.
        append(&log, &batch(1, "x", 1), 0);
        Log::flush_once(&log, 0, false).await.unwrap();
        let mut expected = vec![(0, 0)];
        for round in 0..3 {
            // ~3.5 MiB per flush in batches of odd sizes: several 1 MiB chunks.
            for i in 0..70 {
                let value = vec![b'a' + (i % 26) as u8; 50_000 + 17 * i + round];
                let raw = build_batch(
                    0,
                    1000,
                    &[RecordSpec { key: None, value: Some(&value), headers: vec![], timestamp_delta: 0 }],
                );
                expected.push(append(&log, &raw, 0));
            }
            Log::flush_once(&log, 0, false).await.unwrap();
        }
        drop(log); // no close: recovery reads what the chunks wrote
        let log = open(d.path(), cfg).await;
        assert_eq!(log.borrow().next_offset(), 211);
        let got = read_all(&log, 0).await;
        assert_eq!(got.iter().map(|h| (h.base_offset, h.last_offset())).collect::<Vec<_>>(), expected);
    });
}

/// Partitions of a shard share one cache budget: a busy partition takes the
/// memory of an idle one (oldest batches first), nothing unwritten is
/// evicted, and a partition that is dropped stops counting.
#[test]
fn shard_cache_budget_is_shared_oldest_first() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let one = batch(1, "v", 1).len();
        let ledger = CacheLedger::new(10 * one);
        let cfg = LogConfig::kafka_defaults();
        let idle = open_sharing(&d.path().join("idle"), cfg.clone(), &ledger).await;
        let busy = open_sharing(&d.path().join("busy"), cfg.clone(), &ledger).await;
        for i in 0..4 {
            append(&idle, &batch(1, "v", i), 0);
        }
        Log::flush_once(&idle, 0, false).await.unwrap();
        for i in 0..6 {
            append(&busy, &batch(1, "v", i), 0);
        }
        assert_eq!(ledger.bytes(), 10 * one, "exactly at budget");
        // Unwritten batches of `busy` push the ledger over budget: the oldest
        // (idle's, written) retire; busy's own stay until written.
        for i in 6..12 {
            append(&busy, &batch(1, "v", i), 0);
        }
        assert!(ledger.bytes() <= 10 * one);
        idle.borrow_mut().evict_cache(); // what the shard's sweep does
        assert_eq!(idle.borrow().cached_bytes(), 0, "the idle partition's batches went first");
        assert_eq!(busy.borrow().cached_bytes(), 12 * one, "unwritten batches are never evicted");
        assert!(idle.borrow().read_cached(0, 1 << 20, i64::MAX).is_none(), "idle reads now go to disk");
        Log::flush_once(&busy, 0, false).await.unwrap();
        assert_eq!(busy.borrow().cached_bytes(), 10 * one, "once written, busy keeps the newest 10");
        assert_eq!(read_all(&busy, 0).await.len(), 12, "evicted batches are read from disk");
        assert_eq!(read_all(&idle, 0).await.len(), 4);
        drop(busy);
        assert_eq!(ledger.bytes(), 0, "a dropped partition stops counting");
    });
}

/// A roll requested while a flush round is writing (a housekeeping
/// `segment.ms` roll, or close at shutdown) waits for the round: the round
/// indexes its batches against the segment it wrote them to. Rolling in
/// between used to index them into the new segment and lose them at recovery.
#[test]
fn roll_waits_for_a_flush_round_in_progress() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = LogConfig::kafka_defaults();
        let log = std::rc::Rc::new(open(d.path(), cfg.clone()).await);
        // Something already written, so the active segment can be rolled.
        let mut expected = vec![append(&log, &batch(1, "first", 999), 0)];
        Log::flush_once(&log, 0, false).await.unwrap();
        for i in 0..40 {
            let value = vec![b'a' + (i % 26) as u8; 100_000];
            let raw = build_batch(
                0,
                1000,
                &[RecordSpec { key: None, value: Some(&value), headers: vec![], timestamp_delta: 0 }],
            );
            expected.push(append(&log, &raw, 0));
        }
        let flusher = {
            let log = log.clone();
            glommio::spawn_local(async move { Log::flush_once(&log, 0, false).await })
        };
        // Let the round start: it is now waiting for its writes.
        futures_lite::future::yield_now().await;
        Log::roll_now(&log, 0).await.unwrap();
        flusher.await.unwrap();
        append(&log, &batch(2, "after-roll", 2000), 0);
        Log::flush_once(&log, 0, false).await.unwrap();
        expected.push((41, 42));
        let got = read_all(&log, 0).await;
        assert_eq!(got.iter().map(|h| (h.base_offset, h.last_offset())).collect::<Vec<_>>(), expected);
        drop(got);
        let log = std::rc::Rc::try_unwrap(log).ok().expect("no other owner");
        drop(log); // no close: recovery must find every synced batch
        let log = open(d.path(), cfg).await;
        let got = read_all(&log, 0).await;
        assert_eq!(got.iter().map(|h| (h.base_offset, h.last_offset())).collect::<Vec<_>>(), expected);
    });
}

#[test]
fn torn_tail_of_every_length_is_truncated_on_recovery() {
    run(|| async {
        let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = LogConfig::kafka_defaults();
        // Build a reference log: 3 batches, flushed, closed.
        let ref_dir = base.path().join("ref");
        let log = open(&ref_dir, cfg.clone()).await;
        for i in 0..3 {
            append(&log, &batch(4, &format!("x{i}"), 10), 0);
        }
        Log::close(&log, 0).await.unwrap();
        drop(log);
        let seg = std::fs::read(ref_dir.join("00000000000000000000.log")).unwrap();
        // Walk the three batches (the file is zero-padded to a block).
        let mut ends = Vec::new();
        let mut at = 0;
        for _ in 0..3 {
            at += BatchHeader::parse(&seg[at..]).unwrap().total_len();
            ends.push(at);
        }
        let (last_start, total) = (ends[1], ends[2]);
        for cut in last_start..total {
            let dir = base.path().join(format!("cut{cut}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut torn = seg[..cut].to_vec();
            // A torn write leaves stale bytes behind the cut. (Not zeros: the
            // last byte of a batch is often 0, so zeros could complete it.)
            torn.extend(std::iter::repeat_n(0xEEu8, 100));
            std::fs::write(dir.join("00000000000000000000.log"), &torn).unwrap();
            let log = open(&dir, cfg.clone()).await;
            assert_eq!(log.borrow().next_offset(), 8, "cut at {cut}: only the two whole batches survive");
            assert_eq!(read_all(&log, 0).await.len(), 2);
            // New appends land right after the valid prefix and read back.
            append(&log, &batch(2, "new", 20), 0);
            Log::flush_once(&log, 0, false).await.unwrap();
            Log::close(&log, 0).await.unwrap();
            drop(log);
            let log = open(&dir, cfg.clone()).await;
            let all = read_all(&log, 0).await;
            assert_eq!(all.len(), 3);
            assert_eq!(all[2].base_offset, 8);
            assert_eq!(log.borrow().next_offset(), 10);
        }
    });
}

#[test]
fn stale_or_missing_index_is_rebuilt() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = LogConfig::kafka_defaults();
        let log = open(d.path(), cfg.clone()).await;
        for i in 0..300 {
            append(&log, &batch(10, &format!("i{i}"), 10), 0);
        }
        Log::close(&log, 0).await.unwrap();
        drop(log);
        let idx = d.path().join("00000000000000000000.index");
        assert!(std::fs::metadata(&idx).unwrap().len() > 0);
        // Garbage index: entries pointing at wrong offsets.
        std::fs::write(&idx, [0u8, 0, 0, 5, 0, 0, 0x10, 0]).unwrap();
        let log = open(d.path(), cfg.clone()).await;
        assert_eq!(log.borrow().next_offset(), 3000);
        assert_eq!(read_all(&log, 1234).await[0].base_offset, 1230);
        Log::close(&log, 0).await.unwrap();
        drop(log);
        std::fs::remove_file(&idx).unwrap();
        let log = open(d.path(), cfg).await;
        assert_eq!(log.borrow().next_offset(), 3000);
        assert_eq!(read_all(&log, 2999).await.len(), 1);
    });
}

#[test]
fn retention_and_delete_records_move_the_log_start() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut cfg = LogConfig::kafka_defaults();
        cfg.segment_bytes = 4 << 10;
        cfg.retention_bytes = 16 << 10;
        // The shard's cache ledger must follow batches dropped by retention
        // and DeleteRecords, not only by eviction.
        let ledger = CacheLedger::new(1 << 20);
        let log = open_sharing(d.path(), cfg.clone(), &ledger).await;
        for i in 0..400 {
            append(&log, &batch(5, &format!("r{i}"), 10), 0);
            Log::flush_once(&log, 0, false).await.unwrap();
        }
        let all = log.borrow().cached_bytes();
        assert_eq!(ledger.bytes(), all);
        let segs = log.borrow().segment_count();
        let deleted = log.borrow_mut().apply_retention(0).unwrap();
        assert!(deleted > 0 && log.borrow().segment_count() < segs);
        assert!(log.borrow().cached_bytes() < all, "retention dropped cached batches too");
        assert_eq!(ledger.bytes(), log.borrow().cached_bytes());
        let start = log.borrow().log_start_offset();
        assert!(start > 0);
        assert!(log.borrow().size_bytes() <= (16 << 10) + (4 << 10));
        assert_eq!(read_all(&log, start).await[0].base_offset, start);
        let new_start = {
            let end = log.borrow().local_commit_end();
            log.borrow_mut().delete_records_before(1500, end).unwrap()
        };
        assert_eq!(new_start, 1500);
        assert_eq!(ledger.bytes(), log.borrow().cached_bytes());
        assert!({
            let end = log.borrow().local_commit_end();
            log.borrow_mut().delete_records_before(999_999, end).is_err()
        });
        Log::close(&log, 0).await.unwrap();
        drop(log);
        assert_eq!(ledger.bytes(), 0, "a closed partition stops counting");
        let log = open(d.path(), cfg).await;
        assert_eq!(log.borrow().log_start_offset(), 1500, "log start survives restart");
    });
}

/// Catch-up reads from disk start a readahead for the next offset: a
/// sequential reader gets every batch exactly once and in order across
/// segments, a reader jumping elsewhere gets the right data, appends that
/// land after a readahead started are still returned, and the shard's
/// readahead budget is given back when the partition goes away.
#[test]
fn readahead_follows_sequential_disk_reads() {
    run(|| async {
        let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut cfg = LogConfig::kafka_defaults();
        cfg.segment_bytes = 16 << 10;
        let log = open(d.path(), cfg.clone()).await;
        for i in 0..400 {
            append(&log, &batch(20, &format!("r{i}"), 1000 + i), 0);
        }
        Log::flush_once(&log, 0, false).await.unwrap();
        Log::close(&log, 0).await.unwrap();
        drop(log);

        let ledger = CacheLedger::new(64 << 20);
        let log = open_sharing(d.path(), cfg.clone(), &ledger).await;
        assert!(log.borrow().segment_count() > 3);
        assert!(log.borrow().read_cached(0, 1 << 20, i64::MAX).is_none(), "cold cache: reads go to disk");
        // Sequential reads, small enough that each leaves more on disk.
        let mut off = 0;
        let mut seen = Vec::new();
        let mut read_ahead_seen = false;
        while off < 8000 {
            let r = Log::read_disk(&log, off, 2 << 10, i64::MAX).await.unwrap();
            read_ahead_seen |= ledger.readahead_bytes() > 0;
            let data = r.into_bytes();
            assert!(!data.is_empty(), "data at {off}");
            let mut at = 0;
            while at < data.len() {
                let len = BatchHeader::parse(&data[at..]).unwrap().total_len();
                let h = validate_batch(&data[at..at + len]).unwrap();
                assert_eq!(h.base_offset, off, "contiguous, no batch twice");
                off = h.last_offset() + 1;
                seen.push(h.base_offset);
                at += len;
            }
        }
        assert!(read_ahead_seen, "sequential disk reads started readaheads");
        assert_eq!(seen, (0..400).map(|i| i * 20).collect::<Vec<_>>());
        // Jumping back: not the readahead's offset, still the right batch.
        let r = Log::read_disk(&log, 4005, 2 << 10, i64::MAX).await.unwrap().into_bytes();
        assert_eq!(BatchHeader::parse(&r).unwrap().base_offset, 4000);
        // A readahead pending for 4020 meanwhile; more data is appended and
        // flushed; reading on from 4020 still reaches the new batch.
        let (b, _) = append(&log, &batch(4, "late", 9000), 0);
        Log::flush_once(&log, 0, false).await.unwrap();
        let rest = read_all(&log, 4020).await;
        assert_eq!(rest.first().unwrap().base_offset, 4020);
        let last = rest.last().unwrap().base_offset;
        assert_eq!(last, b, "the batch appended after the readahead started");
        drop(log);
        assert_eq!(ledger.readahead_bytes(), 0, "budget given back with the partition");
    });
}
