//! ringbroker's Kafka protocol server: shards, connections, request handlers,
//! cross-shard routing, metadata, metrics.

pub mod alloc_guard;
pub mod config;
pub mod conn;
pub mod handlers;
pub mod metadata;
pub mod metrics;
pub mod router;
pub mod server;
pub mod shard;
