# PostgreSQL for the store conformance suite and the PostgreSQL + Redis integration tests.
# Sourced by scripts/test.sh; idempotent. Installs the Debian package when missing, runs a
# private cluster on 127.0.0.1:${ORCA_TEST_PG_PORT:-55432} with its data under the cache dir
# (reused when it already runs), and exports:
#   ORCA_TEST_DATABASE_URL  postgres://orca:orca@127.0.0.1:55432/orca (role orca may CREATE DATABASE;
#                           each test makes its own orca_test_<random> database)
#   ORCA_TEST_PG_BIN        the server's bin dir (initdb, pg_ctl, pgbench) for restart tests and benches
# Without it the PostgreSQL tests print "SKIPPED (...)" (and fail when CI=true).
_orca_pg_setup() {
  local port="${ORCA_TEST_PG_PORT:-55432}"
  local bindir
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "==> installing postgresql (Debian package)" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null; } \
        || echo "!!! apt-get install postgresql failed" >&2
      bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    fi
  fi
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "!!! PostgreSQL is not installed: PostgreSQL tests will be skipped (or fail with CI=true)" >&2
    return 0
  fi
  export ORCA_TEST_PG_BIN="$bindir"

  # initdb and postgres refuse to run as root: as root the cluster belongs to the postgres user,
  # which must be able to reach its data dir (a home dir such as /root is usually closed to it).
  local as=() data="${ORCA_TEST_PG_DATA:-${XDG_CACHE_HOME:-$HOME/.cache}/orca/postgres}"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    as=(runuser -u postgres --)
    mkdir -p "$(dirname "$data")"
    if ! "${as[@]}" test -x "$(dirname "$data")"; then
      data="/var/tmp/orca-test/postgres"
      mkdir -p /var/tmp/orca-test && chmod 755 /var/tmp/orca-test
    fi
    mkdir -p "$data" && chown postgres: "$data" && chmod 700 "$data"
  else
    mkdir -p "$data" && chmod 700 "$data"
  fi

  if ! "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    if [ ! -f "$data/PG_VERSION" ]; then
      echo "==> initdb $data" >&2
      "${as[@]}" "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 >/dev/null \
        || { echo "!!! initdb failed" >&2; return 0; }
    fi
    echo "==> starting PostgreSQL on 127.0.0.1:$port" >&2
    "${as[@]}" "$bindir/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
      -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$data -c max_connections=400 -c shared_buffers=256MB" \
      start >/dev/null || { echo "!!! PostgreSQL did not start; see $data/server.log" >&2; return 0; }
  fi
  # The superuser connects over the socket in the data dir (trust); over TCP it needs a password.
  local psql=("${as[@]}" "$bindir/psql" -h "$data" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt)
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'orca'")" != 1 ]; then
    "${psql[@]}" -c "CREATE ROLE orca LOGIN PASSWORD 'orca' CREATEDB" || return 0
  fi
  if [ "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'orca'")" != 1 ]; then
    "${psql[@]}" -c "CREATE DATABASE orca OWNER orca" || return 0
  fi
  # Databases that earlier (interrupted) runs left behind: their names end in a UUIDv7, whose
  # first 48 bits are the creation time in ms; only those over 6 hours old go (a run of the
  # suite or the benchmark that is going on right now keeps its own).
  local db hex cutoff=$(( $(date +%s) * 1000 - 6 * 3600 * 1000 ))
  for db in $("${psql[@]}" -c "SELECT datname FROM pg_database WHERE datname ~ '^orca_(test|bench)_[0-9a-f]{32}$'"); do
    hex="${db: -32:12}"
    if [ "$((16#$hex))" -lt "$cutoff" ]; then
      "${psql[@]}" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
  done
  export ORCA_TEST_DATABASE_URL="postgres://orca:orca@127.0.0.1:$port/orca"
  echo "==> PostgreSQL ready: $ORCA_TEST_DATABASE_URL (data in $data)" >&2
}
_orca_pg_setup
unset -f _orca_pg_setup
