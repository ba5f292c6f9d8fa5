//! Identifiers as their own types.
//!
//! A broker id, a leader epoch and a shard index are all small integers on
//! the wire and in memory; as plain `i32`/`usize` they are easy to pass in
//! each other's place, and the cluster code (controller records, replica
//! assignments, inter-broker messages) passes many of them at once. These
//! newtypes make the compiler keep them apart. Each is `Copy`, costs nothing
//! at run time, and converts explicitly at the wire boundary (`.0`, `From`).

use std::fmt;

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

numeric_id!(
    /// A broker's `node.id` (Kafka's broker id): unique in the cluster.
    BrokerId(i32)
);
numeric_id!(
    /// A partition's leader epoch: bumped by every leader change, stamped
    /// into each batch written under it.
    LeaderEpoch(i32)
);
numeric_id!(
    /// One core's executor inside a broker (0-based).
    ShardId(usize)
);
numeric_id!(
    /// A position in a partition's log.
    Offset(i64)
);
numeric_id!(
    /// An idempotent producer's id.
    ProducerId(i64)
);

/// A topic's id: 16 random bytes, never all zero (zero means "no id" in
/// Kafka's protocol). Shown as Kafka shows it: URL-safe base64, no padding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
#[repr(transparent)]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    pub const ZERO: TopicId = TopicId([0; 16]);

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut bits: u32 = 0;
        let mut n = 0;
        for &b in &self.0 {
            bits = (bits << 8) | u32::from(b);
            n += 8;
            while n >= 6 {
                n -= 6;
                write!(f, "{}", ALPHABET[((bits >> n) & 63) as usize] as char)?;
            }
        }
        if n > 0 {
            write!(f, "{}", ALPHABET[((bits << (6 - n)) & 63) as usize] as char)?;
        }
        Ok(())
    }
}

impl fmt::Debug for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicId({self})")
    }
}

impl From<[u8; 16]> for TopicId {
    fn from(b: [u8; 16]) -> Self {
        TopicId(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_like_kafka() {
        // Kafka's Uuid.toString of 00000000-0000-0000-0000-000000000001.
        let mut one = [0u8; 16];
        one[15] = 1;
        assert_eq!(TopicId(one).to_string(), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(TopicId::ZERO.to_string().len(), 22);
        assert!(TopicId::ZERO.is_zero() && !TopicId(one).is_zero());
    }

    #[test]
    fn ids_order_and_print_as_their_values() {
        assert!(LeaderEpoch(3) > LeaderEpoch(2));
        assert_eq!(BrokerId(7).to_string(), "7");
        assert_eq!(Offset::from(42).0, 42);
    }
}
