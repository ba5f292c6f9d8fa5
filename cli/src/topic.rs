//! `topic create|list|describe|delete`.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{describe_error, KafkaConnection};
use crate::cluster::{Cluster, TopicInfo};
use crate::TopicCommand;

/// Broker-side timeout for admin operations.
const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// DescribeConfigs resource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// ListOffsets special timestamps.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn run(bootstrap: &str, cmd: TopicCommand) -> Result<()> {
    let stdout = std::io::stdout();
    run_to(bootstrap, cmd, &mut stdout.lock())
}

/// Run a topic command, writing its output to `out`.
pub fn run_to(bootstrap: &str, cmd: TopicCommand, out: &mut impl Write) -> Result<()> {
    let mut cluster = Cluster::connect(bootstrap)?;
    match cmd {
        TopicCommand::Create { name, partitions, replication_factor, configs } => {
            create(&mut cluster, &name, partitions, replication_factor, &configs)
        }
        TopicCommand::List => list(&mut cluster, out),
        TopicCommand::Describe { name } => describe(&mut cluster, &name, out),
        TopicCommand::Delete { name } => delete(&mut cluster, &name),
    }
}

pub fn build_create_request(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> CreateTopicsRequest {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(name);
    topic.num_partitions = partitions;
    topic.replication_factor = replication_factor;
    topic.configs = configs
        .iter()
        .map(|(k, v)| {
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_string(k.clone());
            c.value = Some(StrBytes::from_string(v.clone()));
            c
        })
        .collect();
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![topic];
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    req.validate_only = false;
    req
}

fn create(
    cluster: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> Result<()> {
    if partitions < 1 {
        bail!("--partitions must be at least 1");
    }
    if replication_factor < 1 {
        bail!("--replication-factor must be at least 1");
    }
    let req = build_create_request(name, partitions, replication_factor, configs);
    let resp = cluster.controller()?.send(&req).context("CreateTopics")?;
    let result =
        resp.topics.iter().find(|t| t.name.as_str() == name).context("topic missing from CreateTopics response")?;
    if result.error_code != 0 {
        bail!("creating topic {name} failed: {}", describe_error(result.error_code, result.error_message.as_deref()));
    }
    Ok(())
}

fn list(cluster: &mut Cluster, out: &mut impl Write) -> Result<()> {
    let resp = cluster.metadata(None)?;
    let mut names: Vec<&str> =
        resp.topics.iter().filter(|t| t.error_code == 0).filter_map(|t| t.name.as_ref().map(|n| n.as_str())).collect();
    names.sort_unstable();
    for n in names {
        writeln!(out, "{n}")?;
    }
    Ok(())
}

pub fn build_delete_request(name: &str, version: i16) -> DeleteTopicsRequest {
    let mut req = DeleteTopicsRequest::default();
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    if version >= 6 {
        let mut state = DeleteTopicState::default();
        state.name = Some(topic_name(name));
        req.topics = vec![state];
    } else {
        req.topic_names = vec![topic_name(name)];
    }
    req
}

fn delete(cluster: &mut Cluster, name: &str) -> Result<()> {
    let conn = cluster.controller()?;
    let version = conn.version_of::<DeleteTopicsRequest>()?;
    let req = build_delete_request(name, version);
    let resp = conn.send_version(&req, version).context("DeleteTopics")?;
    let result = resp
        .responses
        .iter()
        .find(|r| r.name.as_ref().map(|n| n.as_str()) == Some(name))
        .or(resp.responses.first())
        .context("topic missing from DeleteTopics response")?;
    if result.error_code != 0 {
        bail!("deleting topic {name} failed: {}", describe_error(result.error_code, result.error_message.as_deref()));
    }
    Ok(())
}

/// ListOffsets for the given partitions at `timestamp` (EARLIEST/LATEST).
pub fn build_list_offsets_request(topic: &str, partitions: &[i32], timestamp: i64) -> ListOffsetsRequest {
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = partitions
        .iter()
        .map(|&p| {
            let mut lp = ListOffsetsPartition::default();
            lp.partition_index = p;
            lp.timestamp = timestamp;
            lp
        })
        .collect();
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1); // a consumer, not a follower
    req.isolation_level = 0; // read uncommitted: latest = high watermark
    req.timeout_ms = ADMIN_TIMEOUT_MS;
    req.topics = vec![t];
    req
}

/// Resolve the offset at `timestamp` for partitions all led by `conn`.
pub fn list_offsets(
    conn: &mut KafkaConnection,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let req = build_list_offsets_request(topic, partitions, timestamp);
    let resp = conn.send(&req).context("ListOffsets")?;
    let mut offsets = BTreeMap::new();
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!("ListOffsets {topic}-{}: {}", p.partition_index, describe_error(p.error_code, None));
            }
            offsets.insert(p.partition_index, p.offset);
        }
    }
    for p in partitions {
        if !offsets.contains_key(p) {
            bail!("ListOffsets response lacks partition {topic}-{p}");
        }
    }
    Ok(offsets)
}

/// Offsets at `timestamp` for every partition of `info`, asking each leader.
pub fn offsets_for_all(
    cluster: &mut Cluster,
    info: &TopicInfo,
    partitions: &[i32],
    timestamp: i64,
) -> Result<BTreeMap<i32, i64>> {
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in info.partitions.iter().filter(|p| partitions.contains(&p.id)) {
        by_leader.entry(p.leader).or_default().push(p.id);
    }
    let mut all = BTreeMap::new();
    for (leader, parts) in by_leader {
        let conn = cluster.node(leader)?;
        all.extend(list_offsets(conn, &info.name, &parts, timestamp)?);
    }
    Ok(all)
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn describe(cluster: &mut Cluster, name: &str, out: &mut impl Write) -> Result<()> {
    let info = cluster.topic(name)?;
    let ids: Vec<i32> = info.partitions.iter().map(|p| p.id).collect();
    let replication = info.partitions[0].replicas.len();
    let healthy: Vec<i32> = info.partitions.iter().filter(|p| p.leader >= 0).map(|p| p.id).collect();
    let earliest = offsets_for_all(cluster, &info, &healthy, EARLIEST_TIMESTAMP)?;
    let latest = offsets_for_all(cluster, &info, &healthy, LATEST_TIMESTAMP)?;

    writeln!(
        out,
        "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}{}",
        info.name,
        ids.len(),
        replication,
        if info.is_internal { "\tInternal: true" } else { "" }
    )?;
    for p in &info.partitions {
        let fmt_off = |m: &BTreeMap<i32, i64>| m.get(&p.id).map_or_else(|| "-".to_string(), |o| o.to_string());
        write!(
            out,
            "\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}\tEarliestOffset: {}\tLatestOffset: {}",
            p.id,
            p.leader,
            join_ids(&p.replicas),
            join_ids(&p.isr),
            fmt_off(&earliest),
            fmt_off(&latest),
        )?;
        if p.error_code != 0 {
            write!(out, "\tError: {}", describe_error(p.error_code, None))?;
        }
        writeln!(out)?;
    }

    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TOPIC;
    resource.resource_name = StrBytes::from_string(name.to_string());
    resource.configuration_keys = None; // all keys
    let mut req = DescribeConfigsRequest::default();
    req.resources = vec![resource];
    let resp = cluster.bootstrap().send(&req).context("DescribeConfigs")?;
    writeln!(out, "Configs:")?;
    for r in &resp.results {
        if r.error_code != 0 {
            bail!("describing configs of {name} failed: {}", describe_error(r.error_code, r.error_message.as_deref()));
        }
        let mut configs: Vec<_> = r.configs.iter().collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        for c in configs {
            let value = if c.is_sensitive { "(sensitive)" } else { c.value.as_deref().unwrap_or("null") };
            writeln!(out, "\t{}={}", c.name, value)?;
        }
    }
    Ok(())
}
