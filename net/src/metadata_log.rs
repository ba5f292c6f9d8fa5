//! The metadata log of one node: every metadata change, as its flatbuffers
//! record (`ringbroker_controller::records`), appended to `meta/metadata.log`
//! and fdatasync'ed before the change is acknowledged.
//!
//! A frame is `[len: u32][!len: u32][crc32c: u32][version: u64][record: len
//! bytes]`, big-endian; the CRC covers the version and the record, and the
//! inverted length tells a corrupt length from a frame cut short. `version` is the
//! image version the record produces, so frames continue a snapshot
//! (`metadata.json`) of version V at V + 1, and frames at or below V (a
//! crash between writing a snapshot and emptying the log) are skipped. A
//! torn last frame, the only damage a crash can do to an append-only file,
//! is cut off; nothing in it was acknowledged. A bad frame with more bytes
//! after it is not a crash's work: the log is refused rather than cut, since
//! cutting it would silently take back acknowledged changes. A failed
//! append is rolled back to the previous end before anything else is
//! written; if even that fails, the log refuses further appends.
//!
//! The Raft metadata quorum replaces this file with its replicated log of
//! the same records.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER_LEN: usize = 20;
/// A metadata record is a few hundred bytes (a topic with its configs);
/// anything claiming more than this is corruption, not a record.
const MAX_RECORD_LEN: usize = 16 << 20;

pub struct MetadataLog {
    path: PathBuf,
    file: File,
    frames: usize,
    /// Bytes of whole, synced frames (where a failed append is cut back to).
    synced_bytes: u64,
    /// An append failed and could not be rolled back.
    broken: bool,
}

/// Where the valid frames end, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The data ends after the last frame.
    Clean,
    /// The last frame is incomplete or garbled, and nothing follows it.
    TornTail,
    /// A bad frame with data after it: not what a crash leaves.
    Corrupt,
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
        let (frames, valid_len, end) = parse(&data);
        match end {
            End::Clean => {}
            End::TornTail => {
                tracing::warn!(path = %path.display(), valid_len, len = data.len(), "cutting a torn metadata log tail");
                file.set_len(valid_len as u64)?;
                file.sync_all()?;
            }
            End::Corrupt => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: bad frame at byte {valid_len} with {} bytes after it; refusing to drop acknowledged changes",
                        path.display(),
                        data.len() - valid_len
                    ),
                ));
            }
        }
        file.seek(SeekFrom::End(0))?;
        File::open(dir)?.sync_all()?;
        let n = frames.len();
        Ok((MetadataLog { path, file, frames: n, synced_bytes: valid_len as u64, broken: false }, frames))
    }

    /// Appends one record durably. On failure the file is cut back to its
    /// previous end, so the next append cannot land after a torn frame or
    /// reuse the version of a frame that might be on disk.
    pub fn append(&mut self, version: u64, record: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the metadata log could not be rolled back after a failed append"));
        }
        if record.len() > MAX_RECORD_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a metadata record of {} bytes (at most {MAX_RECORD_LEN})", record.len()),
            ));
        }
        let mut frame = Vec::with_capacity(HEADER_LEN + record.len());
        frame.extend_from_slice(&(record.len() as u32).to_be_bytes());
        frame.extend_from_slice(&(!(record.len() as u32)).to_be_bytes());
        frame.extend_from_slice(&crc(version, record).to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(record);
        if let Err(e) = self.file.write_all(&frame).and_then(|()| self.file.sync_data()) {
            let rolled_back = self.file.set_len(self.synced_bytes).and_then(|()| self.file.sync_all());
            if let Err(r) = rolled_back {
                tracing::error!(path = %self.path.display(), error = %r, "metadata log rollback failed; refusing changes");
                self.broken = true;
            }
            return Err(e);
        }
        self.synced_bytes += frame.len() as u64;
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
        self.synced_bytes = 0;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn crc(version: u64, record: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&version.to_be_bytes()), record)
}

/// The valid frames at the start of `data`, how many bytes they take, and
/// what ends them.
pub fn parse(data: &[u8]) -> (Vec<Frame>, usize, End) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let left = &data[at..];
        if left.is_empty() {
            return (frames, at, End::Clean);
        }
        match frame_at(left) {
            Ok((version, record)) => {
                at += HEADER_LEN + record.len();
                frames.push(Frame { version, record: record.to_vec() });
            }
            Err(could_be_last_append) => {
                // A crash tears only the last append: a frame that reaches
                // the end of the file, or zeros where the file grew but the
                // data never landed. Anything else is damage.
                let torn = could_be_last_append || left.iter().all(|b| *b == 0);
                return (frames, at, if torn { End::TornTail } else { End::Corrupt });
            }
        }
    }
}

/// The frame at the start of `data`; `Err(true)` if it is incomplete in a
/// way the last, interrupted append leaves (its header consistent, its end
/// beyond the data, or a partial header), `Err(false)` if it is damaged.
fn frame_at(data: &[u8]) -> Result<(u64, &[u8]), bool> {
    if data.len() < HEADER_LEN {
        return Err(true);
    }
    let word = |i: usize| u32::from_be_bytes(data[i..i + 4].try_into().expect("4 bytes"));
    let (len, len_check, sum) = (word(0), word(4), word(8));
    let version = u64::from_be_bytes(data[12..20].try_into().expect("8 bytes"));
    if len_check != !len || len as usize > MAX_RECORD_LEN {
        return Err(false);
    }
    let end = HEADER_LEN + len as usize;
    if end > data.len() {
        return Err(true);
    }
    let record = &data[HEADER_LEN..end];
    if crc(version, record) != sum {
        // The whole last frame is there but wrong: torn inside (the data
        // blocks did not all land); wrong with data after it: damage.
        return Err(end == data.len());
    }
    Ok((version, record))
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
        f.write_all(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xfa, 1, 2]).unwrap();
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

    #[test]
    fn a_bad_frame_in_the_middle_refuses_the_log() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(d.path()).unwrap();
        log.append(1, b"one").unwrap();
        log.append(2, b"two").unwrap();
        log.append(3, b"three").unwrap();
        drop(log);
        let p = d.path().join("metadata.log");
        let mut data = std::fs::read(&p).unwrap();
        data[HEADER_LEN + 3 + HEADER_LEN] ^= 0xff; // the second frame's record
        std::fs::write(&p, &data).unwrap();
        let e = MetadataLog::open(d.path()).err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read(&p).unwrap(), data, "nothing was cut");
    }

    #[test]
    fn an_oversized_record_is_an_error_not_a_crash() {
        let d = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(d.path()).unwrap();
        let big = vec![0u8; MAX_RECORD_LEN + 1];
        assert_eq!(log.append(1, &big).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        log.append(1, b"fine").unwrap();
        drop(log);
        assert_eq!(MetadataLog::open(d.path()).unwrap().1.len(), 1);
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
                data.extend_from_slice(&(!(r.len() as u32)).to_be_bytes());
                data.extend_from_slice(&crc(i as u64, r).to_be_bytes());
                data.extend_from_slice(&(i as u64).to_be_bytes());
                data.extend_from_slice(r);
            }
            let at = flip.index(data.len());
            data[at] ^= x;
            let (frames, _, end) = parse(&data);
            prop_assert!(end != End::Clean);
            prop_assert!(frames.len() < records.len());
            for (i, f) in frames.iter().enumerate() {
                prop_assert_eq!(f.version, i as u64);
                prop_assert_eq!(&f.record, &records[i]);
            }
        }
    }
}
