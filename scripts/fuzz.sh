#!/usr/bin/env bash
# Runs every fuzz target briefly, one at a time: FUZZTIME each (default
# 10s). A failing input is written to the package's testdata/fuzz/<Target>/
# (commit it: it becomes a regression test) and the script fails.
#
#   bash scripts/fuzz.sh                 # every target, 10 s each
#   FUZZTIME=2m bash scripts/fuzz.sh     # longer
#   bash scripts/fuzz.sh ./poll          # the targets of some packages
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-10s}"
pkgs=("$@")
if [ ${#pkgs[@]} -eq 0 ]; then
	pkgs=(./session ./poll ./api)
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
