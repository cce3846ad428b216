package dispatcher

import (
	"context"
	"strconv"

	"switchboard/parser"
	"switchboard/txn"
)

// corePinger sends probes through the transaction core
// (txn.Core.SendLocal): from the listener of the destination's transport
// and address family, so from the SIP port, with the core's Via, its
// retransmissions over UDP (timer E) and over TCP and TLS the transport's
// connections; and only to destinations inside outbound.allow. The server
// hands the module its core before Start, and the module probes this way
// from then on. The socket column does not choose the listener: the core
// picks it by transport and address family.
type corePinger struct {
	core *txn.Core
}

type pingResult struct {
	code int
	err  error
}

func (p corePinger) Ping(ctx context.Context, q Ping) (int, error) {
	id := randomHex(12)
	msg := optionsMessage(q, "", id, "switchboard")
	done := make(chan pingResult, 1)
	err := p.core.SendLocal(txn.LocalRequest{Proto: q.Proto, Dst: q.Dst, Message: msg}, func(code int, resp *parser.Message) {
		if resp == nil {
			// 408: no final response within 64·T1; 503: not sent.
			done <- pingResult{err: errNoFinal(code)}
			return
		}
		done <- pingResult{code: code}
	})
	if err != nil {
		return 0, err
	}
	select {
	case r := <-done:
		return r.code, r.err
	case <-ctx.Done():
		return 0, errNoAnswer
	}
}

// errNoFinal is the core's report of a probe without a final response.
type errNoFinal int

func (e errNoFinal) Error() string {
	if e == 503 {
		return "not sent (503)"
	}
	return "no answer (" + strconv.Itoa(int(e)) + ")"
}
