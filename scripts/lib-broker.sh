# Sourced by the third-party suite scripts: start and stop the real broker
# for a suite run. Needs RINGBROKER_BIN, OUT (log/data dir), PORT and
# ADMIN_PORT; BROKER_CONF is the config file (start_broker's argument sets it).
BROKER_PID=""

start_broker() { # [$1: config file]
  BROKER_CONF="${1:-$BROKER_CONF}"
  rm -rf "$OUT/data"
  "$RINGBROKER_BIN" serve --config "$BROKER_CONF" --listen "127.0.0.1:$PORT" \
    --data-dir "$OUT/data" --admin-listen "127.0.0.1:$ADMIN_PORT" >>"$OUT/broker.log" 2>&1 &
  BROKER_PID=$!
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "broker did not start, see $OUT/broker.log" >&2
  tail -20 "$OUT/broker.log" >&2
  exit 2
}

stop_broker() {
  [ -n "$BROKER_PID" ] || return 0
  kill "$BROKER_PID" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -9 "$BROKER_PID" 2>/dev/null || true
  wait "$BROKER_PID" 2>/dev/null || true
  BROKER_PID=""
}
