"""Adversarial raw-socket tests (hand-encoded Kafka wire protocol, see kwire.py)."""

import random
import struct
import time
import zlib

import pytest

import kwire
from conftest import consume_all, create_topic, producer_conf, unique_topic, watermarks, run

RSS_LIMIT_KB = 500 * 1024


def _client_still_works(broker):
    """A fresh confluent-kafka client can produce and read back a record."""
    from confluent_kafka import Producer

    topic = unique_topic("alive")
    create_topic(broker.bootstrap, topic, 1)
    p = Producer(producer_conf(broker.bootstrap))
    results = []
    p.produce(topic, value=b"still-alive", partition=0,
              on_delivery=lambda err, msg: results.append((err, msg.offset())))
    assert p.flush(30) == 0
    assert results == [(None, 0)], results
    recs = consume_all(broker.bootstrap, topic, [0])
    assert [r.value for r in recs[0]] == [b"still-alive"]


def _send_and_expect_close(broker, payload: bytes, timeout: float = 10.0):
    s = kwire.connect(broker.host, broker.port)
    try:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            return  # closed while we were still writing: that is a close
        closed, data = kwire.wait_closed(s, timeout)
        assert closed, (
            f"broker did not close the connection within {timeout}s after "
            f"{len(payload)} garbage bytes (received {len(data)} bytes: {data[:64]!r})"
        )
    finally:
        s.close()


def test_api_versions_sanity(broker):
    """The hand-rolled framing works at all (guards the other tests)."""
    resp = kwire.api_versions(broker.host, broker.port, version=0)
    assert resp.error_code == 0
    keys = {k for k, _, _ in resp.apis}
    for required in (kwire.API_PRODUCE, kwire.API_FETCH, kwire.API_LIST_OFFSETS,
                     kwire.API_METADATA, kwire.API_API_VERSIONS):
        assert required in keys, f"api {required} not advertised: {resp.apis}"
    lo, hi = resp.version_range(kwire.API_PRODUCE)
    assert lo <= 3 <= hi, f"Produce v3 not supported: {lo}..{hi}"


@pytest.mark.parametrize("variant", ["framed-unknown-api", "framed-random-body", "raw-random"])
def test_garbage_closes_connection(broker, variant):
    rnd = random.Random(0xC0FFEE + zlib.crc32(variant.encode()))
    junk = bytes(rnd.getrandbits(8) for _ in range(4096))
    if variant == "framed-unknown-api":
        # well-formed length prefix, api key 0x4242 does not exist
        body = struct.pack(">hhi", 0x4242, 0, 1) + junk
        payload = kwire.frame(body)
    elif variant == "framed-random-body":
        # well-formed length, random header bytes; force api_key negative => invalid
        body = bytearray(junk)
        body[0] |= 0x80
        payload = kwire.frame(bytes(body))
    else:
        # unframed random bytes; force a length prefix that is absurd (>= 2 GiB
        # => negative int32) so no sane broker waits for the rest
        body = bytearray(junk)
        body[0] |= 0x80
        payload = bytes(body)
    _send_and_expect_close(broker, payload)
    assert broker.is_running()
    _client_still_works(broker)
    # kcat too
    cp = run(["kcat", "-L", "-b", broker.bootstrap, "-m", "15"], timeout=60)
    assert b"broker 0" in cp.stdout


@pytest.mark.parametrize("size", [0x7FFFFFF0, 0x40000000, -1])
def test_huge_length_prefix_rejected_without_allocation(broker, size):
    rss_before = broker.rss_kb()
    s = kwire.connect(broker.host, broker.port)
    try:
        # Only the 4-byte length prefix plus a valid-looking header start.
        s.sendall(struct.pack(">i", size) + struct.pack(">hhi", 0, 3, 9))
        t0 = time.monotonic()
        closed, _ = kwire.wait_closed(s, 10.0)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    assert closed, f"connection with length prefix {size:#x} not closed within 10 s"
    assert elapsed < 10.0
    rss_after = broker.rss_kb()
    assert rss_after < RSS_LIMIT_KB, f"broker RSS {rss_after} KiB (before {rss_before} KiB)"
    assert broker.is_running()
    _client_still_works(broker)
    assert broker.rss_kb() < RSS_LIMIT_KB


def test_corrupt_crc_rejected_and_nothing_stored(broker):
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic, 1)
    records = [(b"k%d" % i, b"value-%d" % i) for i in range(5)]
    good = kwire.record_batch(records, headers=[("h", b"1")])
    assert kwire.batch_crc_ok(good)

    for bad in (kwire.corrupt_crc(good), kwire.corrupt_payload(good)):
        assert not kwire.batch_crc_ok(bad)
        resp = kwire.produce_v3(broker.host, broker.port, topic, 0, bad, acks=-1)
        assert len(resp) == 1, resp
        assert resp[0].topic == topic and resp[0].partition == 0
        assert resp[0].error_code == kwire.CORRUPT_MESSAGE, resp

    lo, hi = watermarks(broker.bootstrap, topic, 0)
    assert (lo, hi) == (0, 0), f"corrupt batch was stored: watermarks {(lo, hi)}"

    resp = kwire.produce_v3(broker.host, broker.port, topic, 0, good, acks=-1)
    assert [(r.error_code, r.base_offset) for r in resp] == [(0, 0)], resp
    resp = kwire.produce_v3(broker.host, broker.port, topic, 0, good, acks=1)
    assert [(r.error_code, r.base_offset) for r in resp] == [(0, 5)], resp

    got = consume_all(broker.bootstrap, topic, [0])[0]
    assert [(r.offset, r.key, r.value) for r in got] == [
        (i, k, v) for i, (k, v) in enumerate(records + records)
    ]
    assert all(r.headers == [("h", b"1")] for r in got)


def test_api_versions_unsupported_version_kip511(broker):
    with kwire.connect(broker.host, broker.port) as s:
        cid = 4242
        r = kwire.roundtrip(s, kwire.api_versions_request(99, cid), cid)
        resp = kwire.parse_api_versions_v0(r)
        assert resp.error_code == kwire.UNSUPPORTED_VERSION
        assert resp.apis, "KIP-511: the fallback response must list supported APIs"
        rng = resp.version_range(kwire.API_API_VERSIONS)
        assert rng is not None and rng[0] == 0 and rng[1] >= 0, resp.apis
        # The connection stays usable: a supported ApiVersions on the same socket.
        r2 = kwire.roundtrip(s, kwire.api_versions_request(0, cid + 1), cid + 1)
        assert kwire.parse_api_versions_v0(r2).error_code == 0


def test_message_too_large(broker):
    topic = unique_topic("big")
    create_topic(broker.bootstrap, topic, 1, config={"max.message.bytes": "2048"})
    big = kwire.record_batch([(None, b"x" * 8192)])
    resp = kwire.produce_v3(broker.host, broker.port, topic, 0, big, acks=-1)
    assert [r.error_code for r in resp] == [kwire.MESSAGE_TOO_LARGE], resp
    assert watermarks(broker.bootstrap, topic, 0) == (0, 0)
    # a batch under the limit is accepted on the same topic
    small = kwire.record_batch([(None, b"y" * 100)])
    resp = kwire.produce_v3(broker.host, broker.port, topic, 0, small, acks=-1)
    assert [(r.error_code, r.base_offset) for r in resp] == [(0, 0)], resp
    assert watermarks(broker.bootstrap, topic, 0) == (0, 1)


# A request whose array length claims billions of elements: the codec would
# size a vector from it before reading any element. The broker must close
# the connection (not enough bytes) without dying or committing memory.
HUGE_ARRAY_REQUESTS = {
    # Metadata v1: topics array of 2^31-1 entries
    "metadata-v1": kwire.request_header_v1(3, 1, 1) + kwire.i32(0x7FFFFFFF),
    # Metadata v9 (flexible): compact array length 2^32-2
    "metadata-v9-compact": kwire.request_header_v2(3, 9, 2) + kwire.uvarint(0xFFFFFFFF),
    # Produce v3: no transactional id, acks 1, timeout, topics array 2^31-1
    "produce-v3": kwire.request_header_v1(0, 3, 3) + kwire.i16(-1) + kwire.i16(1) + kwire.i32(1000)
    + kwire.i32(0x7FFFFFFF),
    # Fetch v4: replica -1, max wait, min bytes, max bytes, isolation, topics 2^31-1
    "fetch-v4": kwire.request_header_v1(1, 4, 4) + kwire.i32(-1) + kwire.i32(100) + kwire.i32(1)
    + kwire.i32(1 << 20) + kwire.i8(0) + kwire.i32(0x7FFFFFFF),
}


@pytest.mark.parametrize("name", sorted(HUGE_ARRAY_REQUESTS))
def test_huge_array_length_closes_connection_and_broker_survives(broker, name):
    rss_before = broker.rss_kb()
    _send_and_expect_close(broker, kwire.frame(HUGE_ARRAY_REQUESTS[name]))
    assert broker.is_running(), "broker died on a request with a huge array length"
    assert broker.rss_kb() < rss_before + 200_000, "a huge array length must not commit memory"
    _client_still_works(broker)
