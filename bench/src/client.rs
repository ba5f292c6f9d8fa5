//! Blocking Kafka protocol connection over `std::net::TcpStream`: framing,
//! ApiVersions negotiation and the few admin calls the generator needs.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, list_offsets_request::ListOffsetsPartition,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequestTopic, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse,
    ProduceRequest, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

pub const CLIENT_ID: &str = "ringbroker-bench";
/// Produce and Fetch v13+ address topics by id only; we speak names.
pub const PRODUCE_FETCH_CAP: i16 = 12;
/// Largest response frame we accept.
const MAX_FRAME: usize = 256 << 20;

/// Negotiated API versions (broker's ranges, from ApiVersions).
#[derive(Debug, Clone, Default)]
pub struct Versions {
    pub broker: HashMap<i16, (i16, i16)>,
}

impl Versions {
    /// Highest version both sides support for `R`, capped at `cap`.
    pub fn pick<R: Request>(&self, cap: i16) -> Result<i16> {
        let (bmin, bmax) =
            *self.broker.get(&R::KEY).ok_or_else(|| anyhow!("broker does not support API key {}", R::KEY))?;
        let max = bmax.min(R::VERSIONS.max).min(cap);
        let min = bmin.max(R::VERSIONS.min);
        if max < min {
            bail!("no common version for API key {} (broker {bmin}..{bmax}, client {})", R::KEY, R::VERSIONS);
        }
        Ok(max)
    }
}

/// Versions chosen for the APIs the generator uses.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Chosen {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub list_offsets: i16,
}

impl Chosen {
    pub fn from(v: &Versions) -> Result<Chosen> {
        Ok(Chosen {
            produce: v.pick::<ProduceRequest>(PRODUCE_FETCH_CAP)?,
            fetch: v.pick::<FetchRequest>(PRODUCE_FETCH_CAP)?,
            metadata: v.pick::<MetadataRequest>(12)?,
            list_offsets: v.pick::<ListOffsetsRequest>(i16::MAX)?,
        })
    }
}

/// Encode `req` as a complete frame (length prefix included) into `buf`.
pub fn encode_frame<R: Request>(buf: &mut BytesMut, req: &R, version: i16, correlation_id: i32) -> Result<()> {
    buf.clear();
    buf.put_i32(0);
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    header.encode(buf, R::header_version(version))?;
    req.encode(buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Read one response frame (without the length prefix).
pub fn read_frame(r: &mut impl Read) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if len < 4 || len as usize > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad response frame length {len}")));
    }
    // read_to_end fills spare capacity without zeroing it first (the
    // socket reads into uninitialised memory safely): a fetch response is
    // tens of MiB, and clearing it before every read cost 7% of the client.
    let mut buf = Vec::with_capacity(len as usize);
    r.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() != len as usize {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-frame"));
    }
    Ok(Bytes::from(buf))
}

/// Decode a response frame for request type `R` at `version`, checking the correlation id.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16, correlation_id: i32) -> Result<R::Response> {
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))?;
    if header.correlation_id != correlation_id {
        bail!("correlation id mismatch: expected {correlation_id}, got {}", header.correlation_id);
    }
    let resp = R::Response::decode(&mut frame, version)?;
    Ok(resp)
}

/// Resolve and connect with TCP_NODELAY.
pub fn tcp_connect(addr: &str) -> Result<TcpStream> {
    let sa = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to nothing"))?;
    let s =
        TcpStream::connect_timeout(&sa, Duration::from_secs(10)).with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A simple request/response connection (no pipelining), used for admin
/// calls and by consumers; producers split a stream into writer and reader.
pub struct Conn {
    pub addr: String,
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
    buf: BytesMut,
    next_corr: i32,
    pub versions: Versions,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn> {
        let stream = tcp_connect(addr)?;
        let reader = BufReader::with_capacity(256 << 10, stream.try_clone()?);
        let mut c = Conn {
            addr: addr.to_string(),
            stream,
            reader,
            buf: BytesMut::with_capacity(64 << 10),
            next_corr: 1,
            versions: Versions::default(),
        };
        c.negotiate().with_context(|| format!("ApiVersions with {addr}"))?;
        Ok(c)
    }

    /// Take the next correlation id.
    pub fn corr(&mut self) -> i32 {
        let c = self.next_corr;
        self.next_corr = self.next_corr.wrapping_add(1);
        c
    }

    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let corr = self.corr();
        encode_frame(&mut self.buf, req, version, corr)?;
        self.stream.write_all(&self.buf).with_context(|| format!("sending to {}", self.addr))?;
        Ok(corr)
    }

    pub fn recv_frame(&mut self) -> Result<Bytes> {
        read_frame(&mut self.reader).with_context(|| format!("reading from {}", self.addr))
    }

    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let corr = self.send(req, version)?;
        decode_response::<R>(self.recv_frame()?, version, corr)
    }

    /// ApiVersions: ask at our highest version; a broker that does not know
    /// it answers in v0 with UNSUPPORTED_VERSION (35) and its own range (KIP-511).
    fn negotiate(&mut self) -> Result<()> {
        let mut version = 3.min(ApiVersionsRequest::VERSIONS.max);
        for _ in 0..2 {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let corr = self.send(&req, version)?;
            let mut frame = self.recv_frame()?;
            let header = ResponseHeader::decode(&mut frame, 0)?;
            if header.correlation_id != corr {
                bail!("correlation id mismatch in ApiVersions");
            }
            let error = frame.clone().get_i16();
            let resp = if error == 35 {
                ApiVersionsResponse::decode(&mut frame, 0)?
            } else {
                ApiVersionsResponse::decode(&mut frame, version)?
            };
            if error == 35 {
                let ours = resp.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16);
                version = ours.map_or(0, |k| k.max_version.min(version - 1).max(0));
                continue;
            }
            if resp.error_code != 0 {
                bail!("ApiVersions error {}", resp.error_code);
            }
            self.versions.broker = resp.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
            return Ok(());
        }
        bail!("ApiVersions negotiation failed")
    }
}

/// One partition's placement.
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
}

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub partitions: Vec<PartitionInfo>,
    /// node id -> "host:port"
    pub brokers: BTreeMap<i32, String>,
}

impl TopicInfo {
    /// Partitions grouped by leader address.
    pub fn by_leader(&self) -> Result<BTreeMap<String, Vec<i32>>> {
        let mut m: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in &self.partitions {
            let addr = self
                .brokers
                .get(&p.leader)
                .ok_or_else(|| anyhow!("partition {} has leader {} not among the brokers", p.partition, p.leader))?;
            m.entry(addr.clone()).or_default().push(p.partition);
        }
        Ok(m)
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

impl Conn {
    pub fn metadata(&mut self, topic: &str) -> Result<(i16, MetadataResponse)> {
        let v = self.versions.pick::<MetadataRequest>(12)?;
        let req = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic_name(topic)))]))
            .with_allow_auto_topic_creation(false);
        let resp = self.call(&req, v)?;
        let err = resp.topics.first().map_or(3, |t| t.error_code);
        Ok((err, resp))
    }

    /// Find `topic`, creating it with `partitions` partitions if missing, and
    /// wait until every partition has a leader.
    pub fn ensure_topic(&mut self, topic: &str, partitions: Option<i32>) -> Result<TopicInfo> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut created = false;
        loop {
            let (err, resp) = self.metadata(topic)?;
            if err == 3 && !created {
                let n = partitions.unwrap_or(1);
                self.create_topic(topic, n)?;
                eprintln!("created topic {topic} with {n} partition(s)");
                created = true;
                continue;
            }
            let brokers: BTreeMap<i32, String> =
                resp.brokers.iter().map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port))).collect();
            if err == 0 {
                let t = &resp.topics[0];
                let parts: Vec<PartitionInfo> = t
                    .partitions
                    .iter()
                    .map(|p| PartitionInfo { partition: p.partition_index, leader: p.leader_id.0 })
                    .collect();
                let ready = !parts.is_empty()
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && p.leader_id.0 >= 0 && brokers.contains_key(&p.leader_id.0));
                if ready {
                    if let Some(want) = partitions {
                        if (parts.len() as i32) != want {
                            eprintln!(
                                "warning: topic {topic} exists with {} partitions (asked for {want}); using it as is",
                                parts.len()
                            );
                        }
                    }
                    let mut parts = parts;
                    parts.sort_by_key(|p| p.partition);
                    return Ok(TopicInfo { partitions: parts, brokers });
                }
            }
            if Instant::now() > deadline {
                bail!("topic {topic} not ready: metadata error {err} ({})", error_name(err));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<()> {
        let v = self.versions.pick::<CreateTopicsRequest>(i16::MAX)?;
        let rf = if v >= 4 { -1 } else { 1 };
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(rf)])
            .with_timeout_ms(30_000);
        let resp = self.call(&req, v)?;
        for t in &resp.topics {
            // 36 = TOPIC_ALREADY_EXISTS: someone else won the race, fine.
            if t.error_code != 0 && t.error_code != 36 {
                bail!(
                    "CreateTopics {topic}: error {} {}",
                    t.error_code,
                    t.error_message.as_ref().map_or("", |m| m.as_str())
                );
            }
        }
        Ok(())
    }

    /// ListOffsets for `partitions` at `timestamp` (-1 latest, -2 earliest).
    /// Retriable partition errors (see [`retriable`]) are retried every
    /// 100 ms until `deadline`, as Kafka clients do: a partition of a topic
    /// just created may answer NOT_LEADER_OR_FOLLOWER for a while after
    /// Metadata shows its leader (Kafka applies the metadata asynchronously).
    pub fn list_offsets_until(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
        deadline: Instant,
    ) -> Result<HashMap<i32, i64>> {
        loop {
            match self.list_offsets_once(topic, partitions, timestamp)? {
                Ok(out) => return Ok(out),
                Err((_, code)) if retriable(code) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err((p, code)) => bail!("ListOffsets {topic}/{p}: error {code} ({})", error_name(code)),
            }
        }
    }

    /// ListOffsets with the default deadline ([`READY_TIMEOUT`] from now).
    pub fn list_offsets(&mut self, topic: &str, partitions: &[i32], timestamp: i64) -> Result<HashMap<i32, i64>> {
        self.list_offsets_until(topic, partitions, timestamp, Instant::now() + READY_TIMEOUT)
    }

    /// One ListOffsets round trip; `Ok(Err((partition, code)))` for the
    /// first partition that answered with an error.
    fn list_offsets_once(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<std::result::Result<HashMap<i32, i64>, (i32, i16)>> {
        let v = self.versions.pick::<ListOffsetsRequest>(i16::MAX)?;
        let req =
            ListOffsetsRequest::default().with_replica_id((-1).into()).with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let resp = self.call(&req, v)?;
        let mut out = HashMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Ok(Err((p.partition_index, p.error_code)));
                }
                out.insert(p.partition_index, p.offset);
            }
        }
        for p in partitions {
            if !out.contains_key(p) {
                bail!("ListOffsets: no answer for partition {p}");
            }
        }
        Ok(Ok(out))
    }
}

/// How long setup waits for a topic's partitions to become usable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Partition errors a Kafka client retries (after a metadata refresh):
/// UNKNOWN_TOPIC_OR_PARTITION (3), LEADER_NOT_AVAILABLE (5),
/// NOT_LEADER_OR_FOLLOWER (6). Kafka answers them for a short while after
/// a topic is created, and when leadership moves.
pub fn retriable(code: i16) -> bool {
    matches!(code, 3 | 5 | 6)
}

/// Names of the error codes the load generator meets most.
pub fn error_name(code: i16) -> &'static str {
    match code {
        0 => "NONE",
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER",
        7 => "REQUEST_TIMED_OUT",
        10 => "MESSAGE_TOO_LARGE",
        19 => "NOT_ENOUGH_REPLICAS",
        20 => "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        56 => "KAFKA_STORAGE_ERROR",
        87 => "INVALID_RECORD",
        _ => "?",
    }
}

/// Wait until every partition of `info` answers ListOffsets on its leader
/// (retrying 3, 5 and 6 until `deadline`). Metadata showing a leader is not
/// enough on Kafka: the leader may still refuse the partition for a moment.
pub fn wait_partitions_ready(topic: &str, info: &TopicInfo, deadline: Instant) -> Result<()> {
    for (addr, parts) in info.by_leader()? {
        let mut c = Conn::connect(&addr)?;
        c.list_offsets_until(topic, &parts, -1, deadline)
            .with_context(|| format!("topic {topic} not ready on {addr}"))?;
    }
    Ok(())
}

pub fn topic_name_of(t: &str) -> TopicName {
    topic_name(t)
}

impl Conn {
    /// The buffered read half (the write half stays available via `stream`).
    pub fn into_reader(self) -> BufReader<TcpStream> {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_codes_are_the_leader_and_topic_ones() {
        for c in [3, 5, 6] {
            assert!(retriable(c), "{c}");
        }
        for c in [0, 1, 2, 7, 10, 19, 87] {
            assert!(!retriable(c), "{c}");
        }
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
    }
}
