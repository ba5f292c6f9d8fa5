//! Sparse per-segment indexes: offset -> file position, and timestamp -> offset.
//!
//! A segment holds batches back to back; finding the batch that contains an
//! offset (Fetch) or the first batch at or after a timestamp (ListOffsets)
//! would otherwise require scanning from the start of the segment. These
//! indexes hold one entry every few kilobytes of log, so a lookup returns a
//! *starting point* for a short forward scan, never an exact answer.
//!
//! Both indexes are pure in-memory structures with a compact big-endian
//! encoding. They are derived data: [`OffsetIndex::decode`] and
//! [`TimeIndex::decode`] reject anything that is not well-formed and
//! monotonic, and the caller then rebuilds the index from the log itself.
//!
//! Offsets are stored as `u32` relative to the segment's base offset, which
//! bounds a segment to 2^32 offsets; segments roll long before that.

/// Why an encoded index was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum IndexError {
    /// Byte length is not a multiple of the entry size.
    #[error("index length {len} is not a multiple of the {entry_size}-byte entry size")]
    BadLength { len: usize, entry_size: usize },
    /// Entry `index` does not strictly increase over its predecessor.
    #[error("index entry {index} is not strictly increasing")]
    NotMonotonic { index: usize },
    /// Base offset is negative or an entry's absolute offset overflows.
    #[error("offset out of range in index entry {index}")]
    OffsetOutOfRange { index: usize },
}

/// Size of one encoded [`OffsetIndex`] entry.
pub const OFFSET_INDEX_ENTRY_LEN: usize = 8;
/// Size of one encoded [`TimeIndex`] entry.
pub const TIME_INDEX_ENTRY_LEN: usize = 12;

fn relative(base_offset: i64, offset: i64) -> u32 {
    assert!(offset >= base_offset, "offset {offset} below segment base {base_offset}");
    let rel = offset - base_offset; // cannot overflow: both non-negative
    u32::try_from(rel).unwrap_or_else(|_| panic!("offset {offset} too far from base {base_offset}"))
}

fn absolute(base_offset: i64, rel: u32) -> i64 {
    base_offset + i64::from(rel)
}

/// Sparse map from offset to the file position of the batch starting there.
///
/// Invariant: entries are strictly increasing in both relative offset and
/// position. Each entry `(o, p)` means "the batch with base offset
/// `base_offset + o` starts at byte `p` of the segment file".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    base_offset: i64,
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Empty index for the segment starting at `base_offset` (>= 0).
    pub fn new(base_offset: i64) -> Self {
        assert!(base_offset >= 0, "negative segment base offset {base_offset}");
        OffsetIndex { base_offset, entries: Vec::new() }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Add an entry.
    ///
    /// # Panics
    /// If `offset` is below the base offset, more than `u32::MAX` past it, or
    /// if `offset` or `position` does not strictly increase.
    pub fn append(&mut self, offset: i64, position: u32) {
        let rel = relative(self.base_offset, offset);
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            assert!(
                rel > last_rel,
                "offset index: offset {offset} not above last {}",
                absolute(self.base_offset, last_rel)
            );
            assert!(position > last_pos, "offset index: position {position} not above last {last_pos}");
        }
        self.entries.push((rel, position));
    }

    /// The greatest entry with offset <= `target`, or `(base_offset, 0)` if
    /// there is none: a forward scan from that position finds `target`.
    pub fn lookup(&self, target: i64) -> (i64, u32) {
        if target < self.base_offset {
            return (self.base_offset, 0);
        }
        // Targets beyond u32 range are past every entry.
        let rel = u32::try_from(target - self.base_offset).unwrap_or(u32::MAX);
        let n = self.entries.partition_point(|&(o, _)| o <= rel);
        match n.checked_sub(1) {
            Some(i) => {
                let (o, p) = self.entries[i];
                (absolute(self.base_offset, o), p)
            }
            None => (self.base_offset, 0),
        }
    }

    /// Remove every entry whose offset is >= `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        if offset <= self.base_offset {
            self.entries.clear();
            return;
        }
        // Beyond u32 range every entry is below `offset`.
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return;
        };
        let keep = self.entries.partition_point(|&(o, _)| o < rel);
        self.entries.truncate(keep);
    }

    /// Remove every entry whose position is >= `position` (used when a
    /// segment file is cut at a byte position by recovery).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    /// Last entry as `(absolute offset, position)`.
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries.last().map(|&(o, p)| (absolute(self.base_offset, o), p))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries as `(absolute offset, position)`.
    pub fn entries(&self) -> impl Iterator<Item = (i64, u32)> + '_ {
        self.entries.iter().map(move |&(o, p)| (absolute(self.base_offset, o), p))
    }

    /// 8 bytes per entry: relative offset u32 BE, position u32 BE.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_from(0)
    }

    /// Encodes entries `from..` only: what an append to the index file needs.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let tail = &self.entries[from.min(self.entries.len())..];
        let mut out = Vec::with_capacity(tail.len() * OFFSET_INDEX_ENTRY_LEN);
        for &(o, p) in tail {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decode an index written by [`encode`](Self::encode); rejects a ragged
    /// length, a negative base offset, or non-monotonic entries.
    pub fn decode(base_offset: i64, bytes: &[u8]) -> Result<OffsetIndex, IndexError> {
        // (not `len % n`: clippy wants `is_multiple_of`, which needs Rust 1.87)
        if !bytes.chunks_exact(OFFSET_INDEX_ENTRY_LEN).remainder().is_empty() {
            return Err(IndexError::BadLength { len: bytes.len(), entry_size: OFFSET_INDEX_ENTRY_LEN });
        }
        if base_offset < 0 {
            return Err(IndexError::OffsetOutOfRange { index: 0 });
        }
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / OFFSET_INDEX_ENTRY_LEN);
        for (index, chunk) in bytes.chunks_exact(OFFSET_INDEX_ENTRY_LEN).enumerate() {
            let o = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let p = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if base_offset.checked_add(i64::from(o)).is_none() {
                return Err(IndexError::OffsetOutOfRange { index });
            }
            if let Some(&(lo, lp)) = entries.last() {
                if o <= lo || p <= lp {
                    return Err(IndexError::NotMonotonic { index });
                }
            }
            entries.push((o, p));
        }
        Ok(OffsetIndex { base_offset, entries })
    }
}

/// Sparse map from timestamp to offset.
///
/// Entry semantics: `(ts, offset)` means "the largest `maxTimestamp` of all
/// batches of the segment up to and including the batch whose base offset
/// is `offset` is `ts`". Callers must therefore pass the *running* maximum
/// to [`maybe_append`](Self::maybe_append), not just the current batch's
/// maxTimestamp, when they index sparsely. Entries strictly increase in both
/// components.
///
/// Encoding: 12 bytes per entry, `timestamp i64 | offset - base u32`, both
/// big-endian; appending entries only appends bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    base_offset: i64,
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Empty index for the segment starting at `base_offset` (>= 0).
    pub fn new(base_offset: i64) -> Self {
        assert!(base_offset >= 0, "negative segment base offset {base_offset}");
        TimeIndex { base_offset, entries: Vec::new() }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Append `(max_ts, offset)` if `max_ts` is strictly above the last
    /// indexed timestamp (or the index is empty). Returns whether it did.
    ///
    /// `max_ts` must be the maximum timestamp of all batches of the segment
    /// up to and including the batch at base offset `offset`.
    ///
    /// # Panics
    /// If an appended offset is below the base, more than `u32::MAX` past
    /// it, or not strictly above the last indexed offset.
    pub fn maybe_append(&mut self, max_ts: i64, offset: i64) -> bool {
        if let Some(&(last_ts, last_rel)) = self.entries.last() {
            if max_ts <= last_ts {
                return false;
            }
            let rel = relative(self.base_offset, offset);
            assert!(
                rel > last_rel,
                "time index: offset {offset} not above last {}",
                absolute(self.base_offset, last_rel)
            );
            self.entries.push((max_ts, rel));
        } else {
            let rel = relative(self.base_offset, offset);
            self.entries.push((max_ts, rel));
        }
        true
    }

    /// Offset of the first entry whose timestamp is >= `target_ts`, if any.
    ///
    /// This is an *upper bound*: the first batch with maxTimestamp >=
    /// `target_ts` has a base offset <= the returned offset (the running max
    /// reached the target by that batch). `None` means no indexed batch
    /// reached the target; unindexed batches after the last entry still may.
    /// To find the batch itself use [`lookup_start`](Self::lookup_start).
    pub fn lookup(&self, target_ts: i64) -> Option<i64> {
        let i = self.entries.partition_point(|&(ts, _)| ts < target_ts);
        self.entries.get(i).map(|&(_, o)| absolute(self.base_offset, o))
    }

    /// An offset from which a forward scan of the segment's batches is
    /// guaranteed to meet the first batch whose maxTimestamp is >=
    /// `target_ts` (if the segment has one) without skipping it.
    ///
    /// Let `k` be the first entry with ts >= target. Every batch up to entry
    /// `k-1`'s offset has maxTimestamp < target (their running max is below
    /// it), so the answer lies strictly after entry `k-1`'s batch and at or
    /// before entry `k`'s: we return entry `k-1`'s offset. If no entry
    /// reaches the target, the same argument gives the last entry's offset.
    /// If even the first entry reaches the target (or the index is empty),
    /// nothing is known and we return the segment base offset.
    pub fn lookup_start(&self, target_ts: i64) -> i64 {
        let k = self.entries.partition_point(|&(ts, _)| ts < target_ts);
        match k.checked_sub(1) {
            Some(prev) => absolute(self.base_offset, self.entries[prev].1),
            None => self.base_offset,
        }
    }

    /// Remove every entry whose offset is >= `offset`.
    pub fn truncate_to_offset(&mut self, offset: i64) {
        if offset <= self.base_offset {
            self.entries.clear();
            return;
        }
        // Beyond u32 range every entry is below `offset`.
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return;
        };
        let keep = self.entries.partition_point(|&(_, o)| o < rel);
        self.entries.truncate(keep);
    }

    /// Last entry as `(timestamp, absolute offset)`.
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries.last().map(|&(ts, o)| (ts, absolute(self.base_offset, o)))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries as `(timestamp, absolute offset)`.
    pub fn entries(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.entries.iter().map(move |&(ts, o)| (ts, absolute(self.base_offset, o)))
    }

    /// 12 bytes per entry: timestamp i64 BE, relative offset u32 BE.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_from(0)
    }

    /// Encodes entries `from..` only: what an append to the index file needs.
    pub fn encode_from(&self, from: usize) -> Vec<u8> {
        let tail = &self.entries[from.min(self.entries.len())..];
        let mut out = Vec::with_capacity(tail.len() * TIME_INDEX_ENTRY_LEN);
        for &(ts, o) in tail {
            out.extend_from_slice(&ts.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Decode an index written by [`encode`](Self::encode); rejects a ragged
    /// length, a negative base offset, or non-monotonic entries.
    pub fn decode(base_offset: i64, bytes: &[u8]) -> Result<TimeIndex, IndexError> {
        // (not `len % n`: clippy wants `is_multiple_of`, which needs Rust 1.87)
        if !bytes.chunks_exact(TIME_INDEX_ENTRY_LEN).remainder().is_empty() {
            return Err(IndexError::BadLength { len: bytes.len(), entry_size: TIME_INDEX_ENTRY_LEN });
        }
        if base_offset < 0 {
            return Err(IndexError::OffsetOutOfRange { index: 0 });
        }
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / TIME_INDEX_ENTRY_LEN);
        for (index, c) in bytes.chunks_exact(TIME_INDEX_ENTRY_LEN).enumerate() {
            let ts = i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let o = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if base_offset.checked_add(i64::from(o)).is_none() {
                return Err(IndexError::OffsetOutOfRange { index });
            }
            if let Some(&(lts, lo)) = entries.last() {
                if ts <= lts || o <= lo {
                    return Err(IndexError::NotMonotonic { index });
                }
            }
            entries.push((ts, o));
        }
        Ok(TimeIndex { base_offset, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offset_index_lookup_basics() {
        let mut idx = OffsetIndex::new(1000);
        assert!(idx.is_empty());
        assert_eq!(idx.lookup(5000), (1000, 0));
        idx.append(1000, 0);
        idx.append(1010, 4096);
        idx.append(1025, 8192);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(999), (1000, 0));
        assert_eq!(idx.lookup(i64::MIN), (1000, 0));
        assert_eq!(idx.lookup(1000), (1000, 0));
        assert_eq!(idx.lookup(1009), (1000, 0));
        assert_eq!(idx.lookup(1010), (1010, 4096));
        assert_eq!(idx.lookup(1024), (1010, 4096));
        assert_eq!(idx.lookup(1025), (1025, 8192));
        assert_eq!(idx.lookup(i64::MAX), (1025, 8192));
        assert_eq!(idx.last_entry(), Some((1025, 8192)));
        assert_eq!(idx.entries().collect::<Vec<_>>(), vec![(1000, 0), (1010, 4096), (1025, 8192)]);
    }

    #[test]
    fn offset_index_lookup_without_entry_at_base() {
        let mut idx = OffsetIndex::new(50);
        idx.append(60, 100);
        assert_eq!(idx.lookup(55), (50, 0));
        assert_eq!(idx.lookup(61), (60, 100));
    }

    #[test]
    fn offset_index_truncate() {
        let mut idx = OffsetIndex::new(10);
        for i in 0..5 {
            idx.append(10 + i * 10, (i * 100) as u32);
        }
        idx.truncate_to_offset(i64::MAX);
        assert_eq!(idx.len(), 5);
        idx.truncate_to_offset(35);
        assert_eq!(idx.last_entry(), Some((30, 200)));
        idx.truncate_to_offset(30);
        assert_eq!(idx.last_entry(), Some((20, 100)));
        idx.truncate_to_position(100);
        assert_eq!(idx.last_entry(), Some((10, 0)));
        idx.truncate_to_offset(10);
        assert!(idx.is_empty());
        idx.append(10, 0); // appending again after truncation is fine
    }

    #[test]
    #[should_panic(expected = "not above last")]
    fn offset_index_rejects_non_increasing_offset() {
        let mut idx = OffsetIndex::new(0);
        idx.append(5, 10);
        idx.append(5, 20);
    }

    #[test]
    #[should_panic(expected = "position")]
    fn offset_index_rejects_non_increasing_position() {
        let mut idx = OffsetIndex::new(0);
        idx.append(5, 10);
        idx.append(6, 10);
    }

    #[test]
    #[should_panic(expected = "below segment base")]
    fn offset_index_rejects_offset_below_base() {
        OffsetIndex::new(10).append(9, 0);
    }

    #[test]
    #[should_panic(expected = "too far")]
    fn offset_index_rejects_offset_out_of_u32() {
        OffsetIndex::new(0).append(1 << 32, 0);
    }

    #[test]
    fn offset_index_decode_errors() {
        assert_eq!(OffsetIndex::decode(0, &[0; 7]), Err(IndexError::BadLength { len: 7, entry_size: 8 }));
        // (0,0) then (0,0) again: a zero-filled tail
        assert_eq!(OffsetIndex::decode(0, &[0; 16]), Err(IndexError::NotMonotonic { index: 1 }));
        let mut idx = OffsetIndex::new(0);
        idx.append(1, 5);
        idx.append(2, 4096);
        let mut enc = idx.encode();
        enc[15] = 5; // position now equals the previous one
        enc[14] = 0;
        assert_eq!(OffsetIndex::decode(0, &enc), Err(IndexError::NotMonotonic { index: 1 }));
        assert_eq!(OffsetIndex::decode(-1, &[]), Err(IndexError::OffsetOutOfRange { index: 0 }));
        assert_eq!(
            OffsetIndex::decode(i64::MAX, &[0, 0, 0, 1, 0, 0, 0, 0]),
            Err(IndexError::OffsetOutOfRange { index: 0 })
        );
        assert_eq!(OffsetIndex::decode(3, &[]).unwrap(), OffsetIndex::new(3));
    }

    #[test]
    fn time_index_basics() {
        let mut t = TimeIndex::new(100);
        assert_eq!(t.base_offset(), 100);
        assert_eq!(t.lookup(0), None);
        assert_eq!(t.lookup_start(0), 100);
        assert!(t.maybe_append(10, 100));
        assert!(!t.maybe_append(10, 105)); // not strictly greater
        assert!(!t.maybe_append(5, 106));
        assert!(t.maybe_append(20, 110));
        assert!(t.maybe_append(30, 120));
        assert_eq!(t.len(), 3);
        assert_eq!(t.lookup(5), Some(100));
        assert_eq!(t.lookup(10), Some(100));
        assert_eq!(t.lookup(11), Some(110));
        assert_eq!(t.lookup(30), Some(120));
        assert_eq!(t.lookup(31), None);
        assert_eq!(t.lookup_start(5), 100);
        assert_eq!(t.lookup_start(10), 100);
        assert_eq!(t.lookup_start(11), 100);
        assert_eq!(t.lookup_start(20), 100);
        assert_eq!(t.lookup_start(21), 110);
        assert_eq!(t.lookup_start(31), 120);
        assert_eq!(t.last_entry(), Some((30, 120)));
        t.truncate_to_offset(111);
        assert_eq!(t.last_entry(), Some((20, 110)));
        t.truncate_to_offset(110);
        assert_eq!(t.last_entry(), Some((10, 100)));
        t.truncate_to_offset(i64::MAX);
        assert_eq!(t.len(), 1);
        t.truncate_to_offset(0);
        assert!(t.is_empty());
        assert!(t.maybe_append(1, 105)); // a new first entry after truncation
        assert_eq!(t.entries().collect::<Vec<_>>(), vec![(1, 105)]);
    }

    #[test]
    fn time_index_lookup_start_without_entry_at_base() {
        // first indexed batch is not the segment's first batch
        let mut t = TimeIndex::new(0);
        t.maybe_append(50, 40);
        assert_eq!(t.lookup_start(10), 0);
        assert_eq!(t.lookup_start(51), 40);
    }

    #[test]
    #[should_panic(expected = "not above last")]
    fn time_index_rejects_offset_regression() {
        let mut t = TimeIndex::new(0);
        t.maybe_append(1, 10);
        t.maybe_append(2, 10);
    }

    #[test]
    #[should_panic(expected = "below segment base")]
    fn time_index_rejects_offset_below_base() {
        TimeIndex::new(10).maybe_append(1, 9);
    }

    #[test]
    fn time_index_encoding_is_append_only() {
        let mut t = TimeIndex::new(1 << 40);
        assert!(t.encode().is_empty());
        t.maybe_append(-3, 1 << 40);
        let one = t.encode();
        assert_eq!(one.len(), TIME_INDEX_ENTRY_LEN);
        t.maybe_append(99, (1 << 40) + 9);
        let two = t.encode();
        assert_eq!(two.len(), 2 * TIME_INDEX_ENTRY_LEN);
        assert_eq!(&two[..one.len()], &one[..]);
        assert_eq!(TimeIndex::decode(1 << 40, &two).unwrap(), t);
    }

    #[test]
    fn time_index_decode_errors() {
        assert!(matches!(TimeIndex::decode(0, &[0; 13]), Err(IndexError::BadLength { .. })));
        // zero-filled tail: second entry repeats the first
        assert_eq!(TimeIndex::decode(0, &[0; 24]), Err(IndexError::NotMonotonic { index: 1 }));
        assert_eq!(TimeIndex::decode(-5, &[]), Err(IndexError::OffsetOutOfRange { index: 0 }));
        let mut t = TimeIndex::new(0);
        t.maybe_append(1, 50);
        t.maybe_append(2, 60);
        let good = t.encode();
        assert_eq!(TimeIndex::decode(i64::MAX - 55, &good), Err(IndexError::OffsetOutOfRange { index: 1 }));
        // timestamps equal
        let mut bad = good.clone();
        bad[19] = 1;
        assert_eq!(TimeIndex::decode(0, &bad), Err(IndexError::NotMonotonic { index: 1 }));
        assert_eq!(TimeIndex::decode(9, &[]).unwrap(), TimeIndex::new(9));
    }

    // ---------------- property tests ----------------

    /// Strictly increasing (offset, position) pairs from positive gaps.
    fn offset_entries() -> impl Strategy<Value = (i64, Vec<(i64, u32)>)> {
        (0i64..1 << 50, proptest::collection::vec((1i64..100, 1u32..10_000), 0..60)).prop_map(|(base, gaps)| {
            let mut off = base;
            let mut pos = 0u32;
            let mut out = Vec::new();
            for (i, (go, gp)) in gaps.into_iter().enumerate() {
                if i > 0 {
                    off += go;
                    pos += gp;
                }
                out.push((off, pos));
            }
            (base, out)
        })
    }

    proptest! {
        #[test]
        fn prop_offset_lookup_matches_linear_scan(
            (base, entries) in offset_entries(),
            probes in proptest::collection::vec(-10i64..7000, 1..40),
        ) {
            let mut idx = OffsetIndex::new(base);
            for &(o, p) in &entries {
                idx.append(o, p);
            }
            for probe in probes {
                let target = base + probe;
                let expect = entries
                    .iter()
                    .rev()
                    .find(|&&(o, _)| o <= target)
                    .copied()
                    .unwrap_or((base, 0));
                prop_assert_eq!(idx.lookup(target), expect);
            }
        }

        #[test]
        fn prop_offset_encode_decode_roundtrip((base, entries) in offset_entries()) {
            let mut idx = OffsetIndex::new(base);
            for &(o, p) in &entries {
                idx.append(o, p);
            }
            let enc = idx.encode();
            prop_assert_eq!(enc.len(), entries.len() * OFFSET_INDEX_ENTRY_LEN);
            prop_assert_eq!(OffsetIndex::decode(base, &enc).unwrap(), idx);
        }

        #[test]
        fn prop_offset_truncate_matches_filter(
            (base, entries) in offset_entries(),
            cut in -10i64..7000,
        ) {
            let mut idx = OffsetIndex::new(base);
            for &(o, p) in &entries {
                idx.append(o, p);
            }
            idx.truncate_to_offset(base + cut);
            let expect: Vec<_> = entries.iter().copied().filter(|&(o, _)| o < base + cut).collect();
            prop_assert_eq!(idx.entries().collect::<Vec<_>>(), expect);
        }

        #[test]
        fn prop_index_decode_never_panics(
            base in any::<i64>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            if let Ok(i) = OffsetIndex::decode(base, &bytes) {
                prop_assert_eq!(i.encode(), bytes.clone());
            }
            if let Ok(t) = TimeIndex::decode(base, &bytes) {
                prop_assert_eq!(t.encode(), bytes);
            }
        }

        /// Model a segment of batches (base offset, maxTimestamp), index it
        /// sparsely with the running max, and check both lookups against a
        /// brute-force scan of the batches themselves.
        #[test]
        fn prop_time_index_never_skips_target(
            seg_base in 0i64..1 << 40,
            batches in proptest::collection::vec((1i64..20, -50i64..1000, any::<bool>()), 1..60),
            probes in proptest::collection::vec(-100i64..1100, 1..30),
        ) {
            let mut idx = TimeIndex::new(seg_base);
            let mut model = Vec::new(); // (base offset, max ts)
            let mut off = seg_base;
            let mut running = i64::MIN;
            let mut indexed = Vec::new();
            for (i, &(gap, ts, index_it)) in batches.iter().enumerate() {
                if i > 0 {
                    off += gap;
                }
                model.push((off, ts));
                running = running.max(ts);
                if index_it && idx.maybe_append(running, off) {
                    indexed.push((running, off));
                }
            }
            prop_assert_eq!(idx.entries().collect::<Vec<_>>(), indexed.clone());
            for target in probes {
                // lookup == linear scan over entries
                let lin = indexed.iter().find(|&&(ts, _)| ts >= target).map(|&(_, o)| o);
                prop_assert_eq!(idx.lookup(target), lin);
                // lookup_start == linear scan definition
                let lin_start = indexed
                    .iter()
                    .rev()
                    .find(|&&(ts, _)| ts < target)
                    .map(|&(_, o)| o)
                    .unwrap_or(seg_base);
                let start = idx.lookup_start(target);
                prop_assert_eq!(start, lin_start);
                // never skips the first matching batch
                if let Some(&(first, _)) = model.iter().find(|&&(_, ts)| ts >= target) {
                    prop_assert!(start <= first, "start {} skips batch {}", start, first);
                    if let Some(upper) = idx.lookup(target) {
                        prop_assert!(first <= upper);
                    }
                }
                // and every batch before `start` is below the target
                prop_assert!(model.iter().filter(|&&(o, _)| o < start).all(|&(_, ts)| ts < target));
            }
            let enc = idx.encode();
            prop_assert_eq!(enc.len() % TIME_INDEX_ENTRY_LEN, 0);
            prop_assert_eq!(TimeIndex::decode(seg_base, &enc).unwrap(), idx.clone());
            // truncation matches filtering
            let cut = seg_base + (batches.len() as i64) * 5;
            let mut tr = idx.clone();
            tr.truncate_to_offset(cut);
            let expect: Vec<_> = indexed.iter().copied().filter(|&(_, o)| o < cut).collect();
            prop_assert_eq!(tr.entries().collect::<Vec<_>>(), expect);
        }
    }
}
