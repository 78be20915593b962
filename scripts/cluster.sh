#!/usr/bin/env bash
# scripts/cluster.sh — try a longpoll cluster on this machine: one
# redis-server and three longpoll nodes on loopback ports, sharing their
# state in it. Any node serves any client: connect on one, poll on
# another, push on the third. Ctrl-C (or SIGTERM) stops them all.
#
#   bash scripts/cluster.sh                 # redis on 6379, nodes on 8081-8083
#   REDIS_PORT=6390 BASE_PORT=9000 bash scripts/cluster.sh
#   bash scripts/cluster.sh --publish-key K # extra flags go to every node
#
# Installs Debian's redis-server when missing (apt-get, as root). Redis
# runs with AOF and appendfsync always in a temporary directory, so a 202
# means the message is on disk (README "Running a cluster").
set -euo pipefail
cd "$(dirname "$0")/.."

REDIS_PORT=${REDIS_PORT:-6379}
BASE_PORT=${BASE_PORT:-8081}
NODES=${NODES:-3}

if ! command -v redis-server >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		echo "installing redis-server (apt-get)…" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
		service redis-server stop >/dev/null 2>&1 || true # the package's own, on 6379
	else
		echo "cluster.sh: redis-server is missing; install it (apt-get install redis-server) or run as root" >&2
		exit 1
	fi
fi

DIR=$(mktemp -d "${TMPDIR:-/tmp}/longpoll-cluster.XXXXXX")
pids=()
stop() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	echo "stopped; logs and Redis data were in $DIR" >&2
}
trap stop EXIT INT TERM

go build -o "$DIR/longpoll" ./cmd/longpoll

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes --appendfsync always \
	--save "" >"$DIR/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
	sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null || { echo "redis-server did not start: $DIR/redis.log" >&2; exit 1; }

for i in $(seq 0 $((NODES - 1))); do
	port=$((BASE_PORT + i))
	"$DIR/longpoll" --addr "127.0.0.1:$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" "$@" >"$DIR/node$i.log" 2>&1 &
	pids+=($!)
done
for i in $(seq 0 $((NODES - 1))); do
	url=http://127.0.0.1:$((BASE_PORT + i))
	for _ in $(seq 100); do
		curl -fs "$url/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -fs "$url/healthz" >/dev/null || { echo "node $i did not start: $DIR/node$i.log" >&2; exit 1; }
done

echo "redis:  redis://127.0.0.1:$REDIS_PORT (AOF in $DIR)"
for i in $(seq 0 $((NODES - 1))); do
	echo "node $i: http://127.0.0.1:$((BASE_PORT + i))   (log: $DIR/node$i.log)"
done
cat <<EOF

Try it:
  sid=\$(curl -s -H 'Content-Type: application/json' -d '{"deviceId":"lamp"}' http://127.0.0.1:$BASE_PORT/connect | sed 's/.*"sessionId":"\([^"]*\)".*/\1/')
  curl -s "http://127.0.0.1:$((BASE_PORT + 1))/data?sessionId=\$sid&cursor=0" &
  curl -s -H 'Content-Type: application/json' -d '{"to":{"deviceId":"lamp"},"data":"hi"}' http://127.0.0.1:$((BASE_PORT + NODES - 1))/push

Ctrl-C stops everything.
EOF
wait
