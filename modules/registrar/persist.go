package registrar

import (
	"errors"
	"fmt"
	"time"

	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/txn"
)

// Persist says when a change of the bindings reaches the store.
type Persist uint8

const (
	// WriteBack (the default) answers the REGISTER at once and queues the
	// change for the store's writer, which commits it within its linger
	// (10 ms) plus the commit's duration. A crash of the process loses
	// changes answered in that window; a REGISTER that finds the queue
	// full is refused (503 with Retry-After) and changes nothing, so no
	// change is ever dropped silently.
	WriteBack Persist = iota
	// WriteThrough suspends the REGISTER until the store has committed its
	// change, then answers 200 (500 when the commit failed): a REGISTER
	// answered 200 is on disk.
	WriteThrough
)

// ParsePersist parses the values of registrar.persist.
func ParsePersist(s string) (Persist, error) {
	switch s {
	case "write-back", "":
		return WriteBack, nil
	case "write-through":
		return WriteThrough, nil
	}
	return 0, fmt.Errorf("persist mode %q: want write-back or write-through", s)
}

func (p Persist) String() string {
	if p == WriteThrough {
		return "write-through"
	}
	return "write-back"
}

// persistUpsert, persistDelete and persistDeleteAOR add one operation of
// the change to sc.ops.
func (r *Registrar) persistUpsert(sc *scratch, key []byte, b *binding) {
	if r.w == nil && r.share == nil {
		return
	}
	sc.ops = append(sc.ops, store.BindingOp{Kind: store.OpUpsert, Binding: storeBinding(key, b)})
}

// storeBinding is b as the store (and Redis) keep it.
func storeBinding(key []byte, b *binding) store.Binding {
	sb := store.Binding{
		AOR: string(key), Contact: string(b.contact), Received: formatAddr(b.proto, b.src),
		Path: string(b.path), Q: uint16(b.q), Expires: (b.expires + 999) / 1000,
		CallID: string(b.callID), CSeq: b.cseq, UserAgent: string(b.ua),
		Instance: string(b.instance), RegID: b.regID, Socket: formatAddr(b.proto, b.socket),
		LastModified: b.modified / 1000,
	}
	if b.nat {
		sb.Flags |= flagNAT
	}
	return sb
}

func (r *Registrar) persistDelete(sc *scratch, key []byte, b *binding) {
	if r.w == nil && r.share == nil {
		return
	}
	sc.ops = append(sc.ops, store.BindingOp{Kind: store.OpDelete, Binding: store.Binding{
		AOR: string(key), Contact: string(b.contact), Instance: string(b.instance), RegID: b.regID}})
}

func (r *Registrar) persistDeleteAOR(sc *scratch, key []byte) {
	if r.w == nil && r.share == nil {
		return
	}
	sc.ops = append(sc.ops, store.BindingOp{Kind: store.OpDeleteAOR, Binding: store.Binding{AOR: string(key)}})
}

// persist hands the change in sc.ops to the store with the room reserved
// for it, and releases the rest. Write-back queues it and returns false:
// the caller answers now. Write-through suspends the request, commits the
// change as one transaction and returns true: the answer goes out from the
// writer once the commit is done. The AOR's shard is locked, which keeps
// the changes of one AOR in order in the queue.
func (r *Registrar) persist(c *routing.Ctx, sc *scratch, res *store.Reservation, key []byte) bool {
	defer res.Release()
	if r.share != nil {
		r.share.mark(key, sc.ops) // written to Redis behind, off this goroutine
	}
	if r.w == nil || len(sc.ops) == 0 {
		clear(sc.ops)
		return false
	}
	defer clear(sc.ops) // drop the strings
	if r.cfg.Persist == WriteThrough {
		if h := c.Suspend(); h != nil {
			ops := append([]store.BindingOp(nil), sc.ops...)
			env, aor := c.Env, string(key)
			err := res.Commit(ops, func(err error) { r.committed(env, h, aor, err) })
			if err == nil {
				return true
			}
			// Not storable (checked before queueing): answer now, as
			// write-back does.
			r.writeDrops.Add(1)
			return false
		}
	}
	for i := range sc.ops {
		if res.Queue(sc.ops[i]) != nil {
			// Only an AOR or binding the store cannot hold gets here:
			// the room was reserved.
			r.writeDrops.Add(1)
		}
	}
	return false
}

// committed answers a write-through REGISTER from the writer goroutine:
// 200 with the AOR's bindings as they are now, or 500 when the change
// could not be stored (it is in memory, and the phone's next REGISTER
// tries again).
func (r *Registrar) committed(env *routing.Env, h *txn.Request, aor string, err error) {
	routing.Resume(env, h, func(c *routing.Ctx) {
		if err != nil {
			r.storeErrors.Add(1)
			reply(c, 500, "Binding Not Stored", retryAfter)
			return
		}
		sc := r.scratch.Get().(*scratch)
		key := []byte(aor)
		hs := shards.Sum(key)
		s := r.tbl.Shard(hs)
		s.Lock()
		sc.hdr = sc.hdr[:0]
		if e := s.Get(hs, key); e != nil {
			sc.hdr = appendContacts(sc.hdr, e.Value.b, s.Now())
		}
		s.Unlock()
		sc.path = pathOf(c.Msg(), sc.path[:0])
		sc.hdr = appendPath(sc.hdr, sc.path)
		mode, _ := outboundOf(c, sc.path)
		sc.hdr = r.appendOutbound(sc.hdr, mode)
		reply(c, 200, "OK", sc.hdr)
		r.scratch.Put(sc)
	})
}

// queueChange hands a change made by the management API to the store,
// with room reserved for it. In write-through mode it returns a channel
// that gets the commit's outcome: wait on it after releasing the shard.
func (r *Registrar) queueChange(res *store.Reservation, key []byte, ops []store.BindingOp) (<-chan error, error) {
	defer res.Release()
	if r.share != nil {
		r.share.mark(key, ops)
	}
	if r.w == nil || len(ops) == 0 {
		return nil, nil
	}
	if r.cfg.Persist == WriteThrough {
		done := make(chan error, 1)
		if err := res.Commit(ops, func(err error) { done <- err }); err != nil {
			return nil, err
		}
		return done, nil
	}
	var first error
	for i := range ops {
		if err := res.Queue(ops[i]); err != nil && first == nil {
			first = err
		}
	}
	return nil, first
}

// reserveWait is how long the management API waits for room in the store's
// queue before giving up.
const reserveWait = 30 * time.Second

// errNoRoom is returned by Delete when the store's queue stayed full.
var errNoRoom = errors.New("registrar: the location store's queue stayed full; nothing was changed")
