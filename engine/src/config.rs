//! Topic-level log settings under Kafka's names.
//!
//! A topic's effective `LogConfig` is the broker's defaults overlaid with the
//! topic's overrides. Both are kept as string maps in metadata (so that
//! DescribeConfigs can report sources exactly) and parsed here, in one place,
//! with their bounds. Unknown keys are rejected so a typo never silently does
//! nothing.

use std::collections::BTreeMap;

/// When appended data is made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Every acks=1/all produce is answered only after its data is fdatasync'ed;
    /// concurrent appends share one flush (group commit).
    Always,
    /// Data is written and synced every `flush.ms` milliseconds; acks do not wait.
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

/// Effective settings of one partition log. Owned by the shard that owns the
/// partition; replaced whole when the topic's configs change.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub cleanup_policy: CleanupPolicy,
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    pub index_interval_bytes: u32,
    pub flush_policy: FlushPolicy,
    pub flush_ms: u64,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub min_insync_replicas: i32,
}

/// One known setting: its Kafka name, default, and a validator.
pub struct ConfigKey {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
    validate: fn(&str) -> Result<(), String>,
}

fn int_range(v: &str, lo: i64, hi: i64) -> Result<(), String> {
    let n: i64 = v.trim().parse().map_err(|_| format!("'{v}' is not an integer"))?;
    if n < lo || n > hi {
        return Err(format!("{n} is outside [{lo}, {hi}]"));
    }
    Ok(())
}

/// Every topic-level setting ringbroker understands, with Kafka's defaults.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        default: "delete",
        doc: "delete, compact, or both (comma separated)",
        validate: |v| parse_cleanup(v).map(|_| ()),
    },
    ConfigKey {
        name: "retention.ms",
        default: "604800000",
        doc: "delete sealed segments older than this; -1 keeps forever",
        validate: |v| int_range(v, -1, i64::MAX),
    },
    ConfigKey {
        name: "retention.bytes",
        default: "-1",
        doc: "delete oldest sealed segments while the partition is larger; -1 unlimited",
        validate: |v| int_range(v, -1, i64::MAX),
    },
    ConfigKey {
        name: "segment.bytes",
        default: "1073741824",
        doc: "roll the active segment at this size",
        validate: |v| int_range(v, 14, i32::MAX as i64),
    },
    ConfigKey {
        name: "segment.ms",
        default: "604800000",
        doc: "roll the active segment after this age",
        validate: |v| int_range(v, 1, i64::MAX),
    },
    ConfigKey {
        name: "max.message.bytes",
        default: "1048588",
        doc: "largest record batch accepted",
        validate: |v| int_range(v, 0, i32::MAX as i64),
    },
    ConfigKey {
        name: "message.timestamp.type",
        default: "CreateTime",
        doc: "CreateTime or LogAppendTime",
        validate: |v| match v {
            "CreateTime" | "LogAppendTime" => Ok(()),
            _ => Err(format!("'{v}' is not CreateTime or LogAppendTime")),
        },
    },
    ConfigKey {
        name: "index.interval.bytes",
        default: "4096",
        doc: "bytes between offset index entries",
        validate: |v| int_range(v, 0, i32::MAX as i64),
    },
    ConfigKey {
        name: "flush.policy",
        default: "always",
        doc: "ringbroker: always (fsync before ack), interval, never",
        validate: |v| {
            FlushPolicy::parse(v).map(|_| ()).ok_or_else(|| format!("'{v}' is not always, interval or never"))
        },
    },
    ConfigKey {
        name: "flush.ms",
        default: "1000",
        doc: "sync period when flush.policy=interval",
        validate: |v| int_range(v, 1, 86_400_000),
    },
    ConfigKey {
        name: "delete.retention.ms",
        default: "86400000",
        doc: "how long tombstones survive compaction",
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        doc: "compaction starts above this dirty ratio",
        validate: |v| match v.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => Ok(()),
            _ => Err(format!("'{v}' is not a number in [0, 1]")),
        },
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        default: "0",
        doc: "records younger than this are not compacted",
        validate: |v| int_range(v, 0, i64::MAX),
    },
    ConfigKey {
        name: "min.insync.replicas",
        default: "1",
        doc: "replicas that must have a record for acks=all",
        validate: |v| int_range(v, 1, i32::MAX as i64),
    },
];

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

/// Checks one topic setting.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let key = config_key(name)
        .ok_or_else(|| ConfigError { name: name.to_string(), reason: "unknown topic config".into() })?;
    (key.validate)(value).map_err(|reason| ConfigError { name: name.to_string(), reason })
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
        Ok(LogConfig {
            segment_bytes: int("segment.bytes")? as u64,
            segment_ms: int("segment.ms")?,
            retention_ms: int("retention.ms")?,
            retention_bytes: int("retention.bytes")?,
            cleanup_policy: parse_cleanup(&get("cleanup.policy")?).expect("validated"),
            max_message_bytes: int("max.message.bytes")? as usize,
            message_timestamp_type: if get("message.timestamp.type")? == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            index_interval_bytes: int("index.interval.bytes")? as u32,
            flush_policy: FlushPolicy::parse(&get("flush.policy")?).expect("validated"),
            flush_ms: int("flush.ms")? as u64,
            delete_retention_ms: int("delete.retention.ms")?,
            min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")?.parse().expect("validated"),
            min_compaction_lag_ms: int("min.compaction.lag.ms")?,
            min_insync_replicas: int("min.insync.replicas")? as i32,
        })
    }

    /// Kafka's defaults, for tests and tools.
    pub fn kafka_defaults() -> Self {
        Self::resolve(&BTreeMap::new(), &BTreeMap::new()).expect("defaults are valid")
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
}
