//! Producer connections: a writer thread builds batches and pipelines
//! Produce requests (up to `inflight`), a reader thread matches responses
//! (in order) and records request latency.

use crate::client::{decode_response, error_name, read_frame, retriable, Conn, CLIENT_ID};
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
    /// The request's batches, one per partition, kept (uncopied) so that a
    /// retriable partition error can send them again.
    batches: Vec<Ready>,
}

/// A sealed batch waiting to be sent (or sent again).
#[derive(Debug)]
pub(crate) struct Ready {
    pub partition: i32,
    /// Index into the writer's partitions.
    pub local: usize,
    pub batch: Bytes,
    pub records: u64,
    pub payload: u64,
    /// When the batch was first sent (retries give up some time after).
    pub first_sent: Option<Instant>,
}

/// Sealed batches per partition, drained like the Java client's
/// `RecordAccumulator.drain`: a request takes at most one batch per
/// partition (Kafka refuses a Produce request with more than one batch of
/// a partition with INVALID_RECORD), the partitions round robin, oldest
/// first within a partition, up to the request size limit (at least one
/// batch). Later batches of a partition wait for the next request.
#[derive(Default)]
pub(crate) struct ReadyQueue {
    queues: Vec<VecDeque<Ready>>,
    /// Local partitions with a non-empty queue, each once, in drain order.
    order: VecDeque<usize>,
    bytes: usize,
}

impl ReadyQueue {
    pub fn new(partitions: usize) -> ReadyQueue {
        ReadyQueue { queues: (0..partitions).map(|_| VecDeque::new()).collect(), order: VecDeque::new(), bytes: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether local partition `l` has a batch queued.
    pub fn has(&self, l: usize) -> bool {
        !self.queues[l].is_empty()
    }

    /// Bytes of all queued batches.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queue a newly sealed batch behind the partition's others.
    pub fn push(&mut self, r: Ready) {
        let l = r.local;
        self.bytes += r.batch.len();
        if self.queues[l].is_empty() {
            self.order.push_back(l);
        }
        self.queues[l].push_back(r);
    }

    /// Queue a batch to be sent again ahead of the partition's others; its
    /// partition goes first in the next request.
    pub fn push_front(&mut self, r: Ready) {
        let l = r.local;
        self.bytes += r.batch.len();
        if !self.queues[l].is_empty() {
            self.order.retain(|&o| o != l);
        }
        self.order.push_front(l);
        self.queues[l].push_front(r);
    }

    /// The batches of the next request (at most one per partition, at
    /// least one if any is queued) and their total size.
    pub fn pick(&mut self, max_bytes: usize) -> (Vec<Ready>, usize) {
        let mut take = Vec::new();
        let mut size = 0;
        let mut again = Vec::new();
        while let Some(&l) = self.order.front() {
            let q = &mut self.queues[l];
            let len = q.front().map_or(0, |r| r.batch.len());
            if !take.is_empty() && size + len > max_bytes {
                break;
            }
            self.order.pop_front();
            let r = q.pop_front().expect("a partition in the drain order has a batch");
            if !q.is_empty() {
                again.push(l);
            }
            size += len;
            self.bytes -= len;
            take.push(r);
        }
        // Partitions with more batches go behind those not drained yet.
        self.order.extend(again);
        (take, size)
    }
}

/// What one Produce response means for the batches of its request.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Records, payload and batch bytes of the partitions that succeeded.
    pub records: u64,
    pub bytes: u64,
    pub wire: u64,
    pub ok: usize,
    /// Indices (into the request's batches) to send again.
    pub retry: Vec<(usize, i16)>,
    /// Partitions that failed for good, with their error code.
    pub failed: Vec<(i32, i16)>,
    /// Batches without an answer, and answers for partitions not sent.
    pub missing: usize,
    pub unexpected: usize,
}

/// Per-partition accounting of a response: `answers` are (partition, error
/// code). A partition that succeeded counts even if another of the same
/// request failed.
pub(crate) fn account(sent: &[Ready], answers: impl IntoIterator<Item = (i32, i16)>) -> Outcome {
    let mut o = Outcome::default();
    let mut answered = vec![false; sent.len()];
    for (p, code) in answers {
        let Some(k) = (0..sent.len()).find(|&k| !answered[k] && sent[k].partition == p) else {
            o.unexpected += 1;
            continue;
        };
        answered[k] = true;
        if code == 0 {
            o.ok += 1;
            o.records += sent[k].records;
            o.bytes += sent[k].payload;
            o.wire += sent[k].batch.len() as u64;
        } else if retriable(code) {
            o.retry.push((k, code));
        } else {
            o.failed.push((p, code));
        }
    }
    o.missing = answered.iter().filter(|a| !**a).count();
    o
}

/// How long a batch is retried after its first send (Kafka's producer:
/// delivery.timeout.ms, 120 s by default; a benchmark gives up sooner).
const RETRY_FOR: Duration = Duration::from_secs(15);
/// Pause before a retry, after which the writer refreshes the metadata
/// (Kafka's retry.backoff.ms).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Batches the reader hands back to the writer after a retriable error.
#[derive(Default)]
struct Retries {
    state: Mutex<RetryState>,
    pending: AtomicBool,
}

#[derive(Default)]
struct RetryState {
    /// The writer has stopped: nothing is sent again.
    closed: bool,
    batches: Vec<Ready>,
    due: Option<Instant>,
}

impl Retries {
    fn offer(&self, b: Ready, code: i16, now: Instant, stats: &Stats) {
        let mut st = self.state.lock().unwrap();
        let what = format!("produce partition error code {code} ({})", error_name(code));
        if st.closed {
            stats.error(format!("{what} after the producer stopped (not retried)"), 1);
        } else if b.first_sent.is_some_and(|t| now > t + RETRY_FOR) {
            stats.error(format!("{what}, still after {} s of retries", RETRY_FOR.as_secs()), 1);
        } else {
            stats.retry(what);
            st.batches.push(b);
            st.due.get_or_insert(now + RETRY_BACKOFF);
            self.pending.store(true, Ordering::Release);
        }
    }

    /// Put batches back for another backoff (their partition has no
    /// leader yet), or count them as errors once they are too old.
    fn defer(&self, batches: Vec<Ready>, now: Instant, stats: &Stats) {
        let mut st = self.state.lock().unwrap();
        for b in batches {
            if st.closed || b.first_sent.is_some_and(|t| now > t + RETRY_FOR) {
                let secs = RETRY_FOR.as_secs();
                stats.error(format!("partition {} has no leader after {secs} s of retries", b.partition), 1);
            } else {
                st.batches.push(b);
                st.due.get_or_insert(now + RETRY_BACKOFF);
                self.pending.store(true, Ordering::Release);
            }
        }
    }

    fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    fn due(&self) -> Option<Instant> {
        if !self.pending() {
            return None;
        }
        self.state.lock().unwrap().due
    }

    /// The batches to send again, once their backoff has passed.
    fn take_due(&self, now: Instant) -> Option<Vec<Ready>> {
        if !self.pending() {
            return None;
        }
        let mut st = self.state.lock().unwrap();
        if st.due.is_some_and(|d| d <= now) {
            st.due = None;
            self.pending.store(false, Ordering::Release);
            return Some(std::mem::take(&mut st.batches));
        }
        None
    }

    /// The writer stops: later offers are errors; returns what was left.
    fn close(&self) -> Vec<Ready> {
        let mut st = self.state.lock().unwrap();
        st.closed = true;
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut st.batches)
    }
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
    let retries = Arc::new(Retries::default());
    let acks0 = cfg.acks == 0;
    let reader_core = cfg.reader_core;
    let w = {
        let (sh, stats, inflight, dead, retries) =
            (sh.clone(), stats.clone(), inflight.clone(), dead.clone(), retries.clone());
        thread::Builder::new()
            .name(format!("prod-w{}", cfg.id))
            .spawn(move || {
                if let Some(c) = cfg.core {
                    core_affinity::set_for_current(c);
                }
                let mut w = Writer::new(cfg, stream, version, sh.clone(), stats, tx, inflight, dead, retries);
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
                    read_loop(reader, version, rx, inflight, dead, wt, stats, hist, retries);
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
    retries: Arc<Retries>,
) {
    while let Ok(m) = rx.recv() {
        let outcome = read_frame(&mut rd)
            .map_err(anyhow::Error::from)
            .and_then(|f| decode_response::<ProduceRequest>(f, version, m.corr));
        let lat = m.sent.elapsed();
        match outcome {
            Ok(resp) => {
                let answers =
                    resp.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| (p.index, p.error_code)));
                let o = account(&m.batches, answers);
                if o.ok > 0 {
                    stats.add(o.records, o.bytes, o.wire);
                }
                for (_, code) in &o.failed {
                    stats.error(format!("produce partition error code {code} ({})", error_name(*code)), 1);
                }
                if o.missing + o.unexpected > 0 {
                    stats.error("produce response partition count mismatch", 1);
                }
                if !o.retry.is_empty() {
                    let now = Instant::now();
                    let mut batches: Vec<Option<Ready>> = m.batches.into_iter().map(Some).collect();
                    for (k, code) in o.retry {
                        if let Some(b) = batches[k].take() {
                            retries.offer(b, code, now, &stats);
                        }
                    }
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
    retries: Arc<Retries>,
    /// For metadata refreshes before retries (opened when first needed).
    meta_conn: Option<Conn>,
    accs: Vec<BatchBuilder>,
    local_of: Vec<usize>,
    sticky: usize,
    ready: ReadyQueue,
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
        retries: Arc<Retries>,
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
        let ready = ReadyQueue::new(cfg.partitions.len());
        Writer {
            cfg,
            stream,
            version,
            sh,
            stats,
            tx,
            inflight,
            dead,
            retries,
            meta_conn: None,
            accs,
            local_of,
            sticky,
            ready,
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
                self.ready.push(Ready {
                    partition: self.cfg.partitions[i],
                    local: i,
                    batch,
                    records: records as u64,
                    payload,
                    first_sent: None,
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
        // At most one batch per partition (see ReadyQueue), up to the request size limit.
        let (mut take, size) = self.ready.pick(self.cfg.max_request_bytes);
        take.sort_by_key(|r| r.partition);
        let (records, payload) = take.iter().fold((0, 0), |(r, p), b| (r + b.records, p + b.payload));
        let parts: Vec<(i32, Vec<Bytes>)> = take.iter().map(|r| (r.partition, vec![r.batch.clone()])).collect();
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
            for r in &mut take {
                r.first_sent.get_or_insert(sent);
            }
            self.inflight.fetch_add(1, Ordering::AcqRel);
            let _ = self.tx.send(Meta { corr: self.corr, sent, batches: take });
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

    /// Queue batches that got a retriable error again, after a metadata
    /// refresh (as Kafka's producer does). The load generator does not
    /// follow a leader to another broker: a batch whose partition moved
    /// counts as an error.
    fn requeue(&mut self, mut batches: Vec<Ready>) {
        let leaders = self.refresh_leaders();
        // Oldest first once pushed to the fronts.
        batches.sort_by_key(|b| std::cmp::Reverse(b.first_sent));
        let mut later = Vec::new();
        for b in batches {
            match leaders.as_ref().and_then(|l| l.get(&b.partition)) {
                Some(Some(addr)) if *addr == self.cfg.addr => self.ready.push_front(b),
                Some(Some(addr)) => {
                    let p = b.partition;
                    self.stats
                        .error(format!("partition {p} moved to leader {addr} (the load generator does not follow)"), 1);
                }
                // No leader, topic or metadata yet: wait another backoff.
                _ => later.push(b),
            }
        }
        if !later.is_empty() {
            self.retries.defer(later, Instant::now(), &self.stats);
        }
    }

    /// Leader address (None: no leader) of every partition of the topic,
    /// or None if the metadata could not be read.
    fn refresh_leaders(&mut self) -> Option<std::collections::HashMap<i32, Option<String>>> {
        if self.meta_conn.is_none() {
            self.meta_conn = Conn::connect(&self.cfg.addr).ok();
        }
        let conn = self.meta_conn.as_mut()?;
        let (err, resp) = match conn.metadata(&self.cfg.topic) {
            Ok(x) => x,
            Err(_) => {
                self.meta_conn = None;
                return None;
            }
        };
        if err != 0 {
            return None;
        }
        let brokers: std::collections::HashMap<i32, String> =
            resp.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
        Some(
            resp.topics
                .first()?
                .partitions
                .iter()
                .map(|p| (p.partition_index, brokers.get(&p.leader_id.0).cloned()))
                .collect(),
        )
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
                    while self.ready.bytes() < target && self.remaining > 0 && n < 100_000 {
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
            if let Some(b) = self.retries.take_due(now) {
                self.requeue(b);
            }
            // As in the Java client, linger makes a partial batch sendable,
            // but it is only closed when a request can take it: while every
            // slot is busy it keeps filling. (Closing it at the deadline
            // instead sent many small batches, one request each, as soon as
            // responses took longer than the linger time.) A partition with
            // a full batch queued sends that one first.
            let slot = self.can_send();
            let mut next_linger: Option<Instant> = None;
            for i in 0..self.accs.len() {
                if let Some(first) = self.accs[i].first_at {
                    let deadline = first + self.cfg.linger;
                    if finishing || (deadline <= now && slot && !self.ready.has(i)) {
                        self.seal(i);
                    } else if deadline > now {
                        next_linger = Some(next_linger.map_or(deadline, |d: Instant| d.min(deadline)));
                    }
                }
            }
            self.encode_ns += thread_cpu_ns().saturating_sub(t0);
            if !self.ready.is_empty() && self.can_send() {
                self.send();
                continue;
            }
            // With a record limit, every record is either acknowledged or
            // counted as an error: wait for answers that may ask for a retry.
            let awaiting = self.retries.pending()
                || (self.cfg.records_limit.is_some() && self.inflight.load(Ordering::Acquire) > 0);
            if finishing && self.ready.is_empty() && !awaiting {
                break;
            }
            // Wait for a free slot (the reader unparks us), the next record or a linger deadline.
            let mut wake = now + Duration::from_millis(50);
            if let Some(d) = self.retries.due() {
                wake = wake.min(d);
            }
            if self.ready.is_empty() || self.ready.bytes() < target {
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
            if interval_ns == 0.0 && self.ready.bytes() < target && self.remaining > 0 && !stopping {
                continue; // unthrottled: keep generating
            }
            let now = Instant::now();
            if wake > now {
                thread::park_timeout(wake - now);
            }
        }
        // Batches waiting for a retry are lost; later offers count as errors.
        let left = self.retries.close();
        self.stats.error("produce batches waiting for a retry when the producer stopped", left.len() as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partition: i32, len: usize, tag: u64) -> Ready {
        Ready {
            partition,
            local: partition as usize,
            batch: Bytes::from(vec![0u8; len]),
            records: tag,
            payload: len as u64 / 2,
            first_sent: None,
        }
    }

    /// (partition, tag) of each picked batch.
    fn ids(v: &[Ready]) -> Vec<(i32, u64)> {
        v.iter().map(|r| (r.partition, r.records)).collect()
    }

    #[test]
    fn one_batch_per_partition_per_request_fifo_per_partition() {
        let mut q = ReadyQueue::new(4);
        // Sealed in this order: p0 three times, p1, p2 twice.
        for (p, tag) in [(0, 1), (0, 2), (1, 3), (0, 4), (2, 5), (2, 6)] {
            q.push(batch(p, 100, tag));
        }
        assert_eq!(q.bytes(), 600);
        assert!(q.has(0) && q.has(2) && !q.has(3));
        let (a, size) = q.pick(1 << 20);
        assert_eq!(ids(&a), vec![(0, 1), (1, 3), (2, 5)]);
        assert_eq!((size, q.bytes()), (300, 300));
        let (b, _) = q.pick(1 << 20);
        assert_eq!(ids(&b), vec![(0, 2), (2, 6)]);
        let (c, _) = q.pick(1 << 20);
        assert_eq!(ids(&c), vec![(0, 4)]);
        assert!(q.is_empty() && q.bytes() == 0 && !q.has(0));
        assert!(q.pick(1 << 20).0.is_empty());
    }

    #[test]
    fn one_partition_sends_one_batch_per_request() {
        let mut q = ReadyQueue::new(1);
        for tag in 1..=3 {
            q.push(batch(0, 65_000, tag));
        }
        for tag in 1..=3 {
            assert_eq!(ids(&q.pick(1 << 20).0), vec![(0, tag)]);
        }
        assert!(q.is_empty());
    }

    #[test]
    fn request_size_limit_and_round_robin() {
        let mut q = ReadyQueue::new(3);
        for (p, tag) in [(0, 1), (1, 2), (2, 3), (0, 4)] {
            q.push(batch(p, 400, tag));
        }
        // 1000 bytes: two batches fit, the third waits at the front.
        let (a, size) = q.pick(1000);
        assert_eq!((ids(&a), size), (vec![(0, 1), (1, 2)], 800));
        // p2 was not drained yet, so it comes before p0's second batch.
        assert_eq!(ids(&q.pick(1000).0), vec![(2, 3), (0, 4)]);
        // A batch larger than the limit still goes, alone.
        q.push(batch(1, 5000, 7));
        q.push(batch(2, 10, 8));
        assert_eq!(ids(&q.pick(1000).0), vec![(1, 7)]);
        assert_eq!(ids(&q.pick(1000).0), vec![(2, 8)]);
    }

    #[test]
    fn retried_batches_go_first() {
        let mut q = ReadyQueue::new(2);
        q.push(batch(0, 10, 2));
        q.push(batch(1, 10, 3));
        q.push_front(batch(1, 10, 1));
        assert_eq!(ids(&q.pick(1 << 20).0), vec![(1, 1), (0, 2)]);
        assert_eq!(ids(&q.pick(1 << 20).0), vec![(1, 3)]);
    }

    #[test]
    fn accounting_is_per_partition() {
        let sent = vec![batch(0, 100, 10), batch(3, 200, 20), batch(5, 300, 30), batch(7, 400, 40)];
        // p3 succeeded, p0 is retriable, p5 failed for good, p7 unanswered, p9 not sent.
        let o = account(&sent, [(3, 0), (0, 6), (5, 87), (9, 0)]);
        assert_eq!((o.records, o.bytes, o.wire, o.ok), (20, 100, 200, 1));
        assert_eq!(o.retry, vec![(0, 6)]);
        assert_eq!(o.failed, vec![(5, 87)]);
        assert_eq!((o.missing, o.unexpected), (1, 1));
        let all = account(&sent, [(0, 0), (3, 0), (5, 0), (7, 0)]);
        assert_eq!((all.records, all.ok, all.missing), (100, 4, 0));
        assert!(all.retry.is_empty() && all.failed.is_empty());
    }

    #[test]
    fn retries_wait_for_their_backoff_and_stop_with_the_writer() {
        let stats = Stats::new("produce");
        let r = Retries::default();
        let t0 = Instant::now();
        let mut b = batch(0, 10, 1);
        b.first_sent = Some(t0);
        r.offer(b, 6, t0, &stats);
        assert!(r.pending());
        assert_eq!(r.due(), Some(t0 + RETRY_BACKOFF));
        assert!(r.take_due(t0).is_none());
        assert_eq!(r.take_due(t0 + RETRY_BACKOFF).map(|v| v.len()), Some(1));
        assert!(!r.pending());
        // Too old: an error, not a retry.
        let mut old = batch(0, 10, 2);
        old.first_sent = Some(t0);
        r.offer(old, 6, t0 + RETRY_FOR + Duration::from_secs(1), &stats);
        assert!(!r.pending());
        r.offer(batch(0, 10, 3), 5, t0, &stats);
        assert_eq!(r.close().len(), 1);
        r.offer(batch(0, 10, 4), 6, t0, &stats);
        let c = stats.counts();
        assert_eq!((c.retries, c.errors), (2, 2));
    }
}
