"""Kafka behaviours third-party clients rely on (issue 9, part 6), each
checked with a real client against the real broker:

- every Kafka 4 topic config accepted with Kafka's validation, described with
  source, synonyms and documentation; compression.type and the timestamp
  bounds honoured;
- broker-level (dynamic) configs: the cluster default of a topic config;
- CreateTopics with an explicit replica assignment;
- an admin offset commit while the group has members: UNKNOWN_MEMBER_ID;
- Fetch's response-wide max_bytes (KIP-74);
- transactional producers refused at once, not after a minute;
- refused old-version connections logged at most once a minute per peer;
- DescribeLogDirs, DescribeProducers, ListPartitionReassignments.
"""

from __future__ import annotations

import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
)

import kwire
from conftest import admin_client, consume_all, consumer_conf, create_topic, producer_conf, unique_topic, wait_for_topic

# Every topic config of Kafka 4 (LogConfig / TopicConfig), with a valid
# non-default value.
KAFKA4_TOPIC_CONFIGS = {
    "cleanup.policy": "delete",
    "compression.type": "producer",
    "compression.gzip.level": "5",
    "compression.lz4.level": "10",
    "compression.zstd.level": "7",
    "delete.retention.ms": "1000",
    "file.delete.delay.ms": "1000",
    "flush.messages": "100000",
    "flush.ms": "5000",
    "follower.replication.throttled.replicas": "",
    "index.interval.bytes": "8192",
    "leader.replication.throttled.replicas": "*",
    "local.retention.bytes": "-2",
    "local.retention.ms": "-2",
    "max.compaction.lag.ms": "86400000",
    "max.message.bytes": "2000000",
    "message.downconversion.enable": "true",
    "message.timestamp.after.max.ms": "7200000",
    "message.timestamp.before.max.ms": "86400000000",
    "message.timestamp.difference.max.ms": "86400000000",
    "message.timestamp.type": "CreateTime",
    "min.cleanable.dirty.ratio": "0.4",
    "min.compaction.lag.ms": "0",
    "min.insync.replicas": "1",
    "preallocate": "true",
    "remote.storage.enable": "false",
    "remote.log.copy.disable": "false",
    "remote.log.delete.on.disable": "false",
    "retention.bytes": "1073741824",
    "retention.ms": "86400000",
    "segment.bytes": "104857600",
    "segment.index.bytes": "1048576",
    "segment.jitter.ms": "1000",
    "segment.ms": "3600000",
    "unclean.leader.election.enable": "false",
}


def describe(bootstrap, rtype, name, synonyms=True):
    a = admin_client(bootstrap)
    res = ConfigResource(rtype, name)
    return a.describe_configs([res], request_timeout=30)[res].result(timeout=30)


def test_every_kafka4_topic_config_is_accepted_and_described(broker):
    t = unique_topic("cfg")
    create_topic(broker.bootstrap, t, partitions=1, config=KAFKA4_TOPIC_CONFIGS)
    got = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t)
    for k, v in KAFKA4_TOPIC_CONFIGS.items():
        assert k in got, f"{k} not described"
        assert got[k].value == v, (k, got[k].value)
        assert got[k].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, (k, got[k].source)
        # The topic override first, then the broker-level synonym and the
        # default (confluent-kafka keys synonyms by name, so a broker synonym
        # with the topic config's own name folds into one entry).
        syn = got[k].synonyms
        names = list(syn.keys()) if isinstance(syn, dict) else [s.name for s in syn]
        assert names[0] == k, (k, names)
    assert len(got["retention.ms"].synonyms) == 2  # retention.ms, log.retention.ms
    # A config left alone reports Kafka's default and its source.
    t2 = unique_topic("cfg")
    create_topic(broker.bootstrap, t2)
    d = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t2)
    assert d["compression.type"].value == "producer"
    assert d["compression.type"].source == ConfigSource.DEFAULT_CONFIG.value
    assert d["max.compaction.lag.ms"].value == "9223372036854775807"
    assert d["segment.index.bytes"].value == "10485760"


@pytest.mark.parametrize(
    "name,value",
    [
        ("compression.type", "brotli"),
        ("compression.gzip.level", "0"),
        ("unclean.leader.election.enable", "maybe"),
        ("max.compaction.lag.ms", "0"),
        ("follower.replication.throttled.replicas", "0-1"),
        ("remote.storage.enable", "true"),
        ("no.such.config", "1"),
    ],
)
def test_invalid_topic_configs_are_refused_with_invalid_config(broker, name, value):
    a = admin_client(broker.bootstrap)
    t = unique_topic("bad")
    fs = a.create_topics([NewTopic(t, 1, 1, config={name: value})], request_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[t].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, e.value


def test_incremental_alter_configs_set_delete_append_subtract(broker):
    t = unique_topic("inc")
    create_topic(broker.bootstrap, t)
    a = admin_client(broker.bootstrap)
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        t,
        incremental_configs=[
            ConfigEntry("compression.type", "lz4", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("segment.jitter.ms", "100", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    a.incremental_alter_configs([res])[res].result(timeout=30)
    d = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t)
    assert d["compression.type"].value == "lz4"
    assert d["segment.jitter.ms"].value == "100"
    assert d["cleanup.policy"].value == "delete,compact"
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        t,
        incremental_configs=[
            ConfigEntry("compression.type", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SUBTRACT),
        ],
    )
    a.incremental_alter_configs([res])[res].result(timeout=30)
    d = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t)
    assert d["compression.type"].value == "producer"
    assert d["cleanup.policy"].value == "compact"
    # APPEND to a non-list config is INVALID_CONFIG, as in Kafka.
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        t,
        incremental_configs=[ConfigEntry("retention.ms", "5", incremental_operation=AlterConfigOpType.APPEND)],
    )
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([res])[res].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def test_dynamic_broker_config_sets_the_cluster_default_and_survives_restart(broker):
    t = unique_topic("dyn")
    create_topic(broker.bootstrap, t)
    # The cluster-wide default (resource name ""), which confluent-kafka
    # cannot name: kafka-python's AlterConfigs.
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource as KPResource, ConfigResourceType

    ka = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        resp = ka.alter_configs([KPResource(ConfigResourceType.BROKER, "", configs={"log.retention.ms": "123456"})])
        assert [r[0] for r in resp.resources] == [0], resp
    finally:
        ka.close()

    def check():
        d = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t)
        assert d["retention.ms"].value == "123456"
        assert d["retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        b = describe(broker.bootstrap, ConfigResource.Type.BROKER, "0")
        assert b["log.retention.ms"].value == "123456"
        assert b["log.retention.ms"].source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
        assert b["num.partitions"].is_read_only

    check()
    broker.stop()
    broker.start()
    check()
    # A per-broker value wins over the cluster default; unknown broker configs are refused.
    res = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry("log.retention.ms", "777", incremental_operation=AlterConfigOpType.SET)],
    )
    a = admin_client(broker.bootstrap)
    a.incremental_alter_configs([res])[res].result(timeout=30)
    d = describe(broker.bootstrap, ConfigResource.Type.TOPIC, t)
    assert d["retention.ms"].value == "777"
    assert d["retention.ms"].source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    bad = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[ConfigEntry("log.no.such", "1", incremental_operation=AlterConfigOpType.SET)],
    )
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([bad])[bad].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG


def fetch_v4_raw(host, port, topic, partition_max, max_bytes, partitions, offset=0):
    """Fetch v4 (non-flexible): returns [(partition, error, records bytes)]."""
    cid = 41
    body = kwire.request_header_v1(1, 4, cid)
    body += kwire.i32(-1) + kwire.i32(100) + kwire.i32(1) + kwire.i32(max_bytes) + kwire.i8(0)
    body += kwire.i32(1) + kwire.string(topic) + kwire.i32(len(partitions))
    for p in partitions:
        body += kwire.i32(p) + kwire.i64(offset) + kwire.i32(partition_max)
    s = kwire.connect(host, port)
    try:
        r = kwire.roundtrip(s, body, cid)
    finally:
        s.close()
    r.i32()  # throttle
    out = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p, err = r.i32(), r.i16()
            r.i64(), r.i64()
            n = r.i32()
            for _ in range(max(n, 0)):
                r.i64(), r.i64()
            out.append((p, err, r.kbytes() or b""))
    return out


def batches_in(records: bytes):
    at, out = 0, []
    while at + 12 <= len(records):
        ln = struct.unpack(">i", records[at + 8:at + 12])[0]
        out.append(records[at:at + 12 + ln])
        at += 12 + ln
    assert at == len(records), "whole batches only"
    return out


def test_fetch_honours_max_bytes_and_partition_max_bytes(broker):
    t = unique_topic("maxb")
    create_topic(broker.bootstrap, t, partitions=4)
    p = Producer(producer_conf(broker.bootstrap, **{"linger.ms": 0, "batch.size": 200_000}))
    value = b"v" * 50_000
    for part in range(4):
        for _ in range(100):  # 5 MB per partition, 20 MB in all
            p.produce(t, value=value, partition=part)
        p.flush(60)
    got = fetch_v4_raw(broker.host, broker.port, t, partition_max=10 << 20, max_bytes=1 << 20, partitions=[0, 1, 2, 3])
    total = sum(len(r) for _, _, r in got)
    assert all(err == 0 for _, err, _ in got)
    assert 0 < total <= 1 << 20, total
    # partition_max_bytes: each partition gets at most that much, in whole batches.
    got = fetch_v4_raw(broker.host, broker.port, t, partition_max=300_000, max_bytes=50 << 20, partitions=[0, 1, 2, 3])
    for _, _, recs in got:
        assert 0 < len(recs) <= 300_000
        batches_in(recs)
    # KIP-74: the first batch goes whole even when larger than both limits.
    got = fetch_v4_raw(broker.host, broker.port, t, partition_max=100, max_bytes=100, partitions=[0, 1])
    assert len(got[0][2]) > 100 and len(batches_in(got[0][2])) == 1
    assert got[1][2] == b""
    # And a real consumer with a small fetch.max.bytes still reads everything.
    out = consume_all(broker.bootstrap, t, range(4), extra_conf={"fetch.max.bytes": 1_000_000,
                                                                 "max.partition.fetch.bytes": 200_000})
    assert sum(len(v) for v in out.values()) == 400


def test_compression_type_recompresses_on_the_broker(broker):
    t = unique_topic("zstd")
    create_topic(broker.bootstrap, t, config={"compression.type": "zstd"})
    p = Producer(producer_conf(broker.bootstrap, **{"compression.type": "gzip", "linger.ms": 50}))
    values = [f"record-{i}-".encode() * 20 for i in range(200)]
    for v in values:
        p.produce(t, key=b"k", value=v, partition=0)
    p.flush(30)
    got = fetch_v4_raw(broker.host, broker.port, t, partition_max=10 << 20, max_bytes=10 << 20, partitions=[0])
    batches = batches_in(got[0][2])
    assert batches
    for b in batches:
        attributes = struct.unpack(">h", b[21:23])[0]
        assert attributes & 0x7 == 4, f"stored codec {attributes & 7}, want zstd (4)"
        assert kwire.batch_crc_ok(b)
    out = consume_all(broker.bootstrap, t, [0])
    assert [r.value for r in out[0]] == values


def test_timestamps_outside_the_topic_bounds_are_refused(broker):
    t = unique_topic("ts")
    create_topic(broker.bootstrap, t, config={"message.timestamp.before.max.ms": "60000"})
    p = Producer(producer_conf(broker.bootstrap, **{"linger.ms": 0, "retries": 0}))
    results = []
    now = int(time.time() * 1000)
    # One produce at a time: a batch with one bad record is refused whole.
    for value, ts in [(b"old", now - 3_600_000), (b"future", now + 2 * 3_600_000), (b"now", now)]:
        p.produce(t, value=value, partition=0, timestamp=ts, on_delivery=lambda err, msg: results.append(err))
        p.flush(30)
    codes = [e.code() if e else None for e in results]
    assert codes == [KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_TIMESTAMP, None], codes


def test_create_topic_with_explicit_replica_assignment(broker):
    a = admin_client(broker.bootstrap)
    t = unique_topic("assign")
    fs = a.create_topics([NewTopic(t, num_partitions=3, replica_assignment=[[0], [0], [0]])], request_timeout=30)
    fs[t].result(timeout=30)
    wait_for_topic(broker.bootstrap, t, 3)
    bad = unique_topic("assign")
    fs = a.create_topics([NewTopic(bad, num_partitions=2, replica_assignment=[[0], [7]])], request_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs[bad].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT


def test_admin_offset_commit_on_an_active_group_is_unknown_member_id(broker):
    from confluent_kafka import ConsumerGroupTopicPartitions

    t = unique_topic("grp")
    create_topic(broker.bootstrap, t)
    group = f"g-{uuid.uuid4().hex[:6]}"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "session.timeout.ms": 10000})
    c.subscribe([t])
    deadline = time.monotonic() + 30
    while not c.assignment() and time.monotonic() < deadline:
        c.poll(0.2)
    assert c.assignment(), "consumer never got an assignment"
    a = admin_client(broker.bootstrap)
    fs = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(t, 0, 0)])])
    try:
        res = fs[group].result(timeout=30)
        code = res.topic_partitions[0].error.code() if res.topic_partitions[0].error else None
    except KafkaException as e:
        code = e.args[0].code()
    assert code == KafkaError.UNKNOWN_MEMBER_ID, code
    c.close()
    # Once the group is empty the same admin commit works.
    fs = a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(t, 0, 0)])])
    fs[group].result(timeout=30)


def test_transactional_producer_is_refused_at_once(broker):
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "tx-1"})
    started = time.monotonic()
    with pytest.raises(KafkaException) as e:
        p.init_transactions(60)
    took = time.monotonic() - started
    assert took < 15, f"init_transactions took {took:.1f}s"
    err = e.value.args[0]
    assert err.fatal() or err.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, err


def test_refused_old_versions_are_logged_at_most_once_per_window(broker):
    # Produce v0 is not served: every attempt closes the connection.
    for i in range(200):
        s = kwire.connect(broker.host, broker.port)
        s.sendall(kwire.frame(kwire.request_header_v1(0, 0, i) + kwire.i16(1) + kwire.i32(1000) + kwire.i32(0)))
        kwire.wait_closed(s, timeout=5)
        s.close()
    time.sleep(0.5)
    lines = [l for l in broker.log_path.read_text(errors="replace").splitlines() if "closing connection" in l]
    assert 1 <= len(lines) <= 4, len(lines)  # one per shard at most, per minute


def test_describe_log_dirs_producers_and_reassignments(broker):
    t = unique_topic("dirs")
    create_topic(broker.bootstrap, t, partitions=2)
    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 0})
    for _ in range(10):
        p.produce(t, value=b"x" * 100, partition=0)
    p.flush(30)
    s = kwire.connect(broker.host, broker.port)
    try:
        # DescribeLogDirs v1, all topics (null array).
        r = kwire.roundtrip(s, kwire.request_header_v1(35, 1, 5) + kwire.i32(-1), 5)
        r.i32()
        sizes = {}
        for _ in range(r.i32()):
            assert r.i16() == 0
            assert r.string()  # the data directory
            for _ in range(r.i32()):
                name = r.string()
                for _ in range(r.i32()):
                    part, size, _lag, _future = r.i32(), r.i64(), r.i64(), r.i8()
                    sizes[(name, part)] = size
        assert sizes[(t, 0)] > 1000 and sizes[(t, 1)] == 0, sizes
        # DescribeProducers v0 (flexible): the idempotent producer is listed.
        body = kwire.request_header_v2(61, 0, 6) + kwire.uvarint(2) + kwire.compact_string(t)
        body += kwire.uvarint(2) + kwire.i32(0) + kwire.uvarint(0) + kwire.uvarint(0)
        r = kwire.roundtrip(s, body, 6)
        assert r.d[r.p] == 0  # response header v1: no tagged fields
        r.p += 1
        r.i32()  # throttle
        assert r.d[r.p] == 2  # one topic
        r.p += 1
        name_len = r.d[r.p] - 1
        r.p += 1 + name_len
        assert r.d[r.p] == 2  # one partition
        r.p += 1
        assert (r.i32(), r.i16()) == (0, 0)
        assert r.d[r.p] == 0  # null error message
        r.p += 1
        assert r.d[r.p] == 2, "one active producer"
        r.p += 1
        producer_id, epoch, last_seq = r.i64(), r.i32(), r.i32()
        assert producer_id >= 0 and epoch == 0 and last_seq == 9
        # ListPartitionReassignments v0: nothing in progress.
        body = kwire.request_header_v2(46, 0, 7) + kwire.i32(30000) + kwire.uvarint(0) + kwire.uvarint(0)
        r = kwire.roundtrip(s, body, 7)
        r.p += 1
        r.i32()
        assert r.i16() == 0
    finally:
        s.close()


def test_clients_cannot_delete_grow_produce_to_or_truncate_consumer_offsets(broker):
    """The internal topic belongs to the group coordinators (issue 10): an
    admin client can neither delete nor grow it (INVALID_REQUEST; Kafka 4.4
    allows both and loses or strands committed offsets), a producer cannot
    append to it and DeleteRecords cannot truncate it (INVALID_TOPIC_EXCEPTION,
    as Kafka). Committed offsets survive all of it."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import NewPartitions

    t = unique_topic("internal")
    create_topic(broker.bootstrap, t, 1)
    a = admin_client(broker.bootstrap)
    group = unique_topic("g-internal")
    committed = TopicPartition(t, 0, 7)
    a.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [committed])])[group].result(timeout=30)

    fs = a.delete_topics(["__consumer_offsets"], operation_timeout=30)
    with pytest.raises(KafkaException) as e:
        fs["__consumer_offsets"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST

    fs = a.create_partitions([NewPartitions("__consumer_offsets", 60)])
    with pytest.raises(KafkaException) as e:
        fs["__consumer_offsets"].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.INVALID_REQUEST

    p = Producer(producer_conf(broker.bootstrap, **{"message.timeout.ms": 10000}))
    errors = []
    p.produce("__consumer_offsets", b"not-a-group", partition=0, on_delivery=lambda err, _m: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None, errors
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]

    fs = a.delete_records([TopicPartition("__consumer_offsets", 0, -1)])
    with pytest.raises(KafkaException) as e:
        list(fs.values())[0].result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION

    md = a.list_topics(timeout=10)
    assert len(md.topics["__consumer_offsets"].partitions) == 50
    got = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(t, 0)])])[group].result(
        timeout=30
    )
    assert [(x.topic, x.partition, x.offset) for x in got.topic_partitions] == [(t, 0, 7)]
