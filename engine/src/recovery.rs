//! "Where does the valid log end?" — the pure core of segment recovery.
//!
//! After a crash the tail of the active segment may hold a torn write (a
//! batch cut short), preallocated zero-filled space, or garbage. Recovery
//! reads the segment (or the suspicious tail of it) and asks
//! [`scan_valid_prefix`] for the longest prefix of fully valid batches whose
//! offsets strictly increase. The caller then truncates the file at
//! [`ScanResult::valid_end`], rebuilds its indexes from
//! [`ScanResult::batches`], and resumes appending at
//! [`ScanResult::next_offset`].
//!
//! The scanner never trusts the bytes: every batch goes through
//! [`validate_batch`], and a length field pointing past the buffer is treated
//! as a torn tail rather than followed. [`StopReason`] says why the scan
//! stopped; the caller decides whether e.g. corruption in the middle of a
//! sealed segment is fatal or just truncated away — this module only reports.

use crate::batch::{
    peek_batch_length, validate_batch, BatchError, BatchHeader, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH,
};

/// Byte offset of the magic field in a batch header.
const MAGIC_OFF: usize = 16;

/// One valid batch found by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedBatch {
    /// Absolute file position of the batch's first byte.
    pub position: u64,
    pub header: BatchHeader,
}

/// Why [`scan_valid_prefix`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The buffer ended exactly at a batch boundary.
    EndOfData,
    /// The buffer ends in the middle of a batch (a torn write, or a
    /// corrupted length that points past the end: the two are
    /// indistinguishable from the bytes alone).
    TornTail,
    /// Zero bytes where the next header should be (preallocated space): a
    /// batchLength of 0, which includes an all-zero header. Fewer than 12
    /// bytes of zeros are reported as `TornTail` because they cannot be told
    /// apart from the start of a batch whose base offset begins with zeros.
    ZeroPadding,
    /// The next batch failed validation.
    Corrupt(BatchError),
    /// The next batch's base offset is negative, below the expected next
    /// offset, or its offsets would overflow.
    OffsetRegression,
}

/// Result of [`scan_valid_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanResult {
    /// Every valid batch, in order.
    pub batches: Vec<ScannedBatch>,
    /// Absolute position of the first byte not covered by a valid batch.
    pub valid_end: u64,
    /// Offset after the last valid batch; `expected_next_offset` if none.
    pub next_offset: Option<i64>,
    pub stop_reason: StopReason,
}

/// Walk batches from `buf[0]` (absolute position `start_position`) and
/// return the valid prefix.
///
/// A batch is accepted when it is complete, passes [`validate_batch`], has a
/// non-negative base offset >= the expected next offset (gaps are allowed,
/// compaction creates them), and then the expected next offset becomes its
/// last offset + 1. With `expected_next_offset == None` the first batch may
/// start at any non-negative offset.
pub fn scan_valid_prefix(buf: &[u8], start_position: u64, expected_next_offset: Option<i64>) -> ScanResult {
    let mut batches = Vec::new();
    let mut next = expected_next_offset;
    let mut pos = 0usize;
    let stop_reason = loop {
        let rest = &buf[pos..];
        if rest.is_empty() {
            break StopReason::EndOfData;
        }
        // Fewer than 12 bytes: even if they are all zero this may be the
        // start of a real batch cut by the caller's read chunk (a base offset
        // below 2^40 begins with zero bytes), so it must not look final.
        let batch_length = match peek_batch_length(rest) {
            Some(l) => l,
            None => break StopReason::TornTail,
        };
        // A real batch never has length 0; this covers an all-zero header.
        if batch_length == 0 {
            break StopReason::ZeroPadding;
        }
        if let Some(&magic) = rest.get(MAGIC_OFF) {
            if magic as i8 != MAGIC_V2 {
                break StopReason::Corrupt(BatchError::BadMagic(magic as i8));
            }
        }
        if batch_length < MIN_BATCH_LENGTH {
            break StopReason::Corrupt(BatchError::BadLength { batch_length, buf_len: rest.len() });
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if total > rest.len() {
            break StopReason::TornTail;
        }
        let header = match validate_batch(&rest[..total]) {
            Ok(h) => h,
            Err(e) => break StopReason::Corrupt(e),
        };
        if header.base_offset < 0 || next.is_some_and(|n| header.base_offset < n) {
            break StopReason::OffsetRegression;
        }
        let Some(after) = header.next_offset() else {
            break StopReason::OffsetRegression;
        };
        batches.push(ScannedBatch { position: start_position + pos as u64, header });
        next = Some(after);
        pos += total;
    };
    debug_assert!(pos <= buf.len());
    debug_assert!(stop_reason != StopReason::EndOfData || pos == buf.len(), "EndOfData only at the end");
    ScanResult { batches, valid_end: start_position + pos as u64, next_offset: next, stop_reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, stamp_offsets, RecordSpec};
    use proptest::prelude::*;

    /// Build a log from `(gap, record values)` per batch. Returns the log
    /// bytes and each batch's (start, end, base offset).
    fn build_log(first: i64, batches: &[(i64, Vec<Vec<u8>>)]) -> (Vec<u8>, Vec<(usize, usize, i64)>) {
        let mut log = Vec::new();
        let mut spans = Vec::new();
        let mut next = first;
        for (gap, values) in batches {
            let base = next + gap;
            let specs: Vec<RecordSpec> = values
                .iter()
                .enumerate()
                .map(|(i, v)| RecordSpec {
                    key: Some(b"key"),
                    value: Some(v),
                    headers: vec![],
                    timestamp_delta: i as i64,
                })
                .collect();
            let b = build_batch(base, 1_000, &specs);
            spans.push((log.len(), log.len() + b.len(), base));
            log.extend_from_slice(&b);
            next = base + values.len().max(1) as i64;
        }
        (log, spans)
    }

    fn simple_log(n: usize) -> (Vec<u8>, Vec<(usize, usize, i64)>) {
        let batches: Vec<_> = (0..n).map(|i| (0i64, vec![vec![i as u8; 10 + i]; 1 + i % 3])).collect();
        build_log(0, &batches)
    }

    fn positions(r: &ScanResult) -> Vec<u64> {
        r.batches.iter().map(|b| b.position).collect()
    }

    #[test]
    fn empty_buffer() {
        let r = scan_valid_prefix(&[], 4096, Some(7));
        assert_eq!(
            r,
            ScanResult { batches: vec![], valid_end: 4096, next_offset: Some(7), stop_reason: StopReason::EndOfData }
        );
    }

    #[test]
    fn full_log_scans_to_end() {
        let (log, spans) = simple_log(5);
        let r = scan_valid_prefix(&log, 100, Some(0));
        assert_eq!(r.stop_reason, StopReason::EndOfData);
        assert_eq!(r.valid_end, 100 + log.len() as u64);
        assert_eq!(positions(&r), spans.iter().map(|s| 100 + s.0 as u64).collect::<Vec<_>>());
        let last = r.batches.last().unwrap().header;
        assert_eq!(r.next_offset, Some(last.last_offset() + 1));
    }

    #[test]
    fn zero_padding_after_log() {
        let (mut log, spans) = simple_log(3);
        let end = log.len();
        log.resize(end + 8192, 0);
        let r = scan_valid_prefix(&log, 0, None);
        assert_eq!(r.stop_reason, StopReason::ZeroPadding);
        assert_eq!(r.valid_end, end as u64);
        assert_eq!(r.batches.len(), spans.len());
        // fewer zero bytes than a length field: ambiguous, reported as torn
        let r = scan_valid_prefix(&log[..end + 5], 0, None);
        assert_eq!(r.stop_reason, StopReason::TornTail);
        assert_eq!(r.valid_end, end as u64);
        let r = scan_valid_prefix(&log[..end + LOG_OVERHEAD], 0, None);
        assert_eq!(r.stop_reason, StopReason::ZeroPadding);
    }

    #[test]
    fn zero_length_field_is_padding() {
        let (mut log, _) = simple_log(2);
        let end = log.len();
        let mut junk = vec![0u8; 64];
        junk[3] = 9; // non-zero base offset, zero length
        log.extend_from_slice(&junk);
        let r = scan_valid_prefix(&log, 0, None);
        assert_eq!(r.stop_reason, StopReason::ZeroPadding);
        assert_eq!(r.valid_end, end as u64);
    }

    #[test]
    fn torn_tail_every_length() {
        let (log, spans) = simple_log(4);
        let (last_start, last_end, _) = *spans.last().unwrap();
        for cut in last_start..last_end {
            let r = scan_valid_prefix(&log[..cut], 0, Some(0));
            assert_eq!(r.batches.len(), 3, "cut {cut}");
            assert_eq!(r.valid_end, last_start as u64);
            let expect = if cut == last_start { StopReason::EndOfData } else { StopReason::TornTail };
            assert_eq!(r.stop_reason, expect, "cut {cut}");
        }
    }

    #[test]
    fn offset_regression_stops_scan() {
        let (mut log, spans) = simple_log(3);
        // make batch 2 reuse batch 1's base offset (valid CRC: field outside it)
        let (s2, _, _) = spans[2];
        stamp_offsets(&mut log[s2..], spans[1].2, 0);
        let r = scan_valid_prefix(&log, 0, None);
        assert_eq!(r.stop_reason, StopReason::OffsetRegression);
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.valid_end, s2 as u64);
        // expected next offset beyond the first batch
        let r = scan_valid_prefix(&log, 0, Some(1));
        assert_eq!(r.stop_reason, StopReason::OffsetRegression);
        assert!(r.batches.is_empty());
        assert_eq!(r.next_offset, Some(1));
        // negative base offset
        let (mut log, _) = simple_log(1);
        stamp_offsets(&mut log, -5, 0);
        assert_eq!(scan_valid_prefix(&log, 0, None).stop_reason, StopReason::OffsetRegression);
    }

    #[test]
    fn offset_gaps_are_allowed() {
        let (log, spans) = build_log(10, &[(0, vec![vec![1]]), (5, vec![vec![2]; 2]), (100, vec![vec![3]])]);
        let r = scan_valid_prefix(&log, 0, Some(10));
        assert_eq!(r.stop_reason, StopReason::EndOfData);
        assert_eq!(r.batches.len(), 3);
        assert_eq!(r.batches[2].header.base_offset, spans[2].2);
        assert_eq!(r.next_offset, Some(spans[2].2 + 1));
    }

    #[test]
    fn corrupt_magic_and_length() {
        let (log, spans) = simple_log(3);
        let (s1, _, _) = spans[1];
        let mut bad = log.clone();
        bad[s1 + 16] = 1;
        let r = scan_valid_prefix(&bad, 0, None);
        assert_eq!(r.stop_reason, StopReason::Corrupt(BatchError::BadMagic(1)));
        assert_eq!(r.batches.len(), 1);
        let mut bad = log.clone();
        bad[s1 + 8..s1 + 12].copy_from_slice(&10i32.to_be_bytes());
        let r = scan_valid_prefix(&bad, 0, None);
        assert!(matches!(r.stop_reason, StopReason::Corrupt(BatchError::BadLength { batch_length: 10, .. })));
        assert_eq!(r.valid_end, s1 as u64);
        let mut bad = log.clone();
        bad[s1 + 8..s1 + 12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            scan_valid_prefix(&bad, 0, None).stop_reason,
            StopReason::Corrupt(BatchError::BadLength { .. })
        ));
    }

    #[test]
    fn crc_corruption_in_middle() {
        let (mut log, spans) = simple_log(4);
        let (s2, e2, _) = spans[2];
        log[(s2 + e2) / 2] ^= 0xff;
        let r = scan_valid_prefix(&log, 0, None);
        assert!(matches!(r.stop_reason, StopReason::Corrupt(BatchError::CrcMismatch { .. })));
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.valid_end, s2 as u64);
    }

    // ---------------- property tests ----------------

    /// First offset, then per batch: (offset gap before it, record values).
    type LogSpec = (i64, Vec<(i64, Vec<Vec<u8>>)>);

    fn log_strategy() -> impl Strategy<Value = LogSpec> {
        (
            0i64..1 << 40,
            proptest::collection::vec(
                (
                    prop_oneof![Just(0i64), 0i64..5],
                    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
                ),
                1..8,
            ),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_every_truncation_of_last_batch((first, batches) in log_strategy()) {
            let (log, spans) = build_log(first, &batches);
            let n = spans.len();
            let full = scan_valid_prefix(&log, 512, Some(first));
            prop_assert_eq!(&full.stop_reason, &StopReason::EndOfData);
            prop_assert_eq!(full.batches.len(), n);
            prop_assert_eq!(full.valid_end, 512 + log.len() as u64);
            for (b, s) in full.batches.iter().zip(&spans) {
                prop_assert_eq!(b.position, 512 + s.0 as u64);
                prop_assert_eq!(b.header.base_offset, s.2);
            }
            let (last_start, last_end, _) = spans[n - 1];
            for cut in last_start..last_end {
                let r = scan_valid_prefix(&log[..cut], 512, Some(first));
                prop_assert_eq!(r.batches.len(), n - 1);
                prop_assert_eq!(&r.batches[..], &full.batches[..n - 1]);
                prop_assert_eq!(r.valid_end, 512 + last_start as u64);
                let expect = if cut == last_start { StopReason::EndOfData } else { StopReason::TornTail };
                prop_assert_eq!(&r.stop_reason, &expect);
                let expect_next = if n == 1 {
                    Some(first)
                } else {
                    Some(full.batches[n - 2].header.last_offset() + 1)
                };
                prop_assert_eq!(r.next_offset, expect_next);
            }
        }

        #[test]
        fn prop_zero_padding_recognised(
            (first, batches) in log_strategy(),
            pad in LOG_OVERHEAD..200,
        ) {
            let (mut log, spans) = build_log(first, &batches);
            let end = log.len();
            log.resize(end + pad, 0);
            let r = scan_valid_prefix(&log, 0, None);
            prop_assert_eq!(r.stop_reason, StopReason::ZeroPadding);
            prop_assert_eq!(r.valid_end, end as u64);
            prop_assert_eq!(r.batches.len(), spans.len());
        }

        /// Corrupting any CRC-covered or framing byte of batch k (anything but
        /// the base offset and leader epoch, which are not checksummed) keeps
        /// exactly batches 0..k.
        #[test]
        fn prop_corruption_in_batch_k(
            (first, batches) in log_strategy(),
            k_seed in any::<usize>(),
            pos_seed in any::<usize>(),
            xor in 1u8..=255,
        ) {
            let (mut log, spans) = build_log(first, &batches);
            let k = k_seed % spans.len();
            let (s, e, _) = spans[k];
            let candidates: Vec<usize> = (s + 8..e).filter(|&p| !(s + 12..s + 16).contains(&p)).collect();
            let p = candidates[pos_seed % candidates.len()];
            log[p] ^= xor;
            let r = scan_valid_prefix(&log, 0, Some(first));
            prop_assert_eq!(r.batches.len(), k, "{:?}", r.stop_reason);
            prop_assert_eq!(r.valid_end, s as u64);
            prop_assert!(r.stop_reason != StopReason::EndOfData);
        }

        #[test]
        fn prop_random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            expected in proptest::option::of(any::<i64>()),
            start in any::<u32>(),
        ) {
            let r = scan_valid_prefix(&bytes, u64::from(start), expected);
            prop_assert!(r.valid_end >= u64::from(start));
            prop_assert!(r.valid_end - u64::from(start) <= bytes.len() as u64);
            let mut prev_next = expected;
            for b in &r.batches {
                let rel = (b.position - u64::from(start)) as usize;
                let slice = &bytes[rel..rel + b.header.total_len()];
                prop_assert_eq!(validate_batch(slice), Ok(b.header));
                if let Some(n) = prev_next {
                    prop_assert!(b.header.base_offset >= n);
                }
                prev_next = b.header.next_offset();
            }
        }

        /// A valid log followed by arbitrary garbage: the log is always kept.
        #[test]
        fn prop_log_then_garbage(
            (first, batches) in log_strategy(),
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let (mut log, spans) = build_log(first, &batches);
            let end = log.len();
            log.extend_from_slice(&garbage);
            let r = scan_valid_prefix(&log, 0, Some(first));
            prop_assert!(r.batches.len() >= spans.len());
            prop_assert!(r.valid_end >= end as u64);
        }
    }
}
