//! Topic-level log settings under Kafka's names.
//!
//! A topic's effective `LogConfig` is the broker's defaults overlaid with the
//! topic's overrides. Both are kept as string maps in metadata (so that
//! DescribeConfigs can report sources exactly) and parsed here, in one place,
//! with their bounds. Every topic config of Kafka 4 is known here with Kafka's
//! type, default and validation (and its broker-level synonym); unknown keys
//! are rejected so a typo never silently does nothing. [`Support`] says what
//! each setting does in ringbroker (docs/configuration.md lists them).

use std::collections::BTreeMap;

use crate::batch::Compression;

/// When appended data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every acks=1/all produce is answered only after its data is fdatasync'ed;
    /// concurrent appends share one flush (group commit).
    Always,
    /// Data is written and synced every `flush.ms` milliseconds (or once
    /// `flush.messages` records are unsynced); acks do not wait.
    Interval,
    /// Data is written as buffers fill and synced only on roll and shutdown.
    Never,
}

impl FlushPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(Self::Always),
            "interval" => Some(Self::Interval),
            "never" => Some(Self::Never),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Interval => "interval",
            Self::Never => "never",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// `compression.type`: keep the producer's codec, or store every batch with
/// this one (the broker recompresses batches that arrive with another codec).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicCompression {
    Producer,
    Codec(Compression),
}

/// Effective settings of one partition log. Owned by the shard that owns the
/// partition; replaced whole when the topic's configs change.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_jitter_ms: i64,
    pub segment_index_bytes: u64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub cleanup_policy: CleanupPolicy,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    pub message_timestamp_before_max_ms: i64,
    pub message_timestamp_after_max_ms: i64,
    pub index_interval_bytes: u32,
    pub flush_policy: FlushPolicy,
    pub flush_ms: u64,
    pub flush_messages: i64,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
    pub compression: TopicCompression,
    pub compression_gzip_level: i32,
    pub compression_lz4_level: i32,
    pub compression_zstd_level: i32,
}

/// Kafka's ConfigType, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// What a setting does in ringbroker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Honoured with Kafka's meaning.
    Honoured,
    /// Accepted, validated, stored and described, but it has no effect
    /// here; the text says why (docs/configuration.md repeats it).
    NoEffect(&'static str),
}

/// One known setting: its Kafka name, the broker config that sets its
/// cluster default, type, default, documentation and validator.
pub struct ConfigKey {
    pub name: &'static str,
    /// The broker-level synonym (`log.retention.ms` for `retention.ms`).
    pub broker_name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    pub doc: &'static str,
    pub support: Support,
    validate: fn(&str) -> Result<(), String>,
}

fn int_range(v: &str, lo: i64, hi: i64) -> Result<(), String> {
    let n: i64 = v.trim().parse().map_err(|_| format!("'{v}' is not an integer"))?;
    if n < lo || n > hi {
        return Err(format!("{n} is outside [{lo}, {hi}]"));
    }
    Ok(())
}

fn boolean(v: &str) -> Result<(), String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "false" => Ok(()),
        _ => Err(format!("'{v}' is not true or false")),
    }
}

/// Kafka's throttled-replicas list: empty, `*`, or `partition:broker,...`.
fn throttled_replicas(v: &str) -> Result<(), String> {
    let v = v.trim();
    if v.is_empty() || v == "*" {
        return Ok(());
    }
    for item in v.split(',').map(str::trim) {
        let ok =
            item.split_once(':').map(|(p, b)| p.parse::<u32>().is_ok() && b.parse::<u32>().is_ok()).unwrap_or(false);
        if !ok {
            return Err(format!("'{item}' is not partitionId:brokerId"));
        }
    }
    Ok(())
}

const LONG_MAX: &str = "9223372036854775807";
const NO_REPLICATION: &str = "no effect until partition replication exists (replication factor 1)";
const NO_TIERED: &str = "tiered storage does not exist here: local retention is the retention";

/// Every topic-level setting of Kafka 4, with Kafka's defaults and bounds.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        broker_name: "log.cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        doc: "delete, compact, or both (comma separated)",
        support: Support::Honoured,
        validate: |v| parse_cleanup(v).map(|_| ()),
    },
    ConfigKey {
        name: "compression.type",
        broker_name: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        doc: "codec batches are stored with: producer (keep the producer's), uncompressed, gzip, snappy, lz4, zstd; \
              batches with another codec are recompressed on append",
        support: Support::Honoured,
        validate: |v| parse_compression(v).map(|_| ()),
    },
    ConfigKey {
        name: "compression.gzip.level",
        broker_name: "compression.gzip.level",
        kind: ConfigType::Int,
        default: "-1",
        doc: "gzip level when the broker recompresses: 1..9, or -1 for the codec default",
        support: Support::Honoured,
        validate: |v| {
            int_range(v, -1, 9).and_then(|_| if v.trim() == "0" { Err("0 is not 1..9 or -1".into()) } else { Ok(()) })
        },
    },
    ConfigKey {
        name: "compression.lz4.level",
        broker_name: "compression.lz4.level",
        kind: ConfigType::Int,
        default: "9",
        doc: "lz4 level when the broker recompresses: 1..17",
        support: Support::NoEffect("ringbroker's lz4 frame encoder has one level (fast mode); the value is kept"),
        validate: |v| int_range(v, 1, 17),
    },
    ConfigKey {
        name: "compression.zstd.level",
        broker_name: "compression.zstd.level",
        kind: ConfigType::Int,
        default: "3",
        doc: "zstd level when the broker recompresses: -131072..22",
        support: Support::Honoured,
        validate: |v| int_range(v, -131_072, 22),
    },
    ConfigKey {
        name: "delete.retention.ms",
        broker_name: "log.cleaner.delete.retention.ms",
        kind: ConfigType::Long,
        default: "86400000",
        doc: "how long tombstones survive compaction",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "file.delete.delay.ms",
        broker_name: "log.segment.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        doc: "delay before a deleted segment's file is removed",
        support: Support::NoEffect(
            "segments are unlinked at once: readers hold open file handles, so a late read still completes",
        ),
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "flush.messages",
        broker_name: "log.flush.interval.messages",
        kind: ConfigType::Long,
        default: LONG_MAX,
        doc: "with flush.policy=interval, also sync once this many records are unsynced",
        support: Support::Honoured,
        validate: |v| int_range(v, 1, i64::MAX),
    },
    ConfigKey {
        name: "flush.ms",
        broker_name: "log.flush.interval.ms",
        kind: ConfigType::Long,
        default: "1000",
        doc: "with flush.policy=interval, sync at least this often (Kafka's default is never; ringbroker's \
              default policy, always, syncs before every acknowledgement)",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "flush.policy",
        broker_name: "log.flush.policy",
        kind: ConfigType::String,
        default: "always",
        doc: "ringbroker extension: always (fsync before acks=1/all are answered, group commit), interval \
              (flush.ms / flush.messages), never",
        support: Support::Honoured,
        validate: |v| {
            FlushPolicy::parse(v).map(|_| ()).ok_or_else(|| format!("'{v}' is not always, interval or never"))
        },
    },
    ConfigKey {
        name: "follower.replication.throttled.replicas",
        broker_name: "follower.replication.throttled.replicas",
        kind: ConfigType::List,
        default: "",
        doc: "replicas whose follower fetching is throttled: partitionId:brokerId,... or *",
        support: Support::NoEffect(NO_REPLICATION),
        validate: throttled_replicas,
    },
    ConfigKey {
        name: "index.interval.bytes",
        broker_name: "log.index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        doc: "bytes between offset index entries",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i32::MAX as i64),
    },
    ConfigKey {
        name: "leader.replication.throttled.replicas",
        broker_name: "leader.replication.throttled.replicas",
        kind: ConfigType::List,
        default: "",
        doc: "replicas whose leader-side replication is throttled: partitionId:brokerId,... or *",
        support: Support::NoEffect(NO_REPLICATION),
        validate: throttled_replicas,
    },
    ConfigKey {
        name: "local.retention.bytes",
        broker_name: "log.local.retention.bytes",
        kind: ConfigType::Long,
        default: "-2",
        doc: "local part of retention.bytes with tiered storage (-2: same as retention.bytes)",
        support: Support::NoEffect(NO_TIERED),
        validate: |v| int_range(v, -2, i64::MAX),
    },
    ConfigKey {
        name: "local.retention.ms",
        broker_name: "log.local.retention.ms",
        kind: ConfigType::Long,
        default: "-2",
        doc: "local part of retention.ms with tiered storage (-2: same as retention.ms)",
        support: Support::NoEffect(NO_TIERED),
        validate: |v| int_range(v, -2, i64::MAX),
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        broker_name: "log.cleaner.max.compaction.lag.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        doc: "a record stays uncompacted at most this long: the log is cleaned even below the dirty ratio",
        support: Support::Honoured,
        validate: |v| int_range(v, 1, i64::MAX),
    },
    ConfigKey {
        name: "max.message.bytes",
        broker_name: "message.max.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        doc: "largest record batch accepted",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i32::MAX as i64),
    },
    ConfigKey {
        name: "message.downconversion.enable",
        broker_name: "log.message.downconversion.enable",
        kind: ConfigType::Boolean,
        default: "true",
        doc: "legacy (removed in Kafka 4): down-conversion for old fetchers",
        support: Support::NoEffect("no fetch version that needs down-conversion is served"),
        validate: boolean,
    },
    ConfigKey {
        name: "message.timestamp.after.max.ms",
        broker_name: "log.message.timestamp.after.max.ms",
        kind: ConfigType::Long,
        default: "3600000",
        doc: "CreateTime topics refuse a record whose timestamp is more than this ahead of the broker's clock \
              (INVALID_TIMESTAMP)",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "message.timestamp.before.max.ms",
        broker_name: "log.message.timestamp.before.max.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        doc: "CreateTime topics refuse a record whose timestamp is more than this behind the broker's clock \
              (INVALID_TIMESTAMP)",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "message.timestamp.difference.max.ms",
        broker_name: "log.message.timestamp.difference.max.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        doc: "legacy (removed in Kafka 4): both bounds at once; the smaller of it and each of \
              message.timestamp.before/after.max.ms applies",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "message.timestamp.type",
        broker_name: "log.message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        doc: "CreateTime or LogAppendTime",
        support: Support::Honoured,
        validate: |v| match v {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!("'{v}' is not CreateTime or LogAppendTime")),
        },
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        broker_name: "log.cleaner.min.cleanable.ratio",
        kind: ConfigType::Double,
        default: "0.5",
        doc: "compaction starts above this dirty ratio",
        support: Support::Honoured,
        validate: |v| match v.trim().parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
            _ => Err(format!("'{v}' is not a number in [0, 1]")),
        },
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        broker_name: "log.cleaner.min.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "0",
        doc: "records younger than this are not compacted",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "min.insync.replicas",
        broker_name: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        doc: "replicas that must have a record for acks=all",
        support: Support::NoEffect(NO_REPLICATION),
        validate: |v| int_range(v, 1, i32::MAX as i64),
    },
    ConfigKey {
        name: "preallocate",
        broker_name: "log.preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "preallocate segment files",
        support: Support::NoEffect("segments are always preallocated in steps (fallocate): direct I/O needs it"),
        validate: boolean,
    },
    ConfigKey {
        name: "remote.log.copy.disable",
        broker_name: "remote.log.copy.disable",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "tiered storage: stop copying segments to remote storage",
        support: Support::NoEffect(NO_TIERED),
        validate: boolean,
    },
    ConfigKey {
        name: "remote.log.delete.on.disable",
        broker_name: "remote.log.delete.on.disable",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "tiered storage: delete remote segments when tiering is disabled",
        support: Support::NoEffect(NO_TIERED),
        validate: boolean,
    },
    ConfigKey {
        name: "remote.storage.enable",
        broker_name: "remote.storage.enable",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "tiered storage for the topic; refused (as by a Kafka broker without a remote log manager)",
        support: Support::NoEffect(NO_TIERED),
        validate: |v| {
            boolean(v)?;
            if v.trim().eq_ignore_ascii_case("true") {
                return Err("tiered storage is not enabled on this broker".into());
            }
            Ok(())
        },
    },
    ConfigKey {
        name: "retention.bytes",
        broker_name: "log.retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        doc: "delete oldest sealed segments while the partition is larger; -1 unlimited",
        support: Support::Honoured,
        validate: |v| int_range(v, -1, i64::MAX),
    },
    ConfigKey {
        name: "retention.ms",
        broker_name: "log.retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        doc: "delete sealed segments older than this; -1 keeps forever",
        support: Support::Honoured,
        validate: |v| int_range(v, -1, i64::MAX),
    },
    ConfigKey {
        name: "segment.bytes",
        broker_name: "log.segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        doc: "roll the active segment at this size (Kafka 4 requires at least 1 MiB; ringbroker accepts 14+)",
        support: Support::Honoured,
        validate: |v| int_range(v, 14, i32::MAX as i64),
    },
    ConfigKey {
        name: "segment.index.bytes",
        broker_name: "log.index.size.max.bytes",
        kind: ConfigType::Int,
        default: "10485760",
        doc: "largest offset index of a segment; the segment rolls when its index is full",
        support: Support::Honoured,
        validate: |v| int_range(v, 4, i32::MAX as i64),
    },
    ConfigKey {
        name: "segment.jitter.ms",
        broker_name: "log.roll.jitter.ms",
        kind: ConfigType::Long,
        default: "0",
        doc: "largest random amount subtracted from segment.ms for each segment, so partitions do not roll together",
        support: Support::Honoured,
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "segment.ms",
        broker_name: "log.roll.ms",
        kind: ConfigType::Long,
        default: "604800000",
        doc: "roll the active segment after this age",
        support: Support::Honoured,
        validate: |v| int_range(v, 1, i64::MAX),
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        broker_name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        doc: "allow an out-of-sync replica to become leader",
        support: Support::NoEffect(NO_REPLICATION),
        validate: boolean,
    },
];

fn parse_compression(v: &str) -> Result<TopicCompression, String> {
    Ok(match v.trim() {
        "producer" => TopicCompression::Producer,
        "uncompressed" => TopicCompression::Codec(Compression::None),
        "gzip" => TopicCompression::Codec(Compression::Gzip),
        "snappy" => TopicCompression::Codec(Compression::Snappy),
        "lz4" => TopicCompression::Codec(Compression::Lz4),
        "zstd" => TopicCompression::Codec(Compression::Zstd),
        other => return Err(format!("'{other}' is not one of uncompressed, zstd, lz4, snappy, gzip, producer")),
    })
}

fn parse_cleanup(v: &str) -> Result<CleanupPolicy, String> {
    let mut p = CleanupPolicy { delete: false, compact: false };
    for part in v.split(',').map(str::trim) {
        match part {
            "delete" => p.delete = true,
            "compact" => p.compact = true,
            _ => return Err(format!("'{part}' is not delete or compact")),
        }
    }
    Ok(p)
}

/// Why a setting was refused: names the setting and its bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

pub fn config_key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.name == name)
}

/// The topic setting whose cluster default the broker config `name` sets.
pub fn config_key_by_broker_name(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.broker_name == name)
}

impl ConfigKey {
    /// Checks a value of this setting.
    pub fn check(&self, value: &str) -> Result<(), ConfigError> {
        (self.validate)(value).map_err(|reason| ConfigError { name: self.name.to_string(), reason })
    }
}

/// Checks one topic setting.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let key = config_key(name)
        .ok_or_else(|| ConfigError { name: name.to_string(), reason: "unknown topic config".into() })?;
    key.check(value)
}

impl LogConfig {
    /// Builds the effective config: broker defaults, overlaid with topic overrides.
    pub fn resolve(
        defaults: &BTreeMap<String, String>,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| -> Result<String, ConfigError> {
            let v = overrides
                .get(name)
                .or_else(|| defaults.get(name))
                .cloned()
                .unwrap_or_else(|| config_key(name).expect("known key").default.to_string());
            validate_topic_config(name, &v)?;
            Ok(v)
        };
        let int = |name: &str| -> Result<i64, ConfigError> { Ok(get(name)?.trim().parse::<i64>().expect("validated")) };
        let difference = int("message.timestamp.difference.max.ms")?;
        Ok(LogConfig {
            segment_bytes: int("segment.bytes")? as u64,
            segment_ms: int("segment.ms")?,
            segment_jitter_ms: int("segment.jitter.ms")?,
            segment_index_bytes: int("segment.index.bytes")? as u64,
            retention_ms: int("retention.ms")?,
            retention_bytes: int("retention.bytes")?,
            cleanup_policy: parse_cleanup(&get("cleanup.policy")?).expect("validated"),
            max_message_bytes: int("max.message.bytes")? as usize,
            message_timestamp_type: if get("message.timestamp.type")? == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            message_timestamp_before_max_ms: int("message.timestamp.before.max.ms")?.min(difference),
            message_timestamp_after_max_ms: int("message.timestamp.after.max.ms")?.min(difference),
            index_interval_bytes: int("index.interval.bytes")? as u32,
            flush_policy: FlushPolicy::parse(&get("flush.policy")?).expect("validated"),
            flush_ms: int("flush.ms")? as u64,
            flush_messages: int("flush.messages")?,
            delete_retention_ms: int("delete.retention.ms")?,
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")?.trim().parse().expect("validated"),
            min_compaction_lag_ms: int("min.compaction.lag.ms")?,
            max_compaction_lag_ms: int("max.compaction.lag.ms")?,
            min_insync_replicas: int("min.insync.replicas")? as i32,
            compression: parse_compression(&get("compression.type")?).expect("validated"),
            compression_gzip_level: int("compression.gzip.level")? as i32,
            compression_lz4_level: int("compression.lz4.level")? as i32,
            compression_zstd_level: int("compression.zstd.level")? as i32,
        })
    }

    /// Kafka's defaults, for tests and tools.
    pub fn kafka_defaults() -> Self {
        Self::resolve(&BTreeMap::new(), &BTreeMap::new()).expect("defaults are valid")
    }

    /// The age at which the active segment rolls: `segment.ms` less a jitter
    /// in [0, segment.jitter.ms) chosen per segment (from its base offset,
    /// so it is stable across restarts).
    pub fn roll_after_ms(&self, segment_base_offset: i64) -> i64 {
        if self.segment_jitter_ms <= 0 {
            return self.segment_ms;
        }
        let jitter_range = self.segment_jitter_ms.min(self.segment_ms);
        let h = xxhash_rust::xxh3::xxh3_64(&segment_base_offset.to_be_bytes());
        let jitter = (h % jitter_range as u64) as i64;
        (self.segment_ms - jitter).max(1)
    }

    /// Checks a record timestamp against `message.timestamp.before/after.max.ms`
    /// (CreateTime topics only; LogAppendTime replaces the timestamp).
    pub fn timestamp_in_bounds(&self, timestamp_ms: i64, now_ms: i64) -> bool {
        if self.message_timestamp_type == TimestampType::LogAppendTime {
            return true;
        }
        let behind = now_ms.saturating_sub(timestamp_ms);
        let ahead = timestamp_ms.saturating_sub(now_ms);
        behind <= self.message_timestamp_before_max_ms && ahead <= self.message_timestamp_after_max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let c = LogConfig::kafka_defaults();
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_ms, 604_800_000);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.cleanup_policy, CleanupPolicy { delete: true, compact: false });
        assert_eq!(c.max_message_bytes, 1_048_588);
        assert_eq!(c.flush_policy, FlushPolicy::Always);
        assert_eq!(c.compression, TopicCompression::Producer);
        assert_eq!(c.max_compaction_lag_ms, i64::MAX);
        assert_eq!(c.segment_index_bytes, 10 * 1024 * 1024);
        assert_eq!(c.flush_messages, i64::MAX);
        assert_eq!(c.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(c.message_timestamp_before_max_ms, i64::MAX);
    }

    #[test]
    fn every_key_default_is_valid_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        let mut broker_names = std::collections::HashSet::new();
        for k in TOPIC_CONFIG_KEYS {
            k.check(k.default).unwrap_or_else(|e| panic!("default of {}: {e}", k.name));
            assert!(names.insert(k.name), "duplicate {}", k.name);
            assert!(broker_names.insert(k.broker_name), "duplicate broker name {}", k.broker_name);
            assert_eq!(config_key_by_broker_name(k.broker_name).unwrap().name, k.name);
        }
    }

    #[test]
    fn overrides_win_and_bad_values_name_the_setting() {
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let c = LogConfig::resolve(&BTreeMap::new(), &o).unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        o.insert("segment.bytes".into(), "3".into());
        let e = LogConfig::resolve(&BTreeMap::new(), &o).unwrap_err();
        assert_eq!(e.name, "segment.bytes");
        assert!(validate_topic_config("no.such", "1").is_err());
        assert!(validate_topic_config("flush.policy", "sometimes").is_err());
    }

    #[test]
    fn kafka_validation_of_the_other_topic_configs() {
        for (k, ok, bad) in [
            ("compression.type", "zstd", "brotli"),
            ("compression.gzip.level", "9", "0"),
            ("compression.zstd.level", "-5", "23"),
            ("compression.lz4.level", "17", "18"),
            ("unclean.leader.election.enable", "TRUE", "yes"),
            ("preallocate", "true", "1"),
            ("follower.replication.throttled.replicas", "0:1,1:2", "0-1"),
            ("leader.replication.throttled.replicas", "*", "x:1"),
            ("local.retention.ms", "-2", "-3"),
            ("max.compaction.lag.ms", "1", "0"),
            ("segment.index.bytes", "4", "3"),
            ("remote.storage.enable", "false", "true"),
            ("message.timestamp.after.max.ms", "0", "-1"),
        ] {
            assert!(validate_topic_config(k, ok).is_ok(), "{k}={ok}");
            assert!(validate_topic_config(k, bad).is_err(), "{k}={bad}");
        }
    }

    #[test]
    fn timestamp_bounds_and_legacy_difference() {
        let mut o = BTreeMap::new();
        o.insert("message.timestamp.before.max.ms".to_string(), "1000".to_string());
        let c = LogConfig::resolve(&BTreeMap::new(), &o).unwrap();
        assert!(c.timestamp_in_bounds(10_000 - 1000, 10_000));
        assert!(!c.timestamp_in_bounds(10_000 - 1001, 10_000));
        assert!(c.timestamp_in_bounds(10_000 + 3_600_000, 10_000));
        assert!(!c.timestamp_in_bounds(10_000 + 3_600_001, 10_000));
        o.insert("message.timestamp.difference.max.ms".to_string(), "10".to_string());
        let c = LogConfig::resolve(&BTreeMap::new(), &o).unwrap();
        assert!(!c.timestamp_in_bounds(10_011, 10_000));
        o.insert("message.timestamp.type".to_string(), "LogAppendTime".to_string());
        let c = LogConfig::resolve(&BTreeMap::new(), &o).unwrap();
        assert!(c.timestamp_in_bounds(0, 10_000));
    }

    #[test]
    fn roll_jitter_is_bounded_and_stable() {
        let mut o = BTreeMap::new();
        o.insert("segment.ms".to_string(), "1000".to_string());
        o.insert("segment.jitter.ms".to_string(), "300".to_string());
        let c = LogConfig::resolve(&BTreeMap::new(), &o).unwrap();
        let mut seen = std::collections::HashSet::new();
        for base in 0..200 {
            let r = c.roll_after_ms(base);
            assert!((701..=1000).contains(&r), "{r}");
            assert_eq!(r, c.roll_after_ms(base));
            seen.insert(r);
        }
        assert!(seen.len() > 10, "jitter varies by segment");
    }
}
