"""End-to-end fixtures: run the REAL ringbroker binary on 127.0.0.1.

Fixtures
--------
broker          function-scoped: a fresh broker (own data dir, own ports) per test.
broker_module   module-scoped: one broker shared by all tests of a module.

Both yield a :class:`Broker` with ``.bootstrap``, ``.admin_url``, ``.data_dir``,
``.stop()`` (SIGTERM + assert exit 0), ``.kill()`` (SIGKILL), ``.start()``
(restart on the same data dir and ports).  The broker's stderr goes to a log
file which is attached to the pytest report of any failing test.  The process
is always SIGKILLed at teardown.

Environment
-----------
RINGBROKER_BIN     path of the binary (default <repo>/target/release/ringbroker)
RINGBROKER_CONFIG  config file (default <repo>/tuning/default.toml)
RUST_LOG           passed through to the broker (default "info")

Shared client helpers (plain functions, ``from conftest import ...``) are at
the bottom of this file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import pytest

import kwire

E2E_DIR = Path(__file__).resolve().parent
REPO = E2E_DIR.parent.parent

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 30_000


def broker_binary() -> Path:
    env = os.environ.get("RINGBROKER_BIN")
    return Path(env) if env else REPO / "target" / "release" / "ringbroker"


def broker_config() -> Path:
    env = os.environ.get("RINGBROKER_CONFIG")
    return Path(env) if env else REPO / "tuning" / "default.toml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_distinct_ports() -> Tuple[int, int]:
    a = free_port()
    for _ in range(50):
        b = free_port()
        if b != a:
            return a, b
    raise RuntimeError("could not find two free ports")


class Broker:
    """A ringbroker process managed by the test suite."""

    def __init__(self, base_dir: Path, name: str = "broker"):
        self.bin = broker_binary()
        self.config = broker_config()
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.base_dir / f"{name}.stderr.log"
        self.port, self.admin_port = _two_distinct_ports()
        self.host = "127.0.0.1"
        self.proc: Optional[subprocess.Popen] = None
        self._log_fh = None
        self.starts = 0
        # True while the test expects the broker to be running: lets teardown
        # detect a broker that died on its own.
        self.expected_running = False

    # ----------------------------------------------------------- addresses
    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    @property
    def metrics_url(self) -> str:
        return f"{self.admin_url}/metrics"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def command(self) -> List[str]:
        return [
            str(self.bin),
            "serve",
            "--config",
            str(self.config),
            "--listen",
            self.bootstrap,
            "--data-dir",
            str(self.data_dir),
            "--admin-listen",
            f"{self.host}:{self.admin_port}",
        ]

    # ----------------------------------------------------------- lifecycle
    def start(self, ready_timeout: float = READY_TIMEOUT_S) -> "Broker":
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker already running")
        if not self.bin.exists():
            pytest.fail(
                f"ringbroker binary not found at {self.bin} "
                "(build it with `cargo build --release --bins` or set RINGBROKER_BIN)"
            )
        self._close_log()
        self._log_fh = open(self.log_path, "ab")
        self.starts += 1
        self._log_fh.write(
            f"\n===== e2e: start #{self.starts}: {' '.join(self.command())} =====\n".encode()
        )
        self._log_fh.flush()
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=self._log_fh,
            env=env,
            cwd=str(self.base_dir),
        )
        self._wait_ready(ready_timeout)
        self.expected_running = True
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_err: Optional[BaseException] = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise AssertionError(
                    f"broker exited with code {rc} before becoming ready\n{self.log_tail()}"
                )
            try:
                resp = kwire.api_versions(self.host, self.port, version=0, timeout=2.0)
                if resp.error_code == 0 and resp.apis:
                    return
                last_err = RuntimeError(f"ApiVersions error_code={resp.error_code}")
            except (OSError, kwire.WireError) as e:  # not listening yet / closed
                last_err = e
            time.sleep(0.1)
        self._hard_kill()
        raise AssertionError(
            f"broker not ready within {timeout}s (last error: {last_err!r})\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Clean shutdown: SIGTERM, wait, assert exit code 0."""
        assert self.proc is not None, "broker was never started"
        self.expected_running = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._hard_kill()
                raise AssertionError(
                    f"broker did not exit within {timeout}s of SIGTERM\n{self.log_tail()}"
                )
        else:
            rc = self.proc.returncode
        self._close_log()
        assert rc == 0, f"broker exited with code {rc} after SIGTERM\n{self.log_tail()}"
        return rc

    def kill(self) -> None:
        """Crash: SIGKILL and reap."""
        self.expected_running = False
        self._hard_kill()

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    def _hard_kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:  # pragma: no cover - D state
                pass
        self._close_log()

    def _close_log(self) -> None:
        if self._log_fh is not None:
            try:
                self._log_fh.flush()
                self._log_fh.close()
            finally:
                self._log_fh = None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ----------------------------------------------------------- introspection
    def rss_kb(self) -> int:
        """VmRSS of the broker process in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("VmRSS not found")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        text = self.log_text()
        if len(text) > chars:
            text = "...[truncated]...\n" + text[-chars:]
        return f"----- ringbroker stderr ({self.log_path}) -----\n{text}\n----- end -----"

    def cli(self, *args: str, input: Optional[bytes] = None, timeout: float = 60.0,
            check: bool = True) -> subprocess.CompletedProcess:
        """Run the built-in CLI against this broker."""
        cmd = [str(self.bin), *args, "--bootstrap", self.bootstrap]
        cp = subprocess.run(cmd, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=timeout)
        if cp.returncode == 2 and b"--bootstrap" in cp.stderr:
            # clap: --bootstrap declared on the top-level command without
            # `global = true` must precede the subcommand.
            cmd = [str(self.bin), "--bootstrap", self.bootstrap, *args]
            cp = subprocess.run(cmd, input=input, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=timeout)
        if check:
            assert cp.returncode == 0, (
                f"{' '.join(cmd)} exited {cp.returncode}\nstdout:\n{cp.stdout[-4000:]!r}\n"
                f"stderr:\n{cp.stderr[-4000:]!r}"
            )
        return cp


def _make_broker(tmp_path_factory, name: str):
    base = tmp_path_factory.mktemp(name)
    b = Broker(base, name="broker")
    b.start()
    return b


def _teardown(b: Broker) -> None:
    died = b.expected_running and b.proc is not None and b.proc.poll() is not None
    rc = b.proc.returncode if b.proc is not None else None
    b._hard_kill()
    if died:
        pytest.fail(f"broker died unexpectedly during the test (exit code {rc})\n{b.log_tail()}",
                    pytrace=False)


@pytest.fixture
def broker(tmp_path_factory):
    b = _make_broker(tmp_path_factory, "rb")
    try:
        yield b
    finally:
        _teardown(b)


@pytest.fixture(scope="module")
def broker_module(tmp_path_factory):
    b = _make_broker(tmp_path_factory, "rbmod")
    try:
        yield b
    finally:
        _teardown(b)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the broker stderr log to the report of a failing test phase."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        seen = set()
        for value in list(getattr(item, "funcargs", {}).values()):
            if isinstance(value, Broker) and id(value) not in seen:
                seen.add(id(value))
                rep.sections.append((f"ringbroker stderr ({value.log_path})", value.log_tail()))


# =====================================================================
# Shared client helpers
# =====================================================================

def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def producer_conf(bootstrap: str, **extra) -> dict:
    """confluent-kafka producer config the broker supports (no idempotence)."""
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "message.timeout.ms": 60000,
        "socket.timeout.ms": 30000,
        "linger.ms": 5,
    }
    conf.update(extra)
    return conf


def consumer_conf(bootstrap: str, **extra) -> dict:
    """confluent-kafka consumer config for explicit assign() use (no group protocol)."""
    conf = {
        "bootstrap.servers": bootstrap,
        # librdkafka insists on a group.id; we never subscribe() or commit().
        "group.id": f"e2e-assign-only-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "socket.timeout.ms": 30000,
        "session.timeout.ms": 10000,
    }
    conf.update(extra)
    return conf


def admin_client(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 30000})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: Optional[Dict[str, str]] = None, timeout: float = 30.0) -> None:
    from confluent_kafka.admin import NewTopic

    a = admin_client(bootstrap)
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout, request_timeout=timeout,
    )
    fs[name].result(timeout=timeout)
    wait_for_topic(bootstrap, name, partitions)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 20.0) -> None:
    a = admin_client(bootstrap)
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = a.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        last = t
        time.sleep(0.2)
    raise AssertionError(f"topic {name} not visible with {partitions} partitions: {last}")


@dataclass
class Rec:
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: List[Tuple[str, bytes]] = field(default_factory=list)
    timestamp: Tuple[int, int] = (0, -1)


def watermarks(bootstrap: str, topic: str, partition: int, timeout: float = 15.0) -> Tuple[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer(consumer_conf(bootstrap))
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        c.close()


def consume_all(bootstrap: str, topic: str, partitions: Iterable[int], timeout: float = 60.0,
                start_offset: Optional[int] = None, extra_conf: Optional[dict] = None,
                ) -> Dict[int, List[Rec]]:
    """Read every partition from the beginning (or start_offset) up to its
    current high watermark using explicit assign(); fails on any consumer error
    or if the end is not reached within ``timeout`` seconds."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    partitions = list(partitions)
    c = Consumer(consumer_conf(bootstrap, **(extra_conf or {})))
    try:
        highs = {}
        for p in partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
            highs[p] = hi
        out: Dict[int, List[Rec]] = {p: [] for p in partitions}
        pending = {p for p in partitions if highs[p] > (start_offset or 0)}
        if not pending:
            return out
        start = OFFSET_BEGINNING if start_offset is None else start_offset
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out consuming {topic}: got "
                    f"{ {p: len(v) for p, v in out.items()} }, high watermarks {highs}"
                )
            msgs = c.consume(num_messages=10000, timeout=1.0)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        p = m.partition()
                        if p in pending and m.offset() >= highs[p]:
                            pending.discard(p)
                        continue
                    raise AssertionError(f"consumer error on {topic}: {err}")
                p = m.partition()
                out[p].append(Rec(p, m.offset(), m.key(), m.value(), list(m.headers() or []),
                                  m.timestamp()))
                if m.offset() >= highs[p] - 1:
                    pending.discard(p)
        return out
    finally:
        c.close()


def assert_contiguous(recs: Sequence[Rec], start: int = 0, what: str = "") -> None:
    offs = [r.offset for r in recs]
    assert offs == list(range(start, start + len(offs))), (
        f"{what}: offsets not contiguous from {start}: first bad at index "
        f"{next((i for i, o in enumerate(offs) if o != start + i), None)}"
    )


def run(cmd: Sequence[str], timeout: float = 120.0, input: Optional[bytes] = None,
        check: bool = True) -> subprocess.CompletedProcess:
    cp = subprocess.run(list(cmd), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=timeout)
    if check:
        assert cp.returncode == 0, (
            f"{' '.join(cmd)} exited {cp.returncode}\nstderr:\n"
            f"{cp.stderr[-4000:].decode(errors='replace')}"
        )
    return cp


def produce_all(bootstrap: str, topic: str, msgs: Sequence[dict], timeout: float = 60.0,
                **conf_extra) -> List[Tuple[dict, int, int]]:
    """Produce ``msgs`` (dicts with any of key/value/headers/timestamp/partition)
    with confluent-kafka, wait for every delivery report and assert all
    succeeded.  Returns [(msg, partition, offset)] in delivery-report order."""
    from confluent_kafka import Producer

    p = Producer(producer_conf(bootstrap, **conf_extra))
    reports: List[Tuple[dict, int, int]] = []
    errors: List[Tuple[dict, object]] = []

    def make_cb(m):
        def cb(err, msg):
            if err is not None:
                errors.append((m, err))
            else:
                reports.append((m, msg.partition(), msg.offset()))
        return cb

    for m in msgs:
        kwargs = {k: m[k] for k in ("key", "value", "headers", "timestamp", "partition") if k in m}
        while True:
            try:
                p.produce(topic, on_delivery=make_cb(m), **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    assert not errors, f"{len(errors)} delivery errors, first: {errors[0][1]}"
    assert len(reports) == len(msgs)
    for _, part, off in reports:
        assert part >= 0 and off >= 0, (part, off)
    return reports
