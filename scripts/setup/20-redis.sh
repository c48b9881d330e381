# Redis for the event-bus conformance suite and the PostgreSQL + Redis integration tests.
# Sourced by scripts/test.sh; idempotent. Installs the Debian package when missing, runs a
# private server on 127.0.0.1:${ORCA_TEST_REDIS_PORT:-6390} with its data (append-only file)
# under the cache dir (reused when it already runs), and exports:
#   ORCA_TEST_REDIS_URL     redis://127.0.0.1:6390 (each test uses its own key prefix)
#   ORCA_TEST_REDIS_SERVER  the redis-server binary, for tests that restart their own server
# Without it the Redis tests print "SKIPPED (...)" (and fail when CI=true).
_orca_redis_setup() {
  local port="${ORCA_TEST_REDIS_PORT:-6390}"
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      echo "==> installing redis-server (Debian package)" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; } \
        || echo "!!! apt-get install redis-server failed" >&2
    fi
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "!!! redis-server is not installed: Redis tests will be skipped (or fail with CI=true)" >&2
    return 0
  fi
  export ORCA_TEST_REDIS_SERVER="$(command -v redis-server)"
  local dir="${ORCA_TEST_REDIS_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/orca/redis}"
  mkdir -p "$dir"
  if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" != PONG ]; then
    echo "==> starting Redis on 127.0.0.1:$port" >&2
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --appendonly yes --appendfsync everysec \
      --save "" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --maxclients 10000 \
      || { echo "!!! Redis did not start; see $dir/redis.log" >&2; return 0; }
    local i
    for i in $(seq 1 50); do
      [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
      sleep 0.1
    done
  fi
  if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" != PONG ]; then
    echo "!!! Redis is not answering on 127.0.0.1:$port; see $dir/redis.log" >&2
    return 0
  fi
  # Keys that earlier (interrupted) runs left behind: prefixes end in a UUIDv7 (creation time
  # in its first 48 bits); only those over 6 hours old go, not those of a run going on now.
  local cutoff=$(( $(date +%s) * 1000 - 6 * 3600 * 1000 ))
  { redis-cli -h 127.0.0.1 -p "$port" --scan --pattern 'orca-test-*'; redis-cli -h 127.0.0.1 -p "$port" --scan --pattern 'orca-bench-*'; } 2>/dev/null \
    | awk -v cutoff="$cutoff" '/^orca-(test|bench)-[0-9a-f]+:/ {
        hex = substr($0, /^orca-test-/ ? 11 : 12, 12); ms = 0
        for (i = 1; i <= 12; i++) ms = ms * 16 + index("0123456789abcdef", substr(hex, i, 1)) - 1
        if (ms < cutoff) print }' \
    | xargs -r -n 500 redis-cli -h 127.0.0.1 -p "$port" unlink >/dev/null 2>&1 || true
  export ORCA_TEST_REDIS_URL="redis://127.0.0.1:$port"
  echo "==> Redis ready: $ORCA_TEST_REDIS_URL (data in $dir)" >&2
}
_orca_redis_setup
unset -f _orca_redis_setup
