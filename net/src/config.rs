//! Broker configuration: the TOML file (`tuning/*.toml`), validated at start.
//!
//! Two kinds of settings live here, as STYLE.md asks:
//! - broker and topic-default settings (Kafka names where Kafka has one);
//! - per-core tuning (`[core_defaults]` and `[[core]]`): glommio executor
//!   knobs plus cache and queue sizes, each core inheriting the defaults.
//!
//! Every setting is checked against its bounds here; a bad file is rejected
//! with a message that names the setting and the bounds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub broker: BrokerSection,
    /// Topic defaults under Kafka's topic config names (`retention.ms`, ...).
    #[serde(default)]
    pub topic_defaults: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub core_defaults: CoreTuning,
    #[serde(default)]
    pub core: Vec<CoreOverride>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSection {
    pub node_id: i32,
    pub listen: String,
    /// Address given to clients in Metadata; defaults to `listen`.
    pub advertised_listener: Option<String>,
    pub admin_listen: String,
    pub data_dir: PathBuf,
    /// Kafka `socket.request.max.bytes`: larger frames close the connection.
    pub socket_request_max_bytes: u32,
    /// Kafka `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// Kafka `num.partitions`: partitions of auto-created topics.
    pub num_partitions: i32,
    /// Kafka `default.replication.factor`.
    pub default_replication_factor: i16,
    /// Seconds a clean shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// Kafka `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// Kafka `producer.id.expiration.ms`: idempotent-producer state of a
    /// producer idle this long is forgotten.
    pub producer_id_expiration_ms: i64,
    /// Kafka `group.min.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    /// Kafka `group.max.session.timeout.ms`.
    pub group_max_session_timeout_ms: i32,
    /// Kafka `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: i32,
    /// Kafka `offsets.retention.minutes`: committed offsets of an empty group
    /// are deleted after this long.
    pub offsets_retention_minutes: i64,
    /// Kafka `log.cleaner.backoff.ms`: pause between compaction passes.
    pub log_cleaner_backoff_ms: u64,
    /// Kafka `log.cleaner.io.max.bytes.per.second`, per core: the cleaner's
    /// read and write rate.
    pub log_cleaner_io_max_bytes_per_second: u64,
    /// Kafka `controller.quorum.voters`: the metadata quorum, as
    /// `id@host:port,...` with each voter's `cluster_listen` address. Empty:
    /// this broker alone is the quorum (a single node).
    pub controller_quorum_voters: String,
    /// HOST:PORT for broker-to-broker traffic (the metadata quorum; partition
    /// replication next). Needed when the quorum has other voters.
    pub cluster_listen: String,
    /// Kafka `broker.session.timeout.ms`: the active controller fences a
    /// broker it has not heard from for this long.
    pub broker_session_timeout_ms: u64,
    /// Kafka `offsets.topic.replication.factor`: `__consumer_offsets` is
    /// created once this many brokers (at most the number of voters) are
    /// registered.
    pub offsets_topic_replication_factor: i16,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            node_id: 0,
            listen: "127.0.0.1:9092".into(),
            advertised_listener: None,
            admin_listen: "127.0.0.1:9644".into(),
            data_dir: PathBuf::from("./data"),
            socket_request_max_bytes: 100 * 1024 * 1024,
            auto_create_topics_enable: true,
            num_partitions: 1,
            default_replication_factor: 1,
            shutdown_grace_secs: 10,
            retention_check_interval_ms: 300_000,
            producer_id_expiration_ms: 86_400_000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3000,
            offsets_retention_minutes: 10080,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_io_max_bytes_per_second: 100 << 20,
            controller_quorum_voters: String::new(),
            cluster_listen: String::new(),
            broker_session_timeout_ms: 9_000,
            offsets_topic_replication_factor: 3,
        }
    }
}

/// Per-core tuning. Every field may be overridden per `[[core]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CoreTuning {
    /// glommio io_memory: bytes of DMA buffer memory registered with io_uring.
    pub io_memory: usize,
    /// glommio ring_depth: io_uring submission queue entries.
    pub ring_depth: usize,
    /// glommio spin_before_park, in microseconds (0: park at once).
    pub spin_before_park_us: u64,
    /// glommio preempt_timer, in milliseconds.
    pub preempt_timer_ms: u64,
    /// Batch cache bytes for this core's partitions (recent batches in memory).
    pub batch_cache_bytes: usize,
    /// Capacity of each cross-core request channel (messages).
    pub channel_capacity: usize,
    /// Requests a connection may have in flight before it stops reading.
    pub max_inflight_per_connection: usize,
}

impl Default for CoreTuning {
    fn default() -> Self {
        CoreTuning {
            io_memory: 4 << 20,
            ring_depth: 128,
            spin_before_park_us: 0,
            preempt_timer_ms: 100,
            batch_cache_bytes: 64 << 20,
            channel_capacity: 1024,
            max_inflight_per_connection: 128,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreOverride {
    pub cpu: usize,
    pub io_memory: Option<usize>,
    pub ring_depth: Option<usize>,
    pub spin_before_park_us: Option<u64>,
    pub preempt_timer_ms: Option<u64>,
    pub batch_cache_bytes: Option<usize>,
    pub channel_capacity: Option<usize>,
    pub max_inflight_per_connection: Option<usize>,
}

/// One shard's effective settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardConfig {
    pub cpu: Option<usize>,
    pub tuning: CoreTuning,
}

/// The validated configuration the broker runs with.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub broker: BrokerSection,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub admin_listen: Option<SocketAddr>,
    /// The metadata quorum's voters (node id, cluster address), sorted by
    /// id; this broker alone when none are configured.
    pub voters: Vec<Voter>,
    pub cluster_listen: Option<SocketAddr>,
    pub topic_defaults: BTreeMap<String, String>,
    pub shards: Vec<ShardConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {name} = {value}: {reason}")]
    Invalid { name: String, value: String, reason: String },
}

fn check<T: PartialOrd + std::fmt::Display + Copy>(name: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::Invalid {
            name: name.into(),
            value: v.to_string(),
            reason: format!("must be within [{lo}, {hi}]"),
        });
    }
    Ok(())
}

fn check_tuning(prefix: &str, t: &CoreTuning) -> Result<(), ConfigError> {
    check(&format!("{prefix}.io_memory"), t.io_memory, 64 << 10, 1 << 40)?;
    check(&format!("{prefix}.ring_depth"), t.ring_depth, 8, 32768)?;
    if !t.ring_depth.is_power_of_two() {
        return Err(ConfigError::Invalid {
            name: format!("{prefix}.ring_depth"),
            value: t.ring_depth.to_string(),
            reason: "must be a power of two".into(),
        });
    }
    check(&format!("{prefix}.spin_before_park_us"), t.spin_before_park_us, 0, 1_000_000)?;
    check(&format!("{prefix}.preempt_timer_ms"), t.preempt_timer_ms, 1, 10_000)?;
    check(&format!("{prefix}.batch_cache_bytes"), t.batch_cache_bytes, 0, 1 << 40)?;
    check(&format!("{prefix}.channel_capacity"), t.channel_capacity, 1, 1 << 20)?;
    check(&format!("{prefix}.max_inflight_per_connection"), t.max_inflight_per_connection, 1, 1 << 16)?;
    Ok(())
}

/// One voter of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub node_id: i32,
    /// HOST:PORT of its cluster listener ("" for this broker alone).
    pub addr: String,
}

/// Parses Kafka's `controller.quorum.voters` form: `id@host:port,...`.
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, String> {
    let mut out: Vec<Voter> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').ok_or_else(|| format!("'{part}' is not id@host:port"))?;
        let node_id: i32 = id.parse().map_err(|_| format!("'{id}' in '{part}' is not a node id"))?;
        if node_id < 0 {
            return Err(format!("node id {node_id} is negative"));
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("'{addr}' is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("'{addr}' is not host:port"));
        }
        if out.iter().any(|v| v.node_id == node_id) {
            return Err(format!("node {node_id} is named twice"));
        }
        out.push(Voter { node_id, addr: addr.to_string() });
    }
    out.sort_by_key(|v| v.node_id);
    Ok(out)
}

/// Command-line overrides of the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub admin_listen: Option<String>,
    pub node_id: Option<i32>,
    pub cluster_listen: Option<String>,
    pub controller_quorum_voters: Option<String>,
    pub advertised_listener: Option<String>,
}

impl BrokerConfig {
    /// The group coordinator's settings.
    pub fn group_config(&self) -> ringbroker_groups::GroupConfig {
        ringbroker_groups::GroupConfig {
            min_session_timeout_ms: self.broker.group_min_session_timeout_ms,
            max_session_timeout_ms: self.broker.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: self.broker.group_initial_rebalance_delay_ms,
            ..Default::default()
        }
    }

    pub fn load(path: &Path, ov: &Overrides) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.into(), source: e })?;
        Self::parse(&text, path, ov)
    }

    pub fn parse(text: &str, path: &Path, ov: &Overrides) -> Result<Self, ConfigError> {
        let file: ConfigFile =
            toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?;
        Self::from_file(file, ov)
    }

    pub fn from_file(file: ConfigFile, ov: &Overrides) -> Result<Self, ConfigError> {
        let mut broker = file.broker;
        if let Some(l) = &ov.listen {
            broker.listen = l.clone();
        }
        if let Some(d) = &ov.data_dir {
            broker.data_dir = d.clone();
        }
        if let Some(a) = &ov.admin_listen {
            broker.admin_listen = a.clone();
        }
        if let Some(n) = ov.node_id {
            broker.node_id = n;
        }
        if let Some(c) = &ov.cluster_listen {
            broker.cluster_listen = c.clone();
        }
        if let Some(v) = &ov.controller_quorum_voters {
            broker.controller_quorum_voters = v.clone();
        }
        if let Some(a) = &ov.advertised_listener {
            broker.advertised_listener = Some(a.clone());
        }
        let listen: SocketAddr = broker.listen.parse().map_err(|_| ConfigError::Invalid {
            name: "broker.listen".into(),
            value: broker.listen.clone(),
            reason: "must be HOST:PORT with a numeric IP".into(),
        })?;
        let admin_listen = if broker.admin_listen.is_empty() {
            None
        } else {
            Some(broker.admin_listen.parse().map_err(|_| ConfigError::Invalid {
                name: "broker.admin_listen".into(),
                value: broker.admin_listen.clone(),
                reason: "must be HOST:PORT, or empty to disable".into(),
            })?)
        };
        let adv = broker.advertised_listener.clone().unwrap_or_else(|| broker.listen.clone());
        let (host, port) = adv.rsplit_once(':').ok_or_else(|| ConfigError::Invalid {
            name: "broker.advertised_listener".into(),
            value: adv.clone(),
            reason: "must be HOST:PORT".into(),
        })?;
        let advertised_port: i32 = port.parse().map_err(|_| ConfigError::Invalid {
            name: "broker.advertised_listener".into(),
            value: adv.clone(),
            reason: "port must be a number".into(),
        })?;
        let mut advertised_host = host.trim_matches(|c| c == '[' || c == ']').to_string();
        if advertised_host == "0.0.0.0" {
            advertised_host = "127.0.0.1".into();
        }
        check("broker.node_id", broker.node_id, 0, i32::MAX - 1)?;
        let invalid = |name: &str, value: &str, reason: String| ConfigError::Invalid {
            name: name.into(),
            value: value.into(),
            reason,
        };
        let mut voters = parse_voters(&broker.controller_quorum_voters)
            .map_err(|r| invalid("broker.controller_quorum_voters", &broker.controller_quorum_voters, r))?;
        if voters.is_empty() {
            voters.push(Voter { node_id: broker.node_id, addr: String::new() });
        }
        if !voters.iter().any(|v| v.node_id == broker.node_id) {
            return Err(invalid(
                "broker.controller_quorum_voters",
                &broker.controller_quorum_voters,
                format!(
                    "must name this broker (node_id {}): every broker is a voter of the metadata quorum for now",
                    broker.node_id
                ),
            ));
        }
        let cluster_listen = if broker.cluster_listen.is_empty() {
            None
        } else {
            Some(broker.cluster_listen.parse::<SocketAddr>().map_err(|_| {
                invalid("broker.cluster_listen", &broker.cluster_listen, "must be HOST:PORT with a numeric IP".into())
            })?)
        };
        if voters.len() > 1 && cluster_listen.is_none() {
            return Err(invalid(
                "broker.cluster_listen",
                "",
                "must be set when controller_quorum_voters names other brokers".into(),
            ));
        }
        check("broker.socket_request_max_bytes", broker.socket_request_max_bytes, 1024, i32::MAX as u32)?;
        check("broker.num_partitions", broker.num_partitions, 1, 100_000)?;
        check("broker.default_replication_factor", broker.default_replication_factor, 1, i16::MAX)?;
        check("broker.offsets_topic_replication_factor", broker.offsets_topic_replication_factor, 1, i16::MAX)?;
        check("broker.broker_session_timeout_ms", broker.broker_session_timeout_ms, 1_000, 3_600_000)?;
        check("broker.shutdown_grace_secs", broker.shutdown_grace_secs, 0, 3600)?;
        check("broker.retention_check_interval_ms", broker.retention_check_interval_ms, 100, 86_400_000)?;
        check("broker.producer_id_expiration_ms", broker.producer_id_expiration_ms, 1, i64::MAX)?;
        check("broker.group_min_session_timeout_ms", broker.group_min_session_timeout_ms, 1, i32::MAX)?;
        check(
            "broker.group_max_session_timeout_ms",
            broker.group_max_session_timeout_ms,
            broker.group_min_session_timeout_ms,
            i32::MAX,
        )?;
        check("broker.group_initial_rebalance_delay_ms", broker.group_initial_rebalance_delay_ms, 0, 3_600_000)?;
        check("broker.log_cleaner_backoff_ms", broker.log_cleaner_backoff_ms, 10, 86_400_000)?;
        check(
            "broker.log_cleaner_io_max_bytes_per_second",
            broker.log_cleaner_io_max_bytes_per_second,
            1 << 20,
            u64::MAX,
        )?;
        check("broker.offsets_retention_minutes", broker.offsets_retention_minutes, 1, i64::MAX / 60_000)?;

        let mut topic_defaults = BTreeMap::new();
        for (k, v) in &file.topic_defaults {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(ConfigError::Invalid {
                        name: format!("topic_defaults.{k}"),
                        value: other.to_string(),
                        reason: "must be a string or number".into(),
                    })
                }
            };
            ringbroker_engine::config::validate_topic_config(k, &s).map_err(|e| ConfigError::Invalid {
                name: format!("topic_defaults.{k}"),
                value: s.clone(),
                reason: e.reason,
            })?;
            topic_defaults.insert(k.clone(), s);
        }

        check_tuning("core_defaults", &file.core_defaults)?;
        let shards = if file.core.is_empty() {
            // One shard per CPU this process may run on.
            let n = core_affinity::get_core_ids().map(|c| c.len()).unwrap_or(1).max(1);
            (0..n).map(|cpu| ShardConfig { cpu: Some(cpu), tuning: file.core_defaults.clone() }).collect()
        } else {
            let mut seen = std::collections::BTreeSet::new();
            let mut v = Vec::new();
            for (i, c) in file.core.iter().enumerate() {
                if !seen.insert(c.cpu) {
                    return Err(ConfigError::Invalid {
                        name: format!("core[{i}].cpu"),
                        value: c.cpu.to_string(),
                        reason: "each cpu may appear once".into(),
                    });
                }
                let d = &file.core_defaults;
                let t = CoreTuning {
                    io_memory: c.io_memory.unwrap_or(d.io_memory),
                    ring_depth: c.ring_depth.unwrap_or(d.ring_depth),
                    spin_before_park_us: c.spin_before_park_us.unwrap_or(d.spin_before_park_us),
                    preempt_timer_ms: c.preempt_timer_ms.unwrap_or(d.preempt_timer_ms),
                    batch_cache_bytes: c.batch_cache_bytes.unwrap_or(d.batch_cache_bytes),
                    channel_capacity: c.channel_capacity.unwrap_or(d.channel_capacity),
                    max_inflight_per_connection: c.max_inflight_per_connection.unwrap_or(d.max_inflight_per_connection),
                };
                check_tuning(&format!("core[{i}]"), &t)?;
                v.push(ShardConfig { cpu: Some(c.cpu), tuning: t });
            }
            v
        };
        check("number of [[core]] sections", shards.len(), 1, 1024)?;
        Ok(BrokerConfig {
            broker,
            listen,
            advertised_host,
            advertised_port,
            admin_listen,
            voters,
            cluster_listen,
            topic_defaults,
            shards,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::parse(s, Path::new("t.toml"), &Overrides::default())
    }

    #[test]
    fn quorum_voters_parse_in_kafkas_form_and_are_checked() {
        let v = parse_voters("2@10.0.0.3:9093, 0@host-a:9093,1@[::1]:9093").unwrap();
        assert_eq!(v.iter().map(|v| v.node_id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(v[0].addr, "host-a:9093");
        for bad in ["1", "x@h:1", "1@h", "1@h:0", "1@:9", "1@h:1,1@g:2", "-1@h:1"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
        // Alone by default.
        let c = parse("").unwrap();
        assert_eq!(c.voters, vec![Voter { node_id: 0, addr: String::new() }]);
        // Must name this broker, and others need a cluster listener.
        let e = parse("[broker]\nnode_id = 5\ncontroller_quorum_voters = \"1@h:1,2@h:2\"").unwrap_err();
        assert!(e.to_string().contains("controller_quorum_voters"), "{e}");
        let e = parse("[broker]\nnode_id = 1\ncontroller_quorum_voters = \"1@h:1,2@h:2\"").unwrap_err();
        assert!(e.to_string().contains("cluster_listen"), "{e}");
        let ov = Overrides {
            node_id: Some(2),
            cluster_listen: Some("127.0.0.1:7002".into()),
            controller_quorum_voters: Some("1@127.0.0.1:7001,2@127.0.0.1:7002".into()),
            ..Default::default()
        };
        let c = BrokerConfig::parse("", Path::new("t.toml"), &ov).unwrap();
        assert_eq!(c.broker.node_id, 2);
        assert_eq!(c.voters.len(), 2);
        assert_eq!(c.cluster_listen.unwrap().port(), 7002);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.port(), 9092);
        assert!(!c.shards.is_empty());
        assert_eq!(c.broker.socket_request_max_bytes, 100 << 20);
    }

    #[test]
    fn bad_settings_name_themselves() {
        let e = parse("[core_defaults]\nring_depth = 100\n").unwrap_err().to_string();
        assert!(e.contains("core_defaults.ring_depth"), "{e}");
        let e = parse("[topic_defaults]\n\"retention.ms\" = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("topic_defaults.retention.ms"), "{e}");
        let e = parse("[broker]\nnum_partitions = 0\n").unwrap_err().to_string();
        assert!(e.contains("broker.num_partitions") && e.contains("[1, 100000]"), "{e}");
        let e = parse("[broker]\nno_such = 1\n").unwrap_err().to_string();
        assert!(e.contains("no_such"), "{e}");
    }

    #[test]
    fn core_overrides_inherit_defaults() {
        let c = parse("[core_defaults]\nring_depth = 256\n[[core]]\ncpu = 0\n[[core]]\ncpu = 1\nring_depth = 64\n")
            .unwrap();
        assert_eq!(c.shards.len(), 2);
        assert_eq!(c.shards[0].tuning.ring_depth, 256);
        assert_eq!(c.shards[1].tuning.ring_depth, 64);
        assert!(parse("[[core]]\ncpu = 0\n[[core]]\ncpu = 0\n").is_err());
    }

    #[test]
    fn shipped_tuning_files_are_valid() {
        for f in ["../tuning/default.toml", "../tuning/bare-metal.toml", "../tuning/single-core.toml"] {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            BrokerConfig::load(&p, &Overrides::default()).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}
