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

# The same clients against a server whose state is in Redis (--redis-url),
# when redis-server is installed (scripts/test.sh installs it): the two
# walk-through tests, each on a fresh deployment name in one redis-server.
if command -v redis-server >/dev/null; then
  PORT=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  RDIR="$(mktemp -d)"
  redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RDIR" >/dev/null &
  RPID=$!
  trap 'kill $RPID 2>/dev/null; rm -rf "$BIN_DIR" "$RDIR"' EXIT
  for _ in $(seq 100); do (echo PING; sleep 0.05) | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT && cat >&3 && head -c 5 <&3" 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  echo "run.sh: again with the server's state in Redis (127.0.0.1:$PORT)"
  LONGPOLL_EXTRA_ARGS="--redis-url redis://127.0.0.1:$PORT" \
    timeout --kill-after=10s 120s node --test --test-reporter=spec --test-concurrency=1 \
    --test-timeout=90000 --test-force-exit --test-name-pattern '^(CometD|Faye): handshake' bayeux.test.mjs </dev/null
fi
