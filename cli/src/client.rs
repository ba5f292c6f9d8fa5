//! Blocking Kafka wire-protocol connection.
//!
//! Frames are `i32` big-endian length + request header + body. The header
//! version is derived from the API key and version (`ApiKey::request_header_version`),
//! and the versions spoken are negotiated with the broker via ApiVersions on connect.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes, VersionRange};
use kafka_protocol::ResponseError;

/// Client id sent in every request header.
pub const CLIENT_ID: &str = "ringbroker-cli";
/// Timeout for establishing a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Socket read/write timeout; must exceed any broker-side wait we ask for.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Refuse absurd frame sizes (corrupt stream or not a Kafka broker).
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// ApiVersions version tried first; v0 is the fallback every broker understands.
const API_VERSIONS_PREFERRED: i16 = 3;

/// Kafka-style upper-snake error name for an error code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// `NAME (code)` plus the broker's message when it sent one.
pub fn describe_error(code: i16, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!("{} ({code}): {m}", error_name(code)),
        _ => format!("{} ({code})", error_name(code)),
    }
}

/// Ok for code 0, otherwise an error naming the Kafka error code.
pub fn check_error(code: i16, context: impl std::fmt::Display) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(anyhow!("{context}: {}", describe_error(code, None)))
    }
}

/// Versions of each API this client is able (and willing) to speak.
///
/// Produce and Fetch are capped at v12, OffsetCommit and OffsetFetch at v9:
/// from those on they identify topics by topic id instead of name, which this
/// client does not track (and kafka-protocol 0.18 lists OffsetCommit and
/// OffsetFetch v10 in `ApiKey::valid_versions` but cannot encode them).
pub fn client_versions(key: ApiKey) -> VersionRange {
    let mut range = key.valid_versions();
    let cap = match key {
        ApiKey::Produce | ApiKey::Fetch => Some(12),
        ApiKey::OffsetCommit | ApiKey::OffsetFetch => Some(9),
        _ => None,
    };
    if let Some(cap) = cap {
        range.max = range.max.min(cap);
    }
    range
}

/// Highest version in both ranges, if they overlap.
pub fn negotiate(client: VersionRange, broker: VersionRange) -> Option<i16> {
    let common = client.intersect(&broker);
    (!common.is_empty()).then_some(common.max)
}

fn api_key_of<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))
}

/// Encode a complete request frame (length prefix, header, body).
pub fn encode_request<R: Request>(req: &R, version: i16, correlation_id: i32, client_id: &str) -> Result<BytesMut> {
    let key = api_key_of::<R>()?;
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_string()));
    let header_version = key.request_header_version(version);

    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0); // length placeholder
    header.encode(&mut buf, header_version).with_context(|| format!("encoding {key:?} v{version} request header"))?;
    req.encode(&mut buf, version).with_context(|| format!("encoding {key:?} v{version} request"))?;
    let len = i32::try_from(buf.len() - 4).context("request too large")?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// Decode a response frame body (without the length prefix).
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    expected_correlation_id: i32,
) -> Result<R::Response> {
    let key = api_key_of::<R>()?;
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
        .with_context(|| format!("decoding {key:?} v{version} response header"))?;
    if header.correlation_id != expected_correlation_id {
        bail!(
            "{key:?} response has correlation id {} but {} was expected",
            header.correlation_id,
            expected_correlation_id
        );
    }
    R::Response::decode(&mut frame, version).with_context(|| format!("decoding {key:?} v{version} response"))
}

/// A blocking connection to one broker.
pub struct KafkaConnection {
    stream: TcpStream,
    addr: String,
    next_correlation_id: i32,
    broker_versions: HashMap<i16, VersionRange>,
}

impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl KafkaConnection {
    /// Connect to `host:port` and negotiate API versions.
    pub fn connect(addr: &str) -> Result<Self> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().with_context(|| format!("resolving {addr}"))?.collect();
        let mut last_err = None;
        for sa in &addrs {
            match TcpStream::connect_timeout(sa, CONNECT_TIMEOUT) {
                Ok(stream) => return Self::from_stream(stream, addr),
                Err(e) => last_err = Some(e),
            }
        }
        match last_err {
            Some(e) => Err(e).with_context(|| format!("connecting to {addr}")),
            None => bail!("{addr} resolved to no addresses"),
        }
    }

    /// Wrap an established stream and perform the ApiVersions handshake.
    pub fn from_stream(stream: TcpStream, addr: &str) -> Result<Self> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let mut conn =
            KafkaConnection { stream, addr: addr.to_string(), next_correlation_id: 1, broker_versions: HashMap::new() };
        conn.handshake().with_context(|| format!("ApiVersions handshake with {addr}"))?;
        Ok(conn)
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn handshake(&mut self) -> Result<()> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str(CLIENT_ID);
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let corr = self.write_request(&req, API_VERSIONS_PREFERRED)?;
        let frame = self.read_frame()?;
        // The error code is the first body field in every version, so it can be
        // read before knowing which version the broker answered with (a broker that
        // does not support our version answers UNSUPPORTED_VERSION in v0 format).
        let mut resp = if peek_api_versions_error(&frame)? == ResponseError::UnsupportedVersion.code() {
            let corr = self.write_request(&ApiVersionsRequest::default(), 0)?;
            let frame = self.read_frame()?;
            decode_response::<ApiVersionsRequest>(frame, 0, corr)?
        } else {
            decode_response::<ApiVersionsRequest>(frame, API_VERSIONS_PREFERRED, corr)?
        };
        check_error(resp.error_code, "ApiVersions")?;
        self.broker_versions = std::mem::take(&mut resp.api_keys)
            .into_iter()
            .map(|k| (k.api_key, VersionRange { min: k.min_version, max: k.max_version }))
            .collect();
        Ok(())
    }

    /// The broker's supported version range per API key, as reported by ApiVersions.
    pub fn broker_versions(&self) -> &HashMap<i16, VersionRange> {
        &self.broker_versions
    }

    /// The highest version of `key` supported by both this client and the broker.
    pub fn version_for(&self, key: ApiKey) -> Result<i16> {
        self.negotiated(key, client_versions(key))
    }

    fn negotiated(&self, key: ApiKey, client: VersionRange) -> Result<i16> {
        let broker = self
            .broker_versions
            .get(&(key as i16))
            .ok_or_else(|| anyhow!("broker {} does not support the {key:?} API", self.addr))?;
        negotiate(client, *broker).ok_or_else(|| {
            anyhow!("no common {key:?} version with broker {}: client {client}, broker {broker}", self.addr)
        })
    }

    /// Version negotiated for request type `R`, never beyond what its codec
    /// can encode.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        let key = api_key_of::<R>()?;
        self.negotiated(key, client_versions(key).intersect(&R::VERSIONS))
    }

    /// Send `req` at the negotiated version and wait for its response.
    pub fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        let version = self.version_of::<R>()?;
        self.send_version(req, version)
    }

    /// Send `req` at an explicit version and wait for its response.
    pub fn send_version<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let corr = self.write_request(req, version)?;
        let frame = self.read_frame()?;
        decode_response::<R>(frame, version, corr)
    }

    /// Send a request the broker will not answer (Produce with acks=0).
    pub fn send_no_response<R: Request>(&mut self, req: &R, version: i16) -> Result<()> {
        self.write_request(req, version).map(|_| ())
    }

    fn write_request<R: Request>(&mut self, req: &R, version: i16) -> Result<i32> {
        let corr = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(req, version, corr, CLIENT_ID)?;
        self.stream.write_all(&frame).with_context(|| format!("sending request to {}", self.addr))?;
        Ok(corr)
    }

    fn read_frame(&mut self) -> Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).with_context(|| format!("reading response from {}", self.addr))?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_FRAME {
            bail!("invalid response frame length {len} from {}", self.addr);
        }
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).with_context(|| format!("reading response from {}", self.addr))?;
        Ok(Bytes::from(body))
    }
}

/// Error code of an ApiVersions response frame (header v0 + body), any version.
fn peek_api_versions_error(frame: &Bytes) -> Result<i16> {
    let mut b = frame.slice(..);
    if b.remaining() < 6 {
        bail!("truncated ApiVersions response");
    }
    b.advance(4); // correlation id (ApiVersions responses always use header v0)
    Ok(b.get_i16())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::build_fetch_request;
    use crate::produce::{build_produce_request, encode_batch};
    use crate::topic::{build_create_request, build_delete_request, build_list_offsets_request};
    use kafka_protocol::messages::{ApiVersionsResponse, MetadataRequest};
    use kafka_protocol::protocol::decode_request_header_from_buffer;
    use std::collections::BTreeMap;

    /// Encode `req` as a frame, then decode it the way a broker would and
    /// check that header and body round-trip exactly with nothing left over.
    fn roundtrip<R: Request + PartialEq + std::fmt::Debug>(req: &R, version: i16) {
        let frame = encode_request(req, version, 42, CLIENT_ID).unwrap().freeze();
        let mut buf = frame.clone();
        let len = buf.get_i32();
        assert_eq!(len as usize, buf.remaining());
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        assert_eq!(header.request_api_key, R::KEY);
        assert_eq!(header.request_api_version, version);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some(CLIENT_ID));
        let decoded = R::decode(&mut buf, version).unwrap();
        assert_eq!(buf.remaining(), 0, "{:?} v{version}: trailing bytes", R::KEY);
        assert_eq!(&decoded, req, "{:?} v{version}", R::KEY);
    }

    #[test]
    fn request_encoding_roundtrips() {
        let mut av = ApiVersionsRequest::default();
        av.client_software_name = StrBytes::from_static_str(CLIENT_ID);
        av.client_software_version = StrBytes::from_static_str("1.0");
        roundtrip(&av, 3);
        roundtrip(&ApiVersionsRequest::default(), 0);

        let mut md = MetadataRequest::default();
        md.topics = None;
        md.allow_auto_topic_creation = false;
        for v in [4, 9, 12, 13] {
            roundtrip(&md, v);
        }

        let mut batches = BTreeMap::new();
        let batch = encode_batch(&[(None, Bytes::from_static(b"hello"))], 1000).unwrap();
        batches.insert(0, batch.clone());
        batches.insert(3, batch);
        let produce = build_produce_request("t", -1, batches);
        for v in 3..=12 {
            roundtrip(&produce, v);
        }

        let mut positions = BTreeMap::new();
        positions.insert(0, 5);
        positions.insert(1, 0);
        let fetch = build_fetch_request("t", &positions);
        for v in 4..=12 {
            roundtrip(&fetch, v);
        }

        let mut lo = build_list_offsets_request("t", &[0, 1], -2);
        roundtrip(&lo, 10);
        lo.timeout_ms = 0; // only exists in v10
        for v in 1..=9 {
            roundtrip(&lo, v);
        }

        let ct = build_create_request("t", 3, 1, &[("retention.ms".into(), "10".into())]);
        for v in 2..=7 {
            roundtrip(&ct, v);
        }

        for v in 1..=6 {
            roundtrip(&build_delete_request("t", v), v);
        }
    }

    #[test]
    fn header_versions_follow_api_and_version() {
        // Produce v9+ is flexible (header v2), ApiVersions v3 too, v0 uses header v1.
        let frame = encode_request(&ApiVersionsRequest::default(), 0, 1, "c").unwrap();
        // length(4) api_key(2) version(2) corr(4) client_id(2+1), empty body.
        assert_eq!(frame.len(), 4 + 2 + 2 + 4 + 2 + 1);
        let frame = encode_request(&ApiVersionsRequest::default(), 3, 1, "c").unwrap();
        // + tagged fields in header, compact strings (1 byte each) + tags in body.
        assert_eq!(frame.len(), 4 + 2 + 2 + 4 + 2 + 1 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn response_decoding_checks_correlation() {
        let mut resp = ApiVersionsResponse::default();
        resp.error_code = 0;
        let mut buf = BytesMut::new();
        let mut h = ResponseHeader::default();
        h.correlation_id = 7;
        h.encode(&mut buf, ApiKey::ApiVersions.response_header_version(3)).unwrap();
        resp.encode(&mut buf, 3).unwrap();
        let frame = buf.freeze();
        assert_eq!(peek_api_versions_error(&frame).unwrap(), 0);
        assert!(decode_response::<ApiVersionsRequest>(frame.clone(), 3, 7).is_ok());
        let err = decode_response::<ApiVersionsRequest>(frame, 3, 8).unwrap_err();
        assert!(err.to_string().contains("correlation"));
    }

    #[test]
    fn error_names() {
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(31000), "UNKNOWN_ERROR_CODE_31000");
        assert_eq!(describe_error(1, None), "OFFSET_OUT_OF_RANGE (1)");
        assert_eq!(describe_error(37, Some("bad")), "INVALID_PARTITIONS (37): bad");
        assert!(check_error(0, "x").is_ok());
        assert!(check_error(35, "x").unwrap_err().to_string().contains("UNSUPPORTED_VERSION"));
    }

    #[test]
    fn version_negotiation() {
        let c = client_versions(ApiKey::Produce);
        assert_eq!((c.min, c.max), (3, 12));
        let c = client_versions(ApiKey::Fetch);
        assert_eq!((c.min, c.max), (4, 12));
        assert_eq!(client_versions(ApiKey::ListOffsets).max, 10);
        assert_eq!(client_versions(ApiKey::OffsetFetch).max, 9);
        assert_eq!(client_versions(ApiKey::OffsetCommit).max, 9);
        let r = |min, max| VersionRange { min, max };
        assert_eq!(negotiate(r(3, 12), r(0, 11)), Some(11));
        assert_eq!(negotiate(r(3, 12), r(3, 13)), Some(12));
        assert_eq!(negotiate(r(4, 12), r(0, 3)), None);
    }
}
