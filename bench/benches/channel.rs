//! The cost of a cross-core hop: a request/reply round trip over glommio
//! shared channels between two executors on different CPUs, against a local
//! function call and a local-channel round trip inside one executor.
//!
//! Each criterion sample starts fresh executors (`iter_custom`) and times
//! only the round trips. Both executors use a small `io_memory` so the bench
//! runs under an 8 MiB RLIMIT_MEMLOCK.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use glommio::channels::{local_channel, shared_channel};
use glommio::{LocalExecutorBuilder, Placement};
use std::hint::black_box;
use std::time::{Duration, Instant};

const IO_MEMORY: usize = 512 << 10;

fn placements() -> (Placement, Placement) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 {
        (Placement::Fixed(0), Placement::Fixed(1))
    } else {
        (Placement::Unbound, Placement::Unbound)
    }
}

/// `iters` round trips ping -> echo -> ping across two executors.
fn shared_round_trips(iters: u64, spin: Duration) -> Duration {
    let (p_ping, p_echo) = placements();
    let (req_tx, req_rx) = shared_channel::new_bounded::<u64>(64);
    let (resp_tx, resp_rx) = shared_channel::new_bounded::<u64>(64);
    let echo = LocalExecutorBuilder::new(p_echo)
        .io_memory(IO_MEMORY)
        .spin_before_park(spin)
        .name("echo")
        .spawn(move || async move {
            let rx = req_rx.connect().await;
            let tx = resp_tx.connect().await;
            while let Some(v) = rx.recv().await {
                if tx.send(v + 1).await.is_err() {
                    break;
                }
            }
        })
        .expect("echo executor");
    let ping = LocalExecutorBuilder::new(p_ping)
        .io_memory(IO_MEMORY)
        .spin_before_park(spin)
        .name("ping")
        .spawn(move || async move {
            let tx = req_tx.connect().await;
            let rx = resp_rx.connect().await;
            // One untimed trip so both sides are connected and warm.
            tx.send(0).await.unwrap();
            rx.recv().await.unwrap();
            let t0 = Instant::now();
            for i in 0..iters {
                tx.send(i).await.unwrap();
                black_box(rx.recv().await.unwrap());
            }
            t0.elapsed()
        })
        .expect("ping executor");
    let d = ping.join().expect("ping joined");
    echo.join().expect("echo joined");
    d
}

/// `iters` round trips between two tasks on one executor (local channels).
fn local_round_trips(iters: u64) -> Duration {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(IO_MEMORY)
        .spawn(move || async move {
            let (req_tx, req_rx) = local_channel::new_bounded::<u64>(64);
            let (resp_tx, resp_rx) = local_channel::new_bounded::<u64>(64);
            let echo = glommio::spawn_local(async move {
                while let Some(v) = req_rx.recv().await {
                    if resp_tx.send(v + 1).await.is_err() {
                        break;
                    }
                }
            });
            let t0 = Instant::now();
            for i in 0..iters {
                req_tx.send(i).await.unwrap();
                black_box(resp_rx.recv().await.unwrap());
            }
            let d = t0.elapsed();
            drop(req_tx);
            echo.await;
            d
        })
        .expect("executor")
        .join()
        .expect("joined")
}

#[inline(never)]
fn handle_locally(v: u64) -> u64 {
    v.wrapping_mul(31).wrapping_add(1)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_core_hop");
    g.bench_function("local_call", |b| b.iter(|| handle_locally(black_box(7))));
    g.bench_function("local_channel_round_trip", |b| b.iter_custom(local_round_trips));
    for (label, spin) in [("parked", Duration::ZERO), ("spin_50us", Duration::from_micros(50))] {
        g.bench_function(BenchmarkId::new("shared_channel_round_trip", label), |b| {
            b.iter_custom(|iters| shared_round_trips(iters, spin))
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
