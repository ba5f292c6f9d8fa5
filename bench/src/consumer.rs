//! Consumer connections: a Fetch loop over a set of partitions on one leader.

use crate::client::{topic_name_of, Conn};
use crate::encode::walk_record_set;
use crate::producer::Shared;
use crate::stats::{thread_cpu_seconds, HistPair, Stats};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::FetchRequest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    /// Fetch request -> response.
    Fetch,
    /// Record CreateTime -> receipt.
    EndToEnd,
}

pub struct ConsumerCfg {
    pub id: usize,
    pub topic: String,
    pub partitions: Vec<i32>,
    pub start: HashMap<i32, i64>,
    /// Stop once every partition reaches these offsets (consume mode).
    pub end: Option<HashMap<i32, i64>>,
    /// Stop once `consumed` reaches this many records (all consumers).
    pub records_limit: Option<u64>,
    pub latency: LatencyKind,
    pub max_wait_ms: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    pub version: i16,
    pub core: Option<core_affinity::CoreId>,
}

pub fn spawn(
    cfg: ConsumerCfg,
    conn: Conn,
    sh: Arc<Shared>,
    stats: Arc<Stats>,
    consumed: Arc<AtomicU64>,
) -> JoinHandle<()> {
    let hist = stats.register();
    thread::Builder::new()
        .name(format!("cons{}", cfg.id))
        .spawn(move || {
            if let Some(c) = cfg.core {
                core_affinity::set_for_current(c);
            }
            run(cfg, conn, &sh, &stats, &hist, &consumed);
            sh.cpu.add("consumer", thread_cpu_seconds());
        })
        .expect("spawn consumer")
}

fn run(cfg: ConsumerCfg, mut conn: Conn, sh: &Shared, stats: &Stats, hist: &Mutex<HistPair>, consumed: &AtomicU64) {
    let mut offsets: Vec<(i32, i64)> = cfg.partitions.iter().map(|p| (*p, cfg.start[p])).collect();
    let topic = topic_name_of(&cfg.topic);
    let clock = sh.clock;
    let mut lats: Vec<u64> = Vec::with_capacity(4096);
    loop {
        if sh.stop_consumers.load(Ordering::Relaxed) {
            return;
        }
        if let Some(limit) = cfg.records_limit {
            if consumed.load(Ordering::Relaxed) >= limit {
                return;
            }
        }
        if let Some(end) = &cfg.end {
            if offsets.iter().all(|(p, o)| *o >= end[p]) {
                return;
            }
        }
        let parts = offsets
            .iter()
            .map(|&(p, o)| {
                FetchPartition::default()
                    .with_partition(p)
                    .with_fetch_offset(o)
                    .with_partition_max_bytes(cfg.partition_max_bytes)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        let req = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(cfg.max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(cfg.max_bytes)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(parts)]);
        let t0 = Instant::now();
        let resp = match conn.call(&req, cfg.version) {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("fetch from {} failed: {e:#}", conn.addr), 1);
                return;
            }
        };
        let got = Instant::now();
        let now_us = clock.unix_us(got);
        if resp.error_code != 0 {
            stats.error(format!("fetch error code {}", resp.error_code), 1);
            if sh.stop_consumers.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(std::time::Duration::from_millis(100));
            continue;
        }
        let (mut recs, mut bytes, mut wire) = (0u64, 0u64, 0u64);
        lats.clear();
        let mut partition_errors = false;
        for t in &resp.responses {
            for pd in &t.partitions {
                let Some(slot) = offsets.iter_mut().find(|(p, _)| *p == pd.partition_index) else {
                    stats.error("fetch response for a partition not asked for", 1);
                    continue;
                };
                if pd.error_code != 0 {
                    stats.error(format!("fetch partition error code {}", pd.error_code), 1);
                    partition_errors = true;
                    continue;
                }
                let Some(data) = &pd.records else { continue };
                let e2e = cfg.latency == LatencyKind::EndToEnd;
                match walk_record_set(data, slot.1, |ts_ms| {
                    if e2e {
                        lats.push((now_us - ts_ms * 1000).max(1) as u64);
                    }
                }) {
                    Ok(s) => {
                        slot.1 = s.next_offset;
                        recs += s.records;
                        bytes += s.payload_bytes;
                        wire += s.wire_bytes;
                    }
                    Err(e) => {
                        stats.error(format!("bad fetched data for partition {}: {e:#}", pd.partition_index), 1);
                        return;
                    }
                }
            }
        }
        if partition_errors {
            // Back off instead of hammering the broker with the same failing fetch.
            thread::sleep(std::time::Duration::from_millis(100));
        }
        stats.add(recs, bytes, wire);
        consumed.fetch_add(recs, Ordering::Relaxed);
        let mut h = hist.lock().unwrap();
        match cfg.latency {
            LatencyKind::Fetch => h.record((got - t0).as_micros() as u64),
            LatencyKind::EndToEnd => {
                for &l in &lats {
                    h.record(l);
                }
            }
        }
    }
}
