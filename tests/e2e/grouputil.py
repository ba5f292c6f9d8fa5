"""Helpers for the consumer-group end-to-end tests (confluent-kafka / librdkafka).

* :class:`GroupMember` runs one subscribe()d confluent-kafka Consumer in a
  thread: it consumes in batches, "processes" a batch by recording it, then
  commits the batch's offsets synchronously before polling again (and commits
  anything pending from the on_revoke callback), so every record is committed
  before its partition can move to another member.  A failed commit (Kafka
  answers REBALANCE_IN_PROGRESS while a group is CompletingRebalance) is
  retried with the next commit; ``records`` holds every record handed to the
  application (= processed).
* :class:`SubprocessMember` runs the same loop in a child Python process
  (``python3 grouputil.py member ...``) so that it can be SIGKILLed: it never
  gets to send LeaveGroup and simply stops heartbeating.  It reports its
  events (assignments, processed records, commits) as JSON lines on stdout.
* describe/list helpers around confluent-kafka's AdminClient.

Run as a script, this file is the child process of SubprocessMember.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

E2E_DIR = Path(__file__).resolve().parent

SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 1000
T_OUT = 30


def group_conf(bootstrap: str, group: str, **extra) -> dict:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_MS,
        "partition.assignment.strategy": "range",
        "socket.timeout.ms": 30000,
        "topic.metadata.refresh.interval.ms": 5000,
    }
    conf.update(extra)
    return conf


# ====================================================================== member
class GroupMember:
    """A subscribe()d confluent-kafka consumer driven by its own thread."""

    def __init__(self, name: str, conf: dict, topics: List[str], batch: int = 50):
        self.name = name
        self.conf = dict(conf)
        self.topics = topics
        self.batch = batch
        self.lock = threading.Lock()
        # (partition, offset, value) of every record handed to the application
        self.records: List[Tuple[int, int, bytes]] = []
        # partitions revoked while their processed offsets were still uncommitted
        self.revoked_uncommitted: List[str] = []
        self.assignment: Set[int] = set()
        self.assign_events: List[Tuple[float, List[int]]] = []
        self.revoke_events: List[Tuple[float, List[int]]] = []
        self.errors: List[str] = []
        self.commit_errors: List[str] = []
        self._pending: Dict[Tuple[str, int], int] = {}
        self._stop = threading.Event()
        self._close_mode = "close"
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self.closed = threading.Event()
        self.consumer = None

    # --------------------------------------------------------------- control
    def start(self) -> "GroupMember":
        self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop polling and close() the consumer (sends LeaveGroup)."""
        self._close_mode = "close"
        self._stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"member {self.name} did not close within {timeout}s"

    # --------------------------------------------------------------- views
    def snapshot_assignment(self) -> Set[int]:
        with self.lock:
            return set(self.assignment)

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def n_assigns(self) -> int:
        with self.lock:
            return len(self.assign_events)

    # --------------------------------------------------------------- loop
    def _commit_pending(self, c) -> bool:
        """Synchronously commit the next offsets of everything processed so
        far.  On failure (e.g. REBALANCE_IN_PROGRESS while the group is
        CompletingRebalance, which Kafka answers too) the offsets stay pending
        and are retried with the next commit (or from on_revoke)."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self._pending:
            return True
        offs = [TopicPartition(t, p, o) for (t, p), o in sorted(self._pending.items())]
        try:
            res = c.commit(offsets=offs, asynchronous=False)
        except KafkaException as e:
            self.commit_errors.append(f"{time.time():.3f} commit {offs}: {e}")
            return False
        bad = [tp for tp in (res or []) if tp.error is not None]
        if bad:
            self.commit_errors.append(f"{time.time():.3f} commit partition errors: {bad}")
            return False
        self._pending.clear()
        return True

    def _run(self) -> None:
        from confluent_kafka import Consumer, KafkaError

        c = Consumer(self.conf)
        self.consumer = c

        coop = "cooperative" in str(self.conf.get("partition.assignment.strategy", ""))

        def incremental(cons) -> bool:
            # cooperative-sticky: callbacks carry only the added/removed partitions
            return coop

        def on_assign(cons, parts):
            ps = sorted(tp.partition for tp in parts)
            with self.lock:
                if incremental(cons):
                    self.assignment |= set(ps)
                else:
                    self.assignment = set(ps)
                self.assign_events.append((time.monotonic(), ps))

        def on_revoke(cons, parts):
            # commit whatever was processed but not committed yet, while we
            # are still a member of the old generation
            if not self._commit_pending(cons):
                for tp in parts:
                    if (tp.topic, tp.partition) in self._pending:
                        self.revoked_uncommitted.append(
                            f"{tp.topic}/{tp.partition} up to {self._pending[(tp.topic, tp.partition)]}")
            for tp in parts:
                self._pending.pop((tp.topic, tp.partition), None)
            ps = sorted(tp.partition for tp in parts)
            with self.lock:
                if incremental(cons):
                    self.assignment -= set(ps)
                else:
                    self.assignment = set()
                self.revoke_events.append((time.monotonic(), ps))

        def on_lost(cons, parts):
            ps = sorted(tp.partition for tp in parts)
            with self.lock:
                if incremental(cons):
                    self.assignment -= set(ps)
                else:
                    self.assignment = set()
                self.revoke_events.append((time.monotonic(), ps))
                self.errors.append(f"partitions lost: {ps}")

        try:
            c.subscribe(self.topics, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
            while not self._stop.is_set():
                msgs = c.consume(num_messages=self.batch, timeout=0.2)
                for m in msgs:
                    err = m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            continue
                        self.errors.append(f"{time.time():.3f} consume error: {err}")
                        continue
                    with self.lock:
                        self.records.append((m.partition(), m.offset(), m.value()))
                    self._pending[(m.topic(), m.partition())] = m.offset() + 1
                self._commit_pending(c)
        except Exception as e:  # pragma: no cover - surfaced by the tests
            self.errors.append(f"member loop crashed: {e!r}")
        finally:
            try:
                c.close()
            except Exception as e:
                self.errors.append(f"close failed: {e!r}")
            self.closed.set()


class SubprocessMember:
    """The GroupMember loop in a child process, reporting JSON lines."""

    def __init__(self, name: str, conf: dict, topics: List[str]):
        self.name = name
        self.lock = threading.Lock()
        self.records: List[Tuple[int, int, bytes]] = []
        self.assignment: Set[int] = set()
        self.assign_events: List[Tuple[float, List[int]]] = []
        self.lines: List[str] = []
        args = [sys.executable, str(Path(__file__).resolve()), "member", json.dumps(conf),
                json.dumps(topics)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=str(E2E_DIR))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                with self.lock:
                    self.lines.append(line)
                continue
            with self.lock:
                if ev["ev"] == "assign":
                    self.assignment = set(ev["parts"])
                    self.assign_events.append((time.monotonic(), ev["parts"]))
                elif ev["ev"] == "revoke":
                    self.assignment = set()
                elif ev["ev"] == "recs":
                    for p, o, v in ev["recs"]:
                        self.records.append((p, o, v.encode("latin-1")))
                else:
                    self.lines.append(line)

    def snapshot_assignment(self) -> Set[int]:
        with self.lock:
            return set(self.assignment)

    def count(self) -> int:
        with self.lock:
            return len(self.records)

    def n_assigns(self) -> int:
        with self.lock:
            return len(self.assign_events)

    def sigkill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._reader.join(5)

    def stderr_tail(self) -> str:
        try:
            return self.proc.stderr.read().decode(errors="replace")[-4000:] if self.proc.poll() is not None else ""
        except Exception:
            return ""


def _child_main(conf: dict, topics: List[str]) -> None:
    """Child process: consume/commit loop, events as JSON lines on stdout."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    out = sys.stdout

    def emit(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    c = Consumer(conf)
    pending: Dict[Tuple[str, int], int] = {}

    def commit_pending(cons):
        # same policy as GroupMember._commit_pending
        if not pending:
            return
        offs = [TopicPartition(t, p, o) for (t, p), o in sorted(pending.items())]
        try:
            res = cons.commit(offsets=offs, asynchronous=False)
            bad = [tp for tp in (res or []) if tp.error is not None]
            if bad:
                emit({"ev": "commit_error", "err": str(bad)})
                return
        except KafkaException as e:
            emit({"ev": "commit_error", "err": str(e)})
            return
        pending.clear()
        emit({"ev": "committed", "offs": [[tp.partition, tp.offset] for tp in offs]})

    def on_assign(cons, parts):
        emit({"ev": "assign", "parts": sorted(tp.partition for tp in parts)})

    def on_revoke(cons, parts):
        commit_pending(cons)
        for tp in parts:
            pending.pop((tp.topic, tp.partition), None)
        emit({"ev": "revoke", "parts": sorted(tp.partition for tp in parts)})

    c.subscribe(topics, on_assign=on_assign, on_revoke=on_revoke)
    while True:
        msgs = c.consume(num_messages=50, timeout=0.2)
        recs = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    emit({"ev": "error", "err": str(err)})
                continue
            recs.append([m.partition(), m.offset(), (m.value() or b"").decode("latin-1")])
            pending[(m.topic(), m.partition())] = m.offset() + 1
        if recs:
            emit({"ev": "recs", "recs": recs})  # processed
        commit_pending(c)


# ====================================================================== waits
def wait_until(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last={last!r})")


def assignments_ok(members, n_partitions: int, all_nonempty: bool = True) -> bool:
    """Every partition assigned to exactly one of ``members``."""
    snaps = [m.snapshot_assignment() for m in members]
    if all_nonempty and any(not s for s in snaps):
        return False
    total = sum(len(s) for s in snaps)
    union = set().union(*snaps) if snaps else set()
    return total == n_partitions and union == set(range(n_partitions))


def wait_balanced(members, n_partitions: int, timeout: float = 30.0,
                  all_nonempty: bool = True) -> List[Set[int]]:
    wait_until(lambda: assignments_ok(members, n_partitions, all_nonempty), timeout,
               f"assignment of {n_partitions} partitions over "
               f"{[getattr(m, 'name', '?') for m in members]}: "
               f"{[sorted(m.snapshot_assignment()) for m in members]}; member errors: "
               f"{[getattr(m, 'errors', None) or getattr(m, 'lines', None) for m in members]}")
    return [m.snapshot_assignment() for m in members]


# ====================================================================== admin
def admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000})


def describe_group(bootstrap: str, group: str):
    a = admin(bootstrap)
    return a.describe_consumer_groups([group], request_timeout=T_OUT)[group].result(timeout=T_OUT)


def group_state_name(desc) -> str:
    st = desc.state
    return getattr(st, "name", str(st))


def member_partitions(desc, topic: str) -> Dict[str, Set[int]]:
    out = {}
    for m in desc.members:
        out[m.member_id] = {tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic}
    return out


def wait_group(bootstrap: str, group: str, state: str, n_members: int,
               timeout: float = 30.0):
    """Poll describe_consumer_groups until state/member count match."""
    last = None

    def pred():
        nonlocal last
        try:
            d = describe_group(bootstrap, group)
        except Exception as e:  # transient (coordinator loading, ...)
            last = repr(e)
            return None
        last = (group_state_name(d), len(d.members),
                [(m.member_id, sorted(tp.partition for tp in m.assignment.topic_partitions))
                 for m in d.members])
        if group_state_name(d) == state and len(d.members) == n_members:
            return d
        return None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = pred()
        if d is not None:
            return d
        time.sleep(0.25)
    raise AssertionError(f"group {group}: expected state {state} with {n_members} members "
                         f"within {timeout}s; last describe: {last}")


def committed_offsets(bootstrap: str, group: str, topic: Optional[str] = None,
                      partitions: Optional[Iterable[int]] = None) -> Dict[Tuple[str, int], int]:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    a = admin(bootstrap)
    tps = None
    if topic is not None and partitions is not None:
        tps = [TopicPartition(topic, p) for p in partitions]
    req = ConsumerGroupTopicPartitions(group, tps)
    res = a.list_consumer_group_offsets([req], request_timeout=T_OUT)[group].result(timeout=T_OUT)
    assert res.group_id == group
    out = {}
    for tp in res.topic_partitions:
        assert tp.error is None, f"offset fetch error for {tp}: {tp.error}"
        out[(tp.topic, tp.partition)] = tp.offset
    return out


def high_watermarks(bootstrap: str, topic: str, n: int) -> Dict[int, int]:
    from conftest import watermarks

    return {p: watermarks(bootstrap, topic, p)[1] for p in range(n)}


def keyed_messages(start: int, n: int, tag: str = "m") -> List[dict]:
    return [{"key": b"key-%d" % (i % 97), "value": b"%s-%d" % (tag.encode(), i)}
            for i in range(start, start + n)]


def assert_exactly_once(records: List[Tuple[int, int, bytes]], produced: Dict[Tuple[int, int], bytes],
                        what: str = "") -> None:
    """records: (partition, offset, value) consumed; produced: (p, o) -> value."""
    seen: Dict[Tuple[int, int], int] = {}
    for p, o, v in records:
        seen[(p, o)] = seen.get((p, o), 0) + 1
    dups = sorted(k for k, n in seen.items() if n > 1)
    missing = sorted(k for k in produced if k not in seen)
    extra = sorted(k for k in seen if k not in produced)
    assert not dups and not missing and not extra, (
        f"{what}: {len(records)} consumed vs {len(produced)} produced; "
        f"{len(dups)} duplicated (first {dups[:10]}), {len(missing)} missing "
        f"(first {missing[:10]}), {len(extra)} unexpected (first {extra[:10]})")
    for p, o, v in records:
        assert v == produced[(p, o)], f"{what}: value mismatch at {p}/{o}: {v!r} != {produced[(p, o)]!r}"


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "member":
        sys.path.insert(0, str(E2E_DIR))
        _child_main(json.loads(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        sys.exit("usage: grouputil.py member CONF_JSON TOPICS_JSON")
