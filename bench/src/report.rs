//! Final report: a table on stdout and JSON.

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::stats::Counts;

/// Percentiles in milliseconds.
pub fn latency_ms(h: &Histogram<u64>) -> Value {
    let q = |p: f64| quantile_ms(h, p);
    json!({
        "p50": q(0.50),
        "p90": q(0.90),
        "p95": q(0.95),
        "p99": q(0.99),
        "p999": q(0.999),
        "p9999": q(0.9999),
        "max": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        "mean": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "count": h.len(),
    })
}

/// The value at quantile `q` in milliseconds (0 for an empty histogram).
fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Quantiles of the `latency_percentiles` curve: 0 (the minimum) to 1 (the
/// maximum), denser towards the tail (about three points per nine).
pub const CURVE_QUANTILES: &[f64] = &[
    0.0, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 0.99995,
    0.99999, 1.0,
];

/// `[[quantile, ms], ...]` over [`CURVE_QUANTILES`] (empty for an empty histogram).
pub fn latency_percentiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!([]);
    }
    Value::Array(
        CURVE_QUANTILES
            .iter()
            .map(|&q| {
                let v = if q >= 1.0 { h.max() } else { h.value_at_quantile(q) };
                json!([q, v as f64 / 1000.0])
            })
            .collect(),
    )
}

/// One stream over one progress interval (`secs` long) of the timeline:
/// the counter deltas and the interval's latency histogram.
pub fn interval_json(cur: &Counts, prev: &Counts, secs: f64, h: &Histogram<u64>) -> Value {
    let d = *cur - *prev;
    let secs = secs.max(1e-9);
    json!({
        "records": d.records,
        "bytes": d.bytes,
        "requests": d.requests,
        "records_per_sec": d.records as f64 / secs,
        "mb_per_sec": d.bytes as f64 / secs / 1e6,
        "p50_ms": quantile_ms(h, 0.5),
        "p90_ms": quantile_ms(h, 0.9),
        "p99_ms": quantile_ms(h, 0.99),
        "p999_ms": quantile_ms(h, 0.999),
        "max_ms": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
        "latency_count": h.len(),
        "errors": d.errors,
        "retries": d.retries,
    })
}

/// One stream's figures over the measured window.
pub fn stream_json(
    kind: &str,
    c: &Counts,
    secs: f64,
    h: &Histogram<u64>,
    errors: &BTreeMap<String, u64>,
    retries: &BTreeMap<String, u64>,
) -> Value {
    let secs = secs.max(1e-9);
    json!({
        "records": c.records,
        "bytes": c.bytes,
        "wire_bytes": c.wire_bytes,
        "requests": c.requests,
        "errors": c.errors,
        "error_kinds": errors,
        "retries": c.retries,
        "retry_kinds": retries,
        "records_per_sec": c.records as f64 / secs,
        "mb_per_sec": c.bytes as f64 / secs / 1e6,
        "wire_mb_per_sec": c.wire_bytes as f64 / secs / 1e6,
        "latency_kind": kind,
        "latency_ms": latency_ms(h),
        "latency_percentiles": latency_percentiles(h),
    })
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Cores, CPU model, kernel and disk models of this machine.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores_cpuinfo = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let cores =
        if cores_cpuinfo > 0 { cores_cpuinfo } else { std::thread::available_parallelism().map_or(0, usize::from) };
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string());
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(uname_release);
    let mut disks = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        let mut names: Vec<String> =
            rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names {
            if n.starts_with("loop") || n.starts_with("ram") {
                continue;
            }
            let model = read_trim(&format!("/sys/block/{n}/device/model"));
            let rotational = read_trim(&format!("/sys/block/{n}/queue/rotational"));
            disks.push(json!({"name": n, "model": model, "rotational": rotational.map(|r| r == "1")}));
        }
    }
    json!({
        "cores": cores,
        "usable_cores": std::thread::available_parallelism().map_or(0, usize::from),
        "cpu_model": model,
        "kernel": kernel,
        "disks": disks,
    })
}

fn uname_release() -> String {
    // SAFETY: uname fills the struct; release is NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    }
}

/// Human-readable table of the report.
pub fn table(report: &Value) -> String {
    let mut out = String::new();
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    out.push_str(&format!(
        "ringbroker-bench {} — {} s measured (warmup {} s)\n",
        report["mode"].as_str().unwrap_or("?"),
        fmt_num(f(&report["duration_secs"]), 2),
        fmt_num(f(&report["warmup_secs"]), 0),
    ));
    out.push_str(&format!(
        "{:<10} {:>12} {:>14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
        "stream",
        "records",
        "records/s",
        "MB/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p99.9 ms",
        "p99.99 ms",
        "max ms",
        "latency",
        "errors"
    ));
    for name in ["produce", "consume"] {
        let s = &report["streams"][name];
        if s.is_null() {
            continue;
        }
        let l = &s["latency_ms"];
        out.push_str(&format!(
            "{:<10} {:>12} {:>14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}\n",
            name,
            s["records"].as_u64().unwrap_or(0),
            fmt_num(f(&s["records_per_sec"]), 0),
            fmt_num(f(&s["mb_per_sec"]), 2),
            fmt_num(f(&l["p50"]), 3),
            fmt_num(f(&l["p95"]), 3),
            fmt_num(f(&l["p99"]), 3),
            fmt_num(f(&l["p999"]), 3),
            fmt_num(f(&l["p9999"]), 3),
            fmt_num(f(&l["max"]), 3),
            s["latency_kind"].as_str().unwrap_or(""),
            s["errors"].as_u64().unwrap_or(0),
        ));
    }
    let per_gb = |v: &Value| if v.is_null() { String::new() } else { format!(", {} CPU s per GB", fmt_num(f(v), 2)) };
    out.push_str(&format!(
        "client CPU: {} s ({} cores busy on average{}; {})\n",
        fmt_num(f(&report["client_cpu_seconds"]), 2),
        fmt_num(f(&report["client_cpu_cores"]), 2),
        per_gb(&report["client_cpu_seconds_per_gb"]),
        report["client_cpu_by_role"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {} s", fmt_num(f(v), 2))).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    ));
    if !report["broker_cpu_seconds"].is_null() {
        out.push_str(&format!(
            "broker CPU (pid {}): {} s (user {} s, system {} s; {} cores busy on average{})\n",
            report["broker_pid"],
            fmt_num(f(&report["broker_cpu_seconds"]), 2),
            fmt_num(f(&report["broker_cpu_user_seconds"]), 2),
            fmt_num(f(&report["broker_cpu_system_seconds"]), 2),
            fmt_num(f(&report["broker_cpu_cores"]), 2),
            per_gb(&report["broker_cpu_seconds_per_gb"]),
        ));
    }
    if !report["encode_secs"].is_null() {
        out.push_str(&format!(
            "record generation + batch encoding: {} CPU s in writer threads ({} ns/record)\n",
            fmt_num(f(&report["encode_secs"]), 3),
            fmt_num(f(&report["encode_ns_per_record"]), 1)
        ));
    }
    for (k, v) in report["error_kinds"].as_object().into_iter().flatten() {
        out.push_str(&format!("error x{}: {k}\n", v));
    }
    for name in ["produce", "consume"] {
        for (k, v) in report["streams"][name]["retry_kinds"].as_object().into_iter().flatten() {
            out.push_str(&format!("retried x{v} ({name}): {k}\n"));
        }
    }
    out
}

fn fmt_num(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    // Thousands separators on the integer part.
    let (int, frac) = s.split_once('.').map_or((s.as_str(), None), |(a, b)| (a, Some(b)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(fr) => format!("{sign}{grouped}.{fr}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Keys every JSON report must carry at the top level.
pub const REQUIRED_KEYS: &[&str] = &[
    "records_per_sec",
    "mb_per_sec",
    "records",
    "errors",
    "latency_ms",
    "mode",
    "params",
    "machine",
    "client_cpu_seconds",
    "duration_secs",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn number_formatting() {
        assert_eq!(fmt_num(1234567.891, 2), "1,234,567.89");
        assert_eq!(fmt_num(999.0, 0), "999");
        assert_eq!(fmt_num(-1000.0, 0), "-1,000");
    }

    #[test]
    fn latency_percentiles_in_ms() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 1000).unwrap();
        }
        let l = latency_ms(&h);
        assert!((l["p50"].as_f64().unwrap() - 500.0).abs() < 1.0);
        assert!((l["max"].as_f64().unwrap() - 1000.0).abs() < 1.0);
        assert!((l["p95"].as_f64().unwrap() - 950.0).abs() < 1.0);
        assert!((l["p9999"].as_f64().unwrap() - 1000.0).abs() < 1.0);
        let e = latency_ms(&new_hist());
        assert_eq!(e["p99"].as_f64(), Some(0.0));
    }

    #[test]
    fn percentile_curve_is_monotonic_and_ends_at_the_max() {
        let mut h = new_hist();
        for v in 1..=100_000u64 {
            h.record(v).unwrap(); // 1 us .. 100 ms
        }
        let c = latency_percentiles(&h);
        let pts: Vec<(f64, f64)> =
            c.as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect();
        assert_eq!(pts.len(), CURVE_QUANTILES.len());
        assert_eq!(pts[0], (0.0, 0.001));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{pts:?}");
        let at = |q: f64| pts.iter().find(|p| p.0 == q).unwrap().1;
        assert!((at(0.5) - 50.0).abs() < 0.1);
        assert!((at(0.999) - 99.9).abs() < 0.1);
        assert!((at(1.0) - 100.0).abs() < 0.1);
        assert_eq!(latency_percentiles(&new_hist()), json!([]));
    }

    #[test]
    fn interval_figures_are_deltas_over_the_interval() {
        let prev = Counts { records: 1_000, bytes: 100_000, wire_bytes: 0, requests: 10, errors: 1, retries: 0 };
        let cur = Counts { records: 3_000, bytes: 300_000, wire_bytes: 0, requests: 30, errors: 3, retries: 2 };
        let mut h = new_hist();
        for v in [1_000u64, 2_000, 3_000, 40_000] {
            h.record(v).unwrap();
        }
        let s = interval_json(&cur, &prev, 0.5, &h);
        assert_eq!(s["records"], 2_000);
        assert_eq!(s["requests"], 20);
        assert_eq!(s["records_per_sec"].as_f64(), Some(4_000.0));
        assert_eq!(s["mb_per_sec"].as_f64(), Some(0.4));
        assert_eq!((s["errors"].as_u64(), s["retries"].as_u64()), (Some(2), Some(2)));
        assert!((s["p50_ms"].as_f64().unwrap() - 2.0).abs() < 0.01);
        assert!((s["max_ms"].as_f64().unwrap() - 40.0).abs() < 0.1);
        assert_eq!(s["latency_count"], 4);
        let idle = interval_json(&cur, &cur, 1.0, &new_hist());
        assert_eq!((idle["records_per_sec"].as_f64(), idle["p99_ms"].as_f64()), (Some(0.0), Some(0.0)));
    }
}
