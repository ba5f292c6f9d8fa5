"""Prometheus endpoint on the admin listener."""

import re
import time
import urllib.request

from conftest import create_topic, produce_all, unique_topic

COUNTER = "ringbroker_produce_records_total"


def scrape(broker):
    # never route 127.0.0.1 through an http_proxy from the environment
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(broker.metrics_url, timeout=10) as r:
        assert r.status == 200
        return r.read().decode()


def counter_sum(text, name):
    """Sum of all samples of ``name`` (any labels); None if absent."""
    total = None
    pat = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)(\s+\d+)?$")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            total = (total or 0.0) + float(m.group(2))
    return total


def test_metrics_served(broker):
    text = scrape(broker)
    lines = [l for l in text.splitlines() if l.startswith("ringbroker_")]
    assert lines, f"no ringbroker_ samples in /metrics:\n{text[:2000]}"


def test_produce_counter_increases(broker):
    topic = unique_topic("met")
    create_topic(broker.bootstrap, topic, 1)
    before = counter_sum(scrape(broker), COUNTER) or 0.0
    produce_all(broker.bootstrap, topic, [{"value": b"m%d" % i} for i in range(250)])
    deadline = time.monotonic() + 10
    after = before
    while time.monotonic() < deadline:
        after = counter_sum(scrape(broker), COUNTER)
        assert after is not None, f"{COUNTER} missing from /metrics"
        if after >= before + 250:
            break
        time.sleep(0.2)
    assert after >= before + 250, f"{COUNTER}: {before} -> {after} after producing 250 records"
