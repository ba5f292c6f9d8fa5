"""Runs js/kafkajs_groups.js (kafkajs 2.x, unmodified) against the fixture broker."""

import os
import shutil
import subprocess
from pathlib import Path

from conftest import unique_topic

JS_DIR = Path(__file__).resolve().parent / "js"


def test_kafkajs_consumer_group(broker):
    node = shutil.which("node")
    assert node, "node not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), (
        f"kafkajs not installed: run `npm ci` (or `npm install`) in {JS_DIR}")
    topic = unique_topic("kjsg")
    group = unique_topic("kjsgroup")
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    cp = subprocess.run([node, str(JS_DIR / "kafkajs_groups.js"), broker.bootstrap, topic, group],
                        cwd=str(JS_DIR), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=200)
    out = cp.stdout.decode(errors="replace")
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 0, (
        f"kafkajs_groups.js exited {cp.returncode}\nstdout:\n{out[-8000:]}\nstderr:\n{err[-8000:]}")
    assert f"kafkajs_groups: OK topic={topic} group={group} records=1500" in out, out
