//! Produce requests written without copying their record batches.
//!
//! Encoding a `ProduceRequest` with the `kafka-protocol` crate copies every
//! batch into the request buffer; at 1 KiB records that copy was half of the
//! load generator's memmove (9% of all CPU samples on a machine it shares
//! with the broker). Here only the small fields around the batches are
//! encoded, into one buffer, and the frame is sent as a list of slices:
//! those fields and the batches themselves, in wire order, with one vectored
//! write. A test checks the bytes against the crate's encoder for every
//! version the load generator speaks (3 through 12).

use anyhow::{bail, Result};
use bytes::{BufMut, Bytes, BytesMut};
use std::io::{IoSlice, Write};
use std::ops::Range;

/// One part of a frame, in order: encoded fields or a record batch.
enum Part {
    Meta(Range<usize>),
    Batch(Bytes),
}

/// The request's fields that are not record data.
pub struct ProduceHeader<'a> {
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: &'a str,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topic: &'a str,
}

/// A Produce request frame (length prefix included) as slices.
#[derive(Default)]
pub struct ProduceFrame {
    meta: BytesMut,
    parts: Vec<Part>,
}

impl ProduceFrame {
    /// Encodes a request for one topic; `partitions` holds each partition's
    /// batches, sent back to back as its record set.
    pub fn encode(&mut self, h: &ProduceHeader, partitions: &[(i32, Vec<Bytes>)]) -> Result<()> {
        if !(3..=12).contains(&h.version) {
            bail!("Produce v{} is not supported by the load generator (3-12)", h.version);
        }
        let flexible = h.version >= 9;
        self.meta.clear();
        self.parts.clear();
        let mut w = Fields { buf: &mut self.meta, flexible, mark: 0, parts: &mut self.parts };
        w.buf.put_i32(0); // frame length, set below
                          // Request header v1, or v2 (tagged fields) for flexible versions.
        w.buf.put_i16(0); // api key: Produce
        w.buf.put_i16(h.version);
        w.buf.put_i32(h.correlation_id);
        w.buf.put_i16(h.client_id.len() as i16); // client id: always a classic string
        w.buf.put_slice(h.client_id.as_bytes());
        w.tags();
        w.null_string(); // transactional id
        w.buf.put_i16(h.acks);
        w.buf.put_i32(h.timeout_ms);
        w.array_len(1);
        w.string(h.topic);
        w.array_len(partitions.len());
        for (index, batches) in partitions {
            w.buf.put_i32(*index);
            let len: usize = batches.iter().map(Bytes::len).sum();
            if flexible {
                w.uvarint(len as u64 + 1);
            } else {
                w.buf.put_i32(len as i32);
            }
            for b in batches {
                w.batch(b.clone());
            }
            w.tags();
        }
        w.tags(); // topic
        w.tags(); // request
        w.close_meta();
        let len: usize = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Meta(r) => r.len(),
                Part::Batch(b) => b.len(),
            })
            .sum();
        self.meta[0..4].copy_from_slice(&((len - 4) as i32).to_be_bytes());
        Ok(())
    }

    /// Writes the whole frame with vectored writes.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let mut slices: Vec<IoSlice> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Meta(r) => IoSlice::new(&self.meta[r.clone()]),
                Part::Batch(b) => IoSlice::new(b),
            })
            .collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let n = w.write_vectored(rest)?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// The frame as one buffer (tests).
    #[cfg(test)]
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).unwrap();
        v
    }
}

struct Fields<'a> {
    buf: &'a mut BytesMut,
    flexible: bool,
    /// Start of the encoded fields not yet closed into a part.
    mark: usize,
    parts: &'a mut Vec<Part>,
}

impl Fields<'_> {
    fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }
    fn tags(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }
    fn array_len(&mut self, n: usize) {
        if self.flexible {
            self.uvarint(n as u64 + 1);
        } else {
            self.buf.put_i32(n as i32);
        }
    }
    fn string(&mut self, s: &str) {
        if self.flexible {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.buf.put_i16(s.len() as i16);
        }
        self.buf.put_slice(s.as_bytes());
    }
    fn null_string(&mut self) {
        if self.flexible {
            self.uvarint(0);
        } else {
            self.buf.put_i16(-1);
        }
    }
    fn close_meta(&mut self) {
        if self.buf.len() > self.mark {
            self.parts.push(Part::Meta(self.mark..self.buf.len()));
            self.mark = self.buf.len();
        }
    }
    fn batch(&mut self, b: Bytes) {
        self.close_meta();
        self.parts.push(Part::Batch(b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{encode_frame, topic_name_of};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::ProduceRequest;

    fn batches(n: usize, seed: u8) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(vec![seed.wrapping_add(i as u8); 61 + i * 300])).collect()
    }

    #[test]
    fn byte_identical_to_the_kafka_protocol_encoder() {
        let parts: Vec<(i32, Vec<Bytes>)> = vec![(0, batches(1, 1)), (3, batches(3, 7)), (15, batches(2, 200))];
        for version in 3..=12i16 {
            for (acks, topic) in [(1i16, "t"), (-1, "a-much-longer-topic-name.with.dots")] {
                let h = ProduceHeader {
                    version,
                    correlation_id: 42 + version as i32,
                    client_id: crate::client::CLIENT_ID,
                    acks,
                    timeout_ms: 30_000,
                    topic,
                };
                let mut f = ProduceFrame::default();
                f.encode(&h, &parts).unwrap();
                let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
                    TopicProduceData::default().with_name(topic_name_of(topic)).with_partition_data(
                        parts
                            .iter()
                            .map(|(p, bs)| {
                                PartitionProduceData::default()
                                    .with_index(*p)
                                    .with_records(Some(Bytes::from(bs.concat())))
                            })
                            .collect(),
                    ),
                ]);
                let mut expected = BytesMut::new();
                encode_frame(&mut expected, &req, version, h.correlation_id).unwrap();
                assert_eq!(f.to_vec(), expected.to_vec(), "Produce v{version}, acks {acks}");
            }
        }
    }

    #[test]
    fn versions_outside_3_to_12_are_refused() {
        let h =
            |version| ProduceHeader { version, correlation_id: 1, client_id: "c", acks: 1, timeout_ms: 1, topic: "t" };
        assert!(ProduceFrame::default().encode(&h(2), &[]).is_err());
        assert!(ProduceFrame::default().encode(&h(13), &[]).is_err());
    }

    #[test]
    fn partial_vectored_writes_still_send_everything() {
        /// Accepts at most 7 bytes per call.
        struct Dribble(Vec<u8>);
        impl Write for Dribble {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                let n = b.len().min(7);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let h = ProduceHeader { version: 12, correlation_id: 9, client_id: "c", acks: 1, timeout_ms: 5, topic: "t" };
        let mut f = ProduceFrame::default();
        f.encode(&h, &[(1, batches(2, 3))]).unwrap();
        let mut d = Dribble(Vec::new());
        f.write_to(&mut d).unwrap();
        assert_eq!(d.0, f.to_vec());
    }
}
