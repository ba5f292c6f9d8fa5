//! Consumer connections: a Fetch loop over a set of partitions on one leader.

use crate::client::{decode_response, topic_name_of, Conn};
use crate::encode::{next_fetch_offset, walk_record_set};
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

/// The fetch loop. Like the fetcher of a real consumer, it works one fetch
/// ahead of the application: as soon as a response arrives, the next fetch
/// offsets are read from the batch headers and the next request is sent,
/// and only then are the records of this response walked. The broker then
/// prepares fetch N+1 while the client decodes fetch N, instead of the two
/// taking turns.
fn run(cfg: ConsumerCfg, mut conn: Conn, sh: &Shared, stats: &Stats, hist: &Mutex<HistPair>, consumed: &AtomicU64) {
    let mut offsets: Vec<(i32, i64)> = cfg.partitions.iter().map(|p| (*p, cfg.start[p])).collect();
    let topic = topic_name_of(&cfg.topic);
    let clock = sh.clock;
    let mut lats: Vec<u64> = Vec::with_capacity(4096);
    let send = |conn: &mut Conn, offsets: &[(i32, i64)]| -> anyhow::Result<(i32, Instant)> {
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
        Ok((conn.send(&req, cfg.version)?, t0))
    };
    let finished = |offsets: &[(i32, i64)]| {
        sh.stop_consumers.load(Ordering::Relaxed)
            || cfg.records_limit.is_some_and(|limit| consumed.load(Ordering::Relaxed) >= limit)
            || cfg.end.as_ref().is_some_and(|end| offsets.iter().all(|(p, o)| *o >= end[p]))
    };
    if finished(&offsets) {
        return;
    }
    let mut in_flight = match send(&mut conn, &offsets) {
        Ok(x) => x,
        Err(e) => {
            stats.error(format!("fetch from {} failed: {e:#}", conn.addr), 1);
            return;
        }
    };
    loop {
        let (corr, t0) = in_flight;
        let resp = match conn.recv_frame().and_then(|f| decode_response::<FetchRequest>(f, cfg.version, corr)) {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("fetch from {} failed: {e:#}", conn.addr), 1);
                return;
            }
        };
        let got = Instant::now();
        let now_us = clock.unix_us(got);
        // Where each partition continues, from batch headers only.
        let fetched: Vec<(i32, i64)> = offsets.clone();
        let mut failed = resp.error_code != 0;
        if failed {
            stats.error(format!("fetch error code {}", resp.error_code), 1);
        }
        for t in &resp.responses {
            for pd in &t.partitions {
                let Some(slot) = offsets.iter_mut().find(|(p, _)| *p == pd.partition_index) else {
                    stats.error("fetch response for a partition not asked for", 1);
                    continue;
                };
                if pd.error_code != 0 {
                    stats.error(format!("fetch partition error code {}", pd.error_code), 1);
                    failed = true;
                    continue;
                }
                if let Some(data) = &pd.records {
                    slot.1 = next_fetch_offset(data, slot.1);
                }
            }
        }
        if failed {
            thread::sleep(std::time::Duration::from_millis(100));
        }
        let done = finished(&offsets);
        if !done {
            in_flight = match send(&mut conn, &offsets) {
                Ok(x) => x,
                Err(e) => {
                    stats.error(format!("fetch from {} failed: {e:#}", conn.addr), 1);
                    return;
                }
            };
        }
        // Now the records of this response.
        let (mut recs, mut bytes, mut wire) = (0u64, 0u64, 0u64);
        lats.clear();
        let e2e = cfg.latency == LatencyKind::EndToEnd;
        for t in &resp.responses {
            for pd in &t.partitions {
                let (Some(data), 0) = (&pd.records, pd.error_code) else { continue };
                let Some(&(_, from)) = fetched.iter().find(|(p, _)| *p == pd.partition_index) else { continue };
                match walk_record_set(data, from, |created_us| {
                    if e2e {
                        lats.push((now_us - created_us).max(1) as u64);
                    }
                }) {
                    Ok(s) => {
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
        drop(h);
        if done || finished(&offsets) {
            return;
        }
    }
}
