#!/usr/bin/env bash
# Runs longpoll's whole test suite: vet, the Go tests with the race
# detector (installing Debian's nginx-light for the reverse-proxy test
# when missing), a short run of every micro-benchmark and fuzz target (so
# they cannot rot; no timing is asserted), and the browser tests in headless
# Chromium (which install chromium and npm packages when missing), and the
# Bayeux tests with the npm CometD and Faye clients (installed when missing),
# and the Redis store against real redis-server processes (Debian's
# redis-server, installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

current="setting up"
step() {
	current=$*
	printf '\n== %s\n' "$*"
}
# One line at the end says how it went, whatever happened.
finish() {
	rc=$?
	if [ "$rc" = 0 ]; then
		printf '\n== PASS: every step passed\n'
	else
		printf '\n== FAIL (exit %s) in step: %s\n' "$rc" "$current"
	fi
}
trap finish EXIT

step "go vet"
go vet ./...
(cd cmd/longpoll-bench && go vet ./...) # the load tool is a module of its own

# deploy/nginx_test.go runs deploy/nginx.conf in a real nginx (it fails
# in CI without one). On a fresh Debian machine, as root, install it.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
	if [ "$(id -u)" = 0 ]; then
		step "installing nginx-light for the reverse-proxy test"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
	else
		echo "nginx is missing and this is not root: the reverse-proxy test will skip" >&2
	fi
fi

# The Redis store's tests (redisstore, the three-node tests in
# cmd/longpoll) run real redis-server processes, a single server and a
# three-master Redis Cluster (redis-cli joins it). Install Debian's
# redis-server when missing; the tests then fail rather than skip.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	if [ "$(id -u)" = 0 ]; then
		step "installing redis-server for the cluster tests"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
		# The package starts a system redis on 6379; the tests start their own.
		service redis-server stop >/dev/null 2>&1 || true
	else
		echo "redis-server is missing and this is not root: the Redis tests will skip" >&2
	fi
fi
if command -v redis-server >/dev/null 2>&1; then
	export LONGPOLL_REQUIRE_REDIS=1
fi

step "go test -race"
go test -race -count=1 -timeout 15m ./...
(cd cmd/longpoll-bench && go test -race -count=1 ./...)

step "micro-benchmarks (100 iterations each, no timing asserted)"
go test -run '^$' -bench . -benchtime=100x -benchmem ./... >/tmp/longpoll-bench.txt
grep -E '^(Benchmark|ok|FAIL)' /tmp/longpoll-bench.txt || true

if [ -x scripts/fuzz.sh ]; then
	step "fuzz targets (brief)"
	bash scripts/fuzz.sh
fi

step "Bayeux tests (npm cometd and faye clients against the binary)"
bash test/bayeux/run.sh

if [ -f test/browser/run.sh ]; then
	step "browser tests (headless Chromium)"
	bash test/browser/run.sh
fi
