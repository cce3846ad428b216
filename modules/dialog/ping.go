package dialog

import (
	"net/netip"
	"time"

	"switchboard/parser"
	"switchboard/shards"
	"switchboard/transport"
	"switchboard/txn"
)

// In-dialog pings (dialog.ping_interval, OpenSIPS options_ping_interval,
// Kamailio's dialog keep-alives). A call whose phone crashed, lost its
// network or was switched off never sends its BYE: without pings it is
// billed until its timeout. Every confirmed dialog gets an OPTIONS of the
// proxy's own towards each side about once per interval, as the other
// side would send it (the route set, From, To, Call-ID of the dialog).
// A side that answers anything is there; one that does not answer within
// the request's timeout (64·T1: 408) or answers 481 (it has no such
// dialog) ends the call: a BYE to each side, reason "ping".
//
// The OPTIONS's CSeq is one below the last the side got from the other
// (the last itself when that is 0 or 1), as Kamailio does: a UA answers
// it (500 for a CSeq out of order, or 200) without moving its count of
// the other side's requests, so the next real request of the other side,
// numbered from its own count, is still in order.
//
// A goroutine visits one shard per ping_interval/shards, so that the
// pings of a table are spread over the interval; a dialog answered less
// than an interval ago, or with a ping of the proxy still unanswered that
// way, is not pinged. The messages are built under the shard's lock and
// sent after it.

// ping is one OPTIONS to send.
type ping struct {
	h, id uint64
	side  int
	proto transport.Proto
	dst   netip.AddrPort
	msg   []byte
}

var pingFlag = [2]uint8{toCaller: fPingCaller, toCallee: fPingCallee}

// pingLoop pings the confirmed dialogs, a shard at a time, until Stop.
func (d *Dialog) pingLoop() {
	defer d.wg.Done()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var batch []ping
	next := 0
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		iv := time.Duration(d.pingInterval.Load()) * time.Millisecond
		if iv <= 0 {
			t.Reset(time.Second) // off; a SIGHUP may turn it on
			continue
		}
		batch = d.collectPings(d.tbl.ShardAt(next), iv.Milliseconds(), batch[:0])
		next = (next + 1) % d.tbl.NumShards()
		for i := range batch {
			d.sendPing(&batch[i])
		}
		clear(batch)
		t.Reset(max(iv/time.Duration(d.tbl.NumShards()), time.Millisecond))
	}
}

// collectPings builds the pings of shard s's confirmed dialogs answered
// at least iv ms ago.
func (d *Dialog) collectPings(s *shards.Shard[dlg], iv int64, batch []ping) []ping {
	s.Lock()
	defer s.Unlock()
	now := s.Now()
	s.Range(func(e *shards.Entry[dlg]) bool {
		g := &e.Value
		// A copy of another node's dialog is pinged by that node.
		if g.state != stConfirmed || now-g.answer < iv || g.pflags&(fEnding|fRemote) != 0 {
			return true
		}
		for side := toCaller; side <= toCallee; side++ {
			if g.pflags&pingFlag[side] != 0 || (side == toCallee && !g.hasCallee) {
				continue
			}
			cseq := lastCSeq(g, side)
			if cseq > 1 {
				cseq--
			}
			g.pflags |= pingFlag[side]
			batch = append(batch, ping{h: e.Hash(), id: g.id, side: side, proto: g.proto[side], dst: g.hop[side].AddrPort(),
				msg: appendInDialog(nil, e, side, "OPTIONS", cseq, "")})
		}
		return true
	})
	return batch
}

func (d *Dialog) sendPing(p *ping) {
	h, id, side := p.h, p.id, p.side
	err := d.h.Originator.SendLocal(txn.LocalRequest{Proto: p.proto, Dst: p.dst, Message: p.msg}, func(code int, _ *parser.Message) {
		d.pinged(h, id, side, code)
	})
	if err != nil {
		d.pinged(h, id, side, 0) // not sent: tried again next round
		return
	}
	d.pings.Inc()
}

// pinged takes the outcome of a ping: 408 (no answer) or 481 (no such
// dialog there) ends the call with a BYE each way; anything else shows
// the side is there.
func (d *Dialog) pinged(h, id uint64, side, code int) {
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := findID(s, h, id)
	if e == nil || e.Value.pflags&fEnding != 0 {
		return
	}
	g := &e.Value
	g.pflags &^= pingFlag[side]
	if (code != 408 && code != 481) || g.state != stConfirmed {
		return
	}
	d.h.Warn("dialog: a side did not answer the in-dialog OPTIONS; call ended with a BYE each way",
		"call_id", string(e.Key()), "side", []string{"caller", "callee"}[side], "code", code)
	by := Caller
	if side == toCallee {
		by = Callee
	}
	d.finish(s, e, ReasonPing, by, true)
}
