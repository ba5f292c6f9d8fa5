//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics and
//! brokers.
//!
//! Topic configs are Kafka 4's full set (engine/src/config.rs). Broker
//! resources expose the broker-level synonyms of those settings
//! (`log.retention.ms`, `message.max.bytes`, ...): they can be changed
//! dynamically, as the cluster default (resource name "") or for this broker
//! (its id), and are stored in metadata; static broker settings are
//! described read-only.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use ringbroker_engine::config::{
    config_key, config_key_by_broker_name, validate_topic_config, ConfigKey, ConfigType, TOPIC_CONFIG_KEYS,
};

use super::str_bytes;
use crate::metadata::{validate_broker_config, MetadataChange, MetadataImage};
use crate::shard::{DefaultSource, Shard};

const RESOURCE_TOPIC: i8 = 2;
/// Documentation of dynamic broker configs that are stored but do nothing.
const NO_EFFECT_DOC: &str = "a Kafka dynamic broker config: stored and described, no effect in ringbroker";
const RESOURCE_BROKER: i8 = 4;

/// Kafka's ConfigSource values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Topic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

impl From<DefaultSource> for Source {
    fn from(s: DefaultSource) -> Self {
        match s {
            DefaultSource::StaticBroker => Source::StaticBroker,
            DefaultSource::DynamicDefault => Source::DynamicDefaultBroker,
            DefaultSource::DynamicBroker => Source::DynamicBroker,
        }
    }
}

/// One described config: its value, source, and the synonyms in order of
/// precedence (the winning one first), as Kafka reports them.
struct Described {
    name: String,
    value: String,
    source: Source,
    read_only: bool,
    kind: ConfigType,
    doc: Option<&'static str>,
    synonyms: Vec<(String, String, Source)>,
}

impl Described {
    /// A writable setting described by its synonyms, the winning one first.
    fn winner_of(name: &str, key: &ConfigKey, synonyms: Vec<(String, String, Source)>) -> Described {
        let (_, value, source) = synonyms.first().cloned().expect("the default level is always there");
        Described {
            name: name.to_string(),
            value,
            source,
            read_only: false,
            kind: key.kind,
            doc: Some(key.doc),
            synonyms,
        }
    }
}

/// The levels of a topic config below the topic: dynamic broker, dynamic
/// default, static, default — each as (broker config name, value, source).
fn broker_levels(shard: &Shard, img: &MetadataImage, topic_key: &str) -> Vec<(String, String, Source)> {
    let key = config_key(topic_key).expect("known key");
    let mut out = Vec::new();
    let node = shard.config.broker.node_id.to_string();
    let dynamic = |resource: &str| img.broker_configs.get(resource).and_then(|c| c.get(key.broker_name)).cloned();
    if let Some(v) = dynamic(&node) {
        out.push((key.broker_name.to_string(), v, Source::DynamicBroker));
    }
    if let Some(v) = dynamic("") {
        out.push((key.broker_name.to_string(), v, Source::DynamicDefaultBroker));
    }
    if let Some(v) = shard.config.topic_defaults.get(key.name) {
        out.push((key.broker_name.to_string(), v.clone(), Source::StaticBroker));
    }
    out.push((key.broker_name.to_string(), key.default.to_string(), Source::Default));
    out
}

/// Every topic setting with its effective value, source and synonyms.
fn describe_topic(shard: &Shard, img: &MetadataImage, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| {
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(k.name) {
                synonyms.push((k.name.to_string(), v.clone(), Source::Topic));
            }
            synonyms.extend(broker_levels(shard, img, k.name));
            Described::winner_of(k.name, k, synonyms)
        })
        .collect()
}

/// A broker resource: the dynamic-capable log.* settings (for "" only the
/// cluster-default values that are set), then the static settings.
fn describe_broker(shard: &Shard, img: &MetadataImage, resource: &str) -> Vec<Described> {
    if resource.is_empty() {
        return img
            .broker_configs
            .get("")
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let key = config_key_by_broker_name(k);
                Described {
                    name: k.clone(),
                    value: v.clone(),
                    source: Source::DynamicDefaultBroker,
                    read_only: false,
                    kind: key.map_or(ConfigType::String, |c| c.kind),
                    doc: Some(key.map_or(NO_EFFECT_DOC, |c| c.doc)),
                    synonyms: vec![(k.clone(), v.clone(), Source::DynamicDefaultBroker)],
                }
            })
            .collect();
    }
    let mut out: Vec<Described> = TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| Described::winner_of(k.broker_name, k, broker_levels(shard, img, k.name)))
        .collect();
    // Kafka's other dynamic broker configs, as stored (no effect here).
    let node = shard.config.broker.node_id.to_string();
    let mut others: BTreeMap<&String, (&String, Source)> = BTreeMap::new();
    for (resource, source) in [("", Source::DynamicDefaultBroker), (node.as_str(), Source::DynamicBroker)] {
        for (k, v) in img.broker_configs.get(resource).into_iter().flatten() {
            if config_key_by_broker_name(k).is_none() {
                others.insert(k, (v, source));
            }
        }
    }
    for (k, (v, source)) in others {
        out.push(Described {
            name: k.clone(),
            value: v.clone(),
            source,
            read_only: false,
            kind: ConfigType::String,
            doc: Some(NO_EFFECT_DOC),
            synonyms: vec![(k.clone(), v.clone(), source)],
        });
    }
    let b = &shard.config.broker;
    for (name, value, kind) in [
        ("node.id", b.node_id.to_string(), ConfigType::Int),
        ("broker.id", b.node_id.to_string(), ConfigType::Int),
        ("num.partitions", b.num_partitions.to_string(), ConfigType::Int),
        ("auto.create.topics.enable", b.auto_create_topics_enable.to_string(), ConfigType::Boolean),
        ("socket.request.max.bytes", b.socket_request_max_bytes.to_string(), ConfigType::Int),
        ("default.replication.factor", b.default_replication_factor.to_string(), ConfigType::Int),
        ("log.dirs", b.data_dir.display().to_string(), ConfigType::String),
        ("offsets.topic.num.partitions", "50".to_string(), ConfigType::Int),
        ("offsets.topic.replication.factor", "1".to_string(), ConfigType::Short),
        ("transaction.state.log.replication.factor", "1".to_string(), ConfigType::Short),
        ("offsets.retention.minutes", b.offsets_retention_minutes.to_string(), ConfigType::Int),
        ("group.min.session.timeout.ms", b.group_min_session_timeout_ms.to_string(), ConfigType::Int),
        ("group.max.session.timeout.ms", b.group_max_session_timeout_ms.to_string(), ConfigType::Int),
        ("group.initial.rebalance.delay.ms", b.group_initial_rebalance_delay_ms.to_string(), ConfigType::Int),
        ("producer.id.expiration.ms", b.producer_id_expiration_ms.to_string(), ConfigType::Int),
    ] {
        out.push(Described {
            name: name.to_string(),
            synonyms: vec![(name.to_string(), value.clone(), Source::StaticBroker)],
            value,
            source: Source::StaticBroker,
            read_only: true,
            kind,
            doc: None,
        });
    }
    out
}

/// A topic's configs as CreateTopics v5+ returns them: (name, value, source).
pub fn topic_config_entries(
    shard: &Shard,
    img: &MetadataImage,
    overrides: &BTreeMap<String, String>,
) -> Vec<(String, String, i8)> {
    describe_topic(shard, img, overrides).into_iter().map(|d| (d.name, d.value, d.source as i8)).collect()
}

pub async fn describe_configs(shard: &Rc<Shard>, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let img = shard.image();
    let node = shard.config.broker.node_id.to_string();
    let mut results = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let mut res = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let entries = match r.resource_type {
            RESOURCE_TOPIC if name.is_empty() => {
                res = res
                    .with_error_code(ResponseError::InvalidTopicException.code())
                    .with_error_message(Some(str_bytes("the topic name is empty")));
                None
            }
            RESOURCE_TOPIC => match img.topic(&name) {
                Some(t) => Some(describe_topic(shard, &img, &t.configs)),
                None => {
                    res = res
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(&format!("unknown topic '{name}'"))));
                    None
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == node => Some(describe_broker(shard, &img, &name)),
            RESOURCE_BROKER => {
                res = res
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(&format!("unknown broker '{name}'"))));
                None
            }
            _ => {
                res = res
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("unsupported resource type")));
                None
            }
        };
        let wanted: Option<Vec<String>> = r.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect());
        for d in entries.into_iter().flatten() {
            if wanted.as_ref().is_some_and(|w| !w.contains(&d.name)) {
                continue;
            }
            let mut e = DescribeConfigsResourceResult::default()
                .with_name(str_bytes(&d.name))
                .with_value(Some(str_bytes(&d.value)))
                .with_read_only(d.read_only)
                .with_is_sensitive(false);
            // DescribeConfigs v1+ (what we serve) reports the source.
            e = e.with_config_source(d.source as i8);
            if version >= 1 && req.include_synonyms {
                e = e.with_synonyms(
                    d.synonyms
                        .iter()
                        .map(|(n, v, s)| {
                            DescribeConfigsSynonym::default()
                                .with_name(str_bytes(n))
                                .with_value(Some(str_bytes(v)))
                                .with_source(*s as i8)
                        })
                        .collect(),
                );
            }
            if version >= 3 {
                e = e.with_config_type(d.kind as i8);
                e = e.with_documentation(if req.include_documentation { d.doc.map(str_bytes) } else { None });
            }
            res.configs.push(e);
        }
        results.push(res);
    }
    DescribeConfigsResponse::default().with_results(results)
}

type AlterResult = Result<(), (ResponseError, String)>;

/// Changes the configs of one resource with `f` (which gets the current set
/// of overrides), validates the result and records it in metadata.
async fn alter_resource(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    f: impl FnOnce(&mut BTreeMap<String, String>, &dyn Fn(&str) -> Option<String>) -> AlterResult,
) -> AlterResult {
    let img = shard.image();
    // Each resource type: its current overrides, the default of a key, the
    // check of one setting, and the metadata change that stores the result.
    let change = match resource_type {
        RESOURCE_TOPIC => {
            let t =
                img.topic(name).ok_or((ResponseError::UnknownTopicOrPartition, format!("unknown topic '{name}'")))?;
            let mut configs = t.configs.clone();
            f(&mut configs, &|k| config_key(k).map(|c| c.default.to_string()))?;
            for (k, v) in &configs {
                validate_topic_config(k, v).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
            }
            MetadataChange::SetTopicConfigs { name: name.to_string(), configs }
        }
        RESOURCE_BROKER => {
            if !name.is_empty() && name != shard.config.broker.node_id.to_string() {
                return Err((ResponseError::InvalidRequest, format!("unknown broker '{name}'")));
            }
            let mut configs = img.broker_configs.get(name).cloned().unwrap_or_default();
            f(&mut configs, &|k| config_key_by_broker_name(k).map(|c| c.default.to_string()))?;
            for (k, v) in &configs {
                validate_broker_config(k, v)?;
            }
            MetadataChange::SetBrokerConfigs { resource: name.to_string(), configs }
        }
        other => {
            return Err((ResponseError::InvalidRequest, format!("configs of resource type {other} cannot be altered")))
        }
    };
    if validate_only {
        return Ok(());
    }
    shard.request_metadata_change(change).await.map(|_| ())
}

pub async fn alter_configs(shard: &Rc<Shard>, req: AlterConfigsRequest, _version: i16) -> AlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        // AlterConfigs replaces the whole set of overrides.
        let new: Result<BTreeMap<String, String>, (ResponseError, String)> = r
            .configs
            .iter()
            .map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
                    .ok_or((ResponseError::InvalidRequest, format!("config {} has a null value", c.name.as_str())))
            })
            .collect();
        let res = match new {
            Ok(new) => {
                alter_resource(shard, r.resource_type, &name, req.validate_only, |c, _| {
                    *c = new;
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        out.push(match res {
            Ok(()) => base.with_error_code(0),
            Err((e, msg)) => base.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg))),
        });
    }
    AlterConfigsResponse::default().with_responses(out)
}

/// Kafka's IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as Resp;
    let mut out = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let duplicate = {
            let mut seen = std::collections::BTreeSet::new();
            ops.iter().find(|(k, _, _)| !seen.insert(k.clone())).map(|(k, _, _)| k.clone())
        };
        let res = alter_resource(shard, r.resource_type, &name, req.validate_only, move |c, default_of| {
            if let Some(k) = duplicate {
                return Err((ResponseError::InvalidRequest, format!("{k} appears more than once for one resource")));
            }
            for (k, op, v) in ops {
                match (op, v) {
                    (OP_SET, Some(v)) => {
                        c.insert(k, v);
                    }
                    (OP_DELETE, _) => {
                        c.remove(&k);
                    }
                    (OP_APPEND | OP_SUBTRACT, Some(v)) => {
                        // Only list configs take APPEND / SUBTRACT (Kafka: INVALID_CONFIG).
                        let is_list = config_key(&k)
                            .or_else(|| config_key_by_broker_name(&k))
                            .map(|key| key.kind == ConfigType::List)
                            .unwrap_or(false);
                        if !is_list {
                            return Err((
                                ResponseError::InvalidConfig,
                                format!("{k} is not a list config; APPEND and SUBTRACT need one"),
                            ));
                        }
                        let cur = c.get(&k).cloned().or_else(|| default_of(&k)).unwrap_or_default();
                        let mut items: Vec<String> =
                            cur.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                            if op == OP_APPEND {
                                if !items.iter().any(|x| x == item) {
                                    items.push(item.to_string());
                                }
                            } else {
                                items.retain(|x| x != item);
                            }
                        }
                        c.insert(k, items.join(","));
                    }
                    _ => return Err((ResponseError::InvalidRequest, format!("bad operation {op} for {k}"))),
                }
            }
            Ok(())
        })
        .await;
        let base = Resp::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name);
        out.push(match res {
            Ok(()) => base.with_error_code(0),
            Err((e, msg)) => base.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(out)
}
