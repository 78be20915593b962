#!/usr/bin/env bash
# Runs every fuzz target briefly, one at a time: FUZZTIME each (default
# 100000x, i.e. 100,000 executions, about 5-10 s per target on a 2-core
# box). A failing input is written to the package's testdata/fuzz/<Target>/
# (commit it: it becomes a regression test) and the script fails.
#
# The default budget is a count, not a duration: Go 1.26's fuzz coordinator
# can fail a duration-bounded run with a bare "context deadline exceeded"
# when -fuzztime expires while a worker is mid-call (golang/go#75804, fixed
# in Go 1.27); that failed CI once with no failing input. A count has no
# deadline to race.
#
#   bash scripts/fuzz.sh                 # every target, 100,000 execs each
#   FUZZTIME=2m bash scripts/fuzz.sh     # longer (a duration can hit the race)
#   bash scripts/fuzz.sh ./poll          # the targets of some packages
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-100000x}"
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./internal/jsonscan ./internal/h1 ./wire ./api ./bayeux)
fi

for pkg in "${pkgs[@]}"; do
	list=$(go test -list '^Fuzz' "$pkg") # fails the script if the package does not build
	for target in $(grep '^Fuzz' <<<"$list" || true); do
		printf '%s %s (%s)\n' "$pkg" "$target" "$fuzztime"
		# Minimising a new input is cut short so that a brief run fuzzes.
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 5s "$pkg" |
			grep -Ev '^fuzz: elapsed' || { echo "FAIL: $pkg $target"; exit 1; }
	done
done
