// Package wire is the JSON of longpoll's HTTP API (docs/API.md): it parses
// connect payloads and pushes into the domain's values (session.Request,
// poll.Push), renders messages, poll answers, push results and the other
// bodies, and holds the one table that turns the domain's errors into HTTP
// statuses and error codes (ErrorOf).
//
// It knows nothing of transports: the HTTP edge (package api) reads
// requests and writes what wire returns, over echo or a taken-over
// connection alike. Parsers refuse bad input with errors that wrap
// session.ErrInvalidPayload or poll.ErrPayloadTooLarge and say what is
// wrong; they never panic (fuzz targets check it).
package wire
