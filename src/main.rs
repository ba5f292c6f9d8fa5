//! `ringbroker`: the broker (`serve`) and a command-line Kafka client
//! (`topic`, `group`, `produce`, `consume`) in one binary.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Keeps a decoder's wire-supplied array length from aborting the process:
/// see `net/src/alloc_guard.rs`.
#[global_allocator]
static ALLOCATOR: ringbroker_net::alloc_guard::GuardedAlloc = ringbroker_net::alloc_guard::GuardedAlloc;

#[derive(Parser, Debug)]
#[command(name = "ringbroker", version, about = "Kafka-compatible event streaming broker, thread-per-core on io_uring")]
struct Cli {
    /// Broker to talk to, for the client commands (HOST:PORT[,HOST:PORT...]).
    #[arg(long, global = true, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker.
    Serve {
        /// Config file (see docs/configuration.md). Default: tuning/default.toml
        /// if it exists here, else the same built-in defaults.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Client listener HOST:PORT (overrides broker.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Data directory (overrides broker.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Prometheus/health HTTP listener HOST:PORT (overrides broker.admin_listen).
        #[arg(long)]
        admin_listen: Option<String>,
        /// This broker's node id (overrides broker.node_id).
        #[arg(long)]
        node_id: Option<i32>,
        /// Broker-to-broker listener HOST:PORT (overrides broker.cluster_listen).
        #[arg(long)]
        cluster_listen: Option<String>,
        /// The metadata quorum, id@HOST:PORT,... of each voter's cluster
        /// listener (overrides broker.controller_quorum_voters).
        #[arg(long)]
        controller_quorum_voters: Option<String>,
        /// Client address given out in Metadata, HOST:PORT (overrides
        /// broker.advertised_listener).
        #[arg(long)]
        advertised_listen: Option<String>,
    },
    /// Create, list, describe or delete topics.
    #[command(subcommand)]
    Topic(ringbroker_cli::TopicCommand),
    /// The cluster: brokers, the active controller, quorum lag, leaders per broker.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// List, describe or delete consumer groups; reset or delete their offsets.
    Group(ringbroker_cli::GroupArgs),
    /// Produce lines from stdin as records.
    Produce(ringbroker_cli::ProduceArgs),
    /// Consume records to stdout, one value per line.
    Consume(ringbroker_cli::ConsumeArgs),
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Brokers with the partitions each leads and holds, the active
    /// controller, and each metadata quorum voter's lag.
    Status,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
            admin_listen,
            node_id,
            cluster_listen,
            controller_quorum_voters,
            advertised_listen,
        } => {
            ringbroker_net::alloc_guard::keep_large_buffers_in_arenas();
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RINGBROKER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // A full disk under the log file must not take the broker
                // down: by default a failed log write is reported with
                // eprintln!, which panics (and panic=abort) when stderr
                // itself cannot be written. Log lines are lost instead.
                .log_internal_errors(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let ov = ringbroker_net::config::Overrides {
                listen,
                data_dir,
                admin_listen,
                node_id,
                cluster_listen,
                controller_quorum_voters,
                advertised_listener: advertised_listen,
            };
            let default_file = PathBuf::from("tuning/default.toml");
            let loaded = match config {
                Some(path) => ringbroker_net::config::BrokerConfig::load(&path, &ov),
                None if default_file.exists() => ringbroker_net::config::BrokerConfig::load(&default_file, &ov),
                None => {
                    tracing::info!("no --config and no tuning/default.toml here: using built-in defaults");
                    ringbroker_net::config::BrokerConfig::parse("", std::path::Path::new("<built-in defaults>"), &ov)
                }
            };
            match loaded {
                Ok(cfg) => ringbroker_net::server::run(cfg),
                Err(e) => Err(e.into()),
            }
        }
        Command::Topic(cmd) => ringbroker_cli::run_topic(&cli.bootstrap, cmd),
        Command::Cluster(ClusterCommand::Status) => ringbroker_cli::run_cluster_status(&cli.bootstrap),
        Command::Group(args) => ringbroker_cli::run_group(&cli.bootstrap, args),
        Command::Produce(args) => ringbroker_cli::run_produce(&cli.bootstrap, args),
        Command::Consume(args) => ringbroker_cli::run_consume(&cli.bootstrap, args),
    };
    if let Err(e) = result {
        // Not eprintln!: it panics if stderr cannot be written.
        let _ = writeln!(std::io::stderr(), "ringbroker: {e:#}");
        std::process::exit(1);
    }
}
