//! kafka-protocol codec cost on the hot messages: ProduceRequest decode and
//! encode, FetchResponse encode, each carrying ~1 MiB of record batches.

mod common;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{FetchResponse, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use ringbroker_engine::batch::{build_batch, RecordSpec};
use std::hint::black_box;

const VERSION: i16 = 12;

/// About `total` bytes of records split over `partitions` partitions, as
/// batches of up to 16 KiB of 100-byte values.
fn records(total: usize, partitions: usize) -> Vec<Bytes> {
    let per_part = (total / partitions).max(256);
    let batch_bytes = per_part.min(16 << 10);
    let value = vec![b'v'; 100];
    let recs: Vec<RecordSpec> = (0..(batch_bytes / 108).max(1))
        .map(|_| RecordSpec { key: None, value: Some(&value), headers: Vec::new(), timestamp_delta: 0 })
        .collect();
    let batch = build_batch(0, 1_700_000_000_000, &recs);
    (0..partitions)
        .map(|_| {
            let mut b = BytesMut::new();
            while b.is_empty() || b.len() + batch.len() <= per_part {
                b.extend_from_slice(&batch);
            }
            b.freeze()
        })
        .collect()
}

fn produce_request(parts: &[Bytes]) -> ProduceRequest {
    ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
        .with_partition_data(
            parts
                .iter()
                .enumerate()
                .map(|(i, r)| PartitionProduceData::default().with_index(i as i32).with_records(Some(r.clone())))
                .collect(),
        )])
}

fn fetch_response(parts: &[Bytes]) -> FetchResponse {
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench-topic")))
        .with_partitions(
            parts
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    PartitionData::default()
                        .with_partition_index(i as i32)
                        .with_high_watermark(1_000_000)
                        .with_last_stable_offset(1_000_000)
                        .with_records(Some(r.clone()))
                })
                .collect(),
        )])
}

fn bench(c: &mut Criterion) {
    let total = common::size(1 << 20, 128 << 10);
    let mut g = c.benchmark_group("protocol");
    for partitions in [1usize, 16] {
        let parts = records(total, partitions);
        let bytes: usize = parts.iter().map(Bytes::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        let req = produce_request(&parts);
        let mut encoded = BytesMut::new();
        req.encode(&mut encoded, VERSION).unwrap();
        let encoded = encoded.freeze();
        let label = format!("{}KiB/{partitions}p", bytes >> 10);

        g.bench_with_input(BenchmarkId::new("produce_request_decode", &label), &encoded, |b, enc| {
            b.iter(|| {
                let mut buf = enc.clone();
                ProduceRequest::decode(black_box(&mut buf), VERSION).unwrap()
            })
        });
        let mut out = BytesMut::with_capacity(encoded.len() + 1024);
        g.bench_with_input(BenchmarkId::new("produce_request_encode", &label), &req, |b, req| {
            b.iter(|| {
                out.clear();
                req.encode(black_box(&mut out), VERSION).unwrap();
            })
        });
        let resp = fetch_response(&parts);
        g.bench_with_input(BenchmarkId::new("fetch_response_encode", &label), &resp, |b, resp| {
            b.iter(|| {
                out.clear();
                resp.encode(black_box(&mut out), VERSION).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = common::config(); targets = bench }
criterion_main!(benches);
