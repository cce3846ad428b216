package dispatcher

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"switchboard/modules"
	"switchboard/transport"
)

// Pinger sends one OPTIONS request to a destination and returns the status
// code of its final response, or an error when none came before ctx ends.
// The server's is corePinger (the transaction core's own requests, from
// the listeners); a module built without a core uses optionsPinger (a
// socket of its own per probe). SetPinger takes another.
type Pinger interface {
	Ping(ctx context.Context, p Ping) (int, error)
}

// Ping is one probe.
type Ping struct {
	Proto transport.Proto
	Dst   netip.AddrPort
	// URI is the Request-URI and the To URI: the destination.
	URI string
	// From is the From URI (probe_from).
	From string
	// Source is the local address to send from (the destination's
	// socket); the zero Addr leaves the choice to the kernel.
	Source netip.Addr
}

// ErrUnsupported is a Pinger's answer for a transport it cannot probe:
// the destination is not probed, and its state is left alone.
var ErrUnsupported = errors.New("transport not probed")

// probeConcurrency bounds the probes in flight in one round (and so the
// sockets the module's pinger holds open).
const probeConcurrency = 64

// probeLoop probes the destinations every probe_interval: those probing
// (to bring them back), and the active ones whose probe_mode is 1 (to
// take them out when they stop answering). Inactive destinations are the
// operator's: they are never probed.
func (d *Dispatcher) probeLoop() {
	defer d.wg.Done()
	for {
		ps := d.probe.Load()
		wait := ps.interval
		if wait == 0 {
			wait = time.Hour // off: wait for a settings change
		}
		tm := time.NewTimer(wait)
		select {
		case <-d.stop:
			tm.Stop()
			return
		case <-d.wakeup:
			tm.Stop()
			if d.probe.Load().interval == 0 {
				continue
			}
		case <-tm.C:
			if ps.interval == 0 {
				continue
			}
		}
		d.probeRound()
	}
}

// kickProbes starts a probe round now (settings changed).
func (d *Dispatcher) kickProbes() {
	select {
	case d.wakeup <- struct{}{}:
	default:
	}
}

// probeRound probes every destination due, at most probeConcurrency at
// a time, and returns when all have ended (each within probe_timeout,
// shorter than the interval).
func (d *Dispatcher) probeRound() {
	ps := d.probe.Load()
	t := d.tab.Load()
	sem := make(chan struct{}, probeConcurrency)
	var wg sync.WaitGroup
	for _, s := range t.sets {
		for i := range s.dests {
			ds := &s.dests[i]
			switch ds.st.load() {
			case Inactive:
				continue
			case Active:
				if !ds.probeAlways {
					continue
				}
			}
			select {
			case sem <- struct{}{}:
			case <-d.stop:
				wg.Wait()
				return
			}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				d.probeOne(ps, ds)
			}()
		}
	}
	wg.Wait()
}

func (d *Dispatcher) probeOne(ps *probeSettings, ds *dest) {
	ctx, cancel := context.WithTimeout(d.ctx, ps.timeout)
	defer cancel()
	code, err := d.pinger.Ping(ctx, Ping{Proto: ds.proto, Dst: ds.addr, URI: ds.uri, From: ps.from, Source: ds.source})
	if errors.Is(err, ErrUnsupported) {
		return
	}
	if d.ctx.Err() != nil {
		return // shutting down: a probe cut short says nothing
	}
	d.probes.Inc()
	st := ds.st
	st.lastProbe.Store(d.clock.Now())
	st.lastCode.Store(int32(code))
	if err == nil && ps.answered(code) {
		st.fails.Store(0)
		if st.load() == Probing && st.oks.Add(1) >= ps.successes {
			st.oks.Store(0)
			d.setState(st, Probing, Active, "answers probes again")
		}
		return
	}
	st.oks.Store(0)
	st.probeFailures.Inc()
	if err != nil && !errors.Is(err, errNoAnswer) {
		// Refused before or while sending (outside outbound.allow, no
		// listener for the transport, a connection refused): say why.
		d.h.Warn("dispatcher: probe failed", "set", st.key.set, "destination", st.key.uri, "err", err)
	}
	if st.fails.Add(1) >= ps.failures {
		why := "stopped answering probes"
		if err == nil {
			why = "answers probes with an error"
		}
		if d.setState(st, Active, Probing, why) {
			st.fails.Store(0)
		}
	}
}

// mark is MarkDst's change of state: Probing counts a failure, the others
// take effect at once.
func (d *Dispatcher) mark(st *dstate, to State) {
	if to != Probing {
		d.force(st, to, "marked by a route")
		return
	}
	if st.fails.Add(1) >= d.probe.Load().failures && d.setState(st, Active, Probing, "marked by a route") {
		st.fails.Store(0)
	}
}

// force puts st in state to at once (an operator's set_state, MarkDst
// with Active or Inactive) and starts its counts again. A destination
// removed from the table stays removed: MarkDst(Active) from a call that
// began before the reload does not bring it back into the snapshots
// fail-overs in progress walk.
func (d *Dispatcher) force(st *dstate, to State, why string) {
	st.fails.Store(0)
	st.oks.Store(0)
	for {
		old := State(st.state.Load())
		if old == removed || old == to {
			return
		}
		if st.state.CompareAndSwap(uint32(old), uint32(to)) {
			d.logChange(st, old, to, why)
			return
		}
	}
}

// setState moves st from one state to another unless something else moved
// it meanwhile, logs the change and counts it.
func (d *Dispatcher) setState(st *dstate, from, to State, why string) bool {
	if !st.state.CompareAndSwap(uint32(from), uint32(to)) {
		return false
	}
	d.logChange(st, from, to, why)
	return true
}

func (d *Dispatcher) logChange(st *dstate, from, to State, why string) {
	d.stateChanges.Inc()
	// A destination that flaps could log without end: Warn is rate
	// limited.
	d.h.Warn("dispatcher: destination "+to.String(), "set", st.key.set, "destination", st.key.uri, "was", from.String(), "why", why)
	d.h.Events.Begin(modules.EventDestStatus).Int("group", int64(st.key.set)).Str("address", st.key.uri).
		Str("status", to.String()).Str("old_status", from.String()).Str("reason", why).Raise()
}
