// Command golongpoll-peer is the jcuga/golongpoll peer that bench/compare.sh
// measures longpoll against. It serves the library's own handlers and adds
// nothing to their behaviour:
//
//	GET  /events?category=C&timeout=S&since_time=MS&last_id=UUID  SubscriptionHandler
//	POST /publish {"category":C,"data":...}                        PublishHandler
//	POST /publish-batch [{"category":C,"data":...}, ...]            one Publish per item (bench addition)
//	GET  /healthz                                                   {"status":"ok"}
//
// It lives in its own module so that golongpoll never enters longpoll's
// go.mod. Options are the library defaults (250 buffered events per category,
// events kept forever) except the maximum poll timeout, which matches
// longpoll's --max-poll-timeout 120s.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jcuga/golongpoll"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	maxTimeout := flag.Int("max-timeout", 120, "maximum client timeout in seconds")
	buffer := flag.Int("buffer", 250, "events buffered per category (library default 250)")
	flag.Parse()

	mgr, err := golongpoll.StartLongpoll(golongpoll.Options{
		MaxLongpollTimeoutSeconds: *maxTimeout,
		MaxEventBufferSize:        *buffer,
	})
	if err != nil {
		log.Fatalf("start golongpoll: %v", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /events", mgr.SubscriptionHandler)
	mux.HandleFunc("POST /publish", mgr.PublishHandler)
	mux.HandleFunc("POST /publish-batch", func(w http.ResponseWriter, r *http.Request) {
		var items []golongpoll.PublishData
		if err := json.NewDecoder(io.LimitReader(r.Body, 16<<20)).Decode(&items); err != nil {
			http.Error(w, `{"error":"invalid json"}`, http.StatusBadRequest)
			return
		}
		for _, it := range items {
			if it.Category == "" || it.Data == nil {
				http.Error(w, `{"error":"category and data required"}`, http.StatusBadRequest)
				return
			}
		}
		for _, it := range items {
			if err := mgr.Publish(it.Category, it.Data); err != nil {
				http.Error(w, `{"error":"publish failed"}`, http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"success":true}`)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})

	srv := &http.Server{
		Addr:              *addr,
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      time.Duration(*maxTimeout+10) * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
	mgr.ShutdownWithTimeout(2)
}
