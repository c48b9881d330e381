# Agent CLIs for the end-to-end tests: the real Claude Code and Codex binaries, taken from the
# PyPI wheels that bundle them (npm is not reachable here), in a venv under the cache dir.
# Sourced by scripts/test.sh; idempotent. Exports ORCA_TEST_CLAUDE_BIN and ORCA_TEST_CODEX_BIN.
# Without them the agent tests print "SKIPPED (...)" (and fail when CI=true).
_orca_agents_setup() {
  local venv="${XDG_CACHE_HOME:-$HOME/.cache}/orca/venv"
  local claude_pkg="claude-agent-sdk==0.2.189" codex_pkg="openai-codex-cli-bin==0.163.0"
  local py
  py="$(command -v python3 || true)"
  if [ -z "$py" ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
      py="$(command -v python3 || true)"
    fi
  fi
  if [ -z "$py" ]; then
    echo "!!! python3 missing: cannot install the agent CLIs (agent tests will be skipped)" >&2
    return 0
  fi
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      fi
      rm -rf "$venv"
      "$py" -m venv "$venv" || { echo "!!! cannot create $venv" >&2; return 0; }
    fi
  fi
  find_bins() {
    ORCA_TEST_CLAUDE_BIN="$(find "$venv/lib" -path '*claude_agent_sdk/_bundled/claude' -type f 2>/dev/null | head -n1)"
    ORCA_TEST_CODEX_BIN="$(find "$venv/lib" -path '*codex_cli_bin/bin/codex' -type f 2>/dev/null | head -n1)"
  }
  find_bins
  if [ -z "$ORCA_TEST_CLAUDE_BIN" ] || [ -z "$ORCA_TEST_CODEX_BIN" ]; then
    echo "==> installing $claude_pkg $codex_pkg into $venv (about 320 MB, once)" >&2
    # --no-deps: only the bundled binaries are used, not the Python SDKs around them.
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$claude_pkg" "$codex_pkg" >&2 \
      || echo "!!! pip install of the agent CLIs failed (agent tests will be skipped)" >&2
    find_bins
  fi
  unset -f find_bins
  if [ -n "$ORCA_TEST_CLAUDE_BIN" ]; then chmod +x "$ORCA_TEST_CLAUDE_BIN"; export ORCA_TEST_CLAUDE_BIN; else unset ORCA_TEST_CLAUDE_BIN; fi
  if [ -n "$ORCA_TEST_CODEX_BIN" ]; then chmod +x "$ORCA_TEST_CODEX_BIN"; export ORCA_TEST_CODEX_BIN; else unset ORCA_TEST_CODEX_BIN; fi
  echo "==> agents: claude=${ORCA_TEST_CLAUDE_BIN:-missing} codex=${ORCA_TEST_CODEX_BIN:-missing}" >&2
}
_orca_agents_setup
unset -f _orca_agents_setup
