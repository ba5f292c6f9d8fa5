//! DescribeCluster, DescribeQuorum, OffsetForLeaderEpoch, DeleteRecords.

use std::rc::Rc;

use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::messages::{Request, Response};
use crate::metadata::{check_client_write, ClientWrite};
use crate::router::Transport;
use crate::shard::{Shard, CONTROLLER_SHARD};

pub async fn describe_cluster(
    shard: &Rc<Shard>,
    req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    // endpoint_type 1 = brokers; asking a broker listener for controllers
    // (2) is Kafka's MISMATCHED_ENDPOINT_TYPE.
    if req.endpoint_type != 1 {
        return DescribeClusterResponse::default()
            .with_error_code(ResponseError::MismatchedEndpointType.code())
            .with_error_message(Some(str_bytes("this listener serves broker endpoints only")))
            .with_cluster_id(str_bytes(&shard.image().cluster_id))
            .with_controller_id(BrokerId(-1));
    }
    DescribeClusterResponse::default()
        .with_cluster_id(str_bytes(&shard.image().cluster_id))
        .with_controller_id(BrokerId(super::metadata::controller_id(shard)))
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            super::metadata::CLUSTER_OPERATIONS
        } else {
            super::metadata::OPERATIONS_NOT_REQUESTED
        })
        .with_brokers(
            super::metadata::live_brokers(shard, &shard.image())
                .into_iter()
                .map(|(id, host, port)| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(str_bytes(&host))
                        .with_port(port)
                })
                .collect(),
        )
}

/// The metadata log's name in DescribeQuorum (Kafka's).
pub const METADATA_LOG: &str = "__cluster_metadata";

/// The listener name DescribeQuorum v2 gives the voters' endpoints: the
/// cluster listener is where the quorum talks, Kafka's CONTROLLER listener.
pub const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// DescribeQuorum (API 55): the metadata quorum's leader, epoch (term),
/// high watermark (commit index) and each voter's log end. Any broker
/// answers: the active controller knows every voter's progress; another
/// broker gives the leader, epoch and high watermark it knows, and -1 for
/// the other voters' log ends (unknown), as Kafka does for a voter it has
/// not heard from.
pub async fn describe_quorum(shard: &Rc<Shard>, req: DescribeQuorumRequest, version: i16) -> DescribeQuorumResponse {
    use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
    let view = match shard.router.request(shard, CONTROLLER_SHARD, Request::DescribeQuorum).await {
        Some(Response::Quorum(v)) => v,
        _ => {
            return DescribeQuorumResponse::default().with_error_code(ResponseError::BrokerNotAvailable.code());
        }
    };
    let mut topics = Vec::new();
    for t in req.topics {
        let mut td = TopicData::default().with_topic_name(t.topic_name.clone());
        for p in t.partitions {
            let mut pd = PartitionData::default().with_partition_index(p.partition_index);
            if t.topic_name.0.as_str() != METADATA_LOG || p.partition_index != 0 {
                // The other fields keep their schema defaults, as Kafka's.
                pd = pd.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                if version >= 2 {
                    pd = pd.with_error_message(Some(str_bytes("the metadata log is __cluster_metadata-0")));
                }
            } else {
                pd = pd
                    .with_leader_id(BrokerId(view.leader.unwrap_or(-1)))
                    .with_leader_epoch(view.term.min(i32::MAX as u64) as i32)
                    .with_high_watermark(view.commit_index as i64)
                    .with_current_voters(
                        view.voters
                            .iter()
                            .map(|v| {
                                ReplicaState::default()
                                    .with_replica_id(BrokerId(v.id))
                                    .with_log_end_offset(v.log_end.map_or(-1, |e| e as i64))
                                    .with_last_fetch_timestamp(v.last_contact_ms.unwrap_or(-1))
                                    .with_last_caught_up_timestamp(v.last_caught_up_ms.unwrap_or(-1))
                            })
                            .collect(),
                    );
            }
            td.partitions.push(pd);
        }
        topics.push(td);
    }
    // Kafka lists the voters' endpoints only along with the metadata log.
    let answered = topics.iter().flat_map(|t| &t.partitions).any(|p| p.error_code == 0);
    let mut r = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 && answered {
        r = r.with_nodes(
            shard
                .config
                .voters
                .iter()
                .map(|v| {
                    // A single node has no cluster listener: it is listed
                    // with none.
                    let listener = v.addr.rsplit_once(':').and_then(|(host, port)| {
                        Some(
                            Listener::default()
                                .with_name(str_bytes(CONTROLLER_LISTENER))
                                .with_host(str_bytes(host.trim_matches(|c| c == '[' || c == ']')))
                                .with_port(port.parse().ok()?),
                        )
                    });
                    Node::default().with_node_id(BrokerId(v.node_id)).with_listeners(listener.into_iter().collect())
                })
                .collect(),
        );
    }
    r
}

pub async fn offset_for_leader_epoch(
    shard: &Rc<Shard>,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let img = shard.image();
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.topic.0.to_string();
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for p in t.partitions {
            let meta = img.topic(&name).filter(|m| p.partition >= 0 && p.partition < m.partitions);
            let (code, epoch, end) = match meta {
                None => (ResponseError::UnknownTopicOrPartition.code(), -1, -1),
                Some(m) if !shard.leads(&img, m, p.partition) => (ResponseError::NotLeaderOrFollower.code(), -1, -1),
                Some(m) => {
                    let owner = shard.owner(&m.id, p.partition);
                    let (topic, pi, want, current) =
                        (name.clone(), p.partition, p.leader_epoch, p.current_leader_epoch);
                    let req = Request::EpochEndOffset {
                        topic,
                        partition: pi,
                        leader_epoch: want,
                        current_leader_epoch: current,
                    };
                    match shard.router.request(shard, owner, req).await {
                        Some(Response::EpochEndOffset(code, epoch, end)) => (code, epoch, end),
                        _ => (ResponseError::NotLeaderOrFollower.code(), -1, -1),
                    }
                }
            };
            tr.partitions.push(
                EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(code)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
            );
        }
        topics.push(tr);
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

pub async fn delete_records(shard: &Rc<Shard>, req: DeleteRecordsRequest, _version: i16) -> DeleteRecordsResponse {
    let img = shard.image();
    let mut topics = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for p in t.partitions {
            let meta = img.topic(&name).filter(|m| p.partition_index >= 0 && p.partition_index < m.partitions);
            let (code, low) = match meta {
                None => (ResponseError::UnknownTopicOrPartition.code(), -1),
                Some(m) if check_client_write(m, ClientWrite::DeleteRecords).is_err() => {
                    (ResponseError::InvalidTopicException.code(), -1)
                }
                Some(m) if !shard.leads(&img, m, p.partition_index) => (ResponseError::NotLeaderOrFollower.code(), -1),
                Some(m) => {
                    let owner = shard.owner(&m.id, p.partition_index);
                    let (topic, pi, offset) = (name.clone(), p.partition_index, p.offset);
                    match shard
                        .router
                        .request(shard, owner, Request::DeleteRecords { topic, partition: pi, offset })
                        .await
                    {
                        Some(Response::DeleteRecords(code, low)) => (code, low),
                        _ => (ResponseError::NotLeaderOrFollower.code(), -1),
                    }
                }
            };
            tr.partitions.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_low_watermark(low),
            );
        }
        topics.push(tr);
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// OffsetForLeaderEpoch on the owner shard: (error code, epoch, end offset).
pub fn epoch_end_offset_local(shard: &Shard, topic: &str, partition: i32, want: i32, current: i32) -> (i16, i32, i64) {
    let Some(h) = shard.partition(topic, partition) else {
        return (ResponseError::NotLeaderOrFollower.code(), -1, -1);
    };
    match super::epochs::check_current_epoch(current, h.replica.leader_epoch()) {
        Err(e) => (e.code(), -1, -1),
        Ok(()) => {
            let (e, off) = h.replica.end_offset_for_epoch(want);
            (0, e, off)
        }
    }
}

/// DeleteRecords on the owner shard: (error code, new log start offset).
pub fn delete_records_local(shard: &Shard, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let Some(h) = shard.partition(topic, partition) else {
        return (ResponseError::NotLeaderOrFollower.code(), -1);
    };
    // -1 means "up to the high watermark".
    let target = if offset == -1 { h.replica.high_watermark() } else { offset };
    match h.replica.delete_records_before(target) {
        Ok(low) => (0, low),
        Err(ringbroker_engine::EngineError::OffsetOutOfRange { .. }) => (ResponseError::OffsetOutOfRange.code(), -1),
        Err(e) => {
            tracing::error!(error = %e, "delete records");
            (ResponseError::KafkaStorageError.code(), -1)
        }
    }
}
