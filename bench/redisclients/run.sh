#!/usr/bin/env bash
# bench/redisclients/run.sh — go-redis/v9 against rueidis on longpoll's
# Redis workload, pinned: a private redis-server on CPU 0 (127.0.0.1:16379,
# no persistence), the benchmark on CPU 1. Extra flags go to the benchmark
# (-rounds -dur -c -sessions -batch -extras). Installs Debian's
# redis-server when missing (as root).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if ! command -v redis-server >/dev/null; then
	[ "$(id -u)" = 0 ] || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
dir=$(mktemp -d)
redis-cli -p 16379 shutdown nosave 2>/dev/null || true
taskset -c 0 redis-server --port 16379 --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
trap 'redis-cli -p 16379 shutdown nosave >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p 16379 ping >/dev/null 2>&1 && break; sleep 0.1; done
go build -o "$dir/redisclients" .
taskset -c 1 timeout 900 "$dir/redisclients" -rounds 3 -dur 5s "$@"
