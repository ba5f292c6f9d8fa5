//! Sparse offset index lookups.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringbroker_engine::index::OffsetIndex;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let entries = common::size(100_000, 10_000) as i64;
    let mut idx = OffsetIndex::new(1_000_000);
    // One entry every ~37 offsets, ~4 KiB apart, like an index.interval.bytes of 4096.
    for i in 0..entries {
        idx.append(1_000_000 + i * 37, (i * 4096 + 1) as u32);
    }
    let span = entries * 37;
    // Pseudo-random targets spread over the whole segment (and a few outside).
    let targets: Vec<i64> = (0..1024u64)
        .map(|i| 1_000_000 - 10 + ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) % (span as u64 + 20)) as i64)
        .collect();
    let mut g = c.benchmark_group("offset_index");
    g.throughput(Throughput::Elements(targets.len() as u64));
    g.bench_function(format!("lookup_{entries}_entries_x1024"), |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &t in &targets {
                acc = acc.wrapping_add(u64::from(idx.lookup(black_box(t)).1));
            }
            acc
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("lookup_tail_{entries}_entries"), |b| {
        let t = 1_000_000 + span - 1;
        b.iter(|| idx.lookup(black_box(t)))
    });
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
