"""Consumer-group state (committed offsets, group membership) across a broker SIGKILL."""

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from conftest import create_topic, produce_all, unique_topic
from grouputil import (
    T_OUT,
    GroupMember,
    admin,
    assert_exactly_once,
    committed_offsets,
    describe_group,
    group_conf,
    group_state_name,
    high_watermarks,
    member_partitions,
    wait_balanced,
    wait_group,
    wait_until,
)

NP = 3
PER_PART = 300


def _offsets_with_meta(bs, group, topic):
    from confluent_kafka import ConsumerGroupTopicPartitions

    a = admin(bs)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(NP)])
    res = a.list_consumer_group_offsets([req], request_timeout=T_OUT)[group].result(timeout=T_OUT)
    return {tp.partition: (tp.offset, tp.metadata) for tp in res.topic_partitions}


def _retry(fn, timeout=30.0, what=""):
    """Call fn until it does not raise (the coordinator may still be loading
    right after a restart: COORDINATOR_LOAD_IN_PROGRESS is retriable)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (KafkaException, AssertionError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {timeout}s: {e!r}")
            time.sleep(0.3)


def test_committed_offsets_survive_sigkill_and_consumer_resumes(broker):
    bs = broker.bootstrap
    topic = unique_topic("rgrp")
    create_topic(bs, topic, NP)
    group = unique_topic("rg")
    produced = {}
    msgs = [{"partition": i % NP, "key": b"k%d" % i, "value": b"r-%d" % i} for i in range(NP * PER_PART)]
    for m, p, o in produce_all(bs, topic, msgs):
        produced[(p, o)] = m["value"]

    # ---- a group member reads, then commits chosen positions (with metadata)
    targets = {0: 100, 1: 217, 2: 299}
    c = Consumer(group_conf(bs, group, **{"client.id": "before"}))
    assigned = []
    c.subscribe([topic], on_assign=lambda cons, parts: assigned.append(parts))
    try:
        seen = 0
        deadline = time.monotonic() + 40
        while seen < NP * PER_PART and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is None:
                    seen += 1
        assert seen == NP * PER_PART, f"first consumer read {seen}"
        res = c.commit(offsets=[TopicPartition(topic, p, o, metadata=f"meta-{p}") for p, o in targets.items()],
                       asynchronous=False)
        assert all(tp.error is None for tp in res), res
    finally:
        c.close()
    assert assigned, "first consumer was never assigned partitions"

    exp_offsets = {(topic, p): o for p, o in targets.items()}
    before = committed_offsets(bs, group)
    assert before == exp_offsets, before
    before_meta = _offsets_with_meta(bs, group, topic)
    assert before_meta == {p: (o, f"meta-{p}") for p, o in targets.items()}, before_meta
    wait_group(bs, group, "EMPTY", 0)

    # ---- crash the broker, twice (the second time right after recovery)
    for _ in range(2):
        broker.kill()
        broker.start()
        after = _retry(lambda: committed_offsets(bs, group), what="list_consumer_group_offsets after restart")
        assert after == before, f"committed offsets changed across SIGKILL: {before} -> {after}"
    assert _offsets_with_meta(bs, group, topic) == before_meta

    # the group itself is still known (Empty, consumer protocol)
    def listed_ok():
        a = admin(bs)  # keep the client alive until the future resolves
        res = a.list_consumer_groups(request_timeout=T_OUT).result(timeout=T_OUT)
        # errors (e.g. COORDINATOR_LOAD_IN_PROGRESS right after start) are retriable
        assert not res.errors, f"list_consumer_groups errors: {res.errors}"
        listed = {g.group_id: g for g in res.valid}
        assert group in listed, f"group {group} not listed after restart: {list(listed)}"
        return listed[group]
    listing = _retry(listed_ok, timeout=20, what="list_consumer_groups after restart")
    assert getattr(listing.state, "name", listing.state) == "EMPTY", listing.state
    d = describe_group(bs, group)
    assert group_state_name(d) == "EMPTY" and d.members == [], (d.state, d.members)

    # ---- a new member resumes exactly at the committed positions
    m = GroupMember("after", group_conf(bs, group, **{"client.id": "after"}), [topic]).start()
    try:
        want = {k: v for k, v in produced.items() if k[1] >= targets[k[0]]}
        assert len(want) == NP * PER_PART - sum(targets.values())
        wait_until(lambda: m.count() >= len(want), 40, f"resumed consumer reads {len(want)} records")
        time.sleep(1.5)  # anything before the committed offset would show up now
        m.close()
        assert not m.commit_errors and not m.errors, (m.commit_errors, m.errors)
        assert_exactly_once(m.records, want, "resumed consumer")
    finally:
        m._stop.set()

    # its own commits (written after the recovery) survive another crash
    highs = high_watermarks(bs, topic, NP)
    final = {(topic, p): highs[p] for p in range(NP)}
    assert committed_offsets(bs, group) == final
    broker.kill()
    broker.start()
    assert _retry(lambda: committed_offsets(bs, group), what="offsets after third restart") == final


def test_active_member_keeps_membership_across_sigkill(broker):
    """Group metadata (member, generation, assignment) is durable: after a
    coordinator crash the still-running member keeps heartbeating with its
    old member id/generation, no rebalance happens, and consumption goes on
    from the committed offsets without loss or duplicates."""
    bs = broker.bootstrap
    topic = unique_topic("rlive")
    create_topic(bs, topic, NP)
    group = unique_topic("rl")
    produced = {}
    for mm, p, o in produce_all(bs, topic, [{"partition": i % NP, "value": b"a-%d" % i} for i in range(600)]):
        produced[(p, o)] = mm["value"]

    m = GroupMember("live", group_conf(bs, group, **{"client.id": "live", "session.timeout.ms": 20000}),
                    [topic]).start()
    try:
        wait_balanced([m], NP, timeout=30)
        wait_until(lambda: m.count() >= 600, 40, "600 records before the crash")
        d1 = wait_group(bs, group, "STABLE", 1)
        member_id = d1.members[0].member_id
        assigns = m.n_assigns()
        before = committed_offsets(bs, group)
        assert sum(before.values()) == 600

        broker.kill()
        broker.start()
        after = _retry(lambda: committed_offsets(bs, group), what="offsets after restart")
        assert after == before, (before, after)
        d2 = _retry(lambda: wait_group(bs, group, "STABLE", 1, timeout=10), timeout=30,
                    what="group Stable with 1 member after restart")
        assert d2.members[0].member_id == member_id, (
            f"member id changed across the restart: {member_id} -> {d2.members[0].member_id}")
        assert member_partitions(d2, topic) == {member_id: set(range(NP))}

        for mm, p, o in produce_all(bs, topic, [{"partition": i % NP, "value": b"b-%d" % i}
                                                 for i in range(600)]):
            produced[(p, o)] = mm["value"]
        wait_until(lambda: m.count() >= 1200, 60, "1200 records after the crash")
        time.sleep(1.0)
        # the member kept its generation: no revoke/assign happened
        assert m.n_assigns() == assigns, f"member was re-assigned after the restart: {m.assign_events}"
        assert not m.revoke_events, f"member was revoked after the restart: {m.revoke_events}"
        m.close()
        assert not m.commit_errors, m.commit_errors
        assert_exactly_once(m.records, produced, "live member across restart")
        highs = high_watermarks(bs, topic, NP)
        assert committed_offsets(bs, group) == {(topic, p): highs[p] for p in range(NP)}
    finally:
        m._stop.set()
