//! Read-only admin APIs that tools call to look at topics and logs:
//! DescribeTopicPartitions (the Java admin client's describeTopics in 4.x),
//! DescribeLogDirs (sizes per partition, used by UIs and kafka-log-dirs),
//! DescribeProducers (idempotent producer state per partition) and
//! ListPartitionReassignments (always empty: no reassignment exists yet).

use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse as ProducersTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::metadata::{partition_view, OPERATIONS_NOT_REQUESTED, TOPIC_OPERATIONS};
use super::str_bytes;
use crate::messages::{ProducerRow, Request, Response};
use crate::metadata::TopicMeta;
use crate::router::Transport;
use crate::shard::Shard;

/// Kafka's broker-side cap on partitions per DescribeTopicPartitions answer.
const MAX_PARTITIONS_PER_ANSWER: i32 = 2000;

pub async fn describe_topic_partitions(
    shard: &Rc<Shard>,
    req: DescribeTopicPartitionsRequest,
    _version: i16,
) -> DescribeTopicPartitionsResponse {
    let img = shard.image();
    // Named topics in name order (unknown ones answered with an error), or
    // every topic; the cursor says where the previous page stopped.
    let mut names: Vec<String> = if req.topics.is_empty() {
        img.topics.keys().cloned().collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).collect()
    };
    names.sort();
    names.dedup();
    let (cursor_topic, cursor_partition) =
        req.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index.max(0))).unwrap_or_default();
    let mut budget = req.response_partition_limit.clamp(1, MAX_PARTITIONS_PER_ANSWER);
    let mut topics = Vec::new();
    let mut next_cursor = None;
    for name in names.into_iter().filter(|n| *n >= cursor_topic) {
        let Some(t) = img.topic(&name) else {
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    .with_name(Some(TopicName(str_bytes(&name))))
                    .with_topic_authorized_operations(TOPIC_OPERATIONS),
            );
            continue;
        };
        let first = if name == cursor_topic { cursor_partition } else { 0 };
        if budget == 0 {
            next_cursor =
                Some(Cursor::default().with_topic_name(TopicName(str_bytes(&name))).with_partition_index(first));
            break;
        }
        let last = (first + budget).min(t.partitions);
        let partitions = (first..last)
            .map(|p| {
                let v = partition_view(&img, t, p);
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p)
                    .with_error_code(v.error_code)
                    .with_leader_id(BrokerId(v.leader))
                    .with_leader_epoch(v.leader_epoch)
                    .with_replica_nodes(v.replicas)
                    .with_isr_nodes(v.isr)
                    .with_offline_replicas(v.offline)
                    .with_eligible_leader_replicas(Some(vec![]))
                    .with_last_known_elr(Some(vec![]))
            })
            .collect();
        budget -= last - first;
        // v0 has no include flag: the bitfield is always filled (no ACLs yet).
        topics.push(topic_entry(t, partitions, true));
        if last < t.partitions {
            next_cursor =
                Some(Cursor::default().with_topic_name(TopicName(str_bytes(&name))).with_partition_index(last));
            break;
        }
    }
    DescribeTopicPartitionsResponse::default().with_topics(topics).with_next_cursor(next_cursor)
}

fn topic_entry(
    t: &TopicMeta,
    partitions: Vec<DescribeTopicPartitionsResponsePartition>,
    ops: bool,
) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_topic_id(uuid::Uuid::from_bytes(t.id.0))
        .with_is_internal(t.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(if ops { TOPIC_OPERATIONS } else { OPERATIONS_NOT_REQUESTED })
}

/// (topic, partition) pairs a request names, or every partition.
fn wanted_partitions(shard: &Shard, named: Option<Vec<(String, Vec<i32>)>>) -> Vec<(TopicMeta, Vec<i32>)> {
    let img = shard.image();
    match named {
        None => img.topics.values().map(|t| ((**t).clone(), (0..t.partitions).collect())).collect(),
        Some(list) => list
            .into_iter()
            .filter_map(|(name, parts)| {
                let t = img.topic(&name)?;
                Some((t.clone(), parts.into_iter().filter(|p| *p >= 0 && *p < t.partitions).collect()))
            })
            .collect(),
    }
}

pub async fn describe_log_dirs(
    shard: &Rc<Shard>,
    req: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let named = req.topics.map(|ts| ts.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
    let mut topics = Vec::new();
    for (t, parts) in wanted_partitions(shard, named) {
        let mut out = Vec::new();
        for p in parts {
            let owner = shard.owner(&t.id, p);
            let topic = t.name.clone();
            let size = match shard.router.request(shard, owner, Request::PartitionSize { topic, partition: p }).await {
                Some(Response::PartitionSize(size)) => size,
                _ => None,
            };
            if let Some(size) = size {
                out.push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p)
                        .with_partition_size(size as i64)
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                );
            }
        }
        if !out.is_empty() {
            topics.push(DescribeLogDirsTopic::default().with_name(TopicName(str_bytes(&t.name))).with_partitions(out));
        }
    }
    let dir = &shard.config.broker.data_dir;
    let mut result = DescribeLogDirsResult::default()
        .with_error_code(0)
        .with_log_dir(str_bytes(&std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone()).display().to_string()))
        .with_topics(topics);
    if version >= 4 {
        let (total, usable) = disk_space(dir).unwrap_or((-1, -1));
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    DescribeLogDirsResponse::default().with_error_code(0).with_results(vec![result])
}

/// (total, available) bytes of the file system holding `dir`.
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated and st is a valid out pointer.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as i64;
    Some((st.f_blocks as i64 * frsize, st.f_bavail as i64 * frsize))
}

pub async fn describe_producers(
    shard: &Rc<Shard>,
    req: DescribeProducersRequest,
    _version: i16,
) -> DescribeProducersResponse {
    let img = shard.image();
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partition_indexes {
            let meta = img.topic(&name).filter(|m| p >= 0 && p < m.partitions);
            let mut pr = PartitionResponse::default().with_partition_index(p);
            match meta {
                None => pr = pr.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                // Kafka answers for the partitions this broker leads.
                Some(m) if !shard.leads(&img, m, p) => {
                    pr = pr.with_error_code(ResponseError::NotLeaderOrFollower.code())
                }
                Some(m) => {
                    let owner = shard.owner(&m.id, p);
                    let topic = name.clone();
                    let producers = match shard
                        .router
                        .request(shard, owner, Request::DescribeProducers { topic, partition: p })
                        .await
                    {
                        Some(Response::Producers(list)) => list,
                        _ => None,
                    };
                    match producers {
                        None => pr = pr.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                        Some(list) => {
                            pr = pr.with_error_code(0).with_active_producers(
                                list.into_iter()
                                    .map(|(id, epoch, last_seq, ts)| {
                                        ProducerState::default()
                                            .with_producer_id(ProducerId(id))
                                            .with_producer_epoch(i32::from(epoch))
                                            .with_last_sequence(last_seq)
                                            .with_last_timestamp(ts)
                                            .with_coordinator_epoch(-1)
                                            .with_current_txn_start_offset(-1)
                                    })
                                    .collect(),
                            )
                        }
                    }
                }
            }
            parts.push(pr);
        }
        topics.push(ProducersTopic::default().with_name(t.name).with_partitions(parts));
    }
    DescribeProducersResponse::default().with_topics(topics)
}

pub async fn list_partition_reassignments(
    _shard: &Rc<Shard>,
    _req: ListPartitionReassignmentsRequest,
    _version: i16,
) -> ListPartitionReassignmentsResponse {
    // No reassignment can be in progress: partitions do not move yet.
    ListPartitionReassignmentsResponse::default().with_error_code(0).with_topics(vec![])
}

/// DescribeProducers on the owner shard: None if the partition is not here.
pub fn producers_local(shard: &Shard, topic: &str, partition: i32) -> Option<Vec<ProducerRow>> {
    let h = shard.partition(topic, partition)?;
    let log = h.log().borrow();
    let list = log
        .producers()
        .entries()
        .into_iter()
        .map(|(id, e)| {
            let last = e.batches.back();
            (id, e.epoch, last.map_or(-1, |b| b.last_seq), last.map_or(-1, |b| b.max_timestamp))
        })
        .collect();
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_a_real_directory() {
        let (total, avail) = disk_space(std::path::Path::new("/")).unwrap();
        assert!(total > 0 && avail >= 0 && avail <= total);
    }
}
