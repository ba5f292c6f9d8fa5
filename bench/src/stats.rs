//! Shared counters, per-thread HDR histograms and CPU accounting.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn new_hist() -> Histogram<u64> {
    // 1 us .. 1 h, 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One thread's latency histograms: `interval` is drained by the progress
/// line every second, `total` feeds the final report (reset after warmup).
pub struct HistPair {
    pub interval: Histogram<u64>,
    pub total: Histogram<u64>,
}

impl HistPair {
    #[inline]
    pub fn record(&mut self, us: u64) {
        let v = us.max(1);
        self.interval.saturating_record(v);
        self.total.saturating_record(v);
    }
}

/// Counters and histograms of one stream (produce, consume).
pub struct Stats {
    pub name: &'static str,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub wire_bytes: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Batches sent again after a retriable error (produce).
    pub retries: AtomicU64,
    hists: Mutex<Vec<Arc<Mutex<HistPair>>>>,
    error_kinds: Mutex<BTreeMap<String, u64>>,
    retry_kinds: Mutex<BTreeMap<String, u64>>,
}

/// Snapshot of the counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub records: u64,
    pub bytes: u64,
    pub wire_bytes: u64,
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            records: self.records - o.records,
            bytes: self.bytes - o.bytes,
            wire_bytes: self.wire_bytes - o.wire_bytes,
            requests: self.requests - o.requests,
            errors: self.errors - o.errors,
            retries: self.retries - o.retries,
        }
    }
}

impl Stats {
    pub fn new(name: &'static str) -> Arc<Stats> {
        Arc::new(Stats {
            name,
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            wire_bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            hists: Mutex::new(Vec::new()),
            error_kinds: Mutex::new(BTreeMap::new()),
            retry_kinds: Mutex::new(BTreeMap::new()),
        })
    }

    /// A histogram pair for one thread.
    pub fn register(&self) -> Arc<Mutex<HistPair>> {
        let h = Arc::new(Mutex::new(HistPair { interval: new_hist(), total: new_hist() }));
        self.hists.lock().unwrap().push(h.clone());
        h
    }

    pub fn add(&self, records: u64, bytes: u64, wire_bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.wire_bytes.fetch_add(wire_bytes, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Count `n` errors of kind `kind`; the first of each kind is printed.
    pub fn error(&self, kind: impl Into<String>, n: u64) {
        if n == 0 {
            return;
        }
        let kind = kind.into();
        self.errors.fetch_add(n, Ordering::Relaxed);
        let mut m = self.error_kinds.lock().unwrap();
        let e = m.entry(kind.clone()).or_insert(0);
        if *e == 0 {
            eprintln!("error ({}): {kind}", self.name);
        }
        *e += n;
    }

    pub fn error_kinds(&self) -> BTreeMap<String, u64> {
        self.error_kinds.lock().unwrap().clone()
    }

    /// Count a batch that will be sent again (retriable error); the first
    /// of each kind is printed.
    pub fn retry(&self, kind: impl Into<String>) {
        let kind = kind.into();
        self.retries.fetch_add(1, Ordering::Relaxed);
        let mut m = self.retry_kinds.lock().unwrap();
        let e = m.entry(kind.clone()).or_insert(0);
        if *e == 0 {
            eprintln!("retrying ({}): {kind}", self.name);
        }
        *e += 1;
    }

    pub fn retry_kinds(&self) -> BTreeMap<String, u64> {
        self.retry_kinds.lock().unwrap().clone()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            wire_bytes: self.wire_bytes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }

    /// Merge and reset every thread's interval histogram.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for h in self.hists.lock().unwrap().iter() {
            let mut h = h.lock().unwrap();
            out.add(&h.interval).expect("same bounds");
            h.interval.reset();
        }
        out
    }

    /// Forget everything recorded so far in the totals (end of warmup).
    pub fn reset_totals(&self) {
        for h in self.hists.lock().unwrap().iter() {
            h.lock().unwrap().total.reset();
        }
    }

    pub fn total(&self) -> Histogram<u64> {
        let mut out = new_hist();
        for h in self.hists.lock().unwrap().iter() {
            out.add(&h.lock().unwrap().total).expect("same bounds");
        }
        out
    }
}

/// User + system CPU seconds of `who` (RUSAGE_SELF or RUSAGE_THREAD).
pub fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut ru) != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

pub fn process_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_SELF)
}

/// This thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime only writes into the struct we pass.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) != 0 {
            return 0;
        }
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds(libc::RUSAGE_THREAD)
}

/// Another process's CPU time (all its threads), read from /proc/PID/stat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcCpu {
    pub user_secs: f64,
    pub system_secs: f64,
}

impl ProcCpu {
    pub fn total(&self) -> f64 {
        self.user_secs + self.system_secs
    }
    pub fn since(&self, earlier: &ProcCpu) -> ProcCpu {
        ProcCpu { user_secs: self.user_secs - earlier.user_secs, system_secs: self.system_secs - earlier.system_secs }
    }
}

/// utime and stime (fields 14 and 15, clock ticks) of a /proc/PID/stat line.
/// For a process (not a /proc/PID/task/TID entry) they cover every thread,
/// including threads that have exited. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after the last ')'.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4) ... utime (14), stime (15).
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// CPU time of process `pid` so far.
pub fn proc_cpu(pid: u32) -> std::io::Result<ProcCpu> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let (u, s) = parse_proc_stat(&text).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("cannot parse /proc/{pid}/stat"))
    })?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcCpu { user_secs: u as f64 / tck, system_secs: s as f64 / tck })
}

/// CPU seconds per thread role, summed when threads finish.
#[derive(Default)]
pub struct CpuBook {
    by_role: Mutex<BTreeMap<&'static str, f64>>,
    /// CPU nanoseconds producer writers spent generating records and sealing batches.
    pub encode_ns: AtomicU64,
    /// Records the producer writers generated.
    pub generated: AtomicU64,
}

impl CpuBook {
    pub fn add(&self, role: &'static str, secs: f64) {
        *self.by_role.lock().unwrap().entry(role).or_insert(0.0) += secs;
    }
    pub fn snapshot(&self) -> BTreeMap<&'static str, f64> {
        self.by_role.lock().unwrap().clone()
    }
}

/// Maps the monotonic clock to Unix time, so record timestamps and receipt
/// times come from one clock that never steps.
#[derive(Clone, Copy)]
pub struct Clock {
    t0: Instant,
    unix0_us: i64,
}

impl Clock {
    pub fn new() -> Clock {
        let unix0_us =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
        Clock { t0: Instant::now(), unix0_us }
    }
    #[inline]
    pub fn unix_us(&self, at: Instant) -> i64 {
        self.unix0_us + at.saturating_duration_since(self.t0).as_micros() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_after_the_command_name() {
        // A real line (kernel 6.x), the name with a space and a ')'.
        let line = "4242 (ring broker) x) S 1 4242 4242 0 -1 4194560 31245 0 12 0 1234 567 0 0 20 0 9 0 \
                    8829 1234567890 10000 18446744073709551615 1 1 0 0 0 0 0 4096 17990 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_proc_stat(line), Some((1234, 567)));
        assert_eq!(parse_proc_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_proc_stat("no parenthesis"), None);
    }

    #[test]
    fn own_process_cpu_is_readable() {
        let me = proc_cpu(std::process::id()).unwrap();
        assert!(me.user_secs >= 0.0 && me.system_secs >= 0.0);
        let d = me.since(&ProcCpu { user_secs: 0.0, system_secs: 0.0 });
        assert!((d.total() - me.total()).abs() < 1e-9);
    }
}
