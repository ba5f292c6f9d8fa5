//! ringbroker's Kafka protocol server: shards, connections, request handlers,
//! cross-shard routing, metadata, metrics.

pub mod alloc_guard;
pub mod cluster_link;
pub mod config;
pub mod conn;
pub mod coordinator;
pub mod frame_pool;
pub mod group_ops;
pub mod handlers;
pub mod log_limit;
pub mod messages;
pub mod metadata;
pub mod metadata_log;
pub mod metrics;
pub mod partition_map;
pub mod quorum_driver;
pub mod router;
pub mod server;
pub mod shard;

/// Unit tests feed random bytes to the codec: they need the same guard
/// against wire-supplied allocation sizes as the broker binary.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;
