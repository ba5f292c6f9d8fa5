"""Consumer groups with kafka-python 2.x (pure-Python client, classic protocol)."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from conftest import unique_topic

NP = 3
N = 1500


def _admin(bs):
    return KafkaAdminClient(bootstrap_servers=bs, client_id="e2e-kp-groups", request_timeout_ms=30000)


def _describe(admin, group):
    res = admin.describe_consumer_groups([group])
    assert len(res) == 1, res
    return res[0]


def test_kafka_python_group_consume_commit_admin(broker):
    bs = broker.bootstrap
    topic = unique_topic("kpg")
    group = unique_topic("kpgroup")
    admin = _admin(bs)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=NP, replication_factor=1)],
                            timeout_ms=30000)
        deadline = time.monotonic() + 20
        while topic not in admin.list_topics() and time.monotonic() < deadline:
            time.sleep(0.2)

        prod = KafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=5)
        expected = {}
        futs = [(i, prod.send(topic, key=b"k%d" % (i % 31), value=b"kp-%d" % i)) for i in range(N)]
        prod.flush(60)
        for i, f in futs:
            md = f.get(timeout=30)
            expected[(md.partition, md.offset)] = b"kp-%d" % i
        prod.close()
        assert len(expected) == N

        # ---- a KafkaConsumer in a group: subscribe, consume, commit synchronously
        c = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, client_id="kp-member",
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          session_timeout_ms=10000, heartbeat_interval_ms=1000,
                          request_timeout_ms=30000)
        got = []
        try:
            deadline = time.monotonic() + 60
            while len(got) < N and time.monotonic() < deadline:
                batches = c.poll(timeout_ms=500, max_records=500)
                for tp, msgs in batches.items():
                    for m in msgs:
                        got.append((m.partition, m.offset, m.value))
                if batches:
                    c.commit()  # synchronous: commits the positions just consumed
            assert len(got) == N, f"consumed {len(got)}/{N} in group {group}"
            assert c.assignment() == {TopicPartition(topic, p) for p in range(NP)}
            seen = {(p, o): v for p, o, v in got}
            assert len(seen) == N, "duplicates within a single member"
            assert seen == expected

            # the consumer's own view of the committed offsets
            highs = c.end_offsets([TopicPartition(topic, p) for p in range(NP)])
            assert sum(highs.values()) == N
            for tp, hi in highs.items():
                assert c.committed(tp) == hi, (tp, c.committed(tp), hi)

            # ---- admin view while the member is active
            groups = admin.list_consumer_groups()
            ids = {g[0]: g for g in groups}
            assert group in ids, groups
            assert ids[group][1] == "consumer", ids[group]

            deadline = time.monotonic() + 20
            while True:
                d = _describe(admin, group)
                if d.state == "Stable" or time.monotonic() > deadline:
                    break
                c.poll(timeout_ms=200)
            assert d.error_code == 0
            assert d.group == group
            assert d.state == "Stable", d
            assert d.protocol_type == "consumer"
            assert d.protocol in ("range", "roundrobin", "sticky"), d.protocol
            assert len(d.members) == 1, d.members
            m = d.members[0]
            assert m.client_id == "kp-member"
            assert m.member_id
            assert m.client_host
            assert list(m.member_metadata.topics) == [topic]
            assigned = {(t, p) for t, ps in m.member_assignment.assignment for p in ps}
            assert assigned == {(topic, p) for p in range(NP)}

            offs = admin.list_consumer_group_offsets(group)
            assert {tp: om.offset for tp, om in offs.items()} == highs, offs
            # subset of partitions
            offs1 = admin.list_consumer_group_offsets(group, partitions=[TopicPartition(topic, 1)])
            assert {tp: om.offset for tp, om in offs1.items()} == {TopicPartition(topic, 1): highs[TopicPartition(topic, 1)]}

            # explicit commit with metadata, read back
            c.commit({TopicPartition(topic, 0): OffsetAndMetadata(5, "meta-zero", -1)})
            offs = admin.list_consumer_group_offsets(group)
            assert offs[TopicPartition(topic, 0)].offset == 5
            assert offs[TopicPartition(topic, 0)].metadata == "meta-zero"
        finally:
            c.close()  # LeaveGroup

        # ---- after close: group is Empty but keeps its offsets
        deadline = time.monotonic() + 15
        while True:
            d = _describe(admin, group)
            if d.state == "Empty" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert d.state == "Empty", d
        assert d.members == []
        assert group in {g[0] for g in admin.list_consumer_groups()}

        # a new member of the group resumes at the committed offsets (p0 at 5)
        c2 = KafkaConsumer(topic, bootstrap_servers=bs, group_id=group, enable_auto_commit=False,
                           auto_offset_reset="earliest", session_timeout_ms=10000,
                           heartbeat_interval_ms=1000, consumer_timeout_ms=8000)
        try:
            again = [(m.partition, m.offset) for m in c2]
        finally:
            c2.close()
        n0 = highs[TopicPartition(topic, 0)]
        assert sorted(again) == [(0, o) for o in range(5, n0)], again[:10]

        # ---- delete the empty group
        res = admin.delete_consumer_groups([group])
        assert res == [(group, None)] or [(g, getattr(e, "errno", e)) for g, e in res] == [(group, 0)], res
        assert group not in {g[0] for g in admin.list_consumer_groups()}
    finally:
        admin.close()
