"""Three brokers, each in its own network namespace (its own host, address
and network stack), joined by a bridge: the cluster works across a real
network path, and a network partition that isolates the active controller
leaves the minority unable to change metadata while the majority can; when
the partition heals the isolated broker takes the majority's log and the
change it was asked for in the minority never appears.

The namespaces, veth pairs and bridge are created by the test (root and
iproute2 needed, iptables for the partition: .ci/run installs it) on a
private 10.231.x.0/24 subnet, and removed afterwards. The test process (the
clients) sits on the bridge's own address in the root namespace, so it can
still reach the isolated broker: only broker-to-broker traffic is cut.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import List

import pytest
from confluent_kafka.admin import NewTopic

import kwire
from conftest import admin_client, unique_topic
from test_cluster_quorum import ClusterBroker, leader_of, poll_values, wait_topic_everywhere

CLUSTER_PORT = 9093

# ip and iptables live in /usr/sbin, which a non-login PATH may lack.
for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "") + ":" + _d


def sh(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=30)


class Net:
    """A bridge in the root namespace and one namespace per broker."""

    def __init__(self, n: int):
        tag = os.getpid() % 100000
        self.bridge = f"rbbr{tag}"
        self.subnet = f"10.231.{tag % 250}"
        self.gateway = f"{self.subnet}.254"
        self.names = [f"rb{tag}n{i}" for i in range(n)]
        self.made: List[str] = []

    def address(self, i: int) -> str:
        return f"{self.subnet}.{i + 1}"

    def up(self) -> None:
        # Leftovers of a killed run with the same pid would make `add` fail.
        self.made = ["bridge", "forward"] + list(self.names)
        self.down()
        self.made = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.made.append("bridge")
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        # Bridged frames may pass the root namespace's FORWARD chain
        # (br_netfilter): let this bridge's through whatever its policy.
        sh("iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT")
        self.made.append("forward")
        for i, ns in enumerate(self.names):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            veth = f"{self.bridge}v{i}"
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", veth, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for i, ns in enumerate(self.names):
            if ns in self.made:
                # The veth goes with its namespace only once no process is
                # left in it: delete it outright.
                subprocess.run(["ip", "link", "del", f"{self.bridge}v{i}"], capture_output=True)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if "forward" in self.made:
            subprocess.run(["iptables", "-D", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"],
                           capture_output=True)
        if "bridge" in self.made:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)

    def isolate(self, i: int) -> None:
        """Cuts broker i off from the other brokers, both ways; the clients
        (the bridge's address) still reach it."""
        for j in range(len(self.names)):
            if j != i:
                peer = self.address(j)
                sh("ip", "netns", "exec", self.names[i], "iptables", "-A", "INPUT", "-s", peer, "-j", "DROP")
                sh("ip", "netns", "exec", self.names[i], "iptables", "-A", "OUTPUT", "-d", peer, "-j", "DROP")

    def heal(self, i: int) -> None:
        sh("ip", "netns", "exec", self.names[i], "iptables", "-F")


class NamespacedBroker(ClusterBroker):
    """A cluster broker run inside its own network namespace."""

    def __init__(self, base_dir: Path, node_id: int, net: Net):
        super().__init__(base_dir, node_id, CLUSTER_PORT)
        self.net = net
        self.host = net.address(node_id)

    def command(self) -> List[str]:
        cmd = super().command()
        i = cmd.index("--cluster-listen")
        cmd[i + 1] = f"{self.host}:{self.cluster_port}"
        # `ip netns exec` execs the broker: the process is the broker's, so
        # kill -9 and the exit status reach it.
        return ["ip", "netns", "exec", self.net.names[self.node_id]] + cmd


def _can_make_namespaces() -> str:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs iproute2 and iptables)"
    return ""


@pytest.fixture
def netns_cluster(tmp_path_factory):
    why = _can_make_namespaces()
    if why:
        # CI runs as root with both installed: there this is a failure.
        if os.environ.get("CI") or os.environ.get("RINGBROKER_REQUIRE_NETNS"):
            pytest.fail(why)
        pytest.skip(why)
    net = Net(3)
    nodes: List[NamespacedBroker] = []
    try:
        net.up()
        nodes = [NamespacedBroker(tmp_path_factory.mktemp(f"ns-node{i}"), i, net) for i in range(3)]
        voters = ",".join(f"{b.node_id}@{b.host}:{CLUSTER_PORT}" for b in nodes)
        for b in nodes:
            b.voters = voters
            b.launch()
        for b in nodes:
            b.wait_ready()
        yield net, nodes
    finally:
        for b in nodes:
            b._hard_kill()
        net.down()


def create_topics_raw(host: str, port: int, name: str, timeout_ms: int = 8000) -> int:
    """CreateTopics v4 straight to one broker (no client-side routing or
    retries): the broker's own answer, as its error code."""
    body = (
        kwire.i32(1) + kwire.string(name) + kwire.i32(1) + kwire.i16(1)
        + kwire.i32(0) + kwire.i32(0)  # no assignments, no configs
        + kwire.i32(timeout_ms) + kwire.i8(0)
    )
    sock = kwire.connect(host, port, timeout=timeout_ms / 1000 + 15)
    try:
        r = kwire.roundtrip(sock, kwire.request_header_v1(19, 4, 7, "netns-test") + body, 7)
    finally:
        sock.close()
    r.i32()  # throttle
    assert r.i32() == 1
    assert r.string() == name
    return r.i16()


def test_cluster_across_namespaces_serves_clients(netns_cluster):
    """Clients bootstrap from one host and produce, consume and commit as a
    group across the three."""
    from confluent_kafka import Consumer, Producer

    _, nodes = netns_cluster
    topic = unique_topic("ns")
    a = admin_client(nodes[0].bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=6, replication_factor=3)], request_timeout=30)[topic].result(30)
    wait_topic_everywhere(nodes, topic)
    md = admin_client(nodes[1].bootstrap).list_topics(topic=topic, timeout=10)
    assert {b.host for b in md.brokers.values()} == {b.host for b in nodes}, md.brokers
    assert {p.leader for p in md.topics[topic].partitions.values()} == {0, 1, 2}

    p = Producer({"bootstrap.servers": nodes[2].bootstrap, "acks": "all", "linger.ms": 5})
    errors = []
    for i in range(300):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i, on_delivery=lambda e, m: e and errors.append(e))
    assert p.flush(30) == 0 and not errors, errors[:3]
    c = Consumer({"bootstrap.servers": nodes[1].bootstrap, "group.id": unique_topic("g"),
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = poll_values(c, 300)
    c.commit(asynchronous=False)
    c.close()
    assert len(got) == 300, len(got)


def test_partition_isolating_the_controller(netns_cluster):
    net, nodes = netns_cluster
    old = leader_of(nodes)
    majority = [b for b in nodes if b is not old]
    before = unique_topic("before")
    # (An AdminClient must outlive its futures: keep it in a variable.)
    a = admin_client(majority[0].bootstrap)
    a.create_topics([NewTopic(before, 1, 1)], request_timeout=30)[before].result(30)
    wait_topic_everywhere(nodes, before)
    # Settled: nothing else in flight that could still reach the old
    # controller's image after the cut (offsets topic creation, registrations).
    applied_before, deadline = None, time.monotonic() + 15
    while time.monotonic() < deadline:
        applied = {b.metric("ringbroker_metadata_quorum_applied_index") for b in nodes}
        if len(applied) == 1:
            time.sleep(0.5)
            if {b.metric("ringbroker_metadata_quorum_applied_index") for b in nodes} == applied:
                applied_before = applied.pop()
                break
        time.sleep(0.1)
    assert applied_before is not None, "the brokers' applied indexes did not settle"

    net.isolate(old.node_id)
    t0 = time.monotonic()

    # The minority cannot change metadata: asked straight, the isolated
    # broker answers with an error (it cannot commit), never success.
    lost = unique_topic("minority")
    code = create_topics_raw(old.host, old.port, lost)
    assert code in (7, 41), f"CreateTopics in the minority answered {code}"  # REQUEST_TIMED_OUT / NOT_CONTROLLER

    # The majority elects a controller and changes metadata.
    made = unique_topic("majority")
    created, last_err = False, None
    while time.monotonic() - t0 < 20 and not created:
        try:
            a = admin_client(majority[0].bootstrap)
            a.create_topics([NewTopic(made, 2, 1)], request_timeout=5, operation_timeout=5)[made].result(6)
            created = True
        except Exception as e:  # retriable while the majority elects
            last_err = e
            created = "already exists" in str(e)
            time.sleep(0.2)
    assert created, f"the majority could not create a topic in 20 s: {last_err}"
    new = leader_of(majority)
    assert new is not old
    wait_topic_everywhere(majority, made)
    # Nothing reached the isolated broker's image meanwhile (asked directly:
    # a client bootstrapped from it could route Metadata to another broker).
    assert made not in kwire.metadata_topics(old.host, old.port)
    assert old.metric("ringbroker_metadata_quorum_applied_index") == applied_before

    # Healed: the isolated broker takes the majority's log, and the change
    # asked of it while it was alone is gone for good.
    net.heal(old.node_id)
    wait_topic_everywhere(nodes, made, timeout=30)
    leader_of(nodes, timeout=30)
    for b in nodes:
        assert lost not in kwire.metadata_topics(b.host, b.port), f"node {b.node_id} has the minority's topic"
    applied = set()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        applied = {b.metric("ringbroker_metadata_quorum_applied_index") for b in nodes}
        if len(applied) == 1:
            break
        time.sleep(0.2)
    assert len(applied) == 1, applied
    # And it serves metadata changes again through any broker.
    after = unique_topic("after-heal")
    a = admin_client(old.bootstrap)
    a.create_topics([NewTopic(after, 1, 1)], request_timeout=30)[after].result(30)
    wait_topic_everywhere(nodes, after)


# The single-broker client suites, bootstrapped from one broker of the
# namespaced cluster: their topics' partitions and the groups' offsets
# partitions are spread over the three hosts, so each client has to follow
# Metadata to every broker and FindCoordinator to another one.
from test_groups_kafka_python import test_kafka_python_group_consume_commit_admin as kafka_python_groups  # noqa: E402
from test_groups_kafkajs import test_kafkajs_consumer_group as kafkajs_groups  # noqa: E402
from test_kafkajs import test_kafkajs_end_to_end as kafkajs_end_to_end  # noqa: E402
from test_kcat import test_produce_consume_100k_all_partitions as kcat_all_partitions  # noqa: E402


def test_kafka_python_groups_across_namespaces(netns_cluster):
    kafka_python_groups(netns_cluster[1][1])


def test_kafkajs_across_namespaces(netns_cluster):
    _, nodes = netns_cluster
    kafkajs_end_to_end(nodes[2])
    kafkajs_groups(nodes[0])


def test_kcat_across_namespaces(netns_cluster):
    kcat_all_partitions(netns_cluster[1][0])
