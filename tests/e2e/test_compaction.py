"""Log compaction through a real client: many values per key with
tombstones on a cleanup.policy=compact topic; once the background cleaner
has run (log.cleaner.backoff.ms, 15 s by default) a fresh read shows exactly
the latest value per key, with fewer records than were written, and keyless
records are refused."""

import time

from confluent_kafka import KafkaException, Producer

from conftest import consume_all, create_topic, producer_conf, unique_topic


def test_compacted_topic_keeps_latest_value_per_key(broker):
    topic = unique_topic("compact")
    create_topic(broker.bootstrap, topic, 1, config={
        "cleanup.policy": "compact",
        "segment.bytes": "4096",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "86400000",
    })
    p = Producer(producer_conf(broker.bootstrap, **{"linger.ms": 0}))
    latest = {}
    acked = []
    for i in range(3000):
        key = b"key-%d" % (i % 50)
        value = None if i % 11 == 5 else b"value-%d" % i
        p.produce(topic, key=key, value=value, partition=0,
                  on_delivery=lambda err, msg: acked.append(err))
        latest[key] = value
        if i % 200 == 0:
            p.flush(30)
    assert p.flush(30) == 0
    assert all(e is None for e in acked) and len(acked) == 3000

    def read():
        recs = consume_all(broker.bootstrap, topic, [0])[0]
        view = {}
        for r in recs:
            view[r.key] = r.value
        return recs, view

    deadline = time.time() + 90
    while True:
        recs, view = read()
        # A consumer applying records in order always sees the latest values.
        assert view == latest
        if len(recs) < 3000 * 0.5 or time.time() > deadline:
            break
        time.sleep(3)
    assert len(recs) < 3000 * 0.5, f"cleaner did not compact: still {len(recs)} records"
    offsets = [r.offset for r in recs]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def test_compacted_topic_refuses_keyless_records(broker):
    topic = unique_topic("compactnokey")
    create_topic(broker.bootstrap, topic, 1, config={"cleanup.policy": "compact"})
    p = Producer(producer_conf(broker.bootstrap))
    errs = []
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: errs.append(err))
    p.flush(30)
    assert len(errs) == 1 and errs[0] is not None, "a keyless record on a compacted topic must fail"
    assert errs[0].code() in (87,) or "INVALID_RECORD" in errs[0].name() or "RECORD" in errs[0].name(), errs[0]
