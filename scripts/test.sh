#!/usr/bin/env bash
# Sets up everything the test suite needs (idempotently), then runs the whole suite.
# This is the README's test command; CI runs it through .ci/run with CI=true.
#
# Set-up steps live in scripts/setup/*.sh and run in name order; each one is idempotent and
# either makes its engine available or, outside CI, says loudly that it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build artefacts are kept outside the clone so a fresh clone reuses them (CI runs in a new clone).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/orca/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

for step in scripts/setup/*.sh; do
  [ -e "$step" ] || continue
  echo "==> setup: $step" >&2
  # shellcheck disable=SC1090
  source "$step"
done

echo "==> cargo build --workspace --bins" >&2
cargo build --workspace --bins --locked
echo "==> cargo test --workspace" >&2
cargo test --workspace --locked --no-fail-fast -- --test-threads="${ORCA_TEST_THREADS:-4}"
# The server's API, lifecycle and webhook suites once more, on PostgreSQL + Redis (issue #5):
# the same tests prove the same behaviour on both stacks. With CI=true a missing engine fails.
if [ -n "${ORCA_TEST_DATABASE_URL:-}" ] && [ -n "${ORCA_TEST_REDIS_URL:-}" ] || [ "${CI:-}" = true ]; then
  echo "==> cargo test -p orca-server (api, lifecycle, webhooks) with ORCA_TEST_BACKENDS=postgres-redis" >&2
  ORCA_TEST_BACKENDS=postgres-redis cargo test -p orca-server --locked --test api --test lifecycle --test webhooks \
    -- --test-threads="${ORCA_TEST_THREADS:-4}"
else
  echo "!!!!! SKIPPED: the API/lifecycle suites on PostgreSQL + Redis (ORCA_TEST_DATABASE_URL / ORCA_TEST_REDIS_URL unset)" >&2
fi
