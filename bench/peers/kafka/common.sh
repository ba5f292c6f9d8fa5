# Sourced by the scripts in this directory: paths, the classpath, the JVM.
# shellcheck shell=bash
PEER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Where setup copies the jars (git-ignored). KAFKA_PEER_LIB overrides it.
LIB_DIR="${KAFKA_PEER_LIB:-$PEER_DIR/lib}"
# The version pinned in pom.xml; KAFKA_VERSION overrides it.
KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$PEER_DIR/pom.xml" | head -n1)}"
# The last started broker (pid and data dir), so that `stop` needs no arguments.
STATE_FILE="${KAFKA_PEER_STATE:-${TMPDIR:-/tmp}/ringbroker-kafka-peer.$(id -u)}"
JAVA="${JAVA:-java}"

kafka_classpath() {
  if [ ! -f "$LIB_DIR/.version" ] || [ "$(cat "$LIB_DIR/.version")" != "$KAFKA_VERSION" ]; then
    echo "Kafka $KAFKA_VERSION jars not in $LIB_DIR: run $PEER_DIR/setup first" >&2
    return 1
  fi
  local cp="" j
  for j in "$LIB_DIR"/*.jar; do cp="${cp:+$cp:}$j"; done
  printf '%s' "$cp"
}

# Run a Kafka tool's main class with the resolved jars. Tools log warnings
# and errors only, to stderr (our tools-log4j2.properties).
run_tool() {  # heap main-class args...
  local heap="$1" main="$2"; shift 2
  local cp; cp="$(kafka_classpath)" || return 1
  exec "$JAVA" "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$PEER_DIR/tools-log4j2.properties" \
    -cp "$cp" "$main" "$@"
}
