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
    return set(admin_client(b.bootstrap).list_topics(timeout=10).topics)


def wait_topic_everywhere(nodes, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(name in topics_on(b) for b in nodes if b.is_running()):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} not on every broker: {[(b.node_id, sorted(topics_on(b))) for b in nodes]}")


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
