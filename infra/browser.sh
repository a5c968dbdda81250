#!/usr/bin/env bash
# Headless Chromium for the UI check of the flow tests (Debian's `chromium` package).
#
#   infra/browser.sh install        # apt-get install chromium, unless it is there already (needs root)
#   infra/browser.sh dump-dom URL   # print the DOM of URL after its scripts ran (a fresh profile each time)
#
# LABELHOUSE_CHROMIUM names another binary; LABELHOUSE_BROWSER_BUDGET_MS is how long (virtual time) the
# page's scripts get to fetch and render before the DOM is printed (default 20000).
set -euo pipefail

chromium_bin() {
  local bin="${LABELHOUSE_CHROMIUM:-}"
  if [[ -z "$bin" ]]; then
    bin="$(command -v chromium || command -v chromium-browser || true)"
  fi
  if [[ -z "$bin" ]]; then
    echo "chromium is not installed: run 'infra/browser.sh install' (as root) or set LABELHOUSE_CHROMIUM" >&2
    exit 3
  fi
  echo "$bin"
}

case "${1:-}" in
  install)
    if command -v chromium >/dev/null 2>&1; then
      echo "chromium is installed: $(command -v chromium)"
      exit 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
      echo "installing chromium needs root: run 'sudo infra/browser.sh install'" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    echo "installed $(command -v chromium)"
    ;;
  dump-dom)
    url="${2:?usage: infra/browser.sh dump-dom URL}"
    bin="$(chromium_bin)"
    profile="$(mktemp -d "${TMPDIR:-/tmp}/labelhouse-chromium.XXXXXX")"
    trap 'rm -rf "$profile"' EXIT
    "$bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --disable-dev-shm-usage --user-data-dir="$profile" \
      --virtual-time-budget="${LABELHOUSE_BROWSER_BUDGET_MS:-20000}" \
      --dump-dom "$url" 2>/dev/null
    ;;
  *)
    echo "usage: infra/browser.sh install | dump-dom URL" >&2
    exit 2
    ;;
esac
