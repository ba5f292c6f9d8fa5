//! The metadata quorum of one node: raft-rs's `RawNode` driving the
//! controller's state machine, with its log and snapshots on a `Disk`.
//!
//! Sans-IO and single-threaded: the caller feeds ticks, messages from peers
//! and proposals, then calls `poll`, which persists what raft decided
//! (fsync'ed before any dependent message is released), applies committed
//! records to the image, and returns the messages to send and the outcome
//! of applied records. The broker runs it on its controller shard; the
//! simulator (`tests/quorum_sim.rs`) runs the same code under virtual time
//! with a lossy network and crashing disks.
//!
//! Determinism: raft-rs draws its randomized election timeout from the
//! thread's RNG. Whenever raft resets its timers (a new term, role or
//! leader), this node overrides that draw with one from its own seeded
//! generator, so a node built from the same seed and fed the same inputs
//! makes the same decisions: a simulator seed replays exactly.

pub mod disk;
mod log_bridge;
pub mod store;
pub mod wire;

use std::sync::Arc;

use kafka_protocol::ResponseError;
use raft::prelude::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};

use crate::{apply_change, records, MetadataChange, MetadataImage};
use disk::Disk;
use store::RaftStore;

pub use raft::prelude::Message as RaftMessage;
pub use raft::prelude::MessageType as RaftMessageType;
pub use raft::StateRole as Role;

/// Timing and sizes of the quorum, in ticks of the caller's clock.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub id: u64,
    pub voters: Vec<u64>,
    /// A follower that hears nothing for this many ticks (randomized up to
    /// twice as many) starts a (pre-)vote.
    pub election_tick: usize,
    /// The leader heartbeats every this many ticks.
    pub heartbeat_tick: usize,
    /// Applied entries between snapshots.
    pub snapshot_every: u64,
    /// A snapshot is also taken when the log file grows past this.
    pub snapshot_log_bytes: u64,
    /// Seeds the election-timeout randomization (and cluster id choice).
    pub seed: u64,
}

impl QuorumConfig {
    /// The broker's settings: a 50 ms tick, so elections after 1-2 s of
    /// silence and heartbeats every 100 ms.
    pub fn broker(id: u64, voters: Vec<u64>, seed: u64) -> QuorumConfig {
        QuorumConfig {
            id,
            voters,
            election_tick: 20,
            heartbeat_tick: 2,
            snapshot_every: 1024,
            snapshot_log_bytes: 64 << 20,
            seed,
        }
    }
}

/// What `poll` produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to hand to the transport (each names its destination).
    pub messages: Vec<Message>,
    /// Records applied, in log order.
    pub applied: Vec<Applied>,
    /// The image changed (records applied or a snapshot installed).
    pub image_changed: bool,
}

/// One committed metadata record, applied (or refused by the state machine:
/// the same refusal on every node, since application is deterministic).
#[derive(Debug)]
pub struct Applied {
    pub index: u64,
    /// This node's proposal number, if this node proposed it in this run.
    pub proposal: Option<u64>,
    pub change: Option<MetadataChange>,
    pub result: Result<(), (ResponseError, String)>,
    /// The image right after this record (what its proposer answers with:
    /// a producer id block is read from it, not from a later image).
    pub image: Arc<MetadataImage>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known (an election is under way): nowhere to send it.
    #[error("no active controller is known (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
}

/// splitmix64: small, seedable, and good enough for timeouts and ids.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo < hi);
        lo + self.next_u64() % (hi - lo)
    }
}

/// Proposal context: who proposed, in which incarnation, which proposal.
/// A restarted node replays its old proposals; the incarnation keeps them
/// from answering its new ones.
const CONTEXT_LEN: usize = 24;

pub struct Quorum<D: Disk> {
    raw: RawNode<RaftStore<D>>,
    cfg: QuorumConfig,
    image: Arc<MetadataImage>,
    /// Last index applied to `image`.
    applied: u64,
    rng: SeededRng,
    incarnation: u64,
    /// (term, role, leader) when the election timeout was last drawn.
    timers_drawn_for: (u64, StateRole, u64, usize),
    /// The term in which this node proposed the cluster id, if any.
    init_proposed_in: Option<u64>,
}

impl<D: Disk> Quorum<D> {
    /// Opens the node's quorum state from `disk`. `migrate` is the image of
    /// a pre-quorum single-node data directory, installed as the first
    /// snapshot when the store is empty (only a one-voter quorum of this
    /// node may adopt it: peers would not share it).
    pub fn open(cfg: QuorumConfig, disk: D, migrate: Option<MetadataImage>) -> std::io::Result<Quorum<D>> {
        assert!(cfg.voters.contains(&cfg.id), "node {} is not one of the voters {:?}", cfg.id, cfg.voters);
        let mut store = RaftStore::open(disk, &cfg.voters)?;
        if let Some(img) = migrate {
            if !store.is_empty() {
                return Err(std::io::Error::other("the quorum store already exists; nothing to migrate into it"));
            }
            if cfg.voters != [cfg.id] {
                return Err(std::io::Error::other(format!(
                    "a single-node data directory can only become a one-voter quorum of node {}; controller_quorum_voters names {:?}",
                    cfg.id, cfg.voters
                )));
            }
            let mut snap = raft::prelude::Snapshot::default();
            snap.set_data(image_bytes(&img).into());
            snap.mut_metadata().index = 1;
            snap.mut_metadata().term = 1;
            store.apply_snapshot(&snap)?;
        }
        let snap = store.snapshot_stored().clone();
        let image = if snap.index == 0 {
            MetadataImage::default()
        } else {
            serde_json::from_slice(&snap.data)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("snapshot image: {e}")))?
        };
        let rc = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied: snap.index,
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        rc.validate().map_err(|e| std::io::Error::other(format!("quorum config: {e}")))?;
        let logger = log_bridge::logger(cfg.id);
        let raw = RawNode::new(&rc, store, &logger).map_err(|e| std::io::Error::other(format!("raft: {e}")))?;
        let mut rng = SeededRng::new(cfg.seed);
        let incarnation = rng.next_u64();
        let mut q = Quorum {
            raw,
            image: Arc::new(image),
            applied: snap.index,
            rng,
            incarnation,
            timers_drawn_for: (u64::MAX, StateRole::Follower, u64::MAX, 0),
            init_proposed_in: None,
            cfg,
        };
        q.redraw_timeout_if_reset();
        if q.cfg.voters == [q.cfg.id] {
            // Alone: no one to wait for, lead now.
            q.raw.campaign().map_err(|e| std::io::Error::other(format!("raft campaign: {e}")))?;
            q.redraw_timeout_if_reset();
        }
        Ok(q)
    }

    pub fn id(&self) -> u64 {
        self.cfg.id
    }
    pub fn image(&self) -> &Arc<MetadataImage> {
        &self.image
    }
    pub fn applied_index(&self) -> u64 {
        self.applied
    }
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }
    pub fn last_index(&self) -> u64 {
        self.raw.raft.raft_log.last_index()
    }
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }
    pub fn role(&self) -> StateRole {
        self.raw.raft.state
    }
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }
    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(id),
        }
    }
    pub fn voters(&self) -> &[u64] {
        &self.cfg.voters
    }
    /// Leader only: how far each voter's log matches the leader's.
    pub fn voter_progress(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut v: Vec<(u64, u64)> = self.raw.raft.prs().iter().map(|(id, p)| (*id, p.matched)).collect();
        v.sort_unstable();
        v
    }
    pub fn store(&self) -> &RaftStore<D> {
        self.raw.store()
    }
    /// Takes the disk out of a node that is being dropped (the simulator
    /// "crashes" a node this way and reopens it from what its disk kept).
    pub fn into_disk(mut self) -> D
    where
        D: Default,
    {
        std::mem::take(self.raw.mut_store().disk_mut())
    }

    /// Advances the node's clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
        self.redraw_timeout_if_reset();
    }

    /// A message from a peer. Messages raft cannot use (stale, or for
    /// another node) are dropped, as the protocol expects of a lossy network.
    pub fn step(&mut self, msg: Message) {
        if msg.to != self.cfg.id
            || !self.cfg.voters.contains(&msg.from)
            || raft::raw_node::is_local_msg(msg.get_msg_type())
        {
            return;
        }
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(error = %e, "quorum message dropped");
        }
        self.redraw_timeout_if_reset();
    }

    /// Proposes a change; its outcome comes back from `poll` as an `Applied`
    /// with `proposal == Some(seq)` once committed, unless leadership is
    /// lost first (the caller times out). A follower forwards the proposal
    /// to the leader it knows (raft-rs does), so a change can be made
    /// through any voter.
    pub fn propose(&mut self, change: &MetadataChange, seq: u64) -> Result<(), ProposeError> {
        if self.leader().is_none() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        let mut ctx = Vec::with_capacity(CONTEXT_LEN);
        ctx.extend_from_slice(&self.cfg.id.to_be_bytes());
        ctx.extend_from_slice(&self.incarnation.to_be_bytes());
        ctx.extend_from_slice(&seq.to_be_bytes());
        self.raw.propose(ctx, records::encode(change)).map_err(|_| ProposeError::NotLeader { leader: self.leader() })
    }

    /// Runs raft's pending work: persists, applies, and returns what to send.
    pub fn poll(&mut self) -> std::io::Result<Output> {
        let mut out = Output::default();
        self.maybe_propose_cluster_id();
        while self.raw.has_ready() {
            let mut rd = self.raw.ready();
            // A leader's messages may go before its own append is durable
            // (raft counts its own vote for an entry only once persisted).
            out.messages.extend(rd.take_messages());
            if !rd.snapshot().is_empty() {
                let snap = rd.snapshot().clone();
                self.raw.mut_store().apply_snapshot(&snap)?;
                let img: MetadataImage = serde_json::from_slice(snap.get_data()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("snapshot from the leader: {e}"))
                })?;
                self.image = Arc::new(img);
                self.applied = snap.get_metadata().index;
                out.image_changed = true;
            }
            let committed = rd.take_committed_entries();
            self.apply_entries(committed, &mut out);
            self.raw.mut_store().persist(rd.entries(), rd.hs())?;
            // Votes and append acknowledgements go only after the sync.
            out.messages.extend(rd.take_persisted_messages());
            let mut light = self.raw.advance(rd);
            if let Some(c) = light.commit_index() {
                self.raw.mut_store().set_commit(c)?;
            }
            out.messages.extend(light.take_messages());
            let committed = light.take_committed_entries();
            self.apply_entries(committed, &mut out);
            self.raw.advance_apply_to(self.applied);
        }
        // raft-rs pauses a follower's progress while a snapshot is out until
        // told how it went. Counting it as delivered is safe: if it was lost,
        // the follower rejects the next append and the leader, probing,
        // sends the snapshot again.
        for m in &out.messages {
            if m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot {
                self.raw.report_snapshot(m.to, raft::SnapshotStatus::Finish);
            }
        }
        self.redraw_timeout_if_reset();
        self.maybe_snapshot()?;
        Ok(out)
    }

    fn apply_entries(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for e in entries {
            if e.index <= self.applied {
                continue; // covered by a snapshot installed in this ready
            }
            assert_eq!(e.index, self.applied + 1, "entries apply in order");
            self.applied = e.index;
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue; // a new leader's empty entry; membership is static
            }
            let proposal = (e.context.len() == CONTEXT_LEN
                && e.context[..8] == self.cfg.id.to_be_bytes()
                && e.context[8..16] == self.incarnation.to_be_bytes())
            .then(|| u64::from_be_bytes(e.context[16..24].try_into().unwrap()));
            let (change, result) = match records::decode(&e.data) {
                Ok(change) => {
                    let r = match apply_change(&self.image, &change) {
                        Ok(next) => {
                            self.image = Arc::new(next);
                            out.image_changed = true;
                            Ok(())
                        }
                        Err(err) => Err(err),
                    };
                    (Some(change), r)
                }
                Err(err) => (None, Err((ResponseError::InvalidRequest, err.to_string()))),
            };
            out.applied.push(Applied { index: e.index, proposal, change, result, image: self.image.clone() });
        }
    }

    /// A leader that has committed an entry of its own term and applied
    /// everything committed: its image is the cluster's latest.
    pub fn is_caught_up_leader(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        self.is_leader() && self.applied == log.committed && log.term(log.committed).ok() == Some(self.term())
    }

    /// The first leader of a new quorum names the cluster (once it knows
    /// the log holds no name yet).
    fn maybe_propose_cluster_id(&mut self) {
        if !self.image.cluster_id.is_empty()
            || !self.is_caught_up_leader()
            || self.init_proposed_in == Some(self.term())
        {
            return;
        }
        self.init_proposed_in = Some(self.term());
        let cluster_id = cluster_id_from(&mut self.rng);
        // Not one of ours to answer; a lost proposal is retried next term.
        let _ = self.propose(&MetadataChange::InitCluster { cluster_id }, u64::MAX);
    }

    fn maybe_snapshot(&mut self) -> std::io::Result<()> {
        let store = self.raw.store();
        let since = self.applied - store.snapshot_stored().index;
        if since == 0 || (since < self.cfg.snapshot_every && store.log_bytes() < self.cfg.snapshot_log_bytes) {
            return Ok(());
        }
        let data = image_bytes(&self.image);
        let applied = self.applied;
        self.raw.mut_store().compact(applied, data)
    }

    fn redraw_timeout_if_reset(&mut self) {
        let r = &self.raw.raft;
        let now = (r.term, r.state, r.leader_id, r.randomized_election_timeout());
        if now == self.timers_drawn_for {
            return;
        }
        let lo = r.election_timeout() as u64;
        let t = self.rng.range(lo, 2 * lo) as usize;
        self.raw.raft.set_randomized_election_timeout(t);
        self.timers_drawn_for = (now.0, now.1, now.2, t);
    }
}

/// The image as stored in a snapshot.
pub fn image_bytes(img: &MetadataImage) -> Vec<u8> {
    serde_json::to_vec(img).expect("the image serializes")
}

/// Kafka cluster ids: 22 characters of url-safe base64 (16 random bytes).
pub fn cluster_id_from(rng: &mut SeededRng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22).map(|_| ALPHABET[(rng.next_u64() & 63) as usize] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::disk::SimDisk;
    use super::*;
    use ringbroker_engine::ids::TopicId;
    use std::collections::BTreeMap;

    fn topic(name: &str, id: u8) -> MetadataChange {
        MetadataChange::CreateTopic {
            name: name.into(),
            id: TopicId([id; 16]),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: vec![vec![1]],
        }
    }

    fn register(q: &mut Quorum<SimDisk>) {
        let r = MetadataChange::RegisterBroker {
            id: 1,
            incarnation: [1; 16],
            host: "h".into(),
            port: 9092,
            cluster_host: String::new(),
            cluster_port: 0,
            shards: 1,
        };
        q.propose(&r, 1000).unwrap();
        settle(q);
        assert!(q.image().brokers.contains_key(&1));
    }

    fn settle(q: &mut Quorum<SimDisk>) -> Vec<Applied> {
        let mut all = Vec::new();
        for _ in 0..10 {
            let out = q.poll().unwrap();
            assert!(out.messages.is_empty(), "a one-voter quorum sends nothing");
            all.extend(out.applied);
        }
        all
    }

    #[test]
    fn a_single_voter_leads_at_once_names_the_cluster_and_applies() {
        let mut q = Quorum::open(QuorumConfig::broker(1, vec![1], 7), SimDisk::default(), None).unwrap();
        assert!(q.is_leader());
        settle(&mut q);
        assert_eq!(q.image().cluster_id.len(), 22);
        register(&mut q);
        q.propose(&topic("a", 1), 1).unwrap();
        q.propose(&topic("a", 2), 2).unwrap();
        let applied = settle(&mut q);
        assert_eq!(applied.len(), 2);
        assert_eq!(applied[0].proposal, Some(1));
        assert!(applied[0].result.is_ok());
        assert_eq!(applied[1].result.as_ref().unwrap_err().0, ResponseError::TopicAlreadyExists);
        let img = q.image().clone();
        // Reopen: the same image from the log.
        let mut q = Quorum::open(QuorumConfig::broker(1, vec![1], 8), q.into_disk(), None).unwrap();
        let replayed = settle(&mut q);
        assert!(replayed.iter().all(|a| a.proposal.is_none()), "old proposals do not answer new ones: {replayed:?}");
        assert_eq!(q.image(), &img);
    }

    #[test]
    fn snapshots_bound_the_log_and_reopen_from_them() {
        let mut cfg = QuorumConfig::broker(1, vec![1], 1);
        cfg.snapshot_every = 10;
        let mut q = Quorum::open(cfg.clone(), SimDisk::default(), None).unwrap();
        settle(&mut q);
        register(&mut q);
        for i in 0..25u8 {
            q.propose(&topic(&format!("t{i}"), i + 1), i as u64).unwrap();
            settle(&mut q);
        }
        assert!(q.store().snapshot_stored().index >= 20);
        let img = q.image().clone();
        let mut q = Quorum::open(cfg, q.into_disk(), None).unwrap();
        settle(&mut q);
        assert_eq!(q.image(), &img);
        assert_eq!(q.image().topics.len(), 25);
    }

    #[test]
    fn a_single_node_image_migrates_once() {
        let mut img = crate::test_image(&[1]);
        img.cluster_id = "old-cluster".into();
        img = apply_change(&img, &topic("kept", 9)).unwrap();
        let mut q = Quorum::open(QuorumConfig::broker(3, vec![3], 1), SimDisk::default(), Some(img.clone())).unwrap();
        settle(&mut q);
        assert_eq!(q.image().cluster_id, "old-cluster");
        assert!(q.image().topic("kept").is_some());
        let disk = q.into_disk();
        assert!(Quorum::open(QuorumConfig::broker(3, vec![3], 1), disk.clone(), Some(img.clone())).is_err());
        assert!(Quorum::open(QuorumConfig::broker(3, vec![1, 2, 3], 1), SimDisk::default(), Some(img)).is_err());
    }
}
