//! The cost of a cross-core hop: a request/reply round trip over glommio
//! shared channels between two executors on different CPUs, against a local
//! function call and a local-channel round trip inside one executor.
//!
//! The executors live for the whole benchmark: the criterion thread tells
//! the "ping" executor how many round trips to run (std channel) and gets the
//! elapsed time back, so executor start-up is never measured. Both executors
//! use a small `io_memory` so the bench runs under an 8 MiB RLIMIT_MEMLOCK.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use glommio::channels::{local_channel, shared_channel};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const IO_MEMORY: usize = 512 << 10;
const STOP: u64 = u64::MAX;

fn placements() -> (Placement, Placement) {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus >= 2 {
        (Placement::Fixed(0), Placement::Fixed(1))
    } else {
        (Placement::Unbound, Placement::Unbound)
    }
}

/// A running benchmark driver: send a round-trip count, receive the time taken.
struct Driver {
    cmd: mpsc::Sender<u64>,
    res: mpsc::Receiver<Duration>,
    handles: Vec<ExecutorJoinHandle<()>>,
}

impl Driver {
    fn run(&self, iters: u64) -> Duration {
        self.cmd.send(iters).expect("driver alive");
        self.res.recv().expect("driver answered")
    }
    fn stop(self) {
        let _ = self.cmd.send(STOP);
        for h in self.handles {
            h.join().expect("executor joined");
        }
    }
}

/// Ping on one executor, echo on another, talking over shared channels.
fn shared_pair(spin: Duration) -> Driver {
    let (p_ping, p_echo) = placements();
    let (req_tx, req_rx) = shared_channel::new_bounded::<u64>(64);
    let (resp_tx, resp_rx) = shared_channel::new_bounded::<u64>(64);
    let (cmd_tx, cmd_rx) = mpsc::channel::<u64>();
    let (res_tx, res_rx) = mpsc::channel::<Duration>();
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
            // Blocking on the command channel is fine: nothing else runs here.
            while let Ok(iters) = cmd_rx.recv() {
                if iters == STOP {
                    break;
                }
                let t0 = Instant::now();
                for i in 0..iters {
                    tx.send(i).await.unwrap();
                    black_box(rx.recv().await.unwrap());
                }
                res_tx.send(t0.elapsed()).unwrap();
            }
        })
        .expect("ping executor");
    Driver { cmd: cmd_tx, res: res_rx, handles: vec![ping, echo] }
}

/// Ping and echo as two tasks of one executor, over local channels.
fn local_pair() -> Driver {
    let (cmd_tx, cmd_rx) = mpsc::channel::<u64>();
    let (res_tx, res_rx) = mpsc::channel::<Duration>();
    let ex = LocalExecutorBuilder::new(Placement::Unbound)
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
            while let Ok(iters) = cmd_rx.recv() {
                if iters == STOP {
                    break;
                }
                let t0 = Instant::now();
                for i in 0..iters {
                    req_tx.send(i).await.unwrap();
                    black_box(resp_rx.recv().await.unwrap());
                }
                res_tx.send(t0.elapsed()).unwrap();
            }
            drop(req_tx);
            echo.await;
        })
        .expect("executor");
    Driver { cmd: cmd_tx, res: res_rx, handles: vec![ex] }
}

#[inline(never)]
fn handle_locally(v: u64) -> u64 {
    v.wrapping_mul(31).wrapping_add(1)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_core_hop");
    g.bench_function("local_call", |b| b.iter(|| handle_locally(black_box(7))));
    let local = local_pair();
    g.bench_function("local_channel_round_trip", |b| b.iter_custom(|iters| local.run(iters)));
    local.stop();
    for (label, spin) in [("parked", Duration::ZERO), ("spin_50us", Duration::from_micros(50))] {
        let pair = shared_pair(spin);
        g.bench_function(BenchmarkId::new("shared_channel_round_trip", label), |b| {
            b.iter_custom(|iters| pair.run(iters))
        });
        pair.stop();
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
