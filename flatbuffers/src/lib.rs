//! Schemas of ringbroker's inter-broker protocol and metadata records, and
//! the Rust code flatc generates from them.
//!
//! The `.fbs` files in `schemas/` are the source of truth. The generated
//! modules in `src/generated/` are committed (so building needs no flatc)
//! and checked against the schemas by `scripts/check-flatbuffers.sh`, which
//! regenerates them with flatc 25.12.19 (the version of the `flatbuffers`
//! runtime crate) and fails on any difference. To change a schema: edit it,
//! run `scripts/check-flatbuffers.sh --write`, commit both.
//!
//! Bytes that come from another broker or from disk are never trusted:
//! decoders verify a buffer (`flatbuffers::root_with_opts` with
//! `verifier_options`) before reading it.

#[allow(clippy::all, clippy::pedantic, unused_imports, dead_code, non_camel_case_types, mismatched_lifetime_syntaxes)]
#[rustfmt::skip]
mod metadata_generated {
    include!("generated/metadata_generated.rs");
}
#[allow(clippy::all, clippy::pedantic, unused_imports, dead_code, non_camel_case_types, mismatched_lifetime_syntaxes)]
#[rustfmt::skip]
mod inter_broker_generated {
    include!("generated/inter_broker_generated.rs");
}

/// Inter-broker messages.
pub use inter_broker_generated::ringbroker::inter_broker;
/// Metadata log records.
pub use metadata_generated::ringbroker::metadata;

pub use flatbuffers;

/// Metadata log records (schema text).
pub const METADATA_SCHEMA: &str = include_str!("../schemas/metadata.fbs");
/// Inter-broker messages (schema text).
pub const INTER_BROKER_SCHEMA: &str = include_str!("../schemas/inter_broker.fbs");

/// Limits for verifying untrusted buffers: a record or message is one
/// table tree of modest depth; anything deeper or with more tables than it
/// has bytes is hostile.
pub fn verifier_options(len: usize) -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 16,
        max_tables: len / 4 + 1,
        max_apparent_size: len.saturating_mul(2).max(1 << 10),
        ..Default::default()
    }
}

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

    #[test]
    fn garbage_does_not_verify() {
        for bad in [&[][..], &[0u8; 3], &[0xff; 64], b"\x08\x00\x00\x00\x00\x00\x00\x00"] {
            let opts = verifier_options(bad.len());
            assert!(flatbuffers::root_with_opts::<metadata::MetadataRecord>(&opts, bad).is_err());
            assert!(flatbuffers::root_with_opts::<inter_broker::Envelope>(&opts, bad).is_err());
        }
    }
}
