#!/usr/bin/env bash
# bench/durable.sh — the figures of a server with --data-dir that the load
# scenarios do not give (BENCHMARKS.md, "Durable mode"):
#
#   restart  fill a data directory with 10,000 sessions and 100,000
#            unacknowledged messages (longpoll-bench --scenario fill), then
#            restart the server on it, after kill -9 and after a graceful
#            stop, RUNS times each: the time from starting the process to its
#            first 200 from /healthz, and what the server logs it read back.
#   size     push and deliver (throughput scenario: every message polled and
#            acknowledged) until 1,000,000 messages have gone through one
#            server, then the data directory's size: while it runs, after a
#            graceful stop, and after a restart on it.
#
#   bash bench/durable.sh [--runs N] [--messages N] [--out DIR] [restart] [size]
#
# The server runs on CPU 0 and the load tool on CPU 1 (taskset), every
# address is 127.0.0.1, every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3 MESSAGES=1000000 OUT="" WHAT=()
while (($#)); do
	case "$1" in
	--runs) RUNS=$2; shift ;;
	--messages) MESSAGES=$2; shift ;;
	--out) OUT=$2; shift ;;
	restart | size) WHAT+=("$1") ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "durable.sh: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done
((${#WHAT[@]})) || WHAT=(restart size)
OUT=${OUT:-${TMPDIR:-/tmp}/longpoll-durable-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/bin" "$OUT/logs"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
(cd "$ROOT" && go build -o "$OUT/bin/longpoll" ./cmd/longpoll)
(cd "$ROOT/cmd/longpoll-bench" && go build -o "$OUT/bin/longpoll-bench" .)
SRV_PIN=() TOOL_PIN=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then SRV_PIN=(taskset -c 0) TOOL_PIN=(taskset -c 1); fi
PORT=18471 URL=http://127.0.0.1:18471 DATA=$OUT/data PID=""

start() { # log-name: start the server on $DATA and wait for /healthz; sets START_MS
	local t0 t1
	t0=$(date +%s%N)
	"${SRV_PIN[@]}" "$OUT/bin/longpoll" --addr "127.0.0.1:$PORT" --data-dir "$DATA" --heartbeat-interval 0 \
		--max-mailbox 1000 --session-ttl 1h >>"$OUT/logs/$1.log" 2>&1 &
	PID=$!
	for _ in $(seq 3000); do
		curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
		kill -0 "$PID" 2>/dev/null || { echo "durable.sh: the server exited; see $OUT/logs/$1.log" >&2; exit 1; }
		sleep 0.01
	done
	t1=$(date +%s%N)
	curl -fsS -o /dev/null "$URL/healthz" || { echo "durable.sh: no /healthz within 30 s" >&2; exit 1; }
	START_MS=$(((t1 - t0) / 1000000))
}
stop() { # signal
	[ -n "$PID" ] || return 0
	kill "-$1" "$PID" 2>/dev/null || true
	for _ in $(seq 150); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=""
}
trap 'stop KILL' EXIT
bench() { "${TOOL_PIN[@]}" "$OUT/bin/longpoll-bench" --url "$URL" -q "$@"; }

{
	echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r), data on $(df -hT "$OUT" | awk 'NR==2 {print $2, $1}')"
	echo "commit:  $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && [ -n "$(git status --porcelain)" ] && echo ' (dirty tree)')"
} | tee "$OUT/summary.txt" >&2

for what in "${WHAT[@]}"; do
	case $what in
	restart)
		rm -rf "$DATA"
		start fill
		log "filling: 10,000 sessions, 100,000 messages"
		bench --scenario fill --fill-sessions 10000 --fill-messages 100000 --batch-size 100 --publishers 8 --setup-timeout 10m | tee -a "$OUT/summary.txt"
		for n in $(seq "$RUNS"); do
			for how in KILL TERM; do
				stop "$how"
				start "restart-$how-$n"
				read_back=$(grep -o 'data directory opened.*' "$OUT/logs/restart-$how-$n.log" | tail -1 || true)
				echo "restart after SIG$how, run $n: ${START_MS} ms to /healthz 200; $read_back" | tee -a "$OUT/summary.txt"
			done
		done
		stop TERM
		;;
	size)
		rm -rf "$DATA"
		start size
		log "pushing and delivering $MESSAGES messages"
		total=0
		for _ in $(seq 1000); do
			bench --scenario throughput --sessions 1000 --publishers 32 --duration 20s >>"$OUT/logs/size-bench.txt" || true
			total=$(curl -fsS "$URL/metrics" | awk '/^longpoll_pushes_total/ {s += $2} END {printf "%d", s}')
			log "$total messages so far; data directory $(du -sh "$DATA" | cut -f1)"
			((total >= MESSAGES)) && break
		done
		running=$(du -sb "$DATA" | cut -f1)
		stop TERM
		stopped=$(du -sb "$DATA" | cut -f1)
		start size-reopen
		stop TERM
		reopened=$(du -sb "$DATA" | cut -f1)
		echo "size after $total messages pushed, delivered and acknowledged: $((running / 1024)) KiB while running, $((stopped / 1024)) KiB after a graceful stop, $((reopened / 1024)) KiB after a restart on it" | tee -a "$OUT/summary.txt"
		;;
	esac
done
echo "results: $OUT" >&2
