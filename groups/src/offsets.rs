//! Committed offsets of a group: OffsetCommit validation, OffsetFetch, OffsetDelete and
//! retention expiry.
//!
//! Why here and not in the log: a group's committed offsets are a small in-memory map, backed by
//! records in `__consumer_offsets` (see [`crate::records`]). Commits are validated against the
//! group's membership and generation, so they live next to the group state machine. Commits are
//! two-phase: [`Group::commit_offsets`] validates and returns the records to append plus a
//! [`PreparedCommit`]; the driver applies it with [`Group::apply_commit`] once the append is
//! durable, so a failed append never leaves memory ahead of the log. Deletions and expiry (as in
//! Kafka) drop the offsets from memory at once and return tombstones to append.

use std::collections::BTreeMap;

use crate::group::{Effect, Group, GroupState, Out};
use crate::records::{self, OffsetCommitValue, Record};
use crate::GroupError;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only from legacy v1 records (explicit retention).
    pub expire_timestamp_ms: Option<i64>,
}

impl CommittedOffset {
    pub(crate) fn to_value(&self) -> OffsetCommitValue {
        OffsetCommitValue {
            offset: self.offset,
            leader_epoch: self.leader_epoch,
            metadata: self.metadata.clone(),
            commit_timestamp: self.commit_timestamp_ms,
            expire_timestamp: self.expire_timestamp_ms,
        }
    }

    pub(crate) fn from_value(v: &OffsetCommitValue) -> Self {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
            commit_timestamp_ms: v.commit_timestamp,
            expire_timestamp_ms: v.expire_timestamp,
        }
    }
}

/// A group's committed offsets by (topic, partition).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl OffsetStore {
    pub fn get(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(&(topic.to_owned(), partition))
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32, &CommittedOffset)> {
        self.offsets.iter().map(|((t, p), o)| (t.as_str(), *p, o))
    }
    pub fn len(&self) -> usize {
        self.offsets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
    pub(crate) fn insert(&mut self, topic: String, partition: i32, offset: CommittedOffset) {
        self.offsets.insert((topic, partition), offset);
    }
    pub(crate) fn remove(&mut self, topic: &str, partition: i32) -> Option<CommittedOffset> {
        self.offsets.remove(&(topic.to_owned(), partition))
    }
}

/// One partition of an OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when the client does not send one (v6+ carries it).
    pub leader_epoch: i32,
    /// Null metadata is stored as "".
    pub metadata: Option<String>,
}

/// An OffsetCommit request. `generation_id = -1` with an empty member id is a "simple" commit
/// from a client that does not use group management (or an admin client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    pub partitions: Vec<OffsetCommitPartition>,
}

/// Offsets validated and waiting for their records to be durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedCommit {
    pub group_id: String,
    pub offsets: Vec<(String, i32, CommittedOffset)>,
}

/// The outcome of validating an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Per partition: the answer to send once `records` are durable (if the append fails, answer
    /// every `Ok` partition with the append's error instead).
    pub results: Vec<(String, i32, Result<(), GroupError>)>,
    /// Records to append to the group's `__consumer_offsets` partition (may be empty).
    pub records: Vec<Record>,
    /// Apply with [`Group::apply_commit`] after the append succeeded.
    pub prepared: PreparedCommit,
    /// Heartbeat-like effects (a commit from a member resets its session deadline).
    pub effects: Vec<Effect>,
}

impl CommitOutcome {
    /// Every partition fails with `error` (a whole-request error).
    pub(crate) fn failed(group_id: &str, partitions: &[OffsetCommitPartition], error: GroupError) -> Self {
        CommitOutcome {
            results: partitions.iter().map(|p| (p.topic.clone(), p.partition, Err(error.clone()))).collect(),
            records: Vec::new(),
            prepared: PreparedCommit { group_id: group_id.to_owned(), offsets: Vec::new() },
            effects: Vec::new(),
        }
    }
}

/// One partition of an OffsetFetch answer. `offset` is -1 (and `metadata` "") when nothing is
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

impl OffsetFetchPartition {
    pub(crate) fn none(topic: &str, partition: i32) -> Self {
        OffsetFetchPartition {
            topic: topic.to_owned(),
            partition,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

/// The topics of a `consumer` protocol subscription (ConsumerProtocolSubscription v0..=3 all
/// start with: version i16, topics [string]). `None` if it does not parse.
fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if buf.len() < n {
            return None;
        }
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        Some(head)
    }
    let mut buf = metadata;
    let version = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    if count < 0 || count as usize > buf.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        if len < 0 {
            return None;
        }
        topics.push(String::from_utf8(take(&mut buf, len as usize)?.to_vec()).ok()?);
    }
    Some(topics)
}

/// What a non-empty group consumes, for OffsetDelete.
enum Subscribed {
    Topics(Vec<String>),
    /// Could not tell (unparsable subscription): treat every topic as subscribed.
    Everything,
}

impl Group {
    /// Validates an OffsetCommit the way Kafka's `validateOffsetCommit` does.
    fn validate_commit(&self, req: &OffsetCommitRequest) -> Result<(), GroupError> {
        if self.state() == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some() {
            self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
            if req.generation_id != self.generation_id() {
                return Err(GroupError::IllegalGeneration);
            }
        } else if self.state() != GroupState::Empty {
            // A simple commit (no membership: the admin client, or a consumer
            // without group management) is only allowed while nobody consumes
            // as a group. Kafka answers UNKNOWN_MEMBER_ID here, which the
            // offset-reset tools recognise as "the group is active".
            return Err(GroupError::UnknownMemberId);
        }
        match self.state() {
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Validates an OffsetCommit and prepares it. Topic existence is the driver's check
    /// (UNKNOWN_TOPIC_OR_PARTITION), as the group does not know the cluster's topics.
    pub fn commit_offsets(&mut self, req: &OffsetCommitRequest, now_ms: i64) -> CommitOutcome {
        if let Err(e) = self.validate_commit(req) {
            return CommitOutcome::failed(self.id(), &req.partitions, e);
        }
        let mut out = Out::new(self.id());
        if matches!(self.state(), GroupState::Stable | GroupState::PreparingRebalance) {
            // Kafka treats a commit as a heartbeat; during PreparingRebalance the member learns
            // about the rebalance from its next heartbeat.
            self.touch(&req.member_id, now_ms, &mut out);
        }
        let max = self.config().offset_metadata_max_bytes;
        let mut results = Vec::with_capacity(req.partitions.len());
        let mut records = Vec::new();
        let mut offsets = Vec::new();
        for p in &req.partitions {
            let metadata = p.metadata.clone().unwrap_or_default();
            if metadata.len() > max {
                results.push((p.topic.clone(), p.partition, Err(GroupError::OffsetMetadataTooLarge)));
                continue;
            }
            let committed = CommittedOffset {
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata,
                commit_timestamp_ms: now_ms,
                expire_timestamp_ms: None,
            };
            records.push(records::offset_commit_record(self.id(), &p.topic, p.partition, &committed.to_value()));
            offsets.push((p.topic.clone(), p.partition, committed));
            results.push((p.topic.clone(), p.partition, Ok(())));
        }
        CommitOutcome {
            results,
            records,
            prepared: PreparedCommit { group_id: self.id().to_owned(), offsets },
            effects: out.finish(),
        }
    }

    /// Makes a prepared commit visible (after its records are durable).
    pub fn apply_commit(&mut self, prepared: PreparedCommit) {
        for (topic, partition, offset) in prepared.offsets {
            self.offsets.insert(topic, partition, offset);
        }
    }

    /// OffsetFetch: the requested partitions, or every committed one when `topics` is `None`
    /// (the null topic list of OffsetFetch v2+).
    pub fn fetch_offsets(&self, topics: Option<&[(String, Vec<i32>)]>) -> Vec<OffsetFetchPartition> {
        match topics {
            None => self
                .offsets
                .iter()
                .map(|(t, p, o)| OffsetFetchPartition {
                    topic: t.to_owned(),
                    partition: p,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                })
                .collect(),
            Some(topics) => topics
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(move |&p| (t, p)))
                .map(|(t, p)| match self.offsets.get(t, p) {
                    Some(o) => OffsetFetchPartition {
                        topic: t.clone(),
                        partition: p,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                    },
                    None => OffsetFetchPartition::none(t, p),
                })
                .collect(),
        }
    }

    fn subscribed_topics(&self) -> Subscribed {
        let mut topics = Vec::new();
        for m in self.members() {
            for (_, metadata) in &m.protocols {
                match subscription_topics(metadata) {
                    Some(t) => topics.extend(t),
                    None => return Subscribed::Everything,
                }
            }
        }
        Subscribed::Topics(topics)
    }

    /// OffsetDelete. An Empty group may delete anything; a non-empty `consumer` group may only
    /// delete offsets of topics no member subscribes to (GROUP_SUBSCRIBED_TO_TOPIC otherwise, and
    /// for every topic if a subscription cannot be parsed); other non-empty groups get
    /// NON_EMPTY_GROUP. Returns per-partition results and the tombstones to append.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &mut self,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<(String, i32, Result<(), GroupError>)>, Vec<Record>), GroupError> {
        let subscribed = match self.state() {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => Subscribed::Topics(Vec::new()),
            _ if self.protocol_type() == Some("consumer") => self.subscribed_topics(),
            _ => return Err(GroupError::NonEmptyGroup),
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, partition) in partitions {
            let blocked = match &subscribed {
                Subscribed::Everything => true,
                Subscribed::Topics(t) => t.iter().any(|s| s == topic),
            };
            if blocked {
                results.push((topic.clone(), *partition, Err(GroupError::GroupSubscribedToTopic)));
                continue;
            }
            if self.offsets.remove(topic, *partition).is_some() {
                tombstones.push(records::offset_tombstone(self.id(), topic, *partition));
            }
            results.push((topic.clone(), *partition, Ok(())));
        }
        Ok((results, tombstones))
    }

    /// `offsets.retention.minutes` expiry. Offsets of an Empty group expire `retention_ms` after
    /// the group became Empty (or after the commit, for records that predate state timestamps);
    /// offsets of a standalone group (no protocol type) expire `retention_ms` after their
    /// commit. Groups with members keep their offsets. Returns the tombstones to append.
    pub fn expire_offsets(&mut self, now_ms: i64, retention_ms: i64) -> Vec<Record> {
        let base: Box<dyn Fn(&CommittedOffset) -> i64> = match (self.protocol_type(), self.state()) {
            (None, _) => Box::new(|o: &CommittedOffset| o.commit_timestamp_ms),
            (Some(_), GroupState::Empty) => {
                let state_ts = self.state_timestamp_ms();
                Box::new(move |o: &CommittedOffset| state_ts.unwrap_or(o.commit_timestamp_ms))
            }
            _ => return Vec::new(),
        };
        let expired: Vec<(String, i32)> = self
            .offsets
            .iter()
            .filter(|(_, _, o)| match o.expire_timestamp_ms {
                Some(expire) => now_ms >= expire,
                None => now_ms.saturating_sub(base(o)) >= retention_ms,
            })
            .map(|(t, p, _)| (t.to_owned(), p))
            .collect();
        expired
            .into_iter()
            .map(|(t, p)| {
                self.offsets.remove(&t, p);
                records::offset_tombstone(self.id(), &t, p)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_subscriptions() {
        let mut v = vec![0u8, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c'];
        assert_eq!(subscription_topics(&v), Some(vec!["a".to_owned(), "bc".to_owned()]));
        v.truncate(9);
        assert_eq!(subscription_topics(&v), None);
        assert_eq!(subscription_topics(&[0, 0, 0x7f, 0, 0, 0]), None);
        assert_eq!(subscription_topics(&[]), None);
    }
}
