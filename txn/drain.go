package txn

import "switchboard/shards"

// Pending counts the transactions still at work: the server side has not
// sent a final response, or a branch still waits for one. Finished
// transactions that only linger to absorb retransmissions (timers J, K, H,
// I, D) are not counted. A graceful shutdown waits for this to reach zero.
// It visits every transaction, one shard locked at a time: call it for
// shutdown and management, not per message.
func (c *Core) Pending() int {
	n := 0
	c.tbl.Range(func(_ *shards.Shard[txn], e *shards.Entry[txn]) bool {
		if t := &e.Value; !t.finalSent || t.pending > 0 {
			n++
		}
		return true
	})
	return n
}
