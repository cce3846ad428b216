package registrar

import (
	"errors"
	"net/netip"
	"time"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// NAT keepalive. A binding marked behind NAT (see natted, and
// SaveOptions.NAT) that registered over UDP is reached at the address its
// REGISTER came from, through a binding in the phone's NAT that closes
// after a minute or two of silence. The keepalive (the nathelper module,
// OpenSIPS natping) sends it something every interval so that it stays
// open, and removes the binding when it stops answering.
//
// The schedule is a timing wheel over the bindings: each address-of-record
// with such a binding has one more timer on its shard's wheel (the one its
// expiry uses), due every interval at a phase of its own (its hash modulo
// the interval), so the pings of many phones are spread over the interval
// instead of sent in a burst, and a new registration is scheduled at once,
// not at the next sweep. When the timer fires, the keepalive's Ping is
// called for each such binding of the AOR; Ping runs with the shard locked
// on the clock's goroutine and must only queue the ping.

// KeepaliveTarget is one binding due for a ping. The byte slices are views
// valid during the Ping call only.
type KeepaliveTarget struct {
	AOR     []byte // "user@domain"
	Contact []byte // the contact URI as registered
	Proto   transport.Proto
	Dst     netip.AddrPort // where the REGISTER came from: the packet's source, never a header
	Socket  netip.AddrPort // the listener it came in on (send from it: the NAT lets only that in)
	ID      BindingID
}

// BindingID names a binding for PingAnswered, PingFailed and
// RemoveUnreachable: the hash of its AOR and of its key (instance and
// reg-id, or contact).
type BindingID struct {
	AOR, Key uint64
}

type keepalive struct {
	interval int64 // ms
	ping     func(*KeepaliveTarget)
}

// SetKeepalive starts the NAT keepalive: ping is called for every NATed
// UDP binding every interval (0 or a nil ping stops it). The bindings in
// the table are scheduled at once (those loaded from the store too); a
// changed interval applies from each AOR's next ping.
func (r *Registrar) SetKeepalive(interval time.Duration, ping func(*KeepaliveTarget)) {
	var k *keepalive
	if interval > 0 && ping != nil {
		k = &keepalive{interval: max(int64(interval/time.Millisecond), 1), ping: ping}
	}
	r.keepalive.Store(k)
	r.tbl.Range(func(s *shards.Shard[record], e *shards.Entry[record]) bool {
		r.schedulePing(s, e)
		return true
	})
}

// pinged reports whether b gets NAT keepalives: reached at its source over
// UDP (over TCP and TLS the connection carries its own keepalives), by
// the node that holds its flow (with registrar.sharing: redis).
func (b *binding) pinged() bool {
	return b.nat && b.proto == transport.UDP && b.src.IsValid() && len(b.path) == 0 && !b.remote
}

// keyHash identifies b within its AOR, as store.Binding.Key does.
func (b *binding) keyHash() uint64 {
	if len(b.instance) > 0 {
		return shards.Sum(b.instance) ^ uint64(b.regID)*0x9e3779b97f4a7c15
	}
	return shards.Sum(b.contact)
}

// schedulePing starts the AOR's ping timer when it has a binding to ping
// and the keepalive runs, and stops it otherwise. The shard is locked.
func (r *Registrar) schedulePing(s *shards.Shard[record], e *shards.Entry[record]) {
	v := &e.Value
	k := r.keepalive.Load()
	if k == nil || !v.anyPinged() {
		s.StopTimer(&v.ping)
		return
	}
	if !v.ping.Active() {
		// The first ping at the AOR's phase: spread over the interval,
		// the same after every restart.
		s.StartTimerAt(e, &v.ping, timerPing, s.Now()+1+int64(e.Hash()%uint64(k.interval)))
	}
}

func (v *record) anyPinged() bool {
	for i := range v.b {
		if v.b[i].pinged() {
			return true
		}
	}
	return false
}

// onPing hands the AOR's NATed bindings to the keepalive and schedules the
// next round one interval after this one. The shard is locked.
func (r *Registrar) onPing(s *shards.Shard[record], e *shards.Entry[record]) {
	k := r.keepalive.Load()
	if k == nil {
		return
	}
	now := s.Now()
	v := &e.Value
	any := false
	for i := range v.b {
		b := &v.b[i]
		if !b.pinged() || b.expires <= now {
			continue
		}
		any = true
		t := KeepaliveTarget{AOR: e.Key(), Contact: b.contact, Proto: b.proto, Dst: b.src, Socket: b.socket,
			ID: BindingID{AOR: e.Hash(), Key: b.keyHash()}}
		k.ping(&t)
	}
	if any {
		s.StartTimerAt(e, &v.ping, timerPing, now+k.interval)
	}
}

// findPinged returns the binding id names if it is still reached at dst,
// with its shard locked (unlock it), or nil.
func (r *Registrar) findPinged(id BindingID, dst netip.AddrPort) (*shards.Shard[record], *shards.Entry[record], int) {
	s := r.tbl.Shard(id.AOR)
	s.Lock()
	if e := s.Find(id.AOR, anyEntry); e != nil {
		for i := range e.Value.b {
			b := &e.Value.b[i]
			if b.src == dst && b.keyHash() == id.Key {
				return s, e, i
			}
		}
	}
	return s, nil, -1
}

// PingAnswered records an answer to a keepalive: the binding's count of
// failed pings starts again.
func (r *Registrar) PingAnswered(id BindingID, dst netip.AddrPort) {
	s, e, i := r.findPinged(id, dst)
	if e != nil {
		e.Value.b[i].pingFails = 0
	}
	s.Unlock()
}

// PingFailed records a keepalive that got no answer and returns how many
// failed in a row; 0 when the binding is gone or registered again from
// another address meanwhile (a failure there says nothing of it).
func (r *Registrar) PingFailed(id BindingID, dst netip.AddrPort) int {
	s, e, i := r.findPinged(id, dst)
	n := 0
	if e != nil {
		b := &e.Value.b[i]
		if b.pingFails < 255 {
			b.pingFails++
		}
		n = int(b.pingFails)
	}
	s.Unlock()
	return n
}

// RemoveUnreachable removes the binding when it has failed at least
// failures pings in a row (an answer that came meanwhile keeps it), and
// reports whether it did. The store gets the removal like a REGISTER's;
// it may wait up to 30 s for room in the store's queue: call it off the
// receive path.
func (r *Registrar) RemoveUnreachable(id BindingID, dst netip.AddrPort, failures int) (bool, error) {
	var res store.Reservation
	if r.w != nil {
		var err error
		if res, err = r.w.ReserveWait(1, reserveWait); errors.Is(err, store.ErrQueueFull) {
			return false, errNoRoom
		} else if err != nil {
			return false, err
		}
	}
	s, e, i := r.findPinged(id, dst)
	if e == nil || int(e.Value.b[i].pingFails) < failures {
		s.Unlock()
		res.Release()
		return false, nil
	}
	v := &e.Value
	sc := r.scratch.Get().(*scratch)
	sc.ops = sc.ops[:0]
	key := e.Key()
	r.persistDelete(sc, key, &v.b[i])
	r.buryBinding(v, &v.b[i], s.Now())
	r.raiseContact(modules.EventContactDelete, key, &v.b[i], s.Now(), goneUnreachable)
	v.remove(i)
	r.unreachable.Add(1)
	r.removed.Add(1)
	s.Charge(e, v.bytes())
	r.schedule(s, e)
	ops := append([]store.BindingOp(nil), sc.ops...)
	clear(sc.ops)
	r.scratch.Put(sc)
	done, err := r.queueChange(&res, key, ops)
	s.Unlock()
	if err == nil && done != nil {
		err = <-done
	}
	return true, err
}
