#!/usr/bin/env bash
# Browser tests for the console (public/index.html), the JS client
# (public/longpoll.js) and the browser builds of the CometD and Faye
# clients against /bayeux: installs Debian's chromium and playwright-core when
# missing, builds the server, runs `node --test`. Exit status: the tests'.
# Screenshots land in test/browser/artifacts/.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
export PATH="$PATH:/usr/local/go/bin"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x "$CHROMIUM" ]; then
  echo "run.sh: $CHROMIUM missing, installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update </dev/null
  as_root apt-get install -y chromium </dev/null
fi

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "run.sh: Node.js 20 or newer is required" >&2
  exit 1
fi

if [ ! -d "$HERE/node_modules/playwright-core" ] || [ ! -d "$HERE/node_modules/faye" ] || [ ! -d "$HERE/node_modules/cometd" ]; then
  echo "run.sh: installing playwright-core and the Bayeux clients' browser builds"
  if [ -f "$HERE/package-lock.json" ]; then
    (cd "$HERE" && npm ci --no-audit --no-fund </dev/null)
  else
    (cd "$HERE" && npm install --no-audit --no-fund </dev/null)
  fi
fi

BIN_DIR="$(mktemp -d)"
trap 'rm -rf "$BIN_DIR"' EXIT
echo "run.sh: building the server"
(cd "$ROOT" && go build -o "$BIN_DIR/longpoll" ./cmd/longpoll)
export LONGPOLL_BIN="$BIN_DIR/longpoll"
export CHROMIUM_PATH="$CHROMIUM"

cd "$HERE"
# Every wait inside the tests is bounded; this is the outer bound for the whole run.
timeout --kill-after=10s 280s node --test --test-reporter=spec --test-concurrency=1 \
  --test-timeout=120000 --test-force-exit client.test.mjs console.test.mjs bayeux.test.mjs </dev/null
