//! Shared settings for the criterion benches.
//!
//! `RINGBROKER_BENCH_QUICK=1` shrinks inputs and measures ~1 s per benchmark
//! so a full `cargo bench -p ringbroker-bench` smoke run finishes in under a
//! minute (CI); unset, the benches use full sizes and criterion's defaults.

#![allow(dead_code)]

use criterion::Criterion;
use std::time::Duration;

pub fn quick() -> bool {
    std::env::var("RINGBROKER_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `full` normally, `small` in quick mode.
pub fn size(full: usize, small: usize) -> usize {
    if quick() {
        small
    } else {
        full
    }
}

pub fn config() -> Criterion {
    let c = Criterion::default();
    if quick() {
        // No HTML/SVG plots in smoke runs: rendering them costs more than measuring.
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_secs(1))
            .without_plots()
            // Bootstrap analysis with the default 100k resamples takes seconds per
            // benchmark on a small machine; 5k is plenty for a smoke run.
            .nresamples(5_000)
    } else {
        c
    }
}
