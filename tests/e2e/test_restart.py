"""Durability across a clean stop/start and a SIGKILL/restart."""

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType

from conftest import (
    admin_client,
    assert_contiguous,
    consume_all,
    create_topic,
    produce_all,
    unique_topic,
    wait_for_topic,
    watermarks,
)


def _describe(bs, topic):
    a = admin_client(bs)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return {k: v.value for k, v in a.describe_configs([res], request_timeout=30)[res].result(30).items()}


def _populate(bs):
    """Two topics, altered config, data with keys/headers. Returns expectations."""
    t1 = unique_topic("dur-a")
    t2 = unique_topic("dur-b")
    create_topic(bs, t1, 3, config={"retention.ms": "123456789"})
    create_topic(bs, t2, 1)
    a = admin_client(bs)
    res = ConfigResource(ResourceType.TOPIC, t2, set_config={"retention.ms": "7777777"})
    a.alter_configs([res], request_timeout=30)[res].result(30)
    assert _describe(bs, t2)["retention.ms"] == "7777777"

    msgs1 = [{"partition": i % 3, "key": b"k%d" % i, "value": b"v%d" % i,
              "headers": [("i", b"%d" % i)]} for i in range(3000)]
    msgs2 = [{"partition": 0, "value": b"x" * (i % 1000) + b"|%d" % i} for i in range(1000)]
    r1 = produce_all(bs, t1, msgs1)
    r2 = produce_all(bs, t2, msgs2, **{"compression.type": "lz4"})
    exp1 = {(p, o): (m["key"], m["value"], m["headers"]) for m, p, o in r1}
    exp2 = {(p, o): (None, m["value"], []) for m, p, o in r2}
    return {t1: (3, exp1, "123456789"), t2: (1, exp2, "7777777")}


def _verify(bs, expected):
    a = admin_client(bs)
    names = a.list_topics(timeout=30).topics
    for topic, (nparts, exp, retention) in expected.items():
        assert topic in names, f"topic {topic} lost"
        wait_for_topic(bs, topic, nparts)
        assert _describe(bs, topic)["retention.ms"] == retention, f"{topic} config lost"
        got = consume_all(bs, topic, range(nparts))
        actual = {}
        for p, recs in got.items():
            assert_contiguous(recs, 0, f"{topic}/{p}")
            for r in recs:
                actual[(p, r.offset)] = (r.key, r.value, r.headers)
        assert actual == exp, f"{topic}: data differs after restart ({len(actual)} vs {len(exp)} records)"
        for p in range(nparts):
            n = sum(1 for (pp, _) in exp if pp == p)
            assert watermarks(bs, topic, p) == (0, n)


@pytest.mark.parametrize("how", ["clean", "sigkill"])
def test_survives_restart(broker, how):
    bs = broker.bootstrap
    expected = _populate(bs)
    _verify(bs, expected)
    for round_ in range(2):
        if how == "clean":
            broker.stop()  # asserts exit code 0
        else:
            broker.kill()
        broker.start()
        _verify(bs, expected)
    # the log keeps accepting appends after recovery, continuing the offsets
    t = next(iter(expected))
    reports = produce_all(bs, t, [{"partition": 0, "value": b"after"}])
    n0 = sum(1 for (p, _) in expected[t][1] if p == 0)
    assert reports[0][1:] == (0, n0)


def test_clean_stop_exit_code_and_deleted_topic_stays_deleted(broker):
    bs = broker.bootstrap
    keep = unique_topic("keep")
    gone = unique_topic("gone")
    create_topic(bs, keep, 1)
    create_topic(bs, gone, 1)
    produce_all(bs, keep, [{"value": b"1"}])
    produce_all(bs, gone, [{"value": b"2"}])
    a = admin_client(bs)
    a.delete_topics([gone], operation_timeout=30, request_timeout=30)[gone].result(30)
    broker.stop()
    broker.start()
    names = admin_client(bs).list_topics(timeout=30).topics
    assert keep in names
    assert gone not in names, "deleted topic resurrected after restart"
    broker.kill()
    broker.start()
    names = admin_client(bs).list_topics(timeout=30).topics
    assert keep in names and gone not in names
    assert [r.value for r in consume_all(bs, keep, [0])[0]] == [b"1"]


def test_second_broker_on_the_same_port_refuses_to_start(broker, tmp_path):
    """Shards listen with SO_REUSEPORT; a second broker on the same port must
    not silently share the port's connections: it fails at start, naming it."""
    import subprocess

    from conftest import Broker

    other = Broker(tmp_path, name="second")
    cmd = other.command()
    cmd[cmd.index("--listen") + 1] = broker.bootstrap
    r = subprocess.run(cmd, capture_output=True, timeout=30, cwd=str(tmp_path))
    assert r.returncode != 0
    assert "already in use" in r.stderr.decode(), r.stderr.decode()[-2000:]
    # The running broker still owns every connection.
    t = unique_topic("still-here")
    create_topic(broker.bootstrap, t, 1)
    produce_all(broker.bootstrap, t, [{"partition": 0, "value": b"v%d" % i} for i in range(10)])
    assert watermarks(broker.bootstrap, t, 0) == (0, 10)
