package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// abMain prints two sets of results of the same system side by side
// ("longpoll-bench ab BEFORE.jsonl AFTER.jsonl"): for every row of the
// comparison table, the median over each file's runs and their ratio. It
// is how a change is measured against the build before it (bench/ab.sh).
func abMain(args []string) int {
	fs := flag.NewFlagSet("longpoll-bench ab", flag.ContinueOnError)
	target := fs.String("target", "longpoll", "the system whose results are compared")
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: longpoll-bench ab [--target T] BEFORE.jsonl AFTER.jsonl")
		return 2
	}
	var sets [2][]result
	for i := range sets {
		r, err := readResults([]string{fs.Arg(i)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "longpoll-bench ab:", err)
			return 1
		}
		sets[i] = r
	}
	fmt.Print(renderAB(*target, sets[0], sets[1]))
	return 0
}

// renderAB is abMain's markdown table.
func renderAB(target string, before, after []result) string {
	type key struct{ scenario, metric string }
	collect := func(rs []result) (map[key][]float64, int) {
		vals := map[key][]float64{}
		runs := map[string]bool{}
		for _, r := range rs {
			if r.Target != target || r.Skipped != "" {
				continue
			}
			runs[r.Scenario+"/"+r.Label+r.Time] = true
			for m, v := range r.Metrics {
				if v >= 0 {
					vals[key{r.Scenario, m}] = append(vals[key{r.Scenario, m}], v)
				}
			}
		}
		return vals, len(runs)
	}
	b, nb := collect(before)
	a, na := collect(after)
	var sb strings.Builder
	fmt.Fprintf(&sb, "| metric (medians; %d and %d scenario runs) | before | after | after/before |\n", nb, na)
	sb.WriteString("|---|---:|---:|---:|\n")
	for _, row := range tableRows {
		k := key{row.scenario, row.metric}
		vb, vb2 := b[k], a[k]
		if len(vb) == 0 && len(vb2) == 0 {
			continue
		}
		cell := func(v []float64) (string, float64) {
			if len(v) == 0 {
				return "", 0
			}
			m := median(v)
			return fmtNum(m), m
		}
		cb, mb := cell(vb)
		ca, ma := cell(vb2)
		ratio := ""
		if mb != 0 && len(vb2) > 0 {
			ratio = fmt.Sprintf("%.2f", ma/mb)
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", row.label, cb, ca, ratio)
	}
	return sb.String()
}
