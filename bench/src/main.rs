//! `ringbroker-bench`: a load generator that speaks the Kafka protocol to any
//! Kafka-compatible broker. See bench/README.md.

mod client;
mod consumer;
mod encode;
mod keys;
mod murmur;
mod produce_frame;
mod producer;
mod report;
mod stats;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use client::{Chosen, Conn};
use consumer::{ConsumerCfg, LatencyKind};
use encode::Codec;
use keys::{key_bytes, zipf_weight, KeySampler, Rng};
use producer::{ProducerCfg, Shared};
use stats::{proc_cpu, process_cpu_seconds, Clock, Counts, CpuBook, ProcCpu, Stats};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Produce only; latency = Produce request send -> response.
    Produce,
    /// Consume from the earliest offset; latency = Fetch request -> response.
    Consume,
    /// Produce and consume from the latest offset; latency = record CreateTime -> receipt.
    E2e,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyDist {
    None,
    Uniform,
    Zipf,
}

#[derive(Debug, Clone, Parser, Serialize)]
#[command(
    name = "ringbroker-bench",
    version,
    about = "Kafka-protocol load generator for ringbroker (or any Kafka-compatible broker)"
)]
pub struct Args {
    #[arg(value_enum)]
    pub mode: Mode,
    /// Bootstrap broker, host:port.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "ringbroker-bench")]
    pub topic: String,
    /// Partitions to create the topic with if it does not exist (default 1).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Value size in bytes (the lower bound with --record-size-max).
    #[arg(long, default_value_t = 100)]
    pub record_size: usize,
    /// Upper bound of a uniform value-size distribution.
    #[arg(long)]
    pub record_size_max: Option<usize>,
    #[arg(long, value_enum, default_value_t = KeyDist::None)]
    pub key: KeyDist,
    /// Number of distinct keys (keyed modes).
    #[arg(long, default_value_t = 10_000)]
    pub keys: usize,
    /// Zipf exponent for --key zipf.
    #[arg(long, default_value_t = 0.99)]
    pub zipf_exponent: f64,
    /// Records per batch (instead of --batch-bytes).
    #[arg(long, conflicts_with = "batch_bytes")]
    pub batch_records: Option<usize>,
    /// Batch size limit in bytes, like Kafka's batch.size.
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// How long a partial batch may wait for more records.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    pub acks: String,
    #[arg(long, value_enum, default_value_t = Codec::None)]
    pub compression: Codec,
    /// Producer connections (per partition leader).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Consumers; partitions are split between them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    pub inflight: usize,
    /// Target records per second over all producers (0 = unthrottled).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Measured run time in seconds (default 10 unless --records).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Produce (or consume) this many records in total, then stop.
    #[arg(long)]
    pub records: Option<u64>,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Pin each connection thread to a core (round robin).
    #[arg(long)]
    pub pin: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<String>,
    /// Exit 0 even if errors were counted.
    #[arg(long)]
    pub allow_errors: bool,
    /// Upper bound of one Produce request (like Kafka's max.request.size).
    #[arg(long, default_value_t = 1 << 20)]
    pub max_request_bytes: usize,
    /// Fetch max.wait.ms.
    #[arg(long, default_value_t = 500)]
    pub fetch_max_wait_ms: i32,
    /// Fetch response limit.
    #[arg(long, default_value_t = 50 << 20)]
    pub fetch_max_bytes: i32,
    /// Fetch per-partition limit (max.partition.fetch.bytes).
    #[arg(long, default_value_t = 1 << 20)]
    pub fetch_partition_max_bytes: i32,
    /// Produce request timeout.
    #[arg(long, default_value_t = 30_000)]
    pub request_timeout_ms: i32,
    /// e2e: how long to wait for consumers to catch up after producers stop.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// The broker's process id (on this machine): report its CPU time
    /// (utime + stime of all its threads, /proc/PID/stat) over the measured window.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

impl Args {
    fn acks(&self) -> i16 {
        match self.acks.as_str() {
            "0" => 0,
            "1" => 1,
            _ => -1,
        }
    }
    fn record_size_max(&self) -> usize {
        self.record_size_max.unwrap_or(self.record_size).max(self.record_size)
    }
    fn batch_bytes(&self) -> usize {
        self.batch_bytes.unwrap_or(16_384)
    }
    fn validate(&self) -> Result<()> {
        if self.producers == 0 || self.consumers == 0 || self.inflight == 0 {
            bail!("--producers, --consumers and --inflight must be at least 1");
        }
        if let Some(m) = self.record_size_max {
            if m < self.record_size {
                bail!("--record-size-max ({m}) is below --record-size ({})", self.record_size);
            }
        }
        if self.key != KeyDist::None && self.keys == 0 {
            bail!("--keys must be at least 1");
        }
        if self.batch_records == Some(0) {
            bail!("--batch-records must be at least 1");
        }
        if self.rate < 0.0 || !self.rate.is_finite() {
            bail!("--rate must be >= 0");
        }
        if matches!(self.partitions, Some(p) if p < 1) {
            bail!("--partitions must be at least 1");
        }
        if self.keys > u32::MAX as usize {
            bail!("--keys too large");
        }
        Ok(())
    }
}

/// Alphanumeric filler (compressible roughly like text) for record values.
fn value_pool(max: usize) -> Vec<u8> {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = Rng::new(99);
    (0..(256 << 10) + max).map(|_| ALPHA[r.below(ALPHA.len() as u64) as usize]).collect()
}

struct CoreRing {
    cores: Vec<core_affinity::CoreId>,
    next: usize,
}
impl CoreRing {
    fn next(&mut self) -> Option<core_affinity::CoreId> {
        if self.cores.is_empty() {
            return None;
        }
        let c = self.cores[self.next % self.cores.len()];
        self.next += 1;
        Some(c)
    }
}

fn all_finished(h: &[JoinHandle<()>]) -> bool {
    h.iter().all(JoinHandle::is_finished)
}

fn run(args: &Args) -> Result<Value> {
    let clock = Clock::new();
    let mut boot = Conn::connect(&args.bootstrap)?;
    let chosen = Chosen::from(&boot.versions)?;
    let info = boot.ensure_topic(&args.topic, args.partitions)?;
    // Metadata may show leaders before they accept the partitions (Kafka).
    client::wait_partitions_ready(&args.topic, &info, Instant::now() + client::READY_TIMEOUT)?;
    let leaders = info.by_leader()?;
    // The broker's CPU so far (None without --broker-pid, or once it is gone).
    let broker_cpu = || -> Option<ProcCpu> {
        let pid = args.broker_pid?;
        match proc_cpu(pid) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("warning: --broker-pid {pid}: {e}");
                None
            }
        }
    };
    if let Some(pid) = args.broker_pid {
        proc_cpu(pid).with_context(|| format!("--broker-pid {pid}"))?;
    }
    let total_parts = info.partitions.len() as u32;
    eprintln!(
        "topic {}: {} partition(s) on {} leader(s); Produce v{}, Fetch v{}, Metadata v{}, ListOffsets v{}",
        args.topic,
        total_parts,
        leaders.len(),
        chosen.produce,
        chosen.fetch,
        chosen.metadata,
        chosen.list_offsets
    );
    let sh = Arc::new(Shared {
        stop: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        clock,
        cpu: CpuBook::default(),
    });
    let mut cores = CoreRing {
        cores: if args.pin { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() },
        next: 0,
    };
    let pstats = Stats::new("produce");
    let cstats = Stats::new("consume");
    let consumed = Arc::new(AtomicU64::new(0));
    let has_prod = args.mode != Mode::Consume;
    let has_cons = args.mode != Mode::Produce;
    let mut cons_handles: Vec<JoinHandle<()>> = Vec::new();
    let mut prod_handles: Vec<JoinHandle<()>> = Vec::new();

    let early = (Instant::now(), process_cpu_seconds(), broker_cpu());
    // Consumers first: in e2e mode they must know the latest offsets before anything is produced.
    if has_cons {
        let all: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        let leader_of: HashMap<i32, String> =
            info.partitions.iter().map(|p| (p.partition, info.brokers[&p.leader].clone())).collect();
        for c in 0..args.consumers {
            let mine: Vec<i32> = all.iter().copied().filter(|p| (*p as usize) % args.consumers == c).collect();
            let mut by_addr: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for p in mine {
                by_addr.entry(leader_of[&p].clone()).or_default().push(p);
            }
            for (addr, parts) in by_addr {
                let mut conn = Conn::connect(&addr)?;
                let v = Chosen::from(&conn.versions)?;
                let start_ts = if args.mode == Mode::E2e { -1 } else { -2 };
                let start = conn.list_offsets(&args.topic, &parts, start_ts)?;
                let end = if args.mode == Mode::Consume && args.records.is_none() {
                    Some(conn.list_offsets(&args.topic, &parts, -1)?)
                } else {
                    None
                };
                let cfg = ConsumerCfg {
                    id: c,
                    topic: args.topic.clone(),
                    partitions: parts,
                    start,
                    end,
                    records_limit: if args.mode == Mode::Consume { args.records } else { None },
                    latency: if args.mode == Mode::E2e { LatencyKind::EndToEnd } else { LatencyKind::Fetch },
                    max_wait_ms: args.fetch_max_wait_ms,
                    max_bytes: args.fetch_max_bytes,
                    partition_max_bytes: args.fetch_partition_max_bytes,
                    version: v.fetch,
                    core: cores.next(),
                };
                cons_handles.push(consumer::spawn(cfg, conn, sh.clone(), cstats.clone(), consumed.clone()));
            }
        }
    }

    // The run (and, without warmup, the measured window) starts when producers start.
    let (start, cpu_start, broker_start) =
        if has_prod { (Instant::now(), process_cpu_seconds(), broker_cpu()) } else { early };
    if has_prod {
        let keyed = args.key != KeyDist::None;
        let nkeys = if keyed { args.keys } else { 0 };
        let keys: Arc<Vec<Vec<u8>>> = Arc::new((0..nkeys).map(key_bytes).collect());
        let key_partition: Arc<Vec<u32>> =
            Arc::new(keys.iter().map(|k| murmur::partition_for_key(k, total_parts)).collect());
        let key_weight = |id: u32| match args.key {
            KeyDist::Zipf => zipf_weight(id as usize, args.zipf_exponent),
            _ => 1.0,
        };
        // Each leader's share of the records.
        let mut plans: Vec<(String, Vec<i32>, f64, Option<KeySampler>)> = Vec::new();
        for (addr, parts) in &leaders {
            if keyed {
                let ids: Vec<u32> =
                    (0..nkeys as u32).filter(|&k| parts.contains(&(key_partition[k as usize] as i32))).collect();
                if ids.is_empty() {
                    eprintln!("note: no key maps to a partition led by {addr}; it gets no records");
                    continue;
                }
                let w: f64 = ids.iter().map(|&k| key_weight(k)).sum();
                let sampler = match args.key {
                    KeyDist::Zipf => KeySampler::zipf(ids, args.zipf_exponent),
                    _ => KeySampler::uniform(ids),
                };
                plans.push((addr.clone(), parts.clone(), w, Some(sampler)));
            } else {
                plans.push((addr.clone(), parts.clone(), parts.len() as f64, None));
            }
        }
        let mut weights = Vec::new();
        for _ in 0..args.producers {
            for p in &plans {
                weights.push(p.2);
            }
        }
        let wsum: f64 = weights.iter().sum();
        let limits = args.records.map(|n| producer::split_counts(n, &weights));
        let pool = Arc::new(value_pool(args.record_size_max()));
        let mut idx = 0;
        for pid in 0..args.producers {
            for (addr, parts, w, sampler) in &plans {
                let conn = Conn::connect(addr)?;
                let v = Chosen::from(&conn.versions)?;
                let stream = conn.stream.try_clone().context("cloning socket")?;
                let reader = conn.into_reader();
                let cfg = ProducerCfg {
                    id: idx,
                    topic: args.topic.clone(),
                    addr: addr.clone(),
                    partitions: parts.clone(),
                    total_partitions: total_parts,
                    sampler: sampler.clone(),
                    keys: keys.clone(),
                    key_partition: key_partition.clone(),
                    record_size: args.record_size,
                    record_size_max: args.record_size_max(),
                    batch_records: args.batch_records,
                    batch_bytes: args.batch_bytes(),
                    linger: Duration::from_millis(args.linger_ms),
                    acks: args.acks(),
                    codec: args.compression,
                    inflight: args.inflight,
                    rate: args.rate * w / wsum,
                    records_limit: limits.as_ref().map(|l| l[idx]),
                    max_request_bytes: args.max_request_bytes,
                    timeout_ms: args.request_timeout_ms,
                    value_pool: pool.clone(),
                    core: cores.next(),
                    reader_core: cores.next(),
                };
                let _ = pid;
                prod_handles.extend(producer::spawn(cfg, stream, reader, v.produce, sh.clone(), pstats.clone()));
                idx += 1;
            }
        }
    }

    // ---------------- control loop ----------------
    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let duration =
        args.duration.or(if args.records.is_some() { None } else { Some(10.0) }).map(Duration::from_secs_f64);
    let mut measure: Option<(Instant, Counts, Counts, f64, Option<ProcCpu>)> = if warmup.is_zero() {
        Some((start, Counts::default(), Counts::default(), cpu_start, broker_start))
    } else {
        None
    };
    let mut prod_end: Option<(Instant, Counts)> = None;
    let mut cons_end: Option<(Instant, Counts)> = None;
    // The broker's CPU when the later of the two streams ended.
    let mut broker_end: Option<ProcCpu> = None;
    let mut next_print = start + Duration::from_secs(1);
    let mut last = (Counts::default(), Counts::default(), start);
    let mut timeline: Vec<Value> = Vec::new();
    let cons_name = if args.mode == Mode::E2e { "e2e" } else { "consume" };
    // One timeline entry (and progress line) for the interval since `last`.
    let mut tick = |now: Instant, last: &mut (Counts, Counts, Instant), partial: bool| {
        let (p, c) = (pstats.counts(), cstats.counts());
        let dt = (now - last.2).as_secs_f64();
        let warm = now < start + warmup;
        let mut line = format!("[{:>6.1}s]{}", (now - start).as_secs_f64(), if warm { " warmup" } else { "" });
        let mut sample = json!({"t": (now - start).as_secs_f64(), "secs": dt, "warmup": warm});
        if partial {
            sample["partial"] = json!(true);
        }
        let mut part = |name: &str, s: &Stats, cur: Counts, prev: Counts| {
            let iv = report::interval_json(&cur, &prev, dt, &s.take_interval());
            line.push_str(&format!(
                " {name} {:>10.0} rec/s {:>8.2} MB/s p99 {:>8.3} ms |",
                iv["records_per_sec"].as_f64().unwrap_or(0.0),
                iv["mb_per_sec"].as_f64().unwrap_or(0.0),
                iv["p99_ms"].as_f64().unwrap_or(0.0),
            ));
            sample[name] = iv;
        };
        if has_prod {
            part("produce", &pstats, p, last.0);
        }
        if has_cons {
            part(cons_name, &cstats, c, last.1);
        }
        line.push_str(&format!(" errors {}", p.errors + c.errors));
        if !partial {
            eprintln!("{line}");
        }
        timeline.push(sample);
        *last = (p, c, now);
    };
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if measure.is_none() && now >= start + warmup {
            pstats.reset_totals();
            cstats.reset_totals();
            measure = Some((now, pstats.counts(), cstats.counts(), process_cpu_seconds(), broker_cpu()));
            if !warmup.is_zero() {
                eprintln!("warmup done, measuring");
            }
        }
        let deadline = duration.map(|d| start + warmup + d);
        if has_prod && prod_end.is_none() {
            if deadline.is_some_and(|d| now >= d) {
                sh.stop.store(true, Ordering::Relaxed);
                prod_end = Some((now, pstats.counts()));
                broker_end = broker_cpu();
            } else if all_finished(&prod_handles) {
                prod_end = Some((now, pstats.counts()));
                broker_end = broker_cpu();
            }
        }
        if has_cons && cons_end.is_none() {
            let done = all_finished(&cons_handles);
            let finish = match args.mode {
                Mode::Consume => done || deadline.is_some_and(|d| now >= d),
                _ => {
                    done || prod_end.is_some_and(|(t, _)| {
                        consumed.load(Ordering::Relaxed) >= pstats.records.load(Ordering::Relaxed)
                            && all_finished(&prod_handles)
                            || now >= t + Duration::from_secs_f64(args.drain_secs)
                    })
                }
            };
            if finish {
                sh.stop_consumers.store(true, Ordering::Relaxed);
                cons_end = Some((now, cstats.counts()));
                broker_end = broker_cpu();
            }
        }
        if now >= next_print {
            tick(now, &mut last, false);
            next_print += Duration::from_secs(1);
        }
        if (!has_prod || prod_end.is_some()) && (!has_cons || cons_end.is_some()) {
            break;
        }
    }
    let end_cpu = process_cpu_seconds();
    // The rest of the last second, if it is more than a sliver.
    let now = Instant::now();
    if (now - last.2).as_secs_f64() >= 0.1 {
        tick(now, &mut last, true);
    }
    for h in prod_handles.into_iter().chain(cons_handles) {
        let _ = h.join();
    }
    let (m_start, p_base, c_base, m_cpu, m_broker) =
        measure.unwrap_or((start, Counts::default(), Counts::default(), cpu_start, broker_start));
    let mut streams = serde_json::Map::new();
    let mut secs_primary = 0.0;
    let mut all_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_errors = 0;
    let mut produced_records = 0;
    let mut window_end = m_start;
    if let Some((t, c)) = prod_end {
        let secs = (t - m_start).as_secs_f64();
        let mut c = c - p_base;
        c.errors = pstats.counts().errors;
        produced_records = c.records;
        let kind = if args.acks() == 0 { "none (acks=0)" } else { "produce" };
        let s = report::stream_json(kind, &c, secs, &pstats.total(), &pstats.error_kinds(), &pstats.retry_kinds());
        streams.insert("produce".into(), s);
        total_errors += c.errors;
        secs_primary = secs;
        window_end = window_end.max(t);
        for (k, v) in pstats.error_kinds() {
            all_errors.insert(format!("produce: {k}"), v);
        }
    }
    if let Some((t, c)) = cons_end {
        let secs = (t - m_start).as_secs_f64();
        let mut c = c - c_base;
        c.errors = cstats.counts().errors;
        let kind = if args.mode == Mode::E2e { "e2e" } else { "fetch" };
        let s = report::stream_json(kind, &c, secs, &cstats.total(), &cstats.error_kinds(), &cstats.retry_kinds());
        streams.insert("consume".into(), s);
        total_errors += c.errors;
        if args.mode == Mode::E2e && c.records < produced_records {
            // Records acknowledged but never seen by a consumer are errors too.
            let missing = produced_records - c.records;
            let k = "e2e: acknowledged records not consumed before the drain timeout".to_string();
            all_errors.insert(k, missing);
            total_errors += missing;
        }
        if args.mode != Mode::Produce {
            secs_primary = if args.mode == Mode::E2e { secs_primary } else { secs };
        }
        window_end = window_end.max(t);
        for (k, v) in cstats.error_kinds() {
            all_errors.insert(format!("consume: {k}"), v);
        }
    }
    let primary_name = if args.mode == Mode::Produce { "produce" } else { "consume" };
    let primary = streams[primary_name].clone();
    // CPU per 10^9 bytes of record values: produced ones (produce, e2e) or consumed ones.
    let cpu_stream = if args.mode == Mode::Consume { "consume" } else { "produce" };
    let gb = streams.get(cpu_stream).and_then(|s| s["bytes"].as_u64()).unwrap_or(0) as f64 / 1e9;
    let per_gb = |secs: f64| if gb > 0.0 { json!(secs / gb) } else { Value::Null };
    let cpu_window = end_cpu - m_cpu;
    let wall = (window_end - m_start).as_secs_f64().max(1e-9);
    let encode_secs = sh.cpu.encode_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let generated = sh.cpu.generated.load(Ordering::Relaxed).max(1);
    let mut report = json!({
        "mode": args.mode,
        "records_per_sec": primary["records_per_sec"],
        "mb_per_sec": primary["mb_per_sec"],
        "records": primary["records"],
        "bytes": primary["bytes"],
        "errors": total_errors,
        "error_kinds": all_errors,
        "latency_kind": primary["latency_kind"],
        "latency_ms": primary["latency_ms"],
        "streams": streams,
        "duration_secs": if args.mode == Mode::Consume { primary_secs(&cons_end, m_start) } else { secs_primary },
        "warmup_secs": args.warmup,
        "client_cpu_seconds": cpu_window,
        "client_cpu_cores": cpu_window / wall,
        "client_cpu_seconds_total": end_cpu,
        "client_cpu_by_role": sh.cpu.snapshot(),
        "client_cpu_seconds_per_gb": per_gb(cpu_window),
        "cpu_per_gb_of": cpu_stream,
        "params": effective_params(args, duration.map(|d| d.as_secs_f64()))?,
        "machine": report::machine(),
        "topic_partitions": total_parts,
        "leaders": leaders.keys().collect::<Vec<_>>(),
        "api_versions": chosen,
    });
    report["timeline"] = Value::Array(timeline);
    if let Some(pid) = args.broker_pid {
        report["broker_pid"] = json!(pid);
        if let (Some(a), Some(b)) = (m_broker, broker_end) {
            let d = b.since(&a);
            report["broker_cpu_seconds"] = json!(d.total());
            report["broker_cpu_user_seconds"] = json!(d.user_secs);
            report["broker_cpu_system_seconds"] = json!(d.system_secs);
            report["broker_cpu_cores"] = json!(d.total() / wall);
            report["broker_cpu_seconds_per_gb"] = per_gb(d.total());
        }
    }
    if has_prod {
        report["encode_secs"] = json!(encode_secs);
        report["records_generated"] = json!(generated);
        report["encode_ns_per_record"] = json!(encode_secs * 1e9 / generated as f64);
    }
    for k in report::REQUIRED_KEYS {
        assert!(!report[*k].is_null(), "report is missing required key {k}");
    }
    Ok(report)
}

/// All options as given, with defaults that depend on other options filled in.
fn effective_params(args: &Args, duration: Option<f64>) -> Result<Value> {
    let mut p = serde_json::to_value(args)?;
    p["record_size_max"] = json!(args.record_size_max());
    if args.batch_records.is_none() {
        p["batch_bytes"] = json!(args.batch_bytes());
    }
    p["duration"] = json!(duration);
    Ok(p)
}

fn primary_secs(end: &Option<(Instant, Counts)>, m_start: Instant) -> f64 {
    end.map_or(0.0, |(t, _)| (t - m_start).as_secs_f64())
}

fn main() -> ExitCode {
    // Large response and request buffers are reused from the malloc arenas
    // instead of being mmapped, faulted in and unmapped each time.
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
    let args = Args::parse();
    if let Err(e) = args.validate() {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let report = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report::table(&report));
    let _ = std::io::stdout().flush();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: writing {path}: {e}");
            return ExitCode::from(2);
        }
    }
    let errors = report["errors"].as_u64().unwrap_or(0);
    if errors > 0 && !args.allow_errors {
        eprintln!("{errors} error(s) counted; exiting non-zero (use --allow-errors to ignore)");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_report_has_required_keys() {
        // Build a report the way `run` does, from synthetic stream figures.
        let mut h = stats::new_hist();
        h.record(1500).unwrap();
        let c = Counts { records: 1000, bytes: 100_000, wire_bytes: 110_000, requests: 10, errors: 0, retries: 0 };
        let s = report::stream_json("produce", &c, 2.0, &h, &BTreeMap::new(), &BTreeMap::new());
        let args = Args::parse_from(["ringbroker-bench", "produce", "--topic", "t", "--acks", "1"]);
        let r = json!({
            "mode": args.mode,
            "records_per_sec": s["records_per_sec"],
            "mb_per_sec": s["mb_per_sec"],
            "records": s["records"],
            "errors": 0,
            "latency_ms": s["latency_ms"],
            "params": serde_json::to_value(&args).unwrap(),
            "machine": report::machine(),
            "client_cpu_seconds": 0.1,
            "duration_secs": 2.0,
            "streams": {"produce": s},
        });
        for k in report::REQUIRED_KEYS {
            assert!(!r[k].is_null(), "missing {k}");
        }
        for k in ["p50", "p90", "p95", "p99", "p999", "p9999", "max"] {
            assert!(r["latency_ms"][k].is_number(), "latency_ms.{k}");
        }
        assert_eq!(r["streams"]["produce"]["latency_percentiles"].as_array().unwrap().len(), 19);
        assert_eq!(r["records_per_sec"].as_f64(), Some(500.0));
        assert_eq!(r["mode"], "produce");
        assert_eq!(r["params"]["acks"], "1");
        assert!(r["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(report::table(&r).contains("produce"));
    }

    #[test]
    fn cli_parses_every_option() {
        let a = Args::parse_from([
            "ringbroker-bench",
            "e2e",
            "--bootstrap",
            "127.0.0.1:1",
            "--topic",
            "x",
            "--partitions",
            "16",
            "--record-size",
            "100",
            "--record-size-max",
            "200",
            "--key",
            "zipf",
            "--keys",
            "50",
            "--batch-records",
            "100",
            "--linger-ms",
            "2",
            "--acks",
            "all",
            "--compression",
            "lz4",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--inflight",
            "8",
            "--rate",
            "1000",
            "--duration",
            "5",
            "--warmup",
            "1",
            "--pin",
            "--json",
            "/tmp/x.json",
            "--broker-pid",
            "4242",
        ]);
        a.validate().unwrap();
        assert_eq!((a.acks(), a.record_size_max(), a.mode, a.broker_pid), (-1, 200, Mode::E2e, Some(4242)));
        assert!(Args::try_parse_from(["b", "produce", "--batch-records", "1", "--batch-bytes", "2"]).is_err());
        let bad = Args::parse_from(["b", "produce", "--record-size", "10", "--record-size-max", "5"]);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn split_counts_sums() {
        let s = producer::split_counts(1001, &[1.0, 1.0, 2.0]);
        assert_eq!(s.iter().sum::<u64>(), 1001);
        assert_eq!(s[2], 500);
    }
}
