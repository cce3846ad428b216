package dialog

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// The proxy ends a confirmed dialog itself (its timeout, dialog.end) with
// a BYE to each side, as each side expects it from the other (RFC 3261
// §12.2.1.1, §15):
//
//	towards the callee                       towards the caller
//	BYE <callee's Contact>                   BYE <caller's Contact>
//	Route: the Record-Route above ours,      Route: the Record-Route of the
//	       reversed                                 INVITE as it reached us
//	From: the INVITE's From (caller's tag)   From: the INVITE's To;tag=callee's
//	To: the INVITE's To;tag=callee's         To: the INVITE's From
//	CSeq: the caller's last + 1              CSeq: the callee's last + 1
//
// Each goes to the first hop the dialog's requests took that way: the
// source of the INVITE (the caller, or the proxy before us), the
// destination of the branch that was answered (the callee, or the next
// proxy): addresses that worked, behind NAT too. The BYEs are the
// proxy's own requests (Host.Originator, txn.Core.SendLocal), built under
// the dialog's lock and sent from a goroutine of the module.

// bye is one BYE to send, or an INVITE to cancel (cancel set, msg nil).
type bye struct {
	proto  transport.Proto
	dst    netip.AddrPort
	msg    []byte
	cancel txn.Ref
}

// byeQueue holds the BYEs built under a shard lock until the module's
// goroutine sends them. It is unbounded, but holds at most two BYEs per
// dialog, and dialogs are bounded by max_dialogs.
type byeQueue struct {
	mu   sync.Mutex
	q    []bye
	wake chan struct{}
	// pending counts the BYEs queued and not yet answered (or failed):
	// Drain waits for them.
	pending atomic.Int64
}

func (b *byeQueue) push(x bye) {
	b.pending.Add(1)
	b.mu.Lock()
	b.q = append(b.q, x)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *byeQueue) take() []bye {
	b.mu.Lock()
	q := b.q
	b.q = nil
	b.mu.Unlock()
	return q
}

// queueByes builds the BYEs that end e both ways. The shard is locked.
func (d *Dialog) queueByes(e *shards.Entry[dlg]) {
	g := &e.Value
	// To the caller: From and To swapped, the callee's tag on From.
	d.byes.push(bye{proto: g.proto[toCaller], dst: g.hop[toCaller].AddrPort(),
		msg: d.appendBye(nil, e, toCaller)})
	if g.hasCallee {
		d.byes.push(bye{proto: g.proto[toCallee], dst: g.hop[toCallee].AddrPort(),
			msg: d.appendBye(nil, e, toCallee)})
	}
}

// appendBye writes the BYE towards side i of g: the CSeq the other side
// would use next, one above the last we saw from it (the callee's first
// in-dialog request starts it at 1), in the callee's numbering towards
// the callee.
func (d *Dialog) appendBye(dst []byte, e *shards.Entry[dlg], i int) []byte {
	return appendInDialog(dst, e, i, "BYE", lastCSeq(&e.Value, i)+1,
		"Reason: SIP;cause=200;text=\"dialog ended by the proxy\"\r\n")
}

// lastCSeq is the last CSeq number side i got from the other side, in
// i's numbering.
func lastCSeq(g *dlg, i int) uint32 {
	if i == toCallee {
		return g.cseq[toCaller] + g.cseqOffset
	}
	return g.cseq[toCallee]
}

// appendInDialog writes a request of the proxy's own towards side i of
// g, as the other side would send it (RFC 3261 §12.2.1.1): the target as
// Request-URI, the route set, From and To swapped towards the caller and
// as the callee has them towards the callee, the Call-ID, and cseq.
// extra are header lines (each with its CRLF).
func appendInDialog(dst []byte, e *shards.Entry[dlg], i int, method string, cseq uint32, extra string) []byte {
	g := &e.Value
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, g.get(g.target[i])...)
	dst = append(dst, " SIP/2.0\r\n"...)
	if r := g.get(g.route[i]); len(r) > 0 {
		dst = append(dst, "Route: "...)
		dst = append(dst, r...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Max-Forwards: 70\r\n"...)
	if i == toCallee {
		// As the callee has them, a route's rewriting included.
		dst = append(dst, "From: "...)
		if g.calleeFrom.n > 0 {
			dst = append(dst, g.get(g.calleeFrom)...)
		} else {
			dst = append(dst, g.get(g.from)...)
		}
		dst = append(dst, "\r\nTo: "...)
		if g.calleeTo.n > 0 {
			dst = append(dst, g.get(g.calleeTo)...)
		} else {
			dst = appendWithTag(dst, g.get(g.to), g.get(g.toTag))
		}
	} else {
		dst = append(dst, "From: "...)
		dst = appendWithTag(dst, g.get(g.to), g.get(g.toTag))
		dst = append(dst, "\r\nTo: "...)
		dst = append(dst, g.get(g.from)...)
	}
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, e.Key()...)
	dst = append(dst, "\r\nCSeq: "...)
	dst = strconv.AppendUint(dst, uint64(cseq), 10)
	dst = append(dst, ' ')
	dst = append(dst, method...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, extra...)
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// appendWithTag appends the INVITE's To value (which has no tag: the
// INVITE was an initial one) with the callee's tag.
func appendWithTag(dst, v, tag []byte) []byte {
	dst = append(dst, v...)
	if len(tag) > 0 {
		dst = append(dst, ";tag="...)
		dst = append(dst, tag...)
	}
	return dst
}

// byeLoop sends the queued BYEs until Stop.
func (d *Dialog) byeLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.stop:
			d.sendByes() // what the last timeouts queued
			return
		case <-d.byes.wake:
			d.sendByes()
		}
	}
}

func (d *Dialog) sendByes() {
	for _, b := range d.byes.take() {
		if b.msg == nil {
			// Off the dialog's lock: the core locks the INVITE's shard,
			// from which it calls the dialog's watcher.
			if d.h.Originator.Cancel(b.cancel) {
				d.cancels.Inc()
			}
			d.byes.pending.Add(-1)
			continue
		}
		err := d.h.Originator.SendLocal(txn.LocalRequest{Proto: b.proto, Dst: b.dst, Message: b.msg}, func(code int, _ *parser.Message) {
			if code >= 300 && code != 481 {
				d.byeFailed.Inc()
			}
			d.byes.pending.Add(-1)
		})
		if err != nil {
			d.byes.pending.Add(-1)
			d.byeFailed.Inc()
			d.log.Warn("dialog: BYE not sent", "dst", b.dst.String(), "error", err)
			continue
		}
		d.byeSent.Inc()
	}
}
