//! CreateTopics, DeleteTopics, CreatePartitions: metadata changes applied by
//! the controller shard and installed on every shard before answering.

use ringbroker_engine::ids::TopicId;
use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;

use super::str_bytes;
use crate::metadata::{apply_change, random_topic_id, MetadataChange, MetadataImage};
use crate::shard::Shard;

/// Names that occur more than once in one request: Kafka refuses each of
/// them once with INVALID_REQUEST and acts on none of its entries.
fn duplicated<'a>(names: impl Iterator<Item = &'a str>) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    names.filter(|n| !seen.insert(*n)).map(str::to_string).collect()
}

pub async fn create_topics(shard: &Rc<Shard>, req: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut results = Vec::new();
    let dups = duplicated(req.topics.iter().map(|t| t.name.0.as_str()));
    for name in &dups {
        let mut r = CreatableTopicResult::default()
            .with_name(TopicName(str_bytes(name)))
            .with_error_code(ResponseError::InvalidRequest.code());
        if version >= 1 {
            r = r.with_error_message(Some(str_bytes(&format!("topic '{name}' appears more than once in the request"))));
        }
        if version >= 5 {
            r = r.with_num_partitions(-1).with_replication_factor(-1);
        }
        results.push(r);
    }
    for t in req.topics.into_iter().filter(|t| !dups.contains(t.name.0.as_str())) {
        let name = t.name.0.to_string();
        let mut partitions = if t.num_partitions == -1 { shard.config.broker.num_partitions } else { t.num_partitions };
        let mut rf = if t.replication_factor == -1 {
            shard.config.broker.default_replication_factor
        } else {
            t.replication_factor
        };
        let mut configs = BTreeMap::new();
        let mut bad = None;
        let img = shard.image();
        let mut assignments = Vec::new();
        if !t.assignments.is_empty() {
            let assignment: Vec<(i32, Vec<i32>)> =
                t.assignments.iter().map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect())).collect();
            match check_assignment(&img, t.num_partitions, t.replication_factor, &assignment) {
                Ok((p, r, a)) => {
                    partitions = p;
                    rf = r;
                    assignments = a;
                }
                Err(e) => bad = Some(e),
            }
        } else if (1..=MAX_PARTITIONS).contains(&partitions) {
            match place(&img, 0, partitions, rf) {
                Ok(a) => assignments = a,
                Err(e) => bad = Some(e),
            }
        }
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.to_string(), v.to_string());
                }
                None => {
                    bad = Some((ResponseError::InvalidRequest, format!("config {} has a null value", c.name.as_str())))
                }
            }
        }
        let change = MetadataChange::CreateTopic {
            name: name.clone(),
            id: random_topic_id(),
            partitions,
            replication_factor: rf,
            configs: configs.clone(),
            assignments,
        };
        let outcome = match bad {
            Some(e) => Err(e),
            None if req.validate_only => apply_change(&shard.image(), &change),
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
                            super::configs::topic_config_entries(shard, &img, &configs)
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
                    r = r.with_topic_id(uuid::Uuid::from_bytes(meta.id.0));
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
        if name.is_some() && !id.is_nil() {
            // Kafka: an entry names a topic by name or by id, not both.
            results.push(
                DeletableTopicResult::default()
                    .with_name(name.map(|n| TopicName(str_bytes(&n))))
                    .with_topic_id(id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("name a topic by name or by id, not both"))),
            );
            continue;
        }
        if name.is_none() && id.is_nil() {
            // Kafka: neither a name nor a (non-zero) id names no topic.
            results.push(
                DeletableTopicResult::default()
                    .with_topic_id(id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("a topic needs a name or a non-zero id"))),
            );
            continue;
        }
        let img = shard.image();
        let resolved = match &name {
            Some(n) => img.topic(n).map(|t| (t.name.clone(), t.id)),
            None => img.topic_by_id(&TopicId(*id.as_bytes())).map(|t| (t.name.clone(), t.id)),
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
                    r = r.with_name(Some(TopicName(str_bytes(&n)))).with_topic_id(uuid::Uuid::from_bytes(tid.0));
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
    let dups = duplicated(req.topics.iter().map(|t| t.name.0.as_str()));
    for name in &dups {
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(TopicName(str_bytes(name)))
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str_bytes(&format!("topic '{name}' appears more than once in the request")))),
        );
    }
    for t in req.topics.into_iter().filter(|t| !dups.contains(t.name.0.as_str())) {
        let img = shard.image();
        let (current, rf) = img.topic(&t.name.0).map(|m| (m.partitions, m.replication_factor)).unwrap_or((0, 1));
        let new = i64::from(t.count) - i64::from(current);
        let mut assignments = Vec::new();
        let mut assignment_error = None;
        match t.assignments.as_ref() {
            Some(a) if a.len() as i64 != new => {
                assignment_error = Some((
                    ResponseError::InvalidReplicaAssignment,
                    format!("{} replica assignments for {new} new partitions", a.len()),
                ))
            }
            Some(a) => {
                for p in a {
                    let ids: Vec<i32> = p.broker_ids.iter().map(|b| b.0).collect();
                    if let Err(m) = check_replicas(&img, &ids) {
                        assignment_error = Some((ResponseError::InvalidReplicaAssignment, m));
                        break;
                    }
                    assignments.push(ids);
                }
            }
            // The count's own checks (larger, at most the maximum) come from
            // the state machine; place only what it could accept.
            None if new >= 1 && t.count <= MAX_PARTITIONS => match place(&img, current, new as i32, rf) {
                Ok(a) => assignments = a,
                Err(e) => assignment_error = Some(e),
            },
            None => {}
        }
        let change = MetadataChange::CreatePartitions { name: t.name.0.to_string(), total: t.count, assignments };
        let outcome = if let Some(e) = assignment_error {
            Err(e)
        } else if req.validate_only {
            apply_change(&shard.image(), &change).map(|_| ())
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

/// Partitions a topic may have (the state machine's bound too).
const MAX_PARTITIONS: i32 = 100_000;

/// Replicas for partitions `first..first + count` on the live brokers,
/// Kafka's way (round-robin from a random start; `assign_replicas`).
pub fn place(img: &MetadataImage, first: i32, count: i32, rf: i16) -> Result<Vec<Vec<i32>>, (ResponseError, String)> {
    let live: Vec<i32> = img.live_brokers().map(|b| b.id).collect();
    let r = crate::metadata::random_id();
    let (start, shift) = (r[0] as usize | (r[1] as usize) << 8, r[2] as usize | (r[3] as usize) << 8);
    ringbroker_controller::assign_replicas(&live, first, count, rf, start, shift)
}

/// One partition's replica list: non-empty, no broker twice, every broker
/// registered.
fn check_replicas(img: &MetadataImage, brokers: &[i32]) -> Result<(), String> {
    if brokers.is_empty() {
        return Err("a partition needs at least one replica".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in brokers {
        if !seen.insert(*b) {
            return Err(format!("broker {b} is listed twice in one partition's replicas"));
        }
        if !img.brokers.contains_key(b) {
            let known: Vec<i32> = img.brokers.keys().copied().collect();
            return Err(format!("unknown broker {b} in the replica assignment (brokers: {known:?})"));
        }
    }
    Ok(())
}

/// Kafka's rules for CreateTopics with an explicit assignment: partition
/// count and replication factor come from it (the request's must be -1),
/// partitions are numbered 0..n, every partition has the same number of
/// replicas, all on known brokers. Returns (partitions, replication factor,
/// replicas by partition).
type Checked = (i32, i16, Vec<Vec<i32>>);

fn check_assignment(
    img: &MetadataImage,
    num_partitions: i32,
    replication_factor: i16,
    assignment: &[(i32, Vec<i32>)],
) -> Result<Checked, (ResponseError, String)> {
    if num_partitions != -1 || replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest,
            "both numPartitions or replicationFactor and replicasAssignments were set; use -1 with an assignment"
                .into(),
        ));
    }
    let invalid = |m: String| (ResponseError::InvalidReplicaAssignment, m);
    let mut indexes: Vec<i32> = assignment.iter().map(|(p, _)| *p).collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return Err(invalid("partitions must be numbered consecutively from 0".into()));
    }
    let rf = assignment[0].1.len();
    for (p, brokers) in assignment {
        if brokers.len() != rf {
            return Err(invalid(format!("partition {p} has {} replicas, partition 0 has {rf}", brokers.len())));
        }
        check_replicas(img, brokers).map_err(invalid)?;
    }
    let rf = i16::try_from(rf).map_err(|_| invalid("too many replicas".into()))?;
    let mut ordered = assignment.to_vec();
    ordered.sort_unstable_by_key(|(p, _)| *p);
    Ok((assignment.len() as i32, rf, ordered.into_iter().map(|(_, r)| r).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicated_names_are_found_once() {
        let d = duplicated(["a", "b", "a", "c", "a", "b"].into_iter());
        assert_eq!(d.into_iter().collect::<Vec<_>>(), vec!["a".to_string(), "b".to_string()]);
    }

    fn one_broker() -> MetadataImage {
        let reg = MetadataChange::RegisterBroker {
            id: 0,
            incarnation: [1; 16],
            host: "127.0.0.1".into(),
            port: 9092,
            cluster_host: String::new(),
            cluster_port: 0,
            shards: 1,
        };
        apply_change(&MetadataImage::default(), &reg).unwrap()
    }

    #[test]
    fn explicit_assignments_follow_kafkas_rules() {
        let img = one_broker();
        assert_eq!(check_assignment(&img, -1, -1, &[(1, vec![0]), (0, vec![0])]), Ok((2, 1, vec![vec![0], vec![0]])));
        assert_eq!(check_assignment(&img, 2, -1, &[(0, vec![0])]).unwrap_err().0, ResponseError::InvalidRequest);
        let bad = [vec![(0, vec![0]), (2, vec![0])], vec![(0, vec![1])], vec![(0, vec![0, 0])], vec![(0, vec![])]];
        for a in bad {
            assert_eq!(
                check_assignment(&img, -1, -1, &a).unwrap_err().0,
                ResponseError::InvalidReplicaAssignment,
                "{a:?}"
            );
        }
    }
}
