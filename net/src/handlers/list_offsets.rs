//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first
//! offset whose record timestamp is >= a given timestamp.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use kafka_protocol::ResponseError;

use crate::messages::{Request, Response};
use crate::router::Transport;
use crate::shard::{Replica, Shard};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(shard: &Rc<Shard>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let img = shard.image();
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for p in t.partitions {
            let meta = img.topic(&name).filter(|m| p.partition_index >= 0 && p.partition_index < m.partitions);
            let (error, ts, offset, epoch) = match meta {
                None => (ResponseError::UnknownTopicOrPartition.code(), -1, -1, -1),
                Some(m) if !shard.leads(&img, m, p.partition_index) => {
                    (ResponseError::NotLeaderOrFollower.code(), -1, -1, -1)
                }
                Some(m) => {
                    let owner = shard.owner(&m.id, p.partition_index);
                    let topic = name.clone();
                    let (pi, target) = (p.partition_index, p.timestamp);
                    // -3 (max timestamp) needs v7, -4/-5 (tiered) v8+: Kafka
                    // answers older requests UNSUPPORTED_VERSION.
                    let unsupported =
                        (target == MAX_TIMESTAMP && version < 7) || ((-5..=-4).contains(&target) && version < 8);
                    let current_epoch = if version >= 4 { p.current_leader_epoch } else { -1 };
                    let req = Request::ListOffset {
                        topic,
                        partition: pi,
                        timestamp: target,
                        current_leader_epoch: current_epoch,
                        unsupported,
                    };
                    match shard.router.request(shard, owner, req).await {
                        Some(Response::ListOffset(e, ts, off, epoch)) => (e, ts, off, epoch),
                        _ => (ResponseError::NotLeaderOrFollower.code(), -1, -1, -1),
                    }
                }
            };
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(error)
                .with_timestamp(ts)
                .with_offset(offset);
            if version >= 4 {
                // The epoch of the record found; -1 when none was (or on error).
                pr = pr.with_leader_epoch(if error == 0 && offset >= 0 { epoch } else { -1 });
            }
            tr.partitions.push(pr);
        }
        topics.push(tr);
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Runs on the owner shard: the epoch checks, then the lookup.
pub async fn lookup_checked(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    target: i64,
    current_epoch: i32,
    unsupported: bool,
) -> (i16, i64, i64, i32) {
    let epoch = shard.partition(topic, partition).map(|h| h.replica.leader_epoch());
    match epoch.map(|e| super::epochs::check_current_epoch(current_epoch, e)) {
        _ if unsupported => (ResponseError::UnsupportedVersion.code(), -1, -1, -1),
        Some(Err(e)) => (e.code(), -1, -1, -1),
        _ => lookup_local(shard, topic, partition, target).await,
    }
}

/// Runs on the owner shard. Returns (error code, timestamp, offset, leader
/// epoch of that offset).
async fn lookup_local(shard: &Rc<Shard>, topic: &str, partition: i32, target: i64) -> (i16, i64, i64, i32) {
    let Some(h) = shard.partition(topic, partition) else {
        return (ResponseError::NotLeaderOrFollower.code(), -1, -1, -1);
    };
    let (code, ts, offset) = lookup_offset(&h, target).await;
    // Kafka answers the latest offset with the current epoch, and a found
    // offset with the epoch its batch was written in.
    let history = h.replica.epoch_history();
    let epoch = if target == LATEST {
        history.latest().map(|(e, _)| e).unwrap_or(-1)
    } else {
        history.epoch_at(offset).unwrap_or(-1)
    };
    (code, ts, offset, epoch)
}

async fn lookup_offset(h: &crate::shard::PartitionHandle, target: i64) -> (i16, i64, i64) {
    let (start, hw) = (h.log().borrow().log_start_offset(), h.replica.high_watermark());
    match target {
        EARLIEST => (0, -1, start),
        LATEST => (0, -1, hw),
        MAX_TIMESTAMP => max_timestamp(&h.replica, start, hw).await,
        ts if ts >= 0 => match h.replica.find_by_timestamp(ts).await {
            Ok(Some(batch)) => {
                let mut b = batch;
                match RecordBatchDecoder::decode(&mut b) {
                    Ok(set) => match set.records.iter().find(|r| r.timestamp >= ts && r.offset >= start) {
                        Some(r) => (0, r.timestamp, r.offset),
                        None => (0, -1, hw),
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "stored batch did not decode");
                        (ResponseError::KafkaStorageError.code(), -1, -1)
                    }
                }
            }
            // No record that late: Kafka answers offset -1 (end) with timestamp -1.
            Ok(None) => (0, -1, -1),
            Err(e) => {
                tracing::error!(error = %e, "timestamp lookup failed");
                (ResponseError::KafkaStorageError.code(), -1, -1)
            }
        },
        _ => (ResponseError::InvalidRequest.code(), -1, -1),
    }
}

/// The record with the largest timestamp (first one if tied): scans batches.
async fn max_timestamp(replica: &Replica, start: i64, hw: i64) -> (i16, i64, i64) {
    let mut best: (i64, i64) = (-1, -1);
    let mut offset = start;
    while offset < hw {
        let r = match replica.read_cached(offset, 1 << 20) {
            Some(r) => Ok(r),
            None => Err(()),
        };
        let r = match r {
            Ok(r) => r,
            Err(()) => match replica.read_disk(offset, 1 << 20).await {
                Ok(r) => r,
                Err(_) => return (ResponseError::KafkaStorageError.code(), -1, -1),
            },
        };
        if r.chunks.is_empty() {
            break;
        }
        let mut data = r.into_bytes();
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut data) else {
            return (ResponseError::KafkaStorageError.code(), -1, -1);
        };
        let mut last = offset;
        for set in sets {
            for rec in set.records {
                if rec.offset >= offset && rec.timestamp > best.0 {
                    best = (rec.timestamp, rec.offset);
                }
                last = last.max(rec.offset);
            }
        }
        if last < offset {
            break;
        }
        offset = last + 1;
    }
    (0, best.0, best.1)
}
