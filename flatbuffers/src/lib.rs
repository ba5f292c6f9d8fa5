//! Schemas of ringbroker's inter-broker protocol and metadata records.
//!
//! The `.fbs` files in `schemas/` are the source of truth. Rust bindings are
//! generated from them when the replication and metadata-quorum work lands
//! (issue: replication); until then the schemas are published here so the
//! wire format is reviewed before code depends on it.

/// Metadata log records (KRaft-style quorum).
pub const METADATA_SCHEMA: &str = include_str!("../schemas/metadata.fbs");
/// Inter-broker replication envelope.
pub const INTER_BROKER_SCHEMA: &str = include_str!("../schemas/inter_broker.fbs");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_declare_their_roots() {
        assert!(METADATA_SCHEMA.contains("root_type MetadataRecord;"));
        assert!(INTER_BROKER_SCHEMA.contains("root_type Envelope;"));
        // Record batches must travel as raw bytes, never re-encoded.
        assert!(INTER_BROKER_SCHEMA.contains("batches: [ubyte] (required);"));
    }
}
