package client

import (
	"math"
	"math/rand/v2"
	"time"
)

// Backoff is the wait between retries of a device: Initial for the first
// retry, multiplied by Factor for each further one, never over Max, less a
// random share of up to Jitter (0 to 1) of it so that many devices do not
// retry in lockstep. The same as longpoll.js's backoff.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Jitter  float64
}

// DefaultBackoff waits about 0.5 s, doubling, at most 30 s, jittered by up
// to half.
var DefaultBackoff = Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, Factor: 2, Jitter: 0.5}

// Delay returns the wait before retry number attempt (0-based):
// min(Max, Initial·Factor^attempt), less up to Jitter of it. It lies in
// [base·(1-Jitter), base]. An Initial or Max of 0 and a Factor below 1
// take DefaultBackoff's; a Jitter of 0 is no jitter.
func (b Backoff) Delay(attempt int) time.Duration {
	return b.delay(attempt, rand.Float64())
}

// delay is Delay with the random number r in [0, 1).
func (b Backoff) delay(attempt int, r float64) time.Duration {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoff.Initial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoff.Max
	}
	if b.Factor < 1 {
		b.Factor = DefaultBackoff.Factor
	}
	jitter := min(max(b.Jitter, 0), 1)
	base := float64(b.Initial) * math.Pow(b.Factor, float64(max(attempt, 0)))
	base = min(base, float64(b.Max))
	return time.Duration(base * (1 - jitter*r))
}
