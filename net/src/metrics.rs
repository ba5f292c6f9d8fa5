//! Per-shard counters, exported in Prometheus text format on the admin port.
//!
//! Each shard writes only its own `ShardMetrics` (relaxed atomics, no
//! contention: one writer per cache line set); the admin endpoint sums them.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Upper bounds of latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 10_000_000];
/// Kafka API keys we keep a histogram for (index = api key).
pub const MAX_API_KEY: usize = 75;

pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record_us(&self, us: u64) {
        let i = LATENCY_BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

pub struct ShardMetrics {
    pub produce_records: AtomicU64,
    pub produce_bytes: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub fetch_cache_hits: AtomicU64,
    pub fetch_disk_reads: AtomicU64,
    pub connections: AtomicI64,
    pub connections_accepted: AtomicU64,
    pub partitions: AtomicI64,
    pub groups: AtomicI64,
    pub cache_bytes: AtomicI64,
    pub flushes: AtomicU64,
    pub flush_latency: Histogram,
    pub requests: [AtomicU64; MAX_API_KEY],
    pub request_errors: AtomicU64,
    pub request_latency: [Histogram; MAX_API_KEY],
    /// The metadata quorum as this broker sees it (set on shard 0 only).
    pub quorum: QuorumMetrics,
}

/// The metadata quorum's state on this broker.
#[derive(Debug)]
pub struct QuorumMetrics {
    /// Node id of the active controller, -1 while none is known.
    pub leader: AtomicI64,
    pub term: AtomicU64,
    pub commit_index: AtomicU64,
    pub applied_index: AtomicU64,
}

impl Default for QuorumMetrics {
    fn default() -> Self {
        QuorumMetrics {
            leader: AtomicI64::new(-1),
            term: Default::default(),
            commit_index: Default::default(),
            applied_index: Default::default(),
        }
    }
}

impl ShardMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(ShardMetrics {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            request_latency: std::array::from_fn(|_| Histogram::default()),
            quorum: QuorumMetrics::default(),
            produce_records: Default::default(),
            produce_bytes: Default::default(),
            fetch_bytes: Default::default(),
            fetch_cache_hits: Default::default(),
            fetch_disk_reads: Default::default(),
            connections: Default::default(),
            connections_accepted: Default::default(),
            partitions: Default::default(),
            groups: Default::default(),
            cache_bytes: Default::default(),
            flushes: Default::default(),
            flush_latency: Default::default(),
            request_errors: Default::default(),
        })
    }
    pub fn record_request(&self, api_key: i16, us: u64) {
        if let Some(c) = self.requests.get(api_key as usize) {
            c.fetch_add(1, Relaxed);
            self.request_latency[api_key as usize].record_us(us);
        }
    }
}

fn api_name(key: usize) -> String {
    kafka_protocol::messages::ApiKey::try_from(key as i16).map(|k| format!("{k:?}")).unwrap_or_else(|_| key.to_string())
}

/// Renders all shards' metrics, summed, in Prometheus text format.
pub fn render(shards: &[Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    let sum = |f: &dyn Fn(&ShardMetrics) -> u64| shards.iter().map(|s| f(s)).sum::<u64>();
    let counters: [(&str, &str, u64); 8] = [
        ("ringbroker_produce_records_total", "Records appended by Produce", sum(&|s| s.produce_records.load(Relaxed))),
        (
            "ringbroker_produce_bytes_total",
            "Record batch bytes appended by Produce",
            sum(&|s| s.produce_bytes.load(Relaxed)),
        ),
        ("ringbroker_fetch_bytes_total", "Record batch bytes returned by Fetch", sum(&|s| s.fetch_bytes.load(Relaxed))),
        (
            "ringbroker_fetch_cache_hits_total",
            "Fetch partition reads served from the batch cache",
            sum(&|s| s.fetch_cache_hits.load(Relaxed)),
        ),
        (
            "ringbroker_fetch_disk_reads_total",
            "Fetch partition reads served from segment files",
            sum(&|s| s.fetch_disk_reads.load(Relaxed)),
        ),
        (
            "ringbroker_connections_accepted_total",
            "Client connections accepted",
            sum(&|s| s.connections_accepted.load(Relaxed)),
        ),
        ("ringbroker_flushes_total", "Segment flushes (write + fdatasync)", sum(&|s| s.flushes.load(Relaxed))),
        (
            "ringbroker_request_errors_total",
            "Requests that closed their connection as malformed",
            sum(&|s| s.request_errors.load(Relaxed)),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
    let gauges: [(&str, &str, i64); 4] = [
        ("ringbroker_connections", "Open client connections", shards.iter().map(|s| s.connections.load(Relaxed)).sum()),
        (
            "ringbroker_partitions",
            "Partitions owned by this broker",
            shards.iter().map(|s| s.partitions.load(Relaxed)).sum(),
        ),
        (
            "ringbroker_groups",
            "Consumer groups coordinated by this broker",
            shards.iter().map(|s| s.groups.load(Relaxed)).sum(),
        ),
        (
            "ringbroker_batch_cache_bytes",
            "Bytes of recent batches held in memory (write queue and read cache), sampled each second",
            shards.iter().map(|s| s.cache_bytes.load(Relaxed)).sum(),
        ),
    ];
    for (name, help, v) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    if let Some(q) = shards.first().map(|s| &s.quorum) {
        let quorum: [(&str, &str, i64); 4] = [
            (
                "ringbroker_metadata_quorum_leader",
                "Node id of the active controller (metadata quorum leader), -1 while none is known",
                q.leader.load(Relaxed),
            ),
            ("ringbroker_metadata_quorum_term", "Current term of the metadata quorum", q.term.load(Relaxed) as i64),
            (
                "ringbroker_metadata_quorum_commit_index",
                "Highest metadata log index known committed",
                q.commit_index.load(Relaxed) as i64,
            ),
            (
                "ringbroker_metadata_quorum_applied_index",
                "Highest metadata log index applied to this broker's image",
                q.applied_index.load(Relaxed) as i64,
            ),
        ];
        for (name, help, v) in quorum {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP ringbroker_requests_total Requests handled, by API\n# TYPE ringbroker_requests_total counter"
    );
    for k in 0..MAX_API_KEY {
        let v = sum(&|s| s.requests[k].load(Relaxed));
        if v > 0 {
            let _ = writeln!(out, "ringbroker_requests_total{{api=\"{}\"}} {v}", api_name(k));
        }
    }
    let _ = writeln!(out, "# HELP ringbroker_request_latency_seconds Request latency, by API\n# TYPE ringbroker_request_latency_seconds histogram");
    for k in 0..MAX_API_KEY {
        if sum(&|s| s.request_latency[k].count.load(Relaxed)) > 0 {
            write_histogram(
                &mut out,
                "ringbroker_request_latency_seconds",
                &format!("api=\"{}\",", api_name(k)),
                shards,
                &|s| &s.request_latency[k],
            );
        }
    }
    let _ = writeln!(out, "# HELP ringbroker_flush_latency_seconds Flush (write + fdatasync) latency\n# TYPE ringbroker_flush_latency_seconds histogram");
    write_histogram(&mut out, "ringbroker_flush_latency_seconds", "", shards, &|s| &s.flush_latency);
    out
}

fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    shards: &[Arc<ShardMetrics>],
    h: &dyn Fn(&ShardMetrics) -> &Histogram,
) {
    let mut cumulative = 0;
    for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
        cumulative += shards.iter().map(|s| h(s).buckets[i].load(Relaxed)).sum::<u64>();
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{}\"}} {cumulative}", *b as f64 / 1e6);
    }
    cumulative += shards.iter().map(|s| h(s).buckets[LATENCY_BUCKETS_US.len()].load(Relaxed)).sum::<u64>();
    let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cumulative}");
    let sum_us: u64 = shards.iter().map(|s| h(s).sum_us.load(Relaxed)).sum();
    let labels = labels.trim_end_matches(',');
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{braces} {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums_across_shards() {
        let a = ShardMetrics::new();
        let b = ShardMetrics::new();
        a.produce_records.fetch_add(3, Relaxed);
        b.produce_records.fetch_add(4, Relaxed);
        a.record_request(0, 120);
        b.flush_latency.record_us(20_000_000);
        let t = render(&[a, b]);
        assert!(t.contains("ringbroker_produce_records_total 7"));
        assert!(t.contains("ringbroker_requests_total{api=\"Produce\"} 1"));
        assert!(t.contains("ringbroker_flush_latency_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(t.contains("ringbroker_request_latency_seconds_count{api=\"Produce\"} 1"));
    }
}
