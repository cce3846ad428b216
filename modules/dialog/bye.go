package dialog

import (
	"net/netip"
	"strconv"
	"sync"

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

// bye is one BYE to send.
type bye struct {
	proto transport.Proto
	dst   netip.AddrPort
	msg   []byte
}

// byeQueue holds the BYEs built under a shard lock until the module's
// goroutine sends them. It is unbounded, but holds at most two BYEs per
// dialog, and dialogs are bounded by max_dialogs.
type byeQueue struct {
	mu   sync.Mutex
	q    []bye
	wake chan struct{}
}

func (b *byeQueue) push(x bye) {
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
	d.byes.push(bye{proto: g.proto[toCaller], dst: g.hop[toCaller],
		msg: d.appendBye(nil, e, toCaller)})
	if g.hasCallee {
		d.byes.push(bye{proto: g.proto[toCallee], dst: g.hop[toCallee],
			msg: d.appendBye(nil, e, toCallee)})
	}
}

// appendBye writes the BYE towards side i of g.
func (d *Dialog) appendBye(dst []byte, e *shards.Entry[dlg], i int) []byte {
	g := &e.Value
	dst = append(dst, "BYE "...)
	dst = append(dst, g.get(g.target[i])...)
	dst = append(dst, " SIP/2.0\r\n"...)
	if r := g.get(g.route[i]); len(r) > 0 {
		dst = append(dst, "Route: "...)
		dst = append(dst, r...)
		dst = append(dst, "\r\n"...)
	}
	dst = append(dst, "Max-Forwards: 70\r\n"...)
	if i == toCallee {
		dst = append(dst, "From: "...)
		dst = append(dst, g.get(g.from)...)
		dst = append(dst, "\r\nTo: "...)
		dst = appendWithTag(dst, g.get(g.to), g.get(g.toTag))
	} else {
		dst = append(dst, "From: "...)
		dst = appendWithTag(dst, g.get(g.to), g.get(g.toTag))
		dst = append(dst, "\r\nTo: "...)
		dst = append(dst, g.get(g.from)...)
	}
	dst = append(dst, "\r\nCall-ID: "...)
	dst = append(dst, e.Key()...)
	dst = append(dst, "\r\nCSeq: "...)
	// The CSeq the other side would use next: one above the last we saw
	// from it (the callee's first in-dialog request starts it at 1).
	other := toCallee
	if i == toCallee {
		other = toCaller
	}
	dst = strconv.AppendUint(dst, uint64(g.cseq[other])+1, 10)
	dst = append(dst, " BYE\r\nReason: SIP;cause=200;text=\"dialog ended by the proxy\"\r\nContent-Length: 0\r\n\r\n"...)
	return dst
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
		err := d.h.Originator.SendLocal(txn.LocalRequest{Proto: b.proto, Dst: b.dst, Message: b.msg}, func(code int, _ *parser.Message) {
			if code >= 300 && code != 481 {
				d.byeFailed.Inc()
			}
		})
		if err != nil {
			d.byeFailed.Inc()
			d.log.Warn("dialog: BYE not sent", "dst", b.dst.String(), "error", err)
			continue
		}
		d.byeSent.Inc()
	}
}
