"""Consumer groups with confluent-kafka (librdkafka), classic eager protocol.

Members subscribe(); librdkafka's "range" assignor is used so that a
4-partition topic splits 2/2 between two members and 2/1/1 between three.
Each member commits synchronously after every processed batch (and from its
on_revoke callback), so every record must be seen exactly once across all
rebalances.
"""

import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from conftest import create_topic, produce_all, unique_topic
from grouputil import (
    SESSION_TIMEOUT_MS,
    T_OUT,
    GroupMember,
    SubprocessMember,
    admin,
    assert_exactly_once,
    committed_offsets,
    describe_group,
    group_conf,
    group_state_name,
    high_watermarks,
    keyed_messages,
    member_partitions,
    wait_balanced,
    wait_group,
    wait_until,
)

NP = 4


def _produce_slowly(bs, topic, msgs, produced, stop_err, chunk=50, pause=0.15):
    """Producer thread body: produce in small chunks so rebalances overlap it."""
    try:
        for i in range(0, len(msgs), chunk):
            for m, p, o in produce_all(bs, topic, msgs[i:i + chunk]):
                produced[(p, o)] = m["value"]
            time.sleep(pause)
    except BaseException as e:  # surfaced by the test
        stop_err.append(e)


def _ranges(keys):
    """[(p, o), ...] -> "p:first-last" runs, for failure messages."""
    out = []
    for p, o in sorted(keys):
        if out and out[-1][0] == p and out[-1][2] == o - 1:
            out[-1][2] = o
        else:
            out.append([p, o, o])
    return ", ".join(f"{p}:{a}-{b}" for p, a, b in out[:20])


def _assert_member_clean(*members, cooperative=False):
    for m in members:
        if cooperative:
            # incremental rebalancing: members keep consuming while the group is
            # CompletingRebalance, where Kafka rejects commits with
            # REBALANCE_IN_PROGRESS; the next commit covers those offsets.
            other = [e for e in m.commit_errors if "REBALANCE_IN_PROGRESS" not in e]
            assert not other, f"member {m.name}: synchronous commits failed: {other[:5]}"
        else:
            # eager protocol: commits happen only in Stable/PreparingRebalance,
            # which Kafka accepts
            assert not m.commit_errors, f"member {m.name}: synchronous commits failed: {m.commit_errors[:5]}"
        assert not m.revoked_uncommitted, (
            f"member {m.name}: partitions revoked with uncommitted offsets: {m.revoked_uncommitted}")
        assert not m.errors, f"member {m.name}: errors: {m.errors[:5]}"


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rebalance_join_leave_exactly_once_and_second_group(broker, strategy):
    bs = broker.bootstrap
    topic = unique_topic("grp")
    create_topic(bs, topic, NP)
    group = unique_topic("g1")
    group2 = unique_topic("g2")
    strat = {"partition.assignment.strategy": strategy}

    a = GroupMember("A", group_conf(bs, group, **{"client.id": "A"}, **strat), [topic]).start()
    b = GroupMember("B", group_conf(bs, group, **{"client.id": "B"}, **strat), [topic]).start()
    # an independent second group that sees every record too
    other = GroupMember("G2", group_conf(bs, group2, **{"client.id": "G2"}), [topic]).start()
    members = [a, b, other]
    try:
        # ---- two members: 2 + 2 partitions, no overlap
        sa, sb = wait_balanced([a, b], NP, timeout=30)
        assert len(sa) == 2 and len(sb) == 2 and not (sa & sb), (sa, sb)
        d = wait_group(bs, group, "STABLE", 2)
        by_member = member_partitions(d, topic)
        assert sorted(map(sorted, by_member.values())) == sorted([sorted(sa), sorted(sb)]), by_member
        wait_balanced([other], NP, timeout=30)

        produced = {}
        perr = []
        msgs = keyed_messages(0, 2000)
        prod = threading.Thread(target=_produce_slowly, args=(bs, topic, msgs, produced, perr),
                                daemon=True)
        prod.start()
        wait_until(lambda: a.count() + b.count() > 100, 30, "first records consumed")

        # ---- a third member joins: all 4 still covered, no overlap
        c = GroupMember("C", group_conf(bs, group, **{"client.id": "C"}, **strat), [topic]).start()
        members.append(c)
        t_join = time.monotonic()
        sa, sb, sc = wait_balanced([a, b, c], NP, timeout=30)
        assert sorted(len(s) for s in (sa, sb, sc)) == [1, 1, 2], (sa, sb, sc)
        d = wait_group(bs, group, "STABLE", 3)
        assert sorted(sorted(v) for v in member_partitions(d, topic).values()) == \
            sorted([sorted(sa), sorted(sb), sorted(sc)])
        print(f"3-member rebalance took {time.monotonic() - t_join:.2f}s")

        n_before_leave = c.count() + a.count()
        # ---- B leaves cleanly (close() sends LeaveGroup): A and C take over
        b_parts = b.snapshot_assignment()
        t_leave = time.monotonic()
        b.close()
        sa, sc = wait_balanced([a, c], NP, timeout=30)
        took = time.monotonic() - t_leave
        assert b_parts <= (sa | sc)
        # a LeaveGroup must trigger the rebalance at once, not after B's session expires
        assert took < SESSION_TIMEOUT_MS / 1000.0, (
            f"takeover after LeaveGroup took {took:.1f}s (>= session timeout): was the leave ignored?")
        d = wait_group(bs, group, "STABLE", 2)
        assert {m.client_id for m in d.members} == {"A", "C"}, [m.client_id for m in d.members]
        assert d.partition_assignor == strategy, d.partition_assignor

        prod.join(120)
        assert not prod.is_alive(), "producer thread hung"
        assert not perr, f"producer failed: {perr[0]!r}"
        assert len(produced) == 2000

        def progress():
            try:
                offs = committed_offsets(bs, group, topic, range(NP))
                desc = describe_group(bs, group)
                desc = (group_state_name(desc), member_partitions(desc, topic))
            except Exception as e:
                offs, desc = repr(e), None
            got = {}
            for who, m in (("A", a), ("B", b), ("C", c)):
                with m.lock:
                    for p, o, _ in m.records:
                        got.setdefault((p, o), []).append(who)
            missing = sorted(k for k in produced if k not in got)
            dups = sorted((k, v) for k, v in got.items() if len(v) > 1)
            return (f"missing {len(missing)}: {_ranges(missing)}; duplicated {len(dups)}: {dups[:5]}; "
                    f"counts A={a.count()} B={b.count()} C={c.count()} G2={other.count()}; "
                    f"assignments A={sorted(a.snapshot_assignment())} C={sorted(c.snapshot_assignment())}; "
                    f"assign events A={a.assign_events} C={c.assign_events}; "
                    f"revoke events A={a.revoke_events} C={c.revoke_events}; "
                    f"commit errors A={a.commit_errors[:3]} B={b.commit_errors[:3]} C={c.commit_errors[:3]}; "
                    f"errors A={a.errors[:3]} B={b.errors[:3]} C={c.errors[:3]}; "
                    f"B assign/revoke events {b.assign_events} {b.revoke_events}; "
                    f"committed {offs}; highs {high_watermarks(bs, topic, NP)}; "
                    f"describe {desc}")

        try:
            wait_until(lambda: a.count() + b.count() + c.count() >= 2000, 60,
                       "group 1 consumed everything")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{progress()}") from None
        wait_until(lambda: other.count() >= 2000, 60, "group 2 consumed everything")
        assert a.count() + c.count() > n_before_leave, "A/C consumed nothing after B left"
        time.sleep(1.0)  # let any duplicate show up
        for m in (a, c, other):
            m.close()
        _assert_member_clean(a, b, c, other, cooperative=strategy.startswith("cooperative"))

        assert_exactly_once(a.records + b.records + c.records, produced, "group 1")
        assert_exactly_once(other.records, produced, "group 2 (independent)")
        for name, m in (("A", a), ("B", b), ("C", c)):
            assert m.records, f"member {name} consumed nothing"

        # committed offsets of both groups are at the end of every partition
        highs = high_watermarks(bs, topic, NP)
        assert sum(highs.values()) == 2000
        for g in (group, group2):
            offs = committed_offsets(bs, g, topic, range(NP))
            assert offs == {(topic, p): highs[p] for p in range(NP)}, (g, offs, highs)
        d = wait_group(bs, group, "EMPTY", 0)
        assert d.members == []
    finally:
        for m in members:
            if not m.closed.is_set():
                m._stop.set()


def test_member_killed_without_leave_partitions_taken_over(broker):
    """A member that stops heartbeating (SIGKILL, no LeaveGroup) is evicted
    after session.timeout.ms and the survivor takes over its partitions at
    its last committed offsets: no record lost, none duplicated."""
    bs = broker.bootstrap
    topic = unique_topic("kill")
    create_topic(bs, topic, NP)
    group = unique_topic("gk")
    produced = {}
    for m, p, o in produce_all(bs, topic, keyed_messages(0, 1000)):
        produced[(p, o)] = m["value"]

    a = GroupMember("A", group_conf(bs, group, **{"client.id": "A"}), [topic]).start()
    k = SubprocessMember("K", group_conf(bs, group, **{"client.id": "K"}), [topic])
    try:
        sa, sk = wait_balanced([a, k], NP, timeout=40)
        assert len(sa) == 2 and len(sk) == 2 and not (sa & sk), (sa, sk)
        wait_group(bs, group, "STABLE", 2)
        wait_until(lambda: a.count() + k.count() >= 1000, 60,
                   "first 1000 records consumed by A+K")
        assert k.count() > 0 and a.count() > 0
        assert k.proc.poll() is None, f"K died: {k.stderr_tail()}"
        # ... and committed (K reports records when processed, before its commit)
        wait_until(lambda: sum(committed_offsets(bs, group, topic, range(NP)).values()) == 1000, 20,
                   "offsets of the first 1000 records committed")

        # K is idle with everything committed: kill it without any goodbye
        assigns_before = a.n_assigns()
        k.sigkill()
        t_kill = time.monotonic()
        for m, p, o in produce_all(bs, topic, keyed_messages(1000, 1000)):
            produced[(p, o)] = m["value"]

        wait_until(lambda: a.snapshot_assignment() == set(range(NP)) and a.n_assigns() > assigns_before,
                   SESSION_TIMEOUT_MS / 1000.0 + 20, "A takes over all partitions")
        took = time.monotonic() - t_kill
        print(f"takeover after SIGKILL took {took:.2f}s")
        assert took <= SESSION_TIMEOUT_MS / 1000.0 + 6, (
            f"takeover took {took:.1f}s, session timeout is {SESSION_TIMEOUT_MS} ms")
        d = wait_group(bs, group, "STABLE", 1)
        assert d.members[0].client_id == "A"
        assert member_partitions(d, topic) == {d.members[0].member_id: set(range(NP))}

        wait_until(lambda: a.count() + k.count() >= 2000, 60, "all 2000 records consumed")
        time.sleep(1.0)
        a.close()
        _assert_member_clean(a)
        assert_exactly_once(a.records + k.records, produced, "A+K")
        highs = high_watermarks(bs, topic, NP)
        assert committed_offsets(bs, group, topic, range(NP)) == {(topic, p): highs[p] for p in range(NP)}
    finally:
        a._stop.set()
        if k.proc.poll() is None:
            k.sigkill()


def test_static_membership_rejoin_without_rebalance(broker):
    """A static member (group.instance.id) that is restarted within the session
    timeout gets its old partitions back without a rebalance: the other
    member's assignment (and on_assign count) does not change."""
    bs = broker.bootstrap
    topic = unique_topic("static")
    create_topic(bs, topic, NP)
    group = unique_topic("gs")
    session_ms = 20000
    produced = {}
    for m, p, o in produce_all(bs, topic, keyed_messages(0, 400)):
        produced[(p, o)] = m["value"]

    conf_a = group_conf(bs, group, **{"client.id": "A", "group.instance.id": "inst-a",
                                      "session.timeout.ms": session_ms})
    conf_s = group_conf(bs, group, **{"client.id": "S", "group.instance.id": "inst-s",
                                      "session.timeout.ms": session_ms})
    a = GroupMember("A", conf_a, [topic]).start()
    s1 = SubprocessMember("S1", conf_s, [topic])
    s2 = None
    try:
        sa, ss = wait_balanced([a, s1], NP, timeout=40)
        assert len(sa) == 2 and len(ss) == 2, (sa, ss)
        d1 = wait_group(bs, group, "STABLE", 2)
        inst = {m.group_instance_id: m for m in d1.members}
        assert set(inst) == {"inst-a", "inst-s"}, [(m.member_id, m.group_instance_id) for m in d1.members]
        wait_until(lambda: a.count() + s1.count() >= 400, 60, "first 400 records consumed")
        wait_until(lambda: sum(committed_offsets(bs, group, topic, range(NP)).values()) == 400, 20,
                   "offsets of the first 400 records committed")
        assigns_a = a.n_assigns()
        assert assigns_a == 1, a.assign_events

        # "restart" S: kill the process (a static member sends no LeaveGroup
        # anyway) and start a new one with the same group.instance.id
        s1.sigkill()
        s2 = SubprocessMember("S2", conf_s, [topic])
        wait_until(lambda: s2.snapshot_assignment(), 30, "restarted static member S2 assigned")
        assert s2.snapshot_assignment() == ss, (
            f"restarted static member got {s2.snapshot_assignment()}, before {ss}")
        for m, p, o in produce_all(bs, topic, keyed_messages(400, 400)):
            produced[(p, o)] = m["value"]
        wait_until(lambda: a.count() + s1.count() + s2.count() >= 800, 60, "all 800 records consumed")

        d2 = wait_group(bs, group, "STABLE", 2)
        inst2 = {m.group_instance_id: m for m in d2.members}
        assert set(inst2) == {"inst-a", "inst-s"}
        assert inst2["inst-a"].member_id == inst["inst-a"].member_id, "A's member id changed"
        assert member_partitions(d2, topic)[inst2["inst-a"].member_id] == sa
        assert member_partitions(d2, topic)[inst2["inst-s"].member_id] == ss
        # no rebalance happened: A was never revoked / reassigned
        assert a.n_assigns() == assigns_a, f"A was reassigned: {a.assign_events}"
        assert not a.revoke_events, f"A was revoked: {a.revoke_events}"
        assert a.snapshot_assignment() == sa
        assert s2.n_assigns() == 1
        time.sleep(2.0)
        assert a.n_assigns() == assigns_a, f"late rebalance: {a.assign_events}"

        a.close()
        _assert_member_clean(a)
        assert_exactly_once(a.records + s1.records + s2.records, produced, "A+S1+S2")
        assert s2.records, "restarted static member consumed nothing"
    finally:
        a._stop.set()
        for s in (s1, s2):
            if s is not None and s.proc.poll() is None:
                s.sigkill()


# ---------------------------------------------------------------- AdminClient
def test_admin_list_describe_offsets_alter_delete(broker):
    bs = broker.bootstrap
    topic = unique_topic("adm")
    create_topic(bs, topic, 2)
    group = unique_topic("ga")
    produced = {}
    for m, p, o in produce_all(bs, topic, [{"partition": i % 2, "value": b"v%d" % i} for i in range(200)]):
        produced[(p, o)] = m["value"]
    a = admin(bs)

    m1 = GroupMember("M1", group_conf(bs, group, **{"client.id": "adm-m1"}), [topic]).start()
    try:
        wait_balanced([m1], 2, timeout=30)
        wait_until(lambda: m1.count() >= 200, 30, "M1 consumed 200")

        # ---- list_consumer_groups: our group is there, Stable
        res = a.list_consumer_groups(request_timeout=T_OUT).result(timeout=T_OUT)
        assert not res.errors, res.errors
        listing = {g.group_id: g for g in res.valid}
        assert group in listing, list(listing)
        assert not listing[group].is_simple_consumer_group
        assert getattr(listing[group].state, "name", listing[group].state) == "STABLE"

        # ---- describe_consumer_groups
        d = describe_group(bs, group)
        assert d.group_id == group
        assert group_state_name(d) == "STABLE"
        assert d.partition_assignor == "range", d.partition_assignor
        assert not d.is_simple_consumer_group
        assert d.coordinator is not None and d.coordinator.id == 0
        assert d.coordinator.port == broker.port
        assert len(d.members) == 1
        mem = d.members[0]
        assert mem.client_id == "adm-m1"
        assert mem.member_id
        assert mem.host  # "/127.0.0.1" in Kafka
        assert {(tp.topic, tp.partition) for tp in mem.assignment.topic_partitions} == \
            {(topic, 0), (topic, 1)}

        # ---- deleting a group with an active member fails with NON_EMPTY_GROUP
        fut = a.delete_consumer_groups([group], request_timeout=T_OUT)[group]
        with pytest.raises(KafkaException) as ei:
            fut.result(timeout=T_OUT)
        assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP, ei.value

        m1.close()
        _assert_member_clean(m1)
        assert_exactly_once(m1.records, produced, "M1")
        d = wait_group(bs, group, "EMPTY", 0)

        # ---- list_consumer_group_offsets (all partitions, and a subset)
        assert committed_offsets(bs, group) == {(topic, 0): 100, (topic, 1): 100}
        assert committed_offsets(bs, group, topic, [1]) == {(topic, 1): 100}
        # unknown group: no committed offsets (OFFSET_INVALID = -1001)
        unk = committed_offsets(bs, unique_topic("nogroup"), topic, [0, 1])
        assert unk == {(topic, 0): -1001, (topic, 1): -1001}, unk

        # ---- alter_consumer_group_offsets on the empty group
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 40), TopicPartition(topic, 1, 75)])
        r = a.alter_consumer_group_offsets([req], request_timeout=T_OUT)[group].result(timeout=T_OUT)
        assert r.group_id == group
        assert all(tp.error is None for tp in r.topic_partitions), r.topic_partitions
        assert committed_offsets(bs, group) == {(topic, 0): 40, (topic, 1): 75}

        # a consumer joining the group resumes at the altered offsets
        m2 = GroupMember("M2", group_conf(bs, group, **{"client.id": "adm-m2"}), [topic]).start()
        wait_until(lambda: m2.count() >= 60 + 25, 30, "M2 consumed from altered offsets")
        time.sleep(0.5)
        m2.close()
        _assert_member_clean(m2)
        exp = {k: v for k, v in produced.items() if k[1] >= (40 if k[0] == 0 else 75)}
        assert_exactly_once(m2.records, exp, "M2 after alter")
        wait_group(bs, group, "EMPTY", 0)

        # ---- delete the (now empty) group: it disappears with its offsets
        r = a.delete_consumer_groups([group], request_timeout=T_OUT)[group].result(timeout=T_OUT)
        assert r is None or getattr(r, "group_id", group) == group
        res = a.list_consumer_groups(request_timeout=T_OUT).result(timeout=T_OUT)
        assert group not in {g.group_id for g in res.valid}
        try:
            d = describe_group(bs, group)
            assert group_state_name(d) == "DEAD" and d.members == [], (d.state, d.members)
        except KafkaException as e:  # DescribeGroups v6+ answers GROUP_ID_NOT_FOUND
            assert e.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, e
        assert committed_offsets(bs, group, topic, [0, 1]) == {(topic, 0): -1001, (topic, 1): -1001}
        # deleting it again: GROUP_ID_NOT_FOUND
        fut = a.delete_consumer_groups([group], request_timeout=T_OUT)[group]
        with pytest.raises(KafkaException) as ei:
            fut.result(timeout=T_OUT)
        assert ei.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, ei.value
    finally:
        m1._stop.set()
