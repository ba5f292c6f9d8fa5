//! `consume`: ListOffsets to find the start, then a Fetch loop printing records.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use crate::client::describe_error;
use crate::cluster::Cluster;
use crate::topic::{offsets_for_all, topic_name, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
use crate::ConsumeArgs;

/// Broker-side long-poll wait per Fetch.
pub const FETCH_MAX_WAIT_MS: i32 = 500;
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;
const PARTITION_MAX_BYTES: i32 = 1024 * 1024;
/// Size of the v2 record batch header fields we read ourselves.
const BATCH_HEADER_LEN: usize = 61;
const CONTROL_FLAG: i16 = 1 << 5;

/// Where to start consuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    Earliest,
    Latest,
    At(i64),
}

impl FromStr for OffsetSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "earliest" | "beginning" => Ok(OffsetSpec::Earliest),
            "latest" | "end" => Ok(OffsetSpec::Latest),
            other => match other.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(OffsetSpec::At(n)),
                _ => bail!("invalid --offset {s:?}: expected earliest, latest or a non-negative offset"),
            },
        }
    }
}

/// A complete v2 record batch found in a Fetch response's record data.
#[derive(Debug)]
pub struct RawBatch {
    pub base_offset: i64,
    pub last_offset: i64,
    pub magic: i8,
    pub is_control: bool,
    /// The whole batch, header included.
    pub data: Bytes,
}

/// Split fetched record data into complete batches. A trailing partial batch
/// (the broker may truncate at the byte limit) is ignored.
pub fn split_batches(mut data: Bytes) -> Vec<RawBatch> {
    let mut out = Vec::new();
    while data.len() >= 17 {
        let base_offset = i64::from_be_bytes(data[0..8].try_into().unwrap());
        let batch_len = i32::from_be_bytes(data[8..12].try_into().unwrap());
        if batch_len < 0 {
            break;
        }
        let total = 12 + batch_len as usize;
        if data.len() < total {
            break;
        }
        let magic = data[16] as i8;
        let (last_offset, is_control) = if magic >= 2 && total >= BATCH_HEADER_LEN {
            let attributes = i16::from_be_bytes(data[21..23].try_into().unwrap());
            let delta = i32::from_be_bytes(data[23..27].try_into().unwrap());
            (base_offset + i64::from(delta), attributes & CONTROL_FLAG != 0)
        } else {
            // Legacy message sets: the leading offset is the (last) offset.
            (base_offset, false)
        };
        out.push(RawBatch { base_offset, last_offset, magic, is_control, data: data.split_to(total) });
    }
    out
}

/// Decode fetched record data into the data records at or after `next_offset`,
/// in offset order, skipping control batches. Returns the records and the
/// offset to fetch next.
pub fn decode_records(data: Bytes, mut next_offset: i64) -> Result<(Vec<Record>, i64)> {
    let mut records = Vec::new();
    for batch in split_batches(data) {
        if batch.last_offset < next_offset {
            continue;
        }
        if batch.magic != 2 {
            bail!(
                "record batch at offset {} uses message format v{}, only v2 is supported",
                batch.base_offset,
                batch.magic
            );
        }
        if !batch.is_control {
            let mut buf = batch.data.clone();
            let set = RecordBatchDecoder::decode(&mut buf)
                .with_context(|| format!("decoding record batch at offset {}", batch.base_offset))?;
            records.extend(set.records.into_iter().filter(|r| r.offset >= next_offset));
        }
        next_offset = batch.last_offset + 1;
    }
    records.sort_by_key(|r| r.offset);
    Ok((records, next_offset))
}

/// Print one record: `[offset\t][key\t]value\n`; null key/value print as `null`.
pub fn write_record(out: &mut impl Write, record: &Record, print_key: bool, print_offset: bool) -> io::Result<()> {
    if print_offset {
        write!(out, "{}\t", record.offset)?;
    }
    if print_key {
        out.write_all(record.key.as_deref().unwrap_or(b"null"))?;
        out.write_all(b"\t")?;
    }
    out.write_all(record.value.as_deref().unwrap_or(b"null"))?;
    out.write_all(b"\n")
}

/// Fetch request for `partitions` (partition -> fetch offset) of one topic.
pub fn build_fetch_request(topic: &str, partitions: &BTreeMap<i32, i64>) -> FetchRequest {
    let mut t = FetchTopic::default();
    t.topic = topic_name(topic);
    t.partitions = partitions
        .iter()
        .map(|(&p, &offset)| {
            let mut fp = FetchPartition::default();
            fp.partition = p;
            fp.fetch_offset = offset;
            fp.partition_max_bytes = PARTITION_MAX_BYTES;
            fp
        })
        .collect();
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = FETCH_MAX_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = FETCH_MAX_BYTES;
    req.isolation_level = 0;
    req.session_id = 0; // no fetch session: full fetch every time
    req.session_epoch = -1;
    req.topics = vec![t];
    req
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

pub fn run(bootstrap: &str, args: ConsumeArgs) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match consume(bootstrap, &args, &mut out).and_then(|()| Ok(out.flush()?)) {
        Err(e) if is_broken_pipe(&e) => Ok(()),
        r => r,
    }
}

/// Consume according to `args`, writing records to `out`.
pub fn consume(bootstrap: &str, args: &ConsumeArgs, out: &mut impl Write) -> Result<()> {
    let spec: OffsetSpec = args.offset.parse()?;
    if args.count == Some(0) {
        return Ok(());
    }
    let mut cluster = Cluster::connect(bootstrap)?;
    let info = cluster.topic(&args.topic)?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            if !info.partitions.iter().any(|pi| pi.id == p) {
                bail!("partition {p} does not exist in topic {} ({} partitions)", args.topic, info.partitions.len());
            }
            vec![p]
        }
        None => info.partitions.iter().map(|p| p.id).collect(),
    };
    let mut positions: BTreeMap<i32, i64> = match spec {
        OffsetSpec::Earliest => offsets_for_all(&mut cluster, &info, &partitions, EARLIEST_TIMESTAMP)?,
        OffsetSpec::Latest => offsets_for_all(&mut cluster, &info, &partitions, LATEST_TIMESTAMP)?,
        OffsetSpec::At(n) => partitions.iter().map(|&p| (p, n)).collect(),
    };
    let leaders: BTreeMap<i32, i32> = info.partitions.iter().map(|p| (p.id, p.leader)).collect();

    let idle_timeout = Duration::from_millis(args.timeout_ms);
    let mut last_progress = Instant::now();
    let mut printed = 0u64;
    loop {
        let mut by_leader: BTreeMap<i32, BTreeMap<i32, i64>> = BTreeMap::new();
        for (&p, &offset) in &positions {
            by_leader.entry(leaders[&p]).or_default().insert(p, offset);
        }
        for (leader, parts) in by_leader {
            let conn = cluster.node(leader)?;
            let req = build_fetch_request(&args.topic, &parts);
            let resp = conn.send(&req).context("Fetch")?;
            if resp.error_code != 0 {
                bail!("Fetch failed: {}", describe_error(resp.error_code, None));
            }
            for t in resp.responses {
                for p in t.partitions {
                    let part = p.partition_index;
                    let Some(&offset) = positions.get(&part) else {
                        continue;
                    };
                    if p.error_code != 0 {
                        bail!("Fetch {}-{part} at offset {offset}: {}", args.topic, describe_error(p.error_code, None));
                    }
                    let Some(data) = p.records else { continue };
                    let (records, next) = decode_records(data, offset)?;
                    positions.insert(part, next);
                    for r in &records {
                        write_record(out, r, args.print_key, args.print_offset)?;
                        printed += 1;
                        if args.count.is_some_and(|c| printed >= c) {
                            out.flush()?;
                            return Ok(());
                        }
                    }
                    if !records.is_empty() {
                        last_progress = Instant::now();
                    }
                }
            }
            out.flush()?;
        }
        if last_progress.elapsed() >= idle_timeout {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn rec(offset: i64, value: &str, control: bool) -> Record {
        Record {
            transactional: control,
            control,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: if control { 7 } else { -1 },
            producer_epoch: if control { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            timestamp: 1,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(value.to_string())),
            headers: IndexMap::new(),
        }
    }

    fn batch(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records.iter(), &RecordEncodeOptions { version: 2, compression }).unwrap();
        buf.freeze()
    }

    #[test]
    fn offset_spec_parsing() {
        assert_eq!("earliest".parse::<OffsetSpec>().unwrap(), OffsetSpec::Earliest);
        assert_eq!("LATEST".parse::<OffsetSpec>().unwrap(), OffsetSpec::Latest);
        assert_eq!("0".parse::<OffsetSpec>().unwrap(), OffsetSpec::At(0));
        assert_eq!(" 42 ".parse::<OffsetSpec>().unwrap(), OffsetSpec::At(42));
        assert!("-1".parse::<OffsetSpec>().is_err());
        assert!("soon".parse::<OffsetSpec>().is_err());
        assert!("".parse::<OffsetSpec>().is_err());
    }

    #[test]
    fn decodes_compressed_batches_and_skips_control() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&batch(&[rec(0, "a", false), rec(1, "b", false)], Compression::Gzip));
        data.extend_from_slice(&batch(&[rec(2, "c", false)], Compression::Snappy));
        data.extend_from_slice(&batch(&[rec(3, "ctl", true)], Compression::None));
        data.extend_from_slice(&batch(&[rec(4, "d", false)], Compression::Lz4));
        data.extend_from_slice(&batch(&[rec(5, "e", false)], Compression::Zstd));
        let (records, next) = decode_records(data.freeze(), 1).unwrap();
        let values: Vec<_> =
            records.iter().map(|r| (r.offset, String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())).collect();
        assert_eq!(values, vec![(1, "b".into()), (2, "c".into()), (4, "d".into()), (5, "e".into())]);
        assert_eq!(next, 6);
    }

    #[test]
    fn control_batch_alone_advances_offset() {
        let (records, next) = decode_records(batch(&[rec(9, "ctl", true)], Compression::None), 9).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 10);
    }

    #[test]
    fn partial_trailing_batch_is_ignored() {
        let full = batch(&[rec(0, "a", false)], Compression::None);
        let second = batch(&[rec(1, "b", false)], Compression::None);
        let mut data = BytesMut::new();
        data.extend_from_slice(&full);
        data.extend_from_slice(&second[..second.len() - 3]);
        let (records, next) = decode_records(data.freeze(), 0).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(next, 1);
        // Only a fragment: nothing decoded, position unchanged.
        let (records, next) = decode_records(second.slice(..10), 1).unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 1);
    }

    #[test]
    fn record_formatting() {
        let mut out = Vec::new();
        let mut r = rec(3, "val", false);
        write_record(&mut out, &r, false, false).unwrap();
        write_record(&mut out, &r, true, true).unwrap();
        r.key = None;
        r.value = None;
        write_record(&mut out, &r, true, false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "val\n3\tk3\tval\nnull\tnull\n");
    }
}
