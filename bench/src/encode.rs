//! A fast Kafka v2 record-batch builder for the producer side and a cheap
//! batch walker for the consumer side.
//!
//! The builder appends records straight into the final wire layout (no
//! intermediate `Record` structs), so building costs about one memcpy of the
//! payload plus a CRC-32C pass. Compressed batches reuse the codecs of the
//! `kafka-protocol` crate.

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::ValueEnum;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::RecordBatchDecoder;
use serde::Serialize;
use std::time::Instant;

pub const HEADER_LEN: usize = 61;
const CRC_START: usize = 21;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn code(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }
}

#[inline]
fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}
#[inline]
fn put_varint(buf: &mut Vec<u8>, v: i32) {
    put_uvarint(buf, u64::from(((v << 1) ^ (v >> 31)) as u32));
}
#[inline]
fn put_varlong(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}
#[inline]
fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}
#[inline]
fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}
#[inline]
fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// One batch being filled for one partition.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: i32,
    base_ts: i64,
    max_ts: i64,
    /// Key + value bytes appended so far.
    pub payload_bytes: u64,
    /// When the first record was appended (for linger).
    pub first_at: Option<Instant>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::with_capacity(HEADER_LEN)
    }
}

impl BatchBuilder {
    pub fn with_capacity(cap: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(cap.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchBuilder { buf, count: 0, base_ts: 0, max_ts: 0, payload_bytes: 0, first_at: None }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> i32 {
        self.count
    }

    /// Uncompressed size of the batch so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Upper bound of the bytes a record adds to the batch.
    pub fn record_size_estimate(key_len: usize, value_len: usize) -> usize {
        // length varint (<=5) + attributes + ts delta (<=10) + offset delta (<=5)
        // + key len (<=5) + key + value len (<=5) + value + header count
        key_len + value_len + 32
    }

    /// Append one record created at `created_us` (microseconds since the
    /// epoch). Its CreateTime is the millisecond; a value of at least 8 bytes
    /// also carries the microsecond in its first 8 bytes (big-endian), so
    /// that end-to-end latency can be measured below the millisecond
    /// resolution of Kafka timestamps (see [`creation_us`]). The rest of the
    /// value is `value`'s.
    #[inline]
    pub fn push(&mut self, created_us: i64, key: Option<&[u8]>, value: &[u8], now: Instant) {
        let ts_ms = created_us.div_euclid(1000);
        if self.count == 0 {
            self.base_ts = ts_ms;
            self.max_ts = ts_ms;
            self.first_at = Some(now);
        } else if ts_ms > self.max_ts {
            self.max_ts = ts_ms;
        }
        let ts_delta = ts_ms - self.base_ts;
        let offset_delta = self.count;
        let key_len = key.map_or(-1, |k| k.len() as i32);
        let value_len = value.len() as i32;
        let body = 1
            + varlong_len(ts_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value.len()
            + 1;
        let b = &mut self.buf;
        b.reserve(body + 5);
        put_varint(b, body as i32);
        b.push(0); // record attributes
        put_varlong(b, ts_delta);
        put_varint(b, offset_delta);
        put_varint(b, key_len);
        if let Some(k) = key {
            b.extend_from_slice(k);
        }
        put_varint(b, value_len);
        let value_at = b.len();
        b.extend_from_slice(value);
        if value.len() >= STAMP_LEN {
            b[value_at..value_at + STAMP_LEN].copy_from_slice(&created_us.to_be_bytes());
        }
        b.push(0); // no headers
        self.count += 1;
        self.payload_bytes += (key.map_or(0, <[u8]>::len) + value.len()) as u64;
    }

    /// Seal the batch into its wire form and reset the builder. Returns
    /// `(batch bytes, record count, payload bytes)`.
    pub fn finish(&mut self, codec: Codec) -> Result<(Bytes, i32, u64)> {
        let count = self.count;
        let payload = self.payload_bytes;
        let mut out = match codec {
            Codec::None => {
                let mut fresh = Vec::with_capacity(self.buf.capacity());
                fresh.resize(HEADER_LEN, 0);
                std::mem::replace(&mut self.buf, fresh)
            }
            _ => {
                let raw = &self.buf[HEADER_LEN..];
                let mut c = BytesMut::with_capacity(HEADER_LEN + raw.len() / 2 + 64);
                c.put_bytes(0, HEADER_LEN);
                let fill = |tmp: &mut BytesMut| -> Result<()> {
                    tmp.put_slice(raw);
                    Ok(())
                };
                match codec {
                    Codec::Gzip => Gzip::compress(&mut c, fill),
                    Codec::Snappy => Snappy::compress(&mut c, fill),
                    Codec::Lz4 => Lz4::compress(&mut c, fill),
                    Codec::Zstd => Zstd::compress(&mut c, fill),
                    Codec::None => unreachable!(),
                }
                .context("compressing batch")?;
                self.buf.truncate(HEADER_LEN);
                Vec::from(c)
            }
        };
        let len = out.len();
        if len > i32::MAX as usize {
            bail!("batch too large");
        }
        out[0..8].copy_from_slice(&0i64.to_be_bytes()); // baseOffset
        out[8..12].copy_from_slice(&((len - 12) as i32).to_be_bytes());
        out[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
        out[16] = 2; // magic
        out[21..23].copy_from_slice(&codec.code().to_be_bytes()); // attributes: CreateTime
        out[23..27].copy_from_slice(&(count - 1).max(0).to_be_bytes());
        out[27..35].copy_from_slice(&self.base_ts.to_be_bytes());
        out[35..43].copy_from_slice(&self.max_ts.to_be_bytes());
        out[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producerId
        out[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
        out[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // baseSequence
        out[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        self.buf.truncate(HEADER_LEN);
        self.count = 0;
        self.payload_bytes = 0;
        self.first_at = None;
        Ok((Bytes::from(out), count, payload))
    }
}

// ---------------- consumer side ----------------

#[inline]
fn get_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}
#[inline]
fn get_varlong(b: &[u8], pos: &mut usize) -> Option<i64> {
    let u = get_uvarint(b, pos)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

/// What the consumer learned from one fetched record set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchedSummary {
    /// Data records at or after the fetch offset (control batches excluded).
    pub records: u64,
    /// Key + value bytes of those records.
    pub payload_bytes: u64,
    /// Batch bytes of complete batches (wire size).
    pub wire_bytes: u64,
    /// Offset to fetch next (unchanged if no complete batch).
    pub next_offset: i64,
}

/// The offset to fetch after `data`: one past the last complete batch,
/// read from batch headers only (what a consumer's fetcher needs before it
/// can send its next request; the records are walked afterwards).
pub fn next_fetch_offset(data: &[u8], fetch_offset: i64) -> i64 {
    let mut next = fetch_offset;
    let mut pos = 0usize;
    while data.len() - pos >= HEADER_LEN {
        let b = &data[pos..];
        let batch_len = i32::from_be_bytes(b[8..12].try_into().unwrap());
        if batch_len < (HEADER_LEN - 12) as i32 || batch_len as usize + 12 > b.len() {
            break; // partial or bad: walk_record_set reports the latter
        }
        let base_offset = i64::from_be_bytes(b[0..8].try_into().unwrap());
        let last_delta = i32::from_be_bytes(b[23..27].try_into().unwrap());
        next = next.max(base_offset + i64::from(last_delta) + 1);
        pos += batch_len as usize + 12;
    }
    next
}

/// Bytes of a value that carry the creation time in microseconds.
const STAMP_LEN: usize = 8;

/// When a record was created, in microseconds since the epoch: the
/// microsecond stamp [`BatchBuilder::push`] puts at the start of the value if
/// it agrees with the record's CreateTime `ts_ms` (so another producer's data
/// is never misread), else the millisecond timestamp itself.
pub fn creation_us(ts_ms: i64, value: &[u8]) -> i64 {
    if let Some(head) = value.get(..STAMP_LEN) {
        let us = i64::from_be_bytes(head.try_into().unwrap());
        if us.div_euclid(1000) == ts_ms {
            return us;
        }
    }
    ts_ms.saturating_mul(1000)
}

/// Walk a fetched record set: count records at or after `fetch_offset`,
/// calling `on_created` with each record's creation time in microseconds
/// ([`creation_us`]). A trailing partial batch (fetch size limit) is ignored.
/// Errors only on malformed data.
pub fn walk_record_set(data: &Bytes, fetch_offset: i64, mut on_created: impl FnMut(i64)) -> Result<FetchedSummary> {
    let mut s = FetchedSummary { next_offset: fetch_offset, ..Default::default() };
    let mut pos = 0usize;
    while data.len() - pos >= HEADER_LEN {
        let b = &data[pos..];
        let batch_len = i32::from_be_bytes(b[8..12].try_into().unwrap());
        if batch_len < (HEADER_LEN - 12) as i32 {
            bail!("bad batch length {batch_len} in fetched data");
        }
        let total = batch_len as usize + 12;
        if total > b.len() {
            break; // partial batch at the end
        }
        if b[16] != 2 {
            bail!("fetched batch has magic {}, expected 2", b[16]);
        }
        let batch = &b[..total];
        let base_offset = i64::from_be_bytes(batch[0..8].try_into().unwrap());
        let attrs = i16::from_be_bytes([batch[21], batch[22]]);
        let last_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
        let base_ts = i64::from_be_bytes(batch[27..35].try_into().unwrap());
        let count = i32::from_be_bytes(batch[57..61].try_into().unwrap());
        let last_offset = base_offset + i64::from(last_delta);
        s.wire_bytes += total as u64;
        let control = attrs & 0x20 != 0;
        if !control && last_offset >= fetch_offset {
            if attrs & 0x07 == 0 {
                let mut p = HEADER_LEN;
                for _ in 0..count {
                    let len = get_uvarint(batch, &mut p).context("record length")? as usize;
                    let len = (len >> 1) ^ (len & 1).wrapping_neg(); // zigzag
                    let end = p + len;
                    if end > batch.len() {
                        bail!("record runs past its batch");
                    }
                    let mut q = p + 1; // skip attributes
                    let ts_delta = get_varlong(batch, &mut q).context("timestamp delta")?;
                    let off_delta = get_varlong(batch, &mut q).context("offset delta")?;
                    let key_len = get_varlong(batch, &mut q).context("key length")?;
                    q += key_len.max(0) as usize;
                    let value_len = get_varlong(&batch[..end], &mut q).context("value length")?;
                    p = end;
                    if base_offset + off_delta >= fetch_offset {
                        s.records += 1;
                        s.payload_bytes += (key_len.max(0) + value_len.max(0)) as u64;
                        let value = batch.get(q..q + value_len.max(0) as usize).unwrap_or(&[]);
                        on_created(creation_us(base_ts + ts_delta, value));
                    }
                }
            } else {
                // Compressed: let kafka-protocol decompress and decode.
                let mut slice = data.slice(pos..pos + total);
                let set = RecordBatchDecoder::decode(&mut slice).context("decoding compressed batch")?;
                for r in set.records.iter().filter(|r| r.offset >= fetch_offset) {
                    s.records += 1;
                    s.payload_bytes +=
                        (r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len)) as u64;
                    on_created(creation_us(r.timestamp, r.value.as_deref().unwrap_or(&[])));
                }
            }
        }
        s.next_offset = s.next_offset.max(last_offset + 1);
        pos += total;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    fn build(codec: Codec, n: usize, keyed: bool) -> Bytes {
        let mut b = BatchBuilder::default();
        let now = Instant::now();
        for i in 0..n {
            let key = format!("k{i}");
            let value = vec![b'a' + (i % 26) as u8; 10 + i * 7];
            b.push((1_700_000_000_000 + i as i64) * 1000 + 123, keyed.then_some(key.as_bytes()), &value, now);
        }
        let (bytes, count, payload) = b.finish(codec).unwrap();
        assert_eq!(count as usize, n);
        assert!(payload > 0 || n == 0);
        assert!(b.is_empty());
        bytes
    }

    #[test]
    fn uncompressed_batch_decodes_and_validates() {
        for keyed in [false, true] {
            let bytes = build(Codec::None, 50, keyed);
            let h = ringbroker_engine::batch::validate_batch(&bytes).expect("engine validates our batch");
            assert_eq!(h.record_count, 50);
            assert_eq!(h.base_timestamp, 1_700_000_000_000);
            assert_eq!(h.max_timestamp, 1_700_000_000_049);
            let mut buf = bytes.clone();
            let set = RecordBatchDecoder::decode(&mut buf).expect("kafka-protocol decodes our batch");
            assert_eq!(set.compression, Compression::None);
            assert_eq!(set.records.len(), 50);
            for (i, r) in set.records.iter().enumerate() {
                assert_eq!(r.offset, i as i64);
                assert_eq!(r.timestamp, 1_700_000_000_000 + i as i64);
                assert_eq!(r.value.as_ref().unwrap().len(), 10 + i * 7);
                assert_eq!(r.key.is_some(), keyed);
                if keyed {
                    assert_eq!(r.key.as_ref().unwrap().as_ref(), format!("k{i}").as_bytes());
                }
            }
        }
    }

    #[test]
    fn compressed_batches_decode_and_validate() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let bytes = build(codec, 20, true);
            let h = ringbroker_engine::batch::validate_batch(&bytes).expect("engine validates");
            assert_eq!(h.compression().code(), codec.code() as u8);
            let mut buf = bytes.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(set.records.len(), 20, "{codec:?}");
            assert_eq!(set.records[19].value.as_ref().unwrap().len(), 10 + 19 * 7);
        }
    }

    #[test]
    fn builder_reuse_and_stamping() {
        let mut b = BatchBuilder::default();
        let now = Instant::now();
        b.push(5000, None, b"x", now);
        let (first, ..) = b.finish(Codec::None).unwrap();
        b.push(9000, None, b"yy", now);
        b.push(7000, None, b"zzz", now);
        let (second, count, payload) = b.finish(Codec::None).unwrap();
        assert_eq!((count, payload), (2, 5));
        let mut stamped = second.to_vec();
        ringbroker_engine::batch::stamp_offsets(&mut stamped, 1000, 3);
        let h = ringbroker_engine::batch::validate_batch(&stamped).unwrap();
        assert_eq!((h.base_offset, h.max_timestamp, h.record_count), (1000, 9, 2));
        ringbroker_engine::batch::validate_batch(&first).unwrap();
    }

    #[test]
    fn creation_time_is_read_from_the_value_only_when_it_agrees() {
        let us: i64 = 1_700_000_000_005_123;
        assert_eq!(creation_us(1_700_000_000_005, &us.to_be_bytes()), us);
        let mut longer = us.to_be_bytes().to_vec();
        longer.extend_from_slice(b"payload");
        assert_eq!(creation_us(1_700_000_000_005, &longer), us);
        // Another producer's value, a short value, no value: the ms timestamp.
        assert_eq!(creation_us(1_700_000_000_005, b"arbitrary value"), 1_700_000_000_005_000);
        assert_eq!(creation_us(1_700_000_000_005, b"short"), 1_700_000_000_005_000);
        assert_eq!(creation_us(1_700_000_000_004, &us.to_be_bytes()), 1_700_000_000_004_000);
        assert_eq!(creation_us(7, &[]), 7000);
        // The builder stamps values of 8+ bytes and leaves shorter ones alone.
        let mut b = BatchBuilder::default();
        b.push(us, None, b"0123456789", Instant::now());
        b.push(us + 1, None, b"short", Instant::now());
        let (bytes, ..) = b.finish(Codec::None).unwrap();
        let mut buf = bytes.clone();
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(&set.records[0].value.as_ref().unwrap()[..], &[&us.to_be_bytes()[..], b"89"].concat()[..]);
        assert_eq!(&set.records[1].value.as_ref().unwrap()[..], b"short");
        assert_eq!(set.records[0].timestamp, 1_700_000_000_005);
    }

    #[test]
    fn walker_counts_from_fetch_offset_and_skips_partial() {
        let mut b1 = build(Codec::None, 10, false).to_vec();
        ringbroker_engine::batch::stamp_offsets(&mut b1, 100, 0);
        let mut b2 = build(Codec::Lz4, 20, true).to_vec();
        ringbroker_engine::batch::stamp_offsets(&mut b2, 110, 0);
        let mut set = b1.clone();
        set.extend_from_slice(&b2);
        set.extend_from_slice(&b1[..30]); // partial trailing batch
        let data = Bytes::from(set);
        let mut ts = Vec::new();
        let s = walk_record_set(&data, 105, |t| ts.push(t)).unwrap();
        assert_eq!(s.records, 5 + 20);
        assert_eq!(s.next_offset, 130);
        assert_eq!(ts.len(), 25);
        // Values of 8+ bytes carry the microsecond; shorter ones give the ms.
        assert_eq!(ts[0], 1_700_000_000_005_123);
        assert_eq!(s.wire_bytes as usize, b1.len() + b2.len());
        let empty = walk_record_set(&Bytes::new(), 7, |_| {}).unwrap();
        assert_eq!(empty.next_offset, 7);
        // The header-only walk agrees, for every truncation of the set.
        for cut in 0..=data.len() {
            let full = walk_record_set(&data.slice(..cut), 105, |_| {}).unwrap().next_offset;
            assert_eq!(next_fetch_offset(&data[..cut], 105), full, "cut at {cut}");
        }
    }
}
