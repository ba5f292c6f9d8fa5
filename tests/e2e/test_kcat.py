"""kcat (Debian package, librdkafka 2.0.2) against the real broker."""

import json
import shutil
from collections import Counter, defaultdict

import pytest

from conftest import create_topic, run, unique_topic

N = 100_000

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)")


def kcat(*args, **kw):
    return run(["kcat", *args], **kw)


def test_metadata_lists_broker_and_topic(broker):
    topic = unique_topic("kcatmd")
    create_topic(broker.bootstrap, topic, 3)
    cp = kcat("-L", "-J", "-b", broker.bootstrap, "-m", "20", timeout=60)
    md = json.loads(cp.stdout)
    brokers = md["brokers"]
    assert [b["id"] for b in brokers] == [0], brokers
    assert brokers[0]["name"].startswith(broker.bootstrap), brokers
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics, list(topics)
    parts = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    assert all(p["leader"] == 0 for p in parts), parts
    assert "error" not in topics[topic] or not topics[topic]["error"], topics[topic]

    # plain text form, single topic
    cp = kcat("-L", "-b", broker.bootstrap, "-t", topic, "-m", "20", timeout=60)
    out = cp.stdout.decode()
    assert f"broker 0 at {broker.bootstrap}" in out, out
    assert f'topic "{topic}" with 3 partitions' in out, out


def test_produce_consume_100k_single_partition(broker):
    topic = unique_topic("kcat1")
    create_topic(broker.bootstrap, topic, 1)
    lines = b"".join(b"%d\n" % i for i in range(1, N + 1))
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0",
         "-X", "enable.idempotence=false", "-X", "acks=all", input=lines, timeout=240)

    cp = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
              "-f", "%p %o %s\n", timeout=240)
    rows = cp.stdout.decode().splitlines()
    assert len(rows) == N, f"expected {N} records, got {len(rows)}"
    parsed = [tuple(map(int, r.split(" "))) for r in rows]
    assert all(p == 0 for p, _, _ in parsed)
    assert [o for _, o, _ in parsed] == list(range(N)), "offsets not contiguous from 0"
    assert [v for _, _, v in parsed] == list(range(1, N + 1)), "values not in produced order"


def test_produce_consume_100k_all_partitions(broker):
    topic = unique_topic("kcat3")
    create_topic(broker.bootstrap, topic, 3)
    lines = b"".join(b"%d\n" % i for i in range(1, N + 1))
    # no -p: librdkafka's partitioner spreads un-keyed messages over all partitions
    kcat("-P", "-b", broker.bootstrap, "-t", topic,
         "-X", "enable.idempotence=false", "-X", "acks=all", input=lines, timeout=240)

    cp = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
              "-f", "%p %o %s\n", timeout=240)
    rows = cp.stdout.decode().splitlines()
    assert len(rows) == N, f"expected {N} records, got {len(rows)}"
    per_part = defaultdict(list)
    for r in rows:
        p, o, v = map(int, r.split(" "))
        per_part[p].append((o, v))
    assert set(per_part) <= {0, 1, 2}
    assert len(per_part) >= 2, "all records landed in one partition"
    values = Counter()
    for p, recs in per_part.items():
        offs = [o for o, _ in recs]
        assert offs == list(range(len(recs))), f"partition {p}: offsets not contiguous"
        vals = [v for _, v in recs]
        assert vals == sorted(vals), f"partition {p}: produce order not preserved"
        values.update(vals)
    assert values == Counter(range(1, N + 1)), "multiset of values differs"


def test_consume_from_offset_and_count(broker):
    topic = unique_topic("kcatoff")
    create_topic(broker.bootstrap, topic, 1)
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K", ":",
         input=b"".join(b"k%d:v%d\n" % (i, i) for i in range(50)), timeout=60)
    cp = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "20", "-c", "10",
              "-q", "-f", "%o|%k|%s\n", timeout=60)
    assert cp.stdout.decode().splitlines() == [f"{i}|k{i}|v{i}" for i in range(20, 30)]
