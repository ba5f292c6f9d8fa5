//! Produce: split per owning shard, validate and append there, wait for
//! durability when the flush policy and acks ask for it.
//!
//! Batches of one partition in one request are validated together and
//! appended together (all or none). The replication step will sit between
//! `append` and the acknowledgement wait: the wait target becomes the
//! committed offset instead of the durable one.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::ResponseError;
use ringbroker_engine::append_policy::{self, PolicyError};
use ringbroker_engine::batch::{split_record_set, BatchError, BatchHeader};
use ringbroker_engine::now_ms;
use ringbroker_engine::producer_state::ProducerError;
use ringbroker_engine::EngineError;
use ringbroker_replication::partition::PartitionError;
use ringbroker_replication::Acks;

use crate::messages::{Request, Response};
use crate::metadata::{check_client_write, ClientWrite};
use crate::router::Transport;
use crate::shard::Shard;

pub struct PartitionOutcome {
    pub error_code: i16,
    pub error_message: Option<String>,
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

impl PartitionOutcome {
    fn err(e: ResponseError, msg: Option<String>) -> Self {
        PartitionOutcome {
            error_code: e.code(),
            error_message: msg,
            base_offset: -1,
            log_append_time_ms: -1,
            log_start_offset: -1,
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, req: ProduceRequest, version: i16) -> ProduceResponse {
    let img = shard.image();
    let acks = req.acks;
    if Acks::from_kafka(acks).is_none() {
        return error_response(req, ResponseError::InvalidRequiredAcks);
    }
    if req.transactional_id.is_some() {
        return error_response(req, ResponseError::TransactionalIdAuthorizationFailed);
    }
    // As in Kafka: transactional batches need a transactional id (and a
    // transaction coordinator, which does not exist yet), so a batch that
    // claims to be transactional is refused rather than left open forever.
    // zstd needs Produce v7+ (KIP-110): an older client could not read it
    // back. One walk over the batch headers answers both questions.
    let (mut transactional, mut zstd) = (false, false);
    for a in
        req.topic_data.iter().flat_map(|t| t.partition_data.iter()).flat_map(|p| batch_attributes(p.records.as_deref()))
    {
        transactional |= a & TRANSACTIONAL_BIT != 0;
        zstd |= a & COMPRESSION_MASK == ZSTD;
    }
    if transactional {
        return error_response(req, ResponseError::TransactionalIdAuthorizationFailed);
    }
    if version < 7 && zstd {
        return error_response(req, ResponseError::UnsupportedCompressionType);
    }
    let mut topics = Vec::new();
    // Start every partition's work first (they run concurrently), then collect.
    let mut pending = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let meta = img.topic(&name).cloned();
        let refused = meta.as_ref().and_then(|m| check_client_write(m, ClientWrite::Produce).err());
        let mut parts = Vec::new();
        for p in t.partition_data {
            let index = p.index;
            let fut: std::pin::Pin<Box<dyn std::future::Future<Output = PartitionOutcome>>> = match (&meta, p.records) {
                // Before routing: internal topics take no client records.
                (Some(m), _) if index >= 0 && index < m.partitions && refused.is_some() => {
                    let (e, msg) = refused.clone().expect("checked by the guard");
                    Box::pin(async move { PartitionOutcome::err(e, Some(msg)) })
                }
                (Some(m), Some(_)) if index >= 0 && index < m.partitions && !shard.leads(&img, m, index) => {
                    Box::pin(async { PartitionOutcome::err(ResponseError::NotLeaderOrFollower, None) })
                }
                (Some(m), Some(records)) if index >= 0 && index < m.partitions => {
                    let owner = shard.owner(&m.id, index);
                    let topic = name.clone();
                    let shard2 = shard.clone();
                    Box::pin(async move {
                        let req = Request::Produce { topic, partition: index, records, acks };
                        match shard2.router.request(&shard2, owner, req).await {
                            Some(Response::Produce(outcome)) => outcome,
                            _ => {
                                PartitionOutcome::err(ResponseError::NotLeaderOrFollower, Some("shard stopped".into()))
                            }
                        }
                    })
                }
                (Some(_), None) => Box::pin(async {
                    PartitionOutcome::err(ResponseError::InvalidRecord, Some("null record set".into()))
                }),
                _ => Box::pin(async { PartitionOutcome::err(ResponseError::UnknownTopicOrPartition, None) }),
            };
            parts.push(index);
            pending.push(glommio::spawn_local(fut));
        }
        topics.push((name, parts));
    }
    let mut results = Vec::with_capacity(pending.len());
    for task in pending {
        results.push(task.await);
    }
    let mut it = results.into_iter();
    let mut responses = Vec::with_capacity(topics.len());
    let mut leaders = Vec::new();
    for (name, parts) in topics {
        let mut tr = TopicProduceResponse::default().with_name(TopicName(super::str_bytes(&name)));
        for index in parts {
            let o = it.next().expect("one outcome per partition");
            let mut pr = PartitionProduceResponse::default()
                .with_index(index)
                .with_error_code(o.error_code)
                .with_base_offset(o.base_offset)
                .with_log_append_time_ms(o.log_append_time_ms)
                .with_log_start_offset(o.log_start_offset)
                .with_error_message(o.error_message.map(|m| super::str_bytes(&m)));
            // KIP-951 (v10+): tell the client where the partition went, so
            // it need not wait for a metadata refresh.
            if version >= 10 && o.error_code == ResponseError::NotLeaderOrFollower.code() {
                if let Some(m) = img.topic(&name) {
                    let (leader, epoch) = super::metadata::current_leader(&img, m, index, &mut leaders);
                    pr = pr.with_current_leader(
                        LeaderIdAndEpoch::default().with_leader_id(BrokerId(leader)).with_leader_epoch(epoch),
                    );
                }
            }
            tr.partition_responses.push(pr);
        }
        responses.push(tr);
    }
    let mut resp = ProduceResponse::default().with_responses(responses);
    if version >= 10 && !leaders.is_empty() {
        resp = resp.with_node_endpoints(
            super::metadata::endpoints_of(shard, &img, &leaders)
                .into_iter()
                .map(|(id, host, port)| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(id))
                        .with_host(super::str_bytes(&host))
                        .with_port(port)
                })
                .collect(),
        );
    }
    resp
}

/// Runs on the partition's owner shard.
pub async fn append_local(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> PartitionOutcome {
    let Some(h) = shard.partition(topic, partition) else {
        return PartitionOutcome::err(ResponseError::UnknownTopicOrPartition, None);
    };
    // Kafka: no batch at all, or a batch of another magic (byte 16), is an
    // invalid record, not a corrupt one (the bytes may be intact).
    const MAGIC_OFF: usize = 16;
    if records.is_empty() || records.get(MAGIC_OFF).is_some_and(|m| *m != 2) {
        return PartitionOutcome::err(ResponseError::InvalidRecord, Some("only v2 record batches are accepted".into()));
    }
    let max = h.log().borrow().config().max_message_bytes;
    let ranges = match split_record_set(&records, max) {
        Ok(r) => r,
        Err(BatchError::BatchTooLarge { size, max }) => {
            return PartitionOutcome::err(
                ResponseError::MessageTooLarge,
                Some(format!("batch of {size} bytes exceeds max.message.bytes {max}")),
            )
        }
        // Kafka: a batch of another magic, or no batch at all, is an invalid
        // record (not a corrupt one: the bytes may be intact).
        Err(e @ (BatchError::BadMagic(_) | BatchError::EmptyRecordSet)) => {
            return PartitionOutcome::err(ResponseError::InvalidRecord, Some(e.to_string()))
        }
        Err(e) => return PartitionOutcome::err(ResponseError::CorruptMessage, Some(e.to_string())),
    };
    // Producers never send empty batches (only compaction makes them), and
    // offsets are assigned by the leader: reject what a real client cannot send.
    for (start, end) in &ranges {
        let h = BatchHeader::parse(&records[*start..*end]).expect("validated by split_record_set");
        if h.record_count <= 0 {
            return PartitionOutcome::err(ResponseError::InvalidRecord, Some("batch has no records".into()));
        }
        if h.is_control() {
            return PartitionOutcome::err(
                ResponseError::InvalidRecord,
                Some("clients may not produce control batches".into()),
            );
        }
    }
    // The topic's rules for every batch before any is appended:
    // message.timestamp.before/after.max.ms, and compression.type (a batch
    // with another codec is stored recompressed).
    let now = now_ms();
    let mut recompressed: Vec<Option<Vec<u8>>> = Vec::with_capacity(ranges.len());
    {
        let log = h.log().borrow();
        for (start, end) in &ranges {
            let raw = &records[*start..*end];
            let header = BatchHeader::parse(raw).expect("validated by split_record_set");
            let checked = append_policy::check_timestamps(raw, &header, log.config(), now).and_then(|()| {
                append_policy::recompression_target(&header, log.config())
                    .map(|codec| append_policy::recompress(raw, &header, codec, log.config()))
                    .transpose()
            });
            match checked {
                Ok(r) => recompressed.push(r),
                Err(e @ PolicyError::InvalidTimestamp { .. }) => {
                    return PartitionOutcome::err(ResponseError::InvalidTimestamp, Some(e.to_string()))
                }
                Err(e) => return PartitionOutcome::err(ResponseError::CorruptMessage, Some(e.to_string())),
            }
        }
    }
    // Kafka refuses keyless records on compacted topics: compaction keeps
    // the latest record per key, so a record without one could never be
    // compacted away.
    if h.log().borrow().config().cleanup_policy.compact {
        for (start, end) in &ranges {
            let mut batch = records.slice(*start..*end);
            match kafka_protocol::records::RecordBatchDecoder::decode(&mut batch) {
                Ok(set) if set.records.iter().all(|r| r.key.is_some()) => {}
                Ok(_) => {
                    return PartitionOutcome::err(
                        ResponseError::InvalidRecord,
                        Some("compacted topic cannot accept a record without key".into()),
                    )
                }
                Err(e) => return PartitionOutcome::err(ResponseError::CorruptMessage, Some(e.to_string())),
            }
        }
    }
    let mut first = None;
    let mut last = -1;
    let mut append_time = -1;
    let mut record_count = 0u64;
    {
        for ((start, end), rebuilt) in ranges.iter().zip(recompressed) {
            // One copy: the batch header fields are stamped in place.
            let raw: &[u8] = match &rebuilt {
                Some(b) => b,
                None => &records[*start..*end],
            };
            let header = BatchHeader::parse(raw).expect("validated by split_record_set or built by recompress");
            record_count += header.record_count.max(0) as u64;
            let buf = BytesMut::from(raw);
            match h.replica.append(buf, &header, now) {
                Ok(info) => {
                    first.get_or_insert(info.base_offset);
                    last = info.last_offset;
                    append_time = info.log_append_time_ms;
                }
                Err(PartitionError::Engine(EngineError::Producer(ProducerError::OutOfOrderSequence { .. })))
                    if first.is_none() =>
                {
                    return PartitionOutcome::err(ResponseError::OutOfOrderSequenceNumber, None)
                }
                Err(PartitionError::Engine(EngineError::Producer(ProducerError::InvalidProducerEpoch { .. })))
                    if first.is_none() =>
                {
                    return PartitionOutcome::err(ResponseError::InvalidProducerEpoch, None)
                }
                Err(PartitionError::NotLeader(_)) if first.is_none() => {
                    return PartitionOutcome::err(ResponseError::NotLeaderOrFollower, None)
                }
                Err(e) => return PartitionOutcome::err(ResponseError::KafkaStorageError, Some(e.to_string())),
            }
        }
    }
    shard.metrics.produce_records.fetch_add(record_count, std::sync::atomic::Ordering::Relaxed);
    shard.metrics.produce_bytes.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let acks = Acks::from_kafka(acks).expect("checked by the handler");
    let waited = h.replica.wait_committed(h.replica.commit_wait(acks, last + 1)).await;
    if let Err(reason) = waited {
        return PartitionOutcome::err(ResponseError::KafkaStorageError, Some(reason));
    }
    let log_start = h.log().borrow().log_start_offset();
    PartitionOutcome {
        error_code: 0,
        error_message: None,
        base_offset: first.unwrap_or(-1),
        log_append_time_ms: append_time,
        log_start_offset: log_start,
    }
}

const COMPRESSION_MASK: i16 = 0x07;
const ZSTD: i16 = 4;
const TRANSACTIONAL_BIT: i16 = 0x10;

/// The attributes of each record batch in a record set, read from the
/// batch headers only (the full checks come at append). Stops at the first
/// header that does not fit.
fn batch_attributes(records: Option<&[u8]>) -> impl Iterator<Item = i16> + '_ {
    const LENGTH_OFF: usize = 8;
    const ATTRIBUTES_OFF: usize = 21;
    let records = records.unwrap_or_default();
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = records.get(at..at + ATTRIBUTES_OFF + 2)?;
        let len = i32::from_be_bytes(header[LENGTH_OFF..LENGTH_OFF + 4].try_into().expect("4 bytes"));
        let attributes = i16::from_be_bytes([header[ATTRIBUTES_OFF], header[ATTRIBUTES_OFF + 1]]);
        at = at.checked_add(12 + usize::try_from(len).ok()?)?;
        Some(attributes)
    })
}

/// The same error for every partition of the request.
fn error_response(req: ProduceRequest, error: ResponseError) -> ProduceResponse {
    ProduceResponse::default().with_responses(
        req.topic_data
            .into_iter()
            .map(|t| {
                TopicProduceResponse::default().with_name(t.name).with_partition_responses(
                    t.partition_data
                        .into_iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(error.code())
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringbroker_engine::batch::{build_batch_with, BatchOptions, RecordSpec};

    #[test]
    fn batch_attributes_walks_every_header_and_stops_at_a_short_one() {
        let rec = [RecordSpec { key: None, value: Some(b"v"), headers: vec![], timestamp_delta: 0 }];
        let plain = build_batch_with(&BatchOptions::default(), &rec);
        let txn = build_batch_with(&BatchOptions { transactional: true, ..BatchOptions::default() }, &rec);
        let mut set = plain.clone();
        set.extend_from_slice(&txn);
        let attrs: Vec<i16> = batch_attributes(Some(&set)).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0] & TRANSACTIONAL_BIT, 0);
        assert_ne!(attrs[1] & TRANSACTIONAL_BIT, 0);
        assert_eq!(batch_attributes(Some(&set[..set.len() - plain.len() - 5])).count(), 1);
        assert_eq!(batch_attributes(None).count(), 0);
    }
}
