//! The metadata log of one node: every metadata change, as its flatbuffers
//! record (`ringbroker_controller::records`), appended to `meta/metadata.log`
//! and fdatasync'ed before the change is acknowledged.
//!
//! A frame is `[len: u32][crc32c: u32][version: u64][record: len bytes]`,
//! big-endian; the CRC covers the version and the record. `version` is the
//! image version the record produces, so frames continue a snapshot
//! (`metadata.json`) of version V at V + 1, and frames at or below V (a
//! crash between writing a snapshot and emptying the log) are skipped. A
//! torn or corrupt tail, the only damage a crash can do to an append-only
//! file, is cut at the first bad frame; nothing after it was acknowledged.
//!
//! The Raft metadata quorum replaces this file with its replicated log of
//! the same records.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER_LEN: usize = 16;
/// A metadata record is a few hundred bytes (a topic with its configs);
/// anything claiming more than this is corruption, not a record.
const MAX_RECORD_LEN: usize = 16 << 20;

pub struct MetadataLog {
    path: PathBuf,
    file: File,
    frames: usize,
}

/// One valid frame read back at open.
pub struct Frame {
    pub version: u64,
    pub record: Vec<u8>,
}

impl MetadataLog {
    /// Opens (or creates) the log in `dir` and returns its valid frames; a
    /// bad tail is cut off (and the cut synced) before anything is appended.
    pub fn open(dir: &Path) -> io::Result<(MetadataLog, Vec<Frame>)> {
        let path = dir.join("metadata.log");
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let (frames, valid_len) = parse(&data);
        if valid_len < data.len() {
            tracing::warn!(path = %path.display(), valid_len, len = data.len(), "cutting a torn or corrupt metadata log tail");
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        File::open(dir)?.sync_all()?;
        let n = frames.len();
        Ok((MetadataLog { path, file, frames: n }, frames))
    }

    /// Appends one record durably.
    pub fn append(&mut self, version: u64, record: &[u8]) -> io::Result<()> {
        assert!(record.len() <= MAX_RECORD_LEN, "a metadata record of {} bytes", record.len());
        let mut frame = Vec::with_capacity(HEADER_LEN + record.len());
        frame.extend_from_slice(&(record.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc(version, record).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(record);
        self.file.write_all(&frame)?;
        self.file.sync_data()?;
        self.frames += 1;
        Ok(())
    }

    /// Frames since the log was last emptied.
    pub fn len(&self) -> usize {
        self.frames
    }

    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Empties the log once a snapshot holds everything in it.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.frames = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn crc(version: u64, record: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&version.to_be_bytes()), record)
}

/// The valid frames at the start of `data`, and how many bytes they take.
pub fn parse(data: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER_LEN {
        let h = &data[at..at + HEADER_LEN];
        let len = u32::from_be_bytes(h[0..4].try_into().expect("4 bytes")) as usize;
        let sum = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes"));
        let version = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes"));
        if len > MAX_RECORD_LEN || data.len() - at - HEADER_LEN < len {
            break;
        }
        let record = &data[at + HEADER_LEN..at + HEADER_LEN + len];
        if crc(version, record) != sum {
            break;
        }
        frames.push(Frame { version, record: record.to_vec() });
        at += HEADER_LEN + len;
    }
    (frames, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_survive_reopen_and_a_torn_tail_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, frames) = MetadataLog::open(d.path()).unwrap();
        assert!(frames.is_empty());
        log.append(1, b"one").unwrap();
        log.append(2, b"two").unwrap();
        drop(log);
        // A crash in the middle of the third append.
        let mut f = OpenOptions::new().append(true).open(d.path().join("metadata.log")).unwrap();
        f.write_all(&[0, 0, 0, 5, 1, 2]).unwrap();
        drop(f);
        let (mut log, frames) = MetadataLog::open(d.path()).unwrap();
        assert_eq!(
            frames.iter().map(|f| (f.version, f.record.clone())).collect::<Vec<_>>(),
            vec![(1, b"one".to_vec()), (2, b"two".to_vec())]
        );
        log.append(3, b"three").unwrap();
        drop(log);
        let (mut log, frames) = MetadataLog::open(d.path()).unwrap();
        assert_eq!(frames.len(), 3);
        log.clear().unwrap();
        drop(log);
        assert!(MetadataLog::open(d.path()).unwrap().1.is_empty());
    }

    proptest! {
        /// Whatever is flipped, the frames read back are a prefix of what
        /// was written (a flipped frame and everything after it are cut).
        #[test]
        fn corruption_keeps_a_prefix(records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..10),
                                     flip in any::<prop::sample::Index>(), x in 1u8..) {
            let mut data = Vec::new();
            for (i, r) in records.iter().enumerate() {
                data.extend_from_slice(&(r.len() as u32).to_be_bytes());
                data.extend_from_slice(&crc(i as u64, r).to_be_bytes());
                data.extend_from_slice(&(i as u64).to_be_bytes());
                data.extend_from_slice(r);
            }
            let at = flip.index(data.len());
            data[at] ^= x;
            let (frames, _) = parse(&data);
            prop_assert!(frames.len() < records.len());
            for (i, f) in frames.iter().enumerate() {
                prop_assert_eq!(f.version, i as u64);
                prop_assert_eq!(&f.record, &records[i]);
            }
        }
    }
}
