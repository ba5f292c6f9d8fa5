//! Metadata: brokers, topics, partitions and their leaders. Auto-creates
//! requested topics when `auto.create.topics.enable` and the client allows it.

use ringbroker_engine::ids::TopicId;
use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::metadata::{valid_topic_name, MetadataChange, MetadataImage, TopicMeta};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: MetadataRequest, version: i16) -> MetadataResponse {
    let mut img = shard.image();
    // v0 sends an empty list for "all topics"; v1+ sends null.
    let requested: Option<Vec<(Option<String>, uuid::Uuid)>> = match &req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(t.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    // Topic ids name topics in Metadata from v12 only: like Kafka, an older
    // request that carries one is refused whole (each topic INVALID_REQUEST,
    // no brokers), never answered with a name that version cannot encode.
    if version < 12 && requested.as_ref().is_some_and(|l| l.iter().any(|(_, id)| !id.is_nil())) {
        let topics = requested
            .unwrap_or_default()
            .into_iter()
            .map(|(name, id)| {
                MetadataResponseTopic::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_name(Some(TopicName(str_bytes(name.as_deref().unwrap_or("")))))
                    .with_topic_id(id)
            })
            .collect();
        return response(shard, &img, version, false)
            .with_brokers(vec![])
            .with_controller_id(BrokerId(-1))
            .with_topics(topics);
    }
    let auto_create = shard.config.broker.auto_create_topics_enable && (version < 4 || req.allow_auto_topic_creation);
    if let (Some(list), true) = (&requested, auto_create) {
        for (name, id) in list {
            // An entry that carries a topic id names an existing topic: never auto-created.
            if let (Some(name), true) = (name, id.is_nil()) {
                if img.topic(name).is_none() && valid_topic_name(name) && !name.starts_with("__") {
                    let (partitions, rf) =
                        (shard.config.broker.num_partitions, shard.config.broker.default_replication_factor);
                    let assignments = match super::topics::place(&img, 0, partitions, rf) {
                        Ok(a) => a,
                        Err((e, msg)) => {
                            tracing::warn!(topic = %name, error = ?e, %msg, "auto-create failed");
                            continue;
                        }
                    };
                    let change = MetadataChange::CreateTopic {
                        name: name.clone(),
                        id: crate::metadata::random_topic_id(),
                        partitions,
                        replication_factor: rf,
                        configs: Default::default(),
                        assignments,
                    };
                    match shard.request_metadata_change(change).await {
                        Ok(new) => img = new,
                        Err((ResponseError::TopicAlreadyExists, _)) => img = shard.image(),
                        Err((e, msg)) => tracing::warn!(topic = %name, error = ?e, %msg, "auto-create failed"),
                    }
                }
            }
        }
    }
    let topics: Vec<MetadataResponseTopic> = match requested {
        None => img
            .topics
            .values()
            .map(|t| topic_entry(&img, t, version, req.include_topic_authorized_operations))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|(name, id)| {
                // As in Kafka, a non-zero topic id wins over the name (the
                // Java admin client sends an empty name with the id).
                let by_id = !id.is_nil();
                let found = if by_id {
                    img.topic_by_id(&TopicId(*id.as_bytes()))
                } else {
                    name.as_deref().and_then(|n| img.topic(n))
                };
                match found {
                    Some(t) => topic_entry(&img, t, version, req.include_topic_authorized_operations),
                    None if by_id => MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_name(None)
                        .with_topic_id(id),
                    None => {
                        let err = match &name {
                            Some(n) if !valid_topic_name(n) => ResponseError::InvalidTopicException,
                            _ => ResponseError::UnknownTopicOrPartition,
                        };
                        MetadataResponseTopic::default()
                            .with_error_code(err.code())
                            .with_name(name.map(|n| TopicName(str_bytes(&n))))
                            .with_topic_id(id)
                    }
                }
            })
            .collect(),
    };
    response(shard, &img, version, req.include_cluster_authorized_operations).with_topics(topics)
}

/// Without ACLs every operation is allowed: these are the bitfields Kafka
/// reports for topics and the cluster (bit = AclOperation code).
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
pub const CLUSTER_OPERATIONS: i32 = (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);
/// Kafka's "not requested" value for authorized-operation fields.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// The live (registered, unfenced) brokers with their client addresses.
/// Before this broker's own registration is applied (its first moments),
/// it lists itself, so a client always has somewhere to go.
pub fn live_brokers(shard: &Shard, img: &MetadataImage) -> Vec<(i32, String, i32)> {
    let mut out: Vec<(i32, String, i32)> = img.live_brokers().map(|b| (b.id, b.host.clone(), b.port)).collect();
    let me = shard.config.broker.node_id;
    if !img.brokers.contains_key(&me) {
        out.push((me, shard.config.advertised_host.clone(), shard.config.advertised_port));
        out.sort_by_key(|b| b.0);
    }
    out
}

/// KIP-951: where a client that hit NOT_LEADER_OR_FOLLOWER should go.
/// Returns the partition's current leader and epoch from the image (the
/// leader -1 when it is offline), and records a live leader in `leaders` so
/// the response can carry its endpoint.
pub fn current_leader(img: &MetadataImage, t: &TopicMeta, partition: i32, leaders: &mut Vec<i32>) -> (i32, i32) {
    let v = partition_view(img, t, partition);
    if v.leader >= 0 && !leaders.contains(&v.leader) {
        leaders.push(v.leader);
    }
    (v.leader, v.leader_epoch)
}

/// The endpoints (id, host, port) of the given live brokers, for the
/// node-endpoints fields of Produce (v10+) and Fetch (v16+).
pub fn endpoints_of(shard: &Shard, img: &MetadataImage, ids: &[i32]) -> Vec<(i32, String, i32)> {
    live_brokers(shard, img).into_iter().filter(|b| ids.contains(&b.0)).collect()
}

/// The active controller's node id as this broker knows it (-1: none). The
/// controller shard publishes it; every broker can be asked.
pub fn controller_id(shard: &Shard) -> i32 {
    match shard.all_metrics[0].quorum.leader.load(std::sync::atomic::Ordering::Relaxed) {
        // During an election: any broker can take admin requests (a
        // proposal waits for, or is forwarded to, the next controller).
        -1 => shard.config.broker.node_id,
        id => id as i32,
    }
}

fn response(shard: &Shard, img: &MetadataImage, version: i16, cluster_ops: bool) -> MetadataResponse {
    let brokers = live_brokers(shard, img)
        .into_iter()
        .map(|(id, host, port)| {
            MetadataResponseBroker::default().with_node_id(BrokerId(id)).with_host(str_bytes(&host)).with_port(port)
        })
        .collect();
    let mut r = MetadataResponse::default().with_brokers(brokers);
    if version >= 1 {
        r = r.with_controller_id(BrokerId(controller_id(shard)));
    }
    if version >= 2 {
        r = r.with_cluster_id(Some(str_bytes(&img.cluster_id)));
    }
    if (8..=10).contains(&version) {
        r = r.with_cluster_authorized_operations(if cluster_ops {
            CLUSTER_OPERATIONS
        } else {
            OPERATIONS_NOT_REQUESTED
        });
    }
    r
}

/// A partition as clients see it in Metadata and DescribeTopicPartitions.
pub struct PartitionView {
    /// 0, or LEADER_NOT_AVAILABLE when no live broker leads it.
    pub error_code: i16,
    /// -1 when offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// Replicas on fenced or unregistered brokers.
    pub offline: Vec<BrokerId>,
}

pub fn partition_view(img: &MetadataImage, t: &TopicMeta, partition: i32) -> PartitionView {
    let live = |b: &i32| img.brokers.get(b).is_some_and(|m| !m.fenced);
    match t.partition(partition) {
        Some(pm) => {
            // A leader on a fenced broker is no leader: the partition is
            // offline until it returns.
            let online = live(&pm.leader);
            PartitionView {
                error_code: if online { 0 } else { ResponseError::LeaderNotAvailable.code() },
                leader: if online { pm.leader } else { -1 },
                leader_epoch: pm.leader_epoch,
                replicas: pm.replicas.iter().map(|b| BrokerId(*b)).collect(),
                isr: pm.isr.iter().map(|b| BrokerId(*b)).collect(),
                offline: pm.replicas.iter().filter(|b| !live(b)).map(|b| BrokerId(*b)).collect(),
            }
        }
        None => PartitionView {
            error_code: ResponseError::LeaderNotAvailable.code(),
            leader: -1,
            leader_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            offline: Vec::new(),
        },
    }
}

fn topic_entry(img: &MetadataImage, t: &TopicMeta, version: i16, ops: bool) -> MetadataResponseTopic {
    let mut e = MetadataResponseTopic::default()
        .with_error_code(0)
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_partitions(
            (0..t.partitions)
                .map(|p| {
                    let v = partition_view(img, t, p);
                    let mut mp = MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(v.error_code)
                        .with_leader_id(BrokerId(v.leader))
                        .with_replica_nodes(v.replicas)
                        .with_isr_nodes(v.isr);
                    if version >= 5 {
                        mp = mp.with_offline_replicas(v.offline);
                    }
                    if version >= 7 {
                        mp = mp.with_leader_epoch(v.leader_epoch);
                    }
                    mp
                })
                .collect(),
        );
    if version >= 1 {
        e = e.with_is_internal(t.internal);
    }
    if version >= 10 {
        e = e.with_topic_id(uuid::Uuid::from_bytes(t.id.0));
    }
    if version >= 8 {
        e = e.with_topic_authorized_operations(if ops { TOPIC_OPERATIONS } else { OPERATIONS_NOT_REQUESTED });
    }
    e
}
