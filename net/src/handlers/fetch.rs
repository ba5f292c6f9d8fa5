//! Fetch: read from the owning shards, long-poll until `min_bytes` or
//! `max_wait_ms`, with no busy loop.
//!
//! The connection's shard drives the poll: it reads every partition from its
//! owner, and if there is not enough data, asks each involved owner to park
//! until one of its partitions has data past the fetch offset (or the
//! deadline passes), then reads again. Owners wake parked fetches from the
//! high-watermark watch that appends and flushes advance.

use ringbroker_engine::ids::TopicId;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::FetchRequest;
use kafka_protocol::ResponseError;

use super::fetch_encode::{self, FetchedPartition, FetchedTopic};
use crate::messages::{Request, Response};
use crate::router::ShardId;
use crate::router::Transport;
use crate::shard::{Replica, Shard};

#[derive(Clone)]
pub struct PartRead {
    topic: String,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    /// The leader epoch the client believes current (-1: not checked).
    current_leader_epoch: i32,
    /// The epoch of the last record the client fetched (-1: unknown).
    last_fetched_epoch: i32,
}

#[derive(Default)]
pub struct PartResult {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Vec<Bytes>,
}

pub async fn handle(shard: &Rc<Shard>, req: FetchRequest, version: i16, correlation_id: i32) -> super::Frame {
    // No fetch sessions are created (every answer says session 0), so any
    // other session id is unknown: Kafka's FETCH_SESSION_ID_NOT_FOUND tells
    // the client to start over with a full fetch.
    if version >= 7 && req.session_id != 0 {
        let resp = kafka_protocol::messages::FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return match super::encode_response(kafka_protocol::messages::ApiKey::Fetch, version, correlation_id, &resp) {
            Ok(b) => super::Frame::one(b),
            Err(_) => super::Frame::close(),
        };
    }
    let img = shard.image();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(req.max_wait_ms.clamp(0, 300_000) as u64);
    let min_bytes = req.min_bytes.max(0) as usize;
    let read_committed = req.isolation_level == 1;
    let max_bytes = if version >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };

    // Group partitions by owner; remember the request order for the answer.
    let mut order: Vec<(String, uuid::Uuid, Vec<i32>)> = Vec::new();
    let mut by_owner: Vec<(ShardId, Vec<PartRead>)> = Vec::new();
    let mut unknown: Vec<(String, i32)> = Vec::new();
    // Partitions another broker leads (or that are offline).
    let mut not_led: Vec<(String, i32)> = Vec::new();
    // v13+ names topics by id only (KIP-516).
    let unknown_error =
        if version >= 13 { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
    for t in &req.topics {
        let meta = if version >= 13 {
            img.topic_by_id(&TopicId(*t.topic_id.as_bytes()))
        } else {
            img.topic(t.topic.0.as_str())
        };
        // Unknown ids get a key no topic name can have ('/' is not allowed).
        let name = match (version >= 13, meta) {
            (true, Some(m)) => m.name.clone(),
            (true, None) => format!("/{}", t.topic_id),
            (false, _) => t.topic.0.to_string(),
        };
        let mut parts = Vec::new();
        for p in &t.partitions {
            parts.push(p.partition);
            match meta {
                Some(m) if p.partition >= 0 && p.partition < m.partitions && !shard.leads(&img, m, p.partition) => {
                    not_led.push((name.clone(), p.partition))
                }
                Some(m) if p.partition >= 0 && p.partition < m.partitions => {
                    let owner = shard.owner(&m.id, p.partition);
                    let read = PartRead {
                        topic: name.clone(),
                        partition: p.partition,
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        current_leader_epoch: if version >= 9 { p.current_leader_epoch } else { -1 },
                        last_fetched_epoch: if version >= 12 { p.last_fetched_epoch } else { -1 },
                    };
                    match by_owner.iter_mut().find(|(o, _)| *o == owner) {
                        Some((_, v)) => v.push(read),
                        None => by_owner.push((owner, vec![read])),
                    }
                }
                _ => unknown.push((name.clone(), p.partition)),
            }
        }
        order.push((name, t.topic_id, parts));
    }

    // partition_max_bytes by partition (a map: fetches of 1000 partitions
    // must not scan a list per partition).
    let partition_limits: ahash::AHashMap<(String, i32), usize> = by_owner
        .iter()
        .flat_map(|(_, reads)| reads.iter().map(|r| ((r.topic.clone(), r.partition), r.max_bytes)))
        .collect();
    let mut results: Vec<((String, i32), PartResult)> = Vec::new();
    loop {
        results.clear();
        // Every owner reads at once (a catch-up fetch is disk reads on each).
        let calls = by_owner.iter().map(|(owner, reads)| {
            let reads2 = reads.clone();
            shard.router.request(shard, *owner, Request::Read(reads2))
        });
        for r in futures::future::join_all(calls).await {
            if let Some(Response::Read(parts)) = r {
                results.extend(parts);
            }
        }
        let total: usize = results.iter().map(|(_, r)| r.records.iter().map(|c| c.len()).sum::<usize>()).sum();
        let any_error = results.iter().any(|(_, r)| r.error_code != 0) || !unknown.is_empty() || !not_led.is_empty();
        let now = Instant::now();
        if total >= min_bytes.max(1)
            || any_error
            || now >= deadline
            || by_owner.is_empty()
            || shard.shutdown.load(std::sync::atomic::Ordering::Relaxed)
        {
            break;
        }
        // Park on every involved owner until one has data or time is up.
        let mut waits = Vec::new();
        for (owner, reads) in &by_owner {
            let positions: Vec<(String, i32, i64)> = reads
                .iter()
                .map(|r| {
                    // Wait for data past what we already hold for this partition.
                    let have = results
                        .iter()
                        .find(|((t, p), _)| *t == r.topic && *p == r.partition)
                        .map(|(_, x)| x.records.iter().map(|c| c.len()).sum::<usize>())
                        .unwrap_or(0);
                    (r.topic.clone(), r.partition, if have > 0 { i64::MAX } else { r.offset })
                })
                .collect();
            let remaining = deadline - now;
            waits.push(Box::pin(shard.router.request(
                shard,
                *owner,
                Request::WaitForData { positions, max_wait: remaining },
            )));
        }
        futures::future::select_all(waits).await;
    }

    // Assemble in request order within the response-wide max_bytes and
    // each partition's partition_max_bytes, at batch boundaries. As in Kafka
    // (KIP-74), the first batch of the first partition with data is returned
    // even when it is larger than either limit, so a consumer always makes
    // progress; later partitions get only what fits.
    let mut budget = max_bytes;
    let mut first = true;
    let mut leaders = Vec::new();
    let mut topics = Vec::new();
    for (name, topic_id, parts) in order {
        let mut tr = FetchedTopic { name: name.clone(), topic_id, partitions: Vec::new() };
        for p in parts {
            let mut fp = FetchedPartition {
                partition: p,
                error_code: 0,
                high_watermark: -1,
                last_stable_offset: -1,
                log_start_offset: -1,
                records: Vec::new(),
                current_leader: None,
            };
            if not_led.iter().any(|(t, q)| *t == name && *q == p) {
                fp.error_code = ResponseError::NotLeaderOrFollower.code();
            } else if unknown.iter().any(|(t, q)| *t == name && *q == p) {
                // An unknown partition of a known topic id is
                // UNKNOWN_TOPIC_OR_PARTITION; only an unknown id is UNKNOWN_TOPIC_ID.
                let topic_known = version >= 13 && !name.starts_with('/');
                fp.error_code = if topic_known { ResponseError::UnknownTopicOrPartition } else { unknown_error }.code();
            } else if let Some(i) = results.iter().position(|((t, q), _)| *t == name && *q == p) {
                let (key, r) = results.swap_remove(i);
                let partition_max = partition_limits.get(&key).copied().unwrap_or(usize::MAX);
                let records = trim_to_batches(r.records, partition_max.min(budget), first);
                let len: usize = records.iter().map(|c| c.len()).sum();
                if len > 0 {
                    first = false;
                    budget = budget.saturating_sub(len);
                    shard.metrics.fetch_bytes.fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed);
                }
                fp.error_code = r.error_code;
                fp.records = records;
                // As in Kafka, a partition with an error reports no offsets.
                if r.error_code == 0 {
                    fp.high_watermark = r.high_watermark;
                    fp.last_stable_offset = r.high_watermark;
                    fp.log_start_offset = r.log_start_offset;
                }
            }
            // KIP-951 (v12+): where the partition's leader is now.
            let moved = [ResponseError::NotLeaderOrFollower.code(), ResponseError::FencedLeaderEpoch.code()];
            if version >= 12 && moved.contains(&fp.error_code) {
                if let Some(m) = img.topic(&name) {
                    // (-1, -1) is the field's default: Kafka leaves it out.
                    let leader = super::metadata::current_leader(&img, m, p, &mut leaders);
                    fp.current_leader = Some(leader).filter(|&l| l != (-1, -1));
                }
            }
            tr.partitions.push(fp);
        }
        topics.push(tr);
    }
    let nodes = if version >= 16 { super::metadata::endpoints_of(shard, &img, &leaders) } else { Vec::new() };
    super::Frame(fetch_encode::encode(version, correlation_id, &topics, &nodes, read_committed))
}

/// The longest prefix of `chunks` (each a run of whole record batches) that
/// ends on a batch boundary and fits in `limit` bytes; with `min_one`, at
/// least the first batch whatever its size. Chunks are sliced, not copied.
fn trim_to_batches(chunks: Vec<Bytes>, limit: usize, min_one: bool) -> Vec<Bytes> {
    let total: usize = chunks.iter().map(|c| c.len()).sum();
    if total <= limit {
        return chunks;
    }
    let mut out = Vec::new();
    let mut used = 0usize;
    for chunk in chunks {
        let mut end = 0usize;
        while let Some(len) = batch_len_at(&chunk, end) {
            let fits = used + end + len <= limit || (min_one && used == 0 && end == 0);
            if !fits || end + len > chunk.len() {
                break;
            }
            end += len;
        }
        if end > 0 {
            used += end;
            out.push(chunk.slice(..end));
        }
        if end < chunk.len() {
            break;
        }
    }
    out
}

/// Total length of the record batch starting at `at` (offset and length
/// fields included), if its header is there.
fn batch_len_at(chunk: &[u8], at: usize) -> Option<usize> {
    const LENGTH_OFF: usize = 8;
    let b = chunk.get(at + LENGTH_OFF..at + LENGTH_OFF + 4)?;
    let len = i32::from_be_bytes(b.try_into().expect("4 bytes"));
    usize::try_from(len).ok().map(|l| l + 12)
}

/// Runs on the owner shard: reads each partition from cache or disk, the
/// disk reads concurrently (a catch-up fetch of 16 partitions used to wait
/// for 16 reads in a row), answers in request order.
pub async fn read_local(shard: &Rc<Shard>, reads: Vec<PartRead>) -> Vec<((String, i32), PartResult)> {
    let reads = reads.into_iter().map(|r| async move {
        let res = match shard.partition(&r.topic, r.partition) {
            None => PartResult {
                error_code: ResponseError::NotLeaderOrFollower.code(),
                high_watermark: -1,
                log_start_offset: -1,
                records: Vec::new(),
            },
            Some(h) => {
                let leader_epoch = h.replica.leader_epoch();
                match super::epochs::check_fetch_epochs(r.current_leader_epoch, r.last_fetched_epoch, leader_epoch) {
                    Err(e) => PartResult {
                        error_code: e.code(),
                        high_watermark: h.replica.high_watermark(),
                        log_start_offset: h.log().borrow().log_start_offset(),
                        records: Vec::new(),
                    },
                    Ok(()) => read_partition(shard, &h.replica, r.offset, r.max_bytes).await,
                }
            }
        };
        ((r.topic, r.partition), res)
    });
    futures::future::join_all(reads).await
}

async fn read_partition(shard: &Shard, replica: &Replica, offset: i64, max_bytes: usize) -> PartResult {
    let hw = replica.high_watermark();
    let (start, end) = {
        let l = replica.log().borrow();
        (l.log_start_offset(), l.next_offset())
    };
    let cached = replica.read_cached(offset, max_bytes);
    if offset < start || offset > end {
        return PartResult {
            error_code: ResponseError::OffsetOutOfRange.code(),
            high_watermark: hw,
            log_start_offset: start,
            records: Vec::new(),
        };
    }
    if offset >= hw {
        return PartResult { error_code: 0, high_watermark: hw, log_start_offset: start, records: Vec::new() };
    }
    let records = match cached {
        Some(r) => {
            shard.metrics.fetch_cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            r.chunks
        }
        None => {
            shard.metrics.fetch_disk_reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match replica.read_disk(offset, max_bytes).await {
                Ok(r) => r.chunks,
                Err(e) => {
                    tracing::error!(error = %e, "fetch read failed");
                    return PartResult {
                        error_code: ResponseError::KafkaStorageError.code(),
                        high_watermark: hw,
                        log_start_offset: start,
                        records: Vec::new(),
                    };
                }
            }
        }
    };
    PartResult { error_code: 0, high_watermark: hw, log_start_offset: start, records }
}

/// Runs on the owner shard: resolves when any listed partition's high
/// watermark passes the given offset, or after `max_wait`.
pub async fn wait_local(shard: &Rc<Shard>, positions: Vec<(String, i32, i64)>, max_wait: Duration) {
    let mut waits = Vec::new();
    for (t, p, offset) in positions {
        if offset == i64::MAX {
            continue;
        }
        if let Some(h) = shard.partition(&t, p) {
            let hw = h.replica.high_watermark_watch();
            waits.push(Box::pin(async move {
                let _ = hw.wait_for(offset.saturating_add(1)).await;
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>);
        }
    }
    let timer = Box::pin(glommio::timer::sleep(max_wait));
    if waits.is_empty() {
        timer.await;
        return;
    }
    futures::future::select(futures::future::select_all(waits), timer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake batch of `total` bytes (only the length field matters here).
    fn batch(total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        b[8..12].copy_from_slice(&((total - 12) as i32).to_be_bytes());
        b
    }

    fn chunk(sizes: &[usize]) -> Bytes {
        Bytes::from(sizes.iter().flat_map(|s| batch(*s)).collect::<Vec<u8>>())
    }

    fn lens(v: &[Bytes]) -> Vec<usize> {
        v.iter().map(|c| c.len()).collect()
    }

    #[test]
    fn trims_at_batch_boundaries_across_chunks() {
        let c = vec![chunk(&[100, 100]), chunk(&[100, 100])];
        assert_eq!(lens(&trim_to_batches(c.clone(), 1000, false)), vec![200, 200]);
        assert_eq!(lens(&trim_to_batches(c.clone(), 250, false)), vec![200]);
        assert_eq!(lens(&trim_to_batches(c.clone(), 300, false)), vec![200, 100]);
        assert_eq!(lens(&trim_to_batches(c.clone(), 99, false)), Vec::<usize>::new());
        // KIP-74: the first batch of the first non-empty partition goes whole.
        assert_eq!(lens(&trim_to_batches(c, 99, true)), vec![100]);
        let big = vec![chunk(&[5000, 20])];
        assert_eq!(lens(&trim_to_batches(big.clone(), 1000, true)), vec![5000]);
        assert_eq!(lens(&trim_to_batches(big, 0, false)), Vec::<usize>::new());
    }
}
