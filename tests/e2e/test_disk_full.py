"""A full disk: produce fails cleanly (KAFKA_STORAGE_ERROR), acknowledged
records stay readable, the broker keeps serving and stops cleanly, even when
its own log file is on the full filesystem.

Found by the benchmark suite filling the disk: the broker aborted because
the logger reported its failed write with eprintln!, which panics when stderr
cannot be written. Needs root (mounts a small tmpfs); skipped otherwise.
"""

import os
import subprocess

import pytest

import kwire
from conftest import Broker, consume_all, create_topic, unique_topic


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path):
    """Write zeros until the filesystem refuses."""
    with open(path, "wb") as f:
        block = b"\0" * (1 << 20)
        try:
            while True:
                f.write(block)
                f.flush()
        except OSError:
            pass


def _produce(bootstrap, topic, n, size):
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "1", "message.timeout.ms": 15000,
                  "linger.ms": 5, "enable.idempotence": False})
    ok, failed = [], []

    def cb(err, msg):
        (failed if err is not None else ok).append((err, msg.partition(), msg.offset(), msg.value()))

    for i in range(n):
        value = (b"%08d" % i) * (size // 8)
        while True:
            try:
                p.produce(topic, value=value, partition=i % 2, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(30)
    return ok, failed


def test_full_disk_fails_produce_cleanly_and_keeps_acknowledged_data(small_fs):
    b = Broker(small_fs, name="full")
    b.start()
    try:
        topic = unique_topic("full")
        create_topic(b.bootstrap, topic, 2)
        later = unique_topic("full-later")
        create_topic(b.bootstrap, later, 2)
        # ~6 MB: fits (50 offsets partitions preallocate 1 MiB each of the 128).
        ok, failed = _produce(b.bootstrap, topic, 100, 64 << 10)
        assert not failed and len(ok) == 100, repr(sorted({str(e) for e, *_ in failed})[:5]) + "\n" + b.log_tail()
        # ~96 MB more into the ~65 MB left: the tail must fail, cleanly.
        ok2, failed2 = _produce(b.bootstrap, topic, 1500, 64 << 10)
        assert b.is_running(), "the broker survived the disk filling up\n" + b.log_tail()
        assert failed2, "a full disk must fail some produce requests"
        codes = {str(err) for err, *_ in failed2}
        assert any("STORAGE" in c or "TIMED_OUT" in c for c in codes), codes
        # Now also the log file's filesystem is full. Writing to partitions
        # that were healthy until now poisons them, and the broker logs
        # errors it cannot write.
        _fill(small_fs / "filler")
        # Also the last page of the broker's log file, so its next line fails.
        with open(b.log_path, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(b"\n" * 512)
                    f.flush()
            except OSError:
                pass
        _, failed3 = _produce(b.bootstrap, later, 100, 64 << 10)
        assert failed3
        assert b.is_running(), "the broker survived a full disk under its own log\n" + b.log_tail()
        assert kwire.api_versions(b.host, b.port, version=0, timeout=5.0).error_code == 0
        # Every acknowledged record is there, with its value.
        got = consume_all(b.bootstrap, topic, [0, 1], timeout=60)
        stored = {(p, r.offset): r.value for p, recs in got.items() for r in recs}
        for _, p, off, value in ok + ok2:
            assert stored.get((p, off)) == value, f"acknowledged record {p}/{off} lost"
    finally:
        (small_fs / "filler").unlink(missing_ok=True)
    b.stop()  # asserts exit code 0
