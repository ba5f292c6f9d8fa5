//! Kafka v2 record batch (magic 2) framing, validation and in-place edits.
//!
//! This module owns the byte-level contract between the network and the log:
//! every batch that reaches a segment file has passed [`validate_batch`], and
//! every batch read back during recovery is re-checked with the same function.
//! The broker never re-encodes producer data; it only stamps the fields that
//! sit *outside* CRC coverage ([`stamp_offsets`]) or, for `LogAppendTime`
//! topics, rewrites the timestamps and the CRC ([`set_log_append_time`]).
//!
//! Batch layout (all integers big-endian):
//!
//! | offset | field                  | type | notes                              |
//! |-------:|------------------------|------|------------------------------------|
//! | 0      | baseOffset             | i64  | not CRC-covered, stamped by broker |
//! | 8      | batchLength            | i32  | bytes after this field             |
//! | 12     | partitionLeaderEpoch   | i32  | not CRC-covered, stamped by broker |
//! | 16     | magic                  | i8   | must be 2                          |
//! | 17     | crc                    | u32  | CRC-32C over bytes `[21..end]`     |
//! | 21     | attributes             | i16  | codec, timestamp type, txn, control|
//! | 23     | lastOffsetDelta        | i32  |                                    |
//! | 27     | baseTimestamp          | i64  |                                    |
//! | 35     | maxTimestamp           | i64  |                                    |
//! | 43     | producerId             | i64  |                                    |
//! | 51     | producerEpoch          | i16  |                                    |
//! | 53     | baseSequence           | i32  |                                    |
//! | 57     | recordCount            | i32  |                                    |
//! | 61     | records...             |      | possibly compressed                |
//!
//! Each (uncompressed) record is `varint length` followed by `length` bytes:
//! `attributes i8, timestampDelta varlong, offsetDelta varint, keyLen varint
//! (-1 = null), key, valueLen varint (-1 = null), value, headerCount varint,
//! headers (keyLen varint, key, valueLen varint (-1 = null), value)`.
//! All varints are zig-zag encoded.
//!
//! Everything in here is pure (no I/O) and total: any byte string fed to a
//! parsing function yields either a value or a typed [`BatchError`], never a
//! panic. The only asserting functions are the in-place editors, whose
//! callers hand them already-validated batches.

use std::fmt;

/// Size of the fixed v2 batch header; records start at this offset.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes preceding (and not counted by) `batchLength`: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record-batch format version this broker stores.
pub const MAGIC_V2: i8 = 2;

/// Smallest legal `batchLength` value (a header with no records).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

// Field offsets inside the header.
const BASE_OFFSET_OFF: usize = 0;
const LENGTH_OFF: usize = 8;
const EPOCH_OFF: usize = 12;
const MAGIC_OFF: usize = 16;
const CRC_OFF: usize = 17;
/// First byte covered by the CRC (the attributes field).
pub const CRC_START: usize = 21;
const ATTRIBUTES_OFF: usize = 21;
const LAST_OFFSET_DELTA_OFF: usize = 23;
const BASE_TIMESTAMP_OFF: usize = 27;
const MAX_TIMESTAMP_OFF: usize = 35;
const PRODUCER_ID_OFF: usize = 43;
const PRODUCER_EPOCH_OFF: usize = 51;
const BASE_SEQUENCE_OFF: usize = 53;
const RECORD_COUNT_OFF: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Smallest possible encoded record body: attributes, timestampDelta,
/// offsetDelta, keyLen, valueLen, headerCount — one byte each.
const MIN_RECORD_BODY: usize = 6;

/// Compression codec from the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codes 5..=7. [`validate_batch`] rejects these, so a validated header
    /// never reports `Unknown`.
    Unknown(u8),
}

impl Compression {
    /// Map a 3-bit codec id to a codec.
    pub fn from_code(code: u8) -> Compression {
        match code {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// The 3-bit attribute code of this codec.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
            Compression::Unknown(c) => c,
        }
    }
}

/// What exactly is wrong with the record framing of an uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordFramingError {
    /// A field runs past the end of its record (or the record past the batch).
    Truncated,
    /// A varint is longer than its type allows or overflows it.
    VarintOverflow,
    /// A record length is negative or too small to hold the fixed fields.
    BadRecordLength(i32),
    /// A key/value/header length is negative (other than -1 = null where allowed).
    BadFieldLength(i32),
    /// Header count is negative.
    BadHeaderCount(i32),
    /// A record's offsetDelta is not equal to its index in the batch.
    OffsetDeltaMismatch { expected: i32, found: i32 },
    /// Record body has bytes left over after its last header.
    TrailingRecordBytes,
    /// The batch ended before `recordCount` records were read.
    TooFewRecords,
    /// Bytes remain after `recordCount` records.
    TrailingBatchBytes,
}

impl fmt::Display for RecordFramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a batch (or record set) was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum BatchError {
    /// The buffer ends before the bytes the format requires.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// Magic byte is not 2 (v0/v1 message sets put magic at the same offset).
    #[error("unsupported record batch magic {0}, only v2 is accepted")]
    BadMagic(i8),
    /// batchLength is negative, smaller than a header, or disagrees with the buffer.
    #[error("bad batch length {batch_length} for a buffer of {buf_len} bytes")]
    BadLength { batch_length: i32, buf_len: usize },
    /// CRC-32C over `[21..end]` does not match the stored value.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// recordCount negative, lastOffsetDelta negative, or
    /// `lastOffsetDelta != recordCount - 1` for a non-empty batch.
    #[error("bad record count {record_count} (lastOffsetDelta {last_offset_delta})")]
    BadRecordCount { record_count: i32, last_offset_delta: i32 },
    /// `baseOffset + lastOffsetDelta` does not fit in an i64.
    #[error("baseOffset {base_offset} + lastOffsetDelta {last_offset_delta} overflows")]
    OffsetOverflow { base_offset: i64, last_offset_delta: i32 },
    /// Compression codes 5..=7.
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    /// Uncompressed record framing is inconsistent.
    #[error("corrupt record framing at record {index}: {kind}")]
    CorruptRecords { index: i32, kind: RecordFramingError },
    /// A batch is larger than the configured maximum.
    #[error("batch of {size} bytes exceeds the maximum of {max}")]
    BatchTooLarge { size: usize, max: usize },
    /// A produce request carried no batches at all.
    #[error("empty record set")]
    EmptyRecordSet,
    /// Record-level access was requested on a compressed batch.
    #[error("records are {0:?}-compressed; record access needs an uncompressed batch")]
    Compressed(Compression),
}

#[inline]
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
#[inline]
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
#[inline]
fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}
#[inline]
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Read the `batchLength` field; `None` when fewer than [`LOG_OVERHEAD`] bytes.
pub fn peek_batch_length(buf: &[u8]) -> Option<i32> {
    if buf.len() < LOG_OVERHEAD {
        None
    } else {
        Some(be_i32(buf, LENGTH_OFF))
    }
}

/// The fixed 61-byte header of a v2 record batch, decoded field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decode the header fields. Requires at least [`BATCH_HEADER_LEN`] bytes
    /// and checks nothing else (see [`validate_batch`] for that).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, available: buf.len() });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFF),
            batch_length: be_i32(buf, LENGTH_OFF),
            partition_leader_epoch: be_i32(buf, EPOCH_OFF),
            magic: buf[MAGIC_OFF] as i8,
            crc: be_u32(buf, CRC_OFF),
            attributes: be_i16(buf, ATTRIBUTES_OFF),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFF),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFF),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFF),
            producer_id: be_i64(buf, PRODUCER_ID_OFF),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFF),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFF),
            record_count: be_i32(buf, RECORD_COUNT_OFF),
        })
    }

    /// Total on-disk size: `batchLength + 12`. A negative length (only
    /// possible on an unvalidated header) yields a value below 12.
    pub fn total_len(&self) -> usize {
        if self.batch_length < 0 {
            0
        } else {
            self.batch_length as usize + LOG_OVERHEAD
        }
    }

    /// Offset of the last record: `baseOffset + lastOffsetDelta`
    /// (saturating; a validated header never saturates).
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    /// The next offset after this batch, `None` on overflow.
    pub fn next_offset(&self) -> Option<i64> {
        self.base_offset.checked_add(i64::from(self.last_offset_delta))?.checked_add(1)
    }

    /// Compression codec; `Compression::Unknown` only for unvalidated headers.
    pub fn compression(&self) -> Compression {
        Compression::from_code((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// Timestamp type bit: true = LogAppendTime, false = CreateTime.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// CRC-32C (Castagnoli) of the CRC-covered part of a batch, `[21..]`.
/// Returns the CRC of the empty string for buffers shorter than 21 bytes.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(CRC_START..).unwrap_or(&[]))
}

/// Fully validate one v2 batch. `buf` must hold exactly one batch.
///
/// Checks, in order: header present, magic == 2, batchLength consistent with
/// `buf.len()`, CRC, record count vs lastOffsetDelta, offset overflow, known
/// codec, and for uncompressed batches the complete record framing (every
/// varint, key/value/header length, offsetDelta == index, no trailing bytes).
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.magic != MAGIC_V2 {
        return Err(BatchError::BadMagic(header.magic));
    }
    if header.batch_length < MIN_BATCH_LENGTH || header.total_len() != buf.len() {
        return Err(BatchError::BadLength { batch_length: header.batch_length, buf_len: buf.len() });
    }
    let computed = batch_crc(buf);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch { stored: header.crc, computed });
    }
    let count_ok = header.record_count >= 0
        && header.last_offset_delta >= 0
        && (header.record_count == 0 || header.last_offset_delta == header.record_count - 1);
    if !count_ok {
        return Err(BatchError::BadRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.next_offset().is_none() {
        return Err(BatchError::OffsetOverflow {
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
        });
    }
    match header.compression() {
        Compression::Unknown(code) => return Err(BatchError::UnknownCompression(code)),
        Compression::None => {
            let mut walker = RecordWalker::new(&buf[BATCH_HEADER_LEN..], header.record_count);
            while walker.next_record()?.is_some() {}
        }
        _ => {}
    }
    debug_assert_eq!(header.total_len(), buf.len());
    Ok(header)
}

/// Split a produce request's record set into its concatenated batches.
///
/// Returns `(start, end)` byte ranges, each of which passed [`validate_batch`].
/// An empty set is [`BatchError::EmptyRecordSet`]; a batch whose declared
/// size exceeds `max_batch_bytes` is [`BatchError::BatchTooLarge`] (reported
/// before truncation, so an oversized producer gets the right error even if
/// the request was cut short).
pub fn split_record_set(buf: &[u8], max_batch_bytes: usize) -> Result<Vec<(usize, usize)>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::EmptyRecordSet);
    }
    let mut ranges = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let batch_length = match peek_batch_length(rest) {
            Some(l) => l,
            None => return Err(BatchError::Truncated { needed: LOG_OVERHEAD, available: rest.len() }),
        };
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::BadLength { batch_length, buf_len: rest.len() });
        }
        let total = batch_length as usize + LOG_OVERHEAD;
        if total > max_batch_bytes {
            return Err(BatchError::BatchTooLarge { size: total, max: max_batch_bytes });
        }
        if total > rest.len() {
            return Err(BatchError::Truncated { needed: total, available: rest.len() });
        }
        validate_batch(&rest[..total])?;
        ranges.push((pos, pos + total));
        pos += total;
    }
    debug_assert_eq!(pos, buf.len());
    Ok(ranges)
}

/// Stamp the broker-assigned base offset and partition leader epoch. Both
/// fields lie before the CRC-covered region, so the CRC stays valid.
///
/// # Panics
/// If `batch` is shorter than a batch header (callers pass validated batches).
pub fn stamp_offsets(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    assert!(batch.len() >= BATCH_HEADER_LEN, "stamp_offsets on a {}-byte buffer", batch.len());
    batch[BASE_OFFSET_OFF..BASE_OFFSET_OFF + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[EPOCH_OFF..EPOCH_OFF + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Switch a batch to LogAppendTime: set the timestamp-type bit, set both
/// baseTimestamp and maxTimestamp to `now_ms`, and recompute the CRC.
///
/// # Panics
/// If `batch` is shorter than a batch header (callers pass validated batches).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(batch.len() >= BATCH_HEADER_LEN, "set_log_append_time on a {}-byte buffer", batch.len());
    let attrs = be_i16(batch, ATTRIBUTES_OFF) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES_OFF..ATTRIBUTES_OFF + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[BASE_TIMESTAMP_OFF..BASE_TIMESTAMP_OFF + 8].copy_from_slice(&now_ms.to_be_bytes());
    batch[MAX_TIMESTAMP_OFF..MAX_TIMESTAMP_OFF + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = batch_crc(batch);
    batch[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_be_bytes());
}

// ---------------------------------------------------------------------------
// Record-level parsing
// ---------------------------------------------------------------------------

/// Bounds-checked reader over one byte region.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn u8(&mut self) -> Result<u8, RecordFramingError> {
        let b = *self.buf.get(self.pos).ok_or(RecordFramingError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordFramingError> {
        if n > self.remaining() {
            return Err(RecordFramingError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Unsigned LEB128 of at most `bits` significant bits.
    fn uvarint(&mut self, bits: u32) -> Result<u64, RecordFramingError> {
        let mut result: u64 = 0;
        let mut shift = 0u32;
        loop {
            if shift >= bits {
                return Err(RecordFramingError::VarintOverflow);
            }
            let byte = self.u8()?;
            let low = u64::from(byte & 0x7f);
            if shift > 0 && (low >> (64 - shift)) != 0 {
                return Err(RecordFramingError::VarintOverflow);
            }
            result |= low << shift;
            if bits < 64 && (result >> bits) != 0 {
                return Err(RecordFramingError::VarintOverflow);
            }
            if byte & 0x80 == 0 {
                return Ok(result);
            }
            shift += 7;
        }
    }

    fn varint(&mut self) -> Result<i32, RecordFramingError> {
        let n = self.uvarint(32)? as u32;
        Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, RecordFramingError> {
        let n = self.uvarint(64)?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// varint length then bytes; -1 means null when `nullable`.
    fn len_prefixed(&mut self, nullable: bool) -> Result<Option<&'a [u8]>, RecordFramingError> {
        let len = self.varint()?;
        if len == -1 && nullable {
            return Ok(None);
        }
        if len < 0 {
            return Err(RecordFramingError::BadFieldLength(len));
        }
        self.bytes(len as usize).map(Some)
    }
}

/// Zero-copy view of one record inside a validated, uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    header_count: u32,
    headers_raw: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }

    /// Headers as `(key, value)`; keys are never null, values may be.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter { cur: Cursor::new(self.headers_raw), left: self.header_count }
    }
}

/// Iterator over the headers of a [`RecordRef`]. The bytes were validated
/// when the record was parsed, so iteration cannot fail; it simply stops if
/// it ever met malformed bytes.
pub struct HeaderIter<'a> {
    cur: Cursor<'a>,
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let parsed = parse_header(&mut self.cur);
        debug_assert!(parsed.is_ok(), "header bytes were validated");
        match parsed {
            Ok(h) => {
                self.left -= 1;
                Some(h)
            }
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

#[allow(clippy::type_complexity)]
fn parse_header<'a>(cur: &mut Cursor<'a>) -> Result<(&'a [u8], Option<&'a [u8]>), RecordFramingError> {
    let key = cur.len_prefixed(false)?.ok_or(RecordFramingError::Truncated)?;
    let value = cur.len_prefixed(true)?;
    Ok((key, value))
}

/// Parse one record body (the bytes after its length prefix). The body must
/// be consumed exactly.
fn parse_record_body(body: &[u8]) -> Result<RecordRef<'_>, RecordFramingError> {
    let mut cur = Cursor::new(body);
    let attributes = cur.u8()? as i8;
    let timestamp_delta = cur.varlong()?;
    let offset_delta = cur.varint()?;
    let key = cur.len_prefixed(true)?;
    let value = cur.len_prefixed(true)?;
    let header_count = cur.varint()?;
    if header_count < 0 {
        return Err(RecordFramingError::BadHeaderCount(header_count));
    }
    let headers_start = cur.pos;
    for _ in 0..header_count {
        // Every header needs at least 2 bytes; a bogus huge count runs out
        // of bytes quickly and fails with Truncated.
        parse_header(&mut cur)?;
    }
    let headers_raw = &body[headers_start..cur.pos];
    if cur.remaining() != 0 {
        return Err(RecordFramingError::TrailingRecordBytes);
    }
    Ok(RecordRef {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        header_count: header_count as u32,
        headers_raw,
    })
}

/// Walks the records region of an uncompressed batch, checking framing.
struct RecordWalker<'a> {
    cur: Cursor<'a>,
    count: i32,
    index: i32,
}

impl<'a> RecordWalker<'a> {
    fn new(records: &'a [u8], count: i32) -> Self {
        RecordWalker { cur: Cursor::new(records), count, index: 0 }
    }

    fn err(&self, kind: RecordFramingError) -> BatchError {
        BatchError::CorruptRecords { index: self.index, kind }
    }

    /// Next record, `Ok(None)` after exactly `count` records that consumed
    /// the region exactly.
    fn next_record(&mut self) -> Result<Option<RecordRef<'a>>, BatchError> {
        if self.index >= self.count {
            if self.cur.remaining() != 0 {
                return Err(self.err(RecordFramingError::TrailingBatchBytes));
            }
            return Ok(None);
        }
        if self.cur.remaining() == 0 {
            return Err(self.err(RecordFramingError::TooFewRecords));
        }
        let len = self.cur.varint().map_err(|k| self.err(k))?;
        if len < MIN_RECORD_BODY as i32 {
            return Err(self.err(RecordFramingError::BadRecordLength(len)));
        }
        let body = self.cur.bytes(len as usize).map_err(|k| self.err(k))?;
        let rec = parse_record_body(body).map_err(|k| self.err(k))?;
        if rec.offset_delta != self.index {
            return Err(
                self.err(RecordFramingError::OffsetDeltaMismatch { expected: self.index, found: rec.offset_delta })
            );
        }
        self.index += 1;
        Ok(Some(rec))
    }
}

/// Iterator over the records of a validated uncompressed batch.
pub struct RecordIter<'a> {
    walker: RecordWalker<'a>,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        let r = self.walker.next_record();
        debug_assert!(r.is_ok(), "records were validated: {r:?}");
        r.ok().flatten()
    }
}

/// Validate `batch` and iterate its records zero-copy. Compressed batches
/// yield [`BatchError::Compressed`].
pub fn iter_records(batch: &[u8]) -> Result<(BatchHeader, RecordIter<'_>), BatchError> {
    let header = validate_batch(batch)?;
    match header.compression() {
        Compression::None => {
            Ok((header, RecordIter { walker: RecordWalker::new(&batch[BATCH_HEADER_LEN..], header.record_count) }))
        }
        other => Err(BatchError::Compressed(other)),
    }
}

/// One record with absolute offset and timestamp, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    /// `baseTimestamp + timestampDelta` (wrapping), i.e. the CreateTime. For
    /// LogAppendTime batches the effective timestamp is the batch's
    /// maxTimestamp instead.
    pub timestamp: i64,
    pub attributes: i8,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Validate and decode every record of an uncompressed batch.
pub fn decode_records(batch: &[u8]) -> Result<Vec<DecodedRecord>, BatchError> {
    let (header, iter) = iter_records(batch)?;
    // record_count is validated against the byte length, so this is bounded.
    let mut out = Vec::with_capacity(header.record_count as usize);
    for r in iter {
        out.push(DecodedRecord {
            offset: header.base_offset.saturating_add(i64::from(r.offset_delta)),
            timestamp: header.base_timestamp.wrapping_add(r.timestamp_delta),
            attributes: r.attributes,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
        });
    }
    debug_assert_eq!(out.len(), header.record_count as usize);
    Ok(out)
}

// ---------------------------------------------------------------------------
// Batch building (used by tests, benches and compaction)
// ---------------------------------------------------------------------------

/// One record to encode with [`build_batch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSpec<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub timestamp_delta: i64,
}

/// Header-level knobs for [`build_batch_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub control: bool,
    pub log_append_time: bool,
}

impl Default for BatchOptions {
    /// A non-idempotent producer's batch: ids, epoch and sequence are -1.
    fn default() -> Self {
        BatchOptions {
            base_offset: 0,
            base_timestamp: 0,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            control: false,
            log_append_time: false,
        }
    }
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = i32::try_from(len).expect("field longer than i32::MAX");
    put_varint(out, len);
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

/// Build a valid uncompressed v2 batch with default producer fields
/// (non-idempotent, leader epoch -1).
pub fn build_batch(base_offset: i64, base_timestamp: i64, records: &[RecordSpec]) -> Vec<u8> {
    build_batch_with(&BatchOptions { base_offset, base_timestamp, ..BatchOptions::default() }, records)
}

/// Build a valid uncompressed v2 batch. maxTimestamp is the largest record
/// timestamp (baseTimestamp for an empty batch).
///
/// # Panics
/// On more than `i32::MAX` records or fields longer than `i32::MAX`.
pub fn build_batch_with(opts: &BatchOptions, records: &[RecordSpec]) -> Vec<u8> {
    let count = i32::try_from(records.len()).expect("too many records");
    let mut out = vec![0u8; BATCH_HEADER_LEN];
    let mut body = Vec::new();
    let mut max_ts = opts.base_timestamp;
    for (i, r) in records.iter().enumerate() {
        body.clear();
        body.push(0); // record attributes, unused in v2
        put_varlong(&mut body, r.timestamp_delta);
        put_varint(&mut body, i as i32);
        put_nullable(&mut body, r.key);
        put_nullable(&mut body, r.value);
        put_len(&mut body, r.headers.len());
        for (k, v) in &r.headers {
            put_len(&mut body, k.len());
            body.extend_from_slice(k.as_bytes());
            put_len(&mut body, v.len());
            body.extend_from_slice(v);
        }
        put_len(&mut out, body.len());
        out.extend_from_slice(&body);
        let ts = opts.base_timestamp.wrapping_add(r.timestamp_delta);
        if i == 0 || ts > max_ts {
            max_ts = ts;
        }
    }
    let batch_length = i32::try_from(out.len() - LOG_OVERHEAD).expect("batch too large");
    let mut attributes: i16 = 0;
    if opts.log_append_time {
        attributes |= TIMESTAMP_TYPE_BIT;
    }
    if opts.transactional {
        attributes |= TRANSACTIONAL_BIT;
    }
    if opts.control {
        attributes |= CONTROL_BIT;
    }
    let last_offset_delta = if count > 0 { count - 1 } else { 0 };
    out[BASE_OFFSET_OFF..BASE_OFFSET_OFF + 8].copy_from_slice(&opts.base_offset.to_be_bytes());
    out[LENGTH_OFF..LENGTH_OFF + 4].copy_from_slice(&batch_length.to_be_bytes());
    out[EPOCH_OFF..EPOCH_OFF + 4].copy_from_slice(&opts.partition_leader_epoch.to_be_bytes());
    out[MAGIC_OFF] = MAGIC_V2 as u8;
    out[ATTRIBUTES_OFF..ATTRIBUTES_OFF + 2].copy_from_slice(&attributes.to_be_bytes());
    out[LAST_OFFSET_DELTA_OFF..LAST_OFFSET_DELTA_OFF + 4].copy_from_slice(&last_offset_delta.to_be_bytes());
    out[BASE_TIMESTAMP_OFF..BASE_TIMESTAMP_OFF + 8].copy_from_slice(&opts.base_timestamp.to_be_bytes());
    out[MAX_TIMESTAMP_OFF..MAX_TIMESTAMP_OFF + 8].copy_from_slice(&max_ts.to_be_bytes());
    out[PRODUCER_ID_OFF..PRODUCER_ID_OFF + 8].copy_from_slice(&opts.producer_id.to_be_bytes());
    out[PRODUCER_EPOCH_OFF..PRODUCER_EPOCH_OFF + 2].copy_from_slice(&opts.producer_epoch.to_be_bytes());
    out[BASE_SEQUENCE_OFF..BASE_SEQUENCE_OFF + 4].copy_from_slice(&opts.base_sequence.to_be_bytes());
    out[RECORD_COUNT_OFF..RECORD_COUNT_OFF + 4].copy_from_slice(&count.to_be_bytes());
    let crc = batch_crc(&out);
    out[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Recompute and store the CRC of `batch` after an edit of CRC-covered bytes.
/// Test and tooling helper.
///
/// # Panics
/// If `batch` is shorter than a batch header.
pub fn rewrite_crc(batch: &mut [u8]) {
    assert!(batch.len() >= BATCH_HEADER_LEN);
    let crc = batch_crc(batch);
    batch[CRC_OFF..CRC_OFF + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordSpec<'a> {
        RecordSpec { key, value, headers: vec![], timestamp_delta: 0 }
    }

    fn sample() -> Vec<u8> {
        build_batch(
            100,
            1_700_000_000_000,
            &[
                rec(Some(b"k1"), Some(b"v1")),
                RecordSpec {
                    key: None,
                    value: Some(b"hello"),
                    headers: vec![("h1", b"x"), ("h2", b"")],
                    timestamp_delta: 5,
                },
                RecordSpec { key: Some(b""), value: None, headers: vec![], timestamp_delta: 3 },
            ],
        )
    }

    /// Re-encode the records region of a batch with a patched records area and
    /// fix length, count and CRC so only the framing is wrong.
    fn with_records(records: &[u8], count: i32, lod: i32) -> Vec<u8> {
        let mut b = build_batch(0, 0, &[]);
        b.truncate(BATCH_HEADER_LEN);
        b.extend_from_slice(records);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[LENGTH_OFF..LENGTH_OFF + 4].copy_from_slice(&len.to_be_bytes());
        b[RECORD_COUNT_OFF..RECORD_COUNT_OFF + 4].copy_from_slice(&count.to_be_bytes());
        b[LAST_OFFSET_DELTA_OFF..LAST_OFFSET_DELTA_OFF + 4].copy_from_slice(&lod.to_be_bytes());
        rewrite_crc(&mut b);
        b
    }

    fn framing_kind(r: Result<BatchHeader, BatchError>) -> RecordFramingError {
        match r {
            Err(BatchError::CorruptRecords { kind, .. }) => kind,
            other => panic!("expected CorruptRecords, got {other:?}"),
        }
    }

    #[test]
    fn header_constants_match_layout() {
        assert_eq!(BATCH_HEADER_LEN, RECORD_COUNT_OFF + 4);
        assert_eq!(CRC_START, CRC_OFF + 4);
        assert_eq!(MIN_BATCH_LENGTH, 49);
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn crc32c_known_vector() {
        // The standard CRC-32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let mut b = vec![0u8; CRC_START];
        b.extend_from_slice(b"123456789");
        assert_eq!(batch_crc(&b), 0xE306_9283);
        assert_eq!(batch_crc(&[1, 2, 3]), 0);
    }

    /// A batch encoded by an independent implementation written from the
    /// spec (not by `build_batch`), so a layout mistake shared by the builder
    /// and the parser cannot hide. Includes a null header value.
    #[test]
    fn golden_batch_from_independent_encoder() {
        let b = unhex(
            "00000000000000050000004b0000000002f074a15f00000000000100000000000003e8\
             00000000000003e9ffffffffffffffffffffffffffff0000000224000000010a68656c\
             6c6f0402680278026e010c000202000100",
        );
        let h = validate_batch(&b).unwrap();
        assert_eq!(
            h,
            BatchHeader {
                base_offset: 5,
                batch_length: 75,
                partition_leader_epoch: 0,
                magic: 2,
                crc: 0xf074_a15f,
                attributes: 0,
                last_offset_delta: 1,
                base_timestamp: 1000,
                max_timestamp: 1001,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                record_count: 2,
            }
        );
        let recs = decode_records(&b).unwrap();
        assert_eq!(
            recs,
            vec![
                DecodedRecord {
                    offset: 5,
                    timestamp: 1000,
                    attributes: 0,
                    key: None,
                    value: Some(b"hello".to_vec()),
                    headers: vec![(b"h".to_vec(), Some(b"x".to_vec())), (b"n".to_vec(), None)],
                },
                DecodedRecord {
                    offset: 6,
                    timestamp: 1001,
                    attributes: 0,
                    key: Some(vec![]),
                    value: None,
                    headers: vec![],
                },
            ]
        );
    }

    #[test]
    fn build_then_validate_roundtrip() {
        let b = sample();
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 100);
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.last_offset(), 102);
        assert_eq!(h.next_offset(), Some(103));
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.base_timestamp, 1_700_000_000_000);
        assert_eq!(h.max_timestamp, 1_700_000_000_005);
        assert_eq!(h.compression(), Compression::None);
        assert!(!h.is_log_append_time() && !h.is_transactional() && !h.is_control());
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.crc, batch_crc(&b));
    }

    #[test]
    fn decode_records_roundtrip() {
        let recs = decode_records(&sample()).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].offset, 100);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(recs[1].offset, 101);
        assert_eq!(recs[1].timestamp, 1_700_000_000_005);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].headers, vec![(b"h1".to_vec(), Some(b"x".to_vec())), (b"h2".to_vec(), Some(vec![]))]);
        assert_eq!(recs[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(recs[2].value, None);
        assert_eq!(recs[2].offset, 102);
    }

    #[test]
    fn header_iter_yields_null_header_values() {
        // attributes, tsDelta 0, offsetDelta 0, key null, value null,
        // 1 header: key "a", value null (-1 = zigzag 1).
        let body = [0u8, 0, 0, 1, 1, 2, 2, b'a', 1];
        let mut records = vec![(body.len() as u8) << 1];
        records.extend_from_slice(&body);
        let b = with_records(&records, 1, 0);
        let (_, mut it) = iter_records(&b).unwrap();
        let r = it.next().unwrap();
        assert!(it.next().is_none());
        assert_eq!(r.header_count(), 1);
        assert_eq!(r.headers().collect::<Vec<_>>(), vec![(&b"a"[..], None)]);
    }

    #[test]
    fn builder_options_land_in_header() {
        let b = build_batch_with(
            &BatchOptions {
                base_offset: 7,
                base_timestamp: 10,
                partition_leader_epoch: 3,
                producer_id: 42,
                producer_epoch: 2,
                base_sequence: 9,
                transactional: true,
                control: true,
                log_append_time: true,
            },
            &[rec(None, Some(b"x"))],
        );
        let h = validate_batch(&b).unwrap();
        assert_eq!((h.partition_leader_epoch, h.producer_id, h.producer_epoch), (3, 42, 2));
        assert_eq!(h.base_sequence, 9);
        assert!(h.is_transactional() && h.is_control() && h.is_log_append_time());
    }

    #[test]
    fn empty_batch_is_valid() {
        let b = build_batch(5, 0, &[]);
        assert_eq!(b.len(), BATCH_HEADER_LEN);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.record_count, 0);
        assert_eq!(decode_records(&b).unwrap(), vec![]);
    }

    #[test]
    fn parse_needs_full_header() {
        let b = sample();
        for n in 0..BATCH_HEADER_LEN {
            assert_eq!(
                BatchHeader::parse(&b[..n]),
                Err(BatchError::Truncated { needed: BATCH_HEADER_LEN, available: n })
            );
        }
        assert!(BatchHeader::parse(&b[..BATCH_HEADER_LEN]).is_ok());
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = sample();
        b[MAGIC_OFF] = 1;
        assert_eq!(validate_batch(&b), Err(BatchError::BadMagic(1)));
    }

    #[test]
    fn rejects_bad_lengths() {
        let b = sample();
        for bad in [-1i32, 0, 48, b.len() as i32, b.len() as i32 - 13, i32::MAX] {
            let mut c = b.clone();
            c[LENGTH_OFF..LENGTH_OFF + 4].copy_from_slice(&bad.to_be_bytes());
            assert!(
                matches!(validate_batch(&c), Err(BatchError::BadLength { batch_length, .. }) if batch_length == bad),
                "{bad}"
            );
        }
        // extra trailing byte
        let mut c = b.clone();
        c.push(0);
        assert!(matches!(validate_batch(&c), Err(BatchError::BadLength { .. })));
    }

    #[test]
    fn rejects_crc_mismatch() {
        let mut b = sample();
        let last = b.len() - 1;
        b[last] ^= 0x40;
        let stored = BatchHeader::parse(&b).unwrap().crc;
        assert_eq!(validate_batch(&b), Err(BatchError::CrcMismatch { stored, computed: batch_crc(&b) }));
    }

    #[test]
    fn rejects_bad_record_counts() {
        for (count, lod) in [(-1, 0), (3, 1), (3, 3), (0, -1), (1, -1)] {
            let mut b = sample();
            b[RECORD_COUNT_OFF..RECORD_COUNT_OFF + 4].copy_from_slice(&i32::to_be_bytes(count));
            b[LAST_OFFSET_DELTA_OFF..LAST_OFFSET_DELTA_OFF + 4].copy_from_slice(&i32::to_be_bytes(lod));
            rewrite_crc(&mut b);
            assert_eq!(
                validate_batch(&b),
                Err(BatchError::BadRecordCount { record_count: count, last_offset_delta: lod })
            );
        }
    }

    #[test]
    fn rejects_offset_overflow() {
        let mut b = sample();
        stamp_offsets(&mut b, i64::MAX - 1, 0);
        assert!(matches!(validate_batch(&b), Err(BatchError::OffsetOverflow { .. })));
        stamp_offsets(&mut b, i64::MAX - 3, 0);
        assert!(validate_batch(&b).is_ok());
    }

    #[test]
    fn compression_codes() {
        for code in 0u8..8 {
            let c = Compression::from_code(code);
            assert_eq!(c.code(), code);
            let mut b = sample();
            let attrs = i16::from(code);
            b[ATTRIBUTES_OFF..ATTRIBUTES_OFF + 2].copy_from_slice(&attrs.to_be_bytes());
            rewrite_crc(&mut b);
            let res = validate_batch(&b);
            match code {
                // the records are not really compressed, but validation of
                // compressed batches cannot look inside them
                0..=4 => assert_eq!(res.unwrap().compression(), c),
                _ => assert_eq!(res, Err(BatchError::UnknownCompression(code))),
            }
            if (1..=4).contains(&code) {
                assert_eq!(decode_records(&b), Err(BatchError::Compressed(c)));
            }
        }
    }

    #[test]
    fn compressed_batch_framing_not_walked() {
        // garbage records but gzip codec: valid at this layer
        let mut b = with_records(&[0xff, 0xff, 0xff], 1, 0);
        b[ATTRIBUTES_OFF + 1] = 1;
        rewrite_crc(&mut b);
        assert_eq!(validate_batch(&b).unwrap().compression(), Compression::Gzip);
    }

    #[test]
    fn framing_errors() {
        // record count claims 2, only 1 record present
        let one = build_batch(0, 0, &[rec(None, Some(b"v"))]);
        let recs = &one[BATCH_HEADER_LEN..];
        assert_eq!(framing_kind(validate_batch(&with_records(recs, 2, 1))), RecordFramingError::TooFewRecords);
        // trailing garbage after the records
        let mut extra = recs.to_vec();
        extra.push(0);
        assert_eq!(framing_kind(validate_batch(&with_records(&extra, 1, 0))), RecordFramingError::TrailingBatchBytes);
        // record count 0 but bytes present
        assert_eq!(framing_kind(validate_batch(&with_records(recs, 0, 0))), RecordFramingError::TrailingBatchBytes);
        // record length pointing past the end
        let mut long = recs.to_vec();
        long[0] += 2; // zigzag: +1 byte
        assert_eq!(framing_kind(validate_batch(&with_records(&long, 1, 0))), RecordFramingError::Truncated);
        // negative record length
        assert_eq!(framing_kind(validate_batch(&with_records(&[1], 1, 0))), RecordFramingError::BadRecordLength(-1));
        // overlong varint
        assert_eq!(framing_kind(validate_batch(&with_records(&[0xff; 6], 1, 0))), RecordFramingError::VarintOverflow);
        // wrong offset delta: body = attrs, ts 0, offsetDelta 1, key null, value null, 0 headers
        let body = [0u8, 0, 2, 1, 1, 0];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(
            framing_kind(validate_batch(&with_records(&r, 1, 0))),
            RecordFramingError::OffsetDeltaMismatch { expected: 0, found: 1 }
        );
        // bytes left inside a record after its headers
        let body = [0u8, 0, 0, 1, 1, 0, 0];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(framing_kind(validate_batch(&with_records(&r, 1, 0))), RecordFramingError::TrailingRecordBytes);
        // key length -2
        let body = [0u8, 0, 0, 3, 1, 0];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(framing_kind(validate_batch(&with_records(&r, 1, 0))), RecordFramingError::BadFieldLength(-2));
        // negative header count
        let body = [0u8, 0, 0, 1, 1, 1];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(framing_kind(validate_batch(&with_records(&r, 1, 0))), RecordFramingError::BadHeaderCount(-1));
        // huge header count, no header bytes
        let body = [0u8, 0, 0, 1, 1, 0xfe, 0xff, 0xff, 0xff, 0x0f];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(framing_kind(validate_batch(&with_records(&r, 1, 0))), RecordFramingError::Truncated);
        // null header key
        let body = [0u8, 0, 0, 1, 1, 2, 1, 1];
        let mut r = vec![(body.len() as u8) << 1];
        r.extend_from_slice(&body);
        assert_eq!(framing_kind(validate_batch(&with_records(&r, 1, 0))), RecordFramingError::BadFieldLength(-1));
        // huge record count with a tiny buffer terminates quickly
        assert_eq!(
            framing_kind(validate_batch(&with_records(recs, i32::MAX, i32::MAX - 1))),
            RecordFramingError::TooFewRecords
        );
    }

    #[test]
    fn varint_decoding_limits() {
        let dec32 = |b: &[u8]| Cursor::new(b).varint();
        let dec64 = |b: &[u8]| Cursor::new(b).varlong();
        assert_eq!(dec32(&[0]), Ok(0));
        assert_eq!(dec32(&[1]), Ok(-1));
        assert_eq!(dec32(&[2]), Ok(1));
        assert_eq!(dec32(&[0xfe, 0xff, 0xff, 0xff, 0x0f]), Ok(i32::MAX));
        assert_eq!(dec32(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Ok(i32::MIN));
        assert_eq!(dec32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), Err(RecordFramingError::VarintOverflow));
        assert_eq!(dec32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), Err(RecordFramingError::VarintOverflow));
        assert_eq!(dec32(&[0x80]), Err(RecordFramingError::Truncated));
        let mut max = vec![0xffu8; 9];
        max.push(0x01);
        assert_eq!(dec64(&max), Ok(i64::MIN));
        max[9] = 0x02;
        assert_eq!(dec64(&max), Err(RecordFramingError::VarintOverflow));
        assert_eq!(dec64(&[0x80; 11]), Err(RecordFramingError::VarintOverflow));
    }

    #[test]
    fn stamp_offsets_keeps_crc_valid() {
        let mut b = sample();
        stamp_offsets(&mut b, 123_456, 17);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.partition_leader_epoch, 17);
        assert_eq!(decode_records(&b).unwrap()[2].offset, 123_458);
    }

    #[test]
    #[should_panic]
    fn stamp_offsets_asserts_length() {
        stamp_offsets(&mut [0u8; 60], 0, 0);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = sample();
        set_log_append_time(&mut b, 42);
        let h = validate_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!((h.base_timestamp, h.max_timestamp), (42, 42));
        // other attribute bits preserved
        let mut t =
            build_batch_with(&BatchOptions { transactional: true, ..BatchOptions::default() }, &[rec(None, None)]);
        set_log_append_time(&mut t, 1);
        let h = validate_batch(&t).unwrap();
        assert!(h.is_transactional() && h.is_log_append_time());
    }

    #[test]
    fn split_record_set_cases() {
        let a = sample();
        let b = build_batch(0, 0, &[rec(None, Some(b"zz"))]);
        let mut set = a.clone();
        set.extend_from_slice(&b);
        let ranges = split_record_set(&set, 1 << 20).unwrap();
        assert_eq!(ranges, vec![(0, a.len()), (a.len(), a.len() + b.len())]);

        assert_eq!(split_record_set(&[], 1 << 20), Err(BatchError::EmptyRecordSet));
        assert_eq!(
            split_record_set(&set, a.len() - 1),
            Err(BatchError::BatchTooLarge { size: a.len(), max: a.len() - 1 })
        );
        // trailing partial batch
        let mut t = set.clone();
        t.extend_from_slice(&b[..5]);
        assert_eq!(split_record_set(&t, 1 << 20), Err(BatchError::Truncated { needed: LOG_OVERHEAD, available: 5 }));
        let mut t = set.clone();
        t.extend_from_slice(&b[..b.len() - 1]);
        assert_eq!(
            split_record_set(&t, 1 << 20),
            Err(BatchError::Truncated { needed: b.len(), available: b.len() - 1 })
        );
        // oversized wins over truncation
        assert!(matches!(split_record_set(&a[..20], 10), Err(BatchError::BatchTooLarge { .. })));
        // a corrupt second batch fails the whole set
        let mut t = set.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(matches!(split_record_set(&t, 1 << 20), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn error_messages_render() {
        let e = BatchError::CorruptRecords { index: 3, kind: RecordFramingError::TooFewRecords };
        assert!(e.to_string().contains("record 3"));
        assert!(BatchError::CrcMismatch { stored: 1, computed: 2 }.to_string().contains("0x00000001"));
    }

    // ---------------- property tests ----------------

    #[derive(Debug, Clone)]
    struct OwnedRecord {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(String, Vec<u8>)>,
        ts_delta: i64,
    }

    fn owned_record() -> impl Strategy<Value = OwnedRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            proptest::collection::vec(("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..16)), 0..4),
            prop_oneof![0i64..1000, any::<i64>()],
        )
            .prop_map(|(key, value, headers, ts_delta)| OwnedRecord { key, value, headers, ts_delta })
    }

    fn build_owned(base_offset: i64, base_ts: i64, recs: &[OwnedRecord]) -> Vec<u8> {
        let specs: Vec<RecordSpec> = recs
            .iter()
            .map(|r| RecordSpec {
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect(),
                timestamp_delta: r.ts_delta,
            })
            .collect();
        build_batch(base_offset, base_ts, &specs)
    }

    fn batch_strategy() -> impl Strategy<Value = (i64, i64, Vec<OwnedRecord>)> {
        (0i64..1 << 40, any::<i64>(), proptest::collection::vec(owned_record(), 0..12))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_built_batches_validate_and_decode((base, ts, recs) in batch_strategy()) {
            let b = build_owned(base, ts, &recs);
            let h = validate_batch(&b).unwrap();
            prop_assert_eq!(h.total_len(), b.len());
            prop_assert_eq!(h.record_count as usize, recs.len());
            let dec = decode_records(&b).unwrap();
            prop_assert_eq!(dec.len(), recs.len());
            for (i, (d, r)) in dec.iter().zip(&recs).enumerate() {
                prop_assert_eq!(d.offset, base + i as i64);
                prop_assert_eq!(d.timestamp, ts.wrapping_add(r.ts_delta));
                prop_assert_eq!(&d.key, &r.key);
                prop_assert_eq!(&d.value, &r.value);
                let hs: Vec<(Vec<u8>, Option<Vec<u8>>)> = r.headers.iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.clone()))).collect();
                prop_assert_eq!(&d.headers, &hs);
            }
            prop_assert_eq!(split_record_set(&b, b.len()).unwrap(), vec![(0, b.len())]);
        }

        #[test]
        fn prop_single_byte_flip_detected(
            (base, ts, recs) in batch_strategy(),
            pos_seed in any::<usize>(),
            xor in 1u8..=255,
        ) {
            let b = build_owned(base, ts, &recs);
            let pos = pos_seed % b.len();
            let mut c = b.clone();
            c[pos] ^= xor;
            let res = validate_batch(&c);
            let outside_crc = (BASE_OFFSET_OFF..BASE_OFFSET_OFF + 8).contains(&pos)
                || (EPOCH_OFF..EPOCH_OFF + 4).contains(&pos);
            if outside_crc {
                // only an offset overflow can make these fail
                prop_assert!(matches!(res, Ok(_) | Err(BatchError::OffsetOverflow { .. })), "{:?}", res);
            } else {
                prop_assert!(res.is_err(), "flip at {} undetected", pos);
                if pos >= CRC_OFF {
                    let is_crc = matches!(res, Err(BatchError::CrcMismatch { .. }));
                    prop_assert!(is_crc, "{:?}", res);
                }
            }
        }

        #[test]
        fn prop_every_truncation_is_an_error((base, ts, recs) in batch_strategy()) {
            let b = build_owned(base, ts, &recs);
            for n in 0..b.len() {
                prop_assert!(validate_batch(&b[..n]).is_err());
                prop_assert!(split_record_set(&b[..n], usize::MAX).is_err());
            }
        }

        #[test]
        fn prop_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = validate_batch(&bytes);
            let _ = split_record_set(&bytes, 1 << 20);
            let _ = decode_records(&bytes);
            let _ = BatchHeader::parse(&bytes).map(|h| (h.total_len(), h.last_offset(), h.compression()));
        }

        /// Random bytes behind a valid header with a correct CRC, so the
        /// record walker itself gets exercised on garbage.
        #[test]
        fn prop_random_records_never_panic(
            records in proptest::collection::vec(any::<u8>(), 0..200),
            count in prop_oneof![0i32..8, any::<i32>()],
        ) {
            let b = with_records(&records, count, count.saturating_sub(1).max(0));
            if let Ok(h) = validate_batch(&b) {
                let d = decode_records(&b).unwrap();
                prop_assert_eq!(d.len(), h.record_count as usize);
            }
        }

        #[test]
        fn prop_varint_roundtrip(v in any::<i32>(), w in any::<i64>()) {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            put_varlong(&mut buf, w);
            let mut c = Cursor::new(&buf);
            prop_assert_eq!(c.varint(), Ok(v));
            prop_assert_eq!(c.varlong(), Ok(w));
            prop_assert_eq!(c.remaining(), 0);
        }

        #[test]
        fn prop_split_concatenation(batches in proptest::collection::vec(batch_strategy(), 1..5)) {
            let mut set = Vec::new();
            let mut expect = Vec::new();
            for (base, ts, recs) in &batches {
                let b = build_owned(*base, *ts, recs);
                expect.push((set.len(), set.len() + b.len()));
                set.extend_from_slice(&b);
            }
            prop_assert_eq!(split_record_set(&set, usize::MAX).unwrap(), expect);
        }
    }
}
