"""Crash consistency: SIGKILL the broker under acks=all load, restart, and
check that every acknowledged record survived at its acknowledged offset,
nothing is duplicated, offsets are contiguous and nothing is garbage."""

import random
import re
import threading
import time

from confluent_kafka import Producer

from conftest import consume_all, create_topic, unique_topic, watermarks

ROUNDS = 5
PARTITIONS = 2
PAYLOAD_RE = re.compile(rb"^r(\d+)-(\d+)$")


class LoadThread(threading.Thread):
    def __init__(self, bootstrap, topic, round_no):
        super().__init__(daemon=True, name=f"crash-load-{round_no}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.round_no = round_no
        self.stop_evt = threading.Event()
        self.acked = []     # (payload, partition, offset)
        self.failed = []    # (payload, error)  -- outcome unknown: may or may not be stored
        self.sent = 0
        self.exc = None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # surfaced by the main thread
            self.exc = e

    def _run(self):
        p = Producer({
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "message.send.max.retries": 0,
            "retries": 0,
            "linger.ms": 2,
            "message.timeout.ms": 5000,
            "socket.timeout.ms": 5000,
            "queue.buffering.max.messages": 20000,
            "reconnect.backoff.ms": 100,
            "reconnect.backoff.max.ms": 500,
        })

        def cb(err, msg):
            if err is None:
                self.acked.append((msg.value(), msg.partition(), msg.offset()))
            else:
                self.failed.append((msg.value(), err))

        n = 0
        while not self.stop_evt.is_set():
            payload = b"r%d-%d" % (self.round_no, n)
            try:
                p.produce(self.topic, value=payload, partition=n % PARTITIONS, on_delivery=cb)
            except BufferError:
                p.poll(0.05)
                continue
            n += 1
            p.poll(0)
        self.sent = n
        p.flush(15)
        p.purge()
        p.flush(5)


def test_sigkill_under_load_loses_no_acked_record(broker):
    rnd = random.Random(int(time.time()))
    topic = unique_topic("crash")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    acked_all = {}   # payload -> (partition, offset)
    unknown = set()
    per_round = []

    for r in range(ROUNDS):
        t = LoadThread(broker.bootstrap, topic, r)
        t.start()
        delay = rnd.uniform(0.5, 3.0)
        time.sleep(delay)
        broker.kill()
        t.stop_evt.set()
        t.join(timeout=60)
        assert not t.is_alive(), "producer thread hung"
        if t.exc is not None:
            raise t.exc
        broker.start()

        for payload, part, off in t.acked:
            assert payload not in acked_all, f"payload {payload!r} acknowledged twice"
            assert off >= 0
            acked_all[payload] = (part, off)
        unknown.update(v for v, _ in t.failed)
        per_round.append((round(delay, 2), t.sent, len(t.acked), len(t.failed)))
        assert t.acked, f"round {r}: nothing acknowledged in {delay:.2f}s (sent {t.sent})"

        # cheap check right after recovery: high watermark covers every ack
        for p in range(PARTITIONS):
            offs = [o for (pp, o) in acked_all.values() if pp == p]
            if offs:
                hi = watermarks(broker.bootstrap, topic, p)[1]
                assert hi >= max(offs) + 1, (
                    f"round {r}, partition {p}: high watermark {hi} after restart but offset "
                    f"{max(offs)} was acknowledged; rounds so far {per_round}")

    got = consume_all(broker.bootstrap, topic, range(PARTITIONS), timeout=120)
    seen = {}
    for p, recs in got.items():
        offs = [rec.offset for rec in recs]
        assert offs == list(range(len(recs))), f"partition {p}: offsets not contiguous from 0"
        last = (-1, -1)
        for rec in recs:
            m = PAYLOAD_RE.match(rec.value or b"")
            assert m, f"unparseable record at {p}/{rec.offset}: {rec.value!r}"
            assert rec.value not in seen, (
                f"payload {rec.value!r} stored twice: {seen[rec.value]} and {(p, rec.offset)}")
            seen[rec.value] = (p, rec.offset)
            rn = (int(m.group(1)), int(m.group(2)))
            assert rn > last, f"partition {p}: {rec.value!r} at {rec.offset} out of order after {last}"
            last = rn
            assert int(m.group(2)) % PARTITIONS == p, f"{rec.value!r} in wrong partition {p}"
            assert rec.value in acked_all or rec.value in unknown, (
                f"{rec.value!r} stored but never sent/acked-or-failed")

    missing = [(v, po) for v, po in acked_all.items() if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {missing[:5]}; rounds {per_round}"
    moved = [(v, po, seen[v]) for v, po in acked_all.items() if seen[v] != po]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:5]}"
    print(f"crash rounds (delay, sent, acked, failed): {per_round}; stored {len(seen)}")
