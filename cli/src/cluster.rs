//! Cluster view: bootstrap connection, Metadata, and per-leader connections.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{describe_error, KafkaConnection};

/// Default Kafka port used when a bootstrap entry has no `:port`.
pub const DEFAULT_PORT: u16 = 9092;

/// One partition as reported by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub id: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

/// One topic as reported by Metadata, partitions sorted by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub is_internal: bool,
    pub partitions: Vec<PartitionInfo>,
}

/// Split a comma-separated bootstrap list, adding the default port where missing.
pub fn parse_bootstrap(bootstrap: &str) -> Vec<String> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let has_port = if let Some(rest) = s.strip_prefix('[') {
                // [ipv6]:port
                rest.contains("]:")
            } else {
                s.matches(':').count() == 1
            };
            if has_port {
                s.to_string()
            } else if s.contains(':') && !s.starts_with('[') {
                format!("[{s}]:{DEFAULT_PORT}")
            } else {
                format!("{s}:{DEFAULT_PORT}")
            }
        })
        .collect()
}

/// Connections to a cluster, reached through a bootstrap broker.
pub struct Cluster {
    bootstrap: KafkaConnection,
    brokers: HashMap<i32, String>,
    controller_id: i32,
    conns: HashMap<i32, KafkaConnection>,
}

impl Cluster {
    /// Connect to the first reachable broker of a comma-separated bootstrap list.
    pub fn connect(bootstrap: &str) -> Result<Self> {
        let addrs = parse_bootstrap(bootstrap);
        if addrs.is_empty() {
            bail!("empty bootstrap server list");
        }
        let mut errors = Vec::new();
        for addr in &addrs {
            match KafkaConnection::connect(addr) {
                Ok(conn) => {
                    return Ok(Cluster {
                        bootstrap: conn,
                        brokers: HashMap::new(),
                        controller_id: -1,
                        conns: HashMap::new(),
                    })
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        bail!("could not connect to any bootstrap server: {}", errors.join("; "))
    }

    /// The bootstrap connection.
    pub fn bootstrap(&mut self) -> &mut KafkaConnection {
        &mut self.bootstrap
    }

    /// Send Metadata for `topics` (`None` = all topics) and remember the brokers.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<MetadataResponse> {
        let version = self.bootstrap.version_of::<MetadataRequest>()?;
        let mut req = MetadataRequest::default();
        req.topics = match topics {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect(),
            ),
            // v0 has no null array: an empty list means "all topics" there.
            None if version == 0 => Some(Vec::new()),
            None => None,
        };
        if version >= 4 {
            req.allow_auto_topic_creation = false;
        }
        let resp = self.bootstrap.send_version(&req, version).context("Metadata request")?;
        if resp.error_code != 0 {
            bail!("Metadata failed: {}", describe_error(resp.error_code, None));
        }
        self.brokers = resp.brokers.iter().map(|b| (b.node_id.0, format_addr(&b.host, b.port))).collect();
        self.controller_id = resp.controller_id.0;
        Ok(resp)
    }

    /// Ids of the brokers from the last Metadata response, sorted.
    pub fn broker_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.brokers.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Metadata of one topic; errors if the topic does not exist.
    pub fn topic(&mut self, name: &str) -> Result<TopicInfo> {
        let resp = self.metadata(Some(&[name]))?;
        let t = resp
            .topics
            .iter()
            .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(name))
            .ok_or_else(|| anyhow!("topic {name} missing from Metadata response"))?;
        if t.error_code != 0 {
            bail!("topic {name}: {}", describe_error(t.error_code, None));
        }
        let mut partitions: Vec<PartitionInfo> = t
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                id: p.partition_index,
                leader: p.leader_id.0,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                error_code: p.error_code,
            })
            .collect();
        partitions.sort_by_key(|p| p.id);
        if partitions.is_empty() {
            bail!("topic {name} has no partitions");
        }
        Ok(TopicInfo { name: name.to_string(), is_internal: t.is_internal, partitions })
    }

    /// Connection to broker `node_id`. In a single-broker cluster this is the
    /// bootstrap connection (whose advertised address may not be reachable
    /// from here); otherwise the broker's advertised `host:port`.
    pub fn node(&mut self, node_id: i32) -> Result<&mut KafkaConnection> {
        if node_id < 0 {
            bail!("no leader available: {}", describe_error(5, None));
        }
        if self.brokers.len() <= 1 {
            return Ok(&mut self.bootstrap);
        }
        if !self.conns.contains_key(&node_id) {
            let addr = self
                .brokers
                .get(&node_id)
                .ok_or_else(|| anyhow!("broker {node_id} is not in the cluster metadata"))?
                .clone();
            let conn = KafkaConnection::connect(&addr).with_context(|| format!("connecting to broker {node_id}"))?;
            self.conns.insert(node_id, conn);
        }
        Ok(self.conns.get_mut(&node_id).expect("inserted above"))
    }

    /// Connection to the controller as reported by Metadata (for topic
    /// administration), falling back to the bootstrap broker.
    pub fn controller(&mut self) -> Result<&mut KafkaConnection> {
        if self.brokers.is_empty() {
            self.metadata(Some(&[]))?;
        }
        if self.controller_id >= 0 && self.brokers.contains_key(&self.controller_id) {
            let id = self.controller_id;
            self.node(id)
        } else {
            Ok(&mut self.bootstrap)
        }
    }
}

fn format_addr(host: &str, port: i32) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_parsing() {
        assert_eq!(
            parse_bootstrap("localhost:9092, b2 ,[::1]:19092,::1"),
            vec!["localhost:9092", "b2:9092", "[::1]:19092", "[::1]:9092"]
        );
        assert!(parse_bootstrap(" , ").is_empty());
    }

    #[test]
    fn advertised_address_formatting() {
        assert_eq!(format_addr("h", 1), "h:1");
        assert_eq!(format_addr("fe80::1", 9092), "[fe80::1]:9092");
    }
}
