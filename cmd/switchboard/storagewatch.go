package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/mgmt"
	"switchboard/store"
)

// storageWatch pings the store once a second. While it does not answer (a
// PostgreSQL server down or cut off) the node goes on from what it holds
// in memory: registrations are in the registrar, credentials already read
// are in auth's cache; what needs the database fails (a subscriber not
// cached, a binding write, a management command that writes). /readyz
// says "degraded: storage: ..." (and stays 200: every node shares the
// database, and a health check taking them all out of service would turn a
// database outage into a full one), switchboard_storage_up is 0, and the
// log says when it starts and ends.
type storageWatch struct {
	st      *store.Store
	mgmt    *mgmt.Server
	log     *slog.Logger
	every   time.Duration
	timeout time.Duration

	up       atomic.Bool
	outages  *metrics.Counter
	stop     chan struct{}
	wg       sync.WaitGroup
	downedAt time.Time // of the outage going on; used by the watch goroutine only
}

// newStorageWatch registers the metrics; start starts the pings. timeout
// bounds each ping (at most 2s, so an outage shows within 3s).
func newStorageWatch(st *store.Store, m *mgmt.Server, log *slog.Logger, timeout time.Duration) *storageWatch {
	w := &storageWatch{st: st, mgmt: m, log: log, every: time.Second, timeout: min(timeout, 2*time.Second), stop: make(chan struct{})}
	w.up.Store(true)
	set := m.Metrics()
	set.NewGauge("switchboard_storage_up", func() float64 {
		if w.up.Load() {
			return 1
		}
		return 0
	})
	w.outages = set.NewCounter("switchboard_storage_outages_total")
	return w
}

func (w *storageWatch) start() {
	w.wg.Add(1)
	go w.run()
}

func (w *storageWatch) close() {
	close(w.stop)
	w.wg.Wait()
}

func (w *storageWatch) run() {
	defer w.wg.Done()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.check()
	}
}

func (w *storageWatch) check() {
	ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
	err := w.st.Ping(ctx)
	cancel()
	switch {
	case err != nil && w.up.Load():
		w.up.Store(false)
		w.outages.Inc()
		w.downedAt = time.Now()
		w.mgmt.SetDegraded("storage", err.Error())
		w.log.Warn("storage unavailable: serving from memory (registrations, cached credentials); database reads and writes fail until it is back", "err", err)
	case err != nil:
		w.mgmt.SetDegraded("storage", err.Error())
	case !w.up.Load():
		w.up.Store(true)
		w.mgmt.SetDegraded("storage", "")
		w.log.Info("storage available again", "after", time.Since(w.downedAt).Round(time.Second).String())
	}
}
