//! The group coordinator driver: runs the pure `ringbroker-groups` state
//! machine for the `__consumer_offsets` partitions this shard owns.
//!
//! One `PartitionCoordinator` per owned offsets partition. It holds the
//! state machine, the JoinGroup/SyncGroup requests parked until a rebalance
//! completes, and the group timers. Effects returned by the state machine are
//! applied here: parked requests answered, timers armed, group metadata and
//! offset commits appended to the partition's log (and acknowledged only once
//! durable). On start the partition is replayed from its log; until then the
//! state machine answers COORDINATOR_LOAD_IN_PROGRESS.
//!
//! Owned by the shard that owns the offsets partition; no other shard
//! touches it (requests come through `Router::call`).

use ringbroker_replication::partition::PartitionError;
use ringbroker_replication::Acks;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use bytes::BytesMut;
use futures::channel::oneshot;
use ringbroker_engine::batch::{build_batch, validate_batch, RecordSpec};
use ringbroker_engine::now_ms;
use ringbroker_groups::coordinator::CoordinatorState;
use ringbroker_groups::group::{Effect, JoinResponse, SyncResponse};
use ringbroker_groups::records::Record;
use ringbroker_groups::{GroupConfig, GroupError};

use crate::shard::{PartitionHandle, Shard};

/// Kafka's internal topic for group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offsets.topic.num.partitions` default.
pub const OFFSETS_PARTITIONS: i32 = 50;

type JoinSender = oneshot::Sender<Result<JoinResponse, GroupError>>;

/// How a JoinGroup or SyncGroup is answered.
pub enum Answer<T> {
    Now(Result<T, GroupError>),
    Parked(oneshot::Receiver<Result<T, GroupError>>),
}
type SyncSender = oneshot::Sender<Result<SyncResponse, GroupError>>;

pub struct PartitionCoordinator {
    pub partition: i32,
    pub state: RefCell<CoordinatorState>,
    log: Rc<PartitionHandle>,
    parked_joins: RefCell<HashMap<(String, String), JoinSender>>,
    parked_syncs: RefCell<HashMap<(String, String), SyncSender>>,
    rebalance_timers: RefCell<HashMap<String, i64>>,
    session_timers: RefCell<HashMap<(String, String), i64>>,
}

impl PartitionCoordinator {
    pub fn new(partition: i32, log: Rc<PartitionHandle>, config: GroupConfig) -> Rc<Self> {
        let mut state = CoordinatorState::new(config);
        state.set_loading(true);
        Rc::new(PartitionCoordinator {
            partition,
            state: RefCell::new(state),
            log,
            parked_joins: Default::default(),
            parked_syncs: Default::default(),
            rebalance_timers: Default::default(),
            session_timers: Default::default(),
        })
    }

    /// Replays the partition's log into the state machine, then opens it for
    /// requests.
    pub async fn load(self: &Rc<Self>) {
        let (start, end) = (self.log.log().borrow().log_start_offset(), self.log.replica.high_watermark());
        let mut offset = start;
        let mut replayed = 0u64;
        while offset < end {
            let cached = self.log.replica.read_cached(offset, 1 << 20);
            let r = match cached {
                Some(r) => r,
                None => match self.log.replica.read_disk(offset, 1 << 20).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(partition = self.partition, error = %e, "replaying __consumer_offsets failed");
                        return;
                    }
                },
            };
            if r.chunks.is_empty() {
                break;
            }
            let mut data = r.into_bytes();
            let sets = match kafka_protocol::records::RecordBatchDecoder::decode_all(&mut data) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(partition = self.partition, error = %e, "undecodable __consumer_offsets batch");
                    return;
                }
            };
            let mut last = offset;
            let mut state = self.state.borrow_mut();
            for set in sets {
                for rec in set.records {
                    last = last.max(rec.offset);
                    if rec.offset < offset || rec.control {
                        continue;
                    }
                    let Some(key) = rec.key else { continue };
                    if let Err(e) = state.apply_record(&key, rec.value.as_deref()) {
                        tracing::warn!(partition = self.partition, offset = rec.offset, error = ?e, "skipping bad __consumer_offsets record");
                    }
                    replayed += 1;
                }
            }
            offset = last + 1;
        }
        let effects = self.state.borrow_mut().finish_loading(now_ms());
        tracing::info!(partition = self.partition, records = replayed, "group coordinator loaded");
        self.apply_effects(effects);
    }

    /// Applies a call's effects, then answers: now, or once the parked
    /// request is completed by an effect (of this call or a later one). The
    /// request must be parked *before* the effects are applied, since they
    /// may complete it: build `Answer::Parked` first, then call this.
    pub async fn settle<T>(self: &Rc<Self>, effects: Vec<Effect>, answer: Answer<T>) -> Result<T, GroupError> {
        self.apply_effects(effects);
        match answer {
            Answer::Now(r) => r,
            Answer::Parked(rx) => rx.await.unwrap_or(Err(GroupError::CoordinatorNotAvailable)),
        }
    }

    /// Parks a JoinGroup until a `CompleteJoins` effect answers it. A member
    /// that joins again while parked gets its older request answered with
    /// REBALANCE_IN_PROGRESS.
    pub fn park_join(&self, group: &str, member: &str) -> oneshot::Receiver<Result<JoinResponse, GroupError>> {
        let (tx, rx) = oneshot::channel();
        if let Some(old) = self.parked_joins.borrow_mut().insert((group.to_string(), member.to_string()), tx) {
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        rx
    }

    pub fn park_sync(&self, group: &str, member: &str) -> oneshot::Receiver<Result<SyncResponse, GroupError>> {
        let (tx, rx) = oneshot::channel();
        if let Some(old) = self.parked_syncs.borrow_mut().insert((group.to_string(), member.to_string()), tx) {
            let _ = old.send(Err(GroupError::RebalanceInProgress));
        }
        rx
    }

    /// Applies the state machine's effects. Never awaits: appends run as
    /// their own tasks and feed `on_persisted` back when durable.
    pub fn apply_effects(self: &Rc<Self>, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::CompleteJoins { group_id, completions } => {
                    for (member, result) in completions {
                        if let Some(tx) = self.parked_joins.borrow_mut().remove(&(group_id.clone(), member)) {
                            let _ = tx.send(result);
                        }
                    }
                }
                Effect::CompleteSyncs { group_id, completions } => {
                    for (member, result) in completions {
                        if let Some(tx) = self.parked_syncs.borrow_mut().remove(&(group_id.clone(), member)) {
                            let _ = tx.send(result);
                        }
                    }
                }
                Effect::ScheduleRebalanceTimeout { group_id, deadline_ms } => {
                    self.rebalance_timers.borrow_mut().insert(group_id, deadline_ms);
                }
                Effect::CancelRebalanceTimeout { group_id } => {
                    self.rebalance_timers.borrow_mut().remove(&group_id);
                }
                Effect::ScheduleSessionTimeout { group_id, member_id, deadline_ms } => {
                    self.session_timers.borrow_mut().insert((group_id, member_id), deadline_ms);
                }
                Effect::CancelSessionTimeout { group_id, member_id } => {
                    self.session_timers.borrow_mut().remove(&(group_id, member_id));
                }
                Effect::PersistGroupMetadata { group_id, record, ack } => {
                    let this = self.clone();
                    glommio::spawn_local(async move {
                        let result = this.append_records(&[record]).await;
                        if let Some(ack) = ack {
                            let effects = this.state.borrow_mut().on_persisted(&group_id, ack, result, now_ms());
                            this.apply_effects(effects);
                        }
                    })
                    .detach();
                }
            }
        }
    }

    /// Appends records to the offsets partition and waits until durable.
    pub async fn append_records(&self, records: &[Record]) -> Result<(), GroupError> {
        if records.is_empty() {
            return Ok(());
        }
        let specs: Vec<RecordSpec> = records
            .iter()
            .map(|r| RecordSpec { key: Some(&r.key), value: r.value.as_deref(), headers: vec![], timestamp_delta: 0 })
            .collect();
        let raw = build_batch(0, now_ms(), &specs);
        let header = validate_batch(&raw).expect("coordinator batches are well formed");
        let replica = &self.log.replica;
        let end = match replica.append(BytesMut::from(&raw[..]), &header, now_ms()) {
            Ok(info) => info.last_offset + 1,
            Err(PartitionError::NotLeader(_)) => return Err(GroupError::NotCoordinator),
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "appending to __consumer_offsets failed");
                return Err(GroupError::CoordinatorNotAvailable);
            }
        };
        // The same wait as an acks=all produce to this partition: under
        // flush.policy=interval/never that is the append itself (a commit
        // used to wait up to flush.ms for the next periodic sync).
        replica.wait_committed(replica.commit_wait(Acks::All, end)).await.map_err(|reason| {
            tracing::error!(partition = self.partition, %reason, "__consumer_offsets write failed");
            GroupError::CoordinatorNotAvailable
        })
    }

    /// Fires due timers. Stale deadlines are harmless: the state machine
    /// checks them itself.
    pub fn tick(self: &Rc<Self>, now: i64) {
        let due_rebalances: Vec<String> = {
            let mut t = self.rebalance_timers.borrow_mut();
            let due: Vec<String> = t.iter().filter(|(_, d)| **d <= now).map(|(g, _)| g.clone()).collect();
            for g in &due {
                t.remove(g);
            }
            due
        };
        for g in due_rebalances {
            let effects = self.state.borrow_mut().on_rebalance_timeout(&g, now);
            self.apply_effects(effects);
        }
        let due_sessions: Vec<(String, String)> = {
            let mut t = self.session_timers.borrow_mut();
            let due: Vec<(String, String)> = t.iter().filter(|(_, d)| **d <= now).map(|(k, _)| k.clone()).collect();
            for k in &due {
                t.remove(k);
            }
            due
        };
        for (g, m) in due_sessions {
            let effects = self.state.borrow_mut().on_session_timeout(&g, &m, now);
            self.apply_effects(effects);
        }
    }

    /// The earliest armed group timer (rebalance or session deadline).
    pub fn next_deadline(&self) -> Option<i64> {
        let r = self.rebalance_timers.borrow().values().copied().min();
        let s = self.session_timers.borrow().values().copied().min();
        r.into_iter().chain(s).min()
    }

    /// The partition is no longer ours (deleted): answer everything parked.
    pub fn unload(self: &Rc<Self>) {
        let effects = self.state.borrow_mut().unload(now_ms());
        self.apply_effects(effects);
        for (_, tx) in self.parked_joins.borrow_mut().drain() {
            let _ = tx.send(Err(GroupError::NotCoordinator));
        }
        for (_, tx) in self.parked_syncs.borrow_mut().drain() {
            let _ = tx.send(Err(GroupError::NotCoordinator));
        }
    }
}

/// A fresh member-id suffix (random, as Kafka uses a UUID).
pub fn member_suffix() -> String {
    let id = crate::metadata::random_id();
    uuid::Uuid::from_bytes(id).to_string()
}

/// How often committed offsets of empty groups are checked for expiry.
const OFFSET_EXPIRY_CHECK_MS: i64 = 60_000;

/// Per-shard timer loop for all coordinators on the shard: wakes at the
/// earliest group deadline (at least every 100 ms, to see timers armed while
/// it slept), `offsets.retention.minutes` expiry every minute. Session
/// timeouts fire within a millisecond or two of the deadline, as in Kafka:
/// clients (librdkafka's tests among them) wait exactly session.timeout.ms
/// for a static member to expire.
pub async fn timer_loop(shard: Rc<Shard>) {
    const MAX_SLEEP_MS: i64 = 100;
    let retention_ms = shard.config.broker.offsets_retention_minutes.saturating_mul(60_000);
    let mut next_expiry = now_ms() + OFFSET_EXPIRY_CHECK_MS;
    while !shard.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
        let next_deadline =
            shard.coordinators.borrow().values().filter_map(|c| c.next_deadline()).min().unwrap_or(i64::MAX);
        let sleep_ms = next_deadline.saturating_sub(now_ms()).clamp(1, MAX_SLEEP_MS);
        glommio::timer::sleep(std::time::Duration::from_millis(sleep_ms as u64)).await;
        let now = now_ms();
        let coordinators: Vec<Rc<PartitionCoordinator>> = shard.coordinators.borrow().values().cloned().collect();
        let expire = now >= next_expiry;
        if expire {
            next_expiry = now + OFFSET_EXPIRY_CHECK_MS;
        }
        let groups: usize = coordinators.iter().map(|c| c.state.borrow().groups().count()).sum();
        shard.metrics.groups.store(groups as i64, std::sync::atomic::Ordering::Relaxed);
        for c in coordinators {
            c.tick(now);
            if expire {
                let tombstones = c.state.borrow_mut().expire_offsets(now, retention_ms);
                if !tombstones.is_empty() {
                    tracing::info!(
                        partition = c.partition,
                        records = tombstones.len(),
                        "expiring committed offsets of empty groups"
                    );
                    if let Err(e) = c.append_records(&tombstones).await {
                        tracing::error!(partition = c.partition, error = %e, "writing offset expiry tombstones");
                    }
                }
            }
        }
    }
}
