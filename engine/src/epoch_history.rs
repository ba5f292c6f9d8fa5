//! The leader epoch history of one partition: for each leader epoch, the
//! first offset written in it.
//!
//! This is what lets a replica that comes back after a leader change find
//! where its log and the new leader's diverge (OffsetForLeaderEpoch): the end
//! offset of epoch E is the start offset of the first epoch after E. Kafka
//! keeps the same table in its `leader-epoch-checkpoint` file; ours is a text
//! file of the same shape (a version line, a count, then `epoch start` lines),
//! replaced atomically on every change. Changes are rare (a leader change, a
//! truncation, the log start moving past an epoch), so each one is fsync'ed.
//!
//! Invariant: epochs and start offsets both strictly increase along the list.

use std::path::{Path, PathBuf};

use crate::EngineError;

/// The checkpoint file's name in the partition directory.
pub const EPOCH_FILE: &str = "leader-epoch-checkpoint";
const FORMAT_VERSION: u32 = 0;

/// "No epoch" / "no offset" in OffsetForLeaderEpoch answers (Kafka's -1).
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

/// (epoch, start offset) pairs, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<(i32, i64)>,
}

impl EpochHistory {
    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub fn latest(&self) -> Option<(i32, i64)> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns whether the
    /// history changed (and so must be persisted).
    ///
    /// An epoch at or below the latest one with the same start changes
    /// nothing. Entries that the new one contradicts (an epoch >= the new one,
    /// or a start offset >= the new one) are dropped first, as a replica does
    /// when it learns a newer leader's history.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        assert!(epoch >= 0 && start_offset >= 0, "epoch {epoch} and offset {start_offset} must be valid");
        if let Some((e, s)) = self.latest() {
            if e == epoch && s <= start_offset {
                return false;
            }
            if e > epoch && self.entries.iter().any(|&(x, xs)| x == epoch && xs <= start_offset) {
                // An old epoch seen again (a replicated batch of a past
                // leader below a later one's start): already known.
                return false;
            }
        }
        self.entries.retain(|&(e, s)| e < epoch && s < start_offset);
        self.entries.push((epoch, start_offset));
        self.check();
        true
    }

    /// The log was truncated to end at `end_offset`: epochs starting at or
    /// after it are gone.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, s)| s < end_offset);
        before != self.entries.len()
    }

    /// The log now starts at `start_offset`: epochs that ended before it are
    /// gone, and the epoch it falls in now starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let first_kept = self.entries.partition_point(|&(_, s)| s <= start_offset);
        if first_kept == 0 {
            return false;
        }
        let (epoch, start) = self.entries[first_kept - 1];
        if first_kept == 1 && start == start_offset {
            return false;
        }
        self.entries.drain(..first_kept - 1);
        self.entries[0] = (epoch, start_offset);
        self.check();
        true
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `requested` this log knows
    /// and the offset where it ends (the next epoch's start, or the log end
    /// for the latest epoch). An epoch above every known one is undefined.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        let Some((latest, _)) = self.latest() else {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        };
        if requested == UNDEFINED_EPOCH || requested > latest {
            return (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        }
        if requested == latest {
            return (latest, log_end);
        }
        let higher = self.entries.partition_point(|&(e, _)| e <= requested);
        let next_start = self.entries[higher].1;
        if higher == 0 {
            // Older than anything we have: the requester's epoch ends where
            // our history begins.
            (requested, next_start)
        } else {
            (self.entries[higher - 1].0, next_start)
        }
    }

    /// The epoch of the batch at `offset` according to the history.
    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let i = self.entries.partition_point(|&(_, s)| s <= offset);
        (i > 0).then(|| self.entries[i - 1].0)
    }

    fn check(&self) {
        debug_assert!(
            self.entries.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
            "epoch history must increase in both epoch and offset: {:?}",
            self.entries
        );
    }

    pub fn encode(&self) -> String {
        let mut s = format!("{FORMAT_VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {o}\n"));
        }
        s
    }

    /// Parses a checkpoint; `None` for anything malformed (the caller then
    /// rebuilds the history from the log).
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        if lines.next()?.trim().parse::<u32>().ok()? != FORMAT_VERSION {
            return None;
        }
        let n: usize = lines.next()?.trim().parse().ok()?;
        let mut entries = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let mut parts = lines.next()?.split_whitespace();
            let e: i32 = parts.next()?.parse().ok()?;
            let o: i64 = parts.next()?.parse().ok()?;
            if parts.next().is_some() || e < 0 || o < 0 {
                return None;
            }
            if let Some(&(pe, po)) = entries.last() {
                if e <= pe || o <= po {
                    return None;
                }
            }
            entries.push((e, o));
        }
        if lines.any(|l| !l.trim().is_empty()) {
            return None;
        }
        Some(EpochHistory { entries })
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(EPOCH_FILE)
    }

    /// Reads the checkpoint in `dir`: `Ok(None)` if there is none or it is
    /// unreadable.
    pub fn load(dir: &Path) -> Option<Self> {
        std::fs::read_to_string(Self::path(dir)).ok().and_then(|t| Self::decode(&t))
    }

    /// Replaces the checkpoint atomically and durably: temp file, fsync,
    /// rename, fsync of the directory.
    pub fn persist(&self, dir: &Path) -> Result<(), EngineError> {
        use std::io::Write;
        let path = Self::path(dir);
        let tmp = path.with_extension("tmp");
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| EngineError::Io { op, path: p, source }
        };
        let mut f = std::fs::File::create(&tmp).map_err(io("create epoch checkpoint", &tmp))?;
        f.write_all(self.encode().as_bytes()).map_err(io("write epoch checkpoint", &tmp))?;
        f.sync_all().map_err(io("fsync epoch checkpoint", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename epoch checkpoint", &path))?;
        crate::segment::sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(entries: &[(i32, i64)]) -> EpochHistory {
        EpochHistory { entries: entries.to_vec() }
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let x = h(&[(1, 0), (3, 100), (4, 250)]);
        // The latest epoch ends at the log end.
        assert_eq!(x.end_offset_for(4, 300), (4, 300));
        // A known older epoch ends where the next begins.
        assert_eq!(x.end_offset_for(3, 300), (3, 250));
        // An epoch we never had: the largest below it, ending where the next begins.
        assert_eq!(x.end_offset_for(2, 300), (1, 100));
        // Below the first: the requested epoch, ending at our first start.
        assert_eq!(x.end_offset_for(0, 300), (0, 0));
        // Above the latest, or undefined: unknown.
        assert_eq!(x.end_offset_for(5, 300), (-1, -1));
        assert_eq!(x.end_offset_for(-1, 300), (-1, -1));
        assert_eq!(EpochHistory::default().end_offset_for(0, 0), (-1, -1));
    }

    #[test]
    fn assign_appends_and_drops_contradicted_entries() {
        let mut x = EpochHistory::default();
        assert!(x.assign(0, 0));
        assert!(!x.assign(0, 10), "same epoch later: nothing new");
        assert!(x.assign(2, 10));
        assert!(!x.assign(0, 5), "an older epoch seen again below a later start");
        assert_eq!(x.entries(), &[(0, 0), (2, 10)]);
        // A newer leader's history says epoch 3 starts at 5: epoch 2 at 10 is contradicted.
        assert!(x.assign(3, 5));
        assert_eq!(x.entries(), &[(0, 0), (3, 5)]);
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut x = h(&[(1, 0), (3, 100), (4, 250)]);
        assert!(x.truncate_from_end(250));
        assert_eq!(x.entries(), &[(1, 0), (3, 100)]);
        assert!(!x.truncate_from_end(250));
        assert!(x.truncate_from_start(120));
        assert_eq!(x.entries(), &[(3, 120)]);
        assert!(!x.truncate_from_start(120));
        assert!(!x.truncate_from_start(50), "below the first start: nothing to drop");
        assert_eq!(x.epoch_at(119), None);
        assert_eq!(x.epoch_at(500), Some(3));
    }

    #[test]
    fn checkpoint_round_trips_and_rejects_garbage() {
        let x = h(&[(0, 0), (7, 42)]);
        assert_eq!(EpochHistory::decode(&x.encode()), Some(x.clone()));
        for bad in
            ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0 0 0\n", "0\n2\n3 10\n2 20\n", "0\n1\n-1 0\n", "0\n1\n0 0\nx\n"]
        {
            assert_eq!(EpochHistory::decode(bad), None, "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("rb-epochs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        x.persist(&dir).unwrap();
        assert_eq!(EpochHistory::load(&dir), Some(x));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    proptest! {
        /// Whatever sequence of leader changes and truncations, the history
        /// stays strictly increasing, survives encoding, and answers
        /// OffsetForLeaderEpoch consistently with `epoch_at`.
        #[test]
        fn history_stays_ordered(ops in proptest::collection::vec((0u8..3, 0i32..20, 0i64..1000), 1..60)) {
            let mut x = EpochHistory::default();
            for (op, e, o) in ops {
                match op {
                    0 => { x.assign(e, o); }
                    1 => { x.truncate_from_end(o); }
                    _ => { x.truncate_from_start(o); }
                }
                prop_assert!(x.entries().windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
                prop_assert_eq!(EpochHistory::decode(&x.encode()), Some(x.clone()));
                for &(epoch, start) in x.entries() {
                    prop_assert_eq!(x.epoch_at(start), Some(epoch));
                    let (ee, end) = x.end_offset_for(epoch, 10_000);
                    prop_assert_eq!(ee, epoch);
                    prop_assert!(end > start);
                }
            }
        }
    }
}
