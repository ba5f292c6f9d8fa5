//! ringbroker storage engine.
//!
//! A partition is a directory of segments of Kafka v2 record batches, written
//! with direct I/O by the shard that owns the partition. This crate holds the
//! pure logic (batch validation, indexes, recovery scanning, configs) and the
//! partition log that drives a `SegmentFile` (glommio DMA files in production).

pub mod append_policy;
pub mod batch;
pub mod cache;
pub mod cleaner;
pub mod compaction;
pub mod config;
pub mod epoch_history;
pub mod ids;
pub mod index;
pub mod io;
pub mod log;
pub mod notify;
pub mod producer_state;
pub mod readahead;
pub mod recovery;
pub mod segment;

use std::path::PathBuf;

/// Errors of the storage engine. I/O errors carry the operation and path.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("invalid record batch: {0}")]
    Batch(#[from] batch::BatchError),
    #[error("offset {offset} is outside [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("partition is poisoned after a storage failure: {0}")]
    Poisoned(String),
    #[error("partition is being truncated")]
    Truncating,
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Producer(#[from] producer_state::ProducerError),
}

/// Milliseconds since the Unix epoch (wall clock, as Kafka timestamps are).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
