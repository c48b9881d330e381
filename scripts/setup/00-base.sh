# Base tools: git (the worker clones with it; tests serve repositories with `git daemon`).
# Sourced by scripts/test.sh.
need_apt=()
command -v git >/dev/null 2>&1 || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "!!! missing: ${need_apt[*]} (install them; tests that need them will fail)" >&2
  fi
fi
