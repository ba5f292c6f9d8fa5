//! The classic consumer-group coordinator of ringbroker, written as a pure state machine.
//!
//! Why pure: the coordinator for a group lives on the shard that owns the group's
//! `__consumer_offsets` partition (DESIGN.md §4). Keeping all protocol decisions here, with no
//! I/O, no clock reads and no randomness, makes every transition unit-testable and lets the shard
//! (the *driver*) own timers, the log and the network. Time comes in as `now_ms`; everything the
//! driver must do comes back as [`Effect`] values or record bytes.
//!
//! Modules:
//! - [`group`]: the JoinGroup/SyncGroup/Heartbeat/LeaveGroup state machine of one group.
//! - [`offsets`]: committed offsets (OffsetCommit/OffsetFetch/OffsetDelete, retention expiry).
//! - [`records`]: Kafka's byte layout of `__consumer_offsets` keys and values.
//! - [`coordinator`]: all groups of one `__consumer_offsets` partition, routing by group id,
//!   the loading flag, admin operations and replay.

pub mod coordinator;
pub mod group;
pub mod offsets;
pub mod records;

pub use coordinator::{CoordinatorState, DeleteGroupResult, ReplayError};
pub use group::{
    DescribedGroup, DescribedMember, Effect, Group, GroupState, HeartbeatRequest, JoinMember, JoinReply, JoinRequest,
    JoinResponse, LeaveMember, LeaveRequest, ListedGroup, Member, PersistAck, SyncReply, SyncRequest, SyncResponse,
};
pub use offsets::{
    CommitOutcome, CommittedOffset, OffsetCommitPartition, OffsetCommitRequest, OffsetFetchPartition, OffsetStore,
    PreparedCommit,
};
pub use records::Record;

/// Number of `__consumer_offsets` partitions (Kafka's `offsets.topic.num.partitions` default).
pub const DEFAULT_OFFSETS_PARTITIONS: u32 = 50;

/// Java's `String.hashCode()`: `s[0]*31^(n-1) + ... + s[n-1]` over UTF-16 code units, wrapping i32.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// The `__consumer_offsets` partition coordinating `group_id`, computed as Kafka does:
/// `Utils.abs(groupId.hashCode()) % partitions` where `Utils.abs(n) = n & 0x7fffffff`
/// (so `i32::MIN` maps to 0, not to an overflow).
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let partitions = partitions.max(1);
    ((java_string_hash(group_id) & 0x7fff_ffff) as u32) % partitions
}

/// Broker settings the coordinator needs, under Kafka's names and with Kafka's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: the first rebalance of an Empty group waits this long
    /// (extended while new members keep arriving, bounded by the rebalance timeout).
    pub initial_rebalance_delay_ms: i32,
    /// How long a new member may wait in its first JoinGroup before it is dropped (Kafka's
    /// `NewMemberJoinTimeoutMs`, 5 minutes): it has no member id yet so it cannot heartbeat.
    pub new_member_join_timeout_ms: i32,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// Errors the coordinator answers with; [`GroupError::code`] gives the Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("UNKNOWN_TOPIC_OR_PARTITION")]
    UnknownTopicOrPartition,
    #[error("OFFSET_METADATA_TOO_LARGE")]
    OffsetMetadataTooLarge,
    #[error("COORDINATOR_LOAD_IN_PROGRESS")]
    CoordinatorLoadInProgress,
    #[error("COORDINATOR_NOT_AVAILABLE")]
    CoordinatorNotAvailable,
    #[error("NOT_COORDINATOR")]
    NotCoordinator,
    #[error("ILLEGAL_GENERATION")]
    IllegalGeneration,
    #[error("INCONSISTENT_GROUP_PROTOCOL")]
    InconsistentGroupProtocol,
    #[error("INVALID_GROUP_ID")]
    InvalidGroupId,
    #[error("UNKNOWN_MEMBER_ID")]
    UnknownMemberId,
    #[error("INVALID_SESSION_TIMEOUT")]
    InvalidSessionTimeout,
    #[error("REBALANCE_IN_PROGRESS")]
    RebalanceInProgress,
    #[error("NON_EMPTY_GROUP")]
    NonEmptyGroup,
    #[error("GROUP_ID_NOT_FOUND")]
    GroupIdNotFound,
    /// Carries the member id the client must rejoin with.
    #[error("MEMBER_ID_REQUIRED (member id {member_id})")]
    MemberIdRequired { member_id: String },
    #[error("FENCED_INSTANCE_ID")]
    FencedInstanceId,
    #[error("GROUP_SUBSCRIBED_TO_TOPIC")]
    GroupSubscribedToTopic,
}

impl GroupError {
    /// The Kafka protocol error code.
    pub fn code(&self) -> i16 {
        match self {
            GroupError::UnknownTopicOrPartition => 3,
            GroupError::OffsetMetadataTooLarge => 12,
            GroupError::CoordinatorLoadInProgress => 14,
            GroupError::CoordinatorNotAvailable => 15,
            GroupError::NotCoordinator => 16,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::NonEmptyGroup => 68,
            GroupError::GroupIdNotFound => 69,
            GroupError::MemberIdRequired { .. } => 79,
            GroupError::FencedInstanceId => 82,
            GroupError::GroupSubscribedToTopic => 86,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_known_values() {
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Non-BMP characters hash as two UTF-16 surrogates: "😀" = \uD83D\uDE00.
        assert_eq!(java_string_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn partition_for_matches_kafka() {
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        assert_eq!(partition_for("", 50), 0);
        // i32::MIN & 0x7fffffff == 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // A negative hash is masked, not negated: "abcdefghij".hashCode() is negative in Java.
        let h = java_string_hash("abcdefghij");
        assert!(h < 0);
        assert_eq!(partition_for("abcdefghij", 50), ((h & 0x7fff_ffff) as u32) % 50);
        assert!((0..1000).all(|i| partition_for(&format!("group-{i}"), 50) < 50));
    }

    #[test]
    fn error_codes() {
        let cases = [
            (GroupError::UnknownMemberId, 25),
            (GroupError::IllegalGeneration, 22),
            (GroupError::RebalanceInProgress, 27),
            (GroupError::InconsistentGroupProtocol, 23),
            (GroupError::MemberIdRequired { member_id: "x".into() }, 79),
            (GroupError::FencedInstanceId, 82),
            (GroupError::CoordinatorLoadInProgress, 14),
            (GroupError::CoordinatorNotAvailable, 15),
            (GroupError::NotCoordinator, 16),
            (GroupError::GroupIdNotFound, 69),
            (GroupError::NonEmptyGroup, 68),
            (GroupError::InvalidSessionTimeout, 26),
            (GroupError::GroupSubscribedToTopic, 86),
            (GroupError::UnknownTopicOrPartition, 3),
            (GroupError::InvalidGroupId, 24),
            (GroupError::OffsetMetadataTooLarge, 12),
        ];
        for (e, c) in cases {
            assert_eq!(e.code(), c, "{e}");
        }
    }
}
