//! `ringbroker cluster status`: the brokers, the active controller, how far
//! each quorum voter's log is behind, and what each broker leads.
//!
//! Metadata gives the brokers, the controller and every partition's leader
//! and replicas; DescribeQuorum, asked of the controller, gives the quorum's
//! epoch, high watermark (commit index) and each voter's log end.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Result;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{DescribeQuorumRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::describe_error;
use crate::cluster::Cluster;

/// Per broker: partitions it leads, replicas it holds, and replicas of
/// partitions without a live leader.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    pub leaders: usize,
    pub replicas: usize,
}

pub fn run(bootstrap: &str) -> Result<()> {
    run_to(bootstrap, &mut std::io::stdout().lock())
}

pub fn run_to(bootstrap: &str, out: &mut impl Write) -> Result<()> {
    let mut cluster = Cluster::connect(bootstrap)?;
    let md = cluster.metadata(None)?;
    let mut load: BTreeMap<i32, BrokerLoad> = BTreeMap::new();
    let mut offline = 0;
    for b in &md.brokers {
        load.entry(b.node_id.0).or_default();
    }
    for t in &md.topics {
        for p in &t.partitions {
            if p.leader_id.0 >= 0 {
                load.entry(p.leader_id.0).or_default().leaders += 1;
            } else {
                offline += 1;
            }
            for r in &p.replica_nodes {
                load.entry(r.0).or_default().replicas += 1;
            }
        }
    }
    let cluster_id = md.cluster_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
    writeln!(out, "cluster {cluster_id}")?;
    writeln!(out, "controller: node {}", md.controller_id.0)?;
    writeln!(out, "brokers:")?;
    writeln!(out, "  {:<6} {:<24} {:>8} {:>9}", "node", "address", "leaders", "replicas")?;
    let listed: BTreeMap<i32, String> =
        md.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
    for (id, l) in &load {
        let addr = listed.get(id).cloned().unwrap_or_else(|| "(fenced or unknown)".into());
        writeln!(out, "  {:<6} {:<24} {:>8} {:>9}", id, addr, l.leaders, l.replicas)?;
    }
    if offline > 0 {
        writeln!(out, "offline partitions: {offline}")?;
    }

    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let conn = cluster.controller()?;
    let resp = conn.send(&req)?;
    if resp.error_code != 0 {
        writeln!(out, "quorum: {}", describe_error(resp.error_code, None))?;
        return Ok(());
    }
    let Some(p) = resp.topics.first().and_then(|t| t.partitions.first()) else {
        writeln!(out, "quorum: no answer")?;
        return Ok(());
    };
    if p.error_code != 0 {
        writeln!(out, "quorum: {}", describe_error(p.error_code, None))?;
        return Ok(());
    }
    writeln!(
        out,
        "metadata quorum: leader node {}, epoch {}, high watermark {}",
        p.leader_id.0, p.leader_epoch, p.high_watermark
    )?;
    writeln!(out, "  {:<6} {:>10} {:>8}", "voter", "log end", "lag")?;
    for v in &p.current_voters {
        let (end, lag) = if v.log_end_offset >= 0 {
            (v.log_end_offset.to_string(), (p.high_watermark - v.log_end_offset).max(0).to_string())
        } else {
            ("unknown".to_string(), "unknown".to_string())
        };
        writeln!(out, "  {:<6} {:>10} {:>8}", v.replica_id.0, end, lag)?;
    }
    Ok(())
}
