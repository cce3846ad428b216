package registrar

import (
	"bytes"
	"net/netip"
	"strconv"
	"unsafe"

	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
)

// scratch is per-call working memory, pooled so a REGISTER that refreshes
// existing bindings reuses it.
type scratch struct {
	cs   []contactIn
	hdr  []byte
	path []byte
	key  [maxAOR]byte
}

// contactIn is one Contact of a REGISTER, validated.
type contactIn struct {
	uri      []byte
	params   []byte // without expires and q, for the 200's Contact list
	instance []byte
	regID    uint32
	q        int16
	expires  int64 // seconds; 0 removes
	nat      bool
	idx      int // index of the existing binding with the same key, -1 if none
}

// OptionTags are the extensions the registrar supports in a REGISTER's
// Require (RFC 3327 Path); others get 420.
var OptionTags = []string{"path"}

// Save handles a REGISTER for a served domain (OpenSIPS:
// save("location")): it adds, refreshes or removes the bindings of the
// address-of-record in the To header and answers: 200 with every current
// binding and its remaining expiry, 423 with Min-Expires, 400 for a
// malformed Contact or To, 404 when the To domain is not served, 420 with
// Unsupported for a Require option tag not in OptionTags (§10.3 step 2),
// 503 when the AOR would have more than MaxContacts bindings. It returns
// the status sent. The route has authenticated the request before, if it
// wants to.
func (r *Registrar) Save(c *routing.Ctx) int {
	sc := r.scratch.Get().(*scratch)
	code := r.save(c, sc)
	r.scratch.Put(sc)
	if code != 200 {
		r.refused.Add(1)
	}
	return code
}

func (r *Registrar) save(c *routing.Ctx, sc *scratch) int {
	if !c.CheckRequire(OptionTags...) {
		return 420
	}
	m := c.Msg()
	user, host := c.TUser(), c.TDomain()
	if len(user) == 0 || len(host) == 0 {
		return reply(c, 400, "Bad To Header", nil)
	}
	if !c.IsMyself(host) {
		return reply(c, 404, "Not Found", nil)
	}
	key, ok := aorKey(sc.key[:0], user, host)
	if !ok {
		return reply(c, 400, "Address-of-Record Too Long", nil)
	}
	hdrExp, hasHdrExp := m.Expires()
	callID := m.CallID()
	cseq := m.CSeq().Num

	// Parse and check every Contact before changing anything: a request
	// is applied whole or not at all.
	sc.cs = sc.cs[:0]
	star := false
	it := m.NameAddrs(parser.HdrContact)
	for it.Next() {
		na := &it.NameAddr
		if na.Star {
			star = true
			continue
		}
		if len(sc.cs) >= r.cfg.MaxContacts+8 {
			return reply(c, 503, "Too Many Registered Contacts", nil)
		}
		var ci contactIn
		u, err := parser.ParseURI(na.URI)
		if err != nil || (u.Scheme != parser.SchemeSIP && u.Scheme != parser.SchemeSIPS) || len(u.Host) == 0 {
			return reply(c, 400, "Bad Contact", nil)
		}
		exp, ok := na.Expires()
		if !ok {
			exp, ok = hdrExp, hasHdrExp
		}
		secs := int64(exp)
		if !ok {
			secs = int64(r.cfg.DefaultExpires.Seconds())
		}
		if secs != 0 && secs < int64(r.cfg.MinExpires.Seconds()) {
			sc.hdr = append(append(sc.hdr[:0], "Min-Expires: "...), strconv.Itoa(int(r.cfg.MinExpires.Seconds()))...)
			sc.hdr = append(sc.hdr, "\r\n"...)
			return reply(c, 423, "Interval Too Brief", sc.hdr)
		}
		secs = min(secs, int64(r.cfg.MaxExpires.Seconds()))
		ci.uri, ci.expires = na.URI, secs
		ci.q = 1000
		if q := na.Q(); q >= 0 {
			ci.q = int16(min(q, 1000))
		}
		ci.instance = na.Instance()
		if id := na.RegID(); id > 0 && ci.instance != nil {
			ci.regID = uint32(id)
		}
		ci.params = na.Params
		ci.nat = behindNAT(&u, c.SrcIP(), c.SrcPort())
		sc.cs = append(sc.cs, ci)
	}
	if it.Err() != nil {
		return reply(c, 400, "Bad Contact", nil)
	}
	if star && (len(sc.cs) > 0 || !hasHdrExp || hdrExp != 0) {
		return reply(c, 400, "Invalid Wildcard Contact", nil)
	}
	sc.path = sc.path[:0]
	for i, n := 0, m.NumHeaders(); i < n; i++ {
		if h := m.HeaderAt(i); h.Name == parser.HdrPath {
			if len(sc.path) > 0 {
				sc.path = append(sc.path, ',')
			}
			sc.path = append(sc.path, h.Value...)
		}
	}

	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	now := s.Now()
	e := s.Get(h, key)
	if e == nil && len(sc.cs) > 0 {
		var err error
		if e, err = s.Insert(h, key); err != nil {
			s.Unlock()
			return reply(c, 503, "Registrar Full", nil)
		}
	}
	if e != nil {
		v := &e.Value
		if star {
			r.removeAll(v, key, callID, cseq)
		} else if len(sc.cs) > 0 {
			// Match contacts to bindings and check the count first.
			count := len(v.b)
			for i := range sc.cs {
				ci := &sc.cs[i]
				ci.idx = v.find(ci.instance, ci.regID, ci.uri)
				switch {
				case ci.idx < 0 && ci.expires > 0:
					count++
				case ci.idx >= 0 && ci.expires == 0:
					count--
				}
			}
			if count > r.cfg.MaxContacts {
				if len(v.b) == 0 {
					s.Remove(e)
				}
				s.Unlock()
				return reply(c, 503, "Too Many Registered Contacts", nil)
			}
			// Reserve what new bindings may take before storing them, so
			// the memory cap holds (a refresh reuses its buffers).
			if grow := sc.growth(len(v.b), count, len(m.UserAgent()), len(callID)); grow > 0 {
				if s.Account(e, v.bytes()+grow) != nil {
					if len(v.b) == 0 {
						s.Remove(e)
					}
					s.Unlock()
					return reply(c, 503, "Registrar Full", nil)
				}
			}
			r.apply(c, v, sc, key, callID, cseq, now)
			s.Account(e, v.bytes())
		}
		sc.hdr = appendContacts(sc.hdr[:0], v.b, now)
		r.schedule(s, e)
	} else {
		sc.hdr = sc.hdr[:0]
	}
	s.Unlock()
	if len(sc.path) > 0 {
		sc.hdr = append(append(append(sc.hdr, "Path: "...), sc.path...), "\r\n"...)
	}
	return reply(c, 200, "OK", sc.hdr)
}

// growth estimates the bytes new bindings need: 0 when the count does not
// grow (refreshes and replacements reuse buffers).
func (sc *scratch) growth(have, count, ua, callID int) int {
	if count <= have {
		return 0
	}
	n := 0
	for i := range sc.cs {
		ci := &sc.cs[i]
		if ci.expires > 0 {
			n += len(ci.uri) + len(ci.params) + len(ci.instance) + len(sc.path) + ua + callID
		}
	}
	return n + (count-have)*int(unsafe.Sizeof(binding{}))
}

// apply changes the bindings of v as sc.cs says. The shard is locked.
func (r *Registrar) apply(c *routing.Ctx, v *record, sc *scratch, key, callID []byte, cseq uint32, now int64) {
	m := c.Msg()
	for i := range sc.cs {
		ci := &sc.cs[i]
		// Indexes may have moved when an earlier contact removed a
		// binding: look again.
		idx := v.find(ci.instance, ci.regID, ci.uri)
		if idx >= 0 {
			b := &v.b[idx]
			if bytes.Equal(b.callID, callID) && cseq <= b.cseq {
				continue // out of order or repeated (RFC 3261 §10.3 step 7)
			}
			if ci.expires == 0 {
				r.persistDelete(key, b)
				v.remove(idx)
				r.removed.Add(1)
				continue
			}
		} else {
			if ci.expires == 0 {
				continue
			}
			if len(v.b) < cap(v.b) {
				v.b = v.b[:len(v.b)+1]
			} else {
				v.b = append(v.b, binding{})
			}
			idx = len(v.b) - 1
		}
		b := &v.b[idx]
		b.contact = append(b.contact[:0], ci.uri...)
		b.params = appendParams(b.params[:0], ci.params)
		b.callID = append(b.callID[:0], callID...)
		b.instance = append(b.instance[:0], ci.instance...)
		b.path = append(b.path[:0], sc.path...)
		b.ua = append(b.ua[:0], m.UserAgent()...)
		b.src = c.R.Src
		b.proto = c.R.Proto
		b.socket = netip.AddrPort{}
		if l := c.R.Listener; l != nil {
			b.socket = l.Local
		}
		b.nat = ci.nat
		b.q = ci.q
		b.regID = ci.regID
		b.cseq = cseq
		b.expires = now + ci.expires*1000
		b.modified = now
		r.persistUpsert(key, b)
		r.saved.Add(1)
	}
}

// removeAll handles "Contact: *" with Expires 0: every binding goes,
// except one whose Call-ID matches with a CSeq not higher than stored.
func (r *Registrar) removeAll(v *record, key, callID []byte, cseq uint32) {
	keep := func(b *binding) bool { return bytes.Equal(b.callID, callID) && cseq <= b.cseq }
	kept := 0
	for i := range v.b {
		if keep(&v.b[i]) {
			kept++
		}
	}
	if kept == 0 && r.w != nil {
		r.noteWrite(r.w.DeleteAOR(string(key)))
	}
	for i := 0; i < len(v.b); {
		if keep(&v.b[i]) {
			i++
			continue
		}
		if kept > 0 {
			r.persistDelete(key, &v.b[i])
		}
		v.remove(i)
		r.removed.Add(1)
	}
}

// find returns the index of the binding with the key of (instance,
// regID) when instance is set, else of uri; -1 when there is none.
func (v *record) find(instance []byte, regID uint32, uri []byte) int {
	for i := range v.b {
		b := &v.b[i]
		if len(instance) > 0 {
			if b.regID == regID && bytes.Equal(b.instance, instance) {
				return i
			}
		} else if len(b.instance) == 0 && bytes.Equal(b.contact, uri) {
			return i
		}
	}
	return -1
}

// remove drops binding i, keeping every binding's buffers for reuse.
func (v *record) remove(i int) {
	last := len(v.b) - 1
	v.b[i], v.b[last] = v.b[last], v.b[i]
	v.b = v.b[:last]
}

func (r *Registrar) persistUpsert(key []byte, b *binding) {
	if r.w == nil {
		return
	}
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
	r.noteWrite(r.w.Upsert(sb))
}

func (r *Registrar) persistDelete(key []byte, b *binding) {
	if r.w == nil {
		return
	}
	r.noteWrite(r.w.Delete(store.Binding{AOR: string(key), Contact: string(b.contact), Instance: string(b.instance), RegID: b.regID}))
}

func (r *Registrar) noteWrite(err error) {
	if err != nil {
		// The binding is right in memory; it is written again at its
		// next refresh.
		r.writeDrops.Add(1)
	}
}

// appendContacts writes the 200's Contact lines: every binding with its
// remaining expiry (RFC 3261 §10.3 step 8).
func appendContacts(dst []byte, bs []binding, now int64) []byte {
	for i := range bs {
		b := &bs[i]
		dst = append(dst, "Contact: <"...)
		dst = append(dst, b.contact...)
		dst = append(dst, '>')
		if len(b.params) > 0 {
			dst = append(dst, ';')
			dst = append(dst, b.params...)
		}
		dst = append(dst, ";expires="...)
		dst = strconv.AppendInt(dst, max(0, (b.expires-now+999)/1000), 10)
		if b.q != 1000 {
			dst = append(dst, ";q="...)
			dst = appendQ(dst, b.q)
		}
		dst = append(dst, "\r\n"...)
	}
	return dst
}

func appendQ(dst []byte, q int16) []byte {
	if q >= 1000 {
		return append(dst, '1')
	}
	dst = append(dst, '0', '.')
	d := []byte{byte('0' + q/100), byte('0' + q/10%10), byte('0' + q%10)}
	n := 3
	for n > 1 && d[n-1] == '0' {
		n--
	}
	return append(dst, d[:n]...)
}

// appendParams copies contact parameters except expires and q, which the
// registrar writes itself.
func appendParams(dst, params []byte) []byte {
	for len(params) > 0 {
		end := paramEnd(params)
		p := bytes.TrimSpace(params[:end])
		name := p
		if i := bytes.IndexByte(p, '='); i >= 0 {
			name = bytes.TrimSpace(p[:i])
		}
		if len(p) > 0 && !parser.EqualFold(name, []byte("expires")) && !parser.EqualFold(name, []byte("q")) {
			if len(dst) > 0 {
				dst = append(dst, ';')
			}
			dst = append(dst, p...)
		}
		if end == len(params) {
			break
		}
		params = params[end+1:]
	}
	return dst
}

// paramEnd returns the index of the next ';' outside a quoted string.
func paramEnd(p []byte) int {
	quoted := false
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '"':
			quoted = !quoted
		case '\\':
			if quoted {
				i++
			}
		case ';':
			if !quoted {
				return i
			}
		}
	}
	return len(p)
}

// behindNAT reports whether the contact's host and port differ from where
// the REGISTER came from; calls then go to the source address.
func behindNAT(u *parser.URI, src netip.Addr, srcPort uint16) bool {
	host := u.Host
	if len(host) > 1 && host[0] == '[' {
		host = host[1 : len(host)-1]
	}
	if len(host) == 0 || !(host[0] >= '0' && host[0] <= '9' || bytes.IndexByte(host, ':') >= 0) {
		return true // a host name: calls go to where it registered from
	}
	// A string view of the message bytes: a converted copy would escape
	// into ParseAddr's error and allocate.
	a, err := netip.ParseAddr(unsafe.String(unsafe.SliceData(host), len(host)))
	if err != nil {
		return true
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if u.Scheme == parser.SchemeSIPS {
			port = 5061
		}
	}
	return a.Unmap() != src.Unmap() || uint16(port) != srcPort
}

// aorKey writes "user@host" with the host lower-cased into dst.
func aorKey(dst, user, host []byte) ([]byte, bool) {
	if len(user)+1+len(host) > maxAOR {
		return dst, false
	}
	dst = append(dst, user...)
	dst = append(dst, '@')
	for _, ch := range host {
		if ch >= 'A' && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	return dst, true
}

// reply answers a REGISTER statelessly (as OpenSIPS save() does through
// sl): saving again on a retransmission gives the same bindings, while a
// transaction kept per REGISTER for 64·T1 cost about 8 KB each, 2 GB at
// 8,000 registrations a second.
func reply(c *routing.Ctx, code int, reason string, hdrs []byte) int {
	c.ReplyStateless(code, reason, hdrs)
	return code
}

// useSource reports whether requests to b go to the address its REGISTER
// came from: behind NAT, over a connection (RFC 5626: the flow), or
// through an edge proxy that added Path.
func (b *binding) useSource() bool {
	return b.src.IsValid() && (b.nat || b.proto.Stream() || len(b.path) > 0)
}
