"""Idempotent producers: retries are deduplicated, gaps and old epochs are
refused (raw protocol), state survives a SIGKILL, and a real idempotent
producer (librdkafka, enable.idempotence=true) writing through a broker crash
and restart ends with no duplicates and no gaps in what was acknowledged."""

import threading
import time

from confluent_kafka import Producer

import kwire
from conftest import consume_all, create_topic, unique_topic

OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def _produce(broker, topic, batch):
    res = kwire.produce_v3(broker.host, broker.port, topic, 0, batch)
    assert len(res) == 1
    return res[0].error_code, res[0].base_offset


def test_duplicate_gap_and_fenced_epoch_raw(broker):
    topic = unique_topic("idem")
    create_topic(broker.bootstrap, topic, 1)
    err, pid, epoch = kwire.init_producer_id(broker.host, broker.port)
    assert err == 0 and pid >= 0 and epoch == 0
    err2, pid2, _ = kwire.init_producer_id(broker.host, broker.port)
    assert err2 == 0 and pid2 != pid, "every InitProducerId gets a fresh id"

    def batch(seq, n, ep=0, tag="v"):
        return kwire.record_batch([(None, b"%s-%d" % (tag.encode(), seq + i)) for i in range(n)],
                                  producer_id=pid, producer_epoch=ep, base_sequence=seq)

    assert _produce(broker, topic, batch(0, 3)) == (0, 0)
    # A retry of the same batch: original offset back, nothing appended.
    assert _produce(broker, topic, batch(0, 3)) == (0, 0)
    # A gap in the sequence is refused.
    assert _produce(broker, topic, batch(5, 1))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _produce(broker, topic, batch(3, 2)) == (0, 3)
    # A bumped epoch restarts at sequence 0; the old epoch is then fenced.
    assert _produce(broker, topic, batch(0, 1, ep=1, tag="e1")) == (0, 5)
    assert _produce(broker, topic, batch(5, 1, ep=0))[0] == INVALID_PRODUCER_EPOCH

    # Producer state is rebuilt after a crash: the retry is still recognised.
    broker.kill()
    broker.start()
    assert _produce(broker, topic, batch(0, 1, ep=1, tag="e1")) == (0, 5)
    assert _produce(broker, topic, batch(2, 1, ep=1))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert _produce(broker, topic, batch(1, 1, ep=1, tag="e1")) == (0, 6)

    values = [r.value for r in consume_all(broker.bootstrap, topic, [0])[0]]
    assert values == [b"v-0", b"v-1", b"v-2", b"v-3", b"v-4", b"e1-0", b"e1-1"]


def test_idempotent_producer_through_broker_crash(broker):
    topic = unique_topic("idemcrash")
    create_topic(broker.bootstrap, topic, 2)
    acked = {0: [], 1: []}
    failed = []
    stop = threading.Event()
    errors = []

    def run():
        try:
            p = Producer({
                "bootstrap.servers": broker.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60000,
                "reconnect.backoff.ms": 100,
                "reconnect.backoff.max.ms": 500,
            })

            def cb(err, msg):
                if err is None:
                    acked[msg.partition()].append((msg.offset(), msg.value()))
                else:
                    failed.append((msg.value(), str(err)))

            n = 0
            while not stop.is_set():
                try:
                    p.produce(topic, value=b"m-%d" % n, key=b"k%d" % (n % 7), on_delivery=cb)
                    n += 1
                except BufferError:
                    p.poll(0.05)
                    continue
                if n % 100 == 0:
                    p.poll(0)
                    time.sleep(0.01)
            remaining = p.flush(90)
            if remaining:
                errors.append(f"{remaining} messages still unacknowledged after flush")
        except BaseException as e:  # surfaced below
            errors.append(repr(e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    time.sleep(2.0)
    broker.kill()
    time.sleep(1.0)
    broker.start()
    time.sleep(2.0)
    stop.set()
    t.join(120)
    assert not t.is_alive(), "producer did not finish"
    assert not errors, errors
    assert not failed, f"idempotent producer lost messages: {failed[:5]}"
    assert sum(len(v) for v in acked.values()) > 100, "the test produced too little to mean anything"

    got = consume_all(broker.bootstrap, topic, [0, 1])
    for part in (0, 1):
        stored = [(r.offset, r.value) for r in got[part]]
        values = [v for _, v in stored]
        assert len(values) == len(set(values)), f"partition {part}: duplicates stored"
        # Everything acknowledged is there, at its offset, in order, and
        # nothing unacknowledged sneaked in between.
        assert sorted(acked[part]) == stored, f"partition {part}: stored records differ from acknowledged ones"
