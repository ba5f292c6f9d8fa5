//! Metadata changes as flatbuffers records (`flatbuffers/schemas/metadata.fbs`):
//! the bytes of the metadata log and of what brokers send each other.
//!
//! `decode` never trusts its input: the buffer is verified (bounded depth,
//! table count and size) before any field is read, every required field is
//! checked, and the result is an ordinary `MetadataChange` that
//! `apply_change` validates like any other. A record kind this broker does
//! not apply yet (partition changes, which come with partition replication)
//! decodes to `RecordError::Unsupported`, never to a guess.

use std::collections::BTreeMap;

use ringbroker_engine::ids::TopicId;
use ringbroker_flatbuffers::flatbuffers::{self, FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};
use ringbroker_flatbuffers::metadata as fb;

use crate::MetadataChange;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a valid metadata record: {0}")]
    Invalid(String),
    #[error("metadata record kind {0} is not applied by this broker")]
    Unsupported(&'static str),
}

/// The bytes of one metadata record.
pub fn encode(change: &MetadataChange) -> Vec<u8> {
    let mut b = FlatBufferBuilder::with_capacity(256);
    let (kind, body) = match change {
        MetadataChange::CreateTopic { name, id, partitions, replication_factor, configs, assignments } => {
            let name = b.create_string(name);
            let configs = encode_configs(&mut b, configs);
            let assignments = encode_assignments(&mut b, assignments);
            let id = fb::Uuid::new(id.as_bytes());
            let t = fb::CreateTopic::create(
                &mut b,
                &fb::CreateTopicArgs {
                    name: Some(name),
                    topic_id: Some(&id),
                    partitions: *partitions,
                    replication_factor: *replication_factor,
                    configs: Some(configs),
                    assignments: Some(assignments),
                },
            );
            (fb::Change::CreateTopic, t.as_union_value())
        }
        MetadataChange::DeleteTopic { name } => {
            let name = b.create_string(name);
            let t = fb::DeleteTopic::create(&mut b, &fb::DeleteTopicArgs { name: Some(name) });
            (fb::Change::DeleteTopic, t.as_union_value())
        }
        MetadataChange::CreatePartitions { name, total, assignments } => {
            let name = b.create_string(name);
            let assignments = encode_assignments(&mut b, assignments);
            let t = fb::CreatePartitions::create(
                &mut b,
                &fb::CreatePartitionsArgs { name: Some(name), total: *total, assignments: Some(assignments) },
            );
            (fb::Change::CreatePartitions, t.as_union_value())
        }
        MetadataChange::SetTopicConfigs { name, configs } => {
            let name = b.create_string(name);
            let configs = encode_configs(&mut b, configs);
            let t = fb::SetTopicConfigs::create(
                &mut b,
                &fb::SetTopicConfigsArgs { name: Some(name), configs: Some(configs) },
            );
            (fb::Change::SetTopicConfigs, t.as_union_value())
        }
        MetadataChange::SetBrokerConfigs { resource, configs } => {
            let resource = b.create_string(resource);
            let configs = encode_configs(&mut b, configs);
            let t = fb::SetBrokerConfigs::create(
                &mut b,
                &fb::SetBrokerConfigsArgs { resource: Some(resource), configs: Some(configs) },
            );
            (fb::Change::SetBrokerConfigs, t.as_union_value())
        }
        MetadataChange::AllocateProducerIds { count } => {
            let t = fb::AllocateProducerIds::create(&mut b, &fb::AllocateProducerIdsArgs { count: *count });
            (fb::Change::AllocateProducerIds, t.as_union_value())
        }
        MetadataChange::InitCluster { cluster_id } => {
            let cluster_id = b.create_string(cluster_id);
            let t = fb::InitCluster::create(&mut b, &fb::InitClusterArgs { cluster_id: Some(cluster_id) });
            (fb::Change::InitCluster, t.as_union_value())
        }
        MetadataChange::RegisterBroker { id, incarnation, host, port, cluster_host, cluster_port, shards } => {
            let client_host = b.create_string(host);
            let cluster_host = b.create_string(cluster_host);
            let incarnation = fb::Uuid::new(incarnation);
            let t = fb::RegisterBroker::create(
                &mut b,
                &fb::RegisterBrokerArgs {
                    broker_id: *id,
                    broker_epoch: 0,
                    incarnation: Some(&incarnation),
                    client_host: Some(client_host),
                    client_port: *port,
                    cluster_host: Some(cluster_host),
                    cluster_port: *cluster_port,
                    shards: *shards,
                },
            );
            (fb::Change::RegisterBroker, t.as_union_value())
        }
        MetadataChange::FenceBroker { id, epoch } => {
            let t = fb::FenceBroker::create(&mut b, &fb::FenceBrokerArgs { broker_id: *id, broker_epoch: *epoch });
            (fb::Change::FenceBroker, t.as_union_value())
        }
    };
    let root = fb::MetadataRecord::create(&mut b, &fb::MetadataRecordArgs { change_type: kind, change: Some(body) });
    b.finish(root, None);
    b.finished_data().to_vec()
}

fn encode_assignments<'a>(
    b: &mut FlatBufferBuilder<'a>,
    assignments: &[Vec<i32>],
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::Replicas<'a>>>> {
    let entries: Vec<_> = assignments
        .iter()
        .map(|r| {
            let brokers = b.create_vector(r);
            fb::Replicas::create(b, &fb::ReplicasArgs { brokers: Some(brokers) })
        })
        .collect();
    b.create_vector(&entries)
}

fn decode_assignments(v: Option<Vector<'_, ForwardsUOffset<fb::Replicas<'_>>>>) -> Vec<Vec<i32>> {
    v.iter().flatten().map(|r| r.brokers().map(|b| b.iter().collect()).unwrap_or_default()).collect()
}

fn uuid(u: &fb::Uuid) -> [u8; 16] {
    let mut id = [0u8; 16];
    for (i, b) in u.bytes().iter().enumerate() {
        id[i] = b;
    }
    id
}

fn encode_configs<'a>(
    b: &mut FlatBufferBuilder<'a>,
    configs: &BTreeMap<String, String>,
) -> WIPOffset<Vector<'a, ForwardsUOffset<fb::ConfigEntry<'a>>>> {
    let entries: Vec<_> = configs
        .iter()
        .map(|(k, v)| {
            let (name, value) = (b.create_string(k), b.create_string(v));
            fb::ConfigEntry::create(b, &fb::ConfigEntryArgs { name: Some(name), value: Some(value) })
        })
        .collect();
    b.create_vector(&entries)
}

/// Reads one metadata record from untrusted bytes.
pub fn decode(bytes: &[u8]) -> Result<MetadataChange, RecordError> {
    let opts = ringbroker_flatbuffers::verifier_options(bytes.len());
    let rec = flatbuffers::root_with_opts::<fb::MetadataRecord>(&opts, bytes)
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    let missing = |what: &str| RecordError::Invalid(format!("{what} is missing"));
    match rec.change_type() {
        fb::Change::CreateTopic => {
            let t = rec.change_as_create_topic().ok_or_else(|| missing("CreateTopic"))?;
            let mut id = [0u8; 16];
            for (i, b) in t.topic_id().bytes().iter().enumerate() {
                id[i] = b;
            }
            Ok(MetadataChange::CreateTopic {
                name: t.name().to_string(),
                id: TopicId(id),
                partitions: t.partitions(),
                replication_factor: t.replication_factor(),
                configs: decode_configs(t.configs())?,
                assignments: decode_assignments(t.assignments()),
            })
        }
        fb::Change::DeleteTopic => {
            let t = rec.change_as_delete_topic().ok_or_else(|| missing("DeleteTopic"))?;
            Ok(MetadataChange::DeleteTopic { name: t.name().to_string() })
        }
        fb::Change::CreatePartitions => {
            let t = rec.change_as_create_partitions().ok_or_else(|| missing("CreatePartitions"))?;
            Ok(MetadataChange::CreatePartitions {
                name: t.name().to_string(),
                total: t.total(),
                assignments: decode_assignments(t.assignments()),
            })
        }
        fb::Change::SetTopicConfigs => {
            let t = rec.change_as_set_topic_configs().ok_or_else(|| missing("SetTopicConfigs"))?;
            Ok(MetadataChange::SetTopicConfigs { name: t.name().to_string(), configs: decode_configs(t.configs())? })
        }
        fb::Change::SetBrokerConfigs => {
            let t = rec.change_as_set_broker_configs().ok_or_else(|| missing("SetBrokerConfigs"))?;
            Ok(MetadataChange::SetBrokerConfigs {
                resource: t.resource().to_string(),
                configs: decode_configs(t.configs())?,
            })
        }
        fb::Change::AllocateProducerIds => {
            let t = rec.change_as_allocate_producer_ids().ok_or_else(|| missing("AllocateProducerIds"))?;
            Ok(MetadataChange::AllocateProducerIds { count: t.count() })
        }
        fb::Change::InitCluster => {
            let t = rec.change_as_init_cluster().ok_or_else(|| missing("InitCluster"))?;
            Ok(MetadataChange::InitCluster { cluster_id: t.cluster_id().to_string() })
        }
        fb::Change::RegisterBroker => {
            let t = rec.change_as_register_broker().ok_or_else(|| missing("RegisterBroker"))?;
            Ok(MetadataChange::RegisterBroker {
                id: t.broker_id(),
                incarnation: uuid(t.incarnation()),
                host: t.client_host().to_string(),
                port: t.client_port(),
                cluster_host: t.cluster_host().to_string(),
                cluster_port: t.cluster_port(),
                shards: t.shards(),
            })
        }
        fb::Change::FenceBroker => {
            let t = rec.change_as_fence_broker().ok_or_else(|| missing("FenceBroker"))?;
            Ok(MetadataChange::FenceBroker { id: t.broker_id(), epoch: t.broker_epoch() })
        }
        fb::Change::PartitionChange => Err(RecordError::Unsupported("PartitionChange")),
        other => Err(RecordError::Invalid(format!("unknown record kind {}", other.0))),
    }
}

fn decode_configs(
    v: Option<Vector<'_, ForwardsUOffset<fb::ConfigEntry<'_>>>>,
) -> Result<BTreeMap<String, String>, RecordError> {
    let mut out = BTreeMap::new();
    for e in v.iter().flatten() {
        if out.insert(e.name().to_string(), e.value().to_string()).is_some() {
            return Err(RecordError::Invalid(format!("config {} appears twice", e.name())));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn configs() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[a-z.]{1,20}", "[ -~]{0,20}", 0..5)
    }

    fn assignments() -> impl Strategy<Value = Vec<Vec<i32>>> {
        proptest::collection::vec(proptest::collection::vec(any::<i32>(), 0..4), 0..6)
    }

    fn change() -> impl Strategy<Value = MetadataChange> {
        prop_oneof![
            ("[a-zA-Z0-9._-]{1,40}", any::<[u8; 16]>(), any::<i32>(), any::<i16>(), configs(), assignments()).prop_map(
                |(name, id, partitions, replication_factor, configs, assignments)| MetadataChange::CreateTopic {
                    name,
                    id: TopicId(id),
                    partitions,
                    replication_factor,
                    configs,
                    assignments,
                }
            ),
            "[a-z]{0,20}".prop_map(|name| MetadataChange::DeleteTopic { name }),
            ("[a-z]{1,20}", any::<i32>(), assignments())
                .prop_map(|(name, total, assignments)| MetadataChange::CreatePartitions { name, total, assignments }),
            (any::<i32>(), any::<[u8; 16]>(), "[a-z.]{0,20}", any::<i32>(), "[a-z.]{0,20}", any::<i32>(), any::<u16>())
                .prop_map(|(id, incarnation, host, port, cluster_host, cluster_port, shards)| {
                    MetadataChange::RegisterBroker { id, incarnation, host, port, cluster_host, cluster_port, shards }
                }),
            (any::<i32>(), any::<i64>()).prop_map(|(id, epoch)| MetadataChange::FenceBroker { id, epoch }),
            ("[a-z]{1,20}", configs()).prop_map(|(name, configs)| MetadataChange::SetTopicConfigs { name, configs }),
            ("[0-9]{0,3}", configs())
                .prop_map(|(resource, configs)| MetadataChange::SetBrokerConfigs { resource, configs }),
            any::<i64>().prop_map(|count| MetadataChange::AllocateProducerIds { count }),
            "[A-Za-z0-9_-]{0,22}".prop_map(|cluster_id| MetadataChange::InitCluster { cluster_id }),
        ]
    }

    proptest! {
        #[test]
        fn every_change_round_trips(c in change()) {
            prop_assert_eq!(decode(&encode(&c)).unwrap(), c);
        }

        /// Any bytes: an error or a change, never a panic; and a change that
        /// decodes re-encodes to something that decodes to the same change.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(c) = decode(&bytes) {
                prop_assert_eq!(decode(&encode(&c)).unwrap(), c);
            }
        }

        /// Flipping bytes of a real record: still an error or a change.
        #[test]
        fn corrupted_records_never_panic(c in change(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = encode(&c);
            for (i, x) in flips {
                let at = i.index(bytes.len());
                bytes[at] ^= x;
            }
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn records_this_broker_does_not_apply_are_refused_not_guessed() {
        let mut b = FlatBufferBuilder::new();
        let id = fb::Uuid::new(&[1; 16]);
        let t = fb::PartitionChange::create(
            &mut b,
            &fb::PartitionChangeArgs { topic_id: Some(&id), partition: 0, ..Default::default() },
        );
        let root = fb::MetadataRecord::create(
            &mut b,
            &fb::MetadataRecordArgs { change_type: fb::Change::PartitionChange, change: Some(t.as_union_value()) },
        );
        b.finish(root, None);
        assert_eq!(decode(b.finished_data()), Err(RecordError::Unsupported("PartitionChange")));
        assert!(matches!(decode(&[1, 2, 3]), Err(RecordError::Invalid(_))));
    }
}
