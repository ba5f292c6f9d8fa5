//! The durable Raft log and snapshot of the metadata quorum: raft-rs's
//! `Storage`, kept in memory for reads and written through a `Disk`.
//!
//! Two files in the node's `meta/` directory:
//! - `quorum.log`: frames appended in order; an `Entry` frame (raft-rs's
//!   protobuf encoding of the entry, whose data is one flatbuffers metadata
//!   record) or a `HardState` frame (term, vote, commit; the last one wins).
//!   An entry at index i replaces any entries at i and after it (a new
//!   leader overwrote an uncommitted tail), so replaying the frames in order
//!   rebuilds the log. Entries and hard state are appended and fdatasync'ed
//!   before any message that depends on them is sent (`persist`).
//! - `quorum.snapshot`: the metadata image at an applied index (JSON), with
//!   that index, its term and the voters; replaced atomically. Entries at or
//!   below it are dropped from memory and the log file is rewritten.
//!
//! A frame is `[len: u32][!len: u32][crc32c: u32][kind: u8][payload]`,
//! big-endian, the CRC over kind and payload. As in every append-only file
//! here, a bad last frame is a torn write (cut off: nothing in it was
//! acknowledged, since acknowledgement follows the sync), while a bad frame
//! with valid data after it is damage that no crash makes: the node refuses
//! to start rather than forget what it promised its peers.

use protobuf::Message as PbMessage;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::disk::Disk;

pub const LOG_FILE: &str = "quorum.log";
pub const SNAPSHOT_FILE: &str = "quorum.snapshot";

const KIND_ENTRY: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const HEADER_LEN: usize = 12;
/// No metadata entry or image comes near this; a length above it is damage.
const MAX_FRAME: usize = 256 << 20;

/// The snapshot as stored: the image's bytes at `index`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSnapshot {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub data: Vec<u8>,
}

pub struct RaftStore<D: Disk> {
    disk: D,
    hard: HardState,
    voters: Vec<u64>,
    snapshot: StoredSnapshot,
    /// Entries after the snapshot: `entries[i].index == snapshot.index + 1 + i`.
    entries: Vec<Entry>,
    /// Bytes in the log file (frames appended since the last rewrite).
    log_bytes: u64,
    /// Frames appended but not yet synced.
    dirty: bool,
}

fn broken(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32 + 1;
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    let mut out = Vec::with_capacity(HEADER_LEN + len as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&(!len).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// Frames read back: (kind, payload) of each valid frame, the length of the
/// valid prefix, and what follows it: nothing (`None`), a torn tail
/// (`Some(true)`) or damage with valid data after it (`Some(false)`).
type Parsed<'a> = (Vec<(u8, &'a [u8])>, usize, Option<bool>);

fn parse_frames(data: &[u8]) -> Parsed<'_> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let ok = (|| {
            let h = data.get(pos..pos + HEADER_LEN)?;
            let len = u32::from_be_bytes(h[0..4].try_into().ok()?);
            let inv = u32::from_be_bytes(h[4..8].try_into().ok()?);
            let crc = u32::from_be_bytes(h[8..12].try_into().ok()?);
            if len != !inv || len == 0 || len as usize > MAX_FRAME {
                return None;
            }
            let body = data.get(pos + HEADER_LEN..pos + HEADER_LEN + len as usize)?;
            if crc32c::crc32c(body) != crc {
                return None;
            }
            Some((body[0], &body[1..], HEADER_LEN + len as usize))
        })();
        match ok {
            Some((kind, payload, n)) => {
                out.push((kind, payload));
                pos += n;
            }
            None => {
                // Torn if no valid frame starts anywhere after this point.
                let torn = !has_valid_frame_after(data, pos + 1);
                return (out, pos, Some(torn));
            }
        }
    }
    (out, pos, None)
}

/// Whether a whole, CRC-valid frame starts at any byte from `from` on: a
/// crash tears only the last write, so valid data after a bad frame means
/// the file was damaged some other way.
fn has_valid_frame_after(data: &[u8], from: usize) -> bool {
    (from..data.len().saturating_sub(HEADER_LEN)).any(|p| {
        let h = &data[p..p + HEADER_LEN];
        let len = u32::from_be_bytes(h[0..4].try_into().unwrap());
        let inv = u32::from_be_bytes(h[4..8].try_into().unwrap());
        if len != !inv || len == 0 || len as usize > MAX_FRAME {
            return false;
        }
        let crc = u32::from_be_bytes(h[8..12].try_into().unwrap());
        data.get(p + HEADER_LEN..p + HEADER_LEN + len as usize).is_some_and(|b| crc32c::crc32c(b) == crc)
    })
}

fn encode_snapshot(s: &StoredSnapshot) -> Vec<u8> {
    let mut p = Vec::with_capacity(24 + s.voters.len() * 8 + s.data.len());
    p.extend_from_slice(&s.index.to_be_bytes());
    p.extend_from_slice(&s.term.to_be_bytes());
    p.extend_from_slice(&(s.voters.len() as u32).to_be_bytes());
    for v in &s.voters {
        p.extend_from_slice(&v.to_be_bytes());
    }
    p.extend_from_slice(&s.data);
    frame(KIND_SNAPSHOT, &p)
}

fn decode_snapshot(bytes: &[u8]) -> Option<StoredSnapshot> {
    let (frames, _, bad) = parse_frames(bytes);
    if bad.is_some() || frames.len() != 1 || frames[0].0 != KIND_SNAPSHOT {
        return None;
    }
    let p = frames[0].1;
    let index = u64::from_be_bytes(p.get(0..8)?.try_into().ok()?);
    let term = u64::from_be_bytes(p.get(8..16)?.try_into().ok()?);
    let n = u32::from_be_bytes(p.get(16..20)?.try_into().ok()?) as usize;
    let vend = 20usize.checked_add(n.checked_mul(8)?)?;
    let voters = p.get(20..vend)?.chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect();
    Some(StoredSnapshot { index, term, voters, data: p[vend..].to_vec() })
}

impl<D: Disk> RaftStore<D> {
    /// Opens the store on `disk` for a quorum of `voters` (the static
    /// configuration). A torn log tail is cut; damage refuses to open.
    pub fn open(mut disk: D, voters: &[u64]) -> std::io::Result<RaftStore<D>> {
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        let snapshot = match disk.read(SNAPSHOT_FILE)? {
            None => StoredSnapshot { voters: voters.clone(), ..Default::default() },
            Some(b) => decode_snapshot(&b).ok_or_else(|| broken(format!("{SNAPSHOT_FILE} is damaged")))?,
        };
        if snapshot.index > 0 && snapshot.voters != voters {
            return Err(broken(format!(
                "the stored quorum has voters {:?} but controller_quorum_voters names {:?}; the voter set of an existing quorum cannot change",
                snapshot.voters, voters
            )));
        }
        let mut store = RaftStore {
            disk,
            hard: HardState::default(),
            voters,
            snapshot,
            entries: Vec::new(),
            log_bytes: 0,
            dirty: false,
        };
        let data = store.disk.read(LOG_FILE)?.unwrap_or_default();
        let (frames, valid, bad) = parse_frames(&data);
        match bad {
            None => {}
            Some(true) => {
                tracing::warn!(valid, len = data.len(), "cutting a torn tail off the quorum log");
                store.disk.truncate(LOG_FILE, valid as u64)?;
            }
            Some(false) => {
                return Err(broken(format!(
                    "{LOG_FILE}: bad frame at byte {valid} with valid frames after it; refusing to drop acknowledged entries"
                )))
            }
        }
        store.log_bytes = valid as u64;
        for (i, (kind, payload)) in frames.into_iter().enumerate() {
            match kind {
                KIND_ENTRY => {
                    let e = Entry::parse_from_bytes(payload)
                        .map_err(|e| broken(format!("{LOG_FILE}: frame {i}: entry: {e}")))?;
                    if e.index <= store.snapshot.index {
                        continue; // written before the snapshot that covers it
                    }
                    store.truncate_from(e.index);
                    if e.index != store.last() + 1 {
                        return Err(broken(format!(
                            "{LOG_FILE}: entry {} after entry {}: the log has a gap",
                            e.index,
                            store.last()
                        )));
                    }
                    store.entries.push(e);
                }
                KIND_HARD_STATE => {
                    store.hard = HardState::parse_from_bytes(payload)
                        .map_err(|e| broken(format!("{LOG_FILE}: frame {i}: hard state: {e}")))?;
                }
                k => return Err(broken(format!("{LOG_FILE}: frame {i} has unknown kind {k}"))),
            }
        }
        // The snapshot is committed by definition; its term is a lower bound.
        store.hard.commit = store.hard.commit.max(store.snapshot.index).min(store.last());
        store.hard.term = store.hard.term.max(store.snapshot.term);
        Ok(store)
    }

    fn last(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    /// Drops in-memory entries at `index` and after.
    fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.snapshot.index + 1) as usize;
        self.entries.truncate(keep);
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard
    }
    pub fn snapshot_stored(&self) -> &StoredSnapshot {
        &self.snapshot
    }
    pub fn voters(&self) -> &[u64] {
        &self.voters
    }
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }
    /// Nothing was ever stored: a node's first start.
    pub fn is_empty(&self) -> bool {
        self.snapshot.index == 0 && self.entries.is_empty() && self.hard == HardState::default()
    }
    pub fn disk(&self) -> &D {
        &self.disk
    }
    pub fn into_disk(self) -> D {
        self.disk
    }
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    fn write(&mut self, kind: u8, payload: &[u8]) -> std::io::Result<()> {
        let f = frame(kind, payload);
        self.disk.append(LOG_FILE, &f)?;
        self.log_bytes += f.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Appends entries (replacing any conflicting tail) and the hard state,
    /// then syncs: after this returns, a crash keeps them.
    pub fn persist(&mut self, entries: &[Entry], hard: Option<&HardState>) -> std::io::Result<()> {
        if let Some(first) = entries.first() {
            assert!(first.index > self.snapshot.index, "entry {} is under the snapshot", first.index);
            assert!(first.index <= self.last() + 1, "entry {} leaves a gap after {}", first.index, self.last());
            for e in entries {
                let bytes = e.write_to_bytes().map_err(|e| broken(format!("encoding an entry: {e}")))?;
                self.write(KIND_ENTRY, &bytes)?;
            }
            self.truncate_from(first.index);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard {
            self.set_hard_state(hs.clone())?;
        }
        if self.dirty {
            self.disk.sync(LOG_FILE)?;
            self.dirty = false;
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hs: HardState) -> std::io::Result<()> {
        if hs != self.hard {
            let bytes = hs.write_to_bytes().map_err(|e| broken(format!("encoding hard state: {e}")))?;
            self.write(KIND_HARD_STATE, &bytes)?;
            self.hard = hs;
        }
        Ok(())
    }

    /// Records a new commit index. Not synced by itself: a commit index can
    /// be relearned from the leader, and the next `persist` syncs it anyway.
    pub fn set_commit(&mut self, commit: u64) -> std::io::Result<()> {
        let mut hs = self.hard.clone();
        hs.commit = commit;
        self.set_hard_state(hs)
    }

    /// Installs a snapshot received from the leader: it replaces the whole log.
    pub fn apply_snapshot(&mut self, snap: &Snapshot) -> std::io::Result<()> {
        let m = snap.get_metadata();
        let stored = StoredSnapshot {
            index: m.index,
            term: m.term,
            voters: self.voters.clone(),
            data: snap.get_data().to_vec(),
        };
        self.disk.replace(SNAPSHOT_FILE, &encode_snapshot(&stored))?;
        self.snapshot = stored;
        self.entries.clear();
        self.hard.term = self.hard.term.max(m.term);
        self.hard.commit = m.index;
        self.rewrite_log()
    }

    /// Takes a snapshot of the image at `index` (applied here) and drops the
    /// entries it covers.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> std::io::Result<()> {
        assert!(index <= self.hard.commit, "snapshot at {index} beyond commit {}", self.hard.commit);
        if index <= self.snapshot.index {
            return Ok(());
        }
        let term = self.term_of(index).expect("an applied index is in the log");
        let stored = StoredSnapshot { index, term, voters: self.voters.clone(), data };
        self.disk.replace(SNAPSHOT_FILE, &encode_snapshot(&stored))?;
        let drop = (index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = stored;
        self.rewrite_log()
    }

    /// Rewrites the log file with the hard state and the entries kept.
    fn rewrite_log(&mut self) -> std::io::Result<()> {
        let mut out = frame(KIND_HARD_STATE, &self.hard.write_to_bytes().map_err(|e| broken(e.to_string()))?);
        for e in &self.entries {
            out.extend(frame(KIND_ENTRY, &e.write_to_bytes().map_err(|e| broken(e.to_string()))?));
        }
        self.disk.replace(LOG_FILE, &out)?;
        self.log_bytes = out.len() as u64;
        self.dirty = false;
        Ok(())
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        if idx < self.snapshot.index || idx > self.last() {
            return None;
        }
        Some(self.entries[(idx - self.snapshot.index - 1) as usize].term)
    }

    /// Entry at `idx`, if held.
    pub fn entry(&self, idx: u64) -> Option<&Entry> {
        if idx <= self.snapshot.index || idx > self.last() {
            return None;
        }
        self.entries.get((idx - self.snapshot.index - 1) as usize)
    }

    fn conf_state(&self) -> ConfState {
        ConfState { voters: self.voters.clone(), ..Default::default() }
    }
}

impl<D: Disk> raft::Storage for RaftStore<D> {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard.clone(), self.conf_state()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(high <= self.last() + 1, "entries up to {high} asked, last is {}", self.last());
        let lo = (low - self.snapshot.index - 1) as usize;
        let hi = (high - self.snapshot.index - 1) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let mut s = Snapshot::default();
        s.set_data(self.snapshot.data.clone().into());
        let m = s.mut_metadata();
        m.index = self.snapshot.index;
        m.term = self.snapshot.term;
        m.set_conf_state(self.conf_state());
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::disk::SimDisk;
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry { index, term, data: data.to_vec().into(), ..Default::default() }
    }

    #[test]
    fn entries_and_hard_state_survive_reopen_and_tails_are_replaced() {
        let mut s = RaftStore::open(SimDisk::default(), &[1, 2, 3]).unwrap();
        assert!(s.is_empty());
        let hs = HardState { term: 2, vote: 1, commit: 0, ..Default::default() };
        s.persist(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")], Some(&hs)).unwrap();
        // A new leader overwrites the uncommitted tail from index 2.
        s.persist(&[entry(2, 2, b"B")], None).unwrap();
        s.set_commit(2).unwrap();
        let s = RaftStore::open(s.into_disk(), &[1, 2, 3]).unwrap();
        assert_eq!(s.last_index().unwrap(), 2);
        assert_eq!(s.entry(2).unwrap().data.as_ref(), b"B");
        assert_eq!(s.hard_state().commit, 2);
        assert_eq!(s.hard_state().vote, 1);
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_refuses() {
        let mut s = RaftStore::open(SimDisk::default(), &[1]).unwrap();
        s.persist(&[entry(1, 1, b"a")], Some(&HardState { term: 1, vote: 1, commit: 1, ..Default::default() }))
            .unwrap();
        let mut d = s.into_disk();
        d.append(LOG_FILE, &frame(KIND_ENTRY, b"garbage")[..9]).unwrap();
        let s = RaftStore::open(d, &[1]).unwrap();
        assert_eq!(s.last_index().unwrap(), 1);
        // A flipped byte in the first frame, with a valid frame after it.
        let mut d = s.into_disk();
        let mut bytes = d.read(LOG_FILE).unwrap().unwrap();
        bytes[HEADER_LEN + 3] ^= 1;
        d.replace(LOG_FILE, &bytes).unwrap();
        let e = RaftStore::open(d, &[1]).err().expect("refused");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn compaction_keeps_later_entries_and_the_snapshot() {
        let mut s = RaftStore::open(SimDisk::default(), &[1]).unwrap();
        let ents: Vec<_> = (1..=5).map(|i| entry(i, 1, b"x")).collect();
        s.persist(&ents, Some(&HardState { term: 1, vote: 1, commit: 5, ..Default::default() })).unwrap();
        s.compact(3, b"image@3".to_vec()).unwrap();
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.term(3).unwrap(), 1);
        assert!(s.entries(3, 4, None, GetEntriesContext::empty(false)).is_err());
        let s = RaftStore::open(s.into_disk(), &[1]).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (4, 5));
        assert_eq!(s.snapshot(0, 0).unwrap().get_data(), b"image@3");
        // A different voter set is refused.
        assert!(RaftStore::open(s.into_disk(), &[1, 2]).is_err());
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let mut s = RaftStore::open(SimDisk::default(), &[1, 2, 3]).unwrap();
        s.persist(&[entry(1, 1, b"a")], Some(&HardState { term: 1, vote: 2, commit: 1, ..Default::default() }))
            .unwrap();
        let mut snap = Snapshot::default();
        snap.set_data(b"img".to_vec().into());
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        s.apply_snapshot(&snap).unwrap();
        let s = RaftStore::open(s.into_disk(), &[1, 2, 3]).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (11, 10));
        assert_eq!(s.hard_state().commit, 10);
        assert_eq!(s.hard_state().term, 3);
    }
}
