//! The replication seam: what a produce must wait for before it is
//! acknowledged.
//!
//! On a single node a record is committed once it is appended and, under
//! `flush.policy=always`, fdatasync'ed. With replication the same decision
//! gains one more condition: the in-sync replicas (at least
//! `min.insync.replicas`) must have it durable too. The produce path asks
//! `commit_wait` what to wait for, so the replication step slots in between
//! append and acknowledgement without touching the handlers.

pub mod partition;

use ringbroker_engine::config::FlushPolicy;

/// Kafka's `acks` setting of a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: no response at all.
    None,
    /// acks=1: the leader has the records.
    Leader,
    /// acks=all (-1): every in-sync replica has the records.
    All,
}

impl Acks {
    /// Parses the wire value; anything but 0, 1, -1 is INVALID_REQUIRED_ACKS.
    pub fn from_kafka(acks: i16) -> Option<Self> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// What the produce path waits for before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitWait {
    /// Answer now.
    Nothing,
    /// Wait until the local log is durable past `end_offset` (exclusive).
    LocalDurable { end_offset: i64 },
    /// Wait until the high watermark (replicated and durable on the ISR)
    /// passes `end_offset`. Used once partitions have followers.
    Committed { end_offset: i64 },
}

/// Decides the wait for records ending before `end_offset`.
pub fn commit_wait(acks: Acks, flush: FlushPolicy, replicas: usize, end_offset: i64) -> CommitWait {
    match acks {
        Acks::None => CommitWait::Nothing,
        Acks::All if replicas > 1 => CommitWait::Committed { end_offset },
        Acks::Leader | Acks::All => match flush {
            FlushPolicy::Always => CommitWait::LocalDurable { end_offset },
            // The operator chose to trade durability for latency: the record
            // is acknowledged once appended, and synced later.
            FlushPolicy::Interval | FlushPolicy::Never => CommitWait::Nothing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_parse_like_kafka() {
        assert_eq!(Acks::from_kafka(0), Some(Acks::None));
        assert_eq!(Acks::from_kafka(1), Some(Acks::Leader));
        assert_eq!(Acks::from_kafka(-1), Some(Acks::All));
        assert_eq!(Acks::from_kafka(2), None);
        assert_eq!(Acks::from_kafka(-2), None);
    }

    #[test]
    fn waits_follow_policy_and_replication() {
        assert_eq!(commit_wait(Acks::None, FlushPolicy::Always, 1, 10), CommitWait::Nothing);
        assert_eq!(commit_wait(Acks::Leader, FlushPolicy::Always, 1, 10), CommitWait::LocalDurable { end_offset: 10 });
        assert_eq!(commit_wait(Acks::All, FlushPolicy::Always, 1, 10), CommitWait::LocalDurable { end_offset: 10 });
        assert_eq!(commit_wait(Acks::All, FlushPolicy::Interval, 1, 10), CommitWait::Nothing);
        assert_eq!(commit_wait(Acks::All, FlushPolicy::Never, 3, 10), CommitWait::Committed { end_offset: 10 });
        assert_eq!(commit_wait(Acks::Leader, FlushPolicy::Never, 3, 10), CommitWait::Nothing);
    }
}
