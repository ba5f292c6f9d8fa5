//! Batch validation (CRC + record framing), raw CRC-32C, and offset stamping.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringbroker_engine::batch::{build_batch, stamp_offsets, validate_batch, RecordSpec};
use std::hint::black_box;

/// An uncompressed batch of ~`bytes` bytes made of 100-byte values (keyless),
/// plus the same size made of 1 KiB values.
fn make_batch(bytes: usize, value_len: usize) -> Vec<u8> {
    let value = vec![b'x'; value_len];
    let n = (bytes / (value_len + 8)).max(1);
    let recs: Vec<RecordSpec> = (0..n)
        .map(|_| RecordSpec { key: None, value: Some(&value), headers: Vec::new(), timestamp_delta: 0 })
        .collect();
    build_batch(0, 1_700_000_000_000, &recs)
}

fn sizes() -> Vec<(&'static str, usize)> {
    if common::quick() {
        vec![("16KiB", 16 << 10), ("256KiB", 256 << 10)]
    } else {
        vec![("16KiB", 16 << 10), ("1MiB", 1 << 20)]
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    for (label, size) in sizes() {
        // Quick mode skips the 1 KiB-value variant.
        let value_lens: &[usize] = if common::quick() { &[100] } else { &[100, 1024] };
        for &value_len in value_lens {
            let b = make_batch(size, value_len);
            g.throughput(Throughput::Bytes(b.len() as u64));
            let id = format!("{label}/v{value_len}");
            g.bench_with_input(BenchmarkId::new("validate_batch", &id), &b, |bn, b| {
                bn.iter(|| validate_batch(black_box(b)).unwrap())
            });
            if value_len == 100 {
                g.bench_with_input(BenchmarkId::new("crc32c", label), &b, |bn, b| {
                    bn.iter(|| crc32c::crc32c(black_box(&b[21..])))
                });
                let mut m = b.clone();
                let mut off = 0i64;
                g.throughput(Throughput::Elements(1));
                g.bench_function(BenchmarkId::new("stamp_offsets", label), |bn| {
                    bn.iter(|| {
                        off += 1000;
                        stamp_offsets(black_box(&mut m), off, 7)
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
