//! All groups coordinated by one `__consumer_offsets` partition.
//!
//! Why a separate layer: requests arrive keyed by group id, and some answers depend on things
//! outside any one group — the partition still loading after a restart, a group that does not
//! exist yet (a first JoinGroup or a simple commit creates it), admin operations over many groups
//! (ListGroups, DeleteGroups, retention expiry) and replay of the partition's records. The shard
//! that leads the partition owns one `CoordinatorState` and drives it.

use std::collections::BTreeMap;

use crate::group::{
    DescribedGroup, Effect, Group, GroupState, HeartbeatRequest, JoinReply, JoinRequest, LeaveMember, LeaveRequest,
    ListedGroup, PersistAck, SyncReply, SyncRequest,
};
use crate::offsets::{CommitOutcome, CommittedOffset, OffsetCommitRequest, OffsetFetchPartition, PreparedCommit};
use crate::records::{self, Record, RecordError, RecordKey, RecordValue};
use crate::{GroupConfig, GroupError};

/// DeleteGroups outcome for one group: the tombstones to append, or why not.
pub type DeleteGroupResult = Result<Vec<Record>, GroupError>;

/// A record that replay could not decode (it is skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayError {
    /// Position of the record in the replayed sequence.
    pub index: usize,
    pub error: RecordError,
}

/// Groups and offsets of one `__consumer_offsets` partition.
#[derive(Debug, Clone)]
pub struct CoordinatorState {
    config: GroupConfig,
    loading: bool,
    groups: BTreeMap<String, Group>,
}

fn check_group_id(group_id: &str, allow_empty: bool) -> Result<(), GroupError> {
    // Group ids go into i16-length strings in our records.
    if (!allow_empty && group_id.is_empty()) || group_id.len() > i16::MAX as usize {
        Err(GroupError::InvalidGroupId)
    } else {
        Ok(())
    }
}

impl CoordinatorState {
    pub fn new(config: GroupConfig) -> Self {
        CoordinatorState { config, loading: false, groups: BTreeMap::new() }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// True while the partition is being replayed: requests get COORDINATOR_LOAD_IN_PROGRESS
    /// (SyncGroup gets REBALANCE_IN_PROGRESS, and Heartbeat succeeds blindly, as in Kafka).
    pub fn is_loading(&self) -> bool {
        self.loading
    }

    pub fn set_loading(&mut self, loading: bool) {
        self.loading = loading;
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    pub fn group_mut(&mut self, group_id: &str) -> Option<&mut Group> {
        self.groups.get_mut(group_id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    // --- replay ------------------------------------------------------------------------------

    /// Applies one record of the partition, in log order: later records win, tombstones delete.
    pub fn apply_record(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RecordError> {
        let (key, value) = records::decode_record(key, value)?;
        let config = self.config;
        let group_id = key.group().to_owned();
        match (key, value) {
            (RecordKey::OffsetCommit { group, topic, partition }, Some(RecordValue::OffsetCommit(v))) => {
                let g = self.groups.entry(group).or_insert_with_key(|id| Group::new_loaded(id.clone(), config));
                g.offsets.insert(topic, partition, CommittedOffset::from_value(&v));
            }
            (RecordKey::OffsetCommit { topic, partition, .. }, _) => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    g.offsets.remove(&topic, partition);
                }
            }
            (RecordKey::GroupMetadata { group }, Some(RecordValue::GroupMetadata(v))) => {
                let g = self.groups.entry(group).or_insert_with_key(|id| Group::new_loaded(id.clone(), config));
                g.apply_metadata(&v);
            }
            (RecordKey::GroupMetadata { .. }, _) => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    g.reset_metadata();
                }
            }
        }
        if self.groups.get(&group_id).is_some_and(Group::is_forgettable) {
            self.groups.remove(&group_id);
        }
        Ok(())
    }

    /// Rebuilds groups and offsets from the partition's records, in log order. Undecodable
    /// records are skipped and reported. The result is still `loading`; call
    /// [`CoordinatorState::finish_loading`] when the driver is ready to serve.
    pub fn replay<K, V, I>(config: GroupConfig, records: I) -> (CoordinatorState, Vec<ReplayError>)
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (K, Option<V>)>,
    {
        let mut state = CoordinatorState::new(config);
        state.loading = true;
        let mut errors = Vec::new();
        for (index, (key, value)) in records.into_iter().enumerate() {
            if let Err(error) = state.apply_record(key.as_ref(), value.as_ref().map(AsRef::as_ref)) {
                errors.push(ReplayError { index, error });
            }
        }
        (state, errors)
    }

    /// Ends loading and arms a session timer for every loaded member.
    pub fn finish_loading(&mut self, now_ms: i64) -> Vec<Effect> {
        self.loading = false;
        self.groups.values_mut().flat_map(|g| g.schedule_loaded_sessions(now_ms)).collect()
    }

    /// The partition moved away or this broker lost leadership of it: every group goes Dead and
    /// every parked request is answered with NOT_COORDINATOR. The state is emptied.
    pub fn unload(&mut self, now_ms: i64) -> Vec<Effect> {
        let groups = std::mem::take(&mut self.groups);
        groups.into_values().flat_map(|mut g| g.mark_dead(GroupError::NotCoordinator, now_ms)).collect()
    }

    // --- group membership --------------------------------------------------------------------

    /// JoinGroup. A join with an empty member id creates the group if needed.
    pub fn join(
        &mut self,
        group_id: &str,
        req: JoinRequest,
        now_ms: i64,
        new_suffix: &mut dyn FnMut() -> String,
    ) -> (Result<JoinReply, GroupError>, Vec<Effect>) {
        if let Err(e) = check_group_id(group_id, false) {
            return (Err(e), Vec::new());
        }
        if self.loading {
            return (Err(GroupError::CoordinatorLoadInProgress), Vec::new());
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return (Err(GroupError::InvalidSessionTimeout), Vec::new());
        }
        if !self.groups.contains_key(group_id) {
            if !req.member_id.is_empty() {
                return (Err(GroupError::UnknownMemberId), Vec::new());
            }
            self.groups.insert(group_id.to_owned(), Group::new(group_id, self.config, now_ms));
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return (Err(GroupError::UnknownMemberId), Vec::new());
        };
        let result = group.join(req, now_ms, new_suffix);
        if group.is_forgettable() && group.state() == GroupState::Empty {
            self.groups.remove(group_id);
        }
        result
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        group_id: &str,
        req: SyncRequest,
        now_ms: i64,
    ) -> (Result<SyncReply, GroupError>, Vec<Effect>) {
        if let Err(e) = check_group_id(group_id, false) {
            return (Err(e), Vec::new());
        }
        if self.loading {
            // The rebalance state was lost with the restart: make the member rejoin.
            return (Err(GroupError::RebalanceInProgress), Vec::new());
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.sync(req, now_ms),
            None => (Err(GroupError::UnknownMemberId), Vec::new()),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        req: &HeartbeatRequest,
        now_ms: i64,
    ) -> (Result<(), GroupError>, Vec<Effect>) {
        if let Err(e) = check_group_id(group_id, false) {
            return (Err(e), Vec::new());
        }
        if self.loading {
            // Kafka answers blindly while loading; the member's session starts after the load.
            return (Ok(()), Vec::new());
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.heartbeat(req, now_ms),
            None => (Err(GroupError::UnknownMemberId), Vec::new()),
        }
    }

    /// LeaveGroup.
    #[allow(clippy::type_complexity)]
    pub fn leave(
        &mut self,
        group_id: &str,
        req: &LeaveRequest,
        now_ms: i64,
    ) -> (Result<Vec<(LeaveMember, Result<(), GroupError>)>, GroupError>, Vec<Effect>) {
        if let Err(e) = check_group_id(group_id, false) {
            return (Err(e), Vec::new());
        }
        if self.loading {
            return (Err(GroupError::CoordinatorLoadInProgress), Vec::new());
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.leave(req, now_ms),
            None => {
                (Ok(req.members.iter().map(|m| (m.clone(), Err(GroupError::UnknownMemberId))).collect()), Vec::new())
            }
        }
    }

    /// A session timer fired.
    pub fn on_session_timeout(&mut self, group_id: &str, member_id: &str, now_ms: i64) -> Vec<Effect> {
        self.groups.get_mut(group_id).map(|g| g.on_session_timeout(member_id, now_ms)).unwrap_or_default()
    }

    /// A rebalance timer fired.
    pub fn on_rebalance_timeout(&mut self, group_id: &str, now_ms: i64) -> Vec<Effect> {
        self.groups.get_mut(group_id).map(|g| g.on_rebalance_timeout(now_ms)).unwrap_or_default()
    }

    /// A group metadata append with an ack finished.
    pub fn on_persisted(
        &mut self,
        group_id: &str,
        ack: PersistAck,
        result: Result<(), GroupError>,
        now_ms: i64,
    ) -> Vec<Effect> {
        self.groups.get_mut(group_id).map(|g| g.on_persisted(ack, result, now_ms)).unwrap_or_default()
    }

    // --- offsets -----------------------------------------------------------------------------

    /// OffsetCommit. A simple commit (generation < 0) to an unknown group is allowed (the group
    /// is created when the commit is applied); any other commit to an unknown group gets
    /// ILLEGAL_GENERATION.
    pub fn commit_offsets(&mut self, group_id: &str, req: &OffsetCommitRequest, now_ms: i64) -> CommitOutcome {
        if let Err(e) = check_group_id(group_id, true) {
            return CommitOutcome::failed(group_id, &req.partitions, e);
        }
        if self.loading {
            return CommitOutcome::failed(group_id, &req.partitions, GroupError::CoordinatorLoadInProgress);
        }
        match self.groups.get_mut(group_id) {
            Some(g) => g.commit_offsets(req, now_ms),
            None if req.generation_id < 0 => Group::new(group_id, self.config, now_ms).commit_offsets(req, now_ms),
            None => CommitOutcome::failed(group_id, &req.partitions, GroupError::IllegalGeneration),
        }
    }

    /// Makes a prepared commit visible once its records are durable.
    pub fn apply_commit(&mut self, prepared: PreparedCommit, now_ms: i64) {
        if prepared.offsets.is_empty() {
            return;
        }
        let config = self.config;
        let id = prepared.group_id.clone();
        self.groups.entry(id.clone()).or_insert_with(|| Group::new(id, config, now_ms)).apply_commit(prepared);
    }

    /// OffsetFetch for one group (the multi-group versions call this per group).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<&[(String, Vec<i32>)]>,
    ) -> Result<Vec<OffsetFetchPartition>, GroupError> {
        check_group_id(group_id, true)?;
        if self.loading {
            return Err(GroupError::CoordinatorLoadInProgress);
        }
        Ok(match self.groups.get(group_id) {
            Some(g) => g.fetch_offsets(topics),
            None => topics
                .unwrap_or_default()
                .iter()
                .flat_map(|(t, parts)| parts.iter().map(|&p| OffsetFetchPartition::none(t, p)))
                .collect(),
        })
    }

    /// OffsetDelete.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<(String, i32, Result<(), GroupError>)>, Vec<Record>), GroupError> {
        check_group_id(group_id, false)?;
        if self.loading {
            return Err(GroupError::CoordinatorLoadInProgress);
        }
        self.groups.get_mut(group_id).ok_or(GroupError::GroupIdNotFound)?.delete_offsets(partitions)
    }

    /// Retention expiry over all groups. Groups left Empty with no offsets are removed (Dead),
    /// with a group metadata tombstone. Returns the tombstones to append.
    pub fn expire_offsets(&mut self, now_ms: i64, retention_ms: i64) -> Vec<Record> {
        if self.loading {
            return Vec::new();
        }
        let mut tombstones = Vec::new();
        let mut dead = Vec::new();
        for (id, g) in &mut self.groups {
            tombstones.extend(g.expire_offsets(now_ms, retention_ms));
            if g.state() == GroupState::Empty && g.offsets().is_empty() && g.pending_member_ids().next().is_none() {
                dead.push(id.clone());
            }
        }
        for id in dead {
            if let Some(mut g) = self.groups.remove(&id) {
                g.mark_dead(GroupError::CoordinatorNotAvailable, now_ms);
                tombstones.push(records::group_tombstone(&id));
            }
        }
        tombstones
    }

    // --- admin -------------------------------------------------------------------------------

    /// DescribeGroups for one group; an unknown group is described as Dead with no members.
    pub fn describe_group(&self, group_id: &str) -> Result<DescribedGroup, GroupError> {
        if self.loading {
            return Err(GroupError::CoordinatorLoadInProgress);
        }
        Ok(match self.groups.get(group_id) {
            Some(g) => g.describe(),
            None => DescribedGroup {
                group_id: group_id.to_owned(),
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            },
        })
    }

    /// ListGroups for this partition.
    pub fn list_groups(&self) -> Result<Vec<ListedGroup>, GroupError> {
        if self.loading {
            return Err(GroupError::CoordinatorLoadInProgress);
        }
        Ok(self.groups.values().map(Group::listing).collect())
    }

    /// DeleteGroups: only Empty groups can be deleted (NON_EMPTY_GROUP otherwise, and
    /// GROUP_ID_NOT_FOUND for unknown ones). Returns, per group, the tombstones to append: one
    /// per committed offset and one for the group metadata.
    pub fn delete_groups(&mut self, group_ids: &[String], now_ms: i64) -> Vec<(String, DeleteGroupResult)> {
        group_ids
            .iter()
            .map(|id| {
                let result = if self.loading {
                    Err(GroupError::CoordinatorLoadInProgress)
                } else {
                    match self.groups.get(id).map(Group::state) {
                        None | Some(GroupState::Dead) => Err(GroupError::GroupIdNotFound),
                        Some(GroupState::Empty) => {
                            let Some(mut g) = self.groups.remove(id) else {
                                return (id.clone(), Err(GroupError::GroupIdNotFound));
                            };
                            let mut tombstones: Vec<Record> =
                                g.offsets().iter().map(|(t, p, _)| records::offset_tombstone(id, t, p)).collect();
                            tombstones.push(records::group_tombstone(id));
                            g.mark_dead(GroupError::CoordinatorNotAvailable, now_ms);
                            Ok(tombstones)
                        }
                        Some(_) => Err(GroupError::NonEmptyGroup),
                    }
                };
                (id.clone(), result)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
