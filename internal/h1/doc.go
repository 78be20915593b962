// Package h1 serves HTTP/1.1 requests on connections taken over from
// net/http, without net/http's per-connection goroutine, buffers and
// request set-up. It knows nothing of what it serves: after a Handler has
// answered a request on a taken-over connection, the connection stays with
// this package, which reads the next request's head itself, parses what it
// is sure of (ParseHead: one plain HTTP/1.1 request, any doubt refused)
// and asks the Handler about it. The Handler serves it (Served), keeps the
// connection for a later answer (Parked: a long poll), or declines (Pass);
// a declined request, and any head this package is unsure of, goes back to
// net/http through the Listener with every byte read so far in front of
// it, and net/http serves it as if nothing had happened.
//
// Answers are written with Conn.Start, one non-blocking write(2) of what
// the socket takes at once, and Conn.Finish, which writes any rest under
// the write timeout. A connection that sends nothing for the idle timeout
// is closed; so is one that stalls in a head or body past its timeout.
package h1
