"""confluent-kafka (librdkafka) against the real broker.

No consumer groups: consumers use explicit assign() only (group.id is set
because librdkafka requires it, but we never subscribe() or commit()).
"""

import time
from collections import defaultdict

import pytest
from confluent_kafka import (
    OFFSET_END,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from conftest import (
    admin_client,
    assert_contiguous,
    consume_all,
    consumer_conf,
    create_topic,
    produce_all,
    unique_topic,
    wait_for_topic,
    watermarks,
)

T_OUT = 30


def describe_topic_configs(bootstrap, topic):
    a = admin_client(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    fut = a.describe_configs([res], request_timeout=T_OUT)[res]
    return {name: entry.value for name, entry in fut.result(timeout=T_OUT).items()}


def wait_config(bootstrap, topic, key, value, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = describe_topic_configs(bootstrap, topic).get(key)
        if got == value:
            return
        time.sleep(0.2)
    raise AssertionError(f"{topic} {key}: expected {value!r}, describe shows {got!r}")


# ---------------------------------------------------------------- admin
def test_admin_create_list_describe_cluster(broker_module):
    bs = broker_module.bootstrap
    a = admin_client(bs)
    topic = unique_topic("adm")
    fs = a.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1,
                  config={"retention.ms": "3600000", "cleanup.policy": "delete"})],
        operation_timeout=T_OUT, request_timeout=T_OUT)
    assert fs[topic].result(timeout=T_OUT) is None
    wait_for_topic(bs, topic, 3)

    md = a.list_topics(timeout=T_OUT)
    assert topic in md.topics
    t = md.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == [0, 1, 2]
    for p in t.partitions.values():
        assert p.leader == 0 and p.replicas == [0] and p.isrs == [0], p
    assert list(md.brokers) == [0]
    b0 = md.brokers[0]
    assert (b0.host, b0.port) == ("127.0.0.1", broker_module.port)
    assert md.controller_id == 0

    cfg = describe_topic_configs(bs, topic)
    assert cfg["retention.ms"] == "3600000"
    assert cfg["cleanup.policy"] == "delete"

    # creating it again fails with TOPIC_ALREADY_EXISTS
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)],
                         operation_timeout=T_OUT, request_timeout=T_OUT)
    with pytest.raises(Exception) as ei:
        fs[topic].result(timeout=T_OUT)
    err = ei.value.args[0]
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err

    cluster = a.describe_cluster(request_timeout=T_OUT).result(timeout=T_OUT)
    assert [n.id for n in cluster.nodes] == [0]
    assert cluster.nodes[0].port == broker_module.port
    assert cluster.controller is not None and cluster.controller.id == 0


# ---------------------------------------------------------------- produce / consume
def test_keyed_headers_timestamps_roundtrip(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("rt")
    create_topic(bs, topic, 3)
    base_ts = 1_700_000_000_000
    msgs = []
    for i in range(600):
        m = {
            "partition": i % 3,
            "key": None if i % 50 == 7 else b"key-%d" % (i % 20),
            # (no b"" values: librdkafka may send an empty payload as null)
            "value": None if i % 97 == 5 else b"value-%d-" % i + bytes([i % 256]) * (i % 40),
            "headers": [("idx", str(i).encode()), ("dup", b"a"), ("dup", b"b"), ("nullh", None)]
            if i % 3 != 2 else [],
            "timestamp": base_ts + i * 7,
        }
        msgs.append(m)
    reports = produce_all(bs, topic, msgs)

    by_part_off = {}
    for m, part, off in reports:
        assert part == m["partition"]
        assert (part, off) not in by_part_off, f"offset {part}/{off} reported twice"
        by_part_off[(part, off)] = m
    for p in range(3):
        offs = sorted(o for (pp, o) in by_part_off if pp == p)
        assert offs == list(range(200)), f"partition {p}: delivered offsets not 0..199"

    got = consume_all(bs, topic, range(3))
    for p in range(3):
        recs = got[p]
        assert len(recs) == 200
        assert_contiguous(recs, 0, f"partition {p}")
        for r in recs:
            m = by_part_off[(p, r.offset)]
            assert r.key == m["key"], (p, r.offset)
            assert r.value == m["value"], (p, r.offset)
            assert r.headers == m["headers"], (p, r.offset, r.headers)
            assert r.timestamp == (TIMESTAMP_CREATE_TIME, m["timestamp"]), (p, r.offset)
        # per-partition produce order preserved
        idxs = [int(r.headers[0][1]) for r in recs if r.headers]
        assert idxs == sorted(idxs)
    assert watermarks(bs, topic, 1) == (0, 200)


def test_keyed_partitioning_is_consistent(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("keys")
    create_topic(bs, topic, 3)
    msgs = [{"key": b"user-%d" % (i % 25), "value": b"%d" % i} for i in range(500)]
    reports = produce_all(bs, topic, msgs)
    key_parts = defaultdict(set)
    for m, part, _ in reports:
        key_parts[m["key"]].add(part)
    assert all(len(ps) == 1 for ps in key_parts.values()), key_parts
    assert len({next(iter(ps)) for ps in key_parts.values()}) >= 2, "all keys in one partition"

    got = consume_all(bs, topic, range(3))
    seen = defaultdict(set)
    for p, recs in got.items():
        assert_contiguous(recs, 0, f"partition {p}")
        for r in recs:
            seen[r.key].add(p)
        vals = [int(r.value) for r in recs]
        assert vals == sorted(vals), f"partition {p}: produce order lost"
    assert {k: ps for k, ps in seen.items()} == dict(key_parts)
    assert sum(len(v) for v in got.values()) == 500


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression_roundtrip(broker_module, codec):
    bs = broker_module.bootstrap
    topic = unique_topic(f"c-{codec}")
    create_topic(bs, topic, 1)
    msgs = [{"partition": 0, "key": b"k%d" % (i % 10),
             "value": (b"payload %06d " % i) * (1 + i % 30),
             "headers": [("codec", codec.encode())]} for i in range(3000)]
    msgs.append({"partition": 0, "key": b"big", "value": b"0123456789abcdef" * 40000})  # 640 KB
    reports = produce_all(bs, topic, msgs, **{"compression.type": codec, "linger.ms": 20,
                                              "batch.num.messages": 500})
    order = {off: m for m, _, off in reports}
    got = consume_all(bs, topic, [0])[0]
    assert len(got) == len(msgs)
    assert_contiguous(got, 0, codec)
    for r in got:
        m = order[r.offset]
        assert (r.key, r.value) == (m["key"], m["value"]), r.offset
        assert r.headers == m.get("headers", []), r.offset


def test_auto_create_on_produce(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("auto")
    a = admin_client(bs)
    assert topic not in a.list_topics(timeout=T_OUT).topics
    reports = produce_all(bs, topic, [{"value": b"v%d" % i} for i in range(10)])
    assert {part for _, part, _ in reports} == {0}  # num.partitions=1
    assert sorted(off for _, _, off in reports) == list(range(10))
    wait_for_topic(bs, topic, 1)
    got = consume_all(bs, topic, [0])[0]
    assert [r.value for r in got] == [b"v%d" % i for i in range(10)]


# ---------------------------------------------------------------- offsets
def test_offsets_for_times_and_watermarks(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("ts")
    create_topic(bs, topic, 1)
    base = 1_600_000_000_000
    ts = [base + 1000 * (i + 1) for i in range(20)]
    # two separate batches so the lookup has to cross batch boundaries
    produce_all(bs, topic, [{"partition": 0, "value": b"%d" % i, "timestamp": ts[i]} for i in range(10)])
    produce_all(bs, topic, [{"partition": 0, "value": b"%d" % i, "timestamp": ts[i]} for i in range(10, 20)])

    c = Consumer(consumer_conf(bs))
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=T_OUT, cached=False) == (0, 20)
        cases = {
            base: 0,               # before everything -> first offset
            ts[0]: 0,              # exact match
            ts[0] + 1: 1,          # between -> next
            ts[9] + 500: 10,       # across the batch boundary
            ts[10]: 10,
            ts[19]: 19,            # last record
            ts[19] + 1: OFFSET_END,  # past the end -> -1
        }
        for target, expected in cases.items():
            res = c.offsets_for_times([TopicPartition(topic, 0, target)], timeout=T_OUT)
            assert len(res) == 1 and res[0].error is None, res
            assert res[0].offset == expected, f"target {target - base}: got {res[0].offset}, want {expected}"
    finally:
        c.close()


def test_out_of_range_fetch(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("oor")
    create_topic(bs, topic, 1)
    produce_all(bs, topic, [{"partition": 0, "value": b"m%d" % i} for i in range(5)])

    # auto.offset.reset=earliest: an out-of-range start offset restarts at 0
    c = Consumer(consumer_conf(bs, **{"auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        first = None
        deadline = time.monotonic() + T_OUT
        while first is None and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error() is not None:
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                continue
            first = m
        assert first is not None, "no message after out-of-range reset to earliest"
        assert (first.offset(), first.value()) == (0, b"m0")
    finally:
        c.close()

    # auto.offset.reset=error: the OFFSET_OUT_OF_RANGE is surfaced to the app
    c = Consumer(consumer_conf(bs, **{"auto.offset.reset": "error"}))
    try:
        c.assign([TopicPartition(topic, 0, 1000)])
        err = None
        deadline = time.monotonic() + T_OUT
        while err is None and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            assert m.error() is not None, f"unexpected message at offset {m.offset()}"
            if m.error().code() == KafkaError._PARTITION_EOF:
                continue
            err = m.error()
        assert err is not None, "no error surfaced for out-of-range offset"
        assert err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), err
    finally:
        c.close()


# ---------------------------------------------------------------- configs
def test_describe_configs_kafka_defaults(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("defcfg")
    create_topic(bs, topic, 1)
    cfg = describe_topic_configs(bs, topic)
    assert cfg.get("retention.ms") == "604800000", cfg.get("retention.ms")
    assert cfg.get("cleanup.policy") == "delete", cfg.get("cleanup.policy")
    assert cfg.get("segment.bytes") == "1073741824", cfg.get("segment.bytes")


def test_alter_and_incremental_alter_configs(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("altcfg")
    create_topic(bs, topic, 1)
    a = admin_client(bs)

    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "86400000"})
    assert a.alter_configs([res], request_timeout=T_OUT)[res].result(timeout=T_OUT) is None
    wait_config(bs, topic, "retention.ms", "86400000")

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], request_timeout=T_OUT)[res].result(timeout=T_OUT)
    wait_config(bs, topic, "retention.ms", "7200000")
    cfg = describe_topic_configs(bs, topic)
    assert cfg["cleanup.policy"] == "delete"

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res], request_timeout=T_OUT)[res].result(timeout=T_OUT)
    wait_config(bs, topic, "retention.ms", "604800000")


# ---------------------------------------------------------------- partitions / records / delete
def test_create_partitions_3_to_5(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("grow")
    create_topic(bs, topic, 3)
    a = admin_client(bs)
    fs = a.create_partitions([NewPartitions(topic, 5)], operation_timeout=T_OUT, request_timeout=T_OUT)
    fs[topic].result(timeout=T_OUT)
    wait_for_topic(bs, topic, 5)
    md = a.list_topics(topic=topic, timeout=T_OUT)
    assert sorted(md.topics[topic].partitions) == [0, 1, 2, 3, 4]
    reports = produce_all(bs, topic, [{"partition": 4, "value": b"new"}, {"partition": 3, "value": b"new3"}])
    assert sorted((p, o) for _, p, o in reports) == [(3, 0), (4, 0)]
    got = consume_all(bs, topic, [3, 4])
    assert [r.value for r in got[4]] == [b"new"]
    assert [r.value for r in got[3]] == [b"new3"]


def test_delete_records_moves_low_watermark(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("delrec")
    create_topic(bs, topic, 1)
    produce_all(bs, topic, [{"partition": 0, "value": b"%d" % i} for i in range(10)])
    assert watermarks(bs, topic, 0) == (0, 10)
    a = admin_client(bs)
    tp = TopicPartition(topic, 0, 4)
    fs = a.delete_records([tp], request_timeout=T_OUT, operation_timeout=T_OUT)
    (fut,) = fs.values()
    result = fut.result(timeout=T_OUT)
    assert result.low_watermark == 4
    assert watermarks(bs, topic, 0) == (4, 10)
    got = consume_all(bs, topic, [0])[0]
    assert [(r.offset, r.value) for r in got] == [(i, b"%d" % i) for i in range(4, 10)]


def test_delete_topic(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("del")
    create_topic(bs, topic, 2)
    produce_all(bs, topic, [{"partition": 1, "value": b"x"}])
    a = admin_client(bs)
    a.delete_topics([topic], operation_timeout=T_OUT, request_timeout=T_OUT)[topic].result(timeout=T_OUT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if topic not in a.list_topics(timeout=T_OUT).topics:
            break
        time.sleep(0.2)
    assert topic not in a.list_topics(timeout=T_OUT).topics
    # deleting again: UNKNOWN_TOPIC_OR_PARTITION
    with pytest.raises(Exception) as ei:
        a.delete_topics([topic], operation_timeout=T_OUT, request_timeout=T_OUT)[topic].result(timeout=T_OUT)
    assert ei.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART, ei.value


def test_acks_0_and_1(broker_module):
    bs = broker_module.bootstrap
    topic = unique_topic("acks")
    create_topic(bs, topic, 1)
    produce_all(bs, topic, [{"partition": 0, "value": b"a1-%d" % i} for i in range(50)], acks="1")
    # acks=0: delivery reports carry no offset; check the data arrived instead
    p = Producer({"bootstrap.servers": bs, "acks": "0", "enable.idempotence": False, "linger.ms": 5})
    for i in range(50):
        p.produce(topic, value=b"a0-%d" % i, partition=0)
    assert p.flush(30) == 0
    deadline = time.monotonic() + 15
    while watermarks(bs, topic, 0)[1] < 100 and time.monotonic() < deadline:
        time.sleep(0.2)
    got = consume_all(bs, topic, [0])[0]
    assert [r.value for r in got] == [b"a1-%d" % i for i in range(50)] + [b"a0-%d" % i for i in range(50)]
