#!/usr/bin/env bash
# bench/ab.sh — measure a change: the same load scenarios against two builds
# of longpoll, in one invocation, taking turns, and one table of medians with
# the ratio after/before.
#
#   bash bench/ab.sh --before-rev main~3              # the tree against a commit
#   bash bench/ab.sh --before BIN --after BIN --runs 5
#
# Options:
#   --before-rev REV     build "before" from git revision REV (a worktree in /tmp)
#   --before BIN, --after BIN   use these binaries ("after" defaults to the tree)
#   --runs N             runs per build (default 3); the table shows medians
#   --scenarios "a b"    default: park fanout throughput batch single-session latency
#   --bench-args "..."   extra longpoll-bench flags
#   --before-server-args "...", --after-server-args "..."
#                        extra flags of each build's server; {datadir} is a
#                        fresh directory for every server started, e.g.
#                        --after-server-args "--data-dir {datadir}" compares
#                        the disk store with memory (--after = --before)
#   --no-pin             do not pin (by default the server runs on CPU 0 and
#                        the load tool on CPU 1, so they do not take each
#                        other's core: the ratios are what is compared)
#   --out DIR            where results and logs go
#
# Every server listens on 127.0.0.1 only; each scenario gets a fresh server;
# the builds alternate, and which goes first alternates from run to run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
SCENARIOS="park fanout throughput batch single-session latency"
BEFORE="" AFTER="" BEFORE_REV="" OUT="" EXTRA="" PIN=1 BEFORE_SRV="" AFTER_SRV=""
while (($#)); do
	case "$1" in
	--before) BEFORE=$2; shift ;;
	--after) AFTER=$2; shift ;;
	--before-rev) BEFORE_REV=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--scenarios) SCENARIOS=$2; shift ;;
	--bench-args) EXTRA=$2; shift ;;
	--before-server-args) BEFORE_SRV=$2; shift ;;
	--after-server-args) AFTER_SRV=$2; shift ;;
	--no-pin) PIN=0 ;;
	--out) OUT=$2; shift ;;
	-h | --help) sed -n '2,27p' "$0"; exit 0 ;;
	*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
OUT=${OUT:-${TMPDIR:-/tmp}/longpoll-ab-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/bin" "$OUT/logs"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

(cd "$ROOT/cmd/longpoll-bench" && go build -o "$OUT/bin/longpoll-bench" .)
if [ -z "$AFTER" ]; then
	(cd "$ROOT" && go build -o "$OUT/bin/after" ./cmd/longpoll)
	AFTER=$OUT/bin/after
fi
if [ -n "$BEFORE_REV" ]; then
	wt=$(mktemp -d)
	git -C "$ROOT" worktree add -q --detach "$wt" "$BEFORE_REV"
	(cd "$wt" && go build -o "$OUT/bin/before" ./cmd/longpoll)
	git -C "$ROOT" worktree remove --force "$wt"
	BEFORE=$OUT/bin/before
fi
[ -n "$BEFORE" ] || { echo "ab.sh: give --before BIN or --before-rev REV" >&2; exit 2; }

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
PARK_N=$(((NOFILE - 500) / 500 * 500))
((PARK_N > 20000)) && PARK_N=20000
ARGS=(--n "$PARK_N" --fanout-n 10000 --rounds 5 --sessions 1000 --publishers 32 --duration 10s
	--connects 10000 --source-ips 127.0.0.2-127.0.0.20)
read -r -a extra_args <<<"$EXTRA"
ARGS+=("${extra_args[@]}")
SRV_PIN=() TOOL_PIN=()
if ((PIN)) && command -v taskset >/dev/null && (($(nproc) >= 2)); then
	SRV_PIN=(taskset -c 0) TOOL_PIN=(taskset -c 1)
fi

PID=""
stop() {
	[ -n "$PID" ] || return 0
	kill -TERM "$PID" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$PID" 2>/dev/null || true
	wait "$PID" 2>/dev/null || true
	PID=""
}
trap stop EXIT
run() { # name binary scenario run server-args
	local name=$1 bin=$2 scen=$3 n=$4 srv=$5 port=18470
	local dd="$OUT/data/$name-$scen-$n"
	local srv_args=()
	read -r -a srv_args <<<"${srv//\{datadir\}/$dd}"
	rm -rf "$dd"
	"${SRV_PIN[@]}" "$bin" --addr "127.0.0.1:$port" --poll-timeout 30s --max-poll-timeout 120s --session-ttl 5m \
		--heartbeat-interval 0 --max-mailbox 1000 --log-level warn "${srv_args[@]}" >"$OUT/logs/$name-$scen-$n.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null && break
		sleep 0.1
	done
	"${TOOL_PIN[@]}" "$OUT/bin/longpoll-bench" --target longpoll --url "http://127.0.0.1:$port" --scenario "$scen" \
		--server-pid "$PID" --label "run$n" --json-out "$OUT/$name.jsonl" "${ARGS[@]}" -q \
		2>>"$OUT/logs/bench.log" >/dev/null || log "$name $scen reported errors"
	stop
	rm -rf "$dd"
}
{
	echo "date:    $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, pinned: $([ ${#SRV_PIN[@]} -gt 0 ] && echo 'server CPU 0, tool CPU 1' || echo no)"
	echo "before:  ${BEFORE_REV:-$BEFORE}"
	echo "after:   $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && [ -n "$(git status --porcelain)" ] && echo ' (dirty tree)')"
	echo "args:    ${ARGS[*]}"
	[ -z "$BEFORE_SRV$AFTER_SRV" ] || echo "server:  before: ${BEFORE_SRV:-(none)}; after: ${AFTER_SRV:-(none)}"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
for n in $(seq "$RUNS"); do
	for scen in $SCENARIOS; do
		if ((n % 2)); then order=(before after); else order=(after before); fi
		for name in "${order[@]}"; do
			log "run $n/$RUNS: $scen on $name"
			if [ "$name" = before ]; then run before "$BEFORE" "$scen" "$n" "$BEFORE_SRV"; else run after "$AFTER" "$scen" "$n" "$AFTER_SRV"; fi
		done
	done
done
{
	cat "$OUT/machine.txt"
	echo
	"$OUT/bin/longpoll-bench" ab "$OUT/before.jsonl" "$OUT/after.jsonl"
} | tee "$OUT/table.md"
echo "results: $OUT"
