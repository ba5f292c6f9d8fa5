"""Three real broker processes sharing one metadata quorum (raft-rs) on
127.0.0.1: metadata made through any broker reaches all of them; a kill -9
of the active controller leaves the survivors able to change metadata within
10 s; a killed broker restarts, catches up, and can lead again.

The active controller is read from each broker's metrics
(ringbroker_metadata_quorum_leader); the clients are confluent-kafka's
AdminClient and kafka-python's KafkaAdminClient, unmodified.
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest
from confluent_kafka.admin import NewTopic

from conftest import Broker, admin_client, free_port, unique_topic

READY_S = 60.0


class ClusterBroker(Broker):
    """A broker that is one voter of a multi-broker metadata quorum."""

    def __init__(self, base_dir: Path, node_id: int, cluster_port: int):
        super().__init__(base_dir, name=f"node{node_id}")
        self.node_id = node_id
        self.cluster_port = cluster_port
        self.voters = ""

    def command(self) -> List[str]:
        return super().command() + [
            "--node-id", str(self.node_id),
            "--cluster-listen", f"127.0.0.1:{self.cluster_port}",
            "--controller-quorum-voters", self.voters,
        ]

    def launch(self) -> None:
        """Starts the process without waiting: a voter is ready only once a
        majority of the quorum runs."""
        import subprocess, os
        self._close_log()
        self._log_fh = open(self.log_path, "ab")
        self.starts += 1
        self._log_fh.write(f"\n===== e2e: start #{self.starts}: {' '.join(self.command())} =====\n".encode())
        self._log_fh.flush()
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                     stderr=self._log_fh, env=env, cwd=str(self.base_dir))

    def wait_ready(self) -> None:
        self._wait_ready(READY_S)
        self.expected_running = True

    def metric(self, name: str) -> Optional[int]:
        try:
            text = urllib.request.urlopen(self.metrics_url, timeout=5).read().decode()
        except OSError:
            return None
        m = re.search(rf"^{name} (-?\d+)$", text, re.M)
        return int(m.group(1)) if m else None


@pytest.fixture
def cluster(tmp_path_factory):
    nodes = []
    for i in range(3):
        nodes.append(ClusterBroker(tmp_path_factory.mktemp(f"node{i}"), i, free_port()))
    voters = ",".join(f"{b.node_id}@127.0.0.1:{b.cluster_port}" for b in nodes)
    for b in nodes:
        b.voters = voters
        b.launch()
    try:
        for b in nodes:
            b.wait_ready()
        yield nodes
    finally:
        for b in nodes:
            b._hard_kill()


def leader_of(nodes, timeout=15.0) -> ClusterBroker:
    """The broker every running broker names as the active controller."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = [b.metric("ringbroker_metadata_quorum_leader") for b in nodes if b.is_running()]
        agreed = seen and all(s == seen[0] for s in seen)
        if agreed and any(b.node_id == seen[0] for b in nodes):
            return next(b for b in nodes if b.node_id == seen[0])
        time.sleep(0.1)
    raise AssertionError(f"no agreed controller: {seen}")


def topics_on(b: Broker) -> set:
    """The topics this broker's own Metadata lists (asked directly: a client
    bootstrapped from it may send Metadata to another broker)."""
    import kwire
    return set(kwire.metadata_topics(b.host, b.port))


def wait_topic_everywhere(nodes, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(name in topics_on(b) for b in nodes if b.is_running()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not on every broker: {[(b.node_id, sorted(topics_on(b))) for b in nodes]}")


def poll_values(consumer, n: int, timeout: float = 60.0) -> set:
    """The distinct values a subscribed consumer receives, until n or timeout."""
    got = set()
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.add(m.value())
    return got


def test_metadata_made_through_any_broker_reaches_all(cluster):
    leader = leader_of(cluster)
    followers = [b for b in cluster if b is not leader]
    # Through a follower (the change is forwarded to the controller) and
    # through the controller, with two different clients.
    t1, t2 = unique_topic("via-follower"), unique_topic("via-leader")
    a = admin_client(followers[0].bootstrap)
    a.create_topics([NewTopic(t1, num_partitions=3, replication_factor=1)],
                    operation_timeout=30, request_timeout=30)[t1].result(30)
    from kafka.admin import KafkaAdminClient, NewTopic as KpNewTopic
    kp = KafkaAdminClient(bootstrap_servers=leader.bootstrap, request_timeout_ms=30000)
    kp.create_topics([KpNewTopic(t2, num_partitions=2, replication_factor=1)])
    kp.close()
    for t in (t1, t2):
        wait_topic_everywhere(cluster, t)
    # One cluster: the same id and the same offsets topic everywhere.
    ids = {admin_client(b.bootstrap).list_topics(timeout=10).cluster_id for b in cluster}
    assert len(ids) == 1, ids
    # Every broker applied the same log.
    applied = {b.metric("ringbroker_metadata_quorum_applied_index") for b in cluster}
    deadline = time.monotonic() + 10
    while len(applied) != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        applied = {b.metric("ringbroker_metadata_quorum_applied_index") for b in cluster}
    assert len(applied) == 1, applied


def test_killing_the_controller_leaves_the_survivors_in_charge(cluster):
    leader = leader_of(cluster)
    survivors = [b for b in cluster if b is not leader]
    before = unique_topic("before-kill")
    a = admin_client(survivors[0].bootstrap)
    a.create_topics([NewTopic(before, 1, 1)], request_timeout=30)[before].result(30)
    wait_topic_everywhere(cluster, before)

    leader.kill()
    t0 = time.monotonic()
    name = unique_topic("after-kill")
    created = False
    last_err = None
    while time.monotonic() - t0 < 10.0 and not created:
        a = admin_client(survivors[1].bootstrap)
        try:
            a.create_topics([NewTopic(name, 2, 1)], request_timeout=5, operation_timeout=5)[name].result(6)
            created = True
        except Exception as e:  # retriable while the quorum elects
            last_err = e
            if "already exists" in str(e):
                created = True
            time.sleep(0.1)
    took = time.monotonic() - t0
    assert created, f"CreateTopics through a survivor failed for 10 s: {last_err}"
    assert took < 10.0
    new_leader = leader_of(survivors)
    assert new_leader is not leader
    wait_topic_everywhere(survivors, name)
    assert before in topics_on(survivors[0])

    # The killed broker restarts, catches up on what it missed...
    leader.launch()
    leader.wait_ready()
    wait_topic_everywhere(cluster, name)
    # ...and can lead again: stop the current controller cleanly.
    new_leader.stop()
    third = leader_of([b for b in cluster if b is not new_leader])
    assert third is not new_leader
    last = unique_topic("third-term")
    a = admin_client(leader.bootstrap)
    a.create_topics([NewTopic(last, 1, 1)], request_timeout=30)[last].result(30)
    wait_topic_everywhere([b for b in cluster if b is not new_leader], last)


def test_partitions_spread_over_brokers_and_clients_follow_the_leaders(cluster):
    """Replicas are placed across the brokers; Metadata lists every broker
    and each partition's leader; a producer bootstrapped from one broker and
    a consumer group bootstrapped from another reach every partition on its
    leader; a broker that does not lead a partition refuses it."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = unique_topic("spread")
    a = admin_client(cluster[0].bootstrap)
    a.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)], request_timeout=30)[topic].result(30)
    wait_topic_everywhere(cluster, topic)
    md = admin_client(cluster[1].bootstrap).list_topics(topic=topic, timeout=10)
    assert sorted(md.brokers) == [0, 1, 2], md.brokers
    leaders = {p.id: p.leader for p in md.topics[topic].partitions.values()}
    assert set(leaders.values()) == {0, 1, 2}, f"leaders spread over the three brokers: {leaders}"
    # Replication factor 3: every broker holds a replica; the ISR is the
    # leader until partition replication exists.
    t3 = unique_topic("rf3")
    a.create_topics([NewTopic(t3, num_partitions=3, replication_factor=3)], request_timeout=30)[t3].result(30)
    wait_topic_everywhere(cluster, t3)
    md3 = admin_client(cluster[2].bootstrap).list_topics(topic=t3, timeout=10)
    for p in md3.topics[t3].partitions.values():
        assert sorted(p.replicas) == [0, 1, 2] and p.isrs == [p.leader], p
    # Too many replicas for three brokers.
    t4 = unique_topic("rf4")
    fut = a.create_topics([NewTopic(t4, num_partitions=1, replication_factor=4)], request_timeout=30)[t4]
    with pytest.raises(Exception) as err:
        fut.result(30)
    assert "INVALID_REPLICATION_FACTOR" in str(err.value) or "replication" in str(err.value).lower()

    p = Producer({"bootstrap.servers": cluster[1].bootstrap, "acks": "all", "linger.ms": 5})
    delivered = []
    for i in range(600):
        p.produce(topic, value=b"v%d" % i, partition=i % 6,
                  on_delivery=lambda e, m: delivered.append((e, m.partition())))
    assert p.flush(30) == 0
    assert all(e is None for e, _ in delivered) and len(delivered) == 600, [e for e, _ in delivered if e][:3]

    c = Consumer({"bootstrap.servers": cluster[2].bootstrap, "group.id": unique_topic("g"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    c.subscribe([topic])
    got = poll_values(c, 600)
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, i) for i in range(6)], timeout=10)
    c.close()
    assert len(got) == 600, len(got)
    assert sum(tp.offset for tp in committed) == 600, committed

    # Produce straight to a broker that does not lead a partition: refused,
    # the client's metadata points it elsewhere.
    import kwire
    not_leader = next(b for b in cluster if b.node_id != leaders[0])
    batch = kwire.record_batch([(None, b"x")])
    res = kwire.produce_v3(not_leader.host, not_leader.port, topic, 0, batch)
    assert res[0].error_code == 6, res  # NOT_LEADER_OR_FOLLOWER
    # v10+ (KIP-951): the refusal names the current leader, its epoch and
    # its endpoint, so the client can go there without a metadata refresh.
    r10 = kwire.produce_v10(not_leader.host, not_leader.port, topic, 0, batch)
    assert r10.error_code == 6, r10
    assert r10.current_leader is not None and r10.current_leader[0] == leaders[0], r10
    assert r10.current_leader[1] >= 0, r10
    leader_node = next(b for b in cluster if b.node_id == leaders[0])
    assert r10.node_endpoints == {leaders[0]: (leader_node.host, leader_node.port)}, r10
    # And the leader takes it.
    ok = kwire.produce_v10(leader_node.host, leader_node.port, topic, 0, batch)
    assert ok.error_code == 0 and ok.current_leader is None and not ok.node_endpoints, ok
    # Fetch v12+ names the current leader too; the leader serves it.
    err, cur = kwire.fetch_v12(not_leader.host, not_leader.port, topic, 0)
    assert err == 6 and cur == r10.current_leader, (err, cur)
    assert kwire.fetch_v12(leader_node.host, leader_node.port, topic, 0) == (0, None)


def test_cluster_status_and_kafkas_quorum_tool(cluster):
    """`ringbroker cluster status` and Kafka's own kafka-metadata-quorum tool
    (DescribeQuorum, API 55) describe the quorum: one leader, three voters
    caught up."""
    leader = leader_of(cluster)
    cp = cluster[0].cli("cluster", "status")
    text = cp.stdout.decode()
    assert f"controller: node {leader.node_id}" in text, text
    assert f"metadata quorum: leader node {leader.node_id}" in text, text
    for b in cluster:
        assert f"127.0.0.1:{b.port}" in text, text

    import os
    import subprocess
    peer = Path(__file__).resolve().parents[2] / "bench" / "peers" / "kafka"
    if not (peer / "lib" / ".version").exists():
        pytest.skip("the Kafka tools are not set up (bench/peers/kafka/setup)")
    cmd = ["bash", "-c", "source ./common.sh && run_tool 256m org.apache.kafka.tools.MetadataQuorumCommand "
           f"--bootstrap-server {leader.bootstrap} describe --status"]
    out = subprocess.run(cmd, cwd=peer, capture_output=True, timeout=120, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(rf"LeaderId:\s+{leader.node_id}\b", out.stdout), out.stdout
    # The followers keep up: a lag of a few records at most.
    assert re.search(r"MaxFollowerLag:\s+\d\b", out.stdout), out.stdout
    assert '"id": 0' in out.stdout and '"id": 2' in out.stdout, out.stdout

    # Per voter: the controller heard from each just now and saw it caught up.
    cmd[-1] = cmd[-1].replace("describe --status", "describe --replication")
    t_asked = time.time() * 1000
    out = subprocess.run(cmd, cwd=peer, capture_output=True, timeout=120, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[-1:] in (["Leader"], ["Follower"])]
    assert sorted(int(r[0]) for r in rows) == [0, 1, 2], out.stdout
    for r in rows:
        # NodeId DirectoryId LogEndOffset Lag LastFetchTimestamp LastCaughtUpTimestamp Status
        fetched, caught_up = int(r[4]), int(r[5])
        assert t_asked - 60_000 < fetched and t_asked - 60_000 < caught_up, out.stdout
