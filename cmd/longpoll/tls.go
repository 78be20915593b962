package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is how often, at most, the certificate files are
// checked for a renewal (during a handshake).
const certCheckInterval = time.Minute

// certReloader serves the certificate of --tls-cert/--tls-key and picks up
// a renewed pair (new modification times) without a restart; a pair that
// fails to load is logged and the previous one kept. Safe for concurrent
// use.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of the loaded files
	checked time.Time
}

// newCertReloader loads the pair once; an error names the files.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	cert, stamp, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.checked = cert, stamp, r.now()
	return r, nil
}

func (r *certReloader) load() (*tls.Certificate, [2]time.Time, error) {
	var stamp [2]time.Time
	for i, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, stamp, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		stamp[i] = fi.ModTime()
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, stamp, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	return &cert, stamp, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < certCheckInterval {
		return r.cert, nil
	}
	r.checked = now
	var stamp [2]time.Time
	for i, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			stamp[i] = fi.ModTime()
		}
	}
	if stamp == r.stamp {
		return r.cert, nil
	}
	cert, stamp, err := r.load()
	if err != nil {
		r.log.Warn("reloading the TLS certificate failed; keeping the previous one", "err", err)
		return r.cert, nil
	}
	r.cert, r.stamp = cert, stamp
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	return r.cert, nil
}

// tlsConfig is the server's TLS configuration: TLS 1.2 or later, the
// reloader's certificate. HTTP/2 is negotiated by http.Server.
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
