//! Deterministic simulation of the metadata quorum and broker registration:
//! the real raft-rs node, the real controller state machine (`Quorum`) and
//! the real broker liveness tracking (`Liveness`), under virtual time,
//! with a message bus that drops, delays, reorders and partitions, and
//! nodes that crash (their disks losing unsynced bytes and tearing the last
//! write) and restart.
//!
//! Each seed is one run; the same seed replays the same run exactly (a
//! test checks this by running seeds twice and comparing traces).
//!
//! - `RINGBROKER_SIM_SEEDS=N`: how many seeds (default 1000).
//! - `RINGBROKER_SIM_FIRST_SEED=S`: the first seed (default 0).
//! - `RINGBROKER_SIM_SEED=S`: replay one seed, with its event log printed.
//!
//! Invariants, checked as the run goes and at its end:
//! 1. at most one leader per term;
//! 2. every node's image is identical at the same applied index (hashes),
//!    and every node applies the same record at the same index;
//! 3. no committed record is lost: every record whose proposer saw it
//!    applied is, at the end, applied by every node, after crashes;
//! 4. liveness: once the network heals and every node is up, a leader is
//!    elected, a new change commits, all nodes converge, and every broker is
//!    registered and unfenced in its current incarnation;
//! 5. brokers: a broker that stops heartbeating (crashed, or cut off from
//!    the controller) is fenced by the controller and registers again when
//!    it comes back; its epoch only grows.
//!
//! Every node is also a broker (broker id = node id) that registers once it
//! knows a leader, heartbeats the leader every 500 ms (10 ticks of 50 ms),
//! and re-registers when its image shows it fenced or from another life.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ringbroker_controller::liveness::Liveness;
use ringbroker_controller::quorum::disk::SimDisk;
use ringbroker_controller::quorum::{image_bytes, Quorum, QuorumConfig, RaftMessage, SeededRng};
use ringbroker_controller::{assign_replicas, records, MetadataChange};
use ringbroker_engine::ids::TopicId;

/// Seeds that once failed stay here, run on every test run.
const REGRESSION_SEEDS: &[u64] = &[];

#[derive(Clone, Debug)]
struct Params {
    nodes: usize,
    ticks: u64,
    drop_per_mille: u64,
    max_delay: u64,
    crash_per_mille: u64,
    partition_per_mille: u64,
    propose_per_mille: u64,
    snapshot_every: u64,
}

/// Messages in flight: (deliver at, sequence, to, bytes). Bytes starting
/// with 0xFF are a heartbeat (from, epoch); anything else a raft message.
type InFlight = Reverse<(u64, u64, usize, Vec<u8>)>;

const TICK_MS: u64 = 50;
const HEARTBEAT_EVERY: u64 = 10;
const SESSION_TIMEOUT_MS: u64 = 9_000;

/// A node's broker side.
#[derive(Default)]
struct BrokerSide {
    incarnation: [u8; 16],
    liveness: Liveness,
    was_leader: bool,
    /// Fences proposed and not yet applied: (id, epoch).
    fencing: Vec<(i32, i64)>,
    /// Tick of the last registration proposal (retried every second).
    registered_at: Option<u64>,
}

struct Sim {
    seed: u64,
    rng: SeededRng,
    p: Params,
    now: u64,
    nodes: Vec<Option<Quorum<SimDisk>>>,
    brokers: Vec<BrokerSide>,
    /// Latest broker epoch each node's image showed: (node, broker) -> epoch.
    max_epoch: BTreeMap<(usize, i32), i64>,
    fences: u64,
    /// Disks of crashed nodes, and when they come back.
    down: BTreeMap<usize, (SimDisk, u64)>,
    /// Messages in flight: (deliver at, sequence, to, bytes).
    bus: BinaryHeap<InFlight>,
    bus_seq: u64,
    /// Partition group of each node (messages flow only within a group).
    group: Vec<u8>,
    heal_at: u64,
    next_seq: u64,
    /// Proposals in flight: (node, seq) -> record bytes.
    pending: BTreeMap<(usize, u64), Vec<u8>>,
    leader_of_term: BTreeMap<u64, u64>,
    image_at: BTreeMap<u64, u64>,
    record_at: BTreeMap<u64, u64>,
    acked: BTreeMap<u64, u64>,
    trace: Vec<String>,
    verbose: bool,
}

fn hash(b: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(b)
}

/// Messages cross the simulated network as bytes, as they do between brokers.
fn encode_msg(m: &RaftMessage) -> Vec<u8> {
    use protobuf::Message;
    m.write_to_bytes().expect("encodes")
}
fn decode_msg(b: &[u8]) -> RaftMessage {
    use protobuf::Message;
    RaftMessage::parse_from_bytes(b).expect("decodes")
}

impl Sim {
    fn new(seed: u64, verbose: bool) -> Sim {
        let mut rng = SeededRng::new(seed ^ 0x5eed_5eed);
        let nodes = [1, 3, 3, 3, 3, 5][rng.range(0, 6) as usize];
        let p = Params {
            nodes,
            ticks: 1500,
            drop_per_mille: rng.range(0, 200),
            max_delay: rng.range(1, 12),
            crash_per_mille: rng.range(0, 8),
            partition_per_mille: rng.range(0, 6),
            propose_per_mille: rng.range(50, 400),
            snapshot_every: [5, 20, 1024][rng.range(0, 3) as usize],
        };
        let mut sim = Sim {
            seed,
            rng,
            now: 0,
            nodes: Vec::new(),
            brokers: Vec::new(),
            max_epoch: BTreeMap::new(),
            fences: 0,
            down: BTreeMap::new(),
            bus: BinaryHeap::new(),
            bus_seq: 0,
            group: vec![0; nodes],
            heal_at: 0,
            next_seq: 0,
            pending: BTreeMap::new(),
            leader_of_term: BTreeMap::new(),
            image_at: BTreeMap::new(),
            record_at: BTreeMap::new(),
            acked: BTreeMap::new(),
            trace: Vec::new(),
            verbose,
            p,
        };
        for i in 0..nodes {
            let q = sim.open(i, SimDisk::default());
            sim.nodes.push(Some(q));
            let incarnation = sim.incarnation();
            sim.brokers.push(BrokerSide { incarnation, ..Default::default() });
        }
        sim.log(format!("params {:?}", sim.p));
        sim
    }

    fn open(&mut self, i: usize, disk: SimDisk) -> Quorum<SimDisk> {
        let voters = (1..=self.p.nodes as u64).collect();
        let mut cfg = QuorumConfig::broker(i as u64 + 1, voters, self.rng.next_u64());
        cfg.snapshot_every = self.p.snapshot_every;
        match Quorum::open(cfg, disk, None) {
            Ok(q) => q,
            Err(e) => self.fail(&format!("node {} cannot reopen from its disk: {e}", i + 1)),
        }
    }

    fn incarnation(&mut self) -> [u8; 16] {
        let mut inc = [0u8; 16];
        inc[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        inc[8..].copy_from_slice(&(self.rng.next_u64() | 1).to_be_bytes());
        inc
    }

    fn log(&mut self, s: String) {
        if self.verbose {
            eprintln!("[{:>5}] {s}", self.now);
        }
        self.trace.push(format!("{} {s}", self.now));
    }

    fn fail(&self, what: &str) -> ! {
        let state: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, q)| match q {
                None => format!("node {} down", i + 1),
                Some(q) => format!(
                    "node {} term {} {:?} leader {:?} applied {} commit {} last {} brokers {:?}",
                    i + 1,
                    q.term(),
                    q.role(),
                    q.leader(),
                    q.applied_index(),
                    q.commit_index(),
                    q.last_index(),
                    q.image().brokers.values().map(|b| (b.id, b.epoch, b.fenced, b.incarnation[0])).collect::<Vec<_>>()
                ),
            })
            .collect();
        panic!(
            "seed {} failed at tick {}: {what}\n{}\nreplay: RINGBROKER_SIM_SEED={} cargo test -p ringbroker-controller --test quorum_sim -- --nocapture",
            self.seed,
            self.now,
            state.join("\n"),
            self.seed
        );
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.rng.range(0, 1000) < per_mille
    }

    /// A change as a client would ask it of broker `i`, placed on the
    /// brokers that broker's image shows live.
    fn random_change(&mut self, i: usize) -> Option<MetadataChange> {
        let name = format!("t{}", self.rng.range(0, 12));
        let img = self.nodes[i].as_ref()?.image().clone();
        let live: Vec<i32> = img.live_brokers().map(|b| b.id).collect();
        let (start, shift) = (self.rng.range(0, 64) as usize, self.rng.range(0, 64) as usize);
        let rf = self.rng.range(1, 4) as i16;
        Some(match self.rng.range(0, 5) {
            0 | 1 => {
                let partitions = self.rng.range(1, 8) as i32;
                let assignments = assign_replicas(&live, 0, partitions, rf, start, shift).ok()?;
                MetadataChange::CreateTopic {
                    name,
                    id: TopicId(self.incarnation()),
                    partitions,
                    replication_factor: rf,
                    configs: BTreeMap::new(),
                    assignments,
                }
            }
            2 => MetadataChange::DeleteTopic { name },
            3 => {
                let t = img.topic(&name)?;
                let total = t.partitions + self.rng.range(1, 4) as i32;
                let assignments =
                    assign_replicas(&live, t.partitions, total - t.partitions, t.replication_factor, start, shift)
                        .ok()?;
                MetadataChange::CreatePartitions { name, total, assignments }
            }
            _ => MetadataChange::AllocateProducerIds { count: 1000 },
        })
    }

    /// The broker side of node `i`: register when unknown, fenced or from
    /// another life; heartbeat the leader; as leader, fence the silent.
    fn broker_duties(&mut self, i: usize) {
        let Some(q) = self.nodes[i].as_ref() else { return };
        let id = i as i32 + 1;
        let now_ms = self.now * TICK_MS;
        let (leader, is_leader, caught_up) = (q.leader(), q.is_leader(), q.is_caught_up_leader());
        let me = q.image().brokers.get(&id).cloned();
        let b = &mut self.brokers[i];
        if is_leader && !b.was_leader {
            b.liveness.became_leader(now_ms);
        } else if !is_leader && b.was_leader {
            b.liveness.lost_leadership();
            b.fencing.clear();
        }
        b.was_leader = is_leader;
        let registered = me.as_ref().is_some_and(|m| !m.fenced && m.incarnation == b.incarnation);
        let retry_due = b.registered_at.is_none_or(|t| self.now >= t + 20);
        if !registered && leader.is_some() && retry_due && self.now.is_multiple_of(HEARTBEAT_EVERY) {
            b.registered_at = Some(self.now);
            let change = MetadataChange::RegisterBroker {
                id,
                incarnation: b.incarnation,
                host: format!("broker-{id}"),
                port: 9092,
                cluster_host: format!("broker-{id}"),
                cluster_port: 9093,
                shards: 1,
            };
            self.propose(i, change);
        }
        if let (true, Some(me), Some(l)) = (registered, me, leader) {
            if self.now.is_multiple_of(HEARTBEAT_EVERY) {
                let mut bytes = vec![0xFF];
                bytes.extend_from_slice(&id.to_be_bytes());
                bytes.extend_from_slice(&me.epoch.to_be_bytes());
                self.send(i, l as usize - 1, bytes);
            }
        }
        if caught_up {
            let img = self.nodes[i].as_ref().unwrap().image().clone();
            let due = self.brokers[i].liveness.expired(&img, id, now_ms, SESSION_TIMEOUT_MS);
            self.brokers[i].fencing.retain(|f| due.contains(f));
            for (bid, epoch) in due {
                if self.brokers[i].fencing.contains(&(bid, epoch)) {
                    continue;
                }
                self.brokers[i].fencing.push((bid, epoch));
                self.fences += 1;
                self.propose(i, MetadataChange::FenceBroker { id: bid, epoch });
            }
        }
    }

    /// Puts bytes on the bus from node `from` to node `to`, unless the
    /// network drops them.
    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if self.group[from] != self.group[to] || self.chance(self.p.drop_per_mille) {
            return;
        }
        let at = self.now + self.rng.range(1, self.p.max_delay + 1);
        self.bus_seq += 1;
        self.bus.push(Reverse((at, self.bus_seq, to, bytes)));
    }

    fn step_tick(&mut self, chaos: bool) {
        self.now += 1;
        if chaos {
            self.chaos();
        }
        let due: Vec<usize> = self.down.iter().filter(|(_, (_, at))| *at <= self.now).map(|(i, _)| *i).collect();
        for i in due {
            let (disk, _) = self.down.remove(&i).unwrap();
            self.log(format!("restart {}", i + 1));
            let q = self.open(i, disk);
            self.nodes[i] = Some(q);
            let incarnation = self.incarnation();
            self.brokers[i] = BrokerSide { incarnation, ..Default::default() };
        }
        if self.heal_at != 0 && self.now >= self.heal_at {
            self.heal_at = 0;
            self.group = vec![0; self.p.nodes];
            self.log("heal".into());
        }
        for q in self.nodes.iter_mut().flatten() {
            q.tick();
        }
        while self.bus.peek().is_some_and(|Reverse((at, ..))| *at <= self.now) {
            let Reverse((_, _, to, bytes)) = self.bus.pop().unwrap();
            let Some(q) = self.nodes[to].as_mut() else { continue };
            if bytes[0] == 0xFF {
                let from = i32::from_be_bytes(bytes[1..5].try_into().unwrap());
                let epoch = i64::from_be_bytes(bytes[5..13].try_into().unwrap());
                if q.is_leader() {
                    self.brokers[to].liveness.heartbeat(from, epoch, self.now * TICK_MS);
                }
            } else {
                q.step(decode_msg(&bytes));
            }
        }
        if chaos && self.chance(self.p.propose_per_mille) {
            let i = self.rng.range(0, self.p.nodes as u64) as usize;
            if let Some(change) = self.random_change(i) {
                self.propose(i, change);
            }
        }
        for i in 0..self.p.nodes {
            self.broker_duties(i);
        }
        self.poll_all();
    }

    fn propose(&mut self, i: usize, change: MetadataChange) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        let Some(q) = self.nodes[i].as_mut() else { return false };
        if q.propose(&change, seq).is_err() {
            return false;
        }
        self.pending.insert((i, seq), records::encode(&change));
        self.log(format!("propose {} #{seq} {change:?}", i + 1));
        true
    }

    fn chaos(&mut self) {
        // A crash, keeping a majority able to come back (at most a minority down).
        let max_down = (self.p.nodes - 1) / 2;
        if max_down > 0 && self.down.len() < max_down && self.chance(self.p.crash_per_mille) {
            let i = self.rng.range(0, self.p.nodes as u64) as usize;
            if let Some(q) = self.nodes[i].take() {
                let mut disk = q.into_disk();
                let (a, b) = (self.rng.next_u64(), self.rng.next_u64());
                disk.crash(|n| ((a % (n as u64 + 1)) as usize, b % 3 == 0));
                let back = self.now + self.rng.range(1, 200);
                self.log(format!("crash {} (back at {back})", i + 1));
                self.pending.retain(|(n, _), _| *n != i);
                self.down.insert(i, (disk, back));
            }
        }
        if self.p.nodes > 1 && self.heal_at == 0 && self.chance(self.p.partition_per_mille) {
            let group: Vec<u8> = (0..self.p.nodes).map(|_| self.rng.range(0, 2) as u8).collect();
            self.heal_at = self.now + self.rng.range(20, 300);
            self.log(format!("partition {group:?} until {}", self.heal_at));
            self.group = group;
        }
    }

    fn poll_all(&mut self) {
        for i in 0..self.p.nodes {
            let Some(q) = self.nodes[i].as_mut() else { continue };
            let out = match q.poll() {
                Ok(o) => o,
                Err(e) => self.fail(&format!("node {} poll: {e}", i + 1)),
            };
            let (term, leader, applied) = (q.term(), q.is_leader(), q.applied_index());
            if leader {
                let id = i as u64 + 1;
                if let Some(other) = self.leader_of_term.insert(term, id) {
                    if other != id {
                        self.fail(&format!("two leaders in term {term}: {other} and {id}"));
                    }
                }
            }
            for a in &out.applied {
                let rec = hash(&a.change.as_ref().map(records::encode).unwrap_or_default());
                if let Some(prev) = self.record_at.insert(a.index, rec) {
                    if prev != rec {
                        self.fail(&format!("node {} applied a different record at index {}", i + 1, a.index));
                    }
                }
                if let Some(seq) = a.proposal {
                    if let Some(bytes) = self.pending.remove(&(i, seq)) {
                        if hash(&bytes) != rec {
                            self.fail(&format!("proposal #{seq} answered by another record at {}", a.index));
                        }
                        self.acked.insert(a.index, rec);
                    }
                }
            }
            // Broker epochs only grow, on every node's image.
            for b in q.image().brokers.values() {
                let max = self.max_epoch.entry((i, b.id)).or_insert(b.epoch);
                if b.epoch < *max {
                    let (id, epoch, seen) = (b.id, b.epoch, *max);
                    self.fail(&format!("node {} went back from epoch {seen} to {epoch} for broker {id}", i + 1));
                }
                *max = b.epoch;
            }
            if !out.applied.is_empty() || out.image_changed {
                let img_hash = hash(&image_bytes(q.image()));
                if let Some(prev) = self.image_at.insert(applied, img_hash) {
                    if prev != img_hash {
                        self.fail(&format!("node {} has a different image at index {applied}", i + 1));
                    }
                }
            }
            for m in out.messages {
                self.send(i, m.to as usize - 1, encode_msg(&m));
            }
        }
    }

    fn run(mut self) -> Vec<String> {
        for _ in 0..self.p.ticks {
            self.step_tick(true);
        }
        // Heal: everyone up, one network, no loss.
        self.log("end of chaos".into());
        self.group = vec![0; self.p.nodes];
        self.heal_at = 0;
        let now = self.now;
        for (_, at) in self.down.values_mut() {
            *at = now;
        }
        self.p.drop_per_mille = 0;
        // Room for an election, catching up, and a fenced broker's return.
        let deadline = self.now + 800;
        let mut final_seq = None;
        let mut final_term: Option<(usize, u64, u64)> = None;
        loop {
            self.step_tick(false);
            // A proposal made by a leader that was deposed before committing
            // it is lost (as Raft allows); the broker answers NOT_CONTROLLER
            // and the client retries, and so does this loop.
            if let Some((i, seq, term)) = final_term {
                let deposed = self.nodes[i].as_ref().is_none_or(|q| q.term() != term);
                if deposed && self.pending.contains_key(&(i, seq)) {
                    self.log(format!("final proposal #{seq} lost with term {term}; retrying"));
                    final_seq = None;
                    final_term = None;
                }
            }
            if final_seq.is_none() {
                let leader =
                    (0..self.p.nodes).find(|&i| self.nodes[i].as_ref().is_some_and(|q| q.is_caught_up_leader()));
                if let Some(i) = leader {
                    let seq = self.next_seq;
                    if self.propose(i, MetadataChange::AllocateProducerIds { count: 1 }) {
                        final_seq = Some((i, seq));
                        final_term = Some((i, seq, self.nodes[i].as_ref().unwrap().term()));
                    }
                }
            }
            let converged = self.nodes.iter().all(|q| q.is_some()) && {
                let idx: Vec<u64> = self.nodes.iter().flatten().map(|q| q.applied_index()).collect();
                idx.iter().all(|&x| x == idx[0])
            };
            let all_registered = self.nodes.iter().enumerate().all(|(i, q)| {
                q.as_ref().is_some_and(|q| {
                    q.image()
                        .brokers
                        .get(&(i as i32 + 1))
                        .is_some_and(|b| !b.fenced && b.incarnation == self.brokers[i].incarnation)
                })
            });
            let converged = converged && all_registered;
            if final_seq.is_some_and(|k| !self.pending.contains_key(&k)) && converged {
                break;
            }
            if self.now > deadline {
                let inc: Vec<u8> = self.brokers.iter().map(|b| b.incarnation[0]).collect();
                let pending = final_seq.map(|k| self.pending.contains_key(&k));
                self.fail(&format!("no convergence within 800 ticks of healing (liveness): incarnations {inc:?}, final proposal pending {pending:?}"));
            }
        }
        let images: Vec<u64> = self.nodes.iter().flatten().map(|q| hash(&image_bytes(q.image()))).collect();
        if images.iter().any(|&h| h != images[0]) {
            self.fail("images differ after convergence");
        }
        let applied = self.nodes[0].as_ref().unwrap().applied_index();
        if let Some((&last_acked, _)) = self.acked.last_key_value() {
            if applied < last_acked {
                self.fail(&format!("acknowledged index {last_acked} is beyond every node's log ({applied})"));
            }
        }
        if self.nodes[0].as_ref().unwrap().image().cluster_id.is_empty() {
            self.fail("the cluster was never named");
        }
        let n = self.acked.len();
        let fences = self.fences;
        self.log(format!("done: {n} acknowledged records, applied {applied}, {fences} fences proposed"));
        self.trace
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn quorum_survives_seeded_chaos() {
    if let Some(seed) = env_u64("RINGBROKER_SIM_SEED") {
        Sim::new(seed, true).run();
        return;
    }
    let first = env_u64("RINGBROKER_SIM_FIRST_SEED").unwrap_or(0);
    let count = env_u64("RINGBROKER_SIM_SEEDS").unwrap_or(1000);
    for &seed in REGRESSION_SEEDS {
        Sim::new(seed, false).run();
    }
    for seed in first..first + count {
        Sim::new(seed, false).run();
    }
}

#[test]
fn a_seed_replays_exactly() {
    for seed in [3, 17, 99] {
        let a = Sim::new(seed, false).run();
        let b = Sim::new(seed, false).run();
        assert_eq!(a, b, "seed {seed} took a different path on its second run");
    }
}
