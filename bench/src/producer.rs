//! Producer connections: a writer thread builds batches and pipelines
//! Produce requests (up to `inflight`), a reader thread matches responses
//! (in order) and records request latency.

use crate::client::{decode_response, read_frame, CLIENT_ID};
use crate::encode::{BatchBuilder, Codec};
use crate::keys::{KeySampler, Rng};
use crate::produce_frame::{ProduceFrame, ProduceHeader};
use crate::stats::{thread_cpu_ns, thread_cpu_seconds, Clock, CpuBook, HistPair, Stats};
use bytes::Bytes;
use kafka_protocol::messages::ProduceRequest;
use std::collections::VecDeque;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// Everything one producer connection needs.
pub struct ProducerCfg {
    pub id: usize,
    pub topic: String,
    pub addr: String,
    /// Partitions led by `addr` that this connection writes to.
    pub partitions: Vec<i32>,
    pub total_partitions: u32,
    /// Keyed mode: sampler over the key ids whose partition is in `partitions`.
    pub sampler: Option<KeySampler>,
    pub keys: Arc<Vec<Vec<u8>>>,
    pub key_partition: Arc<Vec<u32>>,
    pub record_size: usize,
    pub record_size_max: usize,
    pub batch_records: Option<usize>,
    pub batch_bytes: usize,
    pub linger: Duration,
    pub acks: i16,
    pub codec: Codec,
    pub inflight: usize,
    /// Records per second for this connection; 0 = as fast as possible.
    pub rate: f64,
    pub records_limit: Option<u64>,
    pub max_request_bytes: usize,
    pub timeout_ms: i32,
    pub value_pool: Arc<Vec<u8>>,
    pub core: Option<core_affinity::CoreId>,
    pub reader_core: Option<core_affinity::CoreId>,
}

/// State shared by all threads of a run.
pub struct Shared {
    /// Producers stop (duration elapsed).
    pub stop: AtomicBool,
    /// Consumers stop (set after producers in e2e mode).
    pub stop_consumers: AtomicBool,
    pub clock: Clock,
    pub cpu: CpuBook,
}

struct Meta {
    corr: i32,
    sent: Instant,
    records: u64,
    bytes: u64,
    wire: u64,
    partitions: usize,
}

struct Ready {
    partition: i32,
    batch: Bytes,
    records: u64,
    payload: u64,
}

/// Start one producer connection (writer + reader threads) on an
/// already-negotiated stream.
pub fn spawn(
    cfg: ProducerCfg,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    version: i16,
    sh: Arc<Shared>,
    stats: Arc<Stats>,
) -> Vec<JoinHandle<()>> {
    let (tx, rx) = channel::<Meta>();
    let inflight = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let acks0 = cfg.acks == 0;
    let reader_core = cfg.reader_core;
    let w = {
        let (sh, stats, inflight, dead) = (sh.clone(), stats.clone(), inflight.clone(), dead.clone());
        thread::Builder::new()
            .name(format!("prod-w{}", cfg.id))
            .spawn(move || {
                if let Some(c) = cfg.core {
                    core_affinity::set_for_current(c);
                }
                let mut w = Writer::new(cfg, stream, version, sh.clone(), stats, tx, inflight, dead);
                w.run();
                sh.cpu.encode_ns.fetch_add(w.encode_ns, Ordering::Relaxed);
                sh.cpu.generated.fetch_add(w.generated, Ordering::Relaxed);
                sh.cpu.add("producer_writer", thread_cpu_seconds());
            })
            .expect("spawn producer writer")
    };
    let mut handles = vec![];
    if !acks0 {
        let wt = w.thread().clone();
        let hist = stats.register();
        handles.push(
            thread::Builder::new()
                .name("prod-r".into())
                .spawn(move || {
                    if let Some(c) = reader_core {
                        core_affinity::set_for_current(c);
                    }
                    read_loop(reader, version, rx, inflight, dead, wt, stats, hist);
                    sh.cpu.add("producer_reader", thread_cpu_seconds());
                })
                .expect("spawn producer reader"),
        );
    } else {
        drop(rx);
    }
    handles.push(w);
    handles
}

#[allow(clippy::too_many_arguments)]
fn read_loop(
    mut rd: BufReader<TcpStream>,
    version: i16,
    rx: Receiver<Meta>,
    inflight: Arc<AtomicUsize>,
    dead: Arc<AtomicBool>,
    writer: Thread,
    stats: Arc<Stats>,
    hist: Arc<Mutex<HistPair>>,
) {
    while let Ok(m) = rx.recv() {
        let outcome = read_frame(&mut rd)
            .map_err(anyhow::Error::from)
            .and_then(|f| decode_response::<ProduceRequest>(f, version, m.corr));
        let lat = m.sent.elapsed();
        match outcome {
            Ok(resp) => {
                let mut errs = 0u64;
                let mut answered = 0usize;
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        answered += 1;
                        if p.error_code != 0 {
                            errs += 1;
                            stats.error(format!("produce partition error code {}", p.error_code), 1);
                        }
                    }
                }
                if answered != m.partitions {
                    stats.error("produce response partition count mismatch", 1);
                }
                if errs == 0 {
                    stats.add(m.records, m.bytes, m.wire);
                }
                hist.lock().unwrap().record(lat.as_micros() as u64);
            }
            Err(e) => {
                stats.error(format!("produce connection failed: {e:#}"), 1);
                dead.store(true, Ordering::Release);
                writer.unpark();
                // Everything still in flight is lost.
                let mut lost = 0;
                while rx.recv().is_ok() {
                    lost += 1;
                }
                stats.error("produce requests unanswered at disconnect", lost);
                return;
            }
        }
        inflight.fetch_sub(1, Ordering::AcqRel);
        writer.unpark();
    }
}

struct Writer {
    cfg: ProducerCfg,
    stream: TcpStream,
    version: i16,
    sh: Arc<Shared>,
    stats: Arc<Stats>,
    tx: Sender<Meta>,
    inflight: Arc<AtomicUsize>,
    dead: Arc<AtomicBool>,
    accs: Vec<BatchBuilder>,
    local_of: Vec<usize>,
    sticky: usize,
    ready: VecDeque<Ready>,
    ready_bytes: usize,
    rng: Rng,
    frame: ProduceFrame,
    corr: i32,
    remaining: u64,
    encode_ns: u64,
    generated: u64,
    pool_off: usize,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: ProducerCfg,
        stream: TcpStream,
        version: i16,
        sh: Arc<Shared>,
        stats: Arc<Stats>,
        tx: Sender<Meta>,
        inflight: Arc<AtomicUsize>,
        dead: Arc<AtomicBool>,
    ) -> Writer {
        let cap = cfg.batch_bytes + BatchBuilder::record_size_estimate(64, cfg.record_size_max);
        let accs = cfg.partitions.iter().map(|_| BatchBuilder::with_capacity(cap)).collect();
        let mut local_of = vec![usize::MAX; cfg.total_partitions as usize];
        for (i, &p) in cfg.partitions.iter().enumerate() {
            local_of[p as usize] = i;
        }
        let sticky = cfg.id % cfg.partitions.len();
        let remaining = cfg.records_limit.unwrap_or(u64::MAX);
        let rng = Rng::new(0x5eed ^ (cfg.id as u64) << 32);
        Writer {
            cfg,
            stream,
            version,
            sh,
            stats,
            tx,
            inflight,
            dead,
            accs,
            local_of,
            sticky,
            ready: VecDeque::new(),
            ready_bytes: 0,
            rng,
            frame: ProduceFrame::default(),
            corr: 0,
            remaining,
            encode_ns: 0,
            generated: 0,
            pool_off: 0,
        }
    }

    fn seal(&mut self, i: usize) {
        match self.accs[i].finish(self.cfg.codec) {
            Ok((batch, records, payload)) => {
                self.ready_bytes += batch.len();
                self.ready.push_back(Ready {
                    partition: self.cfg.partitions[i],
                    batch,
                    records: records as u64,
                    payload,
                });
            }
            Err(e) => self.stats.error(format!("building batch: {e:#}"), 1),
        }
        if self.cfg.sampler.is_none() && i == self.sticky {
            self.sticky = (self.sticky + 1) % self.accs.len();
        }
    }

    /// Generate one record created at `created_us` into its partition's batch.
    #[inline]
    fn gen_one(&mut self, created_us: i64, now: Instant) {
        let size = if self.cfg.record_size_max > self.cfg.record_size {
            self.cfg.record_size + self.rng.below((self.cfg.record_size_max - self.cfg.record_size + 1) as u64) as usize
        } else {
            self.cfg.record_size
        };
        let (i, key_id) = match &self.cfg.sampler {
            Some(s) => {
                let k = s.sample(&mut self.rng) as usize;
                (self.local_of[self.cfg.key_partition[k] as usize], Some(k))
            }
            None => (self.sticky, None),
        };
        let key = key_id.map(|k| self.cfg.keys[k].as_slice());
        let key_len = key.map_or(0, <[u8]>::len);
        let acc = &self.accs[i];
        let full = match self.cfg.batch_records {
            Some(_) => false,
            None => {
                !acc.is_empty() && acc.len() + BatchBuilder::record_size_estimate(key_len, size) > self.cfg.batch_bytes
            }
        };
        if full {
            self.seal(i);
        }
        // The sticky partition may have moved on after sealing.
        let i = if key_id.is_none() { self.sticky } else { i };
        // Walk the value pool sequentially (prefetch-friendly); the odd step
        // keeps consecutive values from lining up.
        let pool = &self.cfg.value_pool;
        if self.pool_off + size > pool.len() {
            self.pool_off = self.rng.below(64) as usize;
        }
        let off = self.pool_off;
        self.pool_off += size + 13;
        let key = key_id.map(|k| self.cfg.keys[k].as_slice());
        self.accs[i].push(created_us, key, &pool[off..off + size], now);
        self.remaining -= 1;
        self.generated += 1;
        if let Some(n) = self.cfg.batch_records {
            if self.accs[i].count() as usize >= n {
                self.seal(i);
            }
        }
    }

    fn send(&mut self) {
        // Take ready batches up to the request size limit (at least one).
        let mut take: Vec<Ready> = Vec::new();
        let mut size = 0;
        while let Some(r) = self.ready.front() {
            if !take.is_empty() && size + r.batch.len() > self.cfg.max_request_bytes {
                break;
            }
            size += r.batch.len();
            let r = self.ready.pop_front().unwrap();
            self.ready_bytes -= r.batch.len();
            take.push(r);
        }
        take.sort_by_key(|r| r.partition);
        let (mut records, mut payload) = (0u64, 0u64);
        let mut parts: Vec<(i32, Vec<Bytes>)> = Vec::new();
        let mut i = 0;
        while i < take.len() {
            let p = take[i].partition;
            let mut j = i;
            while j < take.len() && take[j].partition == p {
                records += take[j].records;
                payload += take[j].payload;
                j += 1;
            }
            // Several batches of one partition go back to back, uncopied.
            parts.push((p, take[i..j].iter().map(|r| r.batch.clone()).collect()));
            i = j;
        }
        let nparts = parts.len();
        self.corr = self.corr.wrapping_add(1);
        let header = ProduceHeader {
            version: self.version,
            correlation_id: self.corr,
            client_id: CLIENT_ID,
            acks: self.cfg.acks,
            timeout_ms: self.cfg.timeout_ms,
            topic: &self.cfg.topic,
        };
        if let Err(e) = self.frame.encode(&header, &parts) {
            self.stats.error(format!("encoding produce request: {e:#}"), 1);
            return;
        }
        let sent = Instant::now();
        if self.cfg.acks != 0 {
            self.inflight.fetch_add(1, Ordering::AcqRel);
            let _ = self.tx.send(Meta {
                corr: self.corr,
                sent,
                records,
                bytes: payload,
                wire: size as u64,
                partitions: nparts,
            });
        }
        if let Err(e) = self.frame.write_to(&mut self.stream) {
            if !self.dead.swap(true, Ordering::AcqRel) {
                self.stats.error(format!("produce send to {} failed: {e}", self.cfg.addr), 1);
            }
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
            return;
        }
        if self.cfg.acks == 0 {
            self.stats.add(records, payload, size as u64);
        }
    }

    fn can_send(&self) -> bool {
        self.cfg.acks == 0 || self.inflight.load(Ordering::Acquire) < self.cfg.inflight
    }

    fn run(&mut self) {
        let start = Instant::now();
        let clock = self.sh.clock;
        let interval_ns = if self.cfg.rate > 0.0 { 1e9 / self.cfg.rate } else { 0.0 };
        let target = self
            .cfg
            .max_request_bytes
            .min(self.cfg.batch_bytes.max(self.cfg.record_size_max + 64) * self.accs.len())
            .max(1);
        let mut k: u64 = 0;
        let due = |k: u64| start + Duration::from_nanos((k as f64 * interval_ns) as u64);
        loop {
            if self.dead.load(Ordering::Acquire) {
                break;
            }
            let stopping = self.sh.stop.load(Ordering::Relaxed);
            if stopping && self.cfg.records_limit.is_none() {
                break;
            }
            let now = Instant::now();
            let t0 = thread_cpu_ns();
            if self.remaining > 0 && !stopping {
                if interval_ns == 0.0 {
                    let created = clock.unix_us(now);
                    let mut n = 0;
                    while self.ready_bytes < target && self.remaining > 0 && n < 100_000 {
                        self.gen_one(created, now);
                        n += 1;
                    }
                } else {
                    let mut n = 0;
                    while self.remaining > 0 && n < 100_000 {
                        let d = due(k);
                        if d > now {
                            break;
                        }
                        // Created at the scheduled time, so a stalled generator
                        // shows up as latency (no coordinated omission).
                        self.gen_one(clock.unix_us(d), now);
                        k += 1;
                        n += 1;
                    }
                }
            }
            let finishing = self.remaining == 0 || stopping;
            let mut next_linger: Option<Instant> = None;
            for i in 0..self.accs.len() {
                if let Some(first) = self.accs[i].first_at {
                    let deadline = first + self.cfg.linger;
                    if finishing || deadline <= now {
                        self.seal(i);
                    } else {
                        next_linger = Some(next_linger.map_or(deadline, |d: Instant| d.min(deadline)));
                    }
                }
            }
            self.encode_ns += thread_cpu_ns().saturating_sub(t0);
            if !self.ready.is_empty() && self.can_send() {
                self.send();
                continue;
            }
            if finishing && self.ready.is_empty() {
                break;
            }
            // Wait for a free slot (the reader unparks us), the next record or a linger deadline.
            let mut wake = now + Duration::from_millis(50);
            if self.ready.is_empty() || self.ready_bytes < target {
                if interval_ns > 0.0 && self.remaining > 0 {
                    // Throttled: records due within the next tick are made
                    // together when it ends. Each is still timed from its
                    // scheduled creation, so the wait counts as latency.
                    wake = wake.min(due(k).max(now + GENERATE_TICK));
                }
                if let Some(d) = next_linger {
                    wake = wake.min(d);
                }
            }
            if interval_ns == 0.0 && self.ready_bytes < target && self.remaining > 0 {
                continue; // unthrottled: keep generating
            }
            let now = Instant::now();
            if wake > now {
                thread::park_timeout(wake - now);
            }
        }
        // Dropping the sender lets the reader finish once all responses are in.
    }
}

/// The throttled generator sleeps at least this long between rounds:
/// parking for the microsecond until the next record at a high rate cost
/// the load generator more CPU than the records themselves (about one core
/// at 1 M records/s), CPU the broker on the same machine then lacked.
const GENERATE_TICK: Duration = Duration::from_micros(50);

/// Split `total` into `n` shares proportional to `weights`.
pub fn split_counts(total: u64, weights: &[f64]) -> Vec<u64> {
    let sum: f64 = weights.iter().sum();
    let mut out: Vec<u64> = weights.iter().map(|w| (total as f64 * w / sum).floor() as u64).collect();
    let given: u64 = out.iter().sum();
    if let Some(first) = out.first_mut() {
        *first += total - given;
    }
    out
}
