#!/usr/bin/env bash
# bench/compare.sh — run the same load scenarios against longpoll, Nchan and
# jcuga/golongpoll on this machine, in one invocation, and print one table.
#
#   bash bench/compare.sh            # full run, ~4 min per --runs (default 1)
#   bash bench/compare.sh --quick    # small N, short T: under 3 minutes
#
# Options:
#   --quick              small sizes, 3 s phases, 1 run
#   --runs N             repeat every scenario N times; the table shows medians
#                        (default 1; --runs 5 takes about 20 minutes)
#   --systems "a b"      subset of: longpoll nchan golongpoll
#   --scenarios "a b"    subset of: park fanout throughput batch single-session
#                        slow-consumer latency connect
#   --out DIR            where logs, results.jsonl and table.md go
#   --bench-args "..."   extra longpoll-bench flags, e.g. "--duration 20s"
#
# Every server listens on 127.0.0.1 only; the load tool refuses any other
# address. Each scenario gets a freshly started server, systems take turns
# (rotating the order every run) so that a noisy neighbour hits all of them.
# Installs nginx-light + libnginx-mod-nchan with apt-get when missing (root).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
RUNS=1
SYSTEMS="longpoll nchan golongpoll"
SCENARIOS="park fanout throughput batch single-session slow-consumer latency connect"
OUT=""
EXTRA=""

while (($#)); do
	case "$1" in
	--quick) QUICK=1 ;;
	--runs) RUNS=$2; shift ;;
	--systems) SYSTEMS=$2; shift ;;
	--scenarios) SCENARIOS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--bench-args) EXTRA=$2; shift ;;
	-h | --help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-${TMPDIR:-/tmp}/longpoll-compare-$STAMP}
mkdir -p "$OUT/bin" "$OUT/logs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
drop_system() { # drop_system NAME: remove one word from $SYSTEMS
	local out="" s
	for s in $SYSTEMS; do [ "$s" = "$1" ] || out+="$s "; done
	SYSTEMS=$out
}

# ---------------------------------------------------------------- install
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
	if [ "$(id -u)" = 0 ]; then
		log "installing ${need[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${need[@]}" >"$OUT/logs/apt.log" 2>&1
	else
		log "missing ${need[*]} and not root: Nchan is skipped"
		drop_system nchan
	fi
fi

# ---------------------------------------------------------------- build
log "building into $OUT/bin"
(cd "$ROOT/cmd/longpoll-bench" && go build -o "$OUT/bin/longpoll-bench" .)
(cd "$ROOT/bench/peers/golongpoll" && go build -o "$OUT/bin/golongpoll-peer" .)
if [[ " $SYSTEMS " == *" longpoll "* ]]; then
	if ! (cd "$ROOT" && go build -o "$OUT/bin/longpoll" ./cmd/longpoll) 2>"$OUT/logs/build-longpoll.log"; then
		log "longpoll does not build (see $OUT/logs/build-longpoll.log): skipped"
		drop_system longpoll
	fi
fi
BENCH=$OUT/bin/longpoll-bench

# ---------------------------------------------------------------- limits
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
# A parked poll costs one descriptor in the server and one in this client.
PARK_N=$(((NOFILE - 500) / 500 * 500))
((PARK_N > 20000)) && PARK_N=20000

if ((QUICK)); then
	ARGS=(--n 2000 --fanout-n 1000 --rounds 3 --sessions 200 --duration 3s --connects 2000 --settle 1s)
else
	ARGS=(--n "$PARK_N" --fanout-n 10000 --rounds 5 --sessions 1000 --publishers 32 --duration 10s --connects 10000)
fi
ARGS+=(--source-ips 127.0.0.2-127.0.0.20)
read -r -a extra_args <<<"$EXTRA"
ARGS+=("${extra_args[@]}")

# ---------------------------------------------------------------- servers
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
	local p=$1
	while ! port_free "$p"; do p=$((p + 1)); done
	echo "$p"
}

SERVER_PID=""
PIDS=""
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
	SERVER_PID=""
}
trap stop_server EXIT

wait_healthy() {
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
		kill -0 "$SERVER_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

start_server() { # system port logfile
	local sys=$1 port=$2 logf=$3
	case "$sys" in
	longpoll)
		"$OUT/bin/longpoll" --addr "127.0.0.1:$port" --poll-timeout 30s --max-poll-timeout 120s \
			--session-ttl 5m --heartbeat-interval 0 --max-mailbox 1000 --log-level warn >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	nchan)
		local d=$OUT/nginx-$port
		mkdir -p "$d"
		sed -e "s#@PORT@#$port#g; s#@DIR@#$d#g; s#@NOFILE@#$NOFILE#g" \
			"$ROOT/bench/nchan/nginx.conf.tmpl" >"$d/nginx.conf"
		nginx -c "$d/nginx.conf" >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	golongpoll)
		"$OUT/bin/golongpoll-peer" --addr "127.0.0.1:$port" --max-timeout 120 >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	esac
	wait_healthy "$port" || { log "$sys did not become healthy (log: $logf)"; stop_server; return 1; }
	PIDS=$SERVER_PID
	if [ "$sys" = nchan ]; then # sum master and worker
		PIDS="$SERVER_PID,$(pgrep -P "$SERVER_PID" | paste -sd, -)"
	fi
}

# ---------------------------------------------------------------- machine
{
	echo "date:     $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "machine:  $(nproc) cores ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/{print $2}') GiB, $(uname -sr)"
	echo "go:       $(go version | awk '{print $3}')"
	echo "longpoll: $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo uncommitted)$(cd "$ROOT" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
	echo "nchan:    $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null) on nginx $(dpkg-query -W -f '${Version}' nginx-light 2>/dev/null), 1 worker"
	echo "golongpoll: $(awk '/jcuga\/golongpoll /{print $NF}' "$ROOT/bench/peers/golongpoll/go.mod")"
	echo "limits:   ulimit -n $NOFILE, park N $PARK_N"
	echo "mode:     $([ "$QUICK" = 1 ] && echo quick || echo full), $RUNS run(s); bench args: ${ARGS[*]}"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- run
read -r -a sys_list <<<"$SYSTEMS"
declare -A PORT_BASE=([longpoll]=18480 [nchan]=18481 [golongpoll]=18482)
start_time=$(date +%s)
for run in $(seq "$RUNS"); do
	# rotate the order of systems each run
	n=${#sys_list[@]}
	order=()
	for i in $(seq 0 $((n - 1))); do order+=("${sys_list[$(((i + run - 1) % n))]}"); done
	for scen in $SCENARIOS; do
		for sys in "${order[@]}"; do
			port=$(pick_port "${PORT_BASE[$sys]}")
			logf=$OUT/logs/$sys-$scen-$run.log
			log "run $run/$RUNS: $scen on $sys (127.0.0.1:$port)"
			start_server "$sys" "$port" "$logf" || continue
			"$BENCH" --target "$sys" --url "http://127.0.0.1:$port" --scenario "$scen" \
				--server-pid "$PIDS" --label "run$run" --json-out "$RESULTS" "${ARGS[@]}" \
				2>>"$OUT/logs/bench.log" || log "$sys $scen reported errors (see results.jsonl)"
			stop_server
		done
	done
done
log "done in $(($(date +%s) - start_time)) s"

{
	cat "$OUT/machine.txt"
	echo
	"$BENCH" table "$RESULTS"
} >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
echo "results: $RESULTS"
echo "table:   $OUT/table.md"
