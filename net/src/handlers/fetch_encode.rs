//! The Fetch response encoder of the hot path: writes the response as a list
//! of buffers so record batches go from the partition's cache (or disk read)
//! to the socket without being copied into a response buffer. Only the small
//! per-partition metadata is encoded into fresh buffers.
//!
//! It must produce exactly the bytes the `kafka-protocol` codec produces for
//! the same response; `tests::matches_the_codec_for_every_version` checks that
//! for every version we serve.

use bytes::{BufMut, Bytes, BytesMut};

/// One partition's answer.
#[derive(Debug, Clone, Default)]
pub struct FetchedPartition {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole record batches, in order (possibly several buffers).
    pub records: Vec<Bytes>,
    /// KIP-951 (v12+, tagged): the partition's leader and epoch, sent with
    /// NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH.
    pub current_leader: Option<(i32, i32)>,
}

impl FetchedPartition {
    pub fn records_len(&self) -> usize {
        self.records.iter().map(|b| b.len()).sum()
    }
}

#[derive(Debug, Clone, Default)]
pub struct FetchedTopic {
    pub name: String,
    pub topic_id: uuid::Uuid,
    pub partitions: Vec<FetchedPartition>,
}

/// Record chunks at least this large are sent as their own buffer.
const ZERO_COPY_MIN_BYTES: usize = 4096;

enum Part {
    Encoded(BytesMut),
    Data(Bytes),
}

struct Writer {
    parts: Vec<Part>,
    cur: BytesMut,
    flexible: bool,
}

impl Writer {
    fn i16(&mut self, v: i16) {
        self.cur.put_i16(v);
    }
    fn i32(&mut self, v: i32) {
        self.cur.put_i32(v);
    }
    fn i64(&mut self, v: i64) {
        self.cur.put_i64(v);
    }
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.cur.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.cur.put_u8(v as u8);
    }
    fn array_len(&mut self, n: usize) {
        if self.flexible {
            self.uvarint(n as u64 + 1);
        } else {
            self.i32(n as i32);
        }
    }
    fn null_array(&mut self) {
        if self.flexible {
            self.uvarint(0);
        } else {
            self.i32(-1);
        }
    }
    fn string(&mut self, s: &str) {
        if self.flexible {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.i16(s.len() as i16);
        }
        self.cur.put_slice(s.as_bytes());
    }
    fn no_tagged_fields(&mut self) {
        if self.flexible {
            self.cur.put_u8(0);
        }
    }
    fn records(&mut self, chunks: &[Bytes]) {
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        if self.flexible {
            self.uvarint(len as u64 + 1);
        } else {
            self.i32(len as i32);
        }
        for c in chunks {
            if c.len() >= ZERO_COPY_MIN_BYTES {
                let done = std::mem::replace(&mut self.cur, BytesMut::with_capacity(256));
                self.parts.push(Part::Encoded(done));
                self.parts.push(Part::Data(c.clone()));
            } else {
                self.cur.put_slice(c);
            }
        }
    }
}

/// Encodes a whole Fetch response frame (length prefix, header, body) as
/// buffers to write in order.
/// `read_committed`: the consumer's isolation level. Kafka sends the
/// (nullable) aborted-transactions list to read_committed consumers (empty
/// here: no transaction exists) and with every partition error, and null
/// for the data of read_uncommitted fetches.
/// `nodes`: endpoints (id, host, port) of the leaders named in
/// `current_leader` fields, sent in v16+ (KIP-951).
pub fn encode(
    version: i16,
    correlation_id: i32,
    topics: &[FetchedTopic],
    nodes: &[(i32, String, i32)],
    read_committed: bool,
) -> Vec<Bytes> {
    let flexible = version >= 12;
    let mut w = Writer { parts: Vec::new(), cur: BytesMut::with_capacity(512), flexible };
    w.i32(0); // frame length, patched below
    w.i32(correlation_id);
    w.no_tagged_fields(); // response header v1 for flexible versions
    w.i32(0); // throttle_time_ms (v1+)
    if version >= 7 {
        w.i16(0); // error_code
        w.i32(0); // session_id: we never create fetch sessions
    }
    w.array_len(topics.len());
    for t in topics {
        if version >= 13 {
            w.cur.put_slice(t.topic_id.as_bytes());
        } else {
            w.string(&t.name);
        }
        w.array_len(t.partitions.len());
        for p in &t.partitions {
            w.i32(p.partition);
            w.i16(p.error_code);
            w.i64(p.high_watermark);
            w.i64(p.last_stable_offset);
            if version >= 5 {
                w.i64(p.log_start_offset);
            }
            if read_committed || p.error_code != 0 {
                w.array_len(0); // aborted_transactions: none (no transactions)
            } else {
                w.null_array();
            }
            if version >= 11 {
                w.i32(-1); // preferred_read_replica
            }
            w.records(&p.records);
            match p.current_leader {
                // Tag 1 (CurrentLeader): leader id, epoch, its own empty
                // tagged fields: 9 bytes.
                Some((leader, epoch)) if w.flexible => {
                    w.uvarint(1);
                    w.uvarint(1);
                    w.uvarint(9);
                    w.i32(leader);
                    w.i32(epoch);
                    w.uvarint(0);
                }
                _ => w.no_tagged_fields(),
            }
        }
        w.no_tagged_fields();
    }
    if version >= 16 && !nodes.is_empty() {
        // Tag 0 (NodeEndpoints): encoded aside to learn its size first.
        let mut e = Writer { parts: Vec::new(), cur: BytesMut::with_capacity(64), flexible: true };
        e.array_len(nodes.len());
        for (id, host, port) in nodes {
            e.i32(*id);
            e.string(host);
            e.i32(*port);
            e.uvarint(0); // rack: null
            e.uvarint(0); // tagged fields
        }
        w.uvarint(1);
        w.uvarint(0);
        w.uvarint(e.cur.len() as u64);
        w.cur.put_slice(&e.cur);
    } else {
        w.no_tagged_fields();
    }
    let Writer { mut parts, cur, .. } = w;
    parts.push(Part::Encoded(cur));
    let total: usize = parts
        .iter()
        .map(|p| match p {
            Part::Encoded(b) => b.len(),
            Part::Data(b) => b.len(),
        })
        .sum();
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.into_iter().enumerate() {
        match p {
            Part::Encoded(mut b) => {
                if i == 0 {
                    b[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
                }
                if !b.is_empty() {
                    out.push(b.freeze());
                }
            }
            Part::Data(b) => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    };
    use kafka_protocol::messages::{ApiKey, BrokerId, FetchResponse, TopicName};
    use proptest::prelude::*;

    /// The same response through the `kafka-protocol` codec.
    fn via_codec(
        version: i16,
        correlation_id: i32,
        topics: &[FetchedTopic],
        nodes: &[(i32, String, i32)],
        read_committed: bool,
    ) -> Vec<u8> {
        let mut resp = FetchResponse::default();
        if version >= 7 {
            resp = resp.with_error_code(0).with_session_id(0);
        }
        if version >= 16 {
            resp = resp.with_node_endpoints(
                nodes
                    .iter()
                    .map(|(id, host, port)| {
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(super::super::str_bytes(host))
                            .with_port(*port)
                    })
                    .collect(),
            );
        }
        for t in topics {
            let mut tr = FetchableTopicResponse::default();
            if version >= 13 {
                tr = tr.with_topic_id(t.topic_id);
            } else {
                tr = tr.with_topic(TopicName(super::super::str_bytes(&t.name)));
            }
            for p in &t.partitions {
                let mut data = BytesMut::new();
                for c in &p.records {
                    data.extend_from_slice(c);
                }
                tr.partitions.push(
                    PartitionData::default()
                        .with_partition_index(p.partition)
                        .with_error_code(p.error_code)
                        .with_high_watermark(p.high_watermark)
                        .with_last_stable_offset(p.last_stable_offset)
                        .with_log_start_offset(if version >= 5 { p.log_start_offset } else { -1 })
                        .with_aborted_transactions(if read_committed || p.error_code != 0 {
                            Some(Vec::new())
                        } else {
                            None
                        })
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_current_leader(match p.current_leader {
                            Some((l, e)) if version >= 12 => {
                                LeaderIdAndEpoch::default().with_leader_id(BrokerId(l)).with_leader_epoch(e)
                            }
                            _ => LeaderIdAndEpoch::default(),
                        })
                        .with_records(Some(data.freeze())),
                );
            }
            resp.responses.push(tr);
        }
        super::super::encode_response(ApiKey::Fetch, version, correlation_id, &resp).unwrap().to_vec()
    }

    fn arb_topics() -> impl Strategy<Value = Vec<FetchedTopic>> {
        let part = (
            0i32..100,
            -1i16..5,
            -1i64..1 << 40,
            -1i64..1 << 40,
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..9000), 0..4),
            proptest::option::of((-1i32..5, -1i32..1000)),
        )
            .prop_map(|(partition, error_code, hw, start, chunks, current_leader)| FetchedPartition {
                partition,
                error_code,
                high_watermark: hw,
                last_stable_offset: hw,
                log_start_offset: start,
                records: chunks.into_iter().map(Bytes::from).collect(),
                // (-1, -1) is the field's default: the codec leaves it out.
                current_leader: current_leader.filter(|&c| c != (-1, -1)),
            });
        let topic = ("[a-z]{1,20}", any::<[u8; 16]>(), proptest::collection::vec(part, 0..4))
            .prop_map(|(name, id, partitions)| FetchedTopic { name, topic_id: uuid::Uuid::from_bytes(id), partitions });
        proptest::collection::vec(topic, 0..4)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn matches_the_codec_for_every_version(
            topics in arb_topics(),
            cid in any::<i32>(),
            nodes in proptest::collection::vec((0i32..10, "[a-z0-9.]{1,30}", 1i32..65536), 0..3),
        ) {
            for version in 4..=16i16 {
                for read_committed in [false, true] {
                    let ours: Vec<u8> = encode(version, cid, &topics, &nodes, read_committed)
                        .iter()
                        .flat_map(|b| b.iter().copied())
                        .collect();
                    let theirs = via_codec(version, cid, &topics, &nodes, read_committed);
                    prop_assert_eq!(ours, theirs, "version {}", version);
                }
            }
        }
    }

    #[test]
    fn large_batches_are_not_copied() {
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let topics = vec![FetchedTopic {
            name: "t".into(),
            topic_id: uuid::Uuid::nil(),
            partitions: vec![FetchedPartition { records: vec![big.clone()], ..Default::default() }],
        }];
        let parts = encode(12, 1, &topics, &[], false);
        assert!(parts.iter().any(|p| p.as_ptr() == big.as_ptr() && p.len() == big.len()));
    }
}
