package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// row is one line of the comparison table.
type row struct {
	scenario, metric, label string
	goal                    string
	// check judges longpoll's median against the goal; nil: no goal.
	check func(get getter) (bool, bool) // (pass, known)
}

// getter returns the median of a metric over the runs of one target.
type getter func(target, scenario, metric string) (float64, bool)

// le checks longpoll's metric ≤ limit; a negative limit checks ≥ -limit.
func le(metric, scen string, limit float64) func(getter) (bool, bool) {
	return func(get getter) (bool, bool) {
		v, ok := get("longpoll", scen, metric)
		if limit < 0 {
			return v >= -limit, ok
		}
		return v <= limit, ok
	}
}

var tableRows = []row{
	{"park", "parked", "park: parked polls", "≥ 19,000", le("parked", "park", -19000)},
	{"park", "kib_per_poll", "park: server KiB per parked poll", "≤ 17 at ≥ 19,000", func(g getter) (bool, bool) {
		v, ok := g("longpoll", "park", "kib_per_poll")
		n, _ := g("longpoll", "park", "parked")
		return v <= 17, ok && n >= 19000
	}},
	{"park", "failures", "park: failures", "0", le("failures", "park", 0)},
	{"fanout", "until_all_ms", "fanout: time until all have it, ms (median of rounds)", "≤ Nchan", func(g getter) (bool, bool) {
		v, ok1 := g("longpoll", "fanout", "until_all_ms")
		n, ok2 := g("nchan", "fanout", "until_all_ms")
		return v <= n, ok1 && ok2
	}},
	{"fanout", "p50_ms", "fanout: receive latency p50, ms", "", nil},
	{"fanout", "p99_ms", "fanout: receive latency p99, ms", "", nil},
	{"fanout", "max_ms", "fanout: receive latency max, ms", "", nil},
	{"fanout", "lost", "fanout: lost", "0", le("lost", "fanout", 0)},
	{"fanout", "server_us_per_delivery", "fanout: server CPU µs per delivery", "", nil},
	{"throughput", "deliveries_per_s", "throughput: deliveries/s", "≥ Nchan, ≥ 2× golongpoll", func(g getter) (bool, bool) {
		v, ok1 := g("longpoll", "throughput", "deliveries_per_s")
		n, ok2 := g("nchan", "throughput", "deliveries_per_s")
		gl, ok3 := g("golongpoll", "throughput", "deliveries_per_s")
		return v >= n && v >= 2*gl, ok1 && ok2 && ok3
	}},
	{"throughput", "pushes_per_s", "throughput: pushes/s", "", nil},
	{"throughput", "p50_ms", "throughput: latency p50, ms", "", nil},
	{"throughput", "p99_ms", "throughput: latency p99, ms", "≤ 1.5× Nchan", func(g getter) (bool, bool) {
		v, ok1 := g("longpoll", "throughput", "p99_ms")
		n, ok2 := g("nchan", "throughput", "p99_ms")
		return v <= 1.5*n, ok1 && ok2
	}},
	{"throughput", "lost", "throughput: lost", "0", le("lost", "throughput", 0)},
	{"throughput", "dup", "throughput: duplicated", "0", le("dup", "throughput", 0)},
	{"throughput", "reordered", "throughput: reordered", "0", le("reordered", "throughput", 0)},
	{"throughput", "server_us_per_delivery", "throughput: server CPU µs per delivery", "", nil},
	{"throughput", "tool_cpu_cores", "throughput: load tool CPU, cores", "", nil},
	{"batch", "deliveries_per_s", "batch: deliveries/s", "≥ 5× Nchan throughput", func(g getter) (bool, bool) {
		v, ok1 := g("longpoll", "batch", "deliveries_per_s")
		n, ok2 := g("nchan", "throughput", "deliveries_per_s")
		return v >= 5*n, ok1 && ok2
	}},
	{"batch", "p99_ms", "batch: latency p99, ms", "", nil},
	{"batch", "lost", "batch: lost", "0", le("lost", "batch", 0)},
	{"batch", "dup", "batch: duplicated", "0", le("dup", "batch", 0)},
	{"batch", "server_us_per_delivery", "batch: server CPU µs per delivery", "", nil},
	{"single-session", "deliveries_per_s", "1 session + 32 publishers: deliveries/s", "", nil},
	{"single-session", "lost", "1 session + 32 publishers: lost", "0", le("lost", "single-session", 0)},
	{"single-session", "reordered", "1 session + 32 publishers: reordered", "0", le("reordered", "single-session", 0)},
	{"single-session", "refused", "1 session + 32 publishers: refused (429)", "visible", nil},
	{"slow-consumer", "deliveries_per_s", "slow consumer (1 session, 32 publishers, 20 ms between polls): deliveries/s", "", nil},
	{"slow-consumer", "lost", "slow consumer: lost (accepted, never delivered)", "0", le("lost", "slow-consumer", 0)},
	{"slow-consumer", "refused", "slow consumer: refused visibly (429)", "", nil},
	{"slow-consumer", "refused_delivered", "slow consumer: refused yet delivered", "0", le("refused_delivered", "slow-consumer", 0)},
	{"slow-consumer", "reordered", "slow consumer: reordered", "0", le("reordered", "slow-consumer", 0)},
	{"latency", "p50_ms", "latency at 1,000 pushes/s: p50, ms", "≤ 1", le("p50_ms", "latency", 1)},
	{"latency", "p99_ms", "latency at 1,000 pushes/s: p99, ms", "≤ 5", le("p99_ms", "latency", 5)},
	{"latency", "lost", "latency at 1,000 pushes/s: lost", "0", le("lost", "latency", 0)},
	{"connect", "connects_per_s", "connect storm: connects/s", "", nil},
	{"connect", "p99_ms", "connect storm: p99, ms", "", nil},
	{"connect", "failures", "connect storm: failures", "0", le("failures", "connect", 0)},
}

var tableTargets = []string{"longpoll", "nchan", "golongpoll"}

func tableMain(args []string) int {
	fs := flag.NewFlagSet("longpoll-bench table", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return parseExit(err)
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	results, err := readResults(files)
	if err != nil {
		fmt.Fprintln(os.Stderr, "longpoll-bench table:", err)
		return 1
	}
	fmt.Print(renderTable(results))
	return 0
}

// readResults reads the results of JSON-lines files ("-": standard
// input); other lines are skipped.
func readResults(files []string) ([]result, error) {
	var results []result
	for _, f := range files {
		var rd io.Reader = os.Stdin
		if f != "-" {
			fh, err := os.Open(f)
			if err != nil {
				return nil, err
			}
			defer fh.Close()
			rd = fh
		}
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(line, "{") {
				continue
			}
			var r result
			if err := json.Unmarshal([]byte(line), &r); err == nil {
				results = append(results, r)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return results, nil
}

func renderTable(results []result) string {
	type key struct{ target, scenario, metric string }
	vals := map[key][]float64{}
	skipped := map[key]string{}
	runs := map[string]map[string]bool{} // scenario/target -> labels
	for _, r := range results {
		rk := r.Scenario + "/" + r.Target
		if runs[rk] == nil {
			runs[rk] = map[string]bool{}
		}
		runs[rk][r.Label+r.Time] = true
		if r.Skipped != "" {
			skipped[key{r.Target, r.Scenario, ""}] = r.Skipped
			continue
		}
		for m, v := range r.Metrics {
			if v >= 0 {
				vals[key{r.Target, r.Scenario, m}] = append(vals[key{r.Target, r.Scenario, m}], v)
			}
		}
	}
	get := func(target, scenario, metric string) (float64, bool) {
		v := vals[key{target, scenario, metric}]
		if len(v) == 0 {
			return 0, false
		}
		return median(v), true
	}
	maxRuns := 0
	for _, m := range runs {
		maxRuns = max(maxRuns, len(m))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| metric (median of %d run(s)) | longpoll | Nchan | golongpoll | longpoll target | met |\n", maxRuns)
	b.WriteString("|---|---:|---:|---:|---|:-:|\n")
	for _, row := range tableRows {
		cells := make([]string, len(tableTargets))
		any := false
		for i, t := range tableTargets {
			if v, ok := get(t, row.scenario, row.metric); ok {
				cells[i] = fmtNum(v)
				any = true
			} else if _, sk := skipped[key{t, row.scenario, ""}]; sk {
				cells[i] = "n/a"
			} else {
				cells[i] = "–"
			}
		}
		if !any {
			continue
		}
		met := ""
		if row.check != nil {
			if pass, known := row.check(get); known {
				met = map[bool]string{true: "yes", false: "**no**"}[pass]
			} else {
				met = "?"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", row.label, cells[0], cells[1], cells[2], row.goal, met)
	}
	for k, why := range skipped {
		fmt.Fprintf(&b, "\nn/a: %s %s: %s", k.target, k.scenario, why)
	}
	if len(skipped) > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func fmtNum(v float64) string {
	switch {
	case math.Abs(v) >= 1000:
		return groupThousands(strconv.FormatFloat(math.Round(v), 'f', 0, 64))
	case v == math.Trunc(v):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
