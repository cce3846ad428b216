package nathelper

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules"
	"switchboard/modules/registrar"
	"switchboard/parser"
	"switchboard/transport"
	"switchboard/txn"
)

// The keepalive of NATed contacts (OpenSIPS natping_interval with
// sipping_method, Kamailio the same). The registrar schedules it: each
// address-of-record with a NATed UDP binding has a timer on its shard's
// timing wheel at a phase of its own, so the pings of all phones are
// spread over the interval (registrar.SetKeepalive). When one fires, the
// registrar hands its bindings to queue, on the clock's goroutine with the
// shard locked; queue only copies the target into a bounded batch. The
// sender goroutine sends the batch: an OPTIONS through the transaction
// core from the listener the phone registered on (the only one its NAT
// lets in), or a CRLF CRLF or four zero bytes. An OPTIONS answered by
// any final response starts the binding's count of failures again; one
// unanswered within ping_timeout adds one, and ping_failures in a row
// hand it to the remover goroutine, which takes it out of the location
// service and the store (RemoveUnreachable may wait for the store).

// maxQueued bounds the pings waiting to be sent: far more than one clock
// tick's worth at any rate a proxy sees; past it pings are dropped and
// counted (the phone is pinged again next interval).
const maxQueued = 65536

// keepSettings are the keepalive's settings.
type keepSettings struct {
	interval time.Duration // 0: off
	method   int
	timeout  time.Duration
	failures int
	from     string
}

type keeper struct {
	h   *modules.Host
	reg *registrar.Registrar
	cfg atomic.Pointer[keepSettings]

	paused atomic.Bool // nathelper.ping {"enable": false}

	mu   sync.Mutex
	in   batch // filled by queue
	wake chan struct{}

	removals chan removal
	stopCh   chan struct{}
	wg       sync.WaitGroup
	started  bool
	idPrefix string
	seq      atomic.Uint64

	sent, answered, failed, dropped, removed *metrics.Counter
}

// batch holds queued pings; the targets' bytes live in one buffer.
type batch struct {
	jobs  []pingJob
	bytes []byte
}

type pingJob struct {
	id           registrar.BindingID
	proto        transport.Proto
	dst, socket  netip.AddrPort
	aor, contact [2]int32 // offsets in batch.bytes
}

type removal struct {
	id  registrar.BindingID
	dst netip.AddrPort
	aor string
}

func newKeeper(h *modules.Host, reg *registrar.Registrar) *keeper {
	var rnd [6]byte
	rand.Read(rnd[:])
	k := &keeper{
		h: h, reg: reg, wake: make(chan struct{}, 1), removals: make(chan removal, 1024),
		stopCh: make(chan struct{}), idPrefix: hex.EncodeToString(rnd[:]),
	}
	set := h.Metrics
	k.sent = set.NewCounter("switchboard_nathelper_pings_sent_total")
	k.answered = set.NewCounter("switchboard_nathelper_pings_answered_total")
	k.failed = set.NewCounter("switchboard_nathelper_pings_failed_total")
	k.dropped = set.NewCounter("switchboard_nathelper_pings_dropped_total")
	k.removed = set.NewCounter("switchboard_nathelper_contacts_removed_total")
	k.cfg.Store(&keepSettings{})
	return k
}

// configure takes new settings and hands the schedule to the registrar.
func (k *keeper) configure(s keepSettings) {
	old := k.cfg.Swap(&s)
	if old.interval != s.interval {
		k.reg.SetKeepalive(s.interval, k.queue)
	}
}

func (k *keeper) start() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.started {
		return
	}
	k.started = true
	k.wg.Add(2)
	go k.sendLoop()
	go k.removeLoop()
}

func (k *keeper) stop() {
	k.reg.SetKeepalive(0, nil)
	k.mu.Lock()
	started := k.started
	k.started = false
	k.mu.Unlock()
	if started {
		close(k.stopCh)
		k.wg.Wait()
	}
}

// queue is the registrar's Ping: it copies t into the batch and wakes the
// sender. It runs with a registrar shard locked: no I/O, no waiting.
func (k *keeper) queue(t *registrar.KeepaliveTarget) {
	if k.paused.Load() {
		return
	}
	k.mu.Lock()
	b := &k.in
	if len(b.jobs) >= maxQueued {
		k.mu.Unlock()
		k.dropped.Inc()
		return
	}
	j := pingJob{id: t.ID, proto: t.Proto, dst: t.Dst, socket: t.Socket}
	j.aor[0] = int32(len(b.bytes))
	b.bytes = append(b.bytes, t.AOR...)
	j.aor[1] = int32(len(b.bytes))
	j.contact[0] = j.aor[1]
	b.bytes = append(b.bytes, t.Contact...)
	j.contact[1] = int32(len(b.bytes))
	b.jobs = append(b.jobs, j)
	k.mu.Unlock()
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// sendLoop sends what was queued, one batch at a time: the batch is taken
// under the lock and sent without it, so queue never waits for a send.
func (k *keeper) sendLoop() {
	defer k.wg.Done()
	var out batch
	var msg []byte
	for {
		select {
		case <-k.stopCh:
			return
		case <-k.wake:
		}
		k.mu.Lock()
		k.in, out = out, k.in
		k.in.jobs, k.in.bytes = k.in.jobs[:0], k.in.bytes[:0]
		k.mu.Unlock()
		cfg := k.cfg.Load()
		for i := range out.jobs {
			j := &out.jobs[i]
			msg = k.send(cfg, j, out.bytes[j.aor[0]:j.aor[1]], out.bytes[j.contact[0]:j.contact[1]], msg)
		}
	}
}

var (
	crlfPing = []byte("\r\n\r\n")
	nullPing = []byte{0, 0, 0, 0}
)

// send pings one binding; msg is scratch for the OPTIONS.
func (k *keeper) send(cfg *keepSettings, j *pingJob, aor, contact, msg []byte) []byte {
	orig := k.h.Originator
	if cfg.method != pingOptions {
		data := crlfPing
		if cfg.method == pingNull {
			data = nullPing
		}
		if err := orig.SendKeepalive(j.proto, j.socket, j.dst, data); err != nil {
			k.failed.Inc()
			k.h.Warn("nathelper: keepalive not sent", "aor", string(aor), "received", j.dst.String(), "err", err)
			return msg
		}
		k.sent.Inc()
		return msg
	}
	msg = k.appendOptions(msg[:0], cfg, aor, contact)
	id, dst, failures := j.id, j.dst, cfg.failures
	aorCopy := string(aor)
	err := orig.SendLocal(txn.LocalRequest{Proto: j.proto, Dst: j.dst, Source: j.socket, Timeout: cfg.timeout, Once: true, Message: msg},
		func(code int, resp *parser.Message) {
			if resp != nil {
				// Any final answer: the phone is there (a 404 or 405 to
				// OPTIONS as well).
				k.answered.Inc()
				k.reg.PingAnswered(id, dst)
				return
			}
			k.fail(id, dst, failures, aorCopy)
		})
	if err != nil {
		k.h.Warn("nathelper: keepalive not sent", "aor", aorCopy, "received", dst.String(), "err", err)
		k.fail(id, dst, failures, aorCopy)
		return msg
	}
	k.sent.Inc()
	return msg
}

// fail counts an unanswered ping and, at the limit, hands the binding to
// the remover.
func (k *keeper) fail(id registrar.BindingID, dst netip.AddrPort, failures int, aor string) {
	k.failed.Inc()
	if n := k.reg.PingFailed(id, dst); failures > 0 && n >= failures {
		select {
		case k.removals <- removal{id, dst, aor}:
		default: // full: the next failure hands it over again
		}
	}
}

func (k *keeper) removeLoop() {
	defer k.wg.Done()
	for {
		select {
		case <-k.stopCh:
			return
		case r := <-k.removals:
			failures := k.cfg.Load().failures
			if failures == 0 {
				continue
			}
			ok, err := k.reg.RemoveUnreachable(r.id, r.dst, failures)
			if err != nil {
				k.h.Logger().Error("nathelper: removing an unreachable contact", "aor", r.aor, "received", r.dst.String(), "err", err)
			}
			if ok {
				k.removed.Inc()
				k.h.Warn("nathelper: contact removed: keepalives unanswered", "aor", r.aor, "received", r.dst.String(), "failures", failures)
			}
		}
	}
}

// appendOptions writes the OPTIONS for a contact (without Via: the core
// adds it): Request-URI and To the contact (its URI headers dropped: a
// Request-URI has none), From ping_from or sip:keepalive@<AOR domain>.
func (k *keeper) appendOptions(dst []byte, cfg *keepSettings, aor, contact []byte) []byte {
	if i := bytes.IndexByte(contact, '?'); i >= 0 {
		contact = contact[:i]
	}
	n := k.seq.Add(1)
	dst = append(dst, "OPTIONS "...)
	dst = append(dst, contact...)
	dst = append(dst, " SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <"...)
	if cfg.from != "" {
		dst = append(dst, cfg.from...)
	} else {
		dst = append(dst, "sip:keepalive@"...)
		if i := bytes.LastIndexByte(aor, '@'); i >= 0 {
			dst = append(dst, aor[i+1:]...)
		} else {
			dst = append(dst, "localhost"...)
		}
	}
	dst = append(dst, ">;tag=nh"...)
	dst = appendUint(dst, n)
	dst = append(dst, "\r\nTo: <"...)
	dst = append(dst, contact...)
	dst = append(dst, ">\r\nCall-ID: nh-"...)
	dst = append(dst, k.idPrefix...)
	dst = append(dst, '-')
	dst = appendUint(dst, n)
	dst = append(dst, "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
	return dst
}

// keepStatus is what nathelper.ping reports.
type keepStatus struct {
	Enabled  bool   `json:"enabled"`
	Interval string `json:"interval"`
	Method   string `json:"method"`
	Failures int    `json:"remove_after_failures"`
	Sent     uint64 `json:"pings_sent"`
	Answered uint64 `json:"pings_answered"`
	Failed   uint64 `json:"pings_failed"`
	Removed  uint64 `json:"contacts_removed"`
}

func (k *keeper) status() keepStatus {
	cfg := k.cfg.Load()
	return keepStatus{
		Enabled: cfg.interval > 0 && !k.paused.Load(), Interval: cfg.interval.String(),
		Method: [...]string{"options", "crlf", "null"}[cfg.method], Failures: cfg.failures,
		Sent: k.sent.Get(), Answered: k.answered.Get(), Failed: k.failed.Get(), Removed: k.removed.Get(),
	}
}
