# Docker and sandboxes for the tests. Sourced by scripts/test.sh; idempotent.
# - bubblewrap (Debian package) for the local runner's sandbox tests;
# - with a reachable Docker engine: the Debian base image, built offline once
#   (scripts/build-base-image.sh: debootstrap + docker import, reused afterwards), and the test
#   worker image orca-worker:test from the current worker binary when one is built (the tests
#   rebuild it themselves whenever the binary changed; unchanged layers come from the cache).
# Exports ORCA_TEST_WORKER_IMAGE. Without an engine the Docker tests print "SKIPPED (...)"
# (and fail when CI=true).
_orca_docker_setup() {
  local need=()
  command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "==> installing ${need[*]} (Debian packages)" >&2
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; } \
        || echo "!!! apt-get install ${need[*]} failed" >&2
    else
      echo "!!! missing: ${need[*]} (install them; the tests that need them will be skipped)" >&2
    fi
  fi
  export ORCA_TEST_WORKER_IMAGE="${ORCA_TEST_WORKER_IMAGE:-orca-worker:test}"
  if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "!!! no reachable Docker engine: Docker tests will be skipped (or fail with CI=true)" >&2
    return 0
  fi
  bash scripts/build-base-image.sh || { echo "!!! could not build the base image" >&2; return 0; }
  local bin="${CARGO_TARGET_DIR:-target}/debug/orca-worker"
  if [ -x "$bin" ]; then
    bash scripts/build-worker-image.sh --tag "$ORCA_TEST_WORKER_IMAGE" --worker-bin "$bin" \
      || echo "!!! could not build $ORCA_TEST_WORKER_IMAGE (the Docker tests will try again)" >&2
  fi
}
_orca_docker_setup
unset -f _orca_docker_setup
