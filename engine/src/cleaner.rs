//! The log cleaner's I/O side: compacts the sealed segments of a partition
//! with `cleanup.policy=compact` and swaps each cleaned segment in so that a
//! crash at any point leaves either the old or the new segment, never
//! neither and never a mix.
//!
//! A pass: (1) if the dirty ratio (bytes written since the last pass over
//! all sealed bytes) is below `min.cleanable.dirty.ratio`, stop; (2) build
//! the latest-offset-per-key map over the sealed segments; (3) for each
//! sealed segment, rewrite its batches keeping the latest record per key
//! (`compaction::clean_batches`), and swap it in. The active segment is never
//! touched. Work is done in bounded chunks with yields, so produce and fetch
//! on the same shard keep running.
//!
//! The swap, per segment (`SwapStep` names each point a crash may hit):
//! 1. write `<base>.log.cleaned.tmp` and fdatasync it;
//! 2. delete the segment's index files (a stale index must never describe
//!    the new file: without them recovery rebuilds from the data);
//! 3. rename the cleaned file over `<base>.log` (atomic);
//! 4. fsync the directory;
//! 5. install the new segment in memory and write its index files.
//!
//! A crash before 3 leaves the old file (and a `.tmp` that start-up deletes);
//! after 3 the new one. Either is a valid segment with the same offsets for
//! every record that survives.

use std::cell::RefCell;
use std::path::Path;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::compaction::{add_batch_to_map, clean_batches, dirty_ratio, CleanOptions, KeyOffsetMap};
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{align_up, IoBuf, SegmentFile, SegmentStorage};
use crate::log::PartitionLog;
use crate::segment::{index_path, log_path, sync_dir, time_index_path, Segment};
use crate::EngineError;

/// Bytes read per step while scanning or rewriting a segment.
const CHUNK_BYTES: usize = 4 << 20;
/// Checkpoint of the offset below which the log has been cleaned.
const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// Points of the swap at which a test can simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    CleanedWritten,
    IndexRemoved,
    Renamed,
    DirSynced,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_cleaned: usize,
    pub records_kept: u64,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> EngineError {
    EngineError::Io { op, path: path.to_path_buf(), source: e }
}

pub fn read_checkpoint(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// After a truncation to `end`: offsets from `end` on are new data, never
/// cleaned.
pub(crate) fn clamp_checkpoint(dir: &Path, end: i64) -> Result<(), EngineError> {
    if read_checkpoint(dir) > end {
        write_checkpoint(dir, end)?;
    }
    Ok(())
}

fn write_checkpoint(dir: &Path, offset: i64) -> Result<(), EngineError> {
    let p = dir.join(CLEANER_CHECKPOINT);
    let tmp = dir.join("cleaner-offset-checkpoint.tmp");
    std::fs::write(&tmp, offset.to_string()).map_err(|e| io("write cleaner checkpoint", &tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| io("rename cleaner checkpoint", &p, e))
}

/// Paces the cleaner's reads and writes to a byte rate, so a compaction pass
/// cannot take the disk (or the core) away from produce and fetch.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    pub bytes_per_sec: u64,
}

impl Throttle {
    pub const UNLIMITED: Throttle = Throttle { bytes_per_sec: u64::MAX };

    async fn pace(&self, bytes: usize) {
        if self.bytes_per_sec == u64::MAX || bytes == 0 {
            glommio::yield_if_needed().await;
            return;
        }
        let micros = (bytes as u128 * 1_000_000 / self.bytes_per_sec.max(1) as u128) as u64;
        glommio::timer::sleep(std::time::Duration::from_micros(micros)).await;
    }
}

/// Calls `f` with runs of whole batches of the first `size` bytes of `file`.
async fn for_each_chunk<F: SegmentFile>(
    file: &F,
    size: u64,
    throttle: Throttle,
    mut f: impl FnMut(&[u8]) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let mut pos = 0u64;
    let mut want = CHUNK_BYTES;
    while pos < size {
        let len = want.min((size - pos) as usize);
        let data = file.read_at(pos, len).await.map_err(|e| io("read segment", file.path(), e))?;
        let mut at = 0usize;
        while at + BATCH_HEADER_LEN <= data.len() {
            let h = BatchHeader::parse(&data[at..]).map_err(EngineError::Batch)?;
            if at + h.total_len() > data.len() {
                break;
            }
            at += h.total_len();
        }
        if at == 0 {
            if len == (size - pos) as usize {
                // The segment's valid size ends mid-batch: recovery never allows that.
                return Err(EngineError::Io {
                    op: "scan segment",
                    path: file.path().to_path_buf(),
                    source: std::io::Error::other("segment ends inside a batch"),
                });
            }
            want = want.saturating_mul(2);
            continue;
        }
        f(&data[..at])?;
        pos += at as u64;
        want = CHUNK_BYTES;
        throttle.pace(at).await;
    }
    Ok(())
}

impl<S: SegmentStorage + Clone> PartitionLog<S> {
    /// One cleaning pass (see the module docs). `crash_at` stops the first
    /// swap at that step, as a crash would (tests only; `None` in production).
    pub async fn compact(
        this: &RefCell<Self>,
        now_ms: i64,
        throttle: Throttle,
        crash_at: Option<SwapStep>,
    ) -> Result<CleanStats, EngineError> {
        let (dir, sealed, cfg, storage, oldest_dirty_max_ts, truncations) = {
            let s = this.borrow();
            let sealed: Vec<(i64, std::rc::Rc<S::File>, u64)> =
                s.sealed_segments().map(|seg| (seg.base_offset, seg.file.clone(), seg.size)).collect();
            // Newest record time of the oldest dirty segment: max.compaction.lag.ms.
            let cleaned_to = read_checkpoint(s.dir());
            let oldest_dirty_max_ts =
                s.sealed_segments().find(|seg| seg.base_offset >= cleaned_to).map(|seg| seg.max_timestamp);
            (
                s.dir().to_path_buf(),
                sealed,
                s.config().clone(),
                s.storage_handle(),
                oldest_dirty_max_ts,
                s.truncations(),
            )
        };
        let mut stats = CleanStats::default();
        if !cfg.cleanup_policy.compact || sealed.is_empty() {
            return Ok(stats);
        }
        let cleaned_to = read_checkpoint(&dir);
        let (mut clean, mut dirty) = (0u64, 0u64);
        for (base, _, size) in &sealed {
            if *base < cleaned_to {
                clean += size;
            } else {
                dirty += size;
            }
        }
        // Kafka's max.compaction.lag.ms: a dirty record older than the lag
        // makes the log cleanable whatever its dirty ratio.
        let lag_exceeded = oldest_dirty_max_ts
            .map(|ts| ts >= 0 && now_ms.saturating_sub(ts) > cfg.max_compaction_lag_ms)
            .unwrap_or(false);
        if dirty == 0 || (dirty_ratio(clean, dirty) < cfg.min_cleanable_dirty_ratio && !lag_exceeded) {
            return Ok(stats);
        }
        let end_offset = this.borrow().active_base_offset();

        // Latest offset per key over every sealed segment.
        let mut map = KeyOffsetMap::new();
        for (_, file, size) in &sealed {
            for_each_chunk(&**file, *size, throttle, |chunk| {
                let mut at = 0;
                while at < chunk.len() {
                    let len = BatchHeader::parse(&chunk[at..]).map_err(EngineError::Batch)?.total_len();
                    add_batch_to_map(&mut map, &chunk[at..at + len]).map_err(|e| compaction_err(&dir, e))?;
                    at += len;
                }
                Ok(())
            })
            .await?;
        }
        let opts = CleanOptions {
            now_ms,
            delete_retention_ms: cfg.delete_retention_ms,
            min_compaction_lag_ms: cfg.min_compaction_lag_ms,
        };

        for (base, file, size) in sealed {
            let mut out = Vec::with_capacity(size as usize / 2);
            let mut headers = Vec::new();
            for_each_chunk(&*file, size, throttle, |chunk| {
                let c = clean_batches(chunk, &map, &opts).map_err(|e| compaction_err(&dir, e))?;
                stats.records_kept += c.records_kept;
                stats.records_removed += c.records_removed;
                out.extend_from_slice(&c.data);
                headers.extend(c.batches);
                Ok(())
            })
            .await?;
            stats.bytes_before += size;
            stats.bytes_after += out.len() as u64;
            if out.len() as u64 == size {
                continue; // nothing removed in this segment
            }
            let cleaned = CleanedSegment { base, data: &out, headers: &headers, truncations };
            let installed = Self::swap_segment(this, &storage, &dir, cleaned, throttle, crash_at).await?;
            if crash_at.is_some() {
                return Ok(stats);
            }
            if installed {
                stats.segments_cleaned += 1;
            }
        }
        // A truncation meanwhile may have taken back offsets below
        // `end_offset`: they are dirty again, so the checkpoint stays.
        if this.borrow().truncations() == truncations {
            write_checkpoint(&dir, end_offset)?;
        }
        Ok(stats)
    }

    /// Writes `data` as the new content of segment `base` and swaps it in.
    /// Returns false if the segment disappeared meanwhile (retention or
    /// DeleteRecords), in which case nothing is changed.
    async fn swap_segment(
        this: &RefCell<Self>,
        storage: &S,
        dir: &Path,
        cleaned: CleanedSegment<'_>,
        throttle: Throttle,
        crash_at: Option<SwapStep>,
    ) -> Result<bool, EngineError> {
        let CleanedSegment { base, data, headers, truncations } = cleaned;
        let final_path = log_path(dir, base);
        let tmp_path = dir.join(format!("{base:020}.log.cleaned.tmp"));
        // 1. The cleaned file, written with direct I/O and synced.
        let file = storage.open(&tmp_path, true).await.map_err(|e| io("create cleaned segment", &tmp_path, e))?;
        file.truncate(0).await.map_err(|e| io("truncate cleaned segment", &tmp_path, e))?;
        let mut pos = 0usize;
        while pos < data.len() {
            let n = CHUNK_BYTES.min(data.len() - pos);
            let mut buf = file.alloc_buf(align_up(n as u64) as usize);
            let dst = buf.as_mut_slice();
            dst[..n].copy_from_slice(&data[pos..pos + n]);
            dst[n..].fill(0);
            file.write_at(buf, pos as u64).await.map_err(|e| io("write cleaned segment", &tmp_path, e))?;
            pos += n;
            throttle.pace(n).await;
        }
        file.truncate(data.len() as u64).await.map_err(|e| io("truncate cleaned segment", &tmp_path, e))?;
        file.sync_data().await.map_err(|e| io("fdatasync cleaned segment", &tmp_path, e))?;
        if crash_at == Some(SwapStep::CleanedWritten) {
            return Ok(false);
        }
        if !this.borrow().segment_unchanged(base, truncations) {
            let _ = std::fs::remove_file(&tmp_path);
            return Ok(false);
        }
        // 2. No index may outlive the data it describes.
        for p in [index_path(dir, base), time_index_path(dir, base)] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(io("remove stale index", &p, e));
                }
            }
        }
        if crash_at == Some(SwapStep::IndexRemoved) {
            return Ok(false);
        }
        // 3. Atomic replace.
        std::fs::rename(&tmp_path, &final_path).map_err(|e| io("rename cleaned segment", &final_path, e))?;
        if crash_at == Some(SwapStep::Renamed) {
            return Ok(false);
        }
        // 4. The rename itself is durable.
        sync_dir(dir)?;
        if crash_at == Some(SwapStep::DirSynced) {
            return Ok(false);
        }
        // 5. In memory: new file, size, indexes.
        let interval = this.borrow().config().index_interval_bytes as u64;
        let mut index = OffsetIndex::new(base);
        let mut time_index = TimeIndex::new(base);
        let (mut at, mut since, mut max_ts) = (0u64, 0u64, -1i64);
        for h in headers {
            if at > 0 && since >= interval {
                index.append(h.base_offset, at as u32);
                time_index.maybe_append(max_ts.max(h.max_timestamp), h.base_offset);
                since = 0;
            }
            max_ts = max_ts.max(h.max_timestamp);
            at += h.total_len() as u64;
            since += h.total_len() as u64;
        }
        assert_eq!(at, data.len() as u64, "headers describe the cleaned data exactly");
        let mut s = this.borrow_mut();
        s.replace_sealed_segment(base, file, data.len() as u64, index, time_index, max_ts)?;
        Ok(true)
    }
}

/// The new content of one sealed segment.
struct CleanedSegment<'a> {
    base: i64,
    data: &'a [u8],
    headers: &'a [BatchHeader],
    /// The log's truncation count when the segment was read.
    truncations: u64,
}

fn compaction_err(dir: &Path, e: crate::compaction::CompactionError) -> EngineError {
    EngineError::Io { op: "compact", path: dir.to_path_buf(), source: std::io::Error::other(e.to_string()) }
}

impl<F: SegmentFile> Segment<F> {
    /// Replaces a sealed segment's content after compaction.
    pub fn install_cleaned(
        &mut self,
        file: std::rc::Rc<F>,
        size: u64,
        index: OffsetIndex,
        time_index: TimeIndex,
        max_timestamp: i64,
    ) -> Result<(), EngineError> {
        assert!(self.sealed, "only sealed segments are compacted");
        self.file = file;
        self.size = size;
        self.index = index;
        self.time_index = time_index;
        self.max_timestamp = max_timestamp;
        self.rewrite_index_files()
    }
}
