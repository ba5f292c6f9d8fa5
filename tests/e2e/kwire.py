"""Minimal hand-rolled Kafka wire protocol for adversarial e2e tests.

Only what the tests need: request framing (header v1 / v2), ApiVersions
(v0 response parsing, KIP-511 fallback), Produce v3 (non-flexible) request and
response, and a v2 RecordBatch builder with CRC-32C.  Pure Python + struct;
CRC-32C uses the ``crc32c`` package when installed, else a table fallback.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18

# error codes
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
UNSUPPORTED_VERSION = 35
INVALID_RECORD = 87


class WireError(Exception):
    pass


# ------------------------------------------------------------------ CRC-32C
try:  # pragma: no cover - depends on environment
    import crc32c as _crc32c_mod

    def crc32c(data: bytes) -> int:
        return _crc32c_mod.crc32c(data) & 0xFFFFFFFF
except ImportError:  # pragma: no cover
    _T = []
    for _i in range(256):
        _c = _i
        for _ in range(8):
            _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
        _T.append(_c)

    def crc32c(data: bytes) -> int:
        c = 0xFFFFFFFF
        for b in data:
            c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
        return c ^ 0xFFFFFFFF


def crc32c_pure(data: bytes) -> int:
    """Reference implementation (used to cross-check the package)."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


# ------------------------------------------------------------------ primitives
def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: Optional[str]) -> bytes:
    """STRING / NULLABLE_STRING (int16 length, -1 = null)."""
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def kbytes(b: Optional[bytes]) -> bytes:
    """BYTES / NULLABLE_BYTES (int32 length)."""
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag signed varint (works for varlong too)."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: Optional[str]) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Reader:
    def __init__(self, data: bytes):
        self.d = data
        self.p = 0

    def _take(self, n: int) -> bytes:
        if self.p + n > len(self.d):
            raise WireError(f"short read: need {n} at {self.p}, have {len(self.d)}")
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self._take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self._take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self._take(8))[0]

    def string(self) -> Optional[str]:
        n = self.i16()
        if n < 0:
            return None
        return self._take(n).decode()

    def kbytes(self) -> Optional[bytes]:
        n = self.i32()
        if n < 0:
            return None
        return self._take(n)

    def remaining(self) -> int:
        return len(self.d) - self.p

    def uvarint(self) -> int:
        v, shift = 0, 0
        while True:
            b = self._take(1)[0]
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7
            if shift > 35:
                raise WireError("uvarint too long")

    def compact_string(self) -> Optional[str]:
        n = self.uvarint()
        return None if n == 0 else self._take(n - 1).decode()

    def tagged_fields(self) -> Dict[int, bytes]:
        out = {}
        for _ in range(self.uvarint()):
            tag = self.uvarint()
            out[tag] = self._take(self.uvarint())
        return out


# ------------------------------------------------------------------ framing
def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: Optional[str] = "kwire") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: Optional[str] = "kwire") -> bytes:
    # header v2 = v1 + tagged fields (empty)
    return request_header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(timeout)
    return s


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise WireError(f"connection closed after {len(buf)}/{n} bytes")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, max_size: int = 64 << 20) -> bytes:
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    if size < 0 or size > max_size:
        raise WireError(f"bad response size {size}")
    return recv_exact(sock, size)


def roundtrip(sock: socket.socket, request: bytes, correlation_id: int) -> Reader:
    """Send a framed request, read one response; checks the correlation id and
    returns a Reader positioned after the (v0) response header."""
    sock.sendall(frame(request))
    r = Reader(recv_frame(sock))
    cid = r.i32()
    if cid != correlation_id:
        raise WireError(f"correlation id mismatch: sent {correlation_id}, got {cid}")
    return r


def wait_closed(sock: socket.socket, timeout: float = 10.0) -> Tuple[bool, bytes]:
    """Wait until the peer closes the connection.  Returns (closed, data_seen)."""
    deadline = time.monotonic() + timeout
    seen = bytearray()
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return False, bytes(seen)
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            return True, bytes(seen)
        if not chunk:
            return True, bytes(seen)
        seen += chunk
    return False, bytes(seen)


# ------------------------------------------------------------------ ApiVersions
@dataclass
class ApiVersionsResponse:
    error_code: int
    apis: List[Tuple[int, int, int]]  # (api_key, min, max)

    def version_range(self, api_key: int) -> Optional[Tuple[int, int]]:
        for k, lo, hi in self.apis:
            if k == api_key:
                return lo, hi
        return None


def api_versions_request(version: int, correlation_id: int) -> bytes:
    if version >= 3:
        # flexible: header v2, body = client_software_name, client_software_version, tags
        return (request_header_v2(API_API_VERSIONS, version, correlation_id)
                + compact_string("kwire") + compact_string("0.1") + uvarint(0))
    return request_header_v1(API_API_VERSIONS, version, correlation_id)


def parse_api_versions_v0(r: Reader) -> ApiVersionsResponse:
    """ApiVersions response v0 body (also the KIP-511 fallback format)."""
    err = r.i16()
    n = r.i32()
    if n < 0 or n > 10_000:
        raise WireError(f"bad api array length {n}")
    apis = [(r.i16(), r.i16(), r.i16()) for _ in range(n)]
    return ApiVersionsResponse(err, apis)


def api_versions(host: str, port: int, version: int = 0, timeout: float = 5.0) -> ApiVersionsResponse:
    """One ApiVersions round trip on a fresh connection; ``version`` 0-2 and
    unsupported versions are parsed as the v0 body (v1/v2 add a trailing
    throttle_time_ms which we ignore)."""
    with connect(host, port, timeout) as s:
        cid = 0x1234
        r = roundtrip(s, api_versions_request(version, cid), cid)
        return parse_api_versions_v0(r)


# ------------------------------------------------------------------ RecordBatch v2
def encode_record(offset_delta: int, timestamp_delta: int, key: Optional[bytes],
                  value: Optional[bytes], headers: Sequence[Tuple[str, Optional[bytes]]] = ()) -> bytes:
    body = bytearray()
    body += i8(0)  # attributes
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    body += varint(-1) if key is None else varint(len(key)) + key
    body += varint(-1) if value is None else varint(len(value)) + value
    body += varint(len(headers))
    for hk, hv in headers:
        hkb = hk.encode()
        body += varint(len(hkb)) + hkb
        body += varint(-1) if hv is None else varint(len(hv)) + hv
    return varint(len(body)) + bytes(body)


def record_batch(records: Sequence[Tuple[Optional[bytes], Optional[bytes]]],
                 base_timestamp: Optional[int] = None, base_offset: int = 0,
                 headers: Sequence[Tuple[str, Optional[bytes]]] = (),
                 producer_id: int = -1, producer_epoch: int = -1, base_sequence: int = -1) -> bytes:
    """Uncompressed magic-2 batch of (key, value) records, non-transactional;
    idempotent when producer_id >= 0. CRC-32C over attributes..end."""
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = b"".join(encode_record(i, 0, k, v, headers) for i, (k, v) in enumerate(records))
    after_crc = (
        i16(0)                       # attributes: no compression, CreateTime
        + i32(len(records) - 1)      # lastOffsetDelta
        + i64(base_timestamp)        # baseTimestamp
        + i64(base_timestamp)        # maxTimestamp
        + i64(producer_id)           # producerId
        + i16(producer_epoch)        # producerEpoch
        + i32(base_sequence)         # baseSequence
        + i32(len(records))          # records count
        + recs
    )
    crc = crc32c(after_crc)
    after_len = i32(0) + i8(2) + u32(crc) + after_crc  # partitionLeaderEpoch, magic, crc
    return i64(base_offset) + i32(len(after_len)) + after_len


# Byte offset of the CRC field inside a v2 batch: baseOffset(8)+len(4)+ple(4)+magic(1)
BATCH_CRC_OFFSET = 17


def corrupt_crc(batch: bytes) -> bytes:
    b = bytearray(batch)
    b[BATCH_CRC_OFFSET] ^= 0xFF
    return bytes(b)


def corrupt_payload(batch: bytes) -> bytes:
    """Flip a byte in the record data (CRC left as is, now wrong)."""
    b = bytearray(batch)
    b[-1] ^= 0x5A
    return bytes(b)


def batch_crc_ok(batch: bytes) -> bool:
    stored = struct.unpack(">I", batch[BATCH_CRC_OFFSET:BATCH_CRC_OFFSET + 4])[0]
    return stored == crc32c(batch[BATCH_CRC_OFFSET + 4:])


# ------------------------------------------------------------------ Produce v3
def produce_v3_request(correlation_id: int, topic: str, partition: int, records: bytes,
                       acks: int = -1, timeout_ms: int = 10000,
                       transactional_id: Optional[str] = None) -> bytes:
    body = (
        string(transactional_id)
        + i16(acks)
        + i32(timeout_ms)
        + i32(1) + string(topic)
        + i32(1) + i32(partition) + kbytes(records)
    )
    return request_header_v1(API_PRODUCE, 3, correlation_id) + body


@dataclass
class PartitionProduceResponse:
    topic: str
    partition: int
    error_code: int
    base_offset: int
    log_append_time: int


def parse_produce_v3_response(r: Reader) -> List[PartitionProduceResponse]:
    out = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            p = r.i32()
            err = r.i16()
            base = r.i64()
            lat = r.i64()
            out.append(PartitionProduceResponse(topic, p, err, base, lat))
    r.i32()  # throttle_time_ms
    return out


def produce_v3(host: str, port: int, topic: str, partition: int, records: bytes,
               acks: int = -1, timeout: float = 15.0) -> List[PartitionProduceResponse]:
    with connect(host, port, timeout) as s:
        cid = 77
        r = roundtrip(s, produce_v3_request(cid, topic, partition, records, acks=acks), cid)
        return parse_produce_v3_response(r)


@dataclass
class ProduceV10Result:
    """One partition of a Produce v10 answer, with KIP-951's current leader
    (None when absent) and the response's node endpoints {id: (host, port)}."""
    error_code: int
    base_offset: int
    current_leader: Optional[Tuple[int, int]]
    node_endpoints: Dict[int, Tuple[str, int]]


def produce_v10(host: str, port: int, topic: str, partition: int, records: bytes,
                acks: int = -1, timeout: float = 15.0) -> ProduceV10Result:
    """Produce v10 (flexible, KIP-951 fields) of one partition."""
    body = (
        uvarint(0)  # transactional_id: null
        + i16(acks) + i32(10000)
        + uvarint(2) + compact_string(topic)
        + uvarint(2) + i32(partition) + uvarint(len(records) + 1) + records + uvarint(0)
        + uvarint(0)  # topic tagged fields
        + uvarint(0)  # request tagged fields
    )
    with connect(host, port, timeout) as s:
        cid = 78
        r = roundtrip(s, request_header_v2(API_PRODUCE, 10, cid) + body, cid)
        r.tagged_fields()  # response header v1
        result = None
        for _ in range(r.uvarint() - 1):
            r.compact_string()
            for _ in range(r.uvarint() - 1):
                r.i32()
                err, base = r.i16(), r.i64()
                r.i64(), r.i64()  # log_append_time, log_start_offset
                for _ in range(r.uvarint() - 1):  # record_errors
                    r.i32(), r.compact_string(), r.tagged_fields()
                r.compact_string()  # error_message
                tags = r.tagged_fields()
                leader = None
                if 0 in tags:
                    t = Reader(tags[0])
                    leader = (t.i32(), t.i32())
                result = ProduceV10Result(err, base, leader, {})
            r.tagged_fields()  # the topic's
        r.i32()  # throttle_time_ms
        tags = r.tagged_fields()
        if 0 in tags:
            t = Reader(tags[0])
            for _ in range(t.uvarint() - 1):
                nid, h, prt = t.i32(), t.compact_string(), t.i32()
                t.compact_string(), t.tagged_fields()  # rack
                result.node_endpoints[nid] = (h, prt)
        assert result is not None, "no partition in the answer"
        return result


def fetch_v12(host: str, port: int, topic: str, partition: int, offset: int = 0,
              timeout: float = 15.0) -> Tuple[int, Optional[Tuple[int, int]]]:
    """Fetch v12 (flexible, KIP-951's current leader) of one partition, no
    wait: (error_code, (leader, epoch) or None when the field is absent)."""
    body = (
        i32(-1) + i32(0) + i32(1) + i32(1 << 20) + i8(0)  # replica, max wait, min bytes, max bytes, isolation
        + i32(0) + i32(-1)  # no fetch session
        + uvarint(2) + compact_string(topic)
        + uvarint(2) + i32(partition) + i32(-1) + i64(offset) + i32(-1) + i64(-1) + i32(1 << 20) + uvarint(0)
        + uvarint(0)  # topic tagged fields
        + uvarint(1)  # forgotten topics: none
        + compact_string("")  # rack
        + uvarint(0)
    )
    with connect(host, port, timeout) as s:
        cid = 81
        r = roundtrip(s, request_header_v2(1, 12, cid) + body, cid)
        r.tagged_fields()
        r.i32(), r.i16(), r.i32()  # throttle, error, session
        result = None
        for _ in range(r.uvarint() - 1):
            r.compact_string()
            for _ in range(r.uvarint() - 1):
                r.i32()
                err = r.i16()
                r.i64(), r.i64(), r.i64()  # high watermark, last stable, log start
                n = r.uvarint()
                for _ in range(max(n - 1, 0)):  # aborted transactions
                    r.i64(), r.i64(), r.tagged_fields()
                r.i32()  # preferred read replica
                n = r.uvarint()
                if n > 0:
                    r._take(n - 1)  # records
                tags = r.tagged_fields()
                leader = None
                if 1 in tags:
                    t = Reader(tags[1])
                    leader = (t.i32(), t.i32())
                result = (err, leader)
            r.tagged_fields()
        r.tagged_fields()
        assert result is not None, "no partition in the answer"
        return result


def metadata_v12_all_request(correlation_id: int) -> bytes:
    """Metadata v12 for every topic (topics null), no auto-creation."""
    body = uvarint(0) + i8(0) + i8(0) + uvarint(0)
    return request_header_v2(3, 12, correlation_id) + body


def parse_metadata_v12(r: Reader) -> Dict[str, List[Tuple[int, int, int, List[int]]]]:
    """A Metadata v12 answer after the correlation id: topic -> [(partition,
    error_code, leader, replicas)]."""
    r.tagged_fields()
    r.i32()  # throttle
    for _ in range(r.uvarint() - 1):  # brokers
        r.i32(), r.compact_string(), r.i32(), r.compact_string(), r.tagged_fields()
    r.compact_string()  # cluster id
    r.i32()  # controller
    topics: Dict[str, List[Tuple[int, int, int, List[int]]]] = {}
    for _ in range(r.uvarint() - 1):
        r.i16()
        name = r.compact_string()
        r._take(16)
        r.i8()
        parts = []
        for _ in range(r.uvarint() - 1):
            err, index, leader = r.i16(), r.i32(), r.i32()
            r.i32()  # leader epoch
            replicas = [r.i32() for _ in range(r.uvarint() - 1)]
            for _ in range(2):  # isr, offline
                for _ in range(r.uvarint() - 1):
                    r.i32()
            r.tagged_fields()
            parts.append((index, err, leader, replicas))
        r.i32(), r.tagged_fields()
        topics[name] = parts
    return topics


def metadata_topics(host: str, port: int, timeout: float = 10.0) -> Dict[str, List[Tuple[int, int, int, List[int]]]]:
    """What this one broker's Metadata says (no client routing elsewhere)."""
    with connect(host, port, timeout) as s:
        return parse_metadata_v12(roundtrip(s, metadata_v12_all_request(79), 79))


API_INIT_PRODUCER_ID = 22


def init_producer_id(host: str, port: int, timeout: float = 10.0) -> Tuple[int, int, int]:
    """InitProducerId v0 for an idempotent (non-transactional) producer:
    returns (error_code, producer_id, producer_epoch)."""
    with connect(host, port, timeout) as s:
        cid = 91
        req = request_header_v1(API_INIT_PRODUCER_ID, 0, cid) + string(None) + i32(60000)
        r = roundtrip(s, req, cid)
        r.i32()  # throttle_time_ms
        err = r.i16()
        return err, r.i64(), r.i16()
