//! Pure core of the log cleaner (`cleanup.policy=compact`).
//!
//! No I/O, no async: the caller reads sealed segments, feeds their batches to
//! [`add_batch_to_map`] to learn the latest offset of every key, then rewrites
//! each segment's bytes with [`clean_batches`] and swaps the result in
//! (crash-safely, outside this module).
//!
//! # What is kept
//!
//! A record is kept iff
//! * its key is null (keyless records are never compacted away), or
//! * it is not superseded: the map has no entry for its key, or the map's
//!   latest offset for the key is `<=` the record's offset,
//!
//! except that a tombstone (keyed record with a null value) is dropped once its
//! batch's `maxTimestamp` is older than `now - delete.retention.ms`.
//!
//! With a map built over every batch being cleaned this is exactly "keep the
//! record iff `map.latest(key) == Some(offset)`". The `None`/`>=` cases make
//! the cleaner safe when the map covers only part of the log (Kafka bounds the
//! map's memory by building it over the dirty section only): a key the map has
//! not seen, or a record newer than the map's entry, is never dropped.
//!
//! Whole batches are copied byte for byte when nothing in them is removed, when
//! they are control batches (transaction markers), when they hold no records,
//! or when their `maxTimestamp` is newer than `now - min.compaction.lag.ms`
//! (only when that lag is positive; a lag of 0 means "no lag", as in Kafka, so
//! a producer with a clock running ahead cannot make its batches uncleanable).
//!
//! # How a partially cleaned batch is rewritten
//!
//! Offsets are never renumbered. This broker's [`validate_batch`] (which
//! recovery also applies to every stored batch) requires the records of a batch
//! to have dense offset deltas `0..recordCount` and `lastOffsetDelta ==
//! recordCount - 1`, so a batch that loses records in the middle is written as
//! one output batch per *run of consecutive kept offsets*. Each output batch
//! has
//! * base offset = offset of its first record, offset deltas relative to it;
//! * the input batch's partition leader epoch, attributes (codec, timestamp
//!   type, transactional bit, delete-horizon bit), producer id and epoch;
//! * the input batch's `baseTimestamp` (so every record's timestamp delta, and
//!   hence its timestamp, is unchanged) and the input batch's `maxTimestamp`.
//!   The latter is an upper bound of the kept records' timestamps rather than
//!   their exact maximum. That is deliberate: the retention decisions here are
//!   made on a batch's `maxTimestamp`, so keeping it makes a second cleaning
//!   pass decide exactly as the first one (cleaning is idempotent), and the
//!   time index stays conservative (a lookup may start slightly early, never
//!   late). For LogAppendTime batches it *is* every record's timestamp;
//! * base sequence = input base sequence + (first kept offset - input base
//!   offset), wrapping from `i32::MAX` to 0 as producer sequences do, or -1 when
//!   the input had no sequence. Every kept record therefore keeps the exact
//!   sequence number it was produced with (`baseSequence + offsetDelta`);
//! * the records re-encoded field for field (record attributes byte, timestamp
//!   delta, key, value and headers, including null header values, duplicate
//!   and non-UTF-8 header keys), compressed again with the input codec, and a
//!   freshly computed CRC. Every rebuilt batch is re-checked with
//!   [`validate_batch`] before it is returned.
//!
//! Compressed batches are decompressed with the codecs of the `kafka-protocol`
//! crate's `compression` module; the records themselves are parsed with this
//! crate's validated zero-copy parser ([`iter_records`]) rather than
//! `kafka_protocol::records::Record`, whose header map would merge duplicate
//! header keys and cannot hold non-UTF-8 ones.
//!
//! # Known limits (for the integrating layer)
//! * Aborted transactional data is not removed (that needs the abort index),
//!   and control batches are kept forever.
//! * A producer's last batch may be compacted away entirely; producer state
//!   must therefore come from the producer-state snapshot, not only from
//!   replaying the compacted log.
//! * Decompression is unbounded in memory (the codec API gives no output
//!   limit); a decompression bomb in a stored batch costs memory in the
//!   cleaner.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::batch::{
    iter_records, peek_batch_length, rewrite_crc, validate_batch, BatchError, BatchHeader, Compression, RecordRef,
    BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH,
};

/// Why a cleaning step failed.
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    /// A batch of the input (or the records inside a compressed batch) is
    /// corrupt. `position` is the byte position of the batch in the input.
    #[error("invalid batch at byte {position}: {source}")]
    InvalidBatch {
        position: usize,
        #[source]
        source: BatchError,
    },
    /// The compressed records of the batch at `position` could not be decompressed.
    #[error("cannot decompress {codec:?} batch at byte {position}: {message}")]
    Decompress { codec: Compression, position: usize, message: String },
    /// Re-compressing the kept records failed.
    #[error("cannot compress {codec:?} records of the batch at byte {position}: {message}")]
    Compress { codec: Compression, position: usize, message: String },
    /// A rebuilt batch would not fit the i32 batch length.
    #[error("rebuilt batch of {size} bytes is too large")]
    OutputTooLarge { size: usize },
    /// A rebuilt batch failed validation (an internal bug; nothing is written).
    #[error("rebuilt batch failed validation: {0}")]
    InvalidOutput(#[source] BatchError),
}

// ---------------------------------------------------------------------------
// Key -> latest offset map
// ---------------------------------------------------------------------------

/// The 64-bit xxh3 hash under which a key is stored in a [`KeyOffsetMap`].
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The map keys are already uniformly distributed xxh3 hashes: use them as
/// they are instead of hashing them a second time.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used for u64 keys; keep this total anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Latest offset per key, keyed by the xxh3-64 hash of the key bytes.
///
/// Storing 16 bytes per key instead of the key itself bounds the memory of a
/// cleaning pass by the number of distinct keys, whatever their size (Kafka's
/// cleaner keeps a hash -> offset map for the same reason).
///
/// Trade-off: two distinct keys with equal hashes are treated as one key, so
/// the older record of the pair would be dropped as "superseded". With a
/// 64-bit hash the chance that *any* pair among `n` distinct keys collides is
/// about `n^2 / 2^65`: ~3e-8 for a million keys, ~3e-4 for 100 million keys in
/// one partition. That is negligible for realistic partitions; a 128-bit hash
/// would make it vanish at 8 more bytes per entry.
#[derive(Debug, Clone, Default)]
pub struct KeyOffsetMap {
    entries: HashMap<u64, i64, BuildHasherDefault<PassThroughHasher>>,
    max_offset: Option<i64>,
}

impl KeyOffsetMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map with room for `keys` distinct keys before it reallocates.
    pub fn with_capacity(keys: usize) -> Self {
        KeyOffsetMap { entries: HashMap::with_capacity_and_hasher(keys, Default::default()), max_offset: None }
    }

    /// Record that `key` occurs at `offset`; the map keeps the larger offset.
    pub fn insert(&mut self, key: &[u8], offset: i64) {
        self.insert_hash(key_hash(key), offset);
    }

    /// [`insert`](Self::insert) with a precomputed [`key_hash`].
    pub fn insert_hash(&mut self, hash: u64, offset: i64) {
        let slot = self.entries.entry(hash).or_insert(offset);
        if offset > *slot {
            *slot = offset;
        }
        if self.max_offset.is_none_or(|m| offset > m) {
            self.max_offset = Some(offset);
        }
    }

    /// Latest offset recorded for `key`.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&key_hash(key)).copied()
    }

    /// Number of distinct key hashes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Largest offset ever inserted (the end of the range the map covers).
    pub fn max_offset(&self) -> Option<i64> {
        self.max_offset
    }

    /// Approximate heap bytes held: the hash table's buckets (16-byte entry
    /// plus one control byte each, buckets = capacity * 8/7 rounded up to a
    /// power of two) plus the struct itself.
    pub fn memory_bytes(&self) -> usize {
        let cap = self.entries.capacity();
        let buckets = if cap == 0 { 0 } else { (cap.saturating_mul(8) / 7).max(1).next_power_of_two() };
        buckets.saturating_mul(std::mem::size_of::<(u64, i64)>() + 1) + std::mem::size_of::<Self>()
    }
}

// ---------------------------------------------------------------------------
// Decompression to a plain batch
// ---------------------------------------------------------------------------

/// Codec bits of the batch attributes (layout documented in `batch.rs`).
const COMPRESSION_MASK: i16 = 0x07;

/// Serialize `h` as a 61-byte v2 header (the CRC field is written as stored
/// in `h`; callers fix it with [`rewrite_crc`] once the records follow).
pub(crate) fn put_header(out: &mut Vec<u8>, h: &BatchHeader) {
    let start = out.len();
    out.extend_from_slice(&h.base_offset.to_be_bytes());
    out.extend_from_slice(&h.batch_length.to_be_bytes());
    out.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    out.push(h.magic as u8);
    out.extend_from_slice(&h.crc.to_be_bytes());
    out.extend_from_slice(&h.attributes.to_be_bytes());
    out.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&h.base_timestamp.to_be_bytes());
    out.extend_from_slice(&h.max_timestamp.to_be_bytes());
    out.extend_from_slice(&h.producer_id.to_be_bytes());
    out.extend_from_slice(&h.producer_epoch.to_be_bytes());
    out.extend_from_slice(&h.base_sequence.to_be_bytes());
    out.extend_from_slice(&h.record_count.to_be_bytes());
    debug_assert_eq!(out.len() - start, BATCH_HEADER_LEN);
}

fn codec_message(e: impl std::fmt::Display) -> String {
    format!("{e:#}")
}

/// Decompress the records region of a batch with `codec`.
pub(crate) fn decompress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let mut src = data;
    let take = |b: &mut bytes::Bytes| Ok(Vec::from(std::mem::take(b)));
    let res = match codec {
        Compression::None => return Ok(data.to_vec()),
        Compression::Gzip => <Gzip as Decompressor<&[u8]>>::decompress(&mut src, take),
        Compression::Snappy => <Snappy as Decompressor<&[u8]>>::decompress(&mut src, take),
        Compression::Lz4 => <Lz4 as Decompressor<&[u8]>>::decompress(&mut src, take),
        Compression::Zstd => <Zstd as Decompressor<&[u8]>>::decompress(&mut src, take),
        Compression::Unknown(c) => return Err(format!("unknown codec {c}")),
    };
    res.map_err(codec_message)
}

/// Compress `plain` with `codec`, appending to `out`.
pub(crate) fn compress(codec: Compression, plain: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let fill = |tmp: &mut bytes::BytesMut| {
        tmp.extend_from_slice(plain);
        Ok(())
    };
    let res = match codec {
        Compression::None => {
            out.extend_from_slice(plain);
            return Ok(());
        }
        Compression::Gzip => <Gzip as Compressor<Vec<u8>>>::compress(out, fill),
        Compression::Snappy => <Snappy as Compressor<Vec<u8>>>::compress(out, fill),
        Compression::Lz4 => <Lz4 as Compressor<Vec<u8>>>::compress(out, fill),
        Compression::Zstd => <Zstd as Compressor<Vec<u8>>>::compress(out, fill),
        Compression::Unknown(c) => return Err(format!("unknown codec {c}")),
    };
    res.map_err(codec_message)
}

/// An uncompressed batch whose records can be walked with [`iter_records`].
pub(crate) enum PlainBatch<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl PlainBatch<'_> {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            PlainBatch::Borrowed(b) => b,
            PlainBatch::Owned(v) => v,
        }
    }
}

/// For a validated batch, the batch itself when uncompressed; otherwise a
/// synthetic uncompressed copy (same header, codec bits cleared, decompressed
/// records, recomputed CRC), so the records can be walked and fully checked by
/// the same parser as uncompressed data.
pub(crate) fn plain_batch<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    position: usize,
) -> Result<PlainBatch<'a>, CompactionError> {
    let codec = header.compression();
    if codec == Compression::None {
        return Ok(PlainBatch::Borrowed(batch));
    }
    let records = decompress(codec, &batch[BATCH_HEADER_LEN..]).map_err(|message| CompactionError::Decompress {
        codec,
        position,
        message,
    })?;
    let batch_length =
        i32::try_from(records.len() + BATCH_HEADER_LEN - LOG_OVERHEAD).map_err(|_| CompactionError::InvalidBatch {
            position,
            source: BatchError::BatchTooLarge { size: records.len(), max: i32::MAX as usize },
        })?;
    let mut plain = Vec::with_capacity(BATCH_HEADER_LEN + records.len());
    put_header(&mut plain, &BatchHeader { batch_length, attributes: header.attributes & !COMPRESSION_MASK, ..*header });
    plain.extend_from_slice(&records);
    rewrite_crc(&mut plain);
    Ok(PlainBatch::Owned(plain))
}

/// Call `f` with the records of `batch` (already validated, giving
/// `header`), decompressing first if needed. The records are walked by
/// [`iter_records`], which re-checks the (decompressed) framing.
fn with_records<R>(
    batch: &[u8],
    header: &BatchHeader,
    position: usize,
    f: impl FnOnce(&BatchHeader, &mut dyn Iterator<Item = RecordRef<'_>>) -> Result<R, CompactionError>,
) -> Result<R, CompactionError> {
    let plain = plain_batch(batch, header, position)?;
    let (plain_header, mut iter) =
        iter_records(plain.bytes()).map_err(|source| CompactionError::InvalidBatch { position, source })?;
    debug_assert_eq!(plain_header.record_count, header.record_count);
    f(header, &mut iter)
}

/// Feeds every record of one batch (raw bytes of exactly one v2 batch,
/// possibly compressed) into the map. Records with null keys are ignored, and
/// so are control batches (their keys are marker types, not user keys).
pub fn add_batch_to_map(map: &mut KeyOffsetMap, batch: &[u8]) -> Result<(), CompactionError> {
    let header = validate_batch(batch).map_err(|source| CompactionError::InvalidBatch { position: 0, source })?;
    if header.is_control() || header.record_count == 0 {
        return Ok(());
    }
    with_records(batch, &header, 0, |h, records| {
        for r in records {
            if let Some(key) = r.key {
                map.insert(key, h.base_offset + i64::from(r.offset_delta));
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Cleaning
// ---------------------------------------------------------------------------

/// Time-based knobs of one cleaning pass (all in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanOptions {
    /// Wall clock of the pass.
    pub now_ms: i64,
    /// Tombstones whose batch `maxTimestamp` is older than
    /// `now_ms - delete_retention_ms` are dropped.
    pub delete_retention_ms: i64,
    /// Batches whose `maxTimestamp` is newer than `now_ms -
    /// min_compaction_lag_ms` are kept whole (no effect when `<= 0`).
    pub min_compaction_lag_ms: i64,
}

/// Output of [`clean_batches`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanedBatches {
    /// Concatenated valid v2 batches, in offset order.
    pub data: Vec<u8>,
    /// Headers of the output batches in order (`total_len()` of each gives
    /// its byte extent in `data`).
    pub batches: Vec<BatchHeader>,
    pub records_kept: u64,
    pub records_removed: u64,
}

/// Next producer sequence after `base` by `delta`: sequences wrap from
/// `i32::MAX` to 0. A negative base (-1 = no sequence) is kept as it is.
fn advance_sequence(base: i32, delta: i64) -> i32 {
    if base < 0 {
        return base;
    }
    ((i64::from(base) + delta).rem_euclid(i64::from(i32::MAX) + 1)) as i32
}

// Record varints are written with the batch module's encoders.
use crate::batch::{put_varint, put_varlong};

/// Lengths come from parsed records, so they fit an i32.
fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as i32);
    out.extend_from_slice(b);
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => put_bytes(out, b),
    }
}

/// Append one record (length-prefixed) with a new offset delta.
fn put_record(out: &mut Vec<u8>, body: &mut Vec<u8>, r: &RecordRef<'_>, offset_delta: i32) {
    body.clear();
    body.push(r.attributes as u8);
    put_varlong(body, r.timestamp_delta);
    put_varint(body, offset_delta);
    put_nullable(body, r.key);
    put_nullable(body, r.value);
    put_varint(body, r.header_count() as i32);
    for (k, v) in r.headers() {
        put_bytes(body, k);
        put_nullable(body, v);
    }
    put_varint(out, body.len() as i32);
    out.extend_from_slice(body);
}

/// Append one output batch holding `run` (records of consecutive offsets
/// taken from the batch described by `orig`).
fn put_run(
    out: &mut Vec<u8>,
    orig: &BatchHeader,
    run: &[RecordRef<'_>],
    position: usize,
) -> Result<BatchHeader, CompactionError> {
    debug_assert!(!run.is_empty());
    let first_delta = run[0].offset_delta;
    let mut plain = Vec::new();
    let mut body = Vec::new();
    for (i, r) in run.iter().enumerate() {
        debug_assert_eq!(r.offset_delta - first_delta, i as i32, "runs are consecutive");
        put_record(&mut plain, &mut body, r, r.offset_delta - first_delta);
    }
    let codec = orig.compression();
    let mut records = Vec::new();
    compress(codec, &plain, &mut records).map_err(|message| CompactionError::Compress { codec, position, message })?;
    let size = BATCH_HEADER_LEN + records.len();
    let batch_length = i32::try_from(size - LOG_OVERHEAD).map_err(|_| CompactionError::OutputTooLarge { size })?;
    let count = run.len() as i32;
    let header = BatchHeader {
        base_offset: orig.base_offset + i64::from(first_delta),
        batch_length,
        magic: MAGIC_V2,
        crc: 0,
        last_offset_delta: count - 1,
        base_sequence: advance_sequence(orig.base_sequence, i64::from(first_delta)),
        record_count: count,
        ..*orig
    };
    let start = out.len();
    put_header(out, &header);
    out.extend_from_slice(&records);
    rewrite_crc(&mut out[start..]);
    validate_batch(&out[start..]).map_err(CompactionError::InvalidOutput)
}

/// Rewrites the batches in `input` (concatenated v2 batches as stored in a
/// segment, offsets already assigned), dropping superseded records and
/// expired tombstones as described in the [module docs](self). Order and
/// offsets are preserved; batches from which nothing is removed are copied
/// byte for byte, so cleaning the output again with the same map and options
/// returns it unchanged.
pub fn clean_batches(input: &[u8], map: &KeyOffsetMap, opts: &CleanOptions) -> Result<CleanedBatches, CompactionError> {
    let mut out = CleanedBatches { data: Vec::with_capacity(input.len()), ..CleanedBatches::default() };
    let tombstone_horizon = opts.now_ms.saturating_sub(opts.delete_retention_ms);
    let lag_horizon = if opts.min_compaction_lag_ms > 0 {
        Some(opts.now_ms.saturating_sub(opts.min_compaction_lag_ms))
    } else {
        None
    };
    let mut position = 0usize;
    while position < input.len() {
        let rest = &input[position..];
        let invalid = |source| CompactionError::InvalidBatch { position, source };
        let batch_length = peek_batch_length(rest)
            .ok_or_else(|| invalid(BatchError::Truncated { needed: LOG_OVERHEAD, available: rest.len() }))?;
        if batch_length < MIN_BATCH_LENGTH {
            return Err(invalid(BatchError::BadLength { batch_length, buf_len: rest.len() }));
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if total > rest.len() {
            return Err(invalid(BatchError::Truncated { needed: total, available: rest.len() }));
        }
        let batch = &rest[..total];
        let header = validate_batch(batch).map_err(invalid)?;
        let count = header.record_count as u64;

        let keep_whole =
            header.is_control() || header.record_count == 0 || lag_horizon.is_some_and(|h| header.max_timestamp > h);
        if keep_whole {
            out.data.extend_from_slice(batch);
            out.batches.push(header);
            out.records_kept += count;
            position += total;
            continue;
        }

        let tombstones_expired = header.max_timestamp < tombstone_horizon;
        let mut data = std::mem::take(&mut out.data);
        let rebuilt = with_records(batch, &header, position, |h, records| {
            let mut runs: Vec<Vec<RecordRef<'_>>> = Vec::new();
            let mut kept = 0u64;
            let mut prev_kept: Option<i32> = None;
            for r in records {
                let offset = h.base_offset + i64::from(r.offset_delta);
                let keep = match r.key {
                    None => true,
                    Some(_) if r.value.is_none() && tombstones_expired => false,
                    Some(key) => map.latest(key).is_none_or(|latest| offset >= latest),
                };
                if keep {
                    if prev_kept == Some(r.offset_delta - 1) {
                        runs.last_mut().expect("a run is open").push(r);
                    } else {
                        runs.push(vec![r]);
                    }
                    prev_kept = Some(r.offset_delta);
                    kept += 1;
                }
            }
            if kept == count {
                // Nothing removed: keep the original bytes (no recompression).
                data.extend_from_slice(batch);
                return Ok((vec![*h], kept));
            }
            let mut headers = Vec::with_capacity(runs.len());
            for run in &runs {
                headers.push(put_run(&mut data, h, run, position)?);
            }
            Ok((headers, kept))
        });
        out.data = data;
        let (headers, kept) = rebuilt?;
        out.batches.extend(headers);
        out.records_kept += kept;
        out.records_removed += count - kept;
        position += total;
    }
    Ok(out)
}

/// Dirty ratio: the fraction of the log's bytes not cleaned yet,
/// `dirty / (clean + dirty)`; 0 for an empty log. Compare it with
/// `min.cleanable.dirty.ratio` to decide whether a log is worth cleaning.
pub fn dirty_ratio(clean_bytes: u64, dirty_bytes: u64) -> f64 {
    let total = clean_bytes as f64 + dirty_bytes as f64;
    if total == 0.0 {
        0.0
    } else {
        dirty_bytes as f64 / total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch_with, decode_records, split_record_set, BatchOptions, DecodedRecord, RecordSpec};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as KpCompression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;
    const DAY: i64 = 86_400_000;

    fn opts() -> CleanOptions {
        CleanOptions { now_ms: NOW, delete_retention_ms: DAY, min_compaction_lag_ms: 0 }
    }

    fn spec<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>, ts_delta: i64) -> RecordSpec<'a> {
        RecordSpec { key, value, headers: vec![], timestamp_delta: ts_delta }
    }

    fn kv<'a>(key: &'a str, value: &'a str) -> RecordSpec<'a> {
        spec(Some(key.as_bytes()), Some(value.as_bytes()), 0)
    }

    fn tomb(key: &str) -> RecordSpec<'_> {
        spec(Some(key.as_bytes()), None, 0)
    }

    fn plain(base_offset: i64, base_timestamp: i64, recs: &[RecordSpec]) -> Vec<u8> {
        build_batch_with(&BatchOptions { base_offset, base_timestamp, ..BatchOptions::default() }, recs)
    }

    fn concat(batches: &[Vec<u8>]) -> Vec<u8> {
        batches.concat()
    }

    fn map_of(log: &[u8]) -> KeyOffsetMap {
        let mut map = KeyOffsetMap::new();
        for (s, e) in split_record_set(log, usize::MAX).unwrap() {
            add_batch_to_map(&mut map, &log[s..e]).unwrap();
        }
        map
    }

    /// Every record of a log, decompressing as needed (via this module).
    fn read_all(log: &[u8]) -> Vec<DecodedRecord> {
        let mut out = Vec::new();
        if log.is_empty() {
            return out;
        }
        for (s, e) in split_record_set(log, usize::MAX).unwrap() {
            let b = &log[s..e];
            let h = validate_batch(b).unwrap();
            let p = plain_batch(b, &h, s).unwrap();
            out.extend(decode_records(p.bytes()).unwrap());
        }
        out
    }

    fn batches_of(log: &[u8]) -> Vec<&[u8]> {
        if log.is_empty() {
            return vec![];
        }
        split_record_set(log, usize::MAX).unwrap().into_iter().map(|(s, e)| &log[s..e]).collect()
    }

    /// Every output batch validates, and `batches` matches the bytes.
    fn check_output(c: &CleanedBatches) {
        let parts = batches_of(&c.data);
        assert_eq!(parts.len(), c.batches.len());
        for (b, h) in parts.iter().zip(&c.batches) {
            assert_eq!(validate_batch(b).unwrap(), *h);
        }
    }

    fn clean(log: &[u8], o: &CleanOptions) -> CleanedBatches {
        let map = map_of(log);
        let c = clean_batches(log, &map, o).unwrap();
        check_output(&c);
        // idempotent
        let again = clean_batches(&c.data, &map, o).unwrap();
        assert_eq!(again.data, c.data);
        assert_eq!(again.batches, c.batches);
        assert_eq!(again.records_removed, 0);
        c
    }

    fn values(recs: &[DecodedRecord]) -> Vec<(i64, Option<String>, Option<String>)> {
        recs.iter()
            .map(|r| {
                (
                    r.offset,
                    r.key.as_ref().map(|k| String::from_utf8(k.clone()).unwrap()),
                    r.value.as_ref().map(|v| String::from_utf8(v.clone()).unwrap()),
                )
            })
            .collect()
    }

    fn s(x: &str) -> Option<String> {
        Some(x.to_string())
    }

    // ---------------- key map ----------------

    #[test]
    fn key_offset_map_keeps_max() {
        let mut m = KeyOffsetMap::new();
        assert!(m.is_empty());
        assert_eq!(m.latest(b"a"), None);
        assert_eq!(m.max_offset(), None);
        m.insert(b"a", 5);
        m.insert(b"a", 3);
        m.insert(b"b", 1);
        m.insert(b"", 0);
        assert_eq!(m.latest(b"a"), Some(5));
        assert_eq!(m.latest(b"b"), Some(1));
        assert_eq!(m.latest(b""), Some(0));
        assert_eq!(m.latest(b"c"), None);
        m.insert(b"a", 9);
        assert_eq!(m.latest(b"a"), Some(9));
        assert_eq!(m.len(), 3);
        assert_eq!(m.max_offset(), Some(9));
        assert_eq!(key_hash(b"a"), xxhash_rust::xxh3::xxh3_64(b"a"));
        m.insert_hash(key_hash(b"c"), 2);
        assert_eq!(m.latest(b"c"), Some(2));
    }

    #[test]
    fn key_offset_map_memory_estimate_grows() {
        let empty = KeyOffsetMap::new().memory_bytes();
        let mut m = KeyOffsetMap::with_capacity(10);
        let small = m.memory_bytes();
        assert!(small > empty);
        for i in 0..10_000i64 {
            m.insert(&i.to_be_bytes(), i);
        }
        assert_eq!(m.len(), 10_000);
        let big = m.memory_bytes();
        // at least 16 bytes per entry, at most ~2.3x that with load factor slack
        assert!((10_000 * 17..=10_000 * 17 * 3).contains(&big), "{big}");
    }

    #[test]
    fn map_ignores_null_keys_and_control_batches() {
        let mut m = KeyOffsetMap::new();
        add_batch_to_map(&mut m, &plain(0, 0, &[spec(None, Some(b"x"), 0), kv("k", "v")])).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m.latest(b"k"), Some(1));
        let marker = build_batch_with(
            &BatchOptions { base_offset: 7, control: true, transactional: true, producer_id: 3, ..Default::default() },
            &[kv("k", "commit")],
        );
        add_batch_to_map(&mut m, &marker).unwrap();
        assert_eq!(m.latest(b"k"), Some(1));
        add_batch_to_map(&mut m, &plain(9, 0, &[])).unwrap();
        assert_eq!(m.len(), 1);
    }

    // ---------------- basic cleaning ----------------

    #[test]
    fn latest_value_per_key_survives() {
        let log = concat(&[
            plain(0, NOW - 5 * DAY, &[kv("a", "a0"), kv("b", "b0"), kv("c", "c0")]),
            plain(3, NOW - 4 * DAY, &[kv("a", "a1"), kv("a", "a2"), kv("b", "b1")]),
            plain(6, NOW - 3 * DAY, &[kv("d", "d0"), kv("a", "a3")]),
            plain(8, NOW - 2 * DAY, &[kv("b", "b2"), kv("d", "d1"), kv("e", "e0")]),
        ]);
        let c = clean(&log, &opts());
        assert_eq!(
            values(&read_all(&c.data)),
            vec![
                (2, s("c"), s("c0")),
                (7, s("a"), s("a3")),
                (8, s("b"), s("b2")),
                (9, s("d"), s("d1")),
                (10, s("e"), s("e0")),
            ]
        );
        assert_eq!((c.records_kept, c.records_removed), (5, 6));
        // batch 1 -> [2], batch 2 -> gone, batch 3 -> [7], batch 4 whole (copied)
        let bases: Vec<(i64, i32)> = c.batches.iter().map(|h| (h.base_offset, h.record_count)).collect();
        assert_eq!(bases, vec![(2, 1), (7, 1), (8, 3)]);
        assert_eq!(batches_of(&c.data)[2], &log[log.len() - batches_of(&log)[3].len()..]);
    }

    #[test]
    fn removed_middle_records_split_into_runs_with_consistent_sequences() {
        let opts_b = BatchOptions {
            base_offset: 100,
            base_timestamp: NOW - DAY,
            partition_leader_epoch: 7,
            producer_id: 4242,
            producer_epoch: 3,
            base_sequence: 50,
            ..Default::default()
        };
        // offsets 100..=107; "x" superseded at 101, 104, 105 by 108
        let b1 = build_batch_with(
            &opts_b,
            &[
                kv("p", "0"),
                kv("x", "1"),
                kv("q", "2"),
                kv("r", "3"),
                kv("x", "4"),
                kv("x", "5"),
                kv("s", "6"),
                kv("t", "7"),
            ],
        );
        let b2 = plain(108, NOW - DAY, &[kv("x", "8")]);
        let c = clean(&concat(&[b1, b2]), &opts());
        let hs = &c.batches;
        assert_eq!(hs.len(), 4);
        let shape: Vec<(i64, i32, i32, i32)> =
            hs.iter().map(|h| (h.base_offset, h.record_count, h.last_offset_delta, h.base_sequence)).collect();
        assert_eq!(shape, vec![(100, 1, 0, 50), (102, 2, 1, 52), (106, 2, 1, 56), (108, 1, 0, -1)]);
        for h in &hs[..3] {
            assert_eq!((h.producer_id, h.producer_epoch, h.partition_leader_epoch), (4242, 3, 7));
            assert_eq!(h.base_timestamp, NOW - DAY);
            assert_eq!(h.compression(), Compression::None);
        }
        let offs: Vec<i64> = read_all(&c.data).iter().map(|r| r.offset).collect();
        assert_eq!(offs, vec![100, 102, 103, 106, 107, 108]);
        assert_eq!((c.records_kept, c.records_removed), (6, 3));
    }

    #[test]
    fn sequence_wraps_like_producer_sequences() {
        assert_eq!(advance_sequence(-1, 5), -1);
        assert_eq!(advance_sequence(10, 0), 10);
        assert_eq!(advance_sequence(10, 5), 15);
        assert_eq!(advance_sequence(i32::MAX, 1), 0);
        assert_eq!(advance_sequence(i32::MAX - 1, 3), 1);

        let b = build_batch_with(
            &BatchOptions { producer_id: 1, producer_epoch: 0, base_sequence: i32::MAX - 1, ..Default::default() },
            &[kv("a", "0"), kv("a", "1"), kv("b", "2"), kv("c", "3")],
        );
        let c = clean(&b, &opts());
        assert_eq!(c.batches.len(), 1);
        assert_eq!((c.batches[0].base_offset, c.batches[0].base_sequence), (1, i32::MAX));
    }

    #[test]
    fn tombstones_kept_before_delete_retention_and_dropped_after() {
        let log = concat(&[
            plain(0, NOW - 10 * DAY, &[kv("a", "a0"), kv("b", "b0"), kv("c", "c0")]),
            // old tombstone for a (batch max ts = NOW - 2 days)
            plain(3, NOW - 2 * DAY, &[tomb("a")]),
            // recent tombstone for b (batch max ts = NOW - 1 hour)
            plain(4, NOW - 3_600_000, &[tomb("b")]),
            // a tombstone that is superseded by a later value
            plain(5, NOW - 3 * DAY, &[tomb("c"), kv("c", "c1")]),
        ]);
        let c = clean(&log, &opts());
        assert_eq!(values(&read_all(&c.data)), vec![(4, s("b"), None), (6, s("c"), s("c1"))]);
        // longer retention keeps the old tombstone too
        let keep_all = CleanOptions { delete_retention_ms: 3 * DAY, ..opts() };
        let c = clean(&log, &keep_all);
        assert_eq!(values(&read_all(&c.data)), vec![(3, s("a"), None), (4, s("b"), None), (6, s("c"), s("c1"))]);
        // boundary: a batch exactly at the horizon is not yet "older than" it
        let at = CleanOptions { delete_retention_ms: 2 * DAY, ..opts() };
        assert!(read_all(&clean(&log, &at).data).iter().any(|r| r.offset == 3));
        // zero retention drops every latest tombstone
        let zero = CleanOptions { delete_retention_ms: 0, ..opts() };
        assert_eq!(values(&read_all(&clean(&log, &zero).data)), vec![(6, s("c"), s("c1"))]);
    }

    #[test]
    fn null_key_records_are_kept() {
        let log = concat(&[
            plain(0, 0, &[spec(None, Some(b"n0"), 0), kv("a", "a0"), spec(None, None, 1)]),
            plain(3, 0, &[kv("a", "a1"), spec(None, Some(b"n1"), 0)]),
        ]);
        let c = clean(&log, &CleanOptions { delete_retention_ms: 0, ..opts() });
        assert_eq!(
            values(&read_all(&c.data)),
            vec![(0, None, s("n0")), (2, None, None), (3, s("a"), s("a1")), (4, None, s("n1"))]
        );
        assert_eq!((c.records_kept, c.records_removed), (4, 1));
    }

    #[test]
    fn min_compaction_lag_keeps_recent_batches_whole() {
        let recent = plain(3, NOW - 60_000, &[kv("a", "a1"), kv("a", "a2"), tomb("b")]);
        let log = concat(&[plain(0, NOW - DAY, &[kv("a", "a0"), kv("b", "b0"), kv("c", "c0")]), recent.clone()]);
        let lag = CleanOptions { min_compaction_lag_ms: 3_600_000, delete_retention_ms: 0, ..opts() };
        let c = clean(&log, &lag);
        // old batch cleaned against the whole map, recent batch untouched
        assert_eq!(
            values(&read_all(&c.data)),
            vec![(2, s("c"), s("c0")), (3, s("a"), s("a1")), (4, s("a"), s("a2")), (5, s("b"), None)]
        );
        assert_eq!(batches_of(&c.data)[1], &recent[..]);
        // without a lag the recent batch is compacted (tombstone dropped: retention 0)
        let c = clean(&log, &CleanOptions { min_compaction_lag_ms: 0, ..lag });
        assert_eq!(values(&read_all(&c.data)), vec![(2, s("c"), s("c0")), (4, s("a"), s("a2"))]);
        // a lag larger than the old batch's age keeps everything
        let c = clean(&log, &CleanOptions { min_compaction_lag_ms: 2 * DAY, ..lag });
        assert_eq!(c.data, log);
        // lag 0 also compacts batches with future timestamps
        let future = concat(&[plain(0, NOW + DAY, &[kv("a", "0"), kv("a", "1")])]);
        assert_eq!(read_all(&clean(&future, &opts()).data).len(), 1);
    }

    #[test]
    fn all_removed_yields_empty_output() {
        let log = concat(&[plain(0, 0, &[kv("a", "0"), kv("b", "0")]), plain(2, 0, &[kv("a", "1"), kv("b", "1")])]);
        let map = map_of(&log);
        let first = batches_of(&log)[0];
        let c = clean_batches(first, &map, &opts()).unwrap();
        assert!(c.data.is_empty() && c.batches.is_empty());
        assert_eq!((c.records_kept, c.records_removed), (0, 2));
        // all tombstones expired
        let t = plain(0, 0, &[tomb("a"), tomb("b")]);
        let c = clean(&t, &opts());
        assert!(c.data.is_empty());
        assert_eq!(c.records_removed, 2);
        // empty input
        let c = clean_batches(&[], &map, &opts()).unwrap();
        assert_eq!(c, CleanedBatches::default());
    }

    #[test]
    fn keys_unknown_to_the_map_or_newer_than_it_are_kept() {
        let old = plain(0, 0, &[kv("a", "0"), kv("b", "0")]);
        let newer = plain(2, 0, &[kv("a", "1"), kv("a", "2")]);
        // map only knows the first batch
        let map = map_of(&old);
        let c = clean_batches(&newer, &map, &opts()).unwrap();
        assert_eq!(c.data, newer);
        let c = clean_batches(&old, &KeyOffsetMap::new(), &opts()).unwrap();
        assert_eq!(c.data, old);
    }

    #[test]
    fn control_batches_and_empty_batches_are_kept_verbatim() {
        let marker = build_batch_with(
            &BatchOptions {
                base_offset: 2,
                base_timestamp: 0,
                control: true,
                transactional: true,
                producer_id: 9,
                producer_epoch: 1,
                ..Default::default()
            },
            &[spec(Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), 0)],
        );
        let log = concat(&[plain(0, 0, &[kv("a", "0"), kv("a", "1")]), marker.clone(), plain(3, 0, &[])]);
        let c = clean(&log, &CleanOptions { delete_retention_ms: 0, ..opts() });
        let parts = batches_of(&c.data);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1], &marker[..]);
        assert_eq!(c.batches[2].record_count, 0);
        assert_eq!((c.records_kept, c.records_removed), (2, 1));
    }

    #[test]
    fn attributes_and_producer_fields_preserved() {
        let o = BatchOptions {
            base_offset: 10,
            base_timestamp: 1234,
            partition_leader_epoch: 12,
            producer_id: 77,
            producer_epoch: 5,
            base_sequence: 0,
            transactional: true,
            control: false,
            log_append_time: true,
        };
        let b = build_batch_with(&o, &[kv("a", "0"), kv("b", "0"), kv("a", "1")]);
        let orig = validate_batch(&b).unwrap();
        let c = clean(&b, &opts());
        assert_eq!(c.batches.len(), 1);
        let h = c.batches[0];
        assert_eq!(h.attributes, orig.attributes);
        assert!(h.is_transactional() && h.is_log_append_time() && !h.is_control());
        assert_eq!((h.base_offset, h.base_sequence, h.record_count), (11, 1, 2));
        assert_eq!((h.base_timestamp, h.max_timestamp), (orig.base_timestamp, orig.max_timestamp));
        assert_eq!((h.producer_id, h.producer_epoch, h.partition_leader_epoch), (77, 5, 12));
    }

    /// Hand-encoded record bytes, independent of both builders: null header
    /// values, duplicate and non-UTF-8 header keys, a non-zero record
    /// attributes byte and negative timestamp deltas.
    fn raw_batch(base_offset: i64, base_ts: i64, recs: &[RawRecord]) -> Vec<u8> {
        let mut b = build_batch_with(&BatchOptions { base_offset, base_timestamp: base_ts, ..Default::default() }, &[]);
        for (i, r) in recs.iter().enumerate() {
            let mut body = vec![r.attributes as u8];
            put_varlong(&mut body, r.ts_delta);
            put_varint(&mut body, i as i32);
            put_nullable(&mut body, r.key.as_deref());
            put_nullable(&mut body, r.value.as_deref());
            put_varint(&mut body, r.headers.len() as i32);
            for (k, v) in &r.headers {
                put_bytes(&mut body, k);
                put_nullable(&mut body, v.as_deref());
            }
            put_varint(&mut b, body.len() as i32);
            b.extend_from_slice(&body);
        }
        let n = recs.len() as i32;
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[23..27].copy_from_slice(&(n - 1).max(0).to_be_bytes());
        let max_ts = recs.iter().map(|r| base_ts + r.ts_delta).max().unwrap_or(base_ts);
        b[35..43].copy_from_slice(&max_ts.to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
        rewrite_crc(&mut b);
        validate_batch(&b).unwrap();
        b
    }

    struct RawRecord {
        attributes: i8,
        ts_delta: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    }

    #[test]
    fn headers_and_timestamps_preserved() {
        let hdrs = vec![
            (b"dup".to_vec(), Some(b"1".to_vec())),
            (b"dup".to_vec(), Some(b"2".to_vec())),
            (vec![0xff, 0xfe], None),
            (vec![], Some(vec![])),
        ];
        let recs = vec![
            RawRecord {
                attributes: 0,
                ts_delta: 5,
                key: Some(b"k".to_vec()),
                value: Some(b"old".to_vec()),
                headers: vec![],
            },
            RawRecord { attributes: 3, ts_delta: -7, key: None, value: Some(b"n".to_vec()), headers: hdrs.clone() },
            RawRecord {
                attributes: 0,
                ts_delta: 1,
                key: Some(b"j".to_vec()),
                value: Some(b"old".to_vec()),
                headers: vec![],
            },
            RawRecord {
                attributes: 1,
                ts_delta: 99,
                key: Some(b"k".to_vec()),
                value: Some(b"new".to_vec()),
                headers: hdrs,
            },
            RawRecord { attributes: 0, ts_delta: 2, key: Some(b"j".to_vec()), value: None, headers: vec![] },
        ];
        let b = raw_batch(40, 1_000_000, &recs);
        let before = decode_records(&b).unwrap();
        let c = clean(&b, &CleanOptions { delete_retention_ms: DAY, now_ms: 1_000_000, min_compaction_lag_ms: 0 });
        let after = read_all(&c.data);
        assert_eq!(after, vec![before[1].clone(), before[3].clone(), before[4].clone()]);
        assert_eq!(after[0].timestamp, 1_000_000 - 7);
        assert_eq!(after[0].attributes, 3);
        assert_eq!(after[1].headers.len(), 4);
        assert_eq!(c.batches.len(), 2);
        assert_eq!(c.batches[0].max_timestamp, 1_000_099);
    }

    // ---------------- compressed batches ----------------

    fn kp_codec(c: Compression) -> KpCompression {
        match c {
            Compression::None => KpCompression::None,
            Compression::Gzip => KpCompression::Gzip,
            Compression::Snappy => KpCompression::Snappy,
            Compression::Lz4 => KpCompression::Lz4,
            Compression::Zstd => KpCompression::Zstd,
            Compression::Unknown(_) => unreachable!(),
        }
    }

    const CODECS: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// (key, value, timestamp, headers)
    type KpRecord<'a> = (Option<&'a str>, Option<&'a str>, i64, Vec<(&'a str, Option<&'a str>)>);

    struct KpBatch<'a> {
        codec: Compression,
        base_offset: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        leader_epoch: i32,
        records: Vec<KpRecord<'a>>,
    }

    /// Encode one batch with kafka-protocol's encoder (an independent
    /// implementation, and the one doing the compression of the input).
    fn kp_encode(b: &KpBatch) -> Vec<u8> {
        let records: Vec<Record> = b
            .records
            .iter()
            .enumerate()
            .map(|(i, (k, v, ts, hs))| {
                let mut headers = kafka_protocol::indexmap::IndexMap::new();
                for (hk, hv) in hs {
                    headers.insert(StrBytes::from_string(hk.to_string()), hv.map(|x| Bytes::from(x.to_string())));
                }
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: b.leader_epoch,
                    producer_id: b.producer_id,
                    producer_epoch: b.producer_epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: b.base_offset + i as i64,
                    // keeps offset - sequence constant so the encoder makes one batch
                    sequence: b.base_sequence.wrapping_add(i as i32),
                    timestamp: *ts,
                    key: k.map(|x| Bytes::from(x.to_string())),
                    value: v.map(|x| Bytes::from(x.to_string())),
                    headers,
                }
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions { version: 2, compression: kp_codec(b.codec) },
        )
        .unwrap();
        let v = buf.to_vec();
        let h = validate_batch(&v).unwrap();
        assert_eq!(h.compression(), b.codec);
        assert_eq!(h.record_count as usize, b.records.len());
        v
    }

    fn kp_decode(log: &[u8]) -> Vec<Record> {
        let mut buf = Bytes::copy_from_slice(log);
        RecordBatchDecoder::decode_all(&mut buf).unwrap().into_iter().flat_map(|s| s.records).collect()
    }

    #[test]
    fn compressed_batches_roundtrip_with_same_codec() {
        for codec in CODECS {
            let t0 = NOW - 2 * DAY;
            let b1 = kp_encode(&KpBatch {
                codec,
                base_offset: 1000,
                producer_id: 55,
                producer_epoch: 2,
                base_sequence: 10,
                leader_epoch: 4,
                records: vec![
                    (Some("a"), Some("a0"), t0, vec![("h", Some("1"))]),
                    (Some("b"), Some("b0"), t0 + 3, vec![]),
                    (Some("a"), Some("a1"), t0 + 1, vec![("h", Some("2")), ("z", None)]),
                    (None, Some("keyless"), t0 + 9, vec![("n", Some(""))]),
                    (Some("c"), Some("c0"), t0 + 2, vec![]),
                    (Some("b"), Some("b1"), t0 + 4, vec![]),
                ],
            });
            let b2 = kp_encode(&KpBatch {
                codec,
                base_offset: 1006,
                producer_id: 55,
                producer_epoch: 2,
                base_sequence: 16,
                leader_epoch: 4,
                records: vec![(Some("a"), Some("a2"), NOW - 60_000, vec![]), (Some("c"), None, NOW - 59_000, vec![])],
            });
            let log = concat(&[b1, b2.clone()]);
            let before = kp_decode(&log);
            let c = clean(&log, &opts());
            // batch 1: a0 (1000) and a1 (1002) superseded by 1006, b0 (1001) by 1005,
            // c0 (1004) by the tombstone at 1007 -> runs [1003], [1005];
            // batch 2 untouched (its tombstone is within delete retention)
            let shape: Vec<(i64, i32, i32)> =
                c.batches.iter().map(|h| (h.base_offset, h.record_count, h.base_sequence)).collect();
            assert_eq!(shape, vec![(1003, 1, 13), (1005, 1, 15), (1006, 2, 16)], "{codec:?}");
            for h in &c.batches {
                assert_eq!(h.compression(), codec);
                assert_eq!((h.producer_id, h.producer_epoch, h.partition_leader_epoch), (55, 2, 4));
            }
            assert_eq!(batches_of(&c.data)[2], &b2[..]);
            // decoded independently by kafka-protocol
            let after = kp_decode(&c.data);
            let expect: Vec<&Record> = [3usize, 5, 6, 7].iter().map(|&i| &before[i]).collect();
            assert_eq!(after.len(), expect.len());
            for (a, e) in after.iter().zip(expect) {
                assert_eq!(a.offset, e.offset);
                assert_eq!(a.timestamp, e.timestamp);
                assert_eq!(a.key, e.key);
                assert_eq!(a.value, e.value);
                assert_eq!(a.headers, e.headers);
                assert_eq!(a.sequence, e.sequence, "{codec:?} offset {}", a.offset);
                assert_eq!((a.producer_id, a.producer_epoch), (55, 2));
            }
            // and by this crate's parser
            let mine = read_all(&c.data);
            assert_eq!(mine.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![1003, 1005, 1006, 1007]);
            assert_eq!(mine[0].value, Some(b"keyless".to_vec()));
            assert_eq!(mine[0].headers, vec![(b"n".to_vec(), Some(vec![]))]);
            assert_eq!(mine[0].timestamp, t0 + 9);
            assert_eq!(mine[3].value, None);
            // past delete retention the tombstone goes as well
            let later = CleanOptions { now_ms: NOW + 3 * DAY, ..opts() };
            let c = clean(&log, &later);
            let offs: Vec<i64> = read_all(&c.data).iter().map(|r| r.offset).collect();
            assert_eq!(offs, vec![1003, 1005, 1006], "{codec:?}");
            assert!(c.batches.iter().all(|h| h.compression() == codec));
            assert_eq!((c.batches[2].base_offset, c.batches[2].base_sequence), (1006, 16));
        }
    }

    #[test]
    fn corrupt_input_is_reported_with_position() {
        let a = plain(0, 0, &[kv("a", "0")]);
        let b = plain(1, 0, &[kv("a", "1")]);
        let mut log = concat(&[a.clone(), b.clone()]);
        let map = map_of(&log);
        let last = log.len() - 1;
        log[last] ^= 1;
        match clean_batches(&log, &map, &opts()) {
            Err(CompactionError::InvalidBatch { position, source: BatchError::CrcMismatch { .. } }) => {
                assert_eq!(position, a.len())
            }
            other => panic!("{other:?}"),
        }
        let mut m = KeyOffsetMap::new();
        assert!(matches!(add_batch_to_map(&mut m, &log[a.len()..]), Err(CompactionError::InvalidBatch { .. })));
        // truncated tails
        let log = concat(&[a.clone(), b.clone()]);
        for cut in [log.len() - 1, a.len() + 5] {
            let e = clean_batches(&log[..cut], &map, &opts()).unwrap_err();
            assert!(
                matches!(e, CompactionError::InvalidBatch { position, source: BatchError::Truncated { .. } } if position == a.len()),
                "{e:?}"
            );
        }
        // bad length
        let mut bad = a.clone();
        bad[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            clean_batches(&bad, &map, &opts()),
            Err(CompactionError::InvalidBatch { source: BatchError::BadLength { .. }, .. })
        ));
        // garbage behind a gzip codec with a valid CRC
        let mut g = plain(0, 0, &[kv("a", "0")]);
        g[22] |= 1;
        rewrite_crc(&mut g);
        let e = clean_batches(&g, &map, &opts()).unwrap_err();
        assert!(matches!(e, CompactionError::Decompress { codec: Compression::Gzip, position: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("Gzip"));
        assert!(add_batch_to_map(&mut m, &g).is_err());
    }

    #[test]
    fn corrupt_records_inside_compressed_batch_are_rejected() {
        // valid zstd stream whose content is not a record
        let mut garbage = Vec::new();
        compress(Compression::Zstd, &[0xff, 0xff, 0xff], &mut garbage).unwrap();
        let mut b = plain(0, 0, &[]);
        b.extend_from_slice(&garbage);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[22] |= 4;
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        rewrite_crc(&mut b);
        validate_batch(&b).unwrap();
        let e = clean_batches(&b, &KeyOffsetMap::new(), &opts()).unwrap_err();
        assert!(matches!(e, CompactionError::InvalidBatch { source: BatchError::CorruptRecords { .. }, .. }), "{e:?}");
    }

    #[test]
    fn dirty_ratio_cases() {
        assert_eq!(dirty_ratio(0, 0), 0.0);
        assert_eq!(dirty_ratio(100, 0), 0.0);
        assert_eq!(dirty_ratio(0, 100), 1.0);
        assert!((dirty_ratio(300, 100) - 0.25).abs() < 1e-12);
        assert!((dirty_ratio(u64::MAX, u64::MAX) - 0.5).abs() < 1e-12);
    }

    // ---------------- property test against a reference model ----------------

    #[derive(Debug, Clone)]
    struct GenRecord {
        key: Option<u8>,
        value: Option<Vec<u8>>,
        ts_delta: i64,
        header: Option<Vec<u8>>,
    }

    #[derive(Debug, Clone)]
    struct GenBatch {
        codec: usize,
        gap: i64,
        age_ms: i64,
        producer: Option<(i64, i16, i32)>,
        records: Vec<GenRecord>,
    }

    fn gen_record() -> impl Strategy<Value = GenRecord> {
        (
            proptest::option::weighted(0.85, 0u8..8),
            proptest::option::weighted(0.75, proptest::collection::vec(any::<u8>(), 0..24)),
            0i64..1000,
            proptest::option::weighted(0.3, proptest::collection::vec(any::<u8>(), 0..6)),
        )
            .prop_map(|(key, value, ts_delta, header)| GenRecord { key, value, ts_delta, header })
    }

    fn gen_batch() -> impl Strategy<Value = GenBatch> {
        (
            0usize..5,
            prop_oneof![3 => Just(0i64), 1 => 1i64..5],
            prop_oneof![Just(10_000i64), Just(2 * DAY), Just(10 * DAY), 0i64..20 * DAY],
            proptest::option::of((0i64..1000, 0i16..5, prop_oneof![0i32..100, (i32::MAX - 20)..=i32::MAX])),
            proptest::collection::vec(gen_record(), 1..10),
        )
            .prop_map(|(codec, gap, age_ms, producer, records)| GenBatch {
                codec,
                gap,
                age_ms,
                producer,
                records,
            })
    }

    /// Build the log: every batch's base timestamp is `now - age`; codecs are
    /// applied with kafka-protocol's compressors by re-framing a plain batch.
    fn build_log(batches: &[GenBatch]) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut log = Vec::new();
        let mut parts = Vec::new();
        let mut next = 0i64;
        for b in batches {
            let base = next + b.gap;
            let keys: Vec<[u8; 1]> = b.records.iter().map(|r| [b'k' + r.key.unwrap_or(0)]).collect();
            let specs: Vec<RecordSpec> = b
                .records
                .iter()
                .zip(&keys)
                .map(|(r, k)| RecordSpec {
                    key: r.key.map(|_| &k[..]),
                    value: r.value.as_deref(),
                    headers: r.header.as_deref().map(|h| vec![("h", h)]).unwrap_or_default(),
                    timestamp_delta: r.ts_delta,
                })
                .collect();
            let (pid, epoch, seq) = b.producer.unwrap_or((-1, -1, -1));
            let bo = BatchOptions {
                base_offset: base,
                base_timestamp: NOW - b.age_ms,
                partition_leader_epoch: 3,
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: seq,
                ..Default::default()
            };
            let mut batch = build_batch_with(&bo, &specs);
            let codec = CODECS[b.codec];
            if codec != Compression::None {
                let mut c = batch[..BATCH_HEADER_LEN].to_vec();
                compress(codec, &batch[BATCH_HEADER_LEN..], &mut c).unwrap();
                let len = (c.len() - LOG_OVERHEAD) as i32;
                c[8..12].copy_from_slice(&len.to_be_bytes());
                c[22] |= codec.code();
                rewrite_crc(&mut c);
                batch = c;
            }
            next = base + b.records.len() as i64;
            log.extend_from_slice(&batch);
            parts.push(batch);
        }
        (log, parts)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn prop_cleaned_log_matches_model(
            batches in proptest::collection::vec(gen_batch(), 1..8),
            retention in prop_oneof![Just(0i64), Just(DAY), Just(5 * DAY), Just(i64::MAX)],
            lag in prop_oneof![Just(0i64), Just(60_000i64), Just(3 * DAY)],
        ) {
            let (log, parts) = build_log(&batches);
            let o = CleanOptions { now_ms: NOW, delete_retention_ms: retention, min_compaction_lag_ms: lag };
            let all = read_all(&log);

            // Reference model, straight from the spec.
            let mut last: std::collections::HashMap<Vec<u8>, i64> = Default::default();
            for r in &all {
                if let Some(k) = &r.key {
                    last.insert(k.clone(), r.offset);
                }
            }
            let mut expect = Vec::new();
            for part in &parts {
                let h = validate_batch(part).unwrap();
                let whole = lag > 0 && h.max_timestamp > NOW.saturating_sub(lag);
                let expired = h.max_timestamp < NOW.saturating_sub(retention);
                let h_plain = plain_batch(part, &h, 0).unwrap();
                for r in decode_records(h_plain.bytes()).unwrap() {
                    let keep = whole || match &r.key {
                        None => true,
                        Some(k) => last[k] == r.offset && !(r.value.is_none() && expired),
                    };
                    if keep {
                        expect.push(r);
                    }
                }
            }

            let map = map_of(&log);
            prop_assert_eq!(map.len(), last.len());
            let c = clean_batches(&log, &map, &o).unwrap();
            let got = read_all(&c.data);
            prop_assert_eq!(&got, &expect);
            prop_assert_eq!(c.records_kept as usize, expect.len());
            prop_assert_eq!((c.records_kept + c.records_removed) as usize, all.len());

            // Output batches validate, keep codec/producer fields and every
            // kept record's sequence number.
            let out = batches_of(&c.data);
            prop_assert_eq!(out.len(), c.batches.len());
            let mut seq_of = std::collections::HashMap::new();
            let mut meta_of = std::collections::HashMap::new();
            for part in &parts {
                let h = validate_batch(part).unwrap();
                for d in 0..h.record_count {
                    seq_of.insert(h.base_offset + i64::from(d), advance_sequence(h.base_sequence, i64::from(d)));
                    meta_of.insert(h.base_offset + i64::from(d), h);
                }
            }
            for (b, h) in out.iter().zip(&c.batches) {
                prop_assert_eq!(validate_batch(b).unwrap(), *h);
                let orig = meta_of[&h.base_offset];
                prop_assert_eq!(h.attributes, orig.attributes);
                prop_assert_eq!(
                    (h.producer_id, h.producer_epoch, h.partition_leader_epoch, h.base_timestamp, h.max_timestamp),
                    (orig.producer_id, orig.producer_epoch, orig.partition_leader_epoch,
                     orig.base_timestamp, orig.max_timestamp)
                );
                prop_assert_eq!(meta_of[&h.last_offset()], orig, "a batch never spans input batches");
                for d in 0..h.record_count {
                    prop_assert_eq!(advance_sequence(h.base_sequence, i64::from(d)), seq_of[&(h.base_offset + i64::from(d))]);
                }
            }

            // Idempotent.
            let again = clean_batches(&c.data, &map, &o).unwrap();
            prop_assert_eq!(&again.data, &c.data);
            prop_assert_eq!(again.records_removed, 0);
        }
    }
}
