#!/usr/bin/env bash
# Runs rskafka's OWN integration tests (tests/ of the rskafka crate, as
# published on crates.io) against the real ringbroker.
#
#   scripts/rskafka-suite.sh                       # every test not excluded
#   scripts/rskafka-suite.sh client::test_plain    # only these tests
#
# What it does:
#   1. rskafka source: `cargo fetch` of a throwaway project that depends on
#      rskafka =$RSKAFKA_VERSION, then a copy of the crate's source into the
#      cache dir ($RINGBROKER_RSKAFKA_DIR, default ~/.cache/ringbroker-rskafka).
#      In that copy: rust-toolchain.toml (pins 1.85) is removed so the local
#      toolchain builds it, and the shipped Cargo.lock gets rsasl 2.2.0 ->
#      2.2.1 (2.2.0 no longer compiles on current rustc, rust-lang/rust#141402).
#   2. Builds its test binaries (`cargo test --no-run`, nice, -j$CARGO_JOBS)
#      in the cache's own target dir; a cached build is reused (cargo decides).
#      The dev-dependency rdkafka builds librdkafka from source (C/C++).
#   3. Starts target/release/ringbroker (or $RINGBROKER_BIN) with
#      $RINGBROKER_CONFIG (default tuning/default.toml) with
#      auto_create_topics_enable = false (as rskafka's reference Kafka cluster,
#      docker-compose-kafka.yml: test_non_existing_partition needs it), on free
#      ports with a fresh data dir.
#   4. Runs the integration test binaries client, consumer, producer and
#      produce_consume with TEST_INTEGRATION=1 TEST_BROKER_IMPL=kafka
#      KAFKA_CONNECT=127.0.0.1:PORT, --test-threads=1, skipping the tests of
#      tests/rskafka/exclusions.txt (each with its reason).
#   5. Stops the broker, prints "N passed, N failed", exits non-zero if any
#      test failed, none ran, or the broker died.
#
# Environment:
#   RINGBROKER_BIN           broker binary (default target/release/ringbroker;
#                            built with cargo if missing)
#   RINGBROKER_CONFIG        broker config (default tuning/default.toml)
#   RINGBROKER_RSKAFKA_DIR   source/build cache dir
#   RSKAFKA_VERSION          default 0.6.0 (the exclusion list is written for it)
#   CARGO_JOBS               cargo -j for the rskafka build (default 2)
#   RUN_TIMEOUT              seconds for the whole test run (default 1200)
#   OUT                      log directory (default a new /tmp/rskafka-suite.*)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
HERE="$ROOT/tests/rskafka"
RSKAFKA_VERSION="${RSKAFKA_VERSION:-0.6.0}"
CACHE="${RINGBROKER_RSKAFKA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ringbroker-rskafka}"
SRC="$CACHE/rskafka-$RSKAFKA_VERSION"
TARGET="$CACHE/target"
CARGO_JOBS="${CARGO_JOBS:-2}"
RUN_TIMEOUT="${RUN_TIMEOUT:-1200}"
OUT="${OUT:-$(mktemp -d /tmp/rskafka-suite.XXXXXX)}"
mkdir -p "$OUT" "$CACHE"
BINARIES="client consumer producer produce_consume"
export CARGO_TERM_COLOR=never

t0=$(date +%s)
say() { echo "[rskafka-suite +$(( $(date +%s) - t0 ))s] $*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo not found (rustup, Rust >= 1.85)" >&2; exit 2; }

# ------------------------------------------------------------ 0. build deps
# rdkafka-sys builds librdkafka with its own configure + make (C and C++),
# libz-sys links the system zlib, python3 picks free ports.
pkgs="build-essential pkg-config zlib1g-dev python3"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
  say "apt-get install$missing"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# ---------------------------------------------------------------- 1. source
if [ ! -f "$SRC/.ringbroker-prepared" ]; then
  FETCHER="$CACHE/fetcher"
  mkdir -p "$FETCHER/src"
  cat >"$FETCHER/Cargo.toml" <<EOF
[package]
name = "ringbroker-rskafka-fetcher"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rskafka = "=$RSKAFKA_VERSION"
EOF
  echo 'fn main() {}' >"$FETCHER/src/main.rs"
  say "cargo fetch rskafka $RSKAFKA_VERSION from crates.io"
  (cd "$FETCHER" && cargo fetch -q) || { echo "cargo fetch of rskafka $RSKAFKA_VERSION failed" >&2; exit 2; }
  CARGO_HOME_DIR="${CARGO_HOME:-$HOME/.cargo}"
  CRATE_SRC=$(ls -d "$CARGO_HOME_DIR"/registry/src/*/"rskafka-$RSKAFKA_VERSION" 2>/dev/null | head -1 || true)
  if [ -z "$CRATE_SRC" ] || [ ! -d "$CRATE_SRC/tests" ]; then
    echo "rskafka-$RSKAFKA_VERSION source (with tests/) not found under $CARGO_HOME_DIR/registry/src" >&2
    exit 2
  fi
  rm -rf "$SRC"
  cp -r "$CRATE_SRC" "$SRC"
  chmod -R u+w "$SRC"
  rm -f "$SRC/rust-toolchain.toml" "$SRC/rust-toolchain"
  say "Cargo.lock: rsasl -> 2.2.1 (2.2.0 does not compile on current rustc)"
  (cd "$SRC" && cargo update -q -p rsasl --precise 2.2.1)
  touch "$SRC/.ringbroker-prepared"
else
  say "using cached rskafka source in $SRC"
fi

# ----------------------------------------------------------------- 2. build
say "building rskafka's tests (cargo test --no-run -j$CARGO_JOBS, target $TARGET)"
b0=$(date +%s)
(cd "$SRC" && CARGO_TARGET_DIR="$TARGET" nice -n 10 \
   cargo test --locked -j "$CARGO_JOBS" --tests --no-run) >"$OUT/build.log" 2>&1 || {
  tail -40 "$OUT/build.log" >&2
  echo "rskafka test build failed, see $OUT/build.log" >&2; exit 2; }
say "build done in $(( $(date +%s) - b0 ))s"

# ------------------------------------------------------------ exclusions
# "binary::test<TAB>reason" lines; fail on entries naming no existing test.
declare -A SKIPS
declare -A LISTED
while IFS=$'\t' read -r name reason; do
  case "$name" in ''|'#'*) continue ;; esac
  if [ -z "${reason:-}" ]; then echo "exclusions.txt: no reason for $name" >&2; exit 2; fi
  bin="${name%%::*}"; test="${name#*::}"
  SKIPS[$bin]="${SKIPS[$bin]:-} $test"
done <"$HERE/exclusions.txt"
for bin in $BINARIES; do
  LISTED[$bin]=$(cd "$SRC" && CARGO_TARGET_DIR="$TARGET" cargo test --locked --test "$bin" -- --list 2>/dev/null |
                 sed -n 's/: test$//p' | tr '\n' ' ')
done
stale=0
for bin in "${!SKIPS[@]}"; do
  for test in ${SKIPS[$bin]}; do
    case " ${LISTED[$bin]:-} " in *" $test "*) ;; *) echo "exclusions.txt: $bin::$test is not a test of rskafka $RSKAFKA_VERSION" >&2; stale=1 ;; esac
  done
done
[ "$stale" -eq 0 ] || exit 2

# ------------------------------------------------------------- 3. the broker
RINGBROKER_BIN="${RINGBROKER_BIN:-$ROOT/target/release/ringbroker}"
if [ ! -x "$RINGBROKER_BIN" ]; then
  say "cargo build --release --bin ringbroker"
  cargo build --release --bin ringbroker
fi
RINGBROKER_CONFIG="${RINGBROKER_CONFIG:-$ROOT/tuning/default.toml}"
BROKER_CONF="$OUT/broker.toml"
if grep -qE '^auto_create_topics_enable *=' "$RINGBROKER_CONFIG"; then
  sed -E 's/^auto_create_topics_enable *=.*/auto_create_topics_enable = false/' "$RINGBROKER_CONFIG" >"$BROKER_CONF"
else
  echo "$RINGBROKER_CONFIG has no auto_create_topics_enable line to turn off" >&2; exit 2
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$PORT" ]; do ADMIN_PORT=$(free_port); done
BROKER_PID=""
# shellcheck source=lib-broker.sh
. "$ROOT/scripts/lib-broker.sh"
trap stop_broker EXIT

# ------------------------------------------------------------ 4. run tests
export TEST_INTEGRATION=1 TEST_BROKER_IMPL=kafka KAFKA_CONNECT="127.0.0.1:$PORT"
export RUST_BACKTRACE=1
unset TEST_JAVA_INTEROPT KAFKA_SASL_CONNECT SOCKS5_PROXY RUST_LOG || true

say "logs in $OUT; broker $RINGBROKER_BIN on 127.0.0.1:$PORT (auto-create off)"
start_broker
r0=$(date +%s)
npass=0; nfail=0; broker_died=0
FAILED=""
deadline=$(( $(date +%s) + RUN_TIMEOUT ))
for bin in $BINARIES; do
  args=(--test-threads=1 --exact)
  if [ $# -gt 0 ]; then
    sel=""
    for want in "$@"; do
      [ "${want%%::*}" = "$bin" ] && sel="$sel ${want#*::}"
    done
    [ -n "$sel" ] || continue
    # shellcheck disable=SC2206
    args+=($sel)
  fi
  for test in ${SKIPS[$bin]:-}; do args+=(--skip "$test"); done
  left=$(( deadline - $(date +%s) )); [ "$left" -gt 10 ] || left=10
  log="$OUT/$bin.log"
  say "cargo test --test $bin"
  rc=0
  (cd "$SRC" && CARGO_TARGET_DIR="$TARGET" timeout -k 10 "$left" \
     cargo test --locked --test "$bin" -- "${args[@]}") >"$log" 2>&1 || rc=$?
  p=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$log" | tail -1)
  grep -E '^test .* \.\.\. ' "$log" | sed 's/^/    /' || true
  if [ -z "$p" ]; then
    say "$bin: no result line (rc=$rc; timeout after ${left}s?), see $log"
    tail -20 "$log" | sed 's/^/    /'
    nfail=$((nfail + 1)); FAILED="$FAILED $bin::(run)"
  else
    npass=$((npass + p)); nfail=$((nfail + f))
    FAILED="$FAILED $(sed -n 's/^test \(.*\) \.\.\. FAILED$/'"$bin"'::\1/p' "$log" | tr '\n' ' ')"
    if [ "$rc" -ne 0 ] && [ "$f" = 0 ]; then nfail=$((nfail + 1)); FAILED="$FAILED $bin::(rc=$rc)"; fi
  fi
  if ! kill -0 "$BROKER_PID" 2>/dev/null; then
    say "broker died during $bin, see $OUT/broker.log"
    broker_died=1; BROKER_PID=""; start_broker
  fi
done
stop_broker
say "run done in $(( $(date +%s) - r0 ))s"

# --------------------------------------------------------------- 5. summary
nskip=$(grep -cE '^[a-z_]+::' "$HERE/exclusions.txt" || true)
say "$nskip tests excluded (tests/rskafka/exclusions.txt); logs in $OUT"
[ "$broker_died" -eq 0 ] || { nfail=$((nfail + 1)); FAILED="$FAILED (broker died)"; }
echo "rskafka: $npass passed, $nfail failed"
if [ "$nfail" -ne 0 ] || [ "$npass" -eq 0 ]; then
  echo "failed:$FAILED"
  echo "rskafka-suite: FAILED"
  exit 1
fi
echo "rskafka-suite: PASSED"
