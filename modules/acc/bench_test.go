package acc

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"switchboard/modules/dialog"
)

// benchEvent is the end event of an answered call with the headers of a
// phone and two extra pairs.
func benchEvent() *dialog.Event {
	ev := endEvent("3c26d6a8e1f4a9b7c0d2e3f4@192.0.2.7", `"Alice Smith" <sip:alice@example.com>;tag=9fxced76sl`,
		"<sip:+4930123456@example.com>;tag=8321234356")
	ev.Values = dialog.Values("\x07account\x00\x041001\x04plan\x00\x04gold")
	return ev
}

// BenchmarkEvent is the receive path's share of accounting: the end
// event copied into a pooled record and queued. The queue is emptied
// (the records given back to the pool, as the writer does) outside the
// timing whenever it is full.
func BenchmarkEvent(b *testing.B) {
	s := DefaultSettings()
	e := newEnv(b, s, false)
	a := e.a
	ev := benchEvent()
	for range s.QueueSize { // every record the queue can hold, pooled
		a.onEvent(ev)
	}
	a.drain()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(a.queue) == cap(a.queue) {
			b.StopTimer()
			a.drain()
			b.StartTimer()
		}
		a.onEvent(ev)
	}
	b.StopTimer()
	if a.full.Get() != 0 {
		b.Fatalf("%d records dropped at a full queue", a.full.Get())
	}
}

// queuedWriter is the module with settings s and b.N end events of
// different calls queued, its writer not started (Stop writes them); the
// timer starts there.
func queuedWriter(b *testing.B, s *Settings) *env {
	s.QueueSize = max(b.N, 1)
	e := newEnv(b, s, false)
	ev := benchEvent()
	for i := range b.N {
		ev.CallID = fmt.Appendf(ev.CallID[:0], "%d@bench", i)
		e.a.onEvent(ev)
	}
	b.ReportAllocs()
	b.ResetTimer()
	return e
}

// BenchmarkWriter is the writer's throughput: b.N end events queued,
// then Stop, which returns once all are in the store (SQLite, batches of
// batch_size in one transaction each). rows/s counts records committed.
func BenchmarkWriter(b *testing.B) {
	for _, batch := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := DefaultSettings()
			s.BatchSize = batch
			e := queuedWriter(b, s)
			start := time.Now()
			e.a.Stop()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			if got := int(e.a.written[sinkStore].Get()); got != b.N {
				b.Fatalf("%d written of %d", got, b.N)
			}
		})
	}
}

// BenchmarkFileWriter is the writer's cost per record with the file sink
// alone (acc.store false): the record built, formatted and written, in
// batches of 256.
func BenchmarkFileWriter(b *testing.B) {
	for _, format := range []string{"csv", "json"} {
		b.Run("format="+format, func(b *testing.B) {
			s := DefaultSettings()
			s.Store = false
			s.File = filepath.Join(b.TempDir(), "acc."+format)
			s.Format = format
			e := queuedWriter(b, s)
			e.a.Stop()
			if got := int(e.a.written[sinkFile].Get()); got != b.N {
				b.Fatalf("%d written of %d", got, b.N)
			}
		})
	}
}

// BenchmarkCall is one whole call through the core (callLoop: INVITE,
// 200, BYE, with a dialog and an extra pair) with accounting off (no
// subscriber) and on (the end event copied and queued; the queue emptied
// outside the timing, the writing is BenchmarkWriter's): what the
// receive path pays for accounting.
func BenchmarkCall(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "dialog"
		if on {
			name = "dialog+acc"
		}
		b.Run(name, func(b *testing.B) {
			s := DefaultSettings()
			s.Store = on
			s.QueueSize = 4096
			e := newEnv(b, s, false)
			call := callLoop(b, e)
			// Warm: the core's and the dialogs' pools, and as many
			// records as the queue holds.
			for i := range 5000 + s.QueueSize {
				if i == 5000 {
					e.a.drain()
				}
				call()
			}
			e.a.drain()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if len(e.a.queue) == cap(e.a.queue) {
					b.StopTimer()
					e.a.drain()
					b.StartTimer()
				}
				call()
			}
		})
	}
}
