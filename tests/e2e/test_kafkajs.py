"""Runs js/kafkajs_e2e.js (kafkajs 2.x, unmodified) against the fixture broker."""

import os
import shutil
import subprocess
from pathlib import Path


from conftest import unique_topic

JS_DIR = Path(__file__).resolve().parent / "js"


def test_kafkajs_end_to_end(broker):
    node = shutil.which("node")
    assert node, "node not installed"
    assert (JS_DIR / "node_modules" / "kafkajs").is_dir(), (
        f"kafkajs not installed: run `npm ci` (or `npm install`) in {JS_DIR}")
    topic = unique_topic("kjs")
    env = dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")
    cp = subprocess.run([node, str(JS_DIR / "kafkajs_e2e.js"), broker.bootstrap, topic],
                        cwd=str(JS_DIR), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=180)
    out = cp.stdout.decode(errors="replace")
    err = cp.stderr.decode(errors="replace")
    assert cp.returncode == 0, f"kafkajs_e2e.js exited {cp.returncode}\nstdout:\n{out}\nstderr:\n{err[-8000:]}"
    assert f"kafkajs_e2e: OK topic={topic} records=1000" in out, out
