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
