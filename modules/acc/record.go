package acc

import (
	"net/netip"

	"switchboard/modules/dialog"
	"switchboard/modules/internal/fieldtext"
	"switchboard/parser"
	"switchboard/store"
)

// record is a call's record on its way to the writer: what the dialog's
// end event said, copied into one buffer the record keeps between uses.
type record struct {
	missed                   bool
	start, answer, end       int64
	code                     int
	reason                   dialog.Reason
	by                       dialog.Side
	caller                   netip.AddrPort
	callID, fromTag, toTag   span
	from, to, phrase, values span
	buf                      []byte
}

type span struct{ off, n int32 }

func (r *record) put(b []byte) span {
	s := span{int32(len(r.buf)), int32(len(b))}
	r.buf = append(r.buf, b...)
	return s
}

func (r *record) get(s span) []byte { return r.buf[s.off : s.off+s.n] }

// maxKeptBuf is the largest buffer a record keeps for its next use: one
// call with long headers does not pin its memory for good.
const maxKeptBuf = 8 << 10

// onEvent is the dialog module's subscriber: at a dialog's end, the
// record is built and queued. It runs with the dialog's shard locked on
// the goroutine that ended the call (a transport reader, the ticker):
// it copies, queues and returns, allocating nothing once records are
// pooled.
func (a *Acc) onEvent(ev *dialog.Event) {
	if ev.Kind != dialog.EventEnded {
		return
	}
	failed := ev.Answer == 0
	missed := failed && ev.Flags&FlagMissed != 0
	if failed && !missed && !a.failed.Load() {
		return
	}
	r := a.get()
	r.missed = missed
	r.start, r.answer, r.end = ev.Start, ev.Answer, ev.End
	r.code, r.reason, r.by, r.caller = ev.Code, ev.Reason, ev.By, ev.Caller
	r.buf = r.buf[:0]
	r.callID = r.put(ev.CallID)
	r.fromTag = r.put(ev.FromTag)
	r.toTag = r.put(ev.ToTag)
	r.from = r.put(ev.From)
	r.to = r.put(ev.To)
	r.phrase = r.put(ev.Phrase)
	r.values = r.put(ev.Values)
	a.enqueue(r)
}

// get returns a pooled record, or a new one while the pool fills.
func (a *Acc) get() *record {
	select {
	case r := <-a.free:
		return r
	default:
		return &record{buf: make([]byte, 0, 512)}
	}
}

// release gives a record back to the pool.
func (a *Acc) release(r *record) {
	if cap(r.buf) > maxKeptBuf {
		r.buf = nil
	}
	select {
	case a.free <- r:
	default:
	}
}

// enqueue hands r to the writer, or drops it, counted and logged with
// its Call-ID, when the queue is full or the module stopped.
func (a *Acc) enqueue(r *record) {
	table := 0
	if r.missed {
		table = 1
	}
	a.sendMu.RLock()
	if a.closed {
		a.sendMu.RUnlock()
		a.late.Inc()
		a.h.Warn("acc: call ended after accounting stopped, record dropped", "call_id", string(r.get(r.callID)))
		a.release(r)
		return
	}
	select {
	case a.queue <- r:
		a.sendMu.RUnlock()
		a.queued[table].Inc()
	default:
		a.sendMu.RUnlock()
		a.full.Inc()
		a.h.Warn("acc: queue full, call record dropped (acc.queue_size; is the store slow?)",
			"call_id", string(r.get(r.callID)), "queue_size", a.queueSize)
		a.release(r)
	}
}

// cdr makes the store's record of r (the writer's goroutine). Text longer
// than the store takes is cut. The record's strings are cut from one copy
// of its text (t gathers it): one allocation instead of nine.
func (r *record) cdr(t *fieldtext.Fields) store.CDR {
	t.Reset()
	t.Add(clip(r.get(r.callID)))
	t.Add(clip(r.get(r.fromTag)))
	t.Add(clip(r.get(r.toTag)))
	t.Add(clip(r.get(r.phrase)))
	if r.caller.IsValid() {
		t.End(r.caller.AppendTo(t.Buf()))
	} else {
		t.Add(nil)
	}
	addURIAndUser(t, r.get(r.from))
	addURIAndUser(t, r.get(r.to))
	t.Copy()
	c := store.CDR{
		Missed: r.missed, CallID: t.Next(), FromTag: t.Next(), ToTag: t.Next(),
		Start: r.start, Answer: r.answer, End: r.end, Code: r.code, Reason: t.Next(), Caller: t.Next(),
		EndReason: r.reason.String(), EndedBy: r.by.String(),
	}
	if c.Answer != 0 {
		c.Duration = c.End - c.Answer
	}
	c.FromURI, c.FromUser = t.Next(), t.Next()
	c.ToURI, c.ToUser = t.Next(), t.Next()
	vals := dialog.Values(r.get(r.values))
	if n := vals.Len(); n > 0 {
		c.Extra = make(map[string]string, n)
		vals.Each(func(k, v []byte) { c.Extra[string(k)] = string(clip(v)) })
	}
	return c
}

// addURIAndUser adds the URI of a From or To value and its user part (""
// for a URI without one); the raw value when it does not parse.
func addURIAndUser(t *fieldtext.Fields, v []byte) {
	na, ok := parser.ParseNameAddr(v)
	if !ok {
		t.Add(clip(v))
		t.Add(nil)
		return
	}
	u, err := parser.ParseURI(na.URI)
	t.Add(clip(na.URI))
	if err != nil {
		t.Add(nil)
		return
	}
	t.Add(clip(u.User))
}

// clip cuts b at the store's limit for a field.
func clip(b []byte) []byte {
	if len(b) > store.MaxCDRText {
		b = b[:store.MaxCDRText]
	}
	return b
}
