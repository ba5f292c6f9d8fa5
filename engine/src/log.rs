//! `PartitionLog`: one partition's ordered, durable log.
//!
//! Owned by exactly one shard (the partition's owner), kept in an
//! `Rc<RefCell<..>>` there; no borrow is ever held across an await.
//!
//! The write path is split so that ordering never waits on I/O:
//! - `append` (synchronous) validates nothing new — the caller validated the
//!   batch — assigns offsets, stamps the batch and queues it in `recent`, the
//!   in-memory tail that is both the write queue and the batch cache.
//! - the partition's flusher task (`flush_once`) takes everything queued,
//!   copies it once into aligned 1 MiB buffers starting at the last partial
//!   block of the active segment, writes them with O_DIRECT (all at once),
//!   and fdatasyncs according to the flush policy. Appends that arrive during
//!   a flush are taken by the next one: that is the group commit. Rolls and
//!   close take turns with flushes (`with_flush_turn`).
//! - producers that need durability await `durable` reaching their last offset.
//!
//! Offsets, in order: log_start <= next_offset and durable <= written <=
//! next_offset. The high watermark (what consumers may see) is not the log's
//! business: the partition layer above (`ringbroker_replication::partition`)
//! owns it, because with replication it depends on other brokers. Every read
//! here takes the visible end (`upper`) as an argument. What the log alone
//! can vouch for is `local_commit_end`: the durable offset under
//! `flush.policy=always` (a crash cannot take it back), the log end otherwise.
//!
//! Two entry points write: `append` (the leader: offsets assigned here,
//! the leader epoch stamped) and `append_replicated` (a follower: offsets and
//! epochs as the leader gave them). `truncate_to` takes a suffix back (a
//! follower whose log diverged from a new leader's).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader};
use crate::cache::CacheLedger;
use crate::config::{FlushPolicy, LogConfig, TimestampType};
use crate::io::{align_down, align_up, IoBuf, SegmentFile, SegmentStorage, IO_ALIGN};
use crate::notify::{Doorbell, OffsetWatch};
use crate::producer_state::{last_sequence, BatchMeta, ProducerStateMap, SequenceCheck};
use crate::readahead::Readahead;
use crate::segment::{log_path, Segment};
use crate::EngineError;

/// Most bytes one write round of the flusher takes before it updates the
/// indexes (and loops for more).
const MAX_ROUND_BYTES: usize = 16 << 20;
/// A round is cut into direct-I/O writes of this size, all issued at once:
/// one write at a time leaves the disk idle between completions (this VM's
/// disk does ~1.3 GB/s at 1 MiB QD1 and ~2 GB/s at QD4+).
const WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Preallocation of the active segment grows with it: a new segment reserves
/// the minimum, and each step reserves as much again as is written, up to the
/// maximum. Thousands of idle partitions then cost little disk, and a busy
/// one reserves in large steps.
const PREALLOCATE_MIN: u64 = 1 << 20;
const PREALLOCATE_STEP: u64 = 64 << 20;
/// File holding the log start offset moved by DeleteRecords or retention.
const LOG_START_FILE: &str = "log-start-offset";

/// A batch held in memory: queued for writing, then kept as read cache.
#[derive(Clone, Debug)]
pub struct CachedBatch {
    /// Admission number in the shard's `CacheLedger`.
    pub seq: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: Bytes,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// Broker time stamped on LogAppendTime topics, else -1.
    pub log_append_time_ms: i64,
    /// The batch was a producer retry already in the log: nothing appended,
    /// the offsets are the original ones.
    pub duplicate: bool,
}

/// Result of a read: whole batches, at most about `max_bytes` (but always at
/// least one batch if any exists, as Kafka does so that a large batch can
/// never block a consumer).
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub chunks: Vec<Bytes>,
    pub bytes: usize,
}

impl ReadResult {
    /// One contiguous buffer for the response encoder.
    pub fn into_bytes(self) -> Bytes {
        match self.chunks.len() {
            0 => Bytes::new(),
            1 => self.chunks.into_iter().next().unwrap(),
            _ => {
                let mut b = BytesMut::with_capacity(self.bytes);
                for c in &self.chunks {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        }
    }
}

pub struct PartitionLog<S: SegmentStorage> {
    storage: S,
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment<S::File>>,
    log_start_offset: i64,
    next_offset: i64,
    written_offset: i64,
    /// Bumped when a truncation starts and when it ends: a compaction that
    /// read segments before or during a truncation must not install its
    /// result after it.
    truncations: u64,
    /// A truncation is cutting segments: appends, retention and DeleteRecords
    /// wait for it to finish (they are refused meanwhile).
    truncating: bool,
    /// Batches in memory, oldest first, contiguous and ending at next_offset.
    recent: VecDeque<CachedBatch>,
    recent_bytes: usize,
    cache: Rc<CacheLedger>,
    /// The active segment's last partial block, rewritten by the next flush.
    carry: Vec<u8>,
    preallocated_to: u64,
    /// A disk read started for the next catch-up fetch (readahead.rs).
    readahead: Option<Readahead<S::File>>,
    poisoned: Option<String>,
    flushing: bool,
    /// Idempotent-producer state including queued batches (checked on append).
    producers: ProducerStateMap,
    /// The same, as of `written_offset`: what a snapshot at a roll holds.
    producers_written: ProducerStateMap,
    last_sync_ms: i64,
    /// Everything below is fdatasync'ed.
    pub durable: OffsetWatch,
    /// Rung when there is something to flush.
    pub flush_bell: Doorbell,
}

impl<S: SegmentStorage> Drop for PartitionLog<S> {
    /// The shard's ledger stops counting this partition's cached batches.
    fn drop(&mut self) {
        for b in &self.recent {
            self.cache.forget(b.seq);
        }
    }
}

impl<S: SegmentStorage + Clone> PartitionLog<S> {
    /// Opens (recovering) or creates the partition in `dir`.
    pub async fn open(storage: S, dir: &Path, config: LogConfig, cache: Rc<CacheLedger>) -> Result<Self, EngineError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::Io {
                op: "create partition dir",
                path: dir.to_path_buf(),
                source: e,
            })?;
            if let Some(parent) = dir.parent() {
                crate::segment::sync_dir(parent)?;
            }
        }
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(|e| EngineError::Io { op: "list partition dir", path: dir.to_path_buf(), source: e })?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let base = name.strip_suffix(".log")?;
                base.parse::<i64>().ok()
            })
            .collect();
        bases.sort_unstable();
        // Leftovers of an interrupted segment swap (compaction) are discarded.
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }

        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let is_last = i + 1 == bases.len();
            let seg = Segment::recover(&storage, dir, base, is_last).await?;
            segments.insert(base, seg);
        }
        let checkpoint_start =
            std::fs::read_to_string(dir.join(LOG_START_FILE)).ok().and_then(|s| s.trim().parse::<i64>().ok());
        let next_offset = segments.values().next_back().map(|s| s.next_offset).unwrap_or(0);
        let first_base = segments.keys().next().copied().unwrap_or(next_offset);
        let log_start_offset = checkpoint_start.unwrap_or(first_base).max(first_base).min(next_offset);
        if segments.is_empty() {
            let seg = Segment::create(&storage, dir, next_offset, PREALLOCATE_MIN.min(config.segment_bytes)).await?;
            segments.insert(next_offset, seg);
        }
        let active = segments.values().next_back().expect("one segment at least");
        let carry = active.read_tail_block().await?;
        let preallocated_to = align_up(active.size);
        let log = std::cell::RefCell::new(PartitionLog {
            storage,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            next_offset,
            written_offset: next_offset,
            truncations: 0,
            truncating: false,
            recent: VecDeque::new(),
            recent_bytes: 0,
            cache,
            carry,
            preallocated_to,
            readahead: None,
            poisoned: None,
            flushing: false,
            producers: ProducerStateMap::default(),
            producers_written: ProducerStateMap::default(),
            last_sync_ms: 0,
            durable: OffsetWatch::new(next_offset),
            flush_bell: Doorbell::default(),
        });
        Self::rebuild_producer_state(&log).await?;
        Ok(log.into_inner())
    }

    /// Rebuilds idempotent-producer state: the newest usable snapshot, then
    /// the headers of every batch after it. Snapshots are taken at each roll,
    /// so the scan covers at most the active segment.
    async fn rebuild_producer_state(this: &std::cell::RefCell<Self>) -> Result<(), EngineError> {
        let (dir, start, end) = {
            let s = this.borrow();
            (s.dir.clone(), s.log_start_offset, s.next_offset)
        };
        let mut snapshots = list_snapshots(&dir);
        snapshots.sort_unstable_by(|a, b| b.cmp(a));
        let mut map = ProducerStateMap::default();
        let mut from = start;
        for off in snapshots {
            if off > end {
                // Taken before a torn tail was truncated away: stale.
                let _ = std::fs::remove_file(snapshot_path(&dir, off));
                continue;
            }
            if let Some(m) = std::fs::read(snapshot_path(&dir, off)).ok().and_then(|b| ProducerStateMap::decode(&b)) {
                map = m;
                from = off.max(start);
                break;
            }
        }
        let mut offset = from;
        while offset < end {
            let r = Self::read_disk(this, offset, 1 << 20, end).await?;
            if r.chunks.is_empty() {
                break;
            }
            let data = r.into_bytes();
            let mut at = 0;
            while at + batch::BATCH_HEADER_LEN <= data.len() {
                let h = BatchHeader::parse(&data[at..]).map_err(EngineError::Batch)?;
                if h.last_offset() >= offset {
                    record_header(&mut map, &h, h.max_timestamp);
                    offset = h.last_offset() + 1;
                }
                at += h.total_len();
            }
        }
        let mut s = this.borrow_mut();
        s.producers_written = map.clone();
        s.producers = map;
        Ok(())
    }

    /// Forgets producers idle longer than `producer.id.expiration.ms`.
    pub fn expire_producers(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers_written.expire(now_ms, expiration_ms);
        self.producers.expire(now_ms, expiration_ms)
    }

    /// Idempotent producers' state as of the last append.
    pub fn producers(&self) -> &ProducerStateMap {
        &self.producers
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    /// Drops cached batches the shard's ledger has retired (see `cache`).
    /// Unwritten batches stay: they are the write queue.
    pub fn evict_cache(&mut self) {
        let below = self.cache.evict_below();
        while self.recent.front().is_some_and(|b| b.seq < below && b.last_offset < self.written_offset) {
            self.drop_oldest_cached();
        }
    }

    /// Bytes of this partition's batches held in memory.
    pub fn cached_bytes(&self) -> usize {
        self.recent_bytes
    }

    fn drop_oldest_cached(&mut self) {
        let b = self.recent.pop_front().expect("caller checked");
        self.recent_bytes -= b.bytes.len();
        self.cache.forget(b.seq);
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    /// The end a single replica can commit on its own: the durable offset
    /// under `flush.policy=always`, else the log end (the operator traded
    /// durability for latency).
    pub fn local_commit_end(&self) -> i64 {
        match self.config.flush_policy {
            FlushPolicy::Always => self.durable.get(),
            FlushPolicy::Interval | FlushPolicy::Never => self.next_offset,
        }
    }
    pub fn truncations(&self) -> u64 {
        self.truncations
    }
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum::<u64>() + self.unwritten_bytes() as u64
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    fn unwritten_bytes(&self) -> usize {
        let first_unwritten = self.recent.partition_point(|b| b.base_offset < self.written_offset);
        self.recent.range(first_unwritten..).map(|b| b.bytes.len()).sum()
    }

    /// Appends one validated batch (its header parsed by the caller), assigning
    /// offsets and stamping `leader_epoch`. Never waits: durability is
    /// awaited separately.
    pub fn append(
        &mut self,
        mut raw: BytesMut,
        header: &BatchHeader,
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo, EngineError> {
        if let Some(reason) = &self.poisoned {
            return Err(EngineError::Poisoned(reason.clone()));
        }
        if self.truncating {
            return Err(EngineError::Truncating);
        }
        assert_eq!(raw.len(), header.total_len(), "caller passes exactly one batch");
        let base = self.next_offset;
        let count = header.last_offset_delta as i64 + 1;
        let last_seq = last_sequence(header.base_sequence, header.record_count);
        match self.producers.check(header.producer_id, header.producer_epoch, header.base_sequence, last_seq)? {
            SequenceCheck::Append => {}
            SequenceCheck::Duplicate { first_offset, last_offset } => {
                return Ok(AppendInfo {
                    base_offset: first_offset,
                    last_offset,
                    log_append_time_ms: -1,
                    duplicate: true,
                });
            }
        }
        batch::stamp_offsets(&mut raw, base, leader_epoch);
        let mut log_append_time_ms = -1;
        let mut max_ts = header.max_timestamp;
        if self.config.message_timestamp_type == TimestampType::LogAppendTime {
            batch::set_log_append_time(&mut raw, now_ms);
            log_append_time_ms = now_ms;
            max_ts = now_ms;
        }
        let last = base + count - 1;
        let meta = BatchMeta {
            first_seq: header.base_sequence,
            last_seq,
            first_offset: base,
            last_offset: last,
            max_timestamp: max_ts,
        };
        self.producers.record(header.producer_id, header.producer_epoch, meta, now_ms);
        self.enqueue(raw.freeze(), base, last, max_ts);
        Ok(AppendInfo { base_offset: base, last_offset: last, log_append_time_ms, duplicate: false })
    }

    /// Appends one batch exactly as another replica (the leader) stored it:
    /// its offsets and leader epoch are kept, not assigned. The batch must
    /// start at or after the log end (compaction on the leader can leave
    /// gaps) and has been validated by the caller. Idempotent-producer
    /// state is recorded, not checked: the leader checked it.
    pub fn append_replicated(&mut self, raw: Bytes, header: &BatchHeader, now_ms: i64) -> Result<(), EngineError> {
        if let Some(reason) = &self.poisoned {
            return Err(EngineError::Poisoned(reason.clone()));
        }
        if self.truncating {
            return Err(EngineError::Truncating);
        }
        assert_eq!(raw.len(), header.total_len(), "caller passes exactly one batch");
        if header.base_offset < self.next_offset || header.last_offset_delta < 0 {
            return Err(EngineError::OffsetOutOfRange {
                offset: header.base_offset,
                start: self.next_offset,
                end: i64::MAX,
            });
        }
        record_header(&mut self.producers, header, now_ms);
        self.enqueue(raw, header.base_offset, header.last_offset(), header.max_timestamp);
        Ok(())
    }

    /// Queues a stamped batch for writing (and as read cache).
    fn enqueue(&mut self, bytes: Bytes, base: i64, last: i64, max_timestamp: i64) {
        debug_assert!(base >= self.next_offset && last >= base);
        self.recent_bytes += bytes.len();
        let seq = self.cache.admit(bytes.len());
        self.recent.push_back(CachedBatch { seq, base_offset: base, last_offset: last, max_timestamp, bytes });
        self.evict_cache();
        self.next_offset = last + 1;
        self.flush_bell.ring();
    }

    /// True if the flusher has something to do now under the flush policy.
    pub fn wants_flush(&self, now_ms: i64) -> bool {
        let unwritten = self.written_offset < self.next_offset;
        let unsynced = self.durable.get() < self.next_offset;
        match self.config.flush_policy {
            FlushPolicy::Always => unwritten || unsynced,
            FlushPolicy::Interval => {
                unsynced
                    && (now_ms - self.last_sync_ms >= self.config.flush_ms as i64
                        || self.next_offset - self.durable.get() >= self.config.flush_messages)
            }
            FlushPolicy::Never => self.unwritten_bytes() >= 1 << 20,
        }
    }

    fn poison(&mut self, reason: String) -> EngineError {
        tracing::error!(dir = %self.dir.display(), %reason, "partition poisoned: refusing writes");
        self.poisoned = Some(reason.clone());
        self.durable.fail(reason.clone());
        EngineError::Poisoned(reason)
    }

    /// Rolls the active segment if the next batch would not fit or it is too old.
    fn needs_roll(&self, next_len: u64, now_ms: i64) -> bool {
        let active = self.segments.values().next_back().expect("active segment");
        if active.size == 0 {
            return false;
        }
        active.size + next_len > self.config.segment_bytes
            || self.segment_too_old(active, now_ms)
            || active.index.len().saturating_add(1).saturating_mul(crate::index::OFFSET_INDEX_ENTRY_LEN)
                > self.config.segment_index_bytes as usize
            || active.size + next_len > u32::MAX as u64
    }

    async fn roll(this: &std::cell::RefCell<Self>, now_ms: i64) -> Result<(), EngineError> {
        let _ = now_ms;
        let (storage, dir, base, step) = {
            let s = this.borrow();
            (s.storage_clone(), s.dir.clone(), s.written_offset, PREALLOCATE_MIN.min(s.config.segment_bytes))
        };
        // Seal the active segment: cut to size and sync through its Rc'd
        // file, so the segment stays visible to readers meanwhile.
        let (file, size) = {
            let s = this.borrow();
            let active = s.segments.values().next_back().expect("active");
            (active.file.clone(), active.size)
        };
        let path = file.path().to_path_buf();
        file.truncate(size).await.map_err(|e| EngineError::Io {
            op: "truncate on seal",
            path: path.clone(),
            source: e,
        })?;
        file.sync_data().await.map_err(|e| EngineError::Io { op: "fdatasync on seal", path, source: e })?;
        {
            let mut s = this.borrow_mut();
            let active = s.segments.values_mut().next_back().expect("active");
            active.persist_index_tail()?;
            active.sealed = true;
            active.release_index_files();
            // Everything below `base` is written: snapshot the producer state
            // so recovery never has to scan older segments for it.
            write_producer_snapshot(&s.dir, base, &s.producers_written)?;
        }
        let seg = Segment::create(&storage, &dir, base, step).await?;
        let mut s = this.borrow_mut();
        s.segments.insert(base, seg);
        s.carry.clear();
        s.preallocated_to = step;
        Ok(())
    }

    /// One flush: write everything queued (rolling segments as needed), then
    /// fdatasync if the policy says so. Waits for a flush, roll or close
    /// already running on this partition (see `with_flush_turn`).
    pub async fn flush_once(this: &std::cell::RefCell<Self>, now_ms: i64, force_sync: bool) -> Result<(), EngineError> {
        Self::with_flush_turn(this, Self::flush_inner(this, now_ms, force_sync)).await
    }

    /// Runs `work` as the only flush-like operation of the partition:
    /// flushes, time-based rolls and close take turns. A flush round records
    /// its batches against the active segment after its writes complete, so
    /// nothing may roll or seal that segment meanwhile: a roll that slipped
    /// in between (it used to, when a housekeeping roll found the flusher
    /// busy and went ahead) indexed the batches into the new segment while
    /// their bytes were in the old one, past its sealed end, and recovery
    /// then dropped acknowledged data. Waiters poll; turns are short and
    /// contention is rare (housekeeping rolls and shutdown). A failure
    /// poisons the partition.
    async fn with_flush_turn(
        this: &std::cell::RefCell<Self>,
        work: impl std::future::Future<Output = Result<(), EngineError>>,
    ) -> Result<(), EngineError> {
        loop {
            {
                let mut s = this.borrow_mut();
                if let Some(r) = &s.poisoned {
                    return Err(EngineError::Poisoned(r.clone()));
                }
                if !s.flushing {
                    s.flushing = true;
                    break;
                }
            }
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        let res = work.await;
        let mut s = this.borrow_mut();
        s.flushing = false;
        match res {
            Ok(()) => Ok(()),
            Err(e @ EngineError::Poisoned(_)) => Err(e),
            Err(e) => Err(s.poison(e.to_string())),
        }
    }

    async fn flush_inner(this: &std::cell::RefCell<Self>, now_ms: i64, force_sync: bool) -> Result<(), EngineError> {
        if let Err(e) = Self::write_pending(this, now_ms).await {
            // Rounds before the failing one were written in full (a disk that
            // fills up fails the last one): make them durable, so what fitted
            // is acknowledged, then fail (the caller poisons the partition).
            let target = this.borrow().written_offset;
            if this.borrow().durable.get() < target {
                let _ = Self::sync_to(this, now_ms, target).await;
            }
            return Err(e);
        }
        let need_sync = {
            let s = this.borrow();
            s.durable.get() < s.written_offset && (force_sync || s.config.flush_policy != FlushPolicy::Never)
        };
        if need_sync {
            let target = this.borrow().written_offset;
            Self::sync_to(this, now_ms, target).await?;
        }
        Ok(())
    }

    /// Writes everything queued, rolling segments as needed; no sync.
    async fn write_pending(this: &std::cell::RefCell<Self>, now_ms: i64) -> Result<(), EngineError> {
        loop {
            // Gather a run of queued batches that fit in the active segment.
            let (file, write_pos, bufs, batches, roll_first) = {
                let s = this.borrow();
                // `recent` is in offset order: unwritten batches are its tail.
                let first_unwritten = s.recent.partition_point(|b| b.base_offset < s.written_offset);
                let mut pending = s.recent.range(first_unwritten..).peekable();
                let Some(first) = pending.peek() else { break };
                if s.needs_roll(first.bytes.len() as u64, now_ms) {
                    (None, 0, Vec::new(), Vec::new(), true)
                } else {
                    let active = s.segments.values().next_back().expect("active");
                    let mut take = Vec::new();
                    let mut total = 0usize;
                    for b in pending {
                        if !take.is_empty()
                            && (total + b.bytes.len() > MAX_ROUND_BYTES
                                || active.size + (total + b.bytes.len()) as u64 > s.config.segment_bytes)
                        {
                            break;
                        }
                        total += b.bytes.len();
                        take.push(b.clone());
                    }
                    let write_pos = align_down(active.size);
                    assert_eq!(
                        active.size - write_pos,
                        s.carry.len() as u64,
                        "carry holds exactly the partial last block"
                    );
                    let bufs = fill_chunks(&*active.file, &s.carry, &take);
                    (Some(active.file.clone()), write_pos, bufs, take, false)
                }
            };
            if roll_first {
                Self::roll(this, now_ms).await?;
                continue;
            }
            let file = file.expect("file");
            let end = write_pos + align_up(buf_len(&batches, this.borrow().carry.len()) as u64);
            // Preallocate ahead in large steps so that most flushes write into
            // reserved space.
            let prealloc = {
                let s = this.borrow();
                if end > s.preallocated_to {
                    let step = s.preallocated_to.clamp(PREALLOCATE_MIN, PREALLOCATE_STEP);
                    Some((s.preallocated_to + step).max(end).min(s.config.segment_bytes.max(end)))
                } else {
                    None
                }
            };
            if let Some(to) = prealloc {
                // Reserving is an optimisation: when the step does not fit
                // (a nearly full disk), write without it. The write itself
                // then fails only if the data really does not fit, and that
                // poisons the partition; failing here would refuse data the
                // disk still had room for.
                match file.preallocate(to).await {
                    Ok(()) => this.borrow_mut().preallocated_to = to,
                    Err(e) => {
                        // Not again for this segment (one warning, no retry per flush).
                        this.borrow_mut().preallocated_to = u64::MAX;
                        tracing::warn!(path = %file.path().display(), error = %e, "preallocation failed; writing without it");
                    }
                }
            }
            // The chunks cover disjoint aligned ranges, so they may complete in
            // any order: a crash can leave a hole, and recovery keeps only the
            // valid prefix. Nothing here is synced (or, under flush=always,
            // acknowledged) yet, and the index tail is persisted below only
            // after every chunk completed, so no index entry points past a hole.
            let writes = bufs.into_iter().enumerate().map(|(i, buf)| {
                let file = &file;
                async move { file.write_at(buf, write_pos + (i * WRITE_CHUNK_BYTES) as u64).await }
            });
            futures::future::try_join_all(writes).await.map_err(|e| EngineError::Io {
                op: "write",
                path: file.path().to_path_buf(),
                source: e,
            })?;
            let mut s = this.borrow_mut();
            let interval = s.config.index_interval_bytes;
            let active_base = *s.segments.keys().next_back().expect("active");
            let old_carry = std::mem::take(&mut s.carry);
            let mut written_headers = Vec::with_capacity(batches.len());
            let tail = {
                let seg = s.segments.get_mut(&active_base).expect("active");
                for b in &batches {
                    let h = BatchHeader::parse(&b.bytes).expect("queued batches were validated");
                    let pos = seg.size;
                    seg.note_batch(pos, &h, interval, now_ms);
                    written_headers.push(h);
                }
                // New carry: the bytes of the last partial block.
                let keep = (seg.size - align_down(seg.size)) as usize;
                tail_bytes(&old_carry, &batches, keep)
            };
            s.carry = tail;
            s.written_offset = batches.last().expect("non-empty").last_offset + 1;
            for h in &written_headers {
                record_header(&mut s.producers_written, h, now_ms);
            }
            let seg = s.segments.get_mut(&active_base).expect("active");
            seg.persist_index_tail()?;
            s.evict_cache();
        }
        Ok(())
    }

    /// Makes everything below `target` (already written) durable. Segments
    /// before the active one were synced when sealed, and the active segment
    /// is looked up now, after any roll that moved `target` past a seal.
    async fn sync_to(this: &std::cell::RefCell<Self>, now_ms: i64, target: i64) -> Result<(), EngineError> {
        let file = {
            let s = this.borrow();
            assert!(target <= s.written_offset, "only written data can be synced");
            s.segments.values().next_back().expect("active").file.clone()
        };
        file.sync_data().await.map_err(|e| EngineError::Io {
            op: "fdatasync",
            path: file.path().to_path_buf(),
            source: e,
        })?;
        let mut s = this.borrow_mut();
        s.last_sync_ms = now_ms;
        s.durable.advance(target);
        Ok(())
    }

    fn storage_clone(&self) -> S {
        self.storage.clone()
    }

    /// Reads whole batches starting at the one containing `offset`, ending
    /// below `upper` (the high watermark, for consumers). `None` means the
    /// data is on disk: see `read_disk`.
    pub fn read_cached(&self, offset: i64, max_bytes: usize, upper: i64) -> Option<ReadResult> {
        let hw = upper;
        let first = self.recent.front()?;
        if offset < first.base_offset {
            return None;
        }
        let mut out = ReadResult::default();
        // Binary search for the batch containing offset.
        let idx = self.recent.partition_point(|b| b.last_offset < offset);
        for b in self.recent.range(idx..) {
            if b.last_offset >= hw {
                break;
            }
            if !out.chunks.is_empty() && out.bytes + b.bytes.len() > max_bytes {
                break;
            }
            out.bytes += b.bytes.len();
            out.chunks.push(b.bytes.clone());
        }
        Some(out)
    }

    /// Plans a disk read: the segment file, the position to start at and how
    /// many bytes are valid there.
    pub fn plan_disk_read(&self, offset: i64) -> Option<(Rc<S::File>, u64, u64)> {
        let (_, seg) = self.segments.range(..=offset).next_back()?;
        let (_, pos) = seg.index.lookup(offset);
        // Only bytes already written are readable from the file.
        Some((seg.file.clone(), pos as u64, seg.size))
    }

    /// Reads from segment files (the cache did not hold `offset`), using and
    /// then starting a readahead (readahead.rs) for sequential consumers.
    pub async fn read_disk(
        this: &std::cell::RefCell<Self>,
        offset: i64,
        max_bytes: usize,
        upper: i64,
    ) -> Result<ReadResult, EngineError> {
        let hw = upper;
        let mut offset = offset;
        // Where to go on reading in a segment whose first read ended below `offset`.
        let mut resume: Option<(Rc<S::File>, u64)> = None;
        loop {
            let plan = this.borrow().plan_disk_read(offset);
            let Some((file, mut pos, valid_end)) = plan else { return Ok(ReadResult::default()) };
            if let Some((f, p)) = resume.take() {
                if Rc::ptr_eq(&f, &file) {
                    pos = pos.max(p);
                }
            }
            if pos >= valid_end {
                // Past this segment's data: continue in the next segment, if
                // any (Kafka serves the first batch at or after the offset,
                // across a gap that compaction left).
                let next = {
                    let s = this.borrow();
                    s.segments.range(offset + 1..).next().map(|(b, _)| *b)
                };
                match next {
                    Some(b) => {
                        offset = b;
                        continue;
                    }
                    None => return Ok(ReadResult::default()),
                }
            }
            let want = ((valid_end - pos) as usize).min(max_bytes.max(64 << 10) + (64 << 10));
            // A readahead started for exactly this offset, in this very file
            // (not a segment deleted or rewritten since), saves the read.
            let ahead = this.borrow_mut().readahead.take_if(|ra| ra.offset == offset && Rc::ptr_eq(&ra.file, &file));
            let mut got = None;
            if let Some(mut ra) = ahead {
                if let Ok(data) = (&mut ra.task).await {
                    got = Some((ra.pos, data));
                }
            }
            let (start, data) = match got {
                Some(g) => g,
                None => (pos, read_at(&*file, pos, want).await?),
            };
            // The batches to return, and where they end in the file.
            let (span, span_end) = match pick_batches(&data, offset, hw, max_bytes) {
                Picked::Span(a, b) => (data.slice(a..b), start + b as u64),
                Picked::Nothing => return Ok(ReadResult::default()),
                Picked::Below(consumed) => {
                    // Read on from where the batches ended; with nothing
                    // readable left there, the loop moves to the next segment.
                    let end = if consumed == 0 { valid_end } else { start + consumed as u64 };
                    resume = Some((file.clone(), end.max(pos + 1)));
                    continue;
                }
                Picked::NeedMore(total) => {
                    // A single batch bigger than the read: fetch it whole.
                    let data = read_at(&*file, start, total).await?;
                    match pick_batches(&data, offset, hw, usize::MAX) {
                        Picked::Span(a, _) => {
                            let h = BatchHeader::parse(&data[a..]).map_err(EngineError::Batch)?;
                            let b = a + h.total_len();
                            (data.slice(a..b), start + b as u64)
                        }
                        _ => return Ok(ReadResult::default()),
                    }
                }
            };
            Self::read_ahead(this, &file, span_end, last_offset_in(&span) + 1, max_bytes);
            return Ok(ReadResult { bytes: span.len(), chunks: vec![span] });
        }
    }

    /// Starts reading what follows `pos` in `file` for the fetch that will
    /// ask for `next_offset`, if there is more on disk there.
    fn read_ahead(this: &std::cell::RefCell<Self>, file: &Rc<S::File>, pos: u64, next_offset: i64, max_bytes: usize) {
        let mut s = this.borrow_mut();
        let Some((_, seg)) = s.segments.range(..=next_offset).next_back() else { return };
        if !Rc::ptr_eq(&seg.file, file) || pos >= seg.size {
            return; // the next fetch starts in another segment, or at the end
        }
        let len = ((seg.size - pos) as usize).min(max_bytes.max(64 << 10) + (64 << 10));
        // Replaces a readahead for another offset (released on drop).
        s.readahead = None;
        s.readahead = Readahead::start(&s.cache, next_offset, file.clone(), pos, len);
    }

    /// Earliest offset whose batch max timestamp is >= `ts`, as a candidate
    /// batch below `upper` (the caller finds the exact record inside). None:
    /// no such batch.
    pub async fn find_by_timestamp(
        this: &std::cell::RefCell<Self>,
        ts: i64,
        upper: i64,
    ) -> Result<Option<Bytes>, EngineError> {
        // Memory first if the cache covers the whole candidate range.
        let (seg_start, in_cache) = {
            let s = this.borrow();
            let seg = s
                .segments
                .iter()
                .find(|(_, seg)| seg.max_timestamp >= ts)
                .map(|(b, seg)| (*b, seg.time_index.lookup_start(ts).max(*b).max(s.log_start_offset)));
            let cache_hit = s
                .recent
                .iter()
                .find(|b| b.max_timestamp >= ts && b.last_offset < upper && b.last_offset >= s.log_start_offset)
                .map(|b| b.bytes.clone());
            (seg, cache_hit)
        };
        if let Some((_, start_offset)) = seg_start {
            let mut offset = start_offset;
            loop {
                let r = Self::read_disk(this, offset, 1 << 20, upper).await?;
                if r.chunks.is_empty() {
                    break;
                }
                let data = r.into_bytes();
                let mut at = 0;
                let mut last = offset;
                while at + batch::BATCH_HEADER_LEN <= data.len() {
                    let h = BatchHeader::parse(&data[at..]).map_err(EngineError::Batch)?;
                    if h.max_timestamp >= ts && h.last_offset() >= offset {
                        return Ok(Some(data.slice(at..at + h.total_len())));
                    }
                    last = h.last_offset();
                    at += h.total_len();
                }
                offset = last + 1;
            }
        }
        Ok(in_cache)
    }

    /// Moves the log start offset (DeleteRecords) up to at most `upper`
    /// (the high watermark); deletes whole segments below it.
    pub fn delete_records_before(&mut self, offset: i64, upper: i64) -> Result<i64, EngineError> {
        if self.truncating {
            return Err(EngineError::Truncating);
        }
        if offset > upper || offset < 0 {
            return Err(EngineError::OffsetOutOfRange { offset, start: self.log_start_offset, end: upper });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.checkpoint_log_start()?;
            self.drop_segments_below_start();
        }
        Ok(self.log_start_offset)
    }

    fn checkpoint_log_start(&self) -> Result<(), EngineError> {
        let p = self.dir.join(LOG_START_FILE);
        let tmp = self.dir.join("log-start-offset.new");
        std::fs::write(&tmp, self.log_start_offset.to_string()).map_err(|e| EngineError::Io {
            op: "write checkpoint",
            path: tmp.clone(),
            source: e,
        })?;
        std::fs::rename(&tmp, &p).map_err(|e| EngineError::Io { op: "rename checkpoint", path: p, source: e })
    }

    fn drop_segments_below_start(&mut self) {
        loop {
            let mut it = self.segments.iter();
            let (Some((&base, _)), Some((_, next))) = (it.next(), it.next()) else { break };
            if next.base_offset <= self.log_start_offset {
                let seg = self.segments.remove(&base).expect("present");
                seg.remove_files();
            } else {
                break;
            }
        }
        while self.recent.front().is_some_and(|b| b.last_offset < self.log_start_offset) {
            self.drop_oldest_cached();
        }
    }

    /// Applies retention.ms and retention.bytes to sealed segments. Returns
    /// how many segments were deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, EngineError> {
        // The next housekeeping round applies it once the truncation is done.
        if !self.config.cleanup_policy.delete || self.truncating {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            if self.segments.len() < 2 {
                break;
            }
            let total: u64 = self.segments.values().map(|s| s.size).sum();
            let (&base, seg) = self.segments.iter().next().expect("two");
            let by_time = self.config.retention_ms >= 0
                && seg.max_timestamp >= 0
                && now_ms - seg.max_timestamp > self.config.retention_ms;
            let by_size = self.config.retention_bytes >= 0 && total - seg.size >= self.config.retention_bytes as u64;
            // An empty sealed segment older than retention also goes.
            let by_time_empty = self.config.retention_ms >= 0 && seg.max_timestamp < 0 && seg.size == 0;
            if !(by_time || by_size || by_time_empty) || !seg.sealed {
                break;
            }
            let next_base = *self.segments.range(base + 1..).next().expect("two").0;
            let seg = self.segments.remove(&base).expect("present");
            seg.remove_files();
            deleted += 1;
            if self.log_start_offset < next_base {
                self.log_start_offset = next_base;
            }
        }
        if deleted > 0 {
            self.checkpoint_log_start()?;
            self.drop_segments_below_start();
        }
        Ok(deleted)
    }

    /// Sealed segments, oldest first (the cleaner's input).
    pub fn sealed_segments(&self) -> impl Iterator<Item = &Segment<S::File>> {
        self.segments.values().filter(|s| s.sealed)
    }

    pub(crate) fn storage_handle(&self) -> S {
        self.storage.clone()
    }

    pub fn active_base_offset(&self) -> i64 {
        *self.segments.keys().next_back().expect("active segment")
    }

    /// Segment `base` is still there and nothing was truncated since
    /// `truncations` was read (the cleaner's check before it swaps).
    pub(crate) fn segment_unchanged(&self, base: i64, truncations: u64) -> bool {
        self.segments.contains_key(&base) && self.truncations == truncations
    }

    /// Installs a compacted sealed segment.
    pub(crate) fn replace_sealed_segment(
        &mut self,
        base: i64,
        file: Rc<S::File>,
        size: u64,
        index: crate::index::OffsetIndex,
        time_index: crate::index::TimeIndex,
        max_timestamp: i64,
    ) -> Result<(), EngineError> {
        let seg_end = self.segments.range(base + 1..).next().map(|(b, _)| *b).unwrap_or(self.written_offset);
        let seg = self.segments.get_mut(&base).expect("checked by the caller");
        seg.install_cleaned(file, size, index, time_index, max_timestamp)?;
        // Cached copies of the segment's old batches would keep serving the
        // uncompacted data: drop them (they are all written, and a prefix).
        while self.recent.front().is_some_and(|b| b.last_offset < seg_end) {
            self.drop_oldest_cached();
        }
        Ok(())
    }

    /// Rolls the active segment by age even when idle (segment.ms).
    pub fn active_segment_expired(&self, now_ms: i64) -> bool {
        let active = self.segments.values().next_back().expect("active");
        active.size > 0 && self.segment_too_old(active, now_ms)
    }

    /// segment.ms (less the segment's jitter) has passed since the segment's
    /// first append; on compacted topics also max.compaction.lag.ms, so a
    /// record never waits in the active segment longer than the lag allows.
    fn segment_too_old(&self, seg: &Segment<S::File>, now_ms: i64) -> bool {
        let mut limit = self.config.roll_after_ms(seg.base_offset);
        if self.config.cleanup_policy.compact {
            limit = limit.min(self.config.max_compaction_lag_ms);
        }
        seg.first_append_ms.map(|t| now_ms.saturating_sub(t) >= limit).unwrap_or(false)
    }

    /// Takes back every batch from the one holding `offset` on (a follower
    /// whose tail diverged from a new leader's log) and returns the new log
    /// end: `offset`, or the base of a batch that straddled it.
    ///
    /// On disk, later segments go first and then the segment holding the cut
    /// is cut and synced, so a crash at any step leaves a valid prefix.
    /// Indexes, the batch cache, producer state, the cleaner's checkpoint and
    /// the durable watch follow; waiters on the durable watch fail (what they
    /// waited for is gone). Takes its turn with flushes, rolls and close.
    pub async fn truncate_to(this: &std::cell::RefCell<Self>, offset: i64) -> Result<i64, EngineError> {
        // Refused before taking the flush turn: an error inside it poisons.
        {
            let s = this.borrow();
            if offset < s.log_start_offset {
                return Err(EngineError::OffsetOutOfRange { offset, start: s.log_start_offset, end: s.next_offset });
            }
        }
        let mut new_end = None;
        let result = Self::with_flush_turn(this, async {
            {
                // Before the first await: nothing may swap, delete or append
                // segments under the cut from here on.
                let mut s = this.borrow_mut();
                s.truncating = true;
                s.truncations += 1;
            }
            new_end = Some(Self::truncate_inner(this, offset).await?);
            Ok(())
        })
        .await;
        {
            let mut s = this.borrow_mut();
            if s.truncating {
                s.truncating = false;
                s.truncations += 1;
            }
        }
        result?;
        Ok(new_end.expect("set when the truncation succeeded"))
    }

    async fn truncate_inner(this: &std::cell::RefCell<Self>, offset: i64) -> Result<i64, EngineError> {
        let (start, next, written) = {
            let s = this.borrow();
            (s.log_start_offset, s.next_offset, s.written_offset)
        };
        // DeleteRecords may have moved the start while this waited its turn:
        // nothing below the start is left to keep.
        let offset = offset.max(start);
        if offset >= next {
            return Ok(next);
        }
        let new_end = if offset >= written {
            // The cut is among batches still queued in memory.
            let s = this.borrow();
            let i = s.recent.partition_point(|b| b.last_offset < offset);
            s.recent.get(i).map(|b| b.base_offset.min(offset)).expect("queued batches reach the log end")
        } else {
            Self::cut_segments(this, offset).await?
        };
        let cut_written = {
            let mut s = this.borrow_mut();
            while s.recent.back().is_some_and(|b| b.last_offset >= new_end) {
                let b = s.recent.pop_back().expect("checked");
                s.recent_bytes -= b.bytes.len();
                s.cache.forget(b.seq);
            }
            s.next_offset = new_end;
            s.readahead = None;
            s.durable.truncate(new_end);
            crate::cleaner::clamp_checkpoint(&s.dir, new_end)?;
            if new_end >= s.written_offset {
                // Nothing written was cut: the written producer state stands,
                // and the queued batches that remain are replayed over it.
                let mut producers = s.producers_written.clone();
                for b in &s.recent {
                    if b.base_offset >= s.written_offset {
                        let h = BatchHeader::parse(&b.bytes).expect("queued batches were validated");
                        record_header(&mut producers, &h, h.max_timestamp);
                    }
                }
                s.producers = producers;
                false
            } else {
                s.written_offset = new_end;
                true
            }
        };
        if !cut_written {
            return Ok(new_end);
        }
        Self::rebuild_producer_state(this).await?;
        Ok(new_end)
    }

    /// Cuts the written log at the batch holding `offset` (below the written
    /// end): deletes later segments, cuts and re-opens the one holding it.
    /// Returns the new end.
    async fn cut_segments(this: &std::cell::RefCell<Self>, offset: i64) -> Result<i64, EngineError> {
        let (storage, dir, base, file, mut pos, size) = {
            let s = this.borrow();
            let (&base, seg) = s.segments.range(..=offset).next_back().expect("offset >= log start >= first base");
            let (_, pos) = seg.index.lookup(offset);
            (s.storage_clone(), s.dir.clone(), base, seg.file.clone(), pos as u64, seg.size)
        };
        // The first batch that ends at or after `offset` goes, with all after it.
        let mut new_end = offset;
        while pos + batch::BATCH_HEADER_LEN as u64 <= size {
            let head = read_at(&*file, pos, batch::BATCH_HEADER_LEN).await?;
            let h = BatchHeader::parse(&head).map_err(EngineError::Batch)?;
            if h.last_offset() >= offset {
                new_end = h.base_offset.min(offset);
                break;
            }
            pos += h.total_len() as u64;
        }
        let pos = pos.min(size);
        let later: Vec<i64> = this.borrow().segments.range(base + 1..).map(|(b, _)| *b).collect();
        for b in later.into_iter().rev() {
            let seg = this.borrow_mut().segments.remove(&b).expect("listed");
            seg.remove_files();
        }
        crate::segment::sync_dir(&dir)?;
        let path = file.path().to_path_buf();
        file.truncate(pos).await.map_err(|e| EngineError::Io { op: "truncate", path: path.clone(), source: e })?;
        file.sync_data().await.map_err(|e| EngineError::Io { op: "fdatasync after truncate", path, source: e })?;
        // Re-open the cut segment as the active one: recovery drops index
        // entries past the new end and rewrites the index files.
        this.borrow_mut().segments.remove(&base);
        drop(file);
        let seg = Segment::recover(&storage, &dir, base, true).await?;
        let carry = seg.read_tail_block().await?;
        assert!(seg.next_offset <= new_end, "the cut segment ends at or before the cut");
        let mut s = this.borrow_mut();
        s.preallocated_to = align_up(seg.size);
        s.carry = carry;
        s.segments.insert(base, seg);
        Ok(new_end)
    }

    pub async fn roll_now(this: &std::cell::RefCell<Self>, now_ms: i64) -> Result<(), EngineError> {
        Self::with_flush_turn(this, async {
            Self::flush_inner(this, now_ms, true).await?;
            if this.borrow().segments.values().next_back().map(|s| s.size > 0).unwrap_or(false) {
                Self::roll(this, now_ms).await?;
            }
            Ok(())
        })
        .await
    }

    /// Clean shutdown: write and sync everything, persist indexes.
    pub async fn close(this: &std::cell::RefCell<Self>, now_ms: i64) -> Result<(), EngineError> {
        // Waits for a flush round in progress, so everything it wrote is
        // synced and indexed before the files are closed.
        Self::flush_once(this, now_ms, true).await?;
        let mut s = this.borrow_mut();
        for seg in s.segments.values_mut() {
            seg.persist_index_tail()?;
        }
        // Everything is written: the next start needs no producer-state scan.
        if s.written_offset == s.next_offset {
            write_producer_snapshot(&s.dir, s.next_offset, &s.producers_written)?;
        }
        s.flush_bell.close();
        Ok(())
    }

    /// Marks the partition deleted: waiters fail, the flusher stops.
    pub fn shutdown_deleted(&mut self) {
        self.durable.fail("partition deleted".into());
        self.flush_bell.close();
    }

    /// Offset of the segment base paths (for tools and tests).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.keys().map(|b| log_path(&self.dir, *b)).collect()
    }
}

async fn read_at<F: SegmentFile>(file: &F, pos: u64, len: usize) -> Result<Bytes, EngineError> {
    file.read_at(pos, len).await.map_err(|e| EngineError::Io { op: "read", path: file.path().to_path_buf(), source: e })
}

/// What to return from bytes read at a batch boundary.
#[derive(Debug, PartialEq, Eq)]
enum Picked {
    /// `[a, b)`: whole batches from the one holding `offset` (or the first
    /// after it), all below the high watermark, at most `max_bytes` unless
    /// the first alone is bigger.
    Span(usize, usize),
    /// The first wanted batch does not fit in the bytes read: read this many.
    NeedMore(usize),
    /// Every whole batch in the first `n` bytes ends below `offset` (and
    /// below the high watermark): what is wanted comes later — further in
    /// the segment, or after a gap (compaction removes the records at a
    /// segment's end) in the next one.
    Below(usize),
    /// The batches reach the high watermark: nothing to return yet.
    Nothing,
}

fn pick_batches(data: &[u8], offset: i64, hw: i64, max_bytes: usize) -> Picked {
    let mut at = 0usize;
    let mut span: Option<(usize, usize)> = None;
    let mut reached_hw = false;
    while at + batch::BATCH_HEADER_LEN <= data.len() {
        let Ok(h) = BatchHeader::parse(&data[at..]) else { break };
        let len = h.total_len();
        if at + len > data.len() {
            if span.is_none() && h.last_offset() < hw {
                return Picked::NeedMore(at + len);
            }
            break;
        }
        if h.last_offset() >= hw {
            reached_hw = true;
            break;
        }
        if h.last_offset() >= offset {
            match span {
                Some((a, b)) if (b - a) + len > max_bytes => break,
                Some((a, _)) => span = Some((a, at + len)),
                None => span = Some((at, at + len)),
            }
        }
        at += len;
    }
    match span {
        Some((a, b)) => Picked::Span(a, b),
        None if reached_hw => Picked::Nothing,
        None => Picked::Below(at),
    }
}

/// Last offset of the last batch in `span` (whole batches).
fn last_offset_in(span: &[u8]) -> i64 {
    let mut at = 0;
    let mut last = -1;
    while at + batch::BATCH_HEADER_LEN <= span.len() {
        let h = BatchHeader::parse(&span[at..]).expect("span holds whole, parsed batches");
        last = h.last_offset();
        at += h.total_len();
    }
    last
}

/// The last `keep` bytes of `carry` followed by the batches' bytes.
fn tail_bytes(carry: &[u8], batches: &[CachedBatch], keep: usize) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut need = keep;
    for b in batches.iter().rev() {
        if need == 0 {
            break;
        }
        let take = need.min(b.bytes.len());
        parts.push(&b.bytes[b.bytes.len() - take..]);
        need -= take;
    }
    if need > 0 {
        assert!(need <= carry.len(), "carry and batches cover the partial block");
        parts.push(&carry[carry.len() - need..]);
    }
    let mut out = Vec::with_capacity(keep);
    for p in parts.iter().rev() {
        out.extend_from_slice(p);
    }
    out
}

/// Copies `carry` and then the batches into aligned buffers of at most
/// `WRITE_CHUNK_BYTES`, the last one zero-padded to the block: the bytes to
/// write at the carry's block, in order.
fn fill_chunks<F: SegmentFile>(file: &F, carry: &[u8], batches: &[CachedBatch]) -> Vec<F::Buf> {
    let len = align_up(buf_len(batches, carry.len()) as u64) as usize;
    let mut src = std::iter::once(carry).chain(batches.iter().map(|b| &b.bytes[..]));
    let mut cur: &[u8] = &[];
    let mut out = Vec::with_capacity(len.div_ceil(WRITE_CHUNK_BYTES));
    let mut left = len;
    while left > 0 {
        let n = WRITE_CHUNK_BYTES.min(left);
        let mut buf = file.alloc_buf(n);
        let dst = buf.as_mut_slice();
        let mut at = 0;
        while at < n {
            if cur.is_empty() {
                match src.next() {
                    Some(next) => cur = next,
                    None => break,
                }
                continue;
            }
            let k = cur.len().min(n - at);
            dst[at..at + k].copy_from_slice(&cur[..k]);
            cur = &cur[k..];
            at += k;
        }
        dst[at..].fill(0);
        out.push(buf);
        left -= n;
    }
    out
}

fn buf_len(batches: &[CachedBatch], carry: usize) -> usize {
    carry + batches.iter().map(|b| b.bytes.len()).sum::<usize>()
}

const _: () = assert!((WRITE_CHUNK_BYTES as u64).is_multiple_of(IO_ALIGN) && MAX_ROUND_BYTES >= WRITE_CHUNK_BYTES);
const _: () = assert!(PREALLOCATE_STEP.is_multiple_of(IO_ALIGN) && PREALLOCATE_MIN.is_multiple_of(IO_ALIGN));
const _: () = assert!(PREALLOCATE_MIN <= PREALLOCATE_STEP);

fn record_header(map: &mut ProducerStateMap, h: &BatchHeader, now_ms: i64) {
    let meta = BatchMeta {
        first_seq: h.base_sequence,
        last_seq: last_sequence(h.base_sequence, h.record_count),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
        max_timestamp: h.max_timestamp,
    };
    map.record(h.producer_id, h.producer_epoch, meta, now_ms);
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

/// Writes the producer state as of `offset` and keeps the two newest
/// snapshots. Page cache only: a lost snapshot means a longer scan, not
/// lost state.
fn write_producer_snapshot(dir: &Path, offset: i64, map: &ProducerStateMap) -> Result<(), EngineError> {
    let path = snapshot_path(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    std::fs::write(&tmp, map.encode()).map_err(|e| EngineError::Io {
        op: "write producer snapshot",
        path: tmp.clone(),
        source: e,
    })?;
    std::fs::rename(&tmp, &path).map_err(|e| EngineError::Io {
        op: "rename producer snapshot",
        path: path.clone(),
        source: e,
    })?;
    let mut all = list_snapshots(dir);
    all.sort_unstable();
    while all.len() > 2 {
        let old = all.remove(0);
        let _ = std::fs::remove_file(snapshot_path(dir, old));
    }
    Ok(())
}

fn list_snapshots(dir: &Path) -> Vec<i64> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".snapshot")?.parse::<i64>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, RecordSpec};

    /// Three batches of two records at offsets 10, 12, 14, back to back.
    fn three() -> (Vec<u8>, usize) {
        let v = [7u8; 100];
        let recs = || {
            (0..2)
                .map(|i| RecordSpec { key: None, value: Some(&v[..]), headers: vec![], timestamp_delta: i })
                .collect::<Vec<_>>()
        };
        let mut data = Vec::new();
        for base in [10, 12, 14] {
            data.extend_from_slice(&build_batch(base, 0, &recs()));
        }
        let one = data.len() / 3;
        (data, one)
    }

    #[test]
    fn pick_batches_cuts_whole_batches_by_offset_size_and_high_watermark() {
        let (d, one) = three();
        assert_eq!(pick_batches(&d, 10, 100, usize::MAX), Picked::Span(0, 3 * one));
        // From the batch holding the offset.
        assert_eq!(pick_batches(&d, 13, 100, usize::MAX), Picked::Span(one, 3 * one));
        // max_bytes counts whole batches, but the first always comes.
        assert_eq!(pick_batches(&d, 10, 100, 2 * one), Picked::Span(0, 2 * one));
        assert_eq!(pick_batches(&d, 10, 100, 1), Picked::Span(0, one));
        // Nothing at or past the high watermark.
        assert_eq!(pick_batches(&d, 10, 14, usize::MAX), Picked::Span(0, 2 * one));
        assert_eq!(pick_batches(&d, 14, 14, usize::MAX), Picked::Nothing);
        // Everything read ends below the offset: read on (or in the next segment).
        assert_eq!(pick_batches(&d, 16, 100, usize::MAX), Picked::Below(3 * one));
        // A wanted batch cut off by the read: read it whole.
        assert_eq!(pick_batches(&d[..one + 70], 12, 100, usize::MAX), Picked::NeedMore(2 * one));
        // Cut off after some whole batches: those are enough.
        assert_eq!(pick_batches(&d[..2 * one + 70], 10, 100, usize::MAX), Picked::Span(0, 2 * one));
        // Zero padding (preallocated space) ends the data.
        let mut padded = d.clone();
        padded.extend_from_slice(&[0u8; 4096]);
        assert_eq!(pick_batches(&padded, 10, 100, usize::MAX), Picked::Span(0, 3 * one));
        assert_eq!(last_offset_in(&d), 15);
    }
}
