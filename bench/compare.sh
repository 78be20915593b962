#!/usr/bin/env bash
# bench/compare.sh — run the same load scenarios against longpoll, Nchan and
# jcuga/golongpoll on this machine, in one invocation, and print one table
# (and a second one for the Redis systems, longpoll-redis and nchan-redis).
#
#   bash bench/compare.sh            # full run, ~4 min per --runs (default 1)
#   bash bench/compare.sh --quick    # small N, short T: under 3 minutes
#   bash bench/compare.sh --systems "longpoll-redis nchan-redis"   # Redis storage
#
# Options:
#   --quick              small sizes, 3 s phases, 1 run
#   --runs N             repeat every scenario N times; the table shows medians
#                        (default 1; --runs 5 takes about 20 minutes)
#   --systems "a b"      subset of: longpoll nchan golongpoll (the default), and
#                        longpoll-redis nchan-redis (run only when named)
#   --scenarios "a b"    subset of: park fanout throughput batch single-session
#                        slow-consumer latency connect
#   --nodes N            longpoll-redis: N longpoll nodes on the one Redis
#                        (default 1, or $NODES); the load tool gets all their
#                        URLs: a session polls on node i%N and is pushed to on
#                        node (i+1)%N, so with N > 1 every delivery crosses nodes
#   --pin                server side (the server, every node, and its
#                        redis-server) on CPU 0, the load tool on CPU 1, as
#                        bench/ab.sh does; for every system alike. Off by
#                        default: nothing is pinned
#   --out DIR            where logs, results.jsonl and table.md go
#   --bench-args "..."   extra longpoll-bench flags, e.g. "--duration 20s"
#
# The Redis systems: longpoll-redis is longpoll with the flags the longpoll
# system gets plus --redis-url; nchan-redis is the nchan config with Nchan's
# Redis storage in distributed mode (bench/nchan/redis.conf.tmpl). Each
# scenario run gets its own fresh redis-server (127.0.0.1, a free port from
# 18500, --save "" --appendonly no, a temporary --dir), stopped with the
# server. Their results go to results-redis.jsonl and a table of their own
# (the load tool's table has one column per protocol: longpoll, Nchan).
# server_cpu, server RSS and KiB per parked poll of a Redis system count the
# node(s) or nginx master+worker AND redis-server.
#
# Every server listens on 127.0.0.1 only; the load tool refuses any other
# address. Each scenario gets a freshly started server, systems take turns
# (rotating the order every run) so that a noisy neighbour hits all of them.
# Installs nginx-light + libnginx-mod-nchan with apt-get when missing (root),
# and redis-server + redis-tools when a Redis system is named.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
RUNS=1
SYSTEMS="longpoll nchan golongpoll"
SCENARIOS="park fanout throughput batch single-session slow-consumer latency connect"
OUT=""
EXTRA=""
NODES=${NODES:-1}
PIN=0

while (($#)); do
	case "$1" in
	--quick) QUICK=1 ;;
	--runs) RUNS=$2; shift ;;
	--systems) SYSTEMS=$2; shift ;;
	--scenarios) SCENARIOS=$2; shift ;;
	--out) OUT=$2; shift ;;
	--bench-args) EXTRA=$2; shift ;;
	--nodes) NODES=$2; shift ;;
	--pin) PIN=1 ;;
	-h | --help) sed -n '2,43p' "$0"; exit 0 ;;
	*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --nodes wants a count >= 1, got $NODES" >&2; exit 2; }

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-${TMPDIR:-/tmp}/longpoll-compare-$STAMP}
mkdir -p "$OUT/bin" "$OUT/logs"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
RESULTS_REDIS=$OUT/results-redis.jsonl # the Redis systems
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
drop_system() { # drop_system NAME: remove one word from $SYSTEMS
	local out="" s
	for s in $SYSTEMS; do [ "$s" = "$1" ] || out+="$s "; done
	SYSTEMS=$out
}
has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }
# The Redis systems: their own results file and table (see the header).
is_redis() { [[ "$1" == *-redis ]]; }
want_redis() { has_system longpoll-redis || has_system nchan-redis; }

# ---------------------------------------------------------------- install
need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v curl >/dev/null 2>&1 || need+=(curl)
rneed=() # for the Redis systems only
if want_redis; then
	command -v redis-server >/dev/null 2>&1 || rneed+=(redis-server)
	command -v redis-cli >/dev/null 2>&1 || rneed+=(redis-tools)
fi
if ((${#need[@]} + ${#rneed[@]})); then
	if [ "$(id -u)" = 0 ]; then
		all=("${need[@]}" "${rneed[@]}")
		log "installing ${all[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${all[@]}" >"$OUT/logs/apt.log" 2>&1
		if [[ " ${rneed[*]} " == *" redis-server "* ]]; then
			service redis-server stop >/dev/null 2>&1 || true # the package's own, on 6379
		fi
	else
		if ((${#need[@]})); then
			log "missing ${need[*]} and not root: Nchan is skipped"
			drop_system nchan
			drop_system nchan-redis
		fi
		if ((${#rneed[@]})); then
			log "missing ${rneed[*]} and not root: longpoll-redis and nchan-redis are skipped"
			drop_system longpoll-redis
			drop_system nchan-redis
		fi
	fi
fi

# ---------------------------------------------------------------- build
log "building into $OUT/bin"
(cd "$ROOT/cmd/longpoll-bench" && go build -o "$OUT/bin/longpoll-bench" .)
(cd "$ROOT/bench/peers/golongpoll" && go build -o "$OUT/bin/golongpoll-peer" .)
if has_system longpoll || has_system longpoll-redis; then
	if ! (cd "$ROOT" && go build -o "$OUT/bin/longpoll" ./cmd/longpoll) 2>"$OUT/logs/build-longpoll.log"; then
		log "longpoll does not build (see $OUT/logs/build-longpoll.log): skipped"
		drop_system longpoll
		drop_system longpoll-redis
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

# --pin: the server side on CPU 0, the load tool on CPU 1 (bench/ab.sh).
# Empty arrays (the default) leave every command line as it was.
SRV_PIN=() TOOL_PIN=()
if ((PIN)); then
	if command -v taskset >/dev/null && (($(nproc) >= 2)); then
		SRV_PIN=(taskset -c 0) TOOL_PIN=(taskset -c 1)
	else
		log "--pin needs taskset and 2 CPUs: not pinned"
		PIN=0
	fi
fi

# ---------------------------------------------------------------- servers
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
	local p=$1
	while ! port_free "$p"; do p=$((p + 1)); done
	echo "$p"
}

SERVER_PID="" # the server; longpoll-redis: its first node
NODE_PIDS=""  # longpoll-redis: the other nodes
REDIS_PID="" REDIS_DIR="" REDIS_PORT=""
PIDS=""
URL=""
stop_pids() { # stop_pids PID...: TERM them all, wait up to 5 s, then KILL
	(($#)) || return 0
	local p alive
	kill -TERM "$@" 2>/dev/null || true
	for _ in $(seq 50); do
		alive=0
		for p; do if kill -0 "$p" 2>/dev/null; then alive=1; fi; done
		((alive)) || break
		sleep 0.1
	done
	kill -KILL "$@" 2>/dev/null || true
	for p; do wait "$p" 2>/dev/null || true; done
}
stop_server() {
	# shellcheck disable=SC2086 # lists of pids
	stop_pids $SERVER_PID $NODE_PIDS
	SERVER_PID="" NODE_PIDS=""
	if [ -n "$REDIS_PID" ]; then # after its clients
		stop_pids "$REDIS_PID"
		REDIS_PID=""
	fi
	if [ -n "$REDIS_DIR" ]; then
		rm -rf "$REDIS_DIR"
		REDIS_DIR=""
	fi
}
trap stop_server EXIT

wait_healthy() { # port [pid: the process that must stay alive, default SERVER_PID]
	local pid=${2:-$SERVER_PID}
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# start_redis LOGFILE: a fresh, empty redis-server for one scenario run of a
# Redis system, on the server's CPU: REDIS_PORT, REDIS_PID, REDIS_DIR.
start_redis() {
	REDIS_PORT=$(pick_port 18500)
	REDIS_DIR=$(mktemp -d "$OUT/redis.XXXXXX")
	"${SRV_PIN[@]}" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
		--dir "$REDIS_DIR" >"$1" 2>&1 &
	REDIS_PID=$!
	for _ in $(seq 100); do
		[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
		kill -0 "$REDIS_PID" 2>/dev/null || break
		sleep 0.1
	done
	log "redis-server did not start (log: $1)"
	return 1
}

# nchan_conf PORT DIR [REDIS_PORT]: the Nchan config; with REDIS_PORT the
# same one plus Redis storage (bench/nchan/redis.conf.tmpl says how).
nchan_conf() {
	local port=$1 d=$2 rport=${3:-}
	sed -e "s#@PORT@#$port#g; s#@DIR@#$d#g; s#@NOFILE@#$NOFILE#g" \
		"$ROOT/bench/nchan/nginx.conf.tmpl" >"$d/nginx.conf"
	[ -n "$rport" ] || return 0
	sed -e "s#@REDIS_PORT@#$rport#g" "$ROOT/bench/nchan/redis.conf.tmpl" >"$d/redis.inc"
	sed -i -e "/^http {\$/r $d/redis.inc" \
		-e 's#^\( *\)nchan_channel_id \$1;$#&\n\1nchan_redis_pass nchan_redis;#' "$d/nginx.conf"
	rm -f "$d/redis.inc"
	# Both the subscriber and the publisher location, or Redis is not used.
	[ "$(grep -c '^ *nchan_redis_pass nchan_redis;$' "$d/nginx.conf")" = 2 ] &&
		grep -q '^ *upstream nchan_redis {$' "$d/nginx.conf" ||
		{ log "nchan-redis: could not derive the config from nginx.conf.tmpl ($d/nginx.conf)"; return 1; }
}

start_server() { # system port logfile
	local sys=$1 port=$2 logf=$3
	URL="http://127.0.0.1:$port"
	if is_redis "$sys"; then
		start_redis "${logf%.log}.redis.log" || { stop_server; return 1; }
	fi
	case "$sys" in
	longpoll)
		"${SRV_PIN[@]}" "$OUT/bin/longpoll" --addr "127.0.0.1:$port" --poll-timeout 30s --max-poll-timeout 120s \
			--session-ttl 5m --heartbeat-interval 0 --max-mailbox 1000 --log-level warn >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	longpoll-redis)
		# NODES nodes on the one Redis, each with the longpoll system's flags.
		local i p=$port pid lf=$logf
		for i in $(seq 0 $((NODES - 1))); do
			if ((i)); then
				p=$(pick_port $((p + 1)))
				URL+=",http://127.0.0.1:$p"
				lf=${logf%.log}.node$i.log
			fi
			"${SRV_PIN[@]}" "$OUT/bin/longpoll" --addr "127.0.0.1:$p" --poll-timeout 30s --max-poll-timeout 120s \
				--session-ttl 5m --heartbeat-interval 0 --max-mailbox 1000 --log-level warn \
				--redis-url "redis://127.0.0.1:$REDIS_PORT" >"$lf" 2>&1 &
			pid=$!
			if ((i)); then NODE_PIDS+="$pid "; else SERVER_PID=$pid; fi
			# one at a time: the next port is picked once this one is taken
			wait_healthy "$p" "$pid" || { log "$sys node $i did not become healthy (log: ${logf%.log}*)"; stop_server; return 1; }
		done
		;;
	nchan | nchan-redis)
		local d=$OUT/nginx-$port
		mkdir -p "$d"
		if [ "$sys" = nchan ]; then
			nchan_conf "$port" "$d"
		else
			nchan_conf "$port" "$d" "$REDIS_PORT" || { stop_server; return 1; }
		fi
		"${SRV_PIN[@]}" nginx -c "$d/nginx.conf" >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	golongpoll)
		"${SRV_PIN[@]}" "$OUT/bin/golongpoll-peer" --addr "127.0.0.1:$port" --max-timeout 120 >"$logf" 2>&1 &
		SERVER_PID=$!
		;;
	esac
	wait_healthy "$port" || { log "$sys did not become healthy (log: $logf)"; stop_server; return 1; }
	PIDS=$SERVER_PID
	if [ "$sys" = nchan ] || [ "$sys" = nchan-redis ]; then # sum master and worker
		PIDS="$SERVER_PID,$(pgrep -P "$SERVER_PID" | paste -sd, -)"
	fi
	if is_redis "$sys"; then
		# What server_cpu (and RSS, KiB per parked poll) count for a Redis
		# system: every longpoll node, or nginx master and worker, plus the
		# redis-server, which does part of the server's work.
		local q
		for q in $NODE_PIDS; do PIDS+=",$q"; done
		PIDS+=",$REDIS_PID"
	fi
	if [ "$sys" = nchan-redis ]; then
		# /healthz is answered without Redis; wait (up to 5 s) until the
		# worker is connected (more clients than this redis-cli).
		local n
		for _ in $(seq 50); do
			n=$(redis-cli -p "$REDIS_PORT" info clients 2>/dev/null | sed -n 's/^connected_clients:\([0-9]*\).*/\1/p')
			((${n:-0} > 1)) && break
			sleep 0.1
		done
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
	if want_redis; then
		echo "redis:    redis-server $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p'), a fresh one per scenario run (--save \"\" --appendonly no); longpoll-redis: $NODES node(s); nchan-redis: distributed storage"
	fi
	if ((PIN)); then
		echo "pinned:   server side (server, its nodes, its redis-server) on CPU 0, load tool on CPU 1"
	fi
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---------------------------------------------------------------- run
read -r -a sys_list <<<"$SYSTEMS"
declare -A PORT_BASE=([longpoll]=18480 [nchan]=18481 [golongpoll]=18482 [longpoll-redis]=18483 [nchan-redis]=18484)
want_redis && : >"$RESULTS_REDIS"
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
			res=$RESULTS
			if is_redis "$sys"; then
				res=$RESULTS_REDIS
				log "  $sys: redis-server 127.0.0.1:$REDIS_PORT; url $URL; server pids $PIDS"
			fi
			# --target: the protocol (longpoll-redis speaks longpoll's).
			"${TOOL_PIN[@]}" "$BENCH" --target "${sys%-redis}" --url "$URL" --scenario "$scen" \
				--server-pid "$PIDS" --label "run$run" --json-out "$res" "${ARGS[@]}" \
				2>>"$OUT/logs/bench.log" || log "$sys $scen reported errors (see ${res##*/})"
			stop_server
		done
	done
done
log "done in $(($(date +%s) - start_time)) s"

mem_systems=0
for sys in $SYSTEMS; do is_redis "$sys" || mem_systems=1; done
{
	cat "$OUT/machine.txt"
	if ! want_redis || ((mem_systems)); then
		echo
		"$BENCH" table "$RESULTS"
	fi
	if want_redis; then
		# The load tool's table has a column per protocol; the Redis systems
		# fill the longpoll and Nchan ones, renamed here (goal columns, which
		# are longpoll's in memory, and golongpoll's left out).
		echo
		echo "Redis storage: longpoll-redis ($NODES node(s)) and nchan-redis, each on a fresh redis-server counted in server CPU and RSS"
		echo
		"$BENCH" table "$RESULTS_REDIS" | sed -e '/^|/s/^\(|[^|]*|[^|]*|[^|]*|\).*$/\1/' \
			-e '1s/| longpoll | Nchan |$/| longpoll-redis | nchan-redis |/' \
			-e 's/^n\/a: longpoll /n\/a: longpoll-redis /; s/^n\/a: nchan /n\/a: nchan-redis /'
	fi
} >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
echo "results: $RESULTS"
want_redis && echo "results (Redis systems): $RESULTS_REDIS"
echo "table:   $OUT/table.md"
