#!/usr/bin/env bash
# Builds the worker image from an already-built `orca-worker` binary, offline: a small staging
# context (the binary, optionally agent CLIs) + docker/Dockerfile.worker, FROM the base image
# of scripts/build-base-image.sh (built first when missing).
#
# Idempotent: the image carries the binary's sha256 as the label `orca.worker-sha256`; when the
# tagged image already has the same binary (and agent set), nothing is rebuilt. Concurrent
# callers (parallel test binaries) serialize on a lock file.
#
# Usage: scripts/build-worker-image.sh [--tag orca-worker:test] [--worker-bin PATH] [--with-agents]
#   --worker-bin  default: $CARGO_TARGET_DIR/debug/orca-worker (CARGO_TARGET_DIR defaults to
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/orca/target, as in scripts/test.sh)
#   --with-agents copy the Claude Code and Codex binaries of the agents venv
#                 (${XDG_CACHE_HOME:-$HOME/.cache}/orca/venv, scripts/setup/30-agents.sh), ~700 MB
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/orca"
tag="orca-worker:test"
bin="${CARGO_TARGET_DIR:-$cache_root/target}/debug/orca-worker"
agents=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --worker-bin) bin="$2"; shift 2 ;;
    --with-agents) agents=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "!!! worker binary $bin is missing; run cargo build -p orca-worker" >&2; exit 1; }

mkdir -p "$cache_root"
exec 9>"$cache_root/worker-image.lock"
flock -w 600 9 || { echo "!!! timed out waiting for $cache_root/worker-image.lock" >&2; exit 1; }

sum="$(sha256sum "$bin" | cut -d' ' -f1)"
want="$sum/agents=$agents"
have="$(docker image inspect --format '{{index .Config.Labels "orca.worker-sha256"}}/agents={{index .Config.Labels "orca.worker-agents"}}' "$tag" 2>/dev/null || true)"
if [ "$have" = "$want" ]; then
  echo "==> worker image $tag is up to date" >&2
  exit 0
fi

bash "$repo/scripts/build-base-image.sh"

ctx="$(mktemp -d "$cache_root/worker-context.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/agents"
# Debug info is not needed inside the image; keep the context small.
if command -v objcopy >/dev/null 2>&1; then
  objcopy --strip-debug "$bin" "$ctx/orca-worker"
else
  cp "$bin" "$ctx/orca-worker"
fi
if [ "$agents" = 1 ]; then
  venv="$cache_root/venv"
  claude="$(find "$venv/lib" -path '*claude_agent_sdk/_bundled/claude' -type f 2>/dev/null | head -n1)"
  codex="$(find "$venv/lib" -path '*codex_cli_bin/bin/codex' -type f 2>/dev/null | head -n1)"
  [ -n "$claude" ] && cp "$claude" "$ctx/agents/claude" && chmod 0755 "$ctx/agents/claude"
  [ -n "$codex" ] && cp "$codex" "$ctx/agents/codex" && chmod 0755 "$ctx/agents/codex"
  [ -n "$claude$codex" ] || echo "!!! no agent binaries under $venv; building without them" >&2
fi
old_id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
echo "==> docker build $tag (worker $bin)" >&2
# The legacy builder needs no buildx plugin and no network; its deprecation notice is noise,
# so stderr is shown only when the build fails.
if ! DOCKER_BUILDKIT=0 docker build --quiet \
  -f "$repo/docker/Dockerfile.worker" \
  --build-arg WORKER_BIN=orca-worker --build-arg AGENTS_DIR=agents \
  --label "orca.worker-sha256=$sum" --label "orca.worker-agents=$agents" \
  -t "$tag" "$ctx" >/dev/null 2>"$ctx/build.err"; then
  cat "$ctx/build.err" >&2
  exit 1
fi
# The image this one replaces is now untagged: remove it (kept while a container uses it).
if [ -n "$old_id" ] && [ "$old_id" != "$(docker image inspect --format '{{.Id}}' "$tag")" ]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "==> built $tag" >&2
