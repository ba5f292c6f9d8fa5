//! The metadata quorum on this broker: drives `ringbroker_controller::quorum`
//! on the controller shard (shard 0).
//!
//! The node is sans-IO; this module gives it a clock (a tick every
//! `TICK`), a disk (`meta/quorum.log`, `meta/quorum.snapshot`), and turns
//! its output into effects: a changed image is installed on every shard,
//! in order, before the proposals it answers are answered, so a client that
//! created a topic can use it on any shard at once. Proposals wait for their
//! record to commit and apply (or time out if leadership is lost).
//!
//! Raft ids are node ids plus one: raft reserves 0 for "nobody", and Kafka
//! node ids start at 0.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use kafka_protocol::ResponseError;
use ringbroker_controller::liveness::{Liveness, HEARTBEAT_INTERVAL_MS};
use ringbroker_controller::quorum::disk::FsDisk;
use ringbroker_controller::quorum::{
    store, wire, Applied, ProposeError, Quorum, QuorumConfig, RaftMessageType as MessageType,
};

use crate::messages::Request;
use crate::metadata::{apply_change, MetadataChange, MetadataImage, MetadataStore};
use crate::router::{ShardId, Transport};
use crate::shard::Shard;
use ringbroker_controller::PartitionMeta;

/// The quorum's clock: election after 20-40 ticks of silence (1-2 s),
/// heartbeats every 2 (100 ms).
pub const TICK: Duration = Duration::from_millis(50);
/// How long a proposal waits to be committed and applied.
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

pub type ChangeResult = Result<Arc<MetadataImage>, (ResponseError, String)>;

pub fn raft_id(node_id: i32) -> u64 {
    node_id as u64 + 1
}
pub fn node_id(raft_id: u64) -> i32 {
    raft_id as i32 - 1
}

/// Opens this node's quorum state in `data_dir/meta`, migrating a
/// pre-quorum single-node store on first start, and replays it: the image
/// returned is everything this node knows committed.
pub fn open(data_dir: &Path, node: i32, voters: &[i32]) -> anyhow::Result<Quorum<FsDisk>> {
    let dir = data_dir.join("meta");
    let disk = FsDisk::new(&dir)?;
    let fresh = !dir.join(store::LOG_FILE).exists() && !dir.join(store::SNAPSHOT_FILE).exists();
    let legacy = dir.join("metadata.json");
    let migrate = if fresh && legacy.exists() {
        let old = MetadataStore::open(data_dir)?;
        tracing::info!(
            version = old.image().version,
            "migrating the single-node metadata store into the metadata quorum"
        );
        let mut img = (*old.image()).clone();
        // Every partition of a single node lives on it; the node registers
        // itself at start like any broker.
        img.brokers.clear();
        for t in img.topics.values_mut() {
            let t = std::sync::Arc::make_mut(t);
            t.assignments = (0..t.partitions).map(|_| PartitionMeta::new(vec![node])).collect();
        }
        Some(img)
    } else {
        None
    };
    let seed = crate::metadata::random_seed();
    let cfg = QuorumConfig::broker(raft_id(node), voters.iter().map(|&v| raft_id(v)).collect(), seed);
    let mut q = Quorum::open(cfg, disk, migrate.clone())?;
    if migrate.is_some() {
        // The quorum holds the image now; keep the old files for reference
        // under names nothing reads.
        for f in ["metadata.json", "metadata.log"] {
            let p = dir.join(f);
            if p.exists() {
                std::fs::rename(&p, dir.join(format!("{f}.migrated")))?;
            }
        }
    }
    // Apply what the log holds as committed (and, alone, commit and name
    // the cluster): a few polls, each a bounded amount of work.
    for _ in 0..4 {
        q.poll()?;
    }
    Ok(q)
}

/// The metadata quorum as one broker sees it (DescribeQuorum).
#[derive(Debug, Clone)]
pub struct QuorumView {
    pub leader: Option<i32>,
    pub term: u64,
    /// Highest index known committed (Kafka's high watermark of the log).
    pub commit_index: u64,
    pub last_index: u64,
    pub voters: Vec<VoterView>,
}

/// One voter as DescribeQuorum reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterView {
    pub id: i32,
    /// How far its log matches the leader's; known on the leader. Elsewhere:
    /// this broker's own log end, the leader's as the commit index (a lower
    /// bound), `None` for the others.
    pub log_end: Option<u64>,
    /// Wall-clock ms of the last message the active controller had from it
    /// (its own: now), known on the leader only (Kafka's lastFetchTimestamp).
    pub last_contact_ms: Option<i64>,
    /// Wall-clock ms when it was last seen with the leader's whole log
    /// (Kafka's lastCaughtUpTimestamp).
    pub last_caught_up_ms: Option<i64>,
}

/// What the active controller last heard from each voter, for DescribeQuorum;
/// reset at each new term so a previous leadership's times never show.
#[derive(Default)]
struct VoterContact {
    term: u64,
    /// raft id -> (last contact, last caught up), wall-clock ms.
    seen: HashMap<u64, (i64, Option<i64>)>,
}

/// A proposal made in an earlier term: the controller changed while it was
/// in flight, so it may or may not have been committed.
#[derive(Debug)]
pub struct LostProposal;

/// A proposal's waiter: the term it was proposed in, and where its answer goes.
type Waiter = (u64, oneshot::Sender<Result<Applied, LostProposal>>);

pub struct QuorumDriver {
    node: RefCell<Quorum<FsDisk>>,
    /// Outgoing connections to the other voters (none when alone).
    links: RefCell<Option<crate::cluster_link::QuorumLinks>>,
    /// Proposals awaiting their record: seq -> (term proposed in, answer).
    waiters: RefCell<HashMap<u64, Waiter>>,
    next_seq: Cell<u64>,
    /// One pump at a time, so images are installed in order.
    pump_lock: glommio::sync::Semaphore,
    /// This process's registration: random per start.
    incarnation: [u8; 16],
    registering: Cell<bool>,
    /// As the active controller: whom it hears from, and fences in flight.
    liveness: RefCell<Liveness>,
    was_leader: Cell<bool>,
    fencing: RefCell<Vec<(i32, i64)>>,
    started: std::time::Instant,
    contact: RefCell<VoterContact>,
    /// The active controller's last `QuorumStatus`: when it came, and what
    /// it said. A broker that is not the controller answers DescribeQuorum
    /// from it while it is fresh and of the current term.
    leader_status: RefCell<Option<(std::time::Instant, LeaderStatus)>>,
}

/// What the active controller last told the other voters about the quorum.
#[derive(Debug, Clone)]
struct LeaderStatus {
    from: i32,
    term: u64,
    commit_index: u64,
    voters: Vec<wire::VoterStatus>,
}

/// A `QuorumStatus` older than this is not used (the controller sends one
/// every heartbeat interval).
const STATUS_FRESH_FOR: Duration = Duration::from_millis(4 * HEARTBEAT_INTERVAL_MS);

impl QuorumDriver {
    pub fn new(node: Quorum<FsDisk>) -> Rc<QuorumDriver> {
        Rc::new(QuorumDriver {
            node: RefCell::new(node),
            links: RefCell::new(None),
            waiters: Default::default(),
            next_seq: Cell::new(0),
            pump_lock: glommio::sync::Semaphore::new(1),
            incarnation: crate::metadata::random_id(),
            registering: Cell::new(false),
            liveness: Default::default(),
            was_leader: Cell::new(false),
            fencing: Default::default(),
            started: std::time::Instant::now(),
            contact: Default::default(),
            leader_status: RefCell::new(None),
        })
    }

    /// Connects to the other voters and listens for them.
    pub async fn start_links(self: &Rc<Self>, shard: &Rc<Shard>) -> anyhow::Result<()> {
        let cfg = &shard.config;
        if cfg.voters.len() < 2 {
            return Ok(());
        }
        let addr = cfg.cluster_listen.expect("checked with the config: voters need a cluster listener");
        crate::cluster_link::serve(addr, self.clone(), shard.clone()).await?;
        *self.links.borrow_mut() =
            Some(crate::cluster_link::QuorumLinks::start(cfg.broker.node_id, &cfg.voters, shard));
        Ok(())
    }

    pub fn view(&self) -> QuorumView {
        let n = self.node.borrow();
        // Off the controller: its fresh status of this term, when there is one.
        if let Some((at, st)) = self.leader_status.borrow().as_ref() {
            let current = st.term == n.term() && n.leader().map(node_id) == Some(st.from) && !n.is_leader();
            if current && at.elapsed() < STATUS_FRESH_FOR {
                let known = |v: i64| (v >= 0).then_some(v);
                return QuorumView {
                    leader: Some(st.from),
                    term: st.term,
                    commit_index: st.commit_index.max(n.commit_index()),
                    last_index: n.last_index(),
                    voters: st
                        .voters
                        .iter()
                        .map(|&(id, end, contact, caught)| VoterView {
                            id,
                            log_end: known(end).map(|e| e as u64),
                            last_contact_ms: known(contact),
                            last_caught_up_ms: known(caught),
                        })
                        .collect(),
                };
            }
        }
        let progress = n.voter_progress();
        let me = node_id(n.id());
        let leader = n.leader();
        let leading = n.is_leader();
        let now = wall_clock_ms();
        let contact = self.contact.borrow();
        let contact = (contact.term == n.term()).then_some(&contact.seen);
        QuorumView {
            leader: n.leader().map(node_id),
            term: n.term(),
            commit_index: n.commit_index(),
            last_index: n.last_index(),
            voters: n
                .voters()
                .iter()
                .map(|&v| {
                    let id = node_id(v);
                    let matched = progress.iter().find(|(p, _)| *p == v).map(|(_, m)| *m);
                    // Off the leader: our own log end, and for the leader
                    // the commit index it has at least; others unknown.
                    let known = if id == me {
                        Some(n.last_index())
                    } else if Some(v) == leader {
                        Some(n.commit_index())
                    } else {
                        None
                    };
                    let (last_contact_ms, last_caught_up_ms) = if leading && id == me {
                        (Some(now), Some(now))
                    } else if leading {
                        contact.and_then(|c| c.get(&v)).map_or((None, None), |&(f, c)| (Some(f), c))
                    } else {
                        (None, None)
                    };
                    VoterView { id, log_end: matched.or(known), last_contact_ms, last_caught_up_ms }
                })
                .collect(),
        }
    }

    /// The active controller's status, received over the cluster link.
    pub fn status(&self, from: i32, term: u64, commit_index: u64, voters: Vec<wire::VoterStatus>) {
        if !self.is_voter(from) || voters.iter().any(|v| !self.is_voter(v.0)) {
            return;
        }
        *self.leader_status.borrow_mut() =
            Some((std::time::Instant::now(), LeaderStatus { from, term, commit_index, voters }));
    }

    /// As the active controller: tells the other voters how the quorum
    /// stands (see `status`).
    fn broadcast_status(&self, shard: &Shard) {
        let view = self.view();
        let me = shard.config.broker.node_id;
        if view.leader != Some(me) {
            return;
        }
        let opt = |v: Option<i64>| v.unwrap_or(-1);
        let voters: Vec<wire::VoterStatus> = view
            .voters
            .iter()
            .map(|v| (v.id, opt(v.log_end.map(|e| e as i64)), opt(v.last_contact_ms), opt(v.last_caught_up_ms)))
            .collect();
        let frame = wire::encode_status(me, view.term, view.commit_index, &voters);
        if let Some(links) = self.links.borrow().as_ref() {
            for v in voters.iter().filter(|v| v.0 != me) {
                links.send_frame(v.0, frame.clone());
            }
        }
    }

    pub fn is_voter(&self, node: i32) -> bool {
        self.node.borrow().voters().contains(&raft_id(node))
    }

    /// A message from a peer voter.
    pub async fn receive(&self, msg: ringbroker_controller::quorum::RaftMessage, shard: &Rc<Shard>) {
        let (from, term) = (msg.from, msg.term);
        // Only a current-term answer to the leader's appends or heartbeats
        // is contact (a deposed leader's stale messages are not).
        let answer = matches!(msg.get_msg_type(), MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse);
        {
            let mut n = self.node.borrow_mut();
            n.step(msg);
            if answer && n.is_leader() && term == n.term() {
                self.note_contact(&n, from);
            }
        }
        self.pump(shard).await;
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.node.borrow().image().clone()
    }

    /// The active controller's node id, if known.
    pub fn leader(&self) -> Option<i32> {
        self.node.borrow().leader().map(node_id)
    }

    /// Proposes a change and waits until it is committed, applied and
    /// installed on every shard of this broker.
    pub async fn propose(&self, shard: &Rc<Shard>, change: MetadataChange) -> ChangeResult {
        // Refuse early what cannot apply to the latest image we know; the
        // state machine checks again when the record applies.
        apply_change(&self.image(), &change)?;
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.node.borrow_mut().propose(&change, seq).map_err(|ProposeError::NotLeader { leader }| {
            (
                ResponseError::NotController,
                format!("no active controller is known yet (leader: {:?}); retry", leader.map(node_id)),
            )
        })?;
        let (tx, rx) = oneshot::channel();
        let term = self.node.borrow().term();
        self.waiters.borrow_mut().insert(seq, (term, tx));
        self.pump(shard).await;
        let timer = glommio::timer::sleep(PROPOSAL_TIMEOUT);
        futures::pin_mut!(timer);
        let applied = futures::future::select(rx, timer).await;
        self.waiters.borrow_mut().remove(&seq);
        match applied {
            futures::future::Either::Left((Ok(Ok(a)), _)) => a.result.map(|()| a.image),
            // Kafka's answer when the controller moves under a request:
            // clients refresh metadata and retry.
            futures::future::Either::Left((Ok(Err(LostProposal)), _)) => Err((
                ResponseError::NotController,
                "the active controller changed while the change was in flight; it may or may not have been applied"
                    .into(),
            )),
            _ => Err((
                ResponseError::RequestTimedOut,
                format!("the metadata change was not committed within {PROPOSAL_TIMEOUT:?}"),
            )),
        }
    }

    /// Runs the node's pending work and carries out its effects.
    pub async fn pump(&self, shard: &Rc<Shard>) {
        let _turn = self.pump_lock.acquire_permit(1).await.expect("never closed");
        loop {
            let out = match self.node.borrow_mut().poll() {
                Ok(out) => out,
                Err(e) => {
                    // The quorum's log could not be written: this node can
                    // no longer keep its promises to its peers.
                    tracing::error!(error = %e, "metadata quorum storage failed; stopping the broker");
                    shard.shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
            };
            if out.applied.is_empty() && !out.image_changed && out.messages.is_empty() {
                self.fail_stale_proposals();
                self.publish(shard);
                return;
            }
            if !out.messages.is_empty() {
                match self.links.borrow().as_ref() {
                    Some(links) => links.send(out.messages),
                    None => {
                        tracing::debug!(n = out.messages.len(), "quorum messages before the links are up; raft resends")
                    }
                }
            }
            if out.image_changed {
                let img = self.image();
                for s in 0..shard.shard_count() {
                    shard.router.request(shard, ShardId(s), Request::InstallMetadata(img.clone())).await;
                }
            }
            for a in out.applied {
                if let Some(seq) = a.proposal {
                    if let Some((_, tx)) = self.waiters.borrow_mut().remove(&seq) {
                        let _ = tx.send(Ok(a));
                    }
                }
            }
        }
    }

    /// Waits until a controller is elected and this broker has applied the
    /// cluster's name: its image is then the cluster's, not an empty one.
    pub async fn wait_until_ready(&self, shard: &Rc<Shard>) {
        let started = std::time::Instant::now();
        let mut logged = 0;
        while !shard.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            let ready = {
                let n = self.node.borrow();
                n.leader().is_some() && !n.image().cluster_id.is_empty()
            };
            if ready {
                return;
            }
            let waited = started.elapsed().as_secs();
            if waited >= logged + 5 {
                logged = waited;
                tracing::info!(waited_s = waited, "waiting for the metadata quorum to elect a controller");
            }
            glommio::timer::sleep(TICK).await;
        }
    }

    /// Exposes the quorum's state in the metrics.
    fn publish(&self, shard: &Shard) {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.node.borrow();
        let m = &shard.metrics.quorum;
        m.leader.store(n.leader().map_or(-1, |l| node_id(l) as i64), Relaxed);
        m.term.store(n.term(), Relaxed);
        m.commit_index.store(n.commit_index(), Relaxed);
        m.applied_index.store(n.applied_index(), Relaxed);
    }

    /// A new term: proposals from before it went to a controller that is
    /// gone (or was deposed) and may never commit. They are answered now
    /// rather than at the timeout, so clients retry with the new controller.
    /// (Records applied in this pump were answered first.)
    fn fail_stale_proposals(&self) {
        let term = self.node.borrow().term();
        let lost: Vec<u64> =
            self.waiters.borrow().iter().filter(|(_, (t, _))| *t < term).map(|(seq, _)| *seq).collect();
        for seq in lost {
            if let Some((_, tx)) = self.waiters.borrow_mut().remove(&seq) {
                let _ = tx.send(Err(LostProposal));
            }
        }
    }

    /// The node's clock. Runs on the controller shard until shutdown.
    pub async fn ticker(self: Rc<Self>, shard: Rc<Shard>) {
        let heartbeat_every = (HEARTBEAT_INTERVAL_MS / TICK.as_millis() as u64).max(1);
        let mut ticks = 0u64;
        while !shard.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            glommio::timer::sleep(TICK).await;
            self.node.borrow_mut().tick();
            self.pump(&shard).await;
            ticks += 1;
            self.track_leadership();
            if ticks.is_multiple_of(heartbeat_every) {
                self.heartbeat_or_register(&shard);
                if self.node.borrow().is_leader() {
                    self.broadcast_status(&shard);
                }
            }
            self.fence_the_silent(&shard);
        }
    }

    /// As the leader: `from` was just heard from; caught up when its log
    /// matches ours to the end.
    fn note_contact(&self, n: &Quorum<FsDisk>, from: u64) {
        let mut c = self.contact.borrow_mut();
        if c.term != n.term() {
            *c = VoterContact { term: n.term(), seen: HashMap::new() };
        }
        let now = wall_clock_ms();
        let caught_up = n.voter_progress().iter().any(|&(id, m)| id == from && m >= n.last_index());
        let entry = c.seen.entry(from).or_insert((now, None));
        entry.0 = now;
        if caught_up {
            entry.1 = Some(now);
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn track_leadership(&self) {
        let leader = self.node.borrow().is_leader();
        if leader != self.was_leader.get() {
            self.was_leader.set(leader);
            if leader {
                self.liveness.borrow_mut().became_leader(self.now_ms());
            } else {
                self.liveness.borrow_mut().lost_leadership();
                self.fencing.borrow_mut().clear();
            }
        }
    }

    /// A broker's heartbeat reached this node.
    pub fn heartbeat(&self, from: i32, epoch: i64) {
        if self.node.borrow().is_leader() {
            self.liveness.borrow_mut().heartbeat(from, epoch, self.now_ms());
        }
    }

    /// This broker's registration as the image shows it: Some(epoch) when
    /// registered in this incarnation and not fenced.
    pub fn registered_epoch(&self, node: i32) -> Option<i64> {
        let n = self.node.borrow();
        n.image().brokers.get(&node).filter(|b| !b.fenced && b.incarnation == self.incarnation).map(|b| b.epoch)
    }

    /// Every heartbeat interval: tell the active controller this broker is
    /// alive, or register (again) if the image shows it fenced or unknown.
    fn heartbeat_or_register(self: &Rc<Self>, shard: &Rc<Shard>) {
        let me = shard.config.broker.node_id;
        let leader = self.leader();
        match (self.registered_epoch(me), leader) {
            (Some(epoch), Some(l)) if l == me => self.heartbeat(me, epoch),
            (Some(epoch), Some(l)) => {
                let frame = ringbroker_controller::quorum::wire::encode_heartbeat(me, epoch, self.now_ms() as i64);
                if let Some(links) = self.links.borrow().as_ref() {
                    links.send_frame(l, frame);
                }
            }
            (None, Some(_)) if !self.registering.get() => {
                let (d, s) = (self.clone(), shard.clone());
                glommio::spawn_local(async move { d.register(&s).await }).detach();
            }
            _ => {}
        }
    }

    /// Registers this broker (its client and cluster addresses) and waits
    /// until the registration is applied; retries while no controller is
    /// elected.
    pub async fn register(&self, shard: &Rc<Shard>) {
        if self.registering.replace(true) {
            return;
        }
        let cfg = &shard.config;
        let (cluster_host, cluster_port) =
            cfg.cluster_listen.map(|a| (a.ip().to_string(), a.port() as i32)).unwrap_or_default();
        let change = MetadataChange::RegisterBroker {
            id: cfg.broker.node_id,
            incarnation: self.incarnation,
            host: cfg.advertised_host.clone(),
            port: cfg.advertised_port,
            cluster_host,
            cluster_port,
            shards: shard.shard_count() as u16,
        };
        let mut attempt = 0u32;
        while !shard.shutdown.load(std::sync::atomic::Ordering::Relaxed) {
            match self.propose(shard, change.clone()).await {
                Ok(img) => {
                    let epoch = img.brokers.get(&cfg.broker.node_id).map(|b| b.epoch);
                    tracing::info!(node_id = cfg.broker.node_id, broker_epoch = ?epoch, "registered with the controller");
                    break;
                }
                Err((e, msg)) => {
                    attempt += 1;
                    if attempt % 25 == 1 {
                        tracing::info!(error = ?e, msg, "registering with the controller; retrying");
                    }
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.registering.set(false);
    }

    /// As the active controller, caught up: fence brokers silent for the
    /// session timeout (each fence once; a failed one is retried next tick).
    fn fence_the_silent(self: &Rc<Self>, shard: &Rc<Shard>) {
        if !self.node.borrow().is_caught_up_leader() {
            return;
        }
        let img = self.image();
        let timeout = shard.config.broker.broker_session_timeout_ms;
        let me = shard.config.broker.node_id;
        let due = self.liveness.borrow_mut().expired(&img, me, self.now_ms(), timeout);
        self.fencing.borrow_mut().retain(|f| due.contains(f));
        for (id, epoch) in due {
            if self.fencing.borrow().contains(&(id, epoch)) {
                continue;
            }
            self.fencing.borrow_mut().push((id, epoch));
            tracing::warn!(
                broker = id,
                broker_epoch = epoch,
                timeout_ms = timeout,
                "no heartbeat from broker; fencing it"
            );
            let (d, s) = (self.clone(), shard.clone());
            glommio::spawn_local(async move {
                if let Err((e, msg)) = d.propose(&s, MetadataChange::FenceBroker { id, epoch }).await {
                    tracing::info!(broker = id, error = ?e, msg, "fencing did not apply");
                    d.fencing.borrow_mut().retain(|f| *f != (id, epoch));
                }
            })
            .detach();
        }
    }
}

/// Milliseconds since the Unix epoch (what DescribeQuorum's timestamps are).
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn topic(name: &str) -> MetadataChange {
        MetadataChange::CreateTopic {
            name: name.into(),
            id: crate::metadata::random_topic_id(),
            partitions: 3,
            replication_factor: 1,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    #[test]
    fn a_single_node_store_migrates_into_the_quorum_once() {
        let d = tempfile::tempdir().unwrap();
        let mut legacy = MetadataStore::open(d.path()).unwrap();
        legacy.apply(&topic("kept")).unwrap();
        legacy.apply(&MetadataChange::AllocateProducerIds { count: 1000 }).unwrap();
        let old = legacy.image();
        drop(legacy);

        let q = open(d.path(), 0, &[0]).unwrap();
        assert_eq!(q.image().cluster_id, old.cluster_id, "the cluster keeps its id");
        assert_eq!(q.image().topics.keys().collect::<Vec<_>>(), old.topics.keys().collect::<Vec<_>>());
        let kept = q.image().topic("kept").unwrap().clone();
        assert_eq!(kept.id, old.topic("kept").unwrap().id);
        assert!(kept.assignments.iter().all(|p| p.replicas == [0] && p.leader == 0), "on the node itself");
        assert!(q.image().brokers.is_empty(), "the stand-in broker is gone; the node registers at start");
        assert_eq!(q.image().next_producer_id, 1000);
        assert!(q.is_leader());
        drop(q);
        let meta = d.path().join("meta");
        assert!(!meta.join("metadata.json").exists() && meta.join("metadata.json.migrated").exists());
        // The second start reads the quorum, not the old files.
        let q = open(d.path(), 0, &[0]).unwrap();
        assert_eq!(q.image().topic("kept").unwrap(), &kept);
    }

    #[test]
    fn a_new_node_names_its_cluster_and_keeps_the_name() {
        let d = tempfile::tempdir().unwrap();
        let q = open(d.path(), 5, &[5]).unwrap();
        let id = q.image().cluster_id.clone();
        assert_eq!(id.len(), 22);
        drop(q);
        assert_eq!(open(d.path(), 5, &[5]).unwrap().image().cluster_id, id);
    }
}
