#!/usr/bin/env bash
# Bayeux tests: the unmodified npm clients cometd (with
# cometd-nodejs-client) and faye, forced to long-polling, against the real
# binary. Installs the npm packages (package-lock.json) when missing,
# builds the server, runs `node --test`. Exit status: the tests'.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
export PATH="$PATH:/usr/local/go/bin"

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "run.sh: Node.js 20 or newer is required" >&2
  exit 1
fi

if [ ! -d "$HERE/node_modules/cometd" ] || [ ! -d "$HERE/node_modules/faye" ] || [ ! -d "$HERE/node_modules/cometd-nodejs-client" ]; then
  echo "run.sh: installing the npm CometD and Faye clients"
  (cd "$HERE" && npm ci --no-audit --no-fund </dev/null)
fi

BIN_DIR="$(mktemp -d)"
trap 'rm -rf "$BIN_DIR"' EXIT
echo "run.sh: building the server"
(cd "$ROOT" && go build -o "$BIN_DIR/longpoll" ./cmd/longpoll)
export LONGPOLL_BIN="$BIN_DIR/longpoll"

cd "$HERE"
# Every wait inside the tests is bounded; this is the outer bound for the whole run.
timeout --kill-after=10s 240s node --test --test-reporter=spec --test-concurrency=1 \
  --test-timeout=90000 --test-force-exit bayeux.test.mjs </dev/null
