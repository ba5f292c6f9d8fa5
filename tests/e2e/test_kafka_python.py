"""kafka-python (pure Python client) against the real broker; no consumer groups."""

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from conftest import unique_topic

N = 2000


@pytest.fixture
def admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="e2e-kafka-python",
                         request_timeout_ms=30000)
    try:
        yield a
    finally:
        a.close()


def _consume_assigned(bootstrap, topic, partitions, expected_total, timeout=60):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=1000,
                      request_timeout_ms=30000)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning()
        got = {p: [] for p in partitions}
        deadline = time.monotonic() + timeout
        total = 0
        while total < expected_total and time.monotonic() < deadline:
            batches = c.poll(timeout_ms=1000, max_records=5000)
            for tp, msgs in batches.items():
                got[tp.partition].extend(msgs)
                total += len(msgs)
        assert total == expected_total, f"consumed {total}/{expected_total}"
        ends = c.end_offsets(tps)
        return got, {tp.partition: off for tp, off in ends.items()}
    finally:
        c.close()


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_admin_produce_consume(broker, admin, compression):
    topic = unique_topic("kp")
    admin.create_topics([NewTopic(name=topic, num_partitions=2, replication_factor=1)],
                        timeout_ms=30000)
    deadline = time.monotonic() + 20
    while topic not in admin.list_topics() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(name=topic, num_partitions=2, replication_factor=1)],
                            timeout_ms=30000)

    prod = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0,
                         enable_idempotence=False, compression_type=compression,
                         linger_ms=5, request_timeout_ms=30000)
    try:
        futures = []
        expected = []
        for i in range(N):
            part = i % 2
            key = b"key-%d" % i
            value = b"value-%d-" % i + b"z" * (i % 100)
            headers = [("i", str(i).encode()), ("c", (compression or "none").encode())]
            futures.append(prod.send(topic, key=key, value=value, headers=headers,
                                     partition=part, timestamp_ms=1_650_000_000_000 + i))
            expected.append((part, key, value, headers, 1_650_000_000_000 + i))
        prod.flush(timeout=60)
        metas = [f.get(timeout=60) for f in futures]
    finally:
        prod.close(timeout=10)

    by_pos = {}
    for md, exp in zip(metas, expected):
        assert md.topic == topic and md.partition == exp[0]
        by_pos[(md.partition, md.offset)] = exp
    assert len(by_pos) == N, "duplicate offsets in produce metadata"
    for p in (0, 1):
        assert sorted(o for pp, o in by_pos if pp == p) == list(range(N // 2))

    got, ends = _consume_assigned(broker.bootstrap, topic, [0, 1], N)
    assert ends == {0: N // 2, 1: N // 2}
    for p, msgs in got.items():
        assert [m.offset for m in msgs] == list(range(N // 2)), f"partition {p} offsets"
        for m in msgs:
            part, key, value, headers, ts = by_pos[(p, m.offset)]
            assert (m.key, m.value) == (key, value)
            assert list(m.headers) == headers
            assert m.timestamp == ts
