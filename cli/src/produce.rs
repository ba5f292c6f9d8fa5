//! `produce`: stdin lines -> records -> Produce requests.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

use crate::client::describe_error;
use crate::cluster::Cluster;
use crate::topic::topic_name;
use crate::ProduceArgs;

/// Broker-side timeout for acks=all.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// Kafka's `Utils.murmur2` (32-bit MurmurHash2, seed 0x9747b28c), returned as
/// the signed int the Java implementation produces.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Partition for a keyed record, as Kafka's default (Java) partitioner computes it.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    assert!(num_partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % num_partitions
}

/// `0`, `1`, `all` (or `-1`) -> the Produce `acks` field.
pub fn parse_acks(s: &str) -> Result<i16> {
    match s.trim().to_ascii_lowercase().as_str() {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        other => bail!("invalid --acks {other:?}: expected 0, 1 or all"),
    }
}

/// Split an input line into (key, value). Without a separator the whole line
/// is the value and the key is null.
pub fn split_line(line: &[u8], separator: Option<&[u8]>, line_no: u64) -> Result<(Option<Bytes>, Bytes)> {
    match separator {
        None => Ok((None, Bytes::copy_from_slice(line))),
        Some(sep) => {
            let pos = find(line, sep).ok_or_else(|| anyhow!("no key separator found on line {line_no}"))?;
            Ok((Some(Bytes::copy_from_slice(&line[..pos])), Bytes::copy_from_slice(&line[pos + sep.len()..])))
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Encode one magic-2, uncompressed, non-idempotent record batch.
pub fn encode_batch(entries: &[(Option<Bytes>, Bytes)], timestamp: i64) -> Result<Bytes> {
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder writes base_sequence = first.sequence and keeps records
            // in one batch while offset - sequence is constant, so offset-relative
            // sequences yield a single batch with base sequence -1 (none).
            sequence: NO_SEQUENCE.wrapping_add(i as i32),
            timestamp,
            key: key.clone(),
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .context("encoding record batch")?;
    Ok(buf.freeze())
}

/// A Produce request for one topic with one batch per partition.
pub fn build_produce_request(topic: &str, acks: i16, batches: BTreeMap<i32, Bytes>) -> ProduceRequest {
    let mut td = TopicProduceData::default();
    td.name = topic_name(topic);
    td.partition_data = batches
        .into_iter()
        .map(|(p, records)| {
            let mut pd = PartitionProduceData::default();
            pd.index = p;
            pd.records = Some(records);
            pd
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.transactional_id = None;
    req.acks = acks;
    req.timeout_ms = PRODUCE_TIMEOUT_MS;
    req.topic_data = vec![td];
    req
}

/// Assigns partitions to records: explicit, by key hash, or one partition per
/// batch for keyless records (round-robin across batches).
pub struct Partitioner {
    explicit: Option<i32>,
    num_partitions: i32,
    next_round_robin: i32,
}

impl Partitioner {
    pub fn new(explicit: Option<i32>, num_partitions: i32, start: i32) -> Self {
        Partitioner { explicit, num_partitions, next_round_robin: start.rem_euclid(num_partitions.max(1)) }
    }

    /// Partition for keyless records of the next batch.
    pub fn next_batch_partition(&mut self) -> i32 {
        let p = self.next_round_robin;
        self.next_round_robin = (self.next_round_robin + 1) % self.num_partitions;
        p
    }

    pub fn partition(&self, key: Option<&[u8]>, batch_partition: i32) -> i32 {
        match (self.explicit, key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, self.num_partitions),
            (None, None) => batch_partition,
        }
    }
}

pub fn run(bootstrap: &str, args: ProduceArgs) -> Result<()> {
    let stdin = std::io::stdin();
    produce_from(bootstrap, &args, stdin.lock())
}

/// Produce every line of `input` as a record.
pub fn produce_from(bootstrap: &str, args: &ProduceArgs, mut input: impl BufRead) -> Result<()> {
    let acks = parse_acks(&args.acks)?;
    let batch_records = args.batch_records.max(1);
    let mut cluster = Cluster::connect(bootstrap)?;
    let info = cluster.topic(&args.topic)?;
    let num_partitions = info.partitions.len() as i32;
    if let Some(p) = args.partition {
        if !info.partitions.iter().any(|pi| pi.id == p) {
            bail!("partition {p} does not exist in topic {} ({num_partitions} partitions)", args.topic);
        }
    }
    let leaders: BTreeMap<i32, i32> = info.partitions.iter().map(|p| (p.id, p.leader)).collect();
    let start = (now_ms() % i64::from(num_partitions)) as i32;
    let mut partitioner = Partitioner::new(args.partition, num_partitions, start);
    let separator = args.key_separator.as_deref().map(str::as_bytes);

    let mut line = Vec::new();
    let mut line_no = 0u64;
    let mut batch = Vec::with_capacity(batch_records.min(65_536));
    loop {
        line.clear();
        let n = input.read_until(b'\n', &mut line).context("reading stdin")?;
        if n > 0 {
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            batch.push(split_line(&line, separator, line_no)?);
        }
        if (n == 0 && !batch.is_empty()) || batch.len() >= batch_records {
            let bp = partitioner.next_batch_partition();
            let mut by_partition: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>> = BTreeMap::new();
            for (key, value) in batch.drain(..) {
                let p = partitioner.partition(key.as_deref(), bp);
                by_partition.entry(p).or_default().push((key, value));
            }
            send_batch(&mut cluster, &args.topic, acks, &leaders, by_partition)?;
        }
        if n == 0 {
            return Ok(());
        }
    }
}

fn send_batch(
    cluster: &mut Cluster,
    topic: &str,
    acks: i16,
    leaders: &BTreeMap<i32, i32>,
    by_partition: BTreeMap<i32, Vec<(Option<Bytes>, Bytes)>>,
) -> Result<()> {
    let ts = now_ms();
    let mut by_leader: BTreeMap<i32, BTreeMap<i32, Bytes>> = BTreeMap::new();
    for (p, entries) in by_partition {
        let leader = *leaders.get(&p).ok_or_else(|| anyhow!("partition {topic}-{p} missing from metadata"))?;
        by_leader.entry(leader).or_default().insert(p, encode_batch(&entries, ts)?);
    }
    let mut errors = Vec::new();
    for (leader, batches) in by_leader {
        let conn = cluster.node(leader).with_context(|| format!("leader of {topic}"))?;
        let version = conn.version_of::<ProduceRequest>()?;
        let req = build_produce_request(topic, acks, batches);
        if acks == 0 {
            conn.send_no_response(&req, version)?;
            continue;
        }
        let resp = conn.send_version(&req, version).context("Produce")?;
        for t in &resp.responses {
            for p in &t.partition_responses {
                if p.error_code != 0 {
                    errors.push(format!(
                        "{topic}-{}: {}",
                        p.index,
                        describe_error(p.error_code, p.error_message.as_deref())
                    ));
                }
            }
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("produce error: {e}");
        }
        bail!("produce failed: {}", errors.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn murmur2_matches_kafka_vectors() {
        let cases: &[(&str, i32)] = &[
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
            ("abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), *expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn key_partitioning_is_positive_mod() {
        // "21" hashes negative: the sign bit must be masked, not abs()'d.
        let h = murmur2(b"21");
        assert!(h < 0);
        assert_eq!(partition_for_key(b"21", 7), (h & 0x7fffffff) % 7);
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
        }
    }

    #[test]
    fn acks_parsing() {
        assert_eq!(parse_acks("0").unwrap(), 0);
        assert_eq!(parse_acks("1").unwrap(), 1);
        assert_eq!(parse_acks("all").unwrap(), -1);
        assert_eq!(parse_acks("ALL").unwrap(), -1);
        assert_eq!(parse_acks("-1").unwrap(), -1);
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn line_splitting() {
        let (k, v) = split_line(b"k1::v::x", Some(b"::"), 1).unwrap();
        assert_eq!(k.as_deref(), Some(&b"k1"[..]));
        assert_eq!(&v[..], b"v::x");
        let (k, v) = split_line(b"plain", None, 1).unwrap();
        assert!(k.is_none());
        assert_eq!(&v[..], b"plain");
        let err = split_line(b"nosep", Some(b"\t"), 3).unwrap_err();
        assert!(err.to_string().contains("line 3"));
    }

    #[test]
    fn partitioner_modes() {
        let mut rr = Partitioner::new(None, 3, 2);
        assert_eq!(rr.next_batch_partition(), 2);
        assert_eq!(rr.next_batch_partition(), 0);
        assert_eq!(rr.partition(None, 1), 1);
        assert_eq!(rr.partition(Some(b"foobar"), 1), partition_for_key(b"foobar", 3));
        let fixed = Partitioner::new(Some(4), 8, 0);
        assert_eq!(fixed.partition(Some(b"foobar"), 1), 4);
        assert_eq!(fixed.partition(None, 1), 4);
    }

    #[test]
    fn batch_encoding_roundtrip() {
        let entries = vec![
            (None, Bytes::from_static(b"v0")),
            (Some(Bytes::from_static(b"k1")), Bytes::from_static(b"v1")),
            (Some(Bytes::new()), Bytes::from_static(b"")),
        ];
        let ts = 1_700_000_000_123;
        let bytes = encode_batch(&entries, ts).unwrap();
        // Exactly one batch: base offset 0, magic 2, attributes 0,
        // last offset delta 2, producer id/epoch/base sequence all -1, 3 records.
        assert_eq!(i64::from_be_bytes(bytes[0..8].try_into().unwrap()), 0);
        let batch_len = i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(batch_len + 12, bytes.len());
        assert_eq!(bytes[16], 2);
        assert_eq!(i16::from_be_bytes(bytes[21..23].try_into().unwrap()), 0);
        assert_eq!(i32::from_be_bytes(bytes[23..27].try_into().unwrap()), 2);
        assert_eq!(i64::from_be_bytes(bytes[27..35].try_into().unwrap()), ts);
        assert_eq!(i64::from_be_bytes(bytes[43..51].try_into().unwrap()), -1);
        assert_eq!(i16::from_be_bytes(bytes[51..53].try_into().unwrap()), -1);
        assert_eq!(i32::from_be_bytes(bytes[53..57].try_into().unwrap()), -1);
        assert_eq!(i32::from_be_bytes(bytes[57..61].try_into().unwrap()), 3);

        let mut buf = bytes.clone();
        let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
        assert_eq!(sets.len(), 1);
        let recs = &sets[0].records;
        assert_eq!(recs.len(), 3);
        for (i, (r, (k, v))) in recs.iter().zip(&entries).enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, ts);
            assert_eq!(r.timestamp_type, TimestampType::Creation);
            assert_eq!(&r.key, k);
            assert_eq!(r.value.as_ref(), Some(v));
            assert_eq!(r.producer_id, -1);
        }
    }
}
