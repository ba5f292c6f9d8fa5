//! ringbroker's command-line Kafka client: topic and consumer group
//! administration, produce and consume over the standard Kafka wire protocol. Works against any
//! Kafka-compatible broker: API versions are negotiated via ApiVersions.

pub mod client;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod status;
pub mod topic;

pub use client::KafkaConnection;
pub use group::{GroupArgs, GroupCommand, ResetOffsetsArgs, ResetTo, TopicPartitions};

/// `ringbroker topic ...`
#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Replication factor.
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// Topic config override as key=value (repeatable).
        #[arg(long = "config", value_parser = parse_kv)]
        configs: Vec<(String, String)>,
    },
    /// List topic names.
    List,
    /// Show partitions, leaders, offsets and configs of a topic.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// `ringbroker produce ...`: one record per stdin line.
#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// Topic to produce to.
    pub topic: String,
    /// Send every record to this partition (default: by key hash, or
    /// round-robin per batch for records without key).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Split each line into key and value at the first occurrence of this string.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Required acknowledgements: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Lines per Produce request.
    #[arg(long, default_value_t = 1000)]
    pub batch_records: usize,
}

/// `ringbroker consume ...`: print record values, one per line.
#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// Topic to consume from.
    pub topic: String,
    /// Consume only this partition (default: all partitions).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Start position: earliest, latest or an offset.
    #[arg(long, default_value = "earliest")]
    pub offset: String,
    /// Exit after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit when no new record arrives for this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,
    /// Prefix each value with its key and a tab.
    #[arg(long)]
    pub print_key: bool,
    /// Prefix each line with the record offset and a tab.
    #[arg(long)]
    pub print_offset: bool,
}

/// Parse `key=value` (split at the first `=`).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Run a topic subcommand against `bootstrap` (`host:port[,host:port...]`).
pub fn run_topic(bootstrap: &str, cmd: TopicCommand) -> anyhow::Result<()> {
    topic::run(bootstrap, cmd)
}

/// Produce stdin lines to a topic.
pub fn run_produce(bootstrap: &str, args: ProduceArgs) -> anyhow::Result<()> {
    produce::run(bootstrap, args)
}

/// Consume a topic to stdout.
pub fn run_consume(bootstrap: &str, args: ConsumeArgs) -> anyhow::Result<()> {
    consume::run(bootstrap, args)
}

/// Show the brokers, the active controller and the metadata quorum.
pub fn run_cluster_status(bootstrap: &str) -> anyhow::Result<()> {
    status::run(bootstrap)
}

/// Administer consumer groups.
pub fn run_group(bootstrap: &str, args: GroupArgs) -> anyhow::Result<()> {
    group::run(bootstrap, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Cmd {
        #[command(subcommand)]
        Topic(TopicCommand),
        Group(GroupArgs),
        Produce(ProduceArgs),
        Consume(ConsumeArgs),
    }

    #[test]
    fn kv_parsing() {
        assert_eq!(parse_kv("retention.ms=1000").unwrap(), ("retention.ms".to_string(), "1000".to_string()));
        assert_eq!(parse_kv("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_kv("novalue").is_err());
        assert!(parse_kv("=x").is_err());
    }

    #[test]
    fn clap_definitions() {
        use clap::CommandFactory;
        Cli::command().debug_assert();

        let cli = Cli::parse_from([
            "x",
            "topic",
            "create",
            "t",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "retention.ms=5",
        ]);
        match cli.cmd {
            Cmd::Topic(TopicCommand::Create { name, partitions, replication_factor, configs }) => {
                assert_eq!(name, "t");
                assert_eq!(partitions, 3);
                assert_eq!(replication_factor, 2);
                assert_eq!(configs.len(), 2);
                assert_eq!(configs[0], ("cleanup.policy".into(), "compact".into()));
            }
            other => panic!("{other:?}"),
        }

        let cli = Cli::parse_from(["x", "produce", "t", "--key-separator", ":", "--acks", "1"]);
        match cli.cmd {
            Cmd::Produce(a) => {
                assert_eq!(a.key_separator.as_deref(), Some(":"));
                assert_eq!(a.acks, "1");
                assert_eq!(a.batch_records, 1000);
                assert_eq!(a.partition, None);
            }
            other => panic!("{other:?}"),
        }

        let cli = Cli::parse_from([
            "x",
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "a",
            "--topic",
            "b:1,0",
            "--shift-by",
            "-5",
            "--execute",
            "--json",
        ]);
        match cli.cmd {
            Cmd::Group(GroupArgs { json, command: GroupCommand::ResetOffsets(a) }) => {
                assert!(json && a.execute && !a.all_topics);
                assert_eq!(a.group, "g");
                assert_eq!(
                    a.topics,
                    vec![
                        TopicPartitions { topic: "a".into(), partitions: None },
                        TopicPartitions { topic: "b".into(), partitions: Some(vec![0, 1]) },
                    ]
                );
                assert_eq!(a.to.strategy(0).unwrap(), group::ResetStrategy::ShiftBy(-5));
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::parse_from(["x", "group", "--json", "list"]);
        assert!(matches!(cli.cmd, Cmd::Group(GroupArgs { json: true, command: GroupCommand::List })));
        let cli = Cli::parse_from(["x", "group", "delete", "g1", "g2"]);
        match cli.cmd {
            Cmd::Group(GroupArgs { json: false, command: GroupCommand::Delete { groups } }) => {
                assert_eq!(groups, vec!["g1", "g2"])
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::parse_from(["x", "group", "delete-offsets", "g", "--topic", "t:3"]);
        match cli.cmd {
            Cmd::Group(GroupArgs { command: GroupCommand::DeleteOffsets { group, topics }, .. }) => {
                assert_eq!(group, "g");
                assert_eq!(topics, vec![TopicPartitions { topic: "t".into(), partitions: Some(vec![3]) }]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::parse_from(["x", "group", "reset-offsets", "g", "--all-topics", "--to-datetime", "2024-01-01"]);
        match cli.cmd {
            Cmd::Group(GroupArgs { command: GroupCommand::ResetOffsets(a), .. }) => {
                assert!(a.all_topics && !a.execute && a.topics.is_empty());
                assert_eq!(a.to.strategy(0).unwrap(), group::ResetStrategy::Timestamp(1_704_067_200_000));
            }
            other => panic!("{other:?}"),
        }
        // Exactly one reset target, and a topic selection, are required.
        for bad in [
            &["x", "group", "reset-offsets", "g", "--topic", "t"][..],
            &["x", "group", "reset-offsets", "g", "--topic", "t", "--to-earliest", "--to-latest"],
            &["x", "group", "reset-offsets", "g", "--to-earliest"],
            &["x", "group", "reset-offsets", "g", "--topic", "t", "--all-topics", "--to-earliest"],
            &["x", "group", "reset-offsets", "g", "--topic", "t:x", "--to-earliest"],
            &["x", "group", "reset-offsets", "g", "--topic", "t", "--to-latest", "--execute", "--dry-run"],
            &["x", "group", "delete"],
            &["x", "group", "delete-offsets", "g"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }

        let cli = Cli::parse_from(["x", "consume", "t", "--count", "5", "--print-key"]);
        match cli.cmd {
            Cmd::Consume(a) => {
                assert_eq!(a.offset, "earliest");
                assert_eq!(a.count, Some(5));
                assert_eq!(a.timeout_ms, 5000);
                assert!(a.print_key && !a.print_offset);
            }
            other => panic!("{other:?}"),
        }
    }
}
