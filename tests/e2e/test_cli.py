"""The built-in `ringbroker` CLI (topic/produce/consume subcommands)."""

from conftest import consume_all, produce_all, unique_topic, watermarks


def test_topic_lifecycle(broker):
    t = unique_topic("cli")
    broker.cli("topic", "create", t, "--partitions", "3", "--config", "retention.ms=3600000")
    listed = broker.cli("topic", "list").stdout.decode().split()
    assert t in listed, listed
    desc = broker.cli("topic", "describe", t).stdout.decode()
    assert t in desc, desc
    assert "3600000" in desc, f"altered retention.ms not shown:\n{desc}"
    for p in range(3):
        assert str(p) in desc
    broker.cli("topic", "delete", t)
    listed = broker.cli("topic", "list").stdout.decode().split()
    assert t not in listed, listed


def test_create_existing_topic_fails(broker):
    t = unique_topic("cli-dup")
    broker.cli("topic", "create", t, "--partitions", "1")
    cp = broker.cli("topic", "create", t, "--partitions", "1", check=False)
    assert cp.returncode != 0, "creating an existing topic should fail"


def test_produce_consume_roundtrip(broker):
    t = unique_topic("cli-pc")
    broker.cli("topic", "create", t, "--partitions", "1")
    lines = [f"line {i} \u00e9\u6f22 {'x' * (i % 30)}" for i in range(500)]
    broker.cli("produce", t, input=("\n".join(lines) + "\n").encode())
    # visible to a real client, in order, at offsets 0..499
    recs = consume_all(broker.bootstrap, t, [0])[0]
    assert [r.value.decode() for r in recs] == lines
    assert [r.offset for r in recs] == list(range(500))

    cp = broker.cli("consume", t, "--offset", "earliest", "--count", "500", "--timeout-ms", "10000")
    assert cp.stdout.decode().splitlines() == lines

    cp = broker.cli("consume", t, "--partition", "0", "--offset", "490", "--count", "10",
                    "--timeout-ms", "10000")
    assert cp.stdout.decode().splitlines() == lines[490:]


def test_produce_with_key_separator_and_partition(broker):
    t = unique_topic("cli-key")
    broker.cli("topic", "create", t, "--partitions", "2")
    broker.cli("produce", t, "--partition", "1", "--key-separator", ":",
               input=b"k1:v1\nk2:v2\nk3:v3\n")
    assert watermarks(broker.bootstrap, t, 0) == (0, 0)
    recs = consume_all(broker.bootstrap, t, [1])[1]
    assert [(r.key, r.value) for r in recs] == [(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3")]


def test_consume_sees_client_produced_data_and_idle_timeout(broker):
    t = unique_topic("cli-c")
    broker.cli("topic", "create", t, "--partitions", "1")
    produce_all(broker.bootstrap, t, [{"value": b"m%d" % i, "partition": 0} for i in range(20)])
    # no --count: exits when idle for --timeout-ms
    cp = broker.cli("consume", t, "--offset", "earliest", "--timeout-ms", "2000", timeout=60)
    assert cp.stdout.decode().splitlines() == [f"m{i}" for i in range(20)]
    cp = broker.cli("consume", t, "--offset", "latest", "--timeout-ms", "1500", timeout=60)
    assert cp.stdout.decode().splitlines() == []


# ---------------------------------------------------------------- group command
def _group_json(broker, *args, check=True):
    import json

    cp = broker.cli("group", *args, "--json", check=check)
    return cp, (json.loads(cp.stdout) if cp.returncode == 0 or cp.stdout.strip() else None)


def _committed(bootstrap, group, topic, partitions):
    """{partition: committed offset or None}, read by confluent-kafka."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=15)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}
    finally:
        c.close()


def _wait_state(broker, group, state, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    d = None
    while time.monotonic() < deadline:
        _, d = _group_json(broker, "describe", group)
        if d["state"] == state:
            return d
        time.sleep(0.2)
    raise AssertionError(f"group {group} never reached {state}: {d}")


def test_group_commands(broker):
    import time

    from confluent_kafka import Consumer, TopicPartition
    from grouputil import group_conf

    t = unique_topic("cli-grp")
    g = unique_topic("cli-group")
    broker.cli("topic", "create", t, "--partitions", "3")
    ends = {0: 10, 1: 7, 2: 5}
    produce_all(broker.bootstrap, t,
                [{"value": b"v%d" % i, "partition": p} for p, n in ends.items() for i in range(n)])

    # An active consumer group with committed offsets on p0 and p1 only.
    c = Consumer(group_conf(broker.bootstrap, g, **{"client.id": "grp-cli-test"}))
    c.subscribe([t])
    deadline = time.monotonic() + 30
    while len(c.assignment()) < 3:
        assert time.monotonic() < deadline, f"no full assignment: {c.assignment()}"
        c.poll(0.2)
    c.commit(offsets=[TopicPartition(t, 0, 4), TopicPartition(t, 1, 7)], asynchronous=False)
    member_id = c.memberid()
    try:
        # list
        _, groups = _group_json(broker, "list")
        assert {"group": g, "protocol_type": "consumer", "state": "Stable"} in groups, groups
        text = broker.cli("group", "list").stdout.decode()
        assert text.splitlines()[0].split() == ["GROUP", "PROTOCOL-TYPE", "STATE"], text
        assert [g, "consumer", "Stable"] in [line.split() for line in text.splitlines()], text

        # describe: committed, log end, lag and owner per partition
        _, d = _group_json(broker, "describe", g)
        assert (d["state"], d["protocol_type"], d["protocol"]) == ("Stable", "consumer", "range"), d
        assert [m["member_id"] for m in d["members"]] == [member_id], d
        assert d["members"][0]["client_id"] == "grp-cli-test"
        assert d["members"][0]["assignment"] == [{"topic": t, "partitions": [0, 1, 2]}], d
        rows = {o["partition"]: o for o in d["offsets"]}
        assert sorted(rows) == [0, 1, 2], d
        got = {p: (o["committed_offset"], o["log_end_offset"], o["lag"]) for p, o in rows.items()}
        assert got == {0: (4, 10, 6), 1: (7, 7, 0), 2: (None, 5, None)}, got
        assert all(o["consumer_id"] == member_id and o["client_id"] == "grp-cli-test"
                   and o["topic"] == t for o in rows.values()), rows
        text = broker.cli("group", "describe", g).stdout.decode()
        lines = [line.split() for line in text.splitlines()]
        assert ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                "CONSUMER-ID", "HOST", "CLIENT-ID"] in lines, text
        assert [g, t, "0", "4", "10", "6", member_id] == [x for x in lines if x[:3] == [g, t, "0"]][0][:7], text
        assert [g, t, "2", "-", "5", "-", member_id] == [x for x in lines if x[:3] == [g, t, "2"]][0][:7], text

        # The broker refuses admin commits and deletion while a member is active.
        cp = broker.cli("group", "reset-offsets", g, "--topic", t, "--to-earliest", "--execute",
                        check=False)
        assert cp.returncode != 0, cp
        assert b"group is active; stop its consumers first" in cp.stderr, cp.stderr
        cp = broker.cli("group", "delete", g, check=False)
        assert cp.returncode != 0 and b"NON_EMPTY_GROUP" in cp.stderr, cp
        assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: 4, 1: 7, 2: None}
    finally:
        c.close()
    _wait_state(broker, g, "Empty")

    # Dry run (the default): prints the plan, commits nothing.
    cp, plan = _group_json(broker, "reset-offsets", g, "--topic", t, "--to-earliest")
    assert plan["executed"] is False
    assert [(r["partition"], r["current_offset"], r["new_offset"]) for r in plan["partitions"]] == \
        [(0, 4, 0), (1, 7, 0), (2, None, 0)], plan
    assert b"Dry run" in cp.stderr
    text = broker.cli("group", "reset-offsets", g, "--topic", f"{t}:0", "--shift-by", "-1").stdout.decode()
    assert [line.split() for line in text.splitlines()] == [
        ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], [g, t, "0", "4", "3"]], text
    _, plan = _group_json(broker, "reset-offsets", g, "--topic", t, "--to-datetime", "2000-01-01T00:00:00Z")
    assert [r["new_offset"] for r in plan["partitions"]] == [0, 0, 0], plan
    _, plan = _group_json(broker, "reset-offsets", g, "--topic", t, "--to-datetime", "2999-01-01")
    assert [r["new_offset"] for r in plan["partitions"]] == [10, 7, 5], plan
    assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: 4, 1: 7, 2: None}

    # --execute: to-offset is clamped to the log end (p1 ends at 7).
    _, plan = _group_json(broker, "reset-offsets", g, "--topic", f"{t}:0,1", "--to-offset", "8",
                          "--execute")
    assert plan["executed"] is True
    assert [(r["partition"], r["new_offset"], r["error"]) for r in plan["partitions"]] == \
        [(0, 8, None), (1, 7, None)], plan
    assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: 8, 1: 7, 2: None}
    broker.cli("group", "reset-offsets", g, "--topic", f"{t}:0", "--shift-by", "-3", "--execute")
    broker.cli("group", "reset-offsets", g, "--topic", f"{t}:2", "--to-latest", "--execute")
    assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: 5, 1: 7, 2: 5}
    cp = broker.cli("group", "reset-offsets", g, "--topic", f"{t}:9", "--to-latest", check=False)
    assert cp.returncode != 0 and b"no partition 9" in cp.stderr, cp

    _, d = _group_json(broker, "describe", g)
    assert d["state"] == "Empty" and d["members"] == [], d
    got = {o["partition"]: (o["committed_offset"], o["log_end_offset"], o["lag"], o["consumer_id"])
           for o in d["offsets"]}
    assert got == {0: (5, 10, 5, None), 1: (7, 7, 0, None), 2: (5, 5, 0, None)}, got

    # delete-offsets, then delete the group.
    _, res = _group_json(broker, "delete-offsets", g, "--topic", f"{t}:1")
    assert res["partitions"] == [{"topic": t, "partition": 1, "error": None}], res
    assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: 5, 1: None, 2: 5}

    cp = broker.cli("group", "delete", g, "no-such-group-" + g, check=False)
    assert cp.returncode != 0 and b"GROUP_ID_NOT_FOUND" in cp.stderr, cp
    assert [line.split() for line in cp.stdout.decode().splitlines()][1] == [g, "deleted"], cp.stdout
    _, groups = _group_json(broker, "list")
    assert g not in [x["group"] for x in groups], groups
    cp = broker.cli("group", "describe", g, check=False)
    assert cp.returncode != 0 and b"GROUP_ID_NOT_FOUND" in cp.stderr, cp
    assert _committed(broker.bootstrap, g, t, [0, 1, 2]) == {0: None, 1: None, 2: None}
