package api

// QueryValue exports queryValue to the tests.
var QueryValue = queryValue

// OwnedRepolls is how many re-polls l's connections had served without
// net/http (owned.go).
func OwnedRepolls(l *Listener) uint64 { return l.repolls.Load() }

// IdleOwned is how many owned connections of l wait for a request.
func IdleOwned(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.idle)
}

// OwnedPushes is how many pushes l's connections had served without
// net/http (owned.go).
func OwnedPushes(l *Listener) uint64 { return l.pushes.Load() }

// Held is how many connections l's WaitParked waits for.
func Held(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.parked
}
