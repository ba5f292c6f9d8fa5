//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics (and a
//! read-only view of the broker's topic defaults).

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use ringbroker_engine::config::{config_key, validate_topic_config, TOPIC_CONFIG_KEYS};

use super::str_bytes;
use crate::metadata::MetadataChange;
use crate::shard::Shard;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka ConfigSource values.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Every topic setting with its effective value and source.
pub fn topic_config_entries(shard: &Shard, overrides: &BTreeMap<String, String>) -> Vec<(String, String, i8)> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|k| {
            if let Some(v) = overrides.get(k.name) {
                (k.name.to_string(), v.clone(), SOURCE_TOPIC)
            } else if let Some(v) = shard.config.topic_defaults.get(k.name) {
                (k.name.to_string(), v.clone(), SOURCE_STATIC_BROKER)
            } else {
                (k.name.to_string(), k.default.to_string(), SOURCE_DEFAULT)
            }
        })
        .collect()
}

/// Kafka ConfigType for DescribeConfigs v3+.
fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,                          // LIST
        "message.timestamp.type" | "flush.policy" => 2, // STRING
        "min.cleanable.dirty.ratio" => 6,               // DOUBLE
        "max.message.bytes" | "segment.bytes" | "index.interval.bytes" | "min.insync.replicas" => 3, // INT
        _ => 5,                                         // LONG
    }
}

pub async fn describe_configs(shard: &Rc<Shard>, req: DescribeConfigsRequest, version: i16) -> DescribeConfigsResponse {
    let img = shard.image();
    let mut results = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let mut res = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let entries = match r.resource_type {
            RESOURCE_TOPIC => match img.topic(&name) {
                Some(t) => Some(topic_config_entries(shard, &t.configs)),
                None => {
                    res = res
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_error_message(Some(str_bytes(&format!("unknown topic '{name}'"))));
                    None
                }
            },
            RESOURCE_BROKER if name.is_empty() || name == shard.config.broker.node_id.to_string() => {
                let mut v: Vec<(String, String, i8)> = topic_config_entries(shard, &BTreeMap::new())
                    .into_iter()
                    .map(|(k, v, s)| (format!("log.{k}"), v, s))
                    .collect();
                v.push(("num.partitions".into(), shard.config.broker.num_partitions.to_string(), SOURCE_STATIC_BROKER));
                v.push((
                    "auto.create.topics.enable".into(),
                    shard.config.broker.auto_create_topics_enable.to_string(),
                    SOURCE_STATIC_BROKER,
                ));
                v.push((
                    "socket.request.max.bytes".into(),
                    shard.config.broker.socket_request_max_bytes.to_string(),
                    SOURCE_STATIC_BROKER,
                ));
                v.push((
                    "default.replication.factor".into(),
                    shard.config.broker.default_replication_factor.to_string(),
                    SOURCE_STATIC_BROKER,
                ));
                Some(v)
            }
            _ => {
                res = res
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("unsupported resource")));
                None
            }
        };
        if let Some(entries) = entries {
            let wanted: Option<Vec<String>> = r.configuration_keys.map(|ks| ks.iter().map(|k| k.to_string()).collect());
            for (k, v, src) in entries {
                if let Some(w) = &wanted {
                    if !w.contains(&k) {
                        continue;
                    }
                }
                let mut e = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(&k))
                    .with_value(Some(str_bytes(&v)))
                    .with_read_only(r.resource_type == RESOURCE_BROKER)
                    .with_config_source(src);
                if version >= 3 {
                    e = e.with_config_type(config_type(k.trim_start_matches("log.")));
                    if req.include_documentation {
                        e = e.with_documentation(config_key(k.trim_start_matches("log.")).map(|c| str_bytes(c.doc)));
                    }
                }
                res.configs.push(e);
            }
        }
        results.push(res);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn check_all(configs: &BTreeMap<String, String>) -> Result<(), (ResponseError, String)> {
    for (k, v) in configs {
        validate_topic_config(k, v).map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    }
    Ok(())
}

async fn set_topic_configs(
    shard: &Rc<Shard>,
    resource_type: i8,
    name: &str,
    validate_only: bool,
    f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), (ResponseError, String)>,
) -> Result<(), (ResponseError, String)> {
    if resource_type != RESOURCE_TOPIC {
        return Err((ResponseError::InvalidRequest, "only topic configs can be altered".into()));
    }
    let img = shard.image();
    let t = img.topic(name).ok_or((ResponseError::UnknownTopicOrPartition, format!("unknown topic '{name}'")))?;
    let mut configs = t.configs.clone();
    f(&mut configs)?;
    check_all(&configs)?;
    if validate_only {
        return Ok(());
    }
    shard.request_metadata_change(MetadataChange::SetTopicConfigs { name: name.to_string(), configs }).await.map(|_| ())
}

fn alter_response(
    resource_type: i8,
    name: kafka_protocol::protocol::StrBytes,
    r: Result<(), (ResponseError, String)>,
) -> AlterConfigsResourceResponse {
    let base = AlterConfigsResourceResponse::default().with_resource_type(resource_type).with_resource_name(name);
    match r {
        Ok(()) => base.with_error_code(0),
        Err((e, msg)) => base.with_error_code(e.code()).with_error_message(Some(str_bytes(&msg))),
    }
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
                set_topic_configs(shard, r.resource_type, &name, req.validate_only, |c| {
                    *c = new;
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        out.push(alter_response(r.resource_type, r.resource_name, res));
    }
    AlterConfigsResponse::default().with_responses(out)
}

pub async fn incremental_alter_configs(
    shard: &Rc<Shard>,
    req: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let mut out = Vec::new();
    for r in req.resources {
        let name = r.resource_name.to_string();
        let ops: Vec<(String, i8, Option<String>)> = r
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.config_operation, c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let res = set_topic_configs(shard, r.resource_type, &name, req.validate_only, move |c| {
            for (k, op, v) in ops {
                match (op, v) {
                    (0, Some(v)) => {
                        c.insert(k, v); // SET
                    }
                    (1, _) => {
                        c.remove(&k); // DELETE
                    }
                    (2, Some(v)) | (3, Some(v)) => {
                        // APPEND / SUBTRACT apply to list configs (cleanup.policy).
                        let cur = c
                            .get(&k)
                            .cloned()
                            .or_else(|| config_key(&k).map(|d| d.default.to_string()))
                            .unwrap_or_default();
                        let mut items: Vec<String> =
                            cur.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
                        if op == 2 {
                            if !items.contains(&v) {
                                items.push(v);
                            }
                        } else {
                            items.retain(|x| *x != v);
                        }
                        c.insert(k, items.join(","));
                    }
                    _ => return Err((ResponseError::InvalidRequest, format!("bad operation {op} for {k}"))),
                }
            }
            Ok(())
        })
        .await;
        out.push(alter_response(r.resource_type, r.resource_name, res));
    }
    IncrementalAlterConfigsResponse::default().with_responses(
        out.into_iter()
            .map(|r| {
                kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(r.error_code)
                    .with_error_message(r.error_message)
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
            })
            .collect(),
    )
}
