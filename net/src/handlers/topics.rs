//! CreateTopics, DeleteTopics, CreatePartitions: metadata changes applied by
//! the controller shard and installed on every shard before answering.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::metadata::{apply_change, random_id, MetadataChange};
use crate::shard::Shard;

pub async fn create_topics(shard: &Rc<Shard>, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let partitions = if t.num_partitions == -1 { shard.config.broker.num_partitions } else { t.num_partitions };
        let rf = if t.replication_factor == -1 {
            shard.config.broker.default_replication_factor
        } else {
            t.replication_factor
        };
        let mut configs = BTreeMap::new();
        let mut bad = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => bad = Some(format!("config {} has a null value", c.name.as_str())),
            }
        }
        if !t.assignments.is_empty() {
            bad = Some("manual replica assignment is not supported on a single node".into());
        }
        let change = MetadataChange::CreateTopic {
            name: name.clone(),
            partitions,
            replication_factor: rf,
            configs: configs.clone(),
        };
        let outcome = match bad {
            Some(msg) => Err((ResponseError::InvalidRequest, msg)),
            None if req.validate_only => apply_change(&shard.image(), &change, random_id()),
            None => shard.request_metadata_change(change).await.map(|img| (*img).clone()),
        };
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        match outcome {
            Ok(img) => {
                let meta = img.topic(&name).expect("just created");
                r = r.with_error_code(0);
                if version >= 5 {
                    r = r
                        .with_num_partitions(meta.partitions)
                        .with_replication_factor(meta.replication_factor)
                        .with_configs(Some(
                            super::configs::topic_config_entries(shard, &configs)
                                .into_iter()
                                .map(|(k, v, src)| {
                                    CreatableTopicConfigs::default()
                                        .with_name(str_bytes(&k))
                                        .with_value(Some(str_bytes(&v)))
                                        .with_config_source(src)
                                })
                                .collect(),
                        ));
                }
                if version >= 7 {
                    r = r.with_topic_id(uuid::Uuid::from_bytes(meta.id));
                }
            }
            Err((e, msg)) => {
                r = r.with_error_code(e.code());
                if version >= 1 {
                    r = r.with_error_message(Some(str_bytes(&msg)));
                }
                if version >= 5 {
                    r = r.with_num_partitions(-1).with_replication_factor(-1);
                }
            }
        }
        results.push(r);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(shard: &Rc<Shard>, req: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    // v0-5 list names; v6 lists (name or id) states.
    let mut targets: Vec<(Option<String>, uuid::Uuid)> =
        req.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    targets.extend(req.topics.iter().map(|s| (s.name.as_ref().map(|n| n.0.to_string()), s.topic_id)));
    let mut results = Vec::new();
    for (name, id) in targets {
        let img = shard.image();
        let resolved = match &name {
            Some(n) => img.topic(n).map(|t| (t.name.clone(), t.id)),
            None => img.topic_by_id(id.as_bytes()).map(|t| (t.name.clone(), t.id)),
        };
        let mut r = DeletableTopicResult::default().with_name(name.clone().map(|n| TopicName(str_bytes(&n))));
        if version >= 6 {
            r = r.with_topic_id(id);
        }
        match resolved {
            None => {
                let code =
                    if name.is_some() { ResponseError::UnknownTopicOrPartition } else { ResponseError::UnknownTopicId };
                r = r.with_error_code(code.code());
            }
            Some((n, tid)) => {
                if version >= 6 {
                    r = r.with_name(Some(TopicName(str_bytes(&n)))).with_topic_id(uuid::Uuid::from_bytes(tid));
                }
                match shard.request_metadata_change(MetadataChange::DeleteTopic { name: n }).await {
                    Ok(_) => r = r.with_error_code(0),
                    Err((e, msg)) => {
                        r = r.with_error_code(e.code());
                        if version >= 5 {
                            r = r.with_error_message(Some(str_bytes(&msg)));
                        }
                    }
                }
            }
        }
        results.push(r);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub async fn create_partitions(
    shard: &Rc<Shard>,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for t in req.topics {
        let change = MetadataChange::CreatePartitions { name: t.name.0.to_string(), total: t.count };
        let outcome = if req.validate_only {
            apply_change(&shard.image(), &change, random_id()).map(|_| ())
        } else {
            shard.request_metadata_change(change).await.map(|_| ())
        };
        let r = match outcome {
            Ok(()) => CreatePartitionsTopicResult::default().with_name(t.name).with_error_code(0),
            Err((e, msg)) => CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(&msg))),
        };
        results.push(r);
    }
    CreatePartitionsResponse::default().with_results(results)
}
