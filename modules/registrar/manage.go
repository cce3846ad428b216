package registrar

import (
	"errors"
	"sort"

	"switchboard/modules"
	"switchboard/shards"
	"switchboard/store"
)

// Info describes one binding for the management API (OpenSIPS:
// ul_dump / ul_show_contact).
type Info struct {
	AOR      string  `json:"aor"`
	Contact  string  `json:"contact"`
	Expires  int64   `json:"expires"` // seconds left
	Q        float64 `json:"q"`
	Received string  `json:"received"`
	Socket   string  `json:"socket,omitempty"`
	NAT      bool    `json:"nat"`
	// PingFailures is how many NAT keepalives in a row it left
	// unanswered (nathelper).
	PingFailures int    `json:"ping_failures,omitempty"`
	Path         string `json:"path,omitempty"`
	CallID       string `json:"call_id"`
	CSeq         uint32 `json:"cseq"`
	UserAgent    string `json:"user_agent,omitempty"`
	Instance     string `json:"instance,omitempty"`
	RegID        uint32 `json:"reg_id,omitempty"`
	// Node is the node that holds the phone's flow (registrar.sharing:
	// redis; "" for a binding made on this node).
	Node string `json:"node,omitempty"`
	// Outbound: registered with RFC 5626 outbound over a connection,
	// reached only over it (outbound.go).
	Outbound bool `json:"outbound,omitempty"`
	// Flow is the connection it registered over, as the nodes of an
	// anycast group name it (the holder's branch prefix and connection
	// number, registrar.sharing: redis; see SetFlowNames); "" without.
	Flow string `json:"flow,omitempty"`
}

// List returns the live bindings of aor ("user@domain"), or of every AOR
// when aor is "", sorted by AOR and contact.
func (r *Registrar) List(aor string) []Info {
	var out []Info
	add := func(s *shards.Shard[record], e *shards.Entry[record]) {
		now := s.Now()
		for i := range e.Value.b {
			b := &e.Value.b[i]
			if b.expires <= now {
				continue
			}
			out = append(out, Info{
				AOR: string(e.Key()), Contact: string(b.contact), Expires: (b.expires - now + 999) / 1000,
				Q: float64(b.q) / 1000, Received: formatAddr(b.proto, b.src), Socket: formatAddr(b.proto, b.socket),
				NAT: b.nat, PingFailures: int(b.pingFails), Path: string(b.path), CallID: string(b.callID), CSeq: b.cseq,
				UserAgent: string(b.ua), Instance: string(b.instance), RegID: b.regID, Node: b.node,
				Outbound: b.outbound, Flow: r.flowNameOf(b),
			})
		}
	}
	if aor != "" {
		key := normalAOR(aor)
		h := shards.SumString(key)
		s := r.tbl.Shard(h)
		s.Lock()
		if e := s.Get(h, []byte(key)); e != nil {
			add(s, e)
		}
		s.Unlock()
	} else {
		r.tbl.Range(func(s *shards.Shard[record], e *shards.Entry[record]) bool {
			add(s, e)
			return true
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].AOR != out[j].AOR {
			return out[i].AOR < out[j].AOR
		}
		return out[i].Contact < out[j].Contact
	})
	return out
}

// Delete removes the binding of aor whose contact URI is contact, or every
// binding of aor when contact is "" (OpenSIPS: ul_rm_contact / ul_rm).
// It returns how many were removed. The store gets the change like a
// REGISTER's (in write-through mode Delete returns once it is committed),
// except that Delete waits for room in the store's queue instead of
// refusing; when the queue stays full for 30 s nothing is removed and the
// error says so.
func (r *Registrar) Delete(aor, contact string) (int, error) {
	key := []byte(normalAOR(aor))
	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	need := 1 // operations for the store: one per binding, one for the AOR
	for {
		var res store.Reservation
		if r.w != nil {
			var err error
			if res, err = r.w.ReserveWait(need, reserveWait); errors.Is(err, store.ErrQueueFull) {
				return 0, errNoRoom
			} else if err != nil {
				return 0, err
			}
		}
		s.Lock()
		e := s.Get(h, key)
		if e == nil {
			s.Unlock()
			res.Release()
			return 0, nil
		}
		v := &e.Value
		if contact != "" {
			n := 0
			for i := range v.b {
				if string(v.b[i].contact) == contact {
					n++
				}
			}
			if n > need {
				// More than reserved: wait for room for all of them
				// without holding the shard.
				s.Unlock()
				res.Release()
				need = n
				continue
			}
		}
		sc := r.scratch.Get().(*scratch)
		sc.ops = sc.ops[:0]
		n := 0
		// Each binding removed leaves a tombstone (tombstone.go): a
		// retransmission of the phone's last REGISTER does not bring it
		// back.
		if contact == "" {
			n = len(v.b)
			for len(v.b) > 0 {
				r.buryBinding(v, &v.b[0], s.Now())
				r.raiseContact(modules.EventContactDelete, key, &v.b[0], s.Now(), goneRemoved)
				v.remove(0)
			}
			if n > 0 {
				r.persistDeleteAOR(sc, key)
			}
		} else {
			for i := 0; i < len(v.b); {
				if string(v.b[i].contact) == contact {
					r.buryBinding(v, &v.b[i], s.Now())
					r.persistDelete(sc, key, &v.b[i])
					r.raiseContact(modules.EventContactDelete, key, &v.b[i], s.Now(), goneRemoved)
					v.remove(i)
					n++
					continue
				}
				i++
			}
		}
		r.removed.Add(uint64(n))
		s.Charge(e, v.bytes())
		r.schedule(s, e)
		ops := append([]store.BindingOp(nil), sc.ops...)
		clear(sc.ops)
		r.scratch.Put(sc)
		// Queued with the shard locked, which keeps the AOR's changes in
		// order; a write-through commit is waited for after releasing it.
		done, err := r.queueChange(&res, key, ops)
		s.Unlock()
		if err == nil && done != nil {
			err = <-done
		}
		return n, err
	}
}

// Flush removes every binding of every AOR and returns how many.
func (r *Registrar) Flush() (int, error) {
	var aors []string
	r.tbl.Range(func(_ *shards.Shard[record], e *shards.Entry[record]) bool {
		aors = append(aors, string(e.Key()))
		return true
	})
	n := 0
	for _, a := range aors {
		k, err := r.Delete(a, "")
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// normalAOR lower-cases the domain of "user@domain" (the user part is
// case-sensitive, RFC 3261 §19.1.4).
func normalAOR(aor string) string {
	for i := len(aor) - 1; i >= 0; i-- {
		if aor[i] == '@' {
			b, _ := aorKey(nil, []byte(aor[:i]), []byte(aor[i+1:]))
			return string(b)
		}
	}
	return aor
}

// flowNameOf is the shared name of b's flow, "" when it has none or names
// are not set.
func (r *Registrar) flowNameOf(b *binding) string {
	if b.flowName != "" {
		return b.flowName
	}
	if n := r.flowNames.Load(); n != nil && b.flow != 0 {
		name, _ := n.name(b.flow)
		return name
	}
	return ""
}
