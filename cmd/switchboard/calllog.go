package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"sync/atomic"
)

// callLogSink receives the log lines about a call: the siptrace module,
// which sends them to Homer as HEP type 100 (siptrace.logs). LogsOn is
// asked first, so that a line is formatted only when it goes somewhere.
type callLogSink interface {
	LogsOn() bool
	Log(callID []byte, src netip.AddrPort, line []byte)
}

// callLogHandler passes every record to next and, when a sink is set,
// hands the records that carry a call_id (the core's per-call lines and
// every line of a trace.start trace) to it as one text line. Only log
// lines pay for it, never the message path.
type callLogHandler struct {
	next  slog.Handler
	sink  *atomic.Pointer[callLogSink]
	attrs []slog.Attr // from WithAttrs, for the sink's line
	group bool        // a WithGroup was applied: the sink's line is not built
}

func newCallLogHandler(next slog.Handler, sink *atomic.Pointer[callLogSink]) *callLogHandler {
	return &callLogHandler{next: next, sink: sink}
}

func (h *callLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *callLogHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.next.Handle(ctx, r)
	if p := h.sink.Load(); p != nil && !h.group && (*p).LogsOn() {
		h.toSink(ctx, *p, r)
	}
	return err
}

func (h *callLogHandler) toSink(ctx context.Context, sink callLogSink, r slog.Record) {
	var callID, src string
	find := func(a slog.Attr) bool {
		switch a.Key {
		case "call_id":
			callID = a.Value.String()
		case "src":
			src = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		find(a)
	}
	r.Attrs(find)
	if callID == "" {
		return
	}
	var buf bytes.Buffer
	th := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	th.WithAttrs(h.attrs).Handle(ctx, r)
	line := bytes.TrimRight(buf.Bytes(), "\n")
	ap, _ := netip.ParseAddrPort(src)
	sink.Log([]byte(callID), ap, line)
}

func (h *callLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &callLogHandler{next: h.next.WithAttrs(attrs), sink: h.sink, attrs: append(append([]slog.Attr(nil), h.attrs...), attrs...), group: h.group}
}

func (h *callLogHandler) WithGroup(name string) slog.Handler {
	return &callLogHandler{next: h.next.WithGroup(name), sink: h.sink, attrs: h.attrs, group: true}
}
