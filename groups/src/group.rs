//! The classic-protocol state machine of one consumer group.
//!
//! Why it is shaped like this: JoinGroup and SyncGroup answers are *delayed* until a rebalance
//! completes, and rebalances complete on timers. Instead of holding callbacks, the group records
//! which members have a request parked ("pending") and tells the driver, through [`Effect`]s, when
//! to answer them, when to arm timers and what to write to `__consumer_offsets`. The driver keeps
//! the parked requests keyed by member id and the timers keyed by (group) / (group, member).
//!
//! Semantics follow Kafka's classic group coordinator: states Empty → PreparingRebalance →
//! CompletingRebalance → Stable (→ Dead when deleted or unloaded), Kafka's protocol vote, leader
//! election, new-member join timeout, initial rebalance delay, pending-sync expiry, and static
//! membership (`group.instance.id`) with fencing of replaced member ids.
//!
//! Rules for the driver:
//! - Apply the returned effects, then the reply. A call's own request is never answered inside
//!   that call's effects: if it completes at once, the reply is `Done`; if it is `Pending`, it is
//!   answered by a later call's `CompleteJoins`/`CompleteSyncs`.
//! - A member has at most one parked JoinGroup and one parked SyncGroup. If a new `Pending` arrives
//!   for a member that already has one parked, answer the old one with REBALANCE_IN_PROGRESS.
//! - Timers may be stale: firing one that no longer applies is a harmless no-op, so the driver
//!   may keep just the latest deadline per key and need not honour the `Cancel*` effects.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::offsets::OffsetStore;
use crate::records::{self, GroupMetadataValue, MemberMetadataValue, Record};
use crate::{GroupConfig, GroupError};

/// Group states, named as Kafka names them in DescribeGroups/ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The exact state string Kafka returns.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, already decoded by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty for a member joining for the first time.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    /// For JoinGroup v0 the driver passes the session timeout here.
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
    /// JoinGroup v9+: the response may carry `skip_assignment` (KIP-814).
    pub supports_skip_assignment: bool,
}

/// One member as listed in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub member_id: String,
    pub skip_assignment: bool,
    /// Non-empty only for the leader.
    pub members: Vec<JoinMember>,
}

/// How a JoinGroup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinReply {
    /// Answer now.
    Done(JoinResponse),
    /// Park the request under `member_id` (which may have just been generated) until a
    /// `CompleteJoins` effect answers it.
    Pending { member_id: String },
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// v5+: checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment; ignored for followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// How a SyncGroup is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncReply {
    Done(SyncResponse),
    /// Park the request under the request's member id until a `CompleteSyncs` effect answers it.
    Pending,
}

/// A Heartbeat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
}

/// One member of a LeaveGroup request (v3+ batches; v0-2 carry one member with no instance id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// Empty when an admin removes a static member by instance id.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// A LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveRequest {
    pub members: Vec<LeaveMember>,
}

/// Identifies a group metadata write whose outcome the group waits for; hand it back through
/// [`Group::on_persisted`] once the record is durable (or failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistAck {
    /// The leader's SyncGroup assignment: on success the group becomes Stable and every parked
    /// SyncGroup is answered.
    SyncAssignment { generation_id: i32 },
    /// A static member replaced its old member id while Stable: on success its JoinGroup is
    /// answered with the current generation.
    StaticMemberJoin { member_id: String, old_member_id: String, generation_id: i32, supports_skip_assignment: bool },
}

/// What the driver must do. See the module docs for ordering rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer these parked JoinGroup requests (keyed by member id) now.
    CompleteJoins { group_id: String, completions: Vec<(String, Result<JoinResponse, GroupError>)> },
    /// Answer these parked SyncGroup requests (keyed by member id) now.
    CompleteSyncs { group_id: String, completions: Vec<(String, Result<SyncResponse, GroupError>)> },
    /// (Re)arm the group's single rebalance timer; at the deadline call
    /// [`Group::on_rebalance_timeout`]. Replaces any earlier deadline.
    ScheduleRebalanceTimeout { group_id: String, deadline_ms: i64 },
    /// The rebalance timer is no longer needed.
    CancelRebalanceTimeout { group_id: String },
    /// (Re)arm the member's session timer; at the deadline call [`Group::on_session_timeout`].
    ScheduleSessionTimeout { group_id: String, member_id: String, deadline_ms: i64 },
    /// The member is gone; its session timer is no longer needed.
    CancelSessionTimeout { group_id: String, member_id: String },
    /// Append this group metadata record to the group's `__consumer_offsets` partition. With an
    /// ack, call [`Group::on_persisted`] with it once the append is durable or has failed.
    PersistGroupMetadata { group_id: String, record: Record, ack: Option<PersistAck> },
}

/// One member of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in preference order.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// When the member last proved it is alive (join, sync, heartbeat, commit).
    pub last_heartbeat_ms: i64,
    pub(crate) session_deadline_ms: i64,
    pub(crate) awaiting_join: bool,
    pub(crate) awaiting_sync: bool,
    /// Joined but not yet through its first rebalance: it cannot heartbeat yet.
    pub(crate) is_new: bool,
}

impl Member {
    /// This member's metadata for `protocol` (empty if it does not support it).
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(n, _)| n == protocol)
    }

    fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The first of this member's protocols that is in `candidates`.
    fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols.iter().map(|(n, _)| n.as_str()).find(|n| candidates.contains(n))
    }
}

/// DescribeGroups view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedGroup {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// The selected protocol when Stable, else "".
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// DescribeGroups view of a member; metadata and assignment are only filled when Stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// ListGroups view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: &'static str,
}

/// Collects completions and effects during one call.
pub(crate) struct Out {
    group_id: String,
    joins: Vec<(String, Result<JoinResponse, GroupError>)>,
    syncs: Vec<(String, Result<SyncResponse, GroupError>)>,
    effects: Vec<Effect>,
}

impl Out {
    pub(crate) fn new(group_id: &str) -> Self {
        Out { group_id: group_id.to_owned(), joins: Vec::new(), syncs: Vec::new(), effects: Vec::new() }
    }

    pub(crate) fn finish(self) -> Vec<Effect> {
        let mut effects = self.effects;
        if !self.joins.is_empty() {
            effects.push(Effect::CompleteJoins { group_id: self.group_id.clone(), completions: self.joins });
        }
        if !self.syncs.is_empty() {
            effects.push(Effect::CompleteSyncs { group_id: self.group_id, completions: self.syncs });
        }
        effects
    }

    fn session(&mut self, member_id: &str, deadline_ms: i64) {
        let group_id = self.group_id.clone();
        self.effects.push(Effect::ScheduleSessionTimeout { group_id, member_id: member_id.to_owned(), deadline_ms });
    }

    fn cancel_session(&mut self, member_id: &str) {
        let group_id = self.group_id.clone();
        self.effects.push(Effect::CancelSessionTimeout { group_id, member_id: member_id.to_owned() });
    }

    fn rebalance(&mut self, deadline_ms: i64) {
        self.effects.push(Effect::ScheduleRebalanceTimeout { group_id: self.group_id.clone(), deadline_ms });
    }

    fn cancel_rebalance(&mut self) {
        self.effects.push(Effect::CancelRebalanceTimeout { group_id: self.group_id.clone() });
    }

    fn persist(&mut self, record: Record, ack: Option<PersistAck>) {
        self.effects.push(Effect::PersistGroupMetadata { group_id: self.group_id.clone(), record, ack });
    }
}

/// One consumer group: membership, generation, and its committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    id: String,
    config: GroupConfig,
    state: GroupState,
    state_timestamp_ms: Option<i64>,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// In join order, which makes leader choice and protocol ties deterministic.
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to come back.
    pending_members: BTreeMap<String, i64>,
    /// Members that have not sent SyncGroup for the current generation.
    pending_sync: BTreeSet<String>,
    /// Join deadline while PreparingRebalance; sync deadline while CompletingRebalance/Stable.
    rebalance_deadline_ms: Option<i64>,
    /// Set while the initial rebalance delay runs: the rebalance-timeout budget left to extend it.
    initial_delay_remaining_ms: Option<i64>,
    new_member_added: bool,
    /// The leader's assignment waiting for its record to be durable.
    staged_assignment: Option<(i32, BTreeMap<String, Bytes>)>,
    pub(crate) offsets: OffsetStore,
}

impl Group {
    /// A new, Empty group.
    pub fn new(group_id: impl Into<String>, config: GroupConfig, now_ms: i64) -> Self {
        Group {
            id: group_id.into(),
            config,
            state: GroupState::Empty,
            state_timestamp_ms: Some(now_ms),
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: Vec::new(),
            pending_members: BTreeMap::new(),
            pending_sync: BTreeSet::new(),
            rebalance_deadline_ms: None,
            initial_delay_remaining_ms: None,
            new_member_added: false,
            staged_assignment: None,
            offsets: OffsetStore::default(),
        }
    }

    /// A group known only from records, before its metadata (if any) is replayed.
    pub(crate) fn new_loaded(group_id: impl Into<String>, config: GroupConfig) -> Self {
        let mut g = Group::new(group_id, config, 0);
        g.state_timestamp_ms = None;
        g
    }

    /// True when nothing distinguishes this group from one that never existed.
    pub(crate) fn is_forgettable(&self) -> bool {
        self.generation_id == 0
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && self.protocol_type.is_none()
            && self.offsets.is_empty()
    }

    /// Rebuilds a group from its last metadata record (offsets are restored separately). A group
    /// with members comes back Stable, otherwise Empty, as in Kafka; call
    /// [`Group::schedule_loaded_sessions`] once loading is done.
    pub fn from_metadata(group_id: impl Into<String>, config: GroupConfig, v: &GroupMetadataValue) -> Self {
        let mut g = Group::new(group_id, config, 0);
        g.apply_metadata(v);
        g
    }

    pub(crate) fn apply_metadata(&mut self, v: &GroupMetadataValue) {
        let protocol = v.protocol.clone().unwrap_or_default();
        self.members = v
            .members
            .iter()
            .map(|m| Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: v.protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription.clone())],
                assignment: m.assignment.clone(),
                last_heartbeat_ms: 0,
                session_deadline_ms: 0,
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
            })
            .collect();
        self.state = if self.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        self.state_timestamp_ms = (v.current_state_timestamp >= 0).then_some(v.current_state_timestamp);
        self.generation_id = v.generation;
        self.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        self.protocol_name = v.protocol.clone();
        self.leader_id =
            v.leader.clone().filter(|l| self.has(l)).or_else(|| self.members.first().map(|m| m.member_id.clone()));
        self.pending_members.clear();
        self.pending_sync.clear();
        self.rebalance_deadline_ms = None;
        self.initial_delay_remaining_ms = None;
        self.staged_assignment = None;
    }

    /// Forgets membership (after a group metadata tombstone), keeping offsets.
    pub(crate) fn reset_metadata(&mut self) {
        let offsets = std::mem::take(&mut self.offsets);
        *self = Group::new(std::mem::take(&mut self.id), self.config, 0);
        self.state_timestamp_ms = None;
        self.offsets = offsets;
    }

    /// After loading: arm a session timer for every member (loaded members have not been heard
    /// from since the restart).
    pub fn schedule_loaded_sessions(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut out = Out::new(&self.id);
        for m in &mut self.members {
            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            m.last_heartbeat_ms = now_ms;
            out.session(&m.member_id, m.session_deadline_ms);
        }
        out.finish()
    }

    // --- accessors ---------------------------------------------------------------------------

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }
    pub fn state(&self) -> GroupState {
        self.state
    }
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }
    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }
    /// When the group last changed state (Kafka's `current_state_timestamp`).
    pub fn state_timestamp_ms(&self) -> Option<i64> {
        self.state_timestamp_ms
    }
    pub fn members(&self) -> &[Member] {
        &self.members
    }
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.member_id == member_id)
    }
    pub fn has(&self, member_id: &str) -> bool {
        self.member(member_id).is_some()
    }
    /// Member ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub fn pending_member_ids(&self) -> impl Iterator<Item = &str> {
        self.pending_members.keys().map(String::as_str)
    }
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }
    /// The member id currently holding a static `group.instance.id`.
    pub fn static_member_id(&self, instance_id: &str) -> Option<&str> {
        self.members.iter().find(|m| m.group_instance_id.as_deref() == Some(instance_id)).map(|m| m.member_id.as_str())
    }

    fn index(&self, member_id: &str) -> Option<usize> {
        self.members.iter().position(|m| m.member_id == member_id)
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members (Kafka's group rebalance timeout).
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.iter().map(|m| m.rebalance_timeout_ms as i64).max().unwrap_or(0)
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = Some(now_ms);
    }

    /// Kafka's `validateCurrentMember`: an instance id must exist and map to this member id.
    pub(crate) fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance_id {
            return match self.static_member_id(instance) {
                Some(current) if current != member_id => Err(GroupError::FencedInstanceId),
                Some(_) => Ok(()),
                None => Err(GroupError::UnknownMemberId),
            };
        }
        if self.has(member_id) {
            Ok(())
        } else {
            Err(GroupError::UnknownMemberId)
        }
    }

    /// Proof of life from a member outside a rebalance (heartbeat, sync, commit).
    pub(crate) fn touch(&mut self, member_id: &str, now_ms: i64, out: &mut Out) {
        if let Some(i) = self.index(member_id) {
            let m = &mut self.members[i];
            m.last_heartbeat_ms = now_ms;
            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            out.session(member_id, m.session_deadline_ms);
        }
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.state == GroupState::Empty || self.members.is_empty() {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(p, _)| self.members.iter().all(|m| m.supports(p)))
        }
    }

    /// Kafka's vote: among the protocols every member supports, each member votes for its most
    /// preferred one; the most votes wins (ties go to the earliest in the first member's order).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.first()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|p| self.members.iter().all(|m| m.supports(p)))
            .collect();
        let mut best: Option<(&str, usize)> = None;
        for c in &candidates {
            let votes = self.members.iter().filter(|m| m.vote(&candidates) == Some(c)).count();
            if best.is_none_or(|(_, b)| votes > b) {
                best = Some((c, votes));
            }
        }
        best.map(|(p, _)| p.to_owned())
    }

    fn current_member_metadata(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        self.members
            .iter()
            .map(|m| JoinMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.is_leader(member_id);
        JoinResponse {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            skip_assignment: false,
            members: if leader { self.current_member_metadata() } else { Vec::new() },
        }
    }

    /// The group metadata value as it would be persisted, optionally with a new assignment.
    pub fn metadata_value(&self, assignment: Option<&BTreeMap<String, Bytes>>) -> GroupMetadataValue {
        let protocol = self.protocol_name.as_deref().unwrap_or("");
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .iter()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: match assignment {
                        Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    fn metadata_record(&self, assignment: Option<&BTreeMap<String, Bytes>>) -> Record {
        records::group_metadata_record(&self.id, &self.metadata_value(assignment))
    }

    // --- JoinGroup ---------------------------------------------------------------------------

    /// Handles JoinGroup. `new_suffix` yields unique member id suffixes (e.g. a UUID); member ids
    /// are `client_id + "-" + suffix`.
    pub fn join(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        new_suffix: &mut dyn FnMut() -> String,
    ) -> (Result<JoinReply, GroupError>, Vec<Effect>) {
        let mut out = Out::new(&self.id);
        let mut reply = self.do_join(req, now_ms, new_suffix, &mut out);
        // If the rebalance completed during this call, answer the caller directly.
        if let Ok(JoinReply::Pending { member_id }) = &reply {
            if let Some(pos) = out.joins.iter().position(|(m, _)| m == member_id) {
                let (_, result) = out.joins.remove(pos);
                reply = result.map(JoinReply::Done);
            }
        }
        (reply, out.finish())
    }

    fn do_join(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        new_suffix: &mut dyn FnMut() -> String,
        out: &mut Out,
    ) -> Result<JoinReply, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout);
        }
        if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            let member_id = self.generate_member_id(&req.client_id, new_suffix);
            if let Some(instance) = req.group_instance_id.as_deref() {
                if let Some(old) = self.static_member_id(instance).map(str::to_owned) {
                    return self.replace_static_member(old, member_id, req, now_ms, out);
                }
                // Static members skip the MEMBER_ID_REQUIRED round trip.
                return Ok(self.add_member_and_rebalance(member_id, req, now_ms, out));
            }
            if req.require_known_member_id {
                let deadline = now_ms + req.session_timeout_ms as i64;
                self.pending_members.insert(member_id.clone(), deadline);
                out.session(&member_id, deadline);
                return Err(GroupError::MemberIdRequired { member_id });
            }
            return Ok(self.add_member_and_rebalance(member_id, req, now_ms, out));
        }

        if self.pending_members.contains_key(&req.member_id) {
            if let Some(instance) = req.group_instance_id.as_deref() {
                if self.static_member_id(instance).is_some() {
                    return Err(GroupError::FencedInstanceId);
                }
            }
            self.pending_members.remove(&req.member_id);
            let member_id = req.member_id.clone();
            return Ok(self.add_member_and_rebalance(member_id, req, now_ms, out));
        }

        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        let idx = self.index(&req.member_id).ok_or(GroupError::UnknownMemberId)?;
        let member_id = req.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(idx, req, now_ms, out);
                Ok(JoinReply::Pending { member_id })
            }
            GroupState::CompletingRebalance => {
                if self.members[idx].matches(&req.protocols) {
                    // Likely a retry after a lost response: repeat this generation's answer.
                    Ok(JoinReply::Done(self.join_response(&member_id)))
                } else {
                    self.update_member_and_rebalance(idx, req, now_ms, out);
                    Ok(JoinReply::Pending { member_id })
                }
            }
            GroupState::Stable => {
                if self.is_leader(&member_id) || !self.members[idx].matches(&req.protocols) {
                    // A leader rejoining forces a rebalance (e.g. topic metadata changed).
                    self.update_member_and_rebalance(idx, req, now_ms, out);
                    Ok(JoinReply::Pending { member_id })
                } else {
                    Ok(JoinReply::Done(self.join_response(&member_id)))
                }
            }
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
        }
    }

    fn generate_member_id(&self, client_id: &str, new_suffix: &mut dyn FnMut() -> String) -> String {
        // Keep ids well inside the i16 string limit of the records.
        let mut end = client_id.len().min(1024);
        while !client_id.is_char_boundary(end) {
            end -= 1;
        }
        let prefix = &client_id[..end];
        let mut id = format!("{prefix}-{}", new_suffix());
        let mut n = 0u32;
        while self.has(&id) || self.pending_members.contains_key(&id) {
            n += 1;
            id = format!("{prefix}-{}-{n}", new_suffix());
        }
        id
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Out,
    ) -> JoinReply {
        if self.state == GroupState::PreparingRebalance && self.initial_delay_remaining_ms.is_some() {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member_id.clone());
        }
        // A new member cannot heartbeat until its first JoinGroup answers, so it gets the longer
        // new-member join timeout instead of its session timeout.
        let deadline = now_ms + self.config.new_member_join_timeout_ms as i64;
        self.members.push(Member {
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            session_deadline_ms: deadline,
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
        });
        out.session(&member_id, deadline);
        self.maybe_prepare_rebalance(now_ms, out);
        self.try_complete_join(now_ms, out);
        JoinReply::Pending { member_id }
    }

    fn update_member_and_rebalance(&mut self, idx: usize, req: JoinRequest, now_ms: i64, out: &mut Out) {
        let m = &mut self.members[idx];
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.awaiting_join = true;
        m.last_heartbeat_ms = now_ms;
        self.maybe_prepare_rebalance(now_ms, out);
        self.try_complete_join(now_ms, out);
    }

    /// A known `group.instance.id` joined with an empty member id: the new id takes over the old
    /// member (fencing the old id) and, when Stable, keeps its assignment without a rebalance.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Out,
    ) -> Result<JoinReply, GroupError> {
        let idx = self.index(&old_id).ok_or(GroupError::UnknownMemberId)?;
        let m = &mut self.members[idx];
        if std::mem::take(&mut m.awaiting_join) {
            out.joins.push((old_id.clone(), Err(GroupError::FencedInstanceId)));
        }
        if std::mem::take(&mut m.awaiting_sync) {
            out.syncs.push((old_id.clone(), Err(GroupError::FencedInstanceId)));
        }
        out.cancel_session(&old_id);
        m.member_id = new_id.clone();
        m.client_id = req.client_id;
        m.client_host = req.client_host;
        m.protocols = req.protocols;
        m.rebalance_timeout_ms = req.rebalance_timeout_ms;
        m.session_timeout_ms = req.session_timeout_ms;
        m.awaiting_join = true;
        m.last_heartbeat_ms = now_ms;
        m.session_deadline_ms = now_ms + req.session_timeout_ms as i64;
        out.session(&new_id, m.session_deadline_ms);
        if self.is_leader(&old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        match self.state {
            GroupState::Stable => {
                if self.select_protocol() == self.protocol_name {
                    let ack = PersistAck::StaticMemberJoin {
                        member_id: new_id.clone(),
                        old_member_id: old_id,
                        generation_id: self.generation_id,
                        supports_skip_assignment: req.supports_skip_assignment,
                    };
                    out.persist(self.metadata_record(None), Some(ack));
                } else {
                    // Its new protocols change the group's choice: everyone must rejoin.
                    self.prepare_rebalance(now_ms, out);
                }
            }
            // The leader may already be assigning for the old id: start over.
            GroupState::CompletingRebalance => self.prepare_rebalance(now_ms, out),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
        Ok(JoinReply::Pending { member_id: new_id })
    }

    // --- rebalance machinery -------------------------------------------------------------------

    fn maybe_prepare_rebalance(&mut self, now_ms: i64, out: &mut Out) {
        if matches!(self.state, GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty) {
            self.prepare_rebalance(now_ms, out);
        }
    }

    fn prepare_rebalance(&mut self, now_ms: i64, out: &mut Out) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(GroupError::RebalanceInProgress, out);
        }
        self.pending_sync.clear();
        self.staged_assignment = None;
        let rebalance_timeout = self.rebalance_timeout_ms();
        let initial_delay = self.config.initial_rebalance_delay_ms as i64;
        let deadline = if self.state == GroupState::Empty && initial_delay > 0 {
            self.initial_delay_remaining_ms = Some((rebalance_timeout - initial_delay).max(0));
            now_ms + initial_delay
        } else {
            self.initial_delay_remaining_ms = None;
            now_ms + rebalance_timeout
        };
        self.new_member_added = false;
        self.rebalance_deadline_ms = Some(deadline);
        self.transition(GroupState::PreparingRebalance, now_ms);
        out.rebalance(deadline);
        self.try_complete_join(now_ms, out);
    }

    fn reset_and_propagate_assignment_error(&mut self, error: GroupError, out: &mut Out) {
        for m in &mut self.members {
            m.assignment = Bytes::new();
            if std::mem::take(&mut m.awaiting_sync) {
                out.syncs.push((m.member_id.clone(), Err(error.clone())));
            }
        }
    }

    fn try_complete_join(&mut self, now_ms: i64, out: &mut Out) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay_remaining_ms.is_none()
            && self.members.iter().all(|m| m.awaiting_join)
            && self.pending_members.is_empty()
        {
            self.complete_join(now_ms, out);
        }
    }

    fn complete_join(&mut self, now_ms: i64, out: &mut Out) {
        // Dynamic members that did not rejoin are gone; static ones stay until their session
        // times out.
        let laggards: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.awaiting_join && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in laggards {
            self.remove_member(&id, out);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Nobody rejoined: wait another round for session timeouts to clear the group.
            let deadline = now_ms + self.rebalance_timeout_ms();
            self.rebalance_deadline_ms = Some(deadline);
            out.rebalance(deadline);
            return;
        }
        self.generation_id = self.generation_id.wrapping_add(1);
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.rebalance_deadline_ms = None;
            self.transition(GroupState::Empty, now_ms);
            out.cancel_rebalance();
            out.persist(self.metadata_record(None), None);
            return;
        }
        self.protocol_name = self.select_protocol();
        self.transition(GroupState::CompletingRebalance, now_ms);
        let leader_members = self.current_member_metadata();
        let template = JoinResponse {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            member_id: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        };
        for m in &mut self.members {
            if std::mem::take(&mut m.awaiting_join) {
                let mut resp = template.clone();
                resp.member_id = m.member_id.clone();
                if resp.leader_id == m.member_id {
                    resp.members = leader_members.clone();
                }
                out.joins.push((m.member_id.clone(), Ok(resp)));
            }
            m.is_new = false;
            m.last_heartbeat_ms = now_ms;
            m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
            out.session(&m.member_id, m.session_deadline_ms);
            self.pending_sync.insert(m.member_id.clone());
        }
        // Every member must now send SyncGroup within the rebalance timeout.
        let deadline = now_ms + self.rebalance_timeout_ms();
        self.rebalance_deadline_ms = Some(deadline);
        out.rebalance(deadline);
    }

    /// Keeps the leader if it rejoined, else picks the first member that did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.as_deref() else { return false };
        if self.member(leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.iter().find(|m| m.awaiting_join) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Removes a member without triggering anything.
    fn remove_member(&mut self, member_id: &str, out: &mut Out) {
        let Some(idx) = self.index(member_id) else { return };
        let m = self.members.remove(idx);
        // A member removed while its JoinGroup is parked retries with UNKNOWN_MEMBER_ID.
        if m.awaiting_join {
            out.joins.push((m.member_id.clone(), Err(GroupError::UnknownMemberId)));
        }
        if m.awaiting_sync {
            out.syncs.push((m.member_id.clone(), Err(GroupError::UnknownMemberId)));
        }
        self.pending_sync.remove(member_id);
        out.cancel_session(member_id);
        if self.is_leader(member_id) {
            self.leader_id = self.members.first().map(|m| m.member_id.clone());
        }
    }

    /// Removes a member and moves the group along (rebalance or completion).
    fn remove_member_and_update(&mut self, member_id: &str, now_ms: i64, out: &mut Out) {
        self.remove_member(member_id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now_ms, out),
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn remove_pending_member(&mut self, member_id: &str, now_ms: i64, out: &mut Out) {
        self.pending_members.remove(member_id);
        out.cancel_session(member_id);
        self.try_complete_join(now_ms, out);
    }

    // --- SyncGroup ---------------------------------------------------------------------------

    /// Handles SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, now_ms: i64) -> (Result<SyncReply, GroupError>, Vec<Effect>) {
        let mut out = Out::new(&self.id);
        let reply = self.do_sync(req, now_ms, &mut out);
        (reply, out.finish())
    }

    fn do_sync(&mut self, req: SyncRequest, now_ms: i64, out: &mut Out) -> Result<SyncReply, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        if req.protocol_type.as_ref().is_some_and(|t| self.protocol_type.as_ref() != Some(t))
            || req.protocol_name.as_ref().is_some_and(|n| self.protocol_name.as_ref() != Some(n))
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let idx = self.index(&req.member_id).ok_or(GroupError::UnknownMemberId)?;
                self.members[idx].awaiting_sync = true;
                self.pending_sync.remove(&req.member_id);
                if self.is_leader(&req.member_id) {
                    // Members the leader left out get an empty assignment; unknown ids are ignored.
                    let mut assignment: BTreeMap<String, Bytes> =
                        self.members.iter().map(|m| (m.member_id.clone(), Bytes::new())).collect();
                    for (member, bytes) in req.assignments {
                        if let Some(slot) = assignment.get_mut(&member) {
                            *slot = bytes;
                        }
                    }
                    let record = self.metadata_record(Some(&assignment));
                    self.staged_assignment = Some((self.generation_id, assignment));
                    out.persist(record, Some(PersistAck::SyncAssignment { generation_id: self.generation_id }));
                }
                Ok(SyncReply::Pending)
            }
            GroupState::Stable => {
                self.pending_sync.remove(&req.member_id);
                self.touch(&req.member_id, now_ms, out);
                let assignment = self.member(&req.member_id).map(|m| m.assignment.clone()).unwrap_or_default();
                Ok(SyncReply::Done(SyncResponse {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol_name.clone(),
                    assignment,
                }))
            }
        }
    }

    /// The driver reports the outcome of a [`Effect::PersistGroupMetadata`] that carried an ack.
    /// `result` is the error to hand to waiting clients on failure (e.g. NOT_COORDINATOR or
    /// COORDINATOR_NOT_AVAILABLE).
    pub fn on_persisted(&mut self, ack: PersistAck, result: Result<(), GroupError>, now_ms: i64) -> Vec<Effect> {
        let mut out = Out::new(&self.id);
        match ack {
            PersistAck::SyncAssignment { generation_id } => {
                // Another rebalance may have started meanwhile: then the write is moot.
                if self.state != GroupState::CompletingRebalance || generation_id != self.generation_id {
                    return out.finish();
                }
                let staged = self.staged_assignment.take().filter(|(g, _)| *g == generation_id);
                match (result, staged) {
                    (Ok(()), Some((_, assignment))) => {
                        let protocol_type = self.protocol_type.clone();
                        let protocol_name = self.protocol_name.clone();
                        for m in &mut self.members {
                            m.assignment = assignment.get(&m.member_id).cloned().unwrap_or_default();
                            if std::mem::take(&mut m.awaiting_sync) {
                                out.syncs.push((
                                    m.member_id.clone(),
                                    Ok(SyncResponse {
                                        protocol_type: protocol_type.clone(),
                                        protocol_name: protocol_name.clone(),
                                        assignment: m.assignment.clone(),
                                    }),
                                ));
                                m.last_heartbeat_ms = now_ms;
                                m.session_deadline_ms = now_ms + m.session_timeout_ms as i64;
                                out.session(&m.member_id, m.session_deadline_ms);
                            }
                        }
                        self.transition(GroupState::Stable, now_ms);
                    }
                    (Ok(()), None) => {}
                    (Err(e), _) => {
                        self.reset_and_propagate_assignment_error(e, &mut out);
                        self.prepare_rebalance(now_ms, &mut out);
                    }
                }
            }
            PersistAck::StaticMemberJoin { member_id, old_member_id, generation_id, supports_skip_assignment } => {
                let Some(idx) = self.index(&member_id) else { return out.finish() };
                if self.state != GroupState::Stable
                    || generation_id != self.generation_id
                    || !self.members[idx].awaiting_join
                {
                    // A rebalance started meanwhile; it will answer the parked join.
                    return out.finish();
                }
                self.members[idx].awaiting_join = false;
                match result {
                    Ok(()) => {
                        let mut resp = self.join_response(&member_id);
                        if self.is_leader(&member_id) {
                            if supports_skip_assignment {
                                // KIP-814: the leader learns the members but must not reassign.
                                resp.skip_assignment = true;
                            } else {
                                // Older clients: hide leadership so it does not reassign.
                                resp.leader_id = old_member_id;
                                resp.members = Vec::new();
                            }
                        }
                        out.joins.push((member_id, Ok(resp)));
                    }
                    Err(e) => out.joins.push((member_id, Err(e))),
                }
            }
        }
        out.finish()
    }

    // --- Heartbeat ---------------------------------------------------------------------------

    /// Handles Heartbeat: resets the session deadline of a valid member.
    pub fn heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64) -> (Result<(), GroupError>, Vec<Effect>) {
        let mut out = Out::new(&self.id);
        let result = self.do_heartbeat(req, now_ms, &mut out);
        (result, out.finish())
    }

    fn do_heartbeat(&mut self, req: &HeartbeatRequest, now_ms: i64, out: &mut Out) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != self.generation_id {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.touch(&req.member_id, now_ms, out);
                Ok(())
            }
            GroupState::PreparingRebalance => {
                // Tells the member to rejoin.
                self.touch(&req.member_id, now_ms, out);
                Err(GroupError::RebalanceInProgress)
            }
        }
    }

    // --- LeaveGroup --------------------------------------------------------------------------

    /// Handles LeaveGroup: removes each listed member (by member id, or by instance id when the
    /// member id is empty), then rebalances. The outer error is the whole-request error.
    #[allow(clippy::type_complexity)]
    pub fn leave(
        &mut self,
        req: &LeaveRequest,
        now_ms: i64,
    ) -> (Result<Vec<(LeaveMember, Result<(), GroupError>)>, GroupError>, Vec<Effect>) {
        let mut out = Out::new(&self.id);
        if self.state == GroupState::Dead {
            return (Err(GroupError::CoordinatorNotAvailable), out.finish());
        }
        let mut results = Vec::with_capacity(req.members.len());
        for leaving in &req.members {
            let instance = leaving.group_instance_id.as_deref();
            let result = if leaving.member_id.is_empty() {
                match instance.and_then(|i| self.static_member_id(i)).map(str::to_owned) {
                    Some(current) => {
                        self.remove_member_and_update(&current, now_ms, &mut out);
                        Ok(())
                    }
                    None => Err(GroupError::UnknownMemberId),
                }
            } else if self.pending_members.contains_key(&leaving.member_id) {
                self.remove_pending_member(&leaving.member_id, now_ms, &mut out);
                Ok(())
            } else if instance.is_some_and(|i| self.static_member_id(i).is_some_and(|m| m != leaving.member_id)) {
                Err(GroupError::FencedInstanceId)
            } else if self.has(&leaving.member_id) {
                self.remove_member_and_update(&leaving.member_id, now_ms, &mut out);
                Ok(())
            } else {
                Err(GroupError::UnknownMemberId)
            };
            results.push((leaving.clone(), result));
        }
        (Ok(results), out.finish())
    }

    // --- timers ------------------------------------------------------------------------------

    /// A member's session timer fired. Expires the member if it really missed its deadline (and
    /// is not excused by waiting on a rebalance), then rebalances.
    pub fn on_session_timeout(&mut self, member_id: &str, now_ms: i64) -> Vec<Effect> {
        let mut out = Out::new(&self.id);
        if self.state == GroupState::Dead {
            return out.finish();
        }
        if let Some(&deadline) = self.pending_members.get(member_id) {
            if now_ms >= deadline {
                self.remove_pending_member(member_id, now_ms, &mut out);
            }
            return out.finish();
        }
        let Some(m) = self.member(member_id) else { return out.finish() };
        if now_ms < m.session_deadline_ms {
            return out.finish(); // stale timer: a newer deadline is armed
        }
        // Members waiting on us in a rebalance are alive by definition, except new members,
        // which are bounded by the new-member join timeout.
        let excused = !m.is_new && (m.awaiting_join || m.awaiting_sync);
        if !excused {
            self.remove_member_and_update(member_id, now_ms, &mut out);
        }
        out.finish()
    }

    /// The group's rebalance timer fired: completes the join phase (evicting members that did
    /// not rejoin), extends the initial delay, or evicts members that never sent SyncGroup.
    pub fn on_rebalance_timeout(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut out = Out::new(&self.id);
        let Some(deadline) = self.rebalance_deadline_ms else { return out.finish() };
        if now_ms < deadline {
            return out.finish();
        }
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(remaining) = self.initial_delay_remaining_ms {
                    if self.new_member_added && remaining > 0 {
                        // More members arrived during the delay: wait a bit more, within budget.
                        let delay = self.config.initial_rebalance_delay_ms as i64;
                        self.new_member_added = false;
                        self.initial_delay_remaining_ms = Some((remaining - delay).max(0));
                        let deadline = now_ms + delay.min(remaining);
                        self.rebalance_deadline_ms = Some(deadline);
                        out.rebalance(deadline);
                        return out.finish();
                    }
                    self.initial_delay_remaining_ms = None;
                }
                self.complete_join(now_ms, &mut out);
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.rebalance_deadline_ms = None;
                if !self.pending_sync.is_empty() {
                    let missing: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
                    for id in &missing {
                        self.remove_member(id, &mut out);
                    }
                    self.prepare_rebalance(now_ms, &mut out);
                }
            }
            GroupState::Empty | GroupState::Dead => self.rebalance_deadline_ms = None,
        }
        out.finish()
    }

    /// Marks the group Dead (deleted, or its partition moved away / lost leadership) and answers
    /// every parked request with `error` (NOT_COORDINATOR when unloading). The driver then drops
    /// the group.
    pub fn mark_dead(&mut self, error: GroupError, now_ms: i64) -> Vec<Effect> {
        let mut out = Out::new(&self.id);
        for m in &mut self.members {
            if std::mem::take(&mut m.awaiting_join) {
                out.joins.push((m.member_id.clone(), Err(error.clone())));
            }
            if std::mem::take(&mut m.awaiting_sync) {
                out.syncs.push((m.member_id.clone(), Err(error.clone())));
            }
            out.cancel_session(&m.member_id);
        }
        for id in std::mem::take(&mut self.pending_members).into_keys() {
            out.cancel_session(&id);
        }
        if self.rebalance_deadline_ms.take().is_some() {
            out.cancel_rebalance();
        }
        self.pending_sync.clear();
        self.staged_assignment = None;
        self.transition(GroupState::Dead, now_ms);
        out.finish()
    }

    // --- admin views -------------------------------------------------------------------------

    /// DescribeGroups: member metadata and assignments are only shown when Stable, as in Kafka.
    pub fn describe(&self) -> DescribedGroup {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable { self.protocol_name.clone().unwrap_or_default() } else { String::new() };
        DescribedGroup {
            group_id: self.id.clone(),
            state: self.state.name(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            members: self
                .members
                .iter()
                .map(|m| DescribedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable { m.metadata(&protocol) } else { Bytes::new() },
                    assignment: if stable { m.assignment.clone() } else { Bytes::new() },
                })
                .collect(),
            protocol,
        }
    }

    /// ListGroups entry.
    pub fn listing(&self) -> ListedGroup {
        ListedGroup {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            state: self.state.name(),
        }
    }
}

#[cfg(test)]
mod tests;
