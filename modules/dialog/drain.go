package dialog

import (
	"context"
	"time"

	"switchboard/shards"
)

// byeWait bounds how long Drain waits for the answers to the BYEs it
// sent: a BYE's transaction ends within 64·T1 (32 s with the default T1)
// whether it is answered or not.
const byeWait = 32 * time.Second

// Drain implements modules.Drainer: what a SIGTERM does with the calls
// up. With dialog.drain_timeout 0 (the default) nothing: they stay up,
// and with dialog.persist the next start restores them. Otherwise the
// calls may go on for drain_timeout while the server refuses new ones;
// those still up then are ended by the proxy with a BYE to each side
// (reason "drain"), and Drain returns once those BYEs are answered or
// have timed out, for the server to exit: a node being retired leaves no
// call behind it. Dialogs not answered by then are left to their INVITE's
// transaction, which the server's own drain waits for.
func (d *Dialog) Drain(ctx context.Context) {
	start := time.Now()
	logged := false
	for {
		// Read at every step: a SIGHUP during the drain may change it.
		limit := time.Duration(d.drainTimeout.Load()) * time.Millisecond
		if limit <= 0 {
			if n := d.confirmed.Load(); n > 0 {
				d.log.Info("dialog: drain: calls left up", "calls", n, "restored_at_next_start", d.w != nil)
			}
			return
		}
		if !logged {
			d.log.Info("dialog: drain: calls may go on until drain_timeout, the rest are then ended with a BYE each way",
				"calls", d.active(), "drain_timeout", limit.String())
			logged = true
		}
		if d.active() == 0 || time.Since(start) >= limit {
			break
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return
		}
	}
	if n := d.endConfirmed(ReasonDrain); n > 0 {
		d.log.Info("dialog: drain: calls ended by the proxy", "calls", n)
	}
	deadline := time.Now().Add(byeWait)
	for d.byes.pending.Load() > 0 && time.Now().Before(deadline) {
		if !sleep(ctx, 20*time.Millisecond) {
			return
		}
	}
}

func (d *Dialog) active() int64 {
	return d.unconfirmed.Load() + d.early.Load() + d.confirmed.Load()
}

// sleep waits d, or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// endConfirmed ends every confirmed dialog with a BYE to each side and
// returns how many.
func (d *Dialog) endConfirmed(why Reason) int {
	n := 0
	d.tbl.Range(func(s *shards.Shard[dlg], e *shards.Entry[dlg]) bool {
		// Another node's dialog (a copy from Redis) is that node's to end.
		if e.Value.state == stConfirmed && e.Value.pflags&(fEnding|fRemote) == 0 {
			d.finish(s, e, why, Proxy, true)
			n++
		}
		return true
	})
	return n
}
