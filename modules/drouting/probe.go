package drouting

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"switchboard/modules"
	"switchboard/parser"
	"switchboard/txn"
)

// Gateways are probed with OPTIONS from the proxy (txn.Core.SendLocal):
// probe_mode 2 always, probe_mode 1 only while the gateway is down. A
// gateway is marked down after probe_failures failed probes in a row (no
// answer before the next probe is due, or an answer that is neither 2xx
// nor in probe_reply_codes), and up again after probe_successes answered
// ones. Calls count too: a probed gateway that sends nothing at all to a
// call (UseNextGW sees the core's own 408 or 503) counts as a failed probe,
// so with probe_mode 1 the first silent calls take it out and probing
// brings it back.

// probeTick is how often the probe goroutine looks for gateways due;
// idleProbeTick how often while no gateway is probed at all (a probing
// gateway loaded by a reload is then probed within a second), so that a
// server without probing does not wake ten times a second for it.
const (
	probeTick     = 100 * time.Millisecond
	idleProbeTick = time.Second
)

type probeSettings struct {
	interval  int64 // ms
	failures  int
	successes int
	from      string
	codes     []int
}

func newProbeSettings(s *Settings) *probeSettings {
	return &probeSettings{interval: s.ProbeInterval.Milliseconds(), failures: s.ProbeFailures, successes: s.ProbeSuccesses,
		from: s.ProbeFrom, codes: append([]int(nil), s.ProbeReplyCodes...)}
}

func (ps *probeSettings) answered(code int) bool {
	if code >= 200 && code < 300 {
		return true
	}
	for _, c := range ps.codes {
		if c == code {
			return true
		}
	}
	return false
}

// probeDue sends an OPTIONS to every gateway whose probe is due. It runs
// on the module's goroutine and reads the probe list the last gateway load
// published, so a long rule load does not hold probes up. A probe still
// unanswered when the next is due failed (the core would wait 64·T1).
func (d *Drouting) probeDue() (probing bool) {
	core := d.h.Originator
	list := d.probeList.Load()
	if !core.Ready() || list == nil {
		return true // not started yet: look again soon
	}
	ps := d.probe.Load()
	now := d.clock.Now()
	for _, s := range *list {
		g := s.cfg.Load()
		if g == nil || g.disabled || g.probeMode == 0 {
			continue
		}
		probing = true
		if g.probeMode == 1 && !s.down.Load() {
			continue
		}
		s.mu.Lock()
		if now-s.lastProbe < ps.interval {
			s.mu.Unlock()
			continue
		}
		timedOut := s.inFlight
		s.probeGen++
		gen := s.probeGen
		s.inFlight, s.lastProbe = true, now
		s.mu.Unlock()
		if timedOut {
			d.probeFailed.Inc()
			d.outcome(s, false, "probe", 408)
		}
		d.probeSeq++
		msg := probeMessage(d.probeBuf[:0], g, ps.from, d.probeSeq)
		d.probeBuf = msg
		err := core.SendLocal(txn.LocalRequest{Proto: g.proto, Dst: g.addr, Message: msg},
			func(code int, resp *parser.Message) { d.probed(s, gen, code, resp) })
		if err != nil {
			// Not sent (outside outbound.allow, no listener for its
			// transport): a failed probe, and the reason in the log.
			d.h.Warn("drouting: probe not sent", "gwid", s.id, "address", g.hostport, "err", err)
			d.probed(s, gen, 503, nil)
		}
	}
	return probing
}

// probeMessage writes the OPTIONS for g, without a Via (the core adds
// it). The Call-ID and the From tag are the process's random prefix and a
// sequence number.
func probeMessage(dst []byte, g *gateway, from string, seq uint64) []byte {
	n := strconv.AppendUint(nil, seq, 10)
	dst = append(dst, "OPTIONS "...)
	dst = append(dst, g.probeURI...)
	dst = append(dst, " SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <"...)
	dst = append(dst, from...)
	dst = append(dst, ">;tag="...)
	dst = append(dst, probeID...)
	dst = append(dst, n...)
	dst = append(dst, "\r\nTo: <"...)
	dst = append(dst, g.probeURI...)
	dst = append(dst, ">\r\nCall-ID: "...)
	dst = append(dst, probeID...)
	dst = append(dst, '-')
	dst = append(dst, n...)
	dst = append(dst, "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"...)
	return dst
}

// probeID makes this process's probes' Call-IDs its own.
var probeID = func() string {
	var b [8]byte
	rand.Read(b[:])
	return "drp" + hex.EncodeToString(b[:])
}()

// probed records the outcome of probe gen: code and the response (nil
// when none came). It runs on a core goroutine and only updates the slot;
// the answer of a probe given up already is ignored.
func (d *Drouting) probed(s *gwSlot, gen uint64, code int, resp *parser.Message) {
	s.mu.Lock()
	stale := gen != s.probeGen || !s.inFlight
	if !stale {
		s.inFlight = false
	}
	s.mu.Unlock()
	if stale {
		return
	}
	ok := resp != nil && d.probe.Load().answered(code)
	if ok {
		d.probeOK.Inc()
	} else {
		d.probeFailed.Inc()
	}
	d.outcome(s, ok, "probe", code)
}

// silent counts a call the gateway sent nothing to as a failed probe,
// when the gateway is probed (otherwise nothing would bring it back).
func (d *Drouting) silent(g *gateway) {
	if g.probeMode == 0 {
		return
	}
	d.outcome(g.slot, false, "call", 0)
}

// outcome updates the counts in a row and the up/down state.
func (d *Drouting) outcome(s *gwSlot, ok bool, by string, code int) {
	ps := d.probe.Load()
	s.mu.Lock()
	if ok {
		s.oks++
		s.fails = 0
	} else {
		s.fails++
		s.oks = 0
	}
	down := s.down.Load()
	change := ok && down && s.oks >= ps.successes || !ok && !down && s.fails >= ps.failures
	if change {
		s.down.Store(!down)
	}
	fails := s.fails
	s.mu.Unlock()
	if !change {
		return
	}
	status := "up"
	if !down {
		status = "down"
	}
	address := ""
	if g := s.cfg.Load(); g != nil {
		address = g.hostport
	}
	d.h.Events.Begin(modules.EventGatewayStatus).Str("gwid", s.id).Str("address", address).Str("status", status).
		Int("failures", int64(fails)).Str("by", by).Int("code", int64(code)).Raise()
	if down {
		d.log.Info("drouting: gateway up", "gwid", s.id)
	} else {
		d.h.Warn("drouting: gateway down", "gwid", s.id, "failures", fails, "last", by, "code", code)
	}
}

// resetProbe forgets what probing learnt: the gateway is up until probed
// otherwise (a new address, a gateway deleted or enabled again).
func (s *gwSlot) resetProbe() {
	s.mu.Lock()
	s.fails, s.oks, s.lastProbe = 0, 0, 0
	s.down.Store(false)
	s.mu.Unlock()
}
