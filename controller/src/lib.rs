//! The controller's state machine: the cluster metadata image and the
//! changes that move it on.
//!
//! `apply_change` is pure: no I/O, no clock, no randomness (topic ids and
//! every other choice are made before a change is proposed and travel in
//! it). So the same sequence of changes gives the same image on every
//! broker, which is what a replicated metadata log needs. Storage of the
//! image (today a file on one node) lives with the broker, not here.

pub mod liveness;
pub mod quorum;
pub mod records;

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use ringbroker_engine::ids::TopicId;
use serde::{Deserialize, Serialize};

/// The topics only brokers write: consumer group offsets (and, once
/// transactions exist, their state). Kafka's list, not a name prefix: a user
/// topic may start with "__".
pub const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// What a client asks of a topic's data that internal topics refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientWrite {
    Produce,
    DeleteRecords,
}

/// Clients may not append to an internal topic or delete its records (the
/// brokers' group coordinators own `__consumer_offsets`): Kafka answers
/// INVALID_TOPIC_EXCEPTION for the partition.
pub fn check_client_write(topic: &TopicMeta, write: ClientWrite) -> Result<(), (ResponseError, String)> {
    if !is_internal_topic(&topic.name) {
        return Ok(());
    }
    let what = match write {
        ClientWrite::Produce => "append to",
        ClientWrite::DeleteRecords => "delete records of",
    };
    Err((ResponseError::InvalidTopicException, format!("Cannot {what} internal topic {}", topic.name)))
}

/// Internal topics cannot be deleted or grown by clients. Kafka 4 lets a
/// client do both to `__consumer_offsets`, and either loses every group's
/// committed offsets or maps groups onto partitions no coordinator uses; we
/// refuse with INVALID_REQUEST (docs/compatibility.md).
fn refuse_internal(name: &str, what: &str) -> Result<(), (ResponseError, String)> {
    if is_internal_topic(name) {
        return Err((ResponseError::InvalidRequest, format!("the internal topic {name} cannot be {what}")));
    }
    Ok(())
}

/// Shard that owns a partition: a stable hash of (topic id, partition) over
/// the shard count, so placement does not depend on creation order.
pub fn placement(topic_id: &TopicId, partition: i32, shard_count: usize) -> usize {
    let mut key = [0u8; 20];
    key[..16].copy_from_slice(topic_id.as_bytes());
    key[16..].copy_from_slice(&partition.to_be_bytes());
    (xxhash_rust::xxh3::xxh3_64(&key) % shard_count as u64) as usize
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    pub replication_factor: i16,
    /// Topic-level overrides only; defaults come from the broker config.
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
    /// Replicas, leader and ISR of each partition, by partition index.
    #[serde(default)]
    pub assignments: Vec<PartitionMeta>,
}

impl TopicMeta {
    pub fn partition(&self, p: i32) -> Option<&PartitionMeta> {
        usize::try_from(p).ok().and_then(|p| self.assignments.get(p))
    }
}

/// Where one partition lives. At creation the leader is the first (the
/// preferred) replica and the ISR holds the leader alone: a follower joins
/// the ISR once it has caught up, which takes partition replication (the
/// followers are placed and idle until then).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionMeta {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Counts every change to this partition's replicas, ISR or leader.
    pub partition_epoch: i32,
}

impl PartitionMeta {
    pub fn new(replicas: Vec<i32>) -> PartitionMeta {
        PartitionMeta { leader: replicas[0], isr: vec![replicas[0]], replicas, leader_epoch: 0, partition_epoch: 0 }
    }
}

/// A registered broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BrokerMeta {
    pub id: i32,
    /// The image version at which this registration applied: larger after
    /// every restart or re-registration.
    pub epoch: i64,
    /// Random per process start: tells a restart from a duplicate proposal.
    pub incarnation: [u8; 16],
    /// Client listener, as advertised.
    pub host: String,
    pub port: i32,
    /// Broker-to-broker listener ("" if none).
    pub cluster_host: String,
    pub cluster_port: i32,
    pub shards: u16,
    /// Missed its heartbeats: its partitions are offline until it registers again.
    pub fenced: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct MetadataImage {
    pub cluster_id: String,
    /// Incremented by every change.
    pub version: u64,
    /// Shared between successive images: a change copies only the topic it
    /// touches, and an unchanged topic is the same allocation in both
    /// (`Arc::ptr_eq`), so brokers see what changed without comparing.
    pub topics: BTreeMap<String, Arc<TopicMeta>>,
    /// Producer ids below this have been handed out (in blocks).
    #[serde(default)]
    pub next_producer_id: i64,
    /// Dynamic broker configs (AlterConfigs on a BROKER resource), by
    /// resource name: "" is the cluster-wide default, "<id>" one broker.
    /// Keys are broker config names (`log.retention.ms`); each sets the
    /// default of a topic config for topics without their own override.
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Registered brokers, by id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerMeta>,
}

impl MetadataImage {
    /// What differs between the topics of `prev` and of this image, in one
    /// ordered walk of both (no lookups): the topics of this image that are
    /// new or changed, and whether any topic of `prev` was removed or
    /// changed. Successive images share unchanged topics, so "changed" is
    /// "not the same allocation"; images read from disk share nothing and
    /// everything counts as changed, which costs work, never correctness.
    pub fn topic_changes<'a>(&'a self, prev: &MetadataImage) -> (Vec<&'a Arc<TopicMeta>>, bool) {
        let mut changed = Vec::new();
        let mut prev_touched = false;
        let (mut old, mut new) = (prev.topics.iter().peekable(), self.topics.iter().peekable());
        loop {
            match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => {
                    prev_touched = true;
                    break;
                }
                (None, Some(_)) => changed.extend(new.by_ref().map(|(_, t)| t)),
                (Some((on, ot)), Some((nn, nt))) => match on.cmp(nn) {
                    std::cmp::Ordering::Less => {
                        prev_touched = true;
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        changed.push(*nt);
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if !Arc::ptr_eq(ot, nt) {
                            prev_touched = true;
                            changed.push(*nt);
                        }
                        old.next();
                        new.next();
                    }
                },
            }
        }
        (changed, prev_touched)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name).map(|t| &**t)
    }
    pub fn topic_by_id(&self, id: &TopicId) -> Option<&TopicMeta> {
        self.topics.values().find(|t| &t.id == id).map(|t| &**t)
    }
    /// Registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

/// Kafka's replica placement without racks: partition p's first replica is
/// broker `(start + p) % n` of the live brokers (sorted by id), and the
/// others follow it at a shift that changes each time the partitions wrap
/// around the brokers, so followers spread as well as leaders. `start` and
/// `shift` are random per call (chosen by the proposer).
pub fn assign_replicas(
    live: &[i32],
    first_partition: i32,
    count: i32,
    replication_factor: i16,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>, (ResponseError, String)> {
    let n = live.len();
    if replication_factor < 1 {
        return Err((ResponseError::InvalidReplicationFactor, "Replication factor must be larger than 0.".into()));
    }
    if replication_factor as usize > n {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {n} broker(s) are registered."),
        ));
    }
    let mut out = Vec::with_capacity(count.max(0) as usize);
    for p in first_partition..first_partition + count {
        let p = p as usize;
        let first = (start + p) % n;
        let mut replicas = vec![live[first]];
        if n > 1 {
            let wrap_shift = shift + p / n;
            for j in 0..replication_factor as usize - 1 {
                replicas.push(live[(first + 1 + (wrap_shift + j) % (n - 1)) % n]);
            }
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Checks replica assignments against the image: one per partition, each of
/// `replication_factor` distinct registered brokers.
fn check_assignments(
    img: &MetadataImage,
    assignments: &[Vec<i32>],
    count: i32,
    replication_factor: i16,
) -> Result<(), (ResponseError, String)> {
    if assignments.len() != count as usize {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!("{} replica assignments for {count} partitions", assignments.len()),
        ));
    }
    for (i, r) in assignments.iter().enumerate() {
        if r.is_empty() || r.len() != replication_factor as usize {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!("partition {i} has {} replicas, expected {replication_factor}", r.len()),
            ));
        }
        if let Some(b) = r.iter().find(|b| !img.brokers.contains_key(b)) {
            return Err((ResponseError::InvalidReplicaAssignment, format!("broker {b} is not registered")));
        }
        let mut sorted = r.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != r.len() {
            return Err((ResponseError::InvalidReplicaAssignment, format!("partition {i} names a broker twice")));
        }
    }
    Ok(())
}

/// A change to metadata, as it will be recorded in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataChange {
    /// The topic id is chosen before the record is proposed, so every
    /// replica of the metadata log applies the same one.
    CreateTopic {
        name: String,
        id: TopicId,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        /// Replicas of each partition (`assign_replicas`, or the client's).
        assignments: Vec<Vec<i32>>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        total: i32,
        /// Replicas of each new partition.
        assignments: Vec<Vec<i32>>,
    },
    /// Replaces the topic's overrides whole (AlterConfigs semantics).
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Reserves `count` producer ids starting at the image's `next_producer_id`.
    AllocateProducerIds {
        count: i64,
    },
    /// Replaces the dynamic configs of a broker resource ("" = cluster default).
    SetBrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
    },
    /// Names a new cluster: the first record its first leader commits.
    InitCluster {
        cluster_id: String,
    },
    /// A broker starts, or comes back after being fenced; it is live and
    /// its epoch becomes the image version of this record.
    RegisterBroker {
        id: i32,
        incarnation: [u8; 16],
        host: String,
        port: i32,
        cluster_host: String,
        cluster_port: i32,
        shards: u16,
    },
    /// The controller stopped hearing from a broker (of that epoch).
    FenceBroker {
        id: i32,
        epoch: i64,
    },
}

/// Checks a dynamic broker config. The broker synonyms of topic configs
/// (`log.retention.ms`, `message.max.bytes`, ...) are validated and set the
/// topic defaults. Kafka's other dynamically updatable broker configs
/// (listener, TLS and SASL settings, thread pools, connection limits,
/// throttles...) are accepted and stored so that tools which set them work,
/// but they have no effect here (docs/configuration.md); names Kafka does
/// not know are INVALID_CONFIG.
pub fn validate_broker_config(name: &str, value: &str) -> Result<(), (ResponseError, String)> {
    if let Some(key) = ringbroker_engine::config::config_key_by_broker_name(name) {
        return key.check(value).map_err(|e| (ResponseError::InvalidConfig, format!("{name}: {}", e.reason)));
    }
    if is_kafka_dynamic_broker_config(name) {
        return Ok(());
    }
    Err((ResponseError::InvalidConfig, format!("'{name}' is not a broker config that can be changed dynamically")))
}

/// Kafka 4's dynamically updatable broker configs that are not topic-config
/// synonyms (Kafka's DynamicBrokerConfig lists them).
const KAFKA_DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "background.threads",
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
    "listener.security.protocol.map",
    "listeners",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.threads",
    "max.connection.creation.rate",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "metric.reporters",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    "principal.builder.class",
    "producer.id.expiration.ms",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "transaction.partition.verification.enable",
];

fn is_kafka_dynamic_broker_config(name: &str) -> bool {
    KAFKA_DYNAMIC_BROKER_CONFIGS.contains(&name)
        || ["ssl.", "sasl.", "listener.name.", "remote.log.manager.", "remote.log.reader.", "remote.log.index."]
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len())
}

/// Topic names Kafka accepts: 1..=249 of [a-zA-Z0-9._-], not "." or "..".
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// Applies a change to an image, or explains (as a Kafka error) why not.
///
/// Pure and deterministic: the same image and change give the same result on
/// every broker (nothing random, no clock), so replaying a metadata log
/// rebuilds the same image everywhere.
pub fn apply_change(img: &MetadataImage, change: &MetadataChange) -> Result<MetadataImage, (ResponseError, String)> {
    let mut next = img.clone();
    match change {
        MetadataChange::CreateTopic { name, id, partitions, replication_factor, configs, assignments } => {
            if !valid_topic_name(name) {
                return Err((ResponseError::InvalidTopicException, format!("invalid topic name '{name}'")));
            }
            if img.topics.contains_key(name) {
                return Err((ResponseError::TopicAlreadyExists, format!("topic '{name}' already exists")));
            }
            if id.is_zero() || img.topic_by_id(id).is_some() {
                return Err((ResponseError::InvalidRequest, format!("topic id for '{name}' is zero or taken")));
            }
            if *partitions < 1 || *partitions > 100_000 {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("partitions must be within [1, 100000], got {partitions}"),
                ));
            }
            check_assignments(img, assignments, *partitions, *replication_factor)?;
            for (k, v) in configs {
                ringbroker_engine::config::validate_topic_config(k, v)
                    .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
            }
            next.topics.insert(
                name.clone(),
                Arc::new(TopicMeta {
                    name: name.clone(),
                    id: *id,
                    partitions: *partitions,
                    replication_factor: *replication_factor,
                    configs: configs.clone(),
                    internal: is_internal_topic(name),
                    assignments: assignments.iter().cloned().map(PartitionMeta::new).collect(),
                }),
            );
        }
        MetadataChange::DeleteTopic { name } => {
            refuse_internal(name, "deleted")?;
            if next.topics.remove(name).is_none() {
                return Err((ResponseError::UnknownTopicOrPartition, format!("unknown topic '{name}'")));
            }
        }
        MetadataChange::CreatePartitions { name, total, assignments } => {
            refuse_internal(name, "grown")?;
            let t = next
                .topics
                .get_mut(name)
                .ok_or((ResponseError::UnknownTopicOrPartition, format!("unknown topic '{name}'")))?;
            if *total <= t.partitions {
                return Err((
                    ResponseError::InvalidPartitions,
                    format!("topic has {} partitions; the new count must be larger, got {total}", t.partitions),
                ));
            }
            if *total > 100_000 {
                return Err((ResponseError::InvalidPartitions, "at most 100000 partitions".into()));
            }
            let rf = t.replication_factor;
            let new = *total - t.partitions;
            check_assignments(img, assignments, new, rf)?;
            let t = Arc::make_mut(next.topics.get_mut(name).expect("checked above"));
            t.partitions = *total;
            t.assignments.extend(assignments.iter().cloned().map(PartitionMeta::new));
        }
        MetadataChange::SetTopicConfigs { name, configs } => {
            let t = next
                .topics
                .get_mut(name)
                .ok_or((ResponseError::UnknownTopicOrPartition, format!("unknown topic '{name}'")))?;
            for (k, v) in configs {
                ringbroker_engine::config::validate_topic_config(k, v)
                    .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
            }
            Arc::make_mut(t).configs = configs.clone();
        }
        MetadataChange::SetBrokerConfigs { resource, configs } => {
            for (k, v) in configs {
                validate_broker_config(k, v)?;
            }
            if configs.is_empty() {
                next.broker_configs.remove(resource);
            } else {
                next.broker_configs.insert(resource.clone(), configs.clone());
            }
        }
        MetadataChange::AllocateProducerIds { count } => {
            if *count < 1 || next.next_producer_id.checked_add(*count).is_none() {
                return Err((ResponseError::UnknownServerError, "producer id space exhausted".into()));
            }
            next.next_producer_id += count;
        }
        MetadataChange::InitCluster { cluster_id } => {
            if !img.cluster_id.is_empty() {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("the cluster is already named {}", img.cluster_id),
                ));
            }
            if cluster_id.is_empty() || cluster_id.len() > 64 {
                return Err((ResponseError::InvalidRequest, "a cluster id has 1 to 64 characters".into()));
            }
            next.cluster_id = cluster_id.clone();
        }
        MetadataChange::RegisterBroker { id, incarnation, host, port, cluster_host, cluster_port, shards } => {
            if *id < 0 || host.is_empty() || !(1..=65535).contains(port) || *shards == 0 {
                return Err((ResponseError::InvalidRequest, format!("broker {id}: invalid registration")));
            }
            next.brokers.insert(
                *id,
                BrokerMeta {
                    id: *id,
                    epoch: img.version as i64 + 1,
                    incarnation: *incarnation,
                    host: host.clone(),
                    port: *port,
                    cluster_host: cluster_host.clone(),
                    cluster_port: *cluster_port,
                    shards: *shards,
                    fenced: false,
                },
            );
        }
        MetadataChange::FenceBroker { id, epoch } => match next.brokers.get_mut(id) {
            Some(b) if b.epoch == *epoch && !b.fenced => b.fenced = true,
            _ => {
                return Err((ResponseError::StaleBrokerEpoch, format!("broker {id} epoch {epoch} is not live")));
            }
        },
    }
    next.version += 1;
    Ok(next)
}

/// An image with brokers `ids` registered (test helper).
#[cfg(test)]
pub(crate) fn test_image(ids: &[i32]) -> MetadataImage {
    ids.iter().fold(MetadataImage::default(), |img, &id| {
        apply_change(
            &img,
            &MetadataChange::RegisterBroker {
                id,
                incarnation: [id as u8 + 1; 16],
                host: "127.0.0.1".into(),
                port: 9092 + id,
                cluster_host: String::new(),
                cluster_port: 0,
                shards: 1,
            },
        )
        .unwrap()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_alter_grow_delete() {
        let img = test_image(&[1]);
        let c = MetadataChange::CreateTopic {
            name: "t".into(),
            id: TopicId([1; 16]),
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: vec![vec![1]; 3],
        };
        let img = apply_change(&img, &c).unwrap();
        assert_eq!(img.topic("t").unwrap().partitions, 3);
        assert_eq!(apply_change(&img, &c).unwrap_err().0, ResponseError::TopicAlreadyExists);
        let img = apply_change(
            &img,
            &MetadataChange::CreatePartitions { name: "t".into(), total: 5, assignments: vec![vec![1]; 2] },
        )
        .unwrap();
        assert_eq!(img.topic("t").unwrap().partitions, 5);
        assert_eq!(
            apply_change(
                &img,
                &MetadataChange::CreatePartitions { name: "t".into(), total: 4, assignments: vec![vec![1]; 1] }
            )
            .unwrap_err()
            .0,
            ResponseError::InvalidPartitions
        );
        let mut cfg = BTreeMap::new();
        cfg.insert("retention.ms".to_string(), "x".to_string());
        assert_eq!(
            apply_change(&img, &MetadataChange::SetTopicConfigs { name: "t".into(), configs: cfg }).unwrap_err().0,
            ResponseError::InvalidConfig
        );
        // Another topic may not take a topic id in use.
        let same_id = MetadataChange::CreateTopic {
            name: "u".into(),
            id: TopicId([1; 16]),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: vec![vec![1]; 1],
        };
        assert_eq!(apply_change(&img, &same_id).unwrap_err().0, ResponseError::InvalidRequest);
        let img = apply_change(&img, &MetadataChange::DeleteTopic { name: "t".into() }).unwrap();
        assert!(img.topics.is_empty());
        assert!(!valid_topic_name("a/b") && !valid_topic_name("..") && valid_topic_name("a.b-c_d"));
    }

    #[test]
    fn dynamic_broker_configs_kafka_knows_are_accepted() {
        assert!(validate_broker_config("log.retention.ms", "1000").is_ok());
        assert_eq!(validate_broker_config("log.retention.ms", "soon").unwrap_err().0, ResponseError::InvalidConfig);
        assert!(validate_broker_config("sasl.kerberos.min.time.before.relogin", "58000").is_ok());
        assert!(validate_broker_config("listener.name.plain.ssl.keystore.location", "/k").is_ok());
        assert!(validate_broker_config("max.connections", "100").is_ok());
        assert_eq!(validate_broker_config("no.such.config", "1").unwrap_err().0, ResponseError::InvalidConfig);
        assert_eq!(validate_broker_config("ssl.", "1").unwrap_err().0, ResponseError::InvalidConfig);
    }

    #[test]
    fn replicas_spread_over_brokers_and_assignments_are_checked() {
        let a = assign_replicas(&[1, 2, 3], 0, 6, 3, 0, 0).unwrap();
        for r in &a {
            let mut s = r.clone();
            s.sort_unstable();
            assert_eq!(s, [1, 2, 3], "three distinct replicas: {r:?}");
        }
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, [1, 2, 3, 1, 2, 3], "leaders rotate");
        let a = assign_replicas(&[1, 2, 3, 4, 5], 3, 10, 2, 4, 1).unwrap();
        assert!(a.iter().all(|r| r.len() == 2 && r[0] != r[1]));
        assert_eq!(assign_replicas(&[1, 2], 0, 1, 3, 0, 0).unwrap_err().0, ResponseError::InvalidReplicationFactor);
        assert_eq!(assign_replicas(&[1], 0, 1, 0, 0, 0).unwrap_err().0, ResponseError::InvalidReplicationFactor);

        let img = test_image(&[1, 2]);
        let create = |assignments: Vec<Vec<i32>>, rf| MetadataChange::CreateTopic {
            name: "t".into(),
            id: TopicId([4; 16]),
            partitions: 2,
            replication_factor: rf,
            configs: BTreeMap::new(),
            assignments,
        };
        let bad = [
            (vec![vec![1, 2]], 2),             // one assignment for two partitions
            (vec![vec![1, 1], vec![2, 1]], 2), // a broker twice
            (vec![vec![1, 3], vec![2, 1]], 2), // broker 3 is not registered
            (vec![vec![1], vec![2, 1]], 2),    // wrong replication factor
        ];
        for (a, rf) in bad {
            assert_eq!(
                apply_change(&img, &create(a.clone(), rf)).unwrap_err().0,
                ResponseError::InvalidReplicaAssignment,
                "{a:?}"
            );
        }
        let img = apply_change(&img, &create(vec![vec![2, 1], vec![1, 2]], 2)).unwrap();
        let p1 = img.topic("t").unwrap().partition(1).unwrap();
        assert_eq!((p1.leader, p1.isr.clone(), p1.leader_epoch), (1, vec![1], 0));
    }

    #[test]
    fn brokers_register_with_growing_epochs_and_stale_fences_are_refused() {
        let img = test_image(&[1, 2]);
        let e1 = img.brokers[&1].epoch;
        assert!(img.brokers[&2].epoch > e1);
        let img = apply_change(&img, &MetadataChange::FenceBroker { id: 1, epoch: e1 }).unwrap();
        assert!(img.brokers[&1].fenced);
        assert_eq!(img.live_brokers().map(|b| b.id).collect::<Vec<_>>(), [2]);
        // Fencing again, or an older epoch: refused.
        assert_eq!(
            apply_change(&img, &MetadataChange::FenceBroker { id: 1, epoch: e1 }).unwrap_err().0,
            ResponseError::StaleBrokerEpoch
        );
        // Registering again unfences with a new epoch.
        let again = MetadataChange::RegisterBroker {
            id: 1,
            incarnation: [9; 16],
            host: "h".into(),
            port: 1,
            cluster_host: "h".into(),
            cluster_port: 2,
            shards: 2,
        };
        let img = apply_change(&img, &again).unwrap();
        assert!(!img.brokers[&1].fenced && img.brokers[&1].epoch > e1);
        assert_eq!(
            apply_change(&img, &MetadataChange::FenceBroker { id: 1, epoch: e1 }).unwrap_err().0,
            ResponseError::StaleBrokerEpoch
        );
    }

    #[test]
    fn placement_is_stable_and_in_range() {
        for p in 0..100 {
            let s = placement(&TopicId([7; 16]), p, 3);
            assert!(s < 3);
            assert_eq!(s, placement(&TopicId([7; 16]), p, 3));
        }
    }
}

#[cfg(test)]
mod internal_topics {
    use super::*;

    #[test]
    fn topic_changes_finds_new_changed_and_removed_topics() {
        let mut a = MetadataImage::default();
        for n in ["a", "b", "c"] {
            a.topics.insert(n.into(), Arc::new(topic(n)));
        }
        let mut b = a.clone();
        assert_eq!(b.topic_changes(&a), (vec![], false));
        b.topics.insert("bb".into(), Arc::new(topic("bb")));
        let (changed, touched) = b.topic_changes(&a);
        assert_eq!(changed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["bb"]);
        assert!(!touched);
        Arc::make_mut(b.topics.get_mut("c").unwrap()).partitions = 9;
        b.topics.remove("a");
        let (changed, touched) = b.topic_changes(&a);
        assert_eq!(changed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["bb", "c"]);
        assert!(touched);
        // Nothing shared: everything counts as changed.
        let fresh: MetadataImage = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(fresh.topic_changes(&a).0.len(), 3);
    }

    fn topic(name: &str) -> TopicMeta {
        TopicMeta {
            name: name.into(),
            id: TopicId([9; 16]),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
            internal: is_internal_topic(name),
            assignments: vec![PartitionMeta::new(vec![1])],
        }
    }

    #[test]
    fn clients_cannot_write_to_internal_topics() {
        let offsets = topic("__consumer_offsets");
        for w in [ClientWrite::Produce, ClientWrite::DeleteRecords] {
            assert_eq!(check_client_write(&offsets, w).unwrap_err().0, ResponseError::InvalidTopicException);
        }
        // A user topic whose name starts with "__" is an ordinary topic.
        assert!(!is_internal_topic("__mine"));
        assert!(check_client_write(&topic("__mine"), ClientWrite::Produce).is_ok());
        assert!(check_client_write(&topic("orders"), ClientWrite::DeleteRecords).is_ok());
    }

    #[test]
    fn clients_cannot_delete_or_grow_internal_topics() {
        let img = apply_change(
            &test_image(&[1]),
            &MetadataChange::CreateTopic {
                name: "__consumer_offsets".into(),
                id: TopicId([5; 16]),
                partitions: 50,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignments: vec![vec![1]; 50],
            },
        )
        .unwrap();
        assert!(img.topic("__consumer_offsets").unwrap().internal);
        let delete = MetadataChange::DeleteTopic { name: "__consumer_offsets".into() };
        assert_eq!(apply_change(&img, &delete).unwrap_err().0, ResponseError::InvalidRequest);
        let grow = MetadataChange::CreatePartitions {
            name: "__consumer_offsets".into(),
            total: 60,
            assignments: vec![vec![1]; 10],
        };
        assert_eq!(apply_change(&img, &grow).unwrap_err().0, ResponseError::InvalidRequest);
    }
}

#[cfg(test)]
mod replay {
    use super::*;

    /// Replaying the same changes from the same image gives the same image:
    /// nothing in `apply_change` depends on anything but its arguments.
    #[test]
    fn replay_is_deterministic() {
        let changes = [
            MetadataChange::CreateTopic {
                name: "a".into(),
                id: TopicId([3; 16]),
                partitions: 2,
                replication_factor: 1,
                configs: BTreeMap::new(),
                assignments: vec![vec![1]; 2],
            },
            MetadataChange::AllocateProducerIds { count: 1000 },
            MetadataChange::CreatePartitions { name: "a".into(), total: 4, assignments: vec![vec![1]; 2] },
            MetadataChange::SetBrokerConfigs {
                resource: "".into(),
                configs: [("log.retention.ms".to_string(), "1000".to_string())].into(),
            },
        ];
        let run = || changes.iter().fold(test_image(&[1]), |img, c| apply_change(&img, c).unwrap());
        assert_eq!(run(), run());
        assert_eq!(run().version, 5, "one registration and four changes");
        assert_eq!(run().next_producer_id, 1000);
    }
}
