//! A failed write or fdatasync poisons the partition: the waiting producers
//! get an error, nothing after the failure is acknowledged, later appends are
//! refused, and nothing is retried silently. Uses a fault-injecting
//! `SegmentStorage` around the real DMA files.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use ringbroker_engine::batch::{build_batch, validate_batch, RecordSpec};
use ringbroker_engine::config::LogConfig;
use ringbroker_engine::io::{probe_direct_io, DmaSegmentFile, DmaStorage, SegmentFile, SegmentStorage};
use ringbroker_engine::log::PartitionLog;
use ringbroker_engine::EngineError;

#[derive(Clone, Default)]
struct Faults {
    fail_writes: Rc<Cell<bool>>,
    /// Fail only the write at this position (one chunk of a round).
    fail_write_at: Rc<Cell<Option<u64>>>,
    fail_syncs: Rc<Cell<bool>>,
    fail_preallocate: Rc<Cell<bool>>,
    writes: Rc<Cell<usize>>,
    syncs: Rc<Cell<usize>>,
}

#[derive(Clone, Default)]
struct FaultyStorage(Faults);

struct FaultyFile {
    inner: Rc<DmaSegmentFile>,
    faults: Faults,
}

impl SegmentFile for FaultyFile {
    type Buf = <DmaSegmentFile as SegmentFile>::Buf;
    fn alloc_buf(&self, len: usize) -> Self::Buf {
        self.inner.alloc_buf(len)
    }
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> io::Result<()> {
        self.faults.writes.set(self.faults.writes.get() + 1);
        if self.faults.fail_writes.get() || self.faults.fail_write_at.get() == Some(pos) {
            return Err(io::Error::other("injected write failure"));
        }
        self.inner.write_at(buf, pos).await
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_at(pos, len).await
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.faults.syncs.set(self.faults.syncs.get() + 1);
        if self.faults.fail_syncs.get() {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.inner.sync_data().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len).await
    }
    async fn preallocate(&self, len: u64) -> io::Result<()> {
        if self.faults.fail_preallocate.get() {
            return Err(io::Error::other("injected fallocate failure (ENOSPC)"));
        }
        self.inner.preallocate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
}

impl SegmentStorage for FaultyStorage {
    type File = FaultyFile;
    async fn open(&self, path: &Path, create: bool) -> io::Result<Rc<FaultyFile>> {
        Ok(Rc::new(FaultyFile { inner: DmaStorage.open(path, create).await?, faults: self.0.clone() }))
    }
}

fn batch(tag: &str) -> Vec<u8> {
    let v = tag.as_bytes().to_vec();
    build_batch(0, 1, &[RecordSpec { key: None, value: Some(&v), headers: vec![], timestamp_delta: 0 }])
}

fn run<F: std::future::Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).spawn(f).unwrap().join().unwrap();
}

fn check(fail_sync: bool) {
    run(move || async move {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        probe_direct_io(tmp).await.unwrap();
        let d = tempfile::tempdir_in(tmp).unwrap();
        let storage = FaultyStorage::default();
        let faults = storage.0.clone();
        let log = RefCell::new(
            PartitionLog::open(
                storage,
                d.path(),
                LogConfig::kafka_defaults(),
                ringbroker_engine::cache::CacheLedger::new(1 << 20),
            )
            .await
            .unwrap(),
        );
        let append = |tag: &str| {
            let raw = batch(tag);
            let h = validate_batch(&raw).unwrap();
            log.borrow_mut().append(BytesMut::from(&raw[..]), &h, 0, 0)
        };
        append("ok").unwrap();
        PartitionLog::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(log.borrow().durable.get(), 1);

        if fail_sync {
            faults.fail_syncs.set(true);
        } else {
            faults.fail_writes.set(true);
        }
        append("doomed").unwrap();
        let durable = log.borrow().durable.clone();
        let waiter = durable.wait_for(2);
        let err = PartitionLog::flush_once(&log, 0, false).await.unwrap_err();
        assert!(matches!(err, EngineError::Poisoned(_)), "{err}");
        // The producer waiting for the doomed record is told, not acknowledged.
        assert!(waiter.await.is_err());
        assert_eq!(log.borrow().durable.get(), 1, "nothing after the failure is durable");
        assert_eq!(log.borrow().local_commit_end(), 1, "consumers never see the unsynced record");
        assert!(log.borrow().poisoned().is_some());
        // Further appends are refused; flushing does not retry the failed I/O.
        assert!(matches!(append("later"), Err(EngineError::Poisoned(_))));
        let (w, s) = (faults.writes.get(), faults.syncs.get());
        faults.fail_writes.set(false);
        faults.fail_syncs.set(false);
        assert!(PartitionLog::flush_once(&log, 0, false).await.is_err());
        assert_eq!((faults.writes.get(), faults.syncs.get()), (w, s), "no silent retry");
    });
}

#[test]
fn failed_write_poisons_the_partition() {
    check(false);
}

#[test]
fn failed_fdatasync_poisons_the_partition() {
    check(true);
}

async fn open_log(storage: FaultyStorage, dir: &Path) -> RefCell<PartitionLog<FaultyStorage>> {
    let cache = ringbroker_engine::cache::CacheLedger::new(64 << 20);
    RefCell::new(PartitionLog::open(storage, dir, LogConfig::kafka_defaults(), cache).await.unwrap())
}

/// Appends one batch holding one record with `value`.
fn append_value(log: &RefCell<PartitionLog<FaultyStorage>>, value: &[u8]) {
    let raw = build_batch(0, 1, &[RecordSpec { key: None, value: Some(value), headers: vec![], timestamp_delta: 0 }]);
    let h = validate_batch(&raw).unwrap();
    log.borrow_mut().append(BytesMut::from(&raw[..]), &h, 0, 0).unwrap();
}

/// One chunk of a multi-chunk round fails: the partition is poisoned, nothing
/// of that round is acknowledged, rounds before it are, and after a restart
/// the log holds every acknowledged batch followed only by whole batches.
#[test]
fn failed_chunk_write_poisons_and_keeps_earlier_rounds() {
    run(|| async {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        probe_direct_io(tmp).await.unwrap();
        let d = tempfile::tempdir_in(tmp).unwrap();
        let storage = FaultyStorage::default();
        let faults = storage.0.clone();
        let log = open_log(storage, d.path()).await;
        let append = |n: usize| append_value(&log, &vec![b'x'; n]);
        append(100);
        PartitionLog::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(log.borrow().durable.get(), 1);
        // ~3 MiB more: the next round is four chunks; the second one fails.
        for _ in 0..30 {
            append(100_000);
        }
        faults.fail_write_at.set(Some(1 << 20));
        let durable = log.borrow().durable.clone();
        let waiter = durable.wait_for(31);
        assert!(PartitionLog::flush_once(&log, 0, false).await.is_err());
        assert!(waiter.await.is_err(), "the failed round is not acknowledged");
        assert_eq!(log.borrow().durable.get(), 1);
        assert!(log.borrow().poisoned().is_some());
        drop(log);
        faults.fail_write_at.set(None);
        let log = open_log(FaultyStorage(faults.clone()), d.path()).await;
        let next = log.borrow().next_offset();
        assert!(next >= 1, "the acknowledged batch survives");
        assert!(next < 31, "nothing past the hole the failed chunk left is recovered");
    });
}

/// A disk too full to reserve the next preallocation step still takes the
/// data: the round writes without the reservation and is acknowledged.
#[test]
fn failed_preallocation_does_not_fail_the_write() {
    run(|| async {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        probe_direct_io(tmp).await.unwrap();
        let d = tempfile::tempdir_in(tmp).unwrap();
        let storage = FaultyStorage::default();
        storage.0.fail_preallocate.set(true);
        let log = open_log(storage, d.path()).await;
        for i in 0..40 {
            append_value(&log, &vec![b'a' + (i % 26) as u8; 100_000]);
        }
        PartitionLog::flush_once(&log, 0, false).await.unwrap();
        assert_eq!(log.borrow().durable.get(), 40);
        assert!(log.borrow().poisoned().is_none());
    });
}
