//! Fuzz the parsers that see untrusted bytes: produce-request record sets
//! (`validate_batch`, `split_record_set`, `decode_records`) and on-disk
//! segment tails (`scan_valid_prefix`). Besides "never panics", it checks
//! the invariants the rest of the engine relies on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringbroker_engine::batch::{self, Compression};
use ringbroker_engine::recovery::{scan_valid_prefix, StopReason};

fuzz_target!(|data: &[u8]| {
    // One whole batch.
    if let Ok(h) = batch::validate_batch(data) {
        assert_eq!(h.total_len(), data.len());
        assert_eq!(h.magic, 2);
        assert!(h.record_count >= 0 && h.last_offset_delta >= 0);
        assert!(h.next_offset().is_some());
        if h.compression() == Compression::None {
            let recs = batch::decode_records(data).expect("validated batch decodes");
            assert_eq!(recs.len(), h.record_count as usize);
        }
        // Stamping offsets keeps a batch valid (fields outside the CRC).
        let mut copy = data.to_vec();
        batch::stamp_offsets(&mut copy, 0, 7);
        assert!(batch::validate_batch(&copy).is_ok());
        // LogAppendTime rewrites the CRC.
        batch::set_log_append_time(&mut copy, 1_700_000_000_000);
        let h2 = batch::validate_batch(&copy).expect("CRC recomputed");
        assert!(h2.is_log_append_time());
    }

    // A record set of concatenated batches.
    if let Ok(ranges) = batch::split_record_set(data, 1 << 20) {
        let mut expect_start = 0;
        for &(start, end) in &ranges {
            assert_eq!(start, expect_start, "ranges are contiguous");
            assert!(end > start && end <= data.len());
            assert!(batch::validate_batch(&data[start..end]).is_ok());
            expect_start = end;
        }
        assert_eq!(expect_start, data.len(), "ranges cover the set");
    }

    // A segment tail, at an arbitrary file position.
    for expected in [None, Some(0), Some(i64::MAX)] {
        let r = scan_valid_prefix(data, 4096, expected);
        assert!(r.valid_end >= 4096);
        let end = (r.valid_end - 4096) as usize;
        assert!(end <= data.len());
        if r.stop_reason == StopReason::EndOfData {
            assert_eq!(end, data.len());
        }
        let mut pos = 0usize;
        let mut next = expected;
        for b in &r.batches {
            assert_eq!(b.position, 4096 + pos as u64);
            let len = b.header.total_len();
            assert_eq!(batch::validate_batch(&data[pos..pos + len]), Ok(b.header));
            if let Some(n) = next {
                assert!(b.header.base_offset >= n);
            }
            next = b.header.next_offset();
            pos += len;
        }
        assert_eq!(pos, end);
        if !r.batches.is_empty() {
            assert_eq!(r.next_offset, next);
        }
    }
});
