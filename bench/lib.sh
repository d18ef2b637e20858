# Shared by the bench/run-*.sh scripts (sourced, not run): one server at a
# time in $pid, stopped on exit, and a readiness wait on $PORT.
sha() { printf %s "$1" | sha256sum | cut -d' ' -f1; }
pid=""
stop_server() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; pid=""; }
trap stop_server EXIT
# wait_ready PATH: until GET http://127.0.0.1:$PORT/PATH answers 2xx (2 minutes at most).
wait_ready() {
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$PORT/$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "server did not become ready" >&2; return 1
}
