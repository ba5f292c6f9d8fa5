//! raft-rs logs through `slog`; this drain hands its records to `tracing`
//! (target `raft`), so quorum events land in the broker's one log stream.

use slog::{Drain, OwnedKVList, Record, KV};

struct TracingDrain;

/// Collects a record's key-value pairs as "k=v" text.
struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments) -> slog::Result {
        use std::fmt::Write;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = record.level();
        // Formatting is skipped unless someone listens at that level.
        let enabled = match level {
            slog::Level::Critical | slog::Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
            slog::Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            slog::Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            slog::Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            slog::Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut f = Fields(String::new());
        let _ = record.kv().serialize(record, &mut f);
        let _ = values.serialize(record, &mut f);
        let msg = record.msg();
        let fields = f.0;
        match level {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{msg}{fields}"),
            slog::Level::Warning => tracing::warn!(target: "raft", "{msg}{fields}"),
            slog::Level::Info => tracing::info!(target: "raft", "{msg}{fields}"),
            slog::Level::Debug => tracing::debug!(target: "raft", "{msg}{fields}"),
            slog::Level::Trace => tracing::trace!(target: "raft", "{msg}{fields}"),
        }
        Ok(())
    }
}

pub fn logger(node: u64) -> slog::Logger {
    let _ = node; // raft-rs adds raft_id (our node id + 1) to every record itself
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
