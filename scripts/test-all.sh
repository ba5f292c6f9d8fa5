#!/usr/bin/env bash
# Build, unit/integration tests, then the end-to-end suite against the real
# release binary.  Exit code 0 only if everything passed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# Go lives in /usr/local/go on the machine image; a non-login shell (CI) may
# not have it on PATH. The go test binaries' own tools go to ~/go/bin.
for d in /usr/local/go/bin "$HOME/go/bin"; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$d:$PATH" ;; esac
done
# ip and iptables (the network-namespace tests) live in /usr/sbin, which a
# non-root-login PATH may lack.
for d in /usr/sbin /sbin; do
  case ":$PATH:" in *":$d:"*) ;; *) [ -d "$d" ] && PATH="$PATH:$d" ;; esac
done
export PATH

t0=$(date +%s)
stamp0() { echo "[test-all +$(( $(date +%s) - t0 ))s] $*"; }
stamp0 "installing test clients if missing (scripts/install-test-deps.sh)"
./scripts/install-test-deps.sh
stamp() { echo "[test-all +$(( $(date +%s) - t0 ))s] $*"; }

stamp "flatbuffers: generated code matches the schemas (scripts/check-flatbuffers.sh)"
./scripts/check-flatbuffers.sh

stamp "cargo build --release --bins"
cargo build --release --bins

status_unit=0
stamp "cargo test --workspace"
cargo test --workspace || status_unit=$?

stamp "criterion benches, quick smoke run (RINGBROKER_BENCH_QUICK=1)"
RINGBROKER_BENCH_QUICK=1 cargo bench -p ringbroker-bench || status_unit=$?

export RINGBROKER_BIN="${RINGBROKER_BIN:-$ROOT/target/release/ringbroker}"
if [ ! -x "$RINGBROKER_BIN" ]; then
  echo "ringbroker binary missing at $RINGBROKER_BIN" >&2
  exit 1
fi

# Kafka's jars (Maven): the e2e suite runs Kafka's own kafka-metadata-quorum
# tool against a ringbroker cluster, and the oracle below runs Kafka itself.
stamp "Apache Kafka jars: bench/peers/kafka/setup"
bench/peers/kafka/setup || echo "bench/peers/kafka/setup failed; tests that need Kafka's tools will say so" >&2

status_e2e=0
stamp "e2e: python3 -m pytest tests/e2e -v (RINGBROKER_BIN=$RINGBROKER_BIN)"
# Hard wall-clock bound on the whole suite on top of pytest-timeout's 300 s per test.
# The network-namespace cluster tests must run here (root, iptables installed), not skip.
RINGBROKER_REQUIRE_NETNS=1 timeout -k 30 1800 python3 -m pytest tests/e2e -v || status_e2e=$?
# pytest exit 5 = no tests collected: that is a failure here, not a pass.

# The reference clients: the Java client, Kafka Streams and Kafka Connect
# (Maven, tests/e2e/java), then the Go clients (tests/e2e/go).
status_java=0
stamp "e2e: Java client, Streams, Connect: mvn test (tests/e2e/java)"
timeout -k 30 1800 mvn -B -q -f tests/e2e/java/pom.xml test || status_java=$?

status_go=0
stamp "e2e: Go clients (franz-go, sarama, kafka-go): go test (tests/e2e/go)"
(cd tests/e2e/go && timeout -k 30 1200 go test -p 1 -parallel 1 -timeout 15m -count=1 ./...) || status_go=$?

# Apache Kafka as the oracle: the same requests to Kafka 4.4 (from Maven)
# and to ringbroker, responses compared field by field (tests/oracle).
status_oracle=0
stamp "differential check against Apache Kafka: tests/oracle/run"
timeout -k 30 900 tests/oracle/run || status_oracle=$?

# Third-party clients' own test suites against the real broker: librdkafka's
# (the CI subset of tests/librdkafka/ci-tests.txt; the full run list is
# `scripts/librdkafka-suite.sh` with no arguments, about 30 minutes) and
# rskafka's integration tests.
status_third=0
stamp "librdkafka's own test suite, CI subset: scripts/librdkafka-suite.sh \$(tests/librdkafka/ci-tests.txt)"
# shellcheck disable=SC2046
timeout -k 30 1500 ./scripts/librdkafka-suite.sh $(grep -v '^#' tests/librdkafka/ci-tests.txt) || status_third=$?
stamp "rskafka's integration tests: scripts/rskafka-suite.sh"
timeout -k 30 1800 ./scripts/rskafka-suite.sh || status_third=$?

stamp "summary: cargo test exit=$status_unit, e2e pytest exit=$status_e2e, java exit=$status_java, go exit=$status_go, oracle exit=$status_oracle, third-party suites exit=$status_third"
if [ "$status_unit" -ne 0 ] || [ "$status_e2e" -ne 0 ] || [ "$status_java" -ne 0 ] || [ "$status_go" -ne 0 ] \
  || [ "$status_oracle" -ne 0 ] || [ "$status_third" -ne 0 ]; then
  echo "test-all: FAILED"
  exit 1
fi
echo "test-all: PASSED"
