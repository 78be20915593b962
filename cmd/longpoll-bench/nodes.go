package main

import (
	"context"
	"fmt"
	"strings"
)

// Several nodes of one longpoll cluster (--url with a comma-separated
// list; the nodes share their state in Redis, so any node serves any
// session). With n nodes, session i connects and polls on node i % n and
// every push to it (and every batch a publisher sends for it) goes to node
// (i+1) % n, so that with more than one node each delivery crosses nodes;
// a broadcast (fanout) goes to node 1 % n while its subscribers are spread
// over all of them. With one node every request goes to it, as before.
//
// A session's nodes are fixed when it is set up (sub.node, sub.pushNode):
// the hot paths index a slice and do no string work per request.

// pollNode is the node session i connects, polls and is closed on.
func pollNode(i, n int) int { return i % n }

// pushNode is the node a push to session i is sent to: the one after its
// poll node.
func pushNode(i, n int) int { return (i + 1) % n }

// broadcastNode is the node a broadcast is sent to.
func broadcastNode(n int) int { return 1 % n }

// parseURLs splits --url into its base URLs and checks each: a list of
// more than one only for the longpoll target (the others are single
// servers), every URL on loopback, none empty or twice.
func parseURLs(raw, target string) ([]string, error) {
	parts := strings.Split(raw, ",")
	if len(parts) > 1 && target != "longpoll" {
		return nil, fmt.Errorf("--url: a list of %d URLs (the nodes of a cluster) needs --target longpoll; --target %s takes one URL", len(parts), target)
	}
	out := make([]string, 0, len(parts))
	seen := map[string]bool{}
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("--url %q: item %d is empty", raw, i+1)
		}
		if err := checkLoopback(p); err != nil {
			return nil, err
		}
		key := strings.TrimRight(p, "/")
		if seen[key] {
			return nil, fmt.Errorf("--url %q: %s is listed twice (pushes are meant to cross nodes)", raw, p)
		}
		seen[key] = true
		out = append(out, p)
	}
	return out, nil
}

// nodeClients holds one goroutine's clients, one per node, each made when
// first needed (a worker that only ever talks to one node has one
// connection, as before there were several nodes).
type nodeClients struct {
	ctx   context.Context
	cfs   []*clientFactory
	fresh bool
	cs    []*rawClient
}

func newNodeClients(ctx context.Context, cfs []*clientFactory, fresh bool) *nodeClients {
	return &nodeClients{ctx: ctx, cfs: cfs, fresh: fresh, cs: make([]*rawClient, len(cfs))}
}

// get returns the client of node.
func (nc *nodeClients) get(node int) *rawClient {
	c := nc.cs[node]
	if c == nil {
		c = nc.cfs[node].client(nc.ctx, nc.fresh)
		nc.cs[node] = c
	}
	return c
}

// Close closes every client made.
func (nc *nodeClients) Close() {
	for _, c := range nc.cs {
		if c != nil {
			c.Close()
		}
	}
}
