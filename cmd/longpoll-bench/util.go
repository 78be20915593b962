package main

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// t0 is the tool's clock origin: payloads carry send times as nanoseconds
// since t0 (monotonic), so sender and receiver in this process agree.
var t0 = time.Now()

func nowNS() int64 { return int64(time.Since(t0)) }

// ---------------------------------------------------------------- clients

// sourceDialer dials from a rotating list of local loopback addresses, so
// that many connections to one server port do not run out of ephemeral ports.
type sourceDialer struct {
	ips  []net.IP
	next atomic.Uint64
}

func (d *sourceDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}
	if len(d.ips) > 0 {
		ip := d.ips[d.next.Add(1)%uint64(len(d.ips))]
		nd.LocalAddr = &net.TCPAddr{IP: ip}
	}
	return nd.DialContext(ctx, network, addr)
}

// parseIPRange parses "127.0.0.2-127.0.0.20" or "127.0.0.2,127.0.0.3" and
// refuses anything outside 127.0.0.0/8.
func parseIPRange(s string) ([]net.IP, error) {
	if s == "" {
		return nil, nil
	}
	var out []net.IP
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a := net.ParseIP(lo).To4()
		b := a
		if isRange {
			b = net.ParseIP(hi).To4()
		}
		if a == nil || b == nil || a[0] != 127 || b[0] != 127 {
			return nil, fmt.Errorf("source address %q: need IPv4 in 127.0.0.0/8", part)
		}
		x, y := ip4(a), ip4(b)
		if y < x || y-x > 1<<16 {
			return nil, fmt.Errorf("source range %q is empty or too large", part)
		}
		for v := x; v <= y; v++ {
			out = append(out, net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)))
		}
	}
	return out, nil
}

func ip4(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}

// ---------------------------------------------------------------- RSS

// rssKiB sums VmRSS of the given processes (an nginx master and its worker,
// or one Go server).
func rssKiB(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			return 0, err
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				sum += n
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("pid %d: no VmRSS", pid)
		}
	}
	return sum, nil
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad pid %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ---------------------------------------------------------------- stats

// pct returns the q-quantile (0..1) of sorted nanosecond samples in ms.
func pct(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1e6
}

func sortedCopy(v []int64) []int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round2(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return f
	}
	return math.Round(f*100) / 100
}

// bitset is a growable set of small non-negative integers (sequence numbers).
type bitset []uint64

func (b *bitset) set(i uint32) {
	w := int(i / 64)
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w+1-len(*b))...)
	}
	(*b)[w] |= 1 << (i % 64)
}

func (b bitset) has(i uint32) bool {
	w := int(i / 64)
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

// andNotCount counts members of a that are in neither b nor c.
func andNotCount(a, b, c bitset) int64 {
	var n int64
	for i, w := range a {
		if i < len(b) {
			w &^= b[i]
		}
		if i < len(c) {
			w &^= c[i]
		}
		n += int64(bits.OnesCount64(w))
	}
	return n
}

// waitFor polls cond every step until it holds or d passes.
func waitFor(ctx context.Context, d, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(step):
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// cpuSeconds sums user+system CPU time of the given processes from
// /proc/PID/stat (clock ticks of 1/100 s, the Linux USER_HZ).
func cpuSeconds(pids []int) (float64, bool) {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, false
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 { // fields after comm: state(3) … utime(14) stime(15)
			return 0, false
		}
		u, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		ticks += u + st
	}
	return float64(ticks) / 100, len(pids) > 0
}

// selfCPUSeconds is this process's user+system CPU time.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// cpuMeter measures the server's and this tool's CPU over a window.
type cpuMeter struct {
	pids           []int
	server0, self0 float64
	haveServer     bool
	start          time.Time
}

func startCPU(pids []int) *cpuMeter {
	m := &cpuMeter{pids: pids, self0: selfCPUSeconds(), start: time.Now()}
	m.server0, m.haveServer = cpuSeconds(pids)
	return m
}

// stop returns the server's and the tool's CPU seconds since start, and the
// wall seconds.
func (m *cpuMeter) stop() (server float64, haveServer bool, self, wall float64) {
	self = selfCPUSeconds() - m.self0
	wall = time.Since(m.start).Seconds()
	if s, ok := cpuSeconds(m.pids); ok && m.haveServer {
		return s - m.server0, true, self, wall
	}
	return 0, false, self, wall
}
