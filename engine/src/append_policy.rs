//! What a topic's configs require of a producer's batch before it is
//! appended: record timestamps within `message.timestamp.before.max.ms` /
//! `after.max.ms` (CreateTime topics), and the codec named by
//! `compression.type` (a batch that arrived with another codec is rebuilt:
//! same header fields and records, new codec, new CRC).
//!
//! Both cost nothing with Kafka's defaults: the timestamp check reads the
//! batch header unless `before.max.ms` is set, and `compression.type` is
//! `producer`.

use crate::batch::{iter_records, BatchHeader, Compression, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::compaction::{compress, plain_batch, put_header};
use crate::config::{LogConfig, TimestampType, TopicCompression};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// Kafka's INVALID_TIMESTAMP.
    #[error(
        "timestamp {timestamp} of the record at offset delta {offset_delta} is out of range \
         (broker time {now_ms}, message.timestamp.before.max.ms {before_max_ms}, \
         message.timestamp.after.max.ms {after_max_ms})"
    )]
    InvalidTimestamp { timestamp: i64, offset_delta: i32, now_ms: i64, before_max_ms: i64, after_max_ms: i64 },
    /// The records could not be decompressed or recompressed (CORRUPT_MESSAGE).
    #[error("{0}")]
    Corrupt(String),
}

/// Checks every record's CreateTime against the topic's bounds.
pub fn check_timestamps(batch: &[u8], header: &BatchHeader, cfg: &LogConfig, now_ms: i64) -> Result<(), PolicyError> {
    if cfg.message_timestamp_type == TimestampType::LogAppendTime {
        return Ok(());
    }
    let err = |timestamp, offset_delta| PolicyError::InvalidTimestamp {
        timestamp,
        offset_delta,
        now_ms,
        before_max_ms: cfg.message_timestamp_before_max_ms,
        after_max_ms: cfg.message_timestamp_after_max_ms,
    };
    // The header's maxTimestamp bounds every record from above, so with no
    // lower bound configured (Kafka's default) the header decides.
    if cfg.message_timestamp_before_max_ms == i64::MAX {
        if cfg.timestamp_in_bounds(header.max_timestamp, now_ms) {
            return Ok(());
        }
        return Err(err(header.max_timestamp, header.last_offset_delta));
    }
    let plain = plain_batch(batch, header, 0).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    let (_, records) = iter_records(plain.bytes()).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    for r in records {
        let ts = header.base_timestamp.wrapping_add(r.timestamp_delta);
        if !cfg.timestamp_in_bounds(ts, now_ms) {
            return Err(err(ts, r.offset_delta));
        }
    }
    Ok(())
}

/// The codec the topic stores `header`'s batch with, if it differs from
/// the producer's.
pub fn recompression_target(header: &BatchHeader, cfg: &LogConfig) -> Option<Compression> {
    match cfg.compression {
        TopicCompression::Codec(c) if c != header.compression() => Some(c),
        _ => None,
    }
}

/// Rebuilds `batch` with codec `target` (records, offsets deltas, producer
/// fields and timestamps unchanged; CRC recomputed).
pub fn recompress(
    batch: &[u8],
    header: &BatchHeader,
    target: Compression,
    cfg: &LogConfig,
) -> Result<Vec<u8>, PolicyError> {
    let plain = plain_batch(batch, header, 0).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    let records = &plain.bytes()[BATCH_HEADER_LEN..];
    let mut body = Vec::with_capacity(records.len() / 2 + 64);
    match target {
        Compression::Gzip => {
            use std::io::Write;
            let level = if cfg.compression_gzip_level < 0 { 6 } else { cfg.compression_gzip_level as u32 };
            let mut e = flate2::write::GzEncoder::new(&mut body, flate2::Compression::new(level));
            e.write_all(records)
                .and_then(|_| e.finish().map(|_| ()))
                .map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        }
        Compression::Zstd => {
            zstd::stream::copy_encode(records, &mut body, cfg.compression_zstd_level)
                .map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        }
        other => compress(other, records, &mut body).map_err(PolicyError::Corrupt)?,
    }
    let batch_length = i32::try_from(body.len() + BATCH_HEADER_LEN - LOG_OVERHEAD)
        .map_err(|_| PolicyError::Corrupt("recompressed batch too large".into()))?;
    const COMPRESSION_MASK: i16 = 0x07;
    let attributes = (header.attributes & !COMPRESSION_MASK) | i16::from(target.code());
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    put_header(&mut out, &BatchHeader { batch_length, attributes, ..*header });
    out.extend_from_slice(&body);
    crate::batch::rewrite_crc(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch_with, decode_records, validate_batch, BatchOptions, RecordSpec};
    use std::collections::BTreeMap;

    fn cfg(pairs: &[(&str, &str)]) -> LogConfig {
        let o: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LogConfig::resolve(&BTreeMap::new(), &o).unwrap()
    }

    fn sample(base_ts: i64, deltas: &[i64]) -> Vec<u8> {
        let vals: Vec<Vec<u8>> = deltas.iter().map(|d| format!("value-{d}").into_bytes()).collect();
        let recs: Vec<RecordSpec> = deltas
            .iter()
            .zip(&vals)
            .map(|(d, v)| RecordSpec {
                key: Some(b"k"),
                value: Some(v),
                headers: vec![("h", b"x")],
                timestamp_delta: *d,
            })
            .collect();
        let opts = BatchOptions {
            base_timestamp: base_ts,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 3,
            ..BatchOptions::default()
        };
        build_batch_with(&opts, &recs)
    }

    #[test]
    fn recompresses_to_every_codec_and_back() {
        let raw = sample(1_000, &[0, 5, 9]);
        let h = validate_batch(&raw).unwrap();
        let want = decode_records(&raw).unwrap();
        for target in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let c =
                cfg(&[("compression.type", "zstd"), ("compression.gzip.level", "1"), ("compression.zstd.level", "19")]);
            let out = recompress(&raw, &h, target, &c).unwrap();
            let oh = validate_batch(&out).expect("valid batch, CRC right");
            assert_eq!(oh.compression(), target);
            assert_eq!((oh.producer_id, oh.base_sequence, oh.record_count), (7, 3, 3));
            // Back to uncompressed: the same records, byte for byte.
            let back = recompress(&out, &oh, Compression::None, &c).unwrap();
            assert_eq!(back, raw, "{target:?}");
            assert_eq!(decode_records(&back).unwrap(), want);
        }
    }

    #[test]
    fn target_only_when_the_codec_differs() {
        let raw = sample(0, &[0]);
        let h = validate_batch(&raw).unwrap();
        assert_eq!(recompression_target(&h, &cfg(&[])), None);
        assert_eq!(recompression_target(&h, &cfg(&[("compression.type", "uncompressed")])), None);
        assert_eq!(recompression_target(&h, &cfg(&[("compression.type", "lz4")])), Some(Compression::Lz4));
    }

    #[test]
    fn timestamps_checked_from_the_header_or_every_record() {
        let now = 10_000_000;
        let raw = sample(now - 5_000, &[0, 4_000]);
        let h = validate_batch(&raw).unwrap();
        assert!(check_timestamps(&raw, &h, &cfg(&[]), now).is_ok());
        // The first record is 5 s old: refused with a 4.5 s lower bound.
        let c = cfg(&[("message.timestamp.before.max.ms", "4500")]);
        assert!(matches!(
            check_timestamps(&raw, &h, &c, now),
            Err(PolicyError::InvalidTimestamp { timestamp, offset_delta: 0, .. }) if timestamp == now - 5_000
        ));
        // Compressed batches are walked too.
        let z = recompress(&raw, &h, Compression::Zstd, &c).unwrap();
        assert!(check_timestamps(&z, &validate_batch(&z).unwrap(), &c, now).is_err());
        // An hour and a bit in the future: refused by the default after-bound.
        let future = sample(now + 3_600_001, &[0]);
        let fh = validate_batch(&future).unwrap();
        assert!(check_timestamps(&future, &fh, &cfg(&[]), now).is_err());
        assert!(check_timestamps(&future, &fh, &cfg(&[("message.timestamp.type", "LogAppendTime")]), now).is_ok());
    }
}
