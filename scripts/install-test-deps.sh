#!/usr/bin/env bash
# Installs what the end-to-end tests need on a fresh Debian machine that has
# rustup's cargo, python3 + pip and node + npm: kcat (apt), the Python Kafka
# clients (pip) and kafkajs (npm). Safe to run again: installed parts are kept.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""
# ip and iptables install to /usr/sbin, not on every PATH.
export PATH="$PATH:/usr/sbin:/sbin"
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "[ci] system packages (kcat; iproute2 and iptables for the network-namespace cluster tests)"
missing=""
command -v kcat >/dev/null 2>&1 || missing="$missing kcat"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v iptables >/dev/null 2>&1 || missing="$missing iptables"
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing </dev/null
fi
kcat -V 2>&1 | head -n 4 || true

echo "[ci] python packages"
if ! python3 -m pip install -q --disable-pip-version-check -r tests/e2e/requirements.txt; then
  # Debian's system python is "externally managed" (PEP 668)
  python3 -m pip install -q --disable-pip-version-check --break-system-packages \
    -r tests/e2e/requirements.txt
fi
python3 -c "import confluent_kafka, kafka, crc32c, pytest, pytest_timeout; \
print('confluent-kafka', confluent_kafka.version(), 'librdkafka', confluent_kafka.libversion()[0], \
'kafka-python', kafka.__version__)"

echo "[ci] node packages (kafkajs)"
(
  cd tests/e2e/js
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
)


echo "[ci] Java and Go toolchains (tests/e2e/java, tests/e2e/go)"
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends maven openjdk-17-jdk-headless </dev/null
fi
# `| head` under pipefail: the tool may be killed by SIGPIPE once head has
# its line (this failed CI after 7 s); the version line is informational.
java -version 2>&1 | head -n 1 || true
mvn -v 2>&1 | head -n 1 || true
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "go is missing: the Go client tests need Go >= 1.26 (the machine image provides it)" >&2
  exit 1
fi
go version
# Resolve the Java test module's artifacts and the Go modules now, so a
# registry problem shows here and not as a test failure (both are cached:
# ~/.m2 and the Go module cache).
mvn -B -q -f tests/e2e/java/pom.xml test-compile
(cd tests/e2e/go && go mod download && go vet ./... >/dev/null)
