//! One segment: a file of Kafka v2 record batches, named by its base offset,
//! with a sparse offset index and a time index beside it.
//!
//! Files in a partition directory:
//! - `<base:020>.log`        batches exactly as served to consumers; O_DIRECT.
//! - `<base:020>.index`      8-byte entries (relative offset, position).
//! - `<base:020>.timeindex`  12-byte entries (max timestamp so far, offset).
//!
//! Index files are small and written through the page cache without fsync:
//! recovery never trusts them blindly. It drops entries that point past the
//! valid data, checks that the last entry lands on a batch with that offset,
//! and scans forward from there, so startup work is bounded by what was written
//! since the last index entry, not by the size of the log.
//!
//! Owned by the shard that owns the partition.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::batch::BatchHeader;
use crate::index::{OffsetIndex, TimeIndex};
use crate::io::{align_down, SegmentFile, SegmentStorage};
use crate::recovery::{scan_valid_prefix, StopReason};
use crate::EngineError;

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}
pub fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}
pub fn time_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// Bytes read per step when scanning a segment during recovery.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub struct Segment<F: SegmentFile> {
    pub base_offset: i64,
    pub file: Rc<F>,
    pub dir: PathBuf,
    /// Bytes of valid batches written to the file (the logical size).
    pub size: u64,
    /// Offset after the last batch in this segment.
    pub next_offset: i64,
    /// Largest batch max timestamp in the segment (-1 if none).
    pub max_timestamp: i64,
    /// Wall-clock ms when the segment received its first batch (for segment.ms).
    pub first_append_ms: Option<i64>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index_entry: u64,
    pub sealed: bool,
    /// Entries already appended to the index files on disk.
    index_persisted: usize,
    time_index_persisted: usize,
    /// Index files kept open while the segment is active.
    index_file: OptionFile,
    time_index_file: OptionFile,
}

/// An index file opened on first use.
#[derive(Default)]
struct OptionFile(Option<File>);

impl OptionFile {
    fn get_or_insert_with_result(
        &mut self,
        open: impl FnOnce() -> Result<File, EngineError>,
    ) -> Result<&File, EngineError> {
        if self.0.is_none() {
            self.0 = Some(open()?);
        }
        Ok(self.0.as_ref().expect("just set"))
    }
}

fn open_append(p: &Path) -> Result<File, EngineError> {
    OpenOptions::new().create(true).write(true).truncate(false).open(p).map_err(|e| io_err("open index", p, e))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> EngineError {
    EngineError::Io { op, path: path.to_path_buf(), source }
}

impl<F: SegmentFile> Segment<F> {
    /// Creates a new, empty active segment.
    pub async fn create<S: SegmentStorage<File = F>>(
        storage: &S,
        dir: &Path,
        base_offset: i64,
        preallocate: u64,
    ) -> Result<Self, EngineError> {
        let path = log_path(dir, base_offset);
        let file = storage.open(&path, true).await.map_err(|e| io_err("create segment", &path, e))?;
        file.truncate(0).await.map_err(|e| io_err("truncate", &path, e))?;
        if preallocate > 0 {
            // Only an optimisation (see PartitionLog::write_pending): a disk
            // too full to reserve may still take the data.
            if let Err(e) = file.preallocate(preallocate).await {
                tracing::warn!(path = %path.display(), error = %e, "preallocation failed; writing without it");
            }
        }
        // Stale index files from an earlier life of this base offset must not survive.
        for p in [index_path(dir, base_offset), time_index_path(dir, base_offset)] {
            let _ = std::fs::remove_file(&p);
        }
        // fdatasync of the file does not persist its directory entry: without
        // this, a power loss could drop a whole new segment whose data was
        // already acknowledged.
        sync_dir(dir)?;
        Ok(Segment {
            base_offset,
            file,
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            sealed: false,
            index_persisted: 0,
            time_index_persisted: 0,
            index_file: OptionFile::default(),
            time_index_file: OptionFile::default(),
        })
    }

    /// Records that a batch now lives at `position` (called after it was written).
    pub fn note_batch(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u32, now_ms: i64) {
        assert!(header.base_offset >= self.next_offset, "offsets must increase within a segment");
        assert_eq!(position, self.size, "batches are appended contiguously");
        if self.index.is_empty() && position == 0 {
            // The first batch needs no entry: lookup falls back to (base, 0).
        } else if self.bytes_since_index_entry >= index_interval_bytes as u64 {
            self.index.append(header.base_offset, position as u32);
            self.time_index.maybe_append(self.max_timestamp.max(header.max_timestamp), header.base_offset);
            self.bytes_since_index_entry = 0;
        }
        let len = header.total_len() as u64;
        self.bytes_since_index_entry += len;
        self.size += len;
        self.next_offset = header.last_offset() + 1;
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        self.first_append_ms.get_or_insert(now_ms);
    }

    /// Appends index entries not yet on disk. Page cache only: see module docs.
    /// Only the new entries are encoded and written (this runs after every
    /// flush, so its cost must not grow with the segment).
    pub fn persist_index_tail(&mut self) -> Result<(), EngineError> {
        if self.index.len() > self.index_persisted {
            let bytes = self.index.encode_from(self.index_persisted);
            let p = index_path(&self.dir, self.base_offset);
            let f = self.index_file.get_or_insert_with_result(|| open_append(&p))?;
            f.write_all_at(&bytes, (self.index_persisted * 8) as u64).map_err(|e| io_err("write index", &p, e))?;
            self.index_persisted = self.index.len();
        }
        if self.time_index.len() > self.time_index_persisted {
            let bytes = self.time_index.encode_from(self.time_index_persisted);
            let p = time_index_path(&self.dir, self.base_offset);
            let f = self.time_index_file.get_or_insert_with_result(|| open_append(&p))?;
            f.write_all_at(&bytes, (self.time_index_persisted * 12) as u64)
                .map_err(|e| io_err("write time index", &p, e))?;
            self.time_index_persisted = self.time_index.len();
        }
        Ok(())
    }

    /// Closes the index files held open for appends (a sealed segment never
    /// appends again; open files per sealed segment would add up).
    pub fn release_index_files(&mut self) {
        self.index_file = OptionFile::default();
        self.time_index_file = OptionFile::default();
    }

    /// Rewrites both index files whole if recovery changed them. Unchanged
    /// files (the common case: every sealed segment) are not rewritten, so a
    /// restart does not write in proportion to the data.
    pub(crate) fn rewrite_index_files(&mut self) -> Result<(), EngineError> {
        self.rewrite_indexes()
    }

    fn rewrite_indexes(&mut self) -> Result<(), EngineError> {
        for (p, data) in [
            (index_path(&self.dir, self.base_offset), self.index.encode()),
            (time_index_path(&self.dir, self.base_offset), self.time_index.encode()),
        ] {
            if std::fs::read(&p).map(|old| old == data).unwrap_or(false) {
                continue;
            }
            let mut f = File::create(&p).map_err(|e| io_err("create index", &p, e))?;
            f.write_all(&data).map_err(|e| io_err("write index", &p, e))?;
        }
        self.index_persisted = self.index.len();
        self.time_index_persisted = self.time_index.len();
        // The files were replaced: reopen on next append.
        self.index_file = OptionFile::default();
        self.time_index_file = OptionFile::default();
        Ok(())
    }

    /// Seals the segment: the file is cut to its logical size and synced, the
    /// indexes are written whole. A sealed segment is never written again.
    pub async fn seal(&mut self) -> Result<(), EngineError> {
        let path = self.file.path().to_path_buf();
        self.file.truncate(self.size).await.map_err(|e| io_err("truncate on seal", &path, e))?;
        self.file.sync_data().await.map_err(|e| io_err("fdatasync on seal", &path, e))?;
        self.persist_index_tail()?;
        self.sealed = true;
        Ok(())
    }

    /// Opens an existing segment and finds where its valid data ends.
    ///
    /// `is_last`: only the last segment of a partition can have a torn tail;
    /// earlier ones were sealed, but are still checked cheaply (file size vs
    /// index) and fully rescanned if their index is missing or inconsistent.
    pub async fn recover<S: SegmentStorage<File = F>>(
        storage: &S,
        dir: &Path,
        base_offset: i64,
        is_last: bool,
    ) -> Result<Self, EngineError> {
        let path = log_path(dir, base_offset);
        let file = storage.open(&path, false).await.map_err(|e| io_err("open segment", &path, e))?;
        let file_size = file.size().await.map_err(|e| io_err("stat segment", &path, e))?;

        let mut index = read_index(dir, base_offset).unwrap_or_else(|| OffsetIndex::new(base_offset));
        let mut time_index = read_time_index(dir, base_offset).unwrap_or_else(|| TimeIndex::new(base_offset));

        // Drop index entries that point at or past the end of the file.
        while let Some((off, pos)) = index.last_entry() {
            if (pos as u64) < file_size {
                break;
            }
            index.truncate_to_offset(off);
        }

        let mut seg = Segment {
            base_offset,
            file,
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            first_append_ms: None,
            index,
            time_index: TimeIndex::new(base_offset),
            bytes_since_index_entry: 0,
            sealed: !is_last,
            index_persisted: 0,
            time_index_persisted: 0,
            index_file: OptionFile::default(),
            time_index_file: OptionFile::default(),
        };

        // Scan from the last index entry; if that entry does not land on a
        // batch with its offset, the index is stale: rebuild from zero.
        let (mut start_offset, mut start_pos) =
            seg.index.last_entry().map(|(o, p)| (o, p as u64)).unwrap_or((base_offset, 0));
        let mut scanned = seg.scan_from(start_pos, Some(start_offset), file_size).await?;
        if start_pos > 0 && scanned.first_batch_offset != Some(start_offset) {
            tracing::warn!(segment = %path.display(), "offset index is stale; rebuilding it");
            seg.index = OffsetIndex::new(base_offset);
            time_index = TimeIndex::new(base_offset);
            start_offset = base_offset;
            start_pos = 0;
            scanned = seg.scan_from(start_pos, Some(start_offset), file_size).await?;
        }
        // Time index entries past the scan start are re-derived from the scan.
        time_index.truncate_to_offset(start_offset);
        seg.time_index = time_index;
        if let Some((ts, _)) = seg.time_index.last_entry() {
            seg.max_timestamp = ts;
        }
        seg.size = start_pos;
        seg.next_offset = start_offset;
        // Rebuild entries after the start from the scanned batches.
        seg.index.truncate_to_offset(start_offset + 1);
        for (pos, h) in scanned.batches {
            seg.bytes_since_index_entry =
                if pos == start_pos && start_pos > 0 { 0 } else { seg.bytes_since_index_entry };
            seg.note_batch_recovered(pos, &h);
        }
        if scanned.stop != StopReason::EndOfData && scanned.stop != StopReason::ZeroPadding {
            tracing::warn!(segment = %path.display(), valid_end = seg.size, reason = ?scanned.stop, "truncating invalid tail");
        }
        if seg.size != file_size {
            // Cut torn or unwritten bytes so they can never be read back as
            // data after later appends overwrite only part of them.
            seg.file.truncate(seg.size).await.map_err(|e| io_err("truncate torn tail", &path, e))?;
        }
        seg.rewrite_indexes()?;
        Ok(seg)
    }

    fn note_batch_recovered(&mut self, position: u64, h: &BatchHeader) {
        // Same bookkeeping as an append, with the broker's default interval;
        // entries exactly at existing positions are not duplicated.
        const RECOVERY_INDEX_INTERVAL: u64 = 4096;
        if position > 0
            && self.bytes_since_index_entry >= RECOVERY_INDEX_INTERVAL
            && self.index.last_entry().map(|(_, p)| (p as u64) < position).unwrap_or(true)
        {
            self.index.append(h.base_offset, position as u32);
            self.time_index.maybe_append(self.max_timestamp.max(h.max_timestamp), h.base_offset);
            self.bytes_since_index_entry = 0;
        }
        let len = h.total_len() as u64;
        self.bytes_since_index_entry += len;
        self.size = position + len;
        self.next_offset = h.last_offset() + 1;
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
    }

    async fn scan_from(
        &self,
        start_pos: u64,
        expected: Option<i64>,
        file_size: u64,
    ) -> Result<ScanOutcome, EngineError> {
        let path = self.file.path().to_path_buf();
        let mut out = ScanOutcome { batches: Vec::new(), first_batch_offset: None, stop: StopReason::EndOfData };
        let mut pos = start_pos;
        let mut expected = expected;
        let mut chunk = SCAN_CHUNK_BYTES;
        while pos < file_size {
            let want = chunk.min((file_size - pos) as usize);
            let buf = self.file.read_at(pos, want).await.map_err(|e| io_err("read segment", &path, e))?;
            let res = scan_valid_prefix(&buf, pos, expected);
            for b in &res.batches {
                out.first_batch_offset.get_or_insert(b.header.base_offset);
                out.batches.push((b.position, b.header));
            }
            expected = res.next_offset.or(expected);
            let reached_end_of_file = pos + buf.len() as u64 >= file_size;
            match res.stop_reason {
                StopReason::TornTail if !reached_end_of_file => {
                    if res.valid_end == pos {
                        // One batch larger than the chunk: read more at once.
                        chunk = chunk.saturating_mul(2).min(1 << 30);
                    }
                    pos = res.valid_end;
                    continue;
                }
                StopReason::EndOfData if !reached_end_of_file => {
                    pos = res.valid_end;
                    continue;
                }
                other => {
                    out.stop = other;
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads the aligned block that holds the segment's last partial block,
    /// so the appender can rewrite it together with new data.
    pub async fn read_tail_block(&self) -> Result<Vec<u8>, EngineError> {
        let start = align_down(self.size);
        let len = (self.size - start) as usize;
        if len == 0 {
            return Ok(Vec::new());
        }
        let b = self.file.read_at(start, len).await.map_err(|e| io_err("read tail", self.file.path(), e))?;
        assert_eq!(b.len(), len, "tail block must be readable");
        Ok(b.to_vec())
    }

    pub fn remove_files(&self) {
        for p in [
            log_path(&self.dir, self.base_offset),
            index_path(&self.dir, self.base_offset),
            time_index_path(&self.dir, self.base_offset),
        ] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove segment file");
                }
            }
        }
    }
}

struct ScanOutcome {
    batches: Vec<(u64, BatchHeader)>,
    first_batch_offset: Option<i64>,
    stop: StopReason,
}

fn read_index(dir: &Path, base: i64) -> Option<OffsetIndex> {
    let data = std::fs::read(index_path(dir, base)).ok()?;
    // A torn last entry (crash mid-write of the index) is dropped, not fatal.
    let whole = data.len() - data.len() % 8;
    OffsetIndex::decode(base, &data[..whole]).ok()
}

fn read_time_index(dir: &Path, base: i64) -> Option<TimeIndex> {
    let data = std::fs::read(time_index_path(dir, base)).ok()?;
    let whole = data.len() - data.len() % 12;
    TimeIndex::decode(base, &data[..whole]).ok()
}

/// Makes a directory's entries (new or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("fsync directory", dir, e))
}
