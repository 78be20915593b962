package api

import (
	"net/http"
	"sync/atomic"

	"github.com/longpoll/longpoll/internal/h1"
)

// QueryValue exports queryValue to the tests.
var QueryValue = queryValue

// CountNetHTTP makes s count the requests that net/http serves, and
// returns the count: the raw path's requests never reach it. Call it
// before Serve.
func CountNetHTTP(s *Server) *atomic.Int64 {
	n := new(atomic.Int64)
	next := s.http.Handler
	s.http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		next.ServeHTTP(w, r)
	})
	return n
}

// H1 returns s's raw-path listener (nil with TLS).
func H1(s *Server) *h1.Listener { return s.h1 }
