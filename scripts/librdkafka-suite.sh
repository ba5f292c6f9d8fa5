#!/usr/bin/env bash
# Runs librdkafka's OWN regression test suite (tests/ of librdkafka's source,
# from Debian's source package) against the real ringbroker, in full mode
# (no -Q quick mode), one test number at a time with a per-test timeout.
#
#   scripts/librdkafka-suite.sh              # every test of the run list
#   scripts/librdkafka-suite.sh 0030 0081    # only these test numbers
#
# What it does:
#   1. librdkafka source: adds deb-src entries to apt if missing, `apt-get
#      source librdkafka` (Debian bookworm: 2.0.2), ./configure && make, then
#      builds tests/test-runner. Cached in $RINGBROKER_LIBRDKAFKA_DIR (default
#      ~/.cache/ringbroker-librdkafka); a cached build is reused.
#   2. Builds tests/librdkafka/kafka-topics.c as $KAFKA_PATH/bin/kafka-topics.sh
#      (tests 0045, 0052, 0077 shell out to Kafka's kafka-topics.sh).
#   3. Starts target/release/ringbroker (or $RINGBROKER_BIN) with
#      tests/librdkafka/broker.toml on free ports and a fresh data dir.
#   4. Runs every broker test number of the suite except those listed in
#      tests/librdkafka/exclusions.txt (each with its reason) with
#      `test-runner -p1 -L NNNN` (-L: the broker tests of that number; the
#      local/mock-cluster ones need no broker), TEST_KAFKA_VERSION=3.9.0.
#      Then restarts the broker with auto topic creation off and runs the
#      tests of librdkafka's "noautocreate" scenario with `-s noautocreate`.
#   5. Prints a table and exits non-zero if any test failed, timed out, was
#      skipped at run time, or the broker died.
#
# Environment:
#   RINGBROKER_BIN            broker binary (default target/release/ringbroker;
#                             built with cargo if missing)
#   RINGBROKER_LIBRDKAFKA_DIR source/build cache dir
#   LIBRDKAFKA_VERSION        expected upstream version (default 2.0.2: the
#                             exclusion list is written for it)
#   PER_TEST_TIMEOUT          seconds per test number (default 900)
#   OUT                       log directory (default a new /tmp/librdkafka-suite.*)
#   MAKE_JOBS                 make -j (default 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
HERE="$ROOT/tests/librdkafka"
LIBRDKAFKA_VERSION="${LIBRDKAFKA_VERSION:-2.0.2}"
CACHE="${RINGBROKER_LIBRDKAFKA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringbroker-librdkafka}"
SRC="$CACHE/librdkafka-$LIBRDKAFKA_VERSION"
PER_TEST_TIMEOUT="${PER_TEST_TIMEOUT:-900}"
MAKE_JOBS="${MAKE_JOBS:-2}"
OUT="${OUT:-$(mktemp -d /tmp/librdkafka-suite.XXXXXX)}"
mkdir -p "$OUT"
# Tests whose cases need a broker WITHOUT auto topic creation (librdkafka's
# tests/scenarios/noautocreate.json; the ".scenario" of their test.c entry):
# 0045 (two of its entries), 0107, 0111. None is run at present: 0107 and 0111
# need replication factor 3 (exclusions.txt), and 0045's
# subscribe_update_topic_remove deletes subscribed topics and then hangs in
# rd_kafka_destroy (librdkafka 2.0.2 refcount bug, see subtests.txt 0113);
# the runner cannot pick one test entry of a number. Kept for a newer
# librdkafka: list the numbers here again.
NOAUTOCREATE_TESTS="${NOAUTOCREATE_TESTS:-}"

t0=$(date +%s)
say() { echo "[librdkafka-suite +$(( $(date +%s) - t0 ))s] $*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# ---------------------------------------------------------------- 1. source
have_deb_src() {
  grep -rqsE '^[[:space:]]*deb-src[[:space:]]|^Types:.*deb-src' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

install_source() {
  local pkgs="build-essential dpkg-dev pkg-config python3 liblz4-dev libzstd-dev libsasl2-dev libssl-dev zlib1g-dev rapidjson-dev"
  local missing="" p
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    say "apt-get install$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
  if [ ! -d "$SRC" ]; then
    if ! have_deb_src; then
      say "adding deb-src entries to apt"
      if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources
      else
        sed -n 's/^deb \(.*\)$/deb-src \1/p' /etc/apt/sources.list |
          $SUDO tee /etc/apt/sources.list.d/ringbroker-deb-src.list >/dev/null
      fi
      $SUDO apt-get update -qq
    fi
    mkdir -p "$CACHE"
    say "apt-get source librdkafka (into $CACHE)"
    (cd "$CACHE" && apt-get source -qq librdkafka >/dev/null 2>&1) || true
    if [ ! -d "$SRC" ]; then
      echo "librdkafka-$LIBRDKAFKA_VERSION not found in $CACHE after apt-get source" \
           "(got: $(cd "$CACHE" && ls -d librdkafka-*/ 2>/dev/null | tr '\n' ' '))." \
           "The exclusion list is written for $LIBRDKAFKA_VERSION (Debian bookworm);" \
           "set LIBRDKAFKA_VERSION to use another one." >&2
      exit 2
    fi
  fi
  if [ ! -f "$SRC/.ringbroker-built" ] || [ ! -x "$SRC/tests/test-runner" ]; then
    say "building librdkafka $LIBRDKAFKA_VERSION and its test-runner (make -j$MAKE_JOBS)"
    (cd "$SRC" && { [ -f Makefile.config ] || ./configure >"$OUT/configure.log" 2>&1; } &&
       make -j"$MAKE_JOBS" libs >"$OUT/make-libs.log" 2>&1 &&
       make -j"$MAKE_JOBS" -C tests build >"$OUT/make-tests.log" 2>&1) || {
      echo "librdkafka build failed, see $OUT/configure.log $OUT/make-*.log" >&2; exit 2; }
    touch "$SRC/.ringbroker-built"
  else
    say "using cached librdkafka build in $SRC"
  fi
}
install_source

# ------------------------------------------------------ 2. kafka-topics shim
KAFKA_PATH="$CACHE/kafka-path"
SHIM="$KAFKA_PATH/bin/kafka-topics.sh"
if [ ! -x "$SHIM" ] || [ "$HERE/kafka-topics.c" -nt "$SHIM" ]; then
  mkdir -p "$KAFKA_PATH/bin"
  # shellcheck disable=SC2046
  gcc -O1 -Wall -I"$SRC/src" -o "$SHIM" "$HERE/kafka-topics.c" "$SRC/src/librdkafka.a" \
    $(sed -n 's/^LIBS+*=//p' "$SRC/Makefile.config")
fi

# ------------------------------------------------------------- 3. the broker
RINGBROKER_BIN="${RINGBROKER_BIN:-$ROOT/target/release/ringbroker}"
if [ ! -x "$RINGBROKER_BIN" ]; then
  say "cargo build --release --bin ringbroker"
  cargo build --release --bin ringbroker
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$PORT" ]; do ADMIN_PORT=$(free_port); done
BROKER_PID=""
BROKER_CONF="$HERE/broker.toml"

# shellcheck source=lib-broker.sh
. "$ROOT/scripts/lib-broker.sh"
trap stop_broker EXIT

# ------------------------------------------------------------ 4. run tests
EXCLUDED=$(grep -oE '^[0-9]{4}' "$HERE/exclusions.txt" | sort -u)
ALL=$(grep -oE '_TEST\([0-9]{4}_' "$SRC/tests/test.c" | grep -oE '[0-9]{4}' | sort -u)
if [ $# -gt 0 ]; then
  RUN="$*"
else
  RUN=$(comm -23 <(echo "$ALL") <(echo "$EXCLUDED") | tr '\n' ' ')
fi

cat >"$OUT/test.conf" <<EOF
bootstrap.servers=127.0.0.1:$PORT
broker.address.family=v4
test.timeout.multiplier=2
EOF
export RDKAFKA_TEST_CONF="$OUT/test.conf"
export TEST_KAFKA_VERSION=3.9.0
export KAFKA_PATH BROKERS="127.0.0.1:$PORT"
export LD_LIBRARY_PATH="$SRC/src:$SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset TESTS SUBTESTS TESTS_SKIP CI || true

RESULTS="$OUT/results.tsv"
: >"$RESULTS"
nfail=0

run_one() { # $1: test number, $2: scenario, $3: SUBTESTS substring or ""
  local t="$1" scen="$2" sub="${3:-}" log rc verdict s dur label
  label="$t"
  log="$OUT/$t-$scen.log"
  if [ -n "$sub" ]; then
    label="$t[$sub]"
    log="$OUT/$t-$scen-$(echo "$sub" | tr -c 'A-Za-z0-9\n' '_').log"
  fi
  s=$(date +%s)
  rc=0
  # 0109: with a broker version >= 2.1 the test adds a DENY ACL through
  # kafka-acls.sh; ringbroker has no ACLs, so it runs as against 2.0 (the
  # auto-create half of the test, without the unauthorized-topic case).
  local ver=3.9.0
  [ "$t" = 0109 ] && ver=2.0.0
  (cd "$SRC/tests" && if [ -n "$sub" ]; then export SUBTESTS="$sub"; fi &&
     TEST_KAFKA_VERSION=$ver timeout -k 10 "$PER_TEST_TIMEOUT" \
     ./test-runner -p1 -L -s "$scen" "$t") >"$log" 2>&1 || rc=$?
  dur=$(( $(date +%s) - s ))
  # The summary table has one "| NNNN_name   |  STATE |" row per test entry
  # (with colour codes around it).
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    verdict="FAIL(broker died)"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    verdict="FAIL(timeout ${PER_TEST_TIMEOUT}s)"
  elif [ "$rc" -ne 0 ]; then
    verdict="FAIL(rc=$rc)"
  elif [ -n "$sub" ] && ! grep -aF "$sub" "$log" | grep -F ': PASS (' >/dev/null; then
    verdict="FAIL(no sub-test matching '$sub' passed)"
  elif grep -aqE " ${t}_[a-z0-9_]+ +\| +PASSED " "$log"; then
    verdict="PASS"
  else
    verdict="FAIL(nothing ran: skipped at run time)"
  fi
  printf '%s\t%s\t%s\t%ss\n' "$label" "$scen" "$verdict" "$dur" | tee -a "$RESULTS" || true
  if [ "$verdict" != PASS ]; then
    nfail=$((nfail + 1))
    grep -a "FAIL\|SKIP" "$log" | grep -v "PASSED" | tail -5 | sed 's/^/    /' || true
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      say "broker died; restarting it for the next tests"
      BROKER_PID=""; start_broker "$BROKER_CONF"
    fi
  fi
}

say "logs in $OUT; broker $RINGBROKER_BIN on 127.0.0.1:$PORT"
start_broker "$HERE/broker.toml"
for t in $RUN; do
  # 0107 and 0111 exist only in the noautocreate scenario (run below).
  case "$t" in 0107|0111) continue ;; esac
  subs=$(awk -F'\t' -v t="$t" '$1 == t { print $2 }' "$HERE/subtests.txt")
  if [ -n "$subs" ]; then
    while IFS= read -r sub; do run_one "$t" default "$sub"; done <<<"$subs"
  else
    run_one "$t" default
  fi
done

NOAUTO_RUN=""
for t in $NOAUTOCREATE_TESTS; do
  case " $RUN " in *" $t "*) NOAUTO_RUN="$NOAUTO_RUN $t" ;; esac
done
if [ -n "$NOAUTO_RUN" ]; then
  stop_broker
  sed 's/^auto_create_topics_enable = true/auto_create_topics_enable = false/' \
    "$HERE/broker.toml" >"$OUT/broker-noautocreate.toml"
  say "scenario noautocreate (auto_create_topics_enable = false):$NOAUTO_RUN"
  start_broker "$OUT/broker-noautocreate.toml"
  for t in $NOAUTO_RUN; do run_one "$t" noautocreate; done
fi
stop_broker

# --------------------------------------------------------------- 5. summary
npass=$(grep -c $'\tPASS\t' "$RESULTS" || true)
say "done: $npass passed, $nfail failed; $(echo "$EXCLUDED" | wc -w) test numbers excluded (tests/librdkafka/exclusions.txt); logs in $OUT"
if [ "$nfail" -ne 0 ]; then
  grep -v $'\tPASS\t' "$RESULTS"
  echo "librdkafka-suite: FAILED"
  exit 1
fi
echo "librdkafka-suite: PASSED"
