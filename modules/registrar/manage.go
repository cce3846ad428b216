package registrar

import (
	"sort"

	"switchboard/shards"
)

// Info describes one binding for the management API (OpenSIPS:
// ul_dump / ul_show_contact).
type Info struct {
	AOR       string  `json:"aor"`
	Contact   string  `json:"contact"`
	Expires   int64   `json:"expires"` // seconds left
	Q         float64 `json:"q"`
	Received  string  `json:"received"`
	Socket    string  `json:"socket,omitempty"`
	NAT       bool    `json:"nat"`
	Path      string  `json:"path,omitempty"`
	CallID    string  `json:"call_id"`
	CSeq      uint32  `json:"cseq"`
	UserAgent string  `json:"user_agent,omitempty"`
	Instance  string  `json:"instance,omitempty"`
	RegID     uint32  `json:"reg_id,omitempty"`
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
				NAT: b.nat, Path: string(b.path), CallID: string(b.callID), CSeq: b.cseq,
				UserAgent: string(b.ua), Instance: string(b.instance), RegID: b.regID,
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
// It returns how many were removed; the store is updated write-behind.
func (r *Registrar) Delete(aor, contact string) int {
	key := []byte(normalAOR(aor))
	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, key)
	if e == nil {
		return 0
	}
	v := &e.Value
	n := 0
	if contact == "" {
		n = len(v.b)
		for len(v.b) > 0 {
			v.remove(0)
		}
		if r.w != nil {
			r.noteWrite(r.w.DeleteAOR(string(key)))
		}
	} else {
		for i := 0; i < len(v.b); {
			if string(v.b[i].contact) == contact {
				r.persistDelete(key, &v.b[i])
				v.remove(i)
				n++
				continue
			}
			i++
		}
	}
	r.removed.Add(uint64(n))
	r.schedule(s, e)
	return n
}

// Flush removes every binding of every AOR and returns how many.
func (r *Registrar) Flush() int {
	var aors []string
	r.tbl.Range(func(_ *shards.Shard[record], e *shards.Entry[record]) bool {
		aors = append(aors, string(e.Key()))
		return true
	})
	n := 0
	for _, a := range aors {
		n += r.Delete(a, "")
	}
	return n
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
