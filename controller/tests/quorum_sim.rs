//! Deterministic simulation of the metadata quorum: the real raft-rs node
//! and the real controller state machine (`Quorum`), under virtual time,
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
//!    elected, a new change commits, and all nodes converge.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ringbroker_controller::quorum::disk::SimDisk;
use ringbroker_controller::quorum::{image_bytes, Quorum, QuorumConfig, RaftMessage, SeededRng};
use ringbroker_controller::{records, MetadataChange};
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

type InFlight = Reverse<(u64, u64, usize, Vec<u8>)>;

struct Sim {
    seed: u64,
    rng: SeededRng,
    p: Params,
    now: u64,
    nodes: Vec<Option<Quorum<SimDisk>>>,
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
                    "node {} term {} {:?} leader {:?} applied {} commit {} last {}",
                    i + 1,
                    q.term(),
                    q.role(),
                    q.leader(),
                    q.applied_index(),
                    q.commit_index(),
                    q.last_index()
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

    fn random_change(&mut self) -> MetadataChange {
        let name = format!("t{}", self.rng.range(0, 12));
        match self.rng.range(0, 5) {
            0 | 1 => {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
                id[8..].copy_from_slice(&(self.rng.next_u64() | 1).to_be_bytes());
                MetadataChange::CreateTopic {
                    name,
                    id: TopicId(id),
                    partitions: self.rng.range(1, 8) as i32,
                    replication_factor: 1,
                    configs: BTreeMap::new(),
                }
            }
            2 => MetadataChange::DeleteTopic { name },
            3 => MetadataChange::CreatePartitions { name, total: self.rng.range(2, 20) as i32 },
            _ => MetadataChange::AllocateProducerIds { count: 1000 },
        }
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
            if let Some(q) = self.nodes[to].as_mut() {
                q.step(decode_msg(&bytes));
            }
        }
        if chaos && self.chance(self.p.propose_per_mille) {
            let i = self.rng.range(0, self.p.nodes as u64) as usize;
            let change = self.random_change();
            self.propose(i, change);
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
            if !out.applied.is_empty() || out.image_changed {
                let img_hash = hash(&image_bytes(q.image()));
                if let Some(prev) = self.image_at.insert(applied, img_hash) {
                    if prev != img_hash {
                        self.fail(&format!("node {} has a different image at index {applied}", i + 1));
                    }
                }
            }
            for m in out.messages {
                let to = m.to as usize - 1;
                if self.group[i] != self.group[to] || self.chance(self.p.drop_per_mille) {
                    continue;
                }
                let at = self.now + self.rng.range(1, self.p.max_delay + 1);
                self.bus_seq += 1;
                self.bus.push(Reverse((at, self.bus_seq, to, encode_msg(&m))));
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
        let deadline = self.now + 600;
        let mut final_seq = None;
        loop {
            self.step_tick(false);
            if final_seq.is_none() {
                let leader =
                    (0..self.p.nodes).find(|&i| self.nodes[i].as_ref().is_some_and(|q| q.is_caught_up_leader()));
                if let Some(i) = leader {
                    let seq = self.next_seq;
                    if self.propose(i, MetadataChange::AllocateProducerIds { count: 1 }) {
                        final_seq = Some((i, seq));
                    }
                }
            }
            let converged = self.nodes.iter().all(|q| q.is_some()) && {
                let idx: Vec<u64> = self.nodes.iter().flatten().map(|q| q.applied_index()).collect();
                idx.iter().all(|&x| x == idx[0])
            };
            if final_seq.is_some_and(|k| !self.pending.contains_key(&k)) && converged {
                break;
            }
            if self.now > deadline {
                self.fail("no convergence within 600 ticks of healing (liveness)");
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
        self.log(format!("done: {n} acknowledged records, applied {applied}"));
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
