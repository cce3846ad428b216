package permissions

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"regexp"
	"sort"

	"switchboard/store"
	"switchboard/transport"
)

// entry is one address-table row in memory, under its address or subnet.
type entry struct {
	id      int64
	group   uint16
	port    uint16 // 0: any port
	protos  uint8  // bit 1<<transport.Proto per transport it matches
	pattern *regexp.Regexp
	info    string
}

const anyProto = 1<<transport.UDP | 1<<transport.TCP | 1<<transport.TLS | 1<<transport.WS | 1<<transport.WSS

// table is one immutable snapshot of the address table. A reload builds a
// new one and swaps the pointer, so a lookup sees the old set or the new,
// never a mixture.
//
// Single addresses (/32, /128) are in exact4/exact6, keyed by the
// address: one hash probe. Subnets are in sub4/sub6, keyed by the masked
// address and the prefix length, and lens4/lens6 list the lengths
// present, longest first: a lookup masks the address to each length in
// turn and probes, so it costs one probe per distinct length in use (a
// handful in practice, at most 32 or 128), whatever the number of
// entries. The first length with an entry that matches wins, so a more
// specific entry (and its context info) shadows a broader one. Under one
// key the entries are ordered by group, then most specific first (a port
// before any port, a transport before any, a pattern before none), then
// id. Keys are plain integers rather than netip values: the map probes
// then take Go's fast paths (uint32, uint64), about three times quicker.
type table struct {
	exact4  map[uint32][]entry
	exact6  map[key6][]entry
	sub4    map[uint64][]entry // address<<8 | length
	sub6    map[key6][]entry
	lens4   []uint8
	lens6   []uint8
	groups  map[int]int // entries per group
	entries int
	skipped int // rows that failed validation (edited in the database by hand)
	subject subject
}

// key6 is an IPv6 address (masked to bits for a subnet).
type key6 struct {
	hi, lo uint64
	bits   uint64
}

func v4key(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6key(a netip.Addr) key6 {
	b := a.As16()
	return key6{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), bits: 128}
}

// sub4key is a4 masked to its first bits, with the length.
func sub4key(a4 uint32, bits uint8) uint64 {
	return uint64(a4&^(^uint32(0)>>bits))<<8 | uint64(bits)
}

func sub6key(k key6, bits uint8) key6 {
	if bits <= 64 {
		return key6{hi: k.hi &^ (^uint64(0) >> bits), bits: uint64(bits)}
	}
	return key6{hi: k.hi, lo: k.lo &^ (^uint64(0) >> (bits - 64)), bits: uint64(bits)}
}

// subject says what an entry's pattern is matched against.
type subject uint8

const (
	subjectFrom subject = iota // the From URI
	subjectRURI                // the Request-URI
)

var emptyTable = newTable(subjectFrom)

func newTable(subj subject) *table {
	return &table{
		exact4:  make(map[uint32][]entry),
		exact6:  make(map[key6][]entry),
		sub4:    make(map[uint64][]entry),
		sub6:    make(map[key6][]entry),
		groups:  make(map[int]int),
		subject: subj,
	}
}

// buildTable makes a table from stored rows. Rows that do not validate
// are skipped and counted (skip is called for each): an address list
// grants trust, so a row that cannot be read grants none. Patterns are
// compiled once here; prev's compiled patterns are reused by text.
func buildTable(rows []store.Address, subj subject, prev *table, skip func(a store.Address, err error)) *table {
	t := newTable(subj)
	compiled := map[string]*regexp.Regexp{}
	if prev != nil {
		prev.eachPattern(func(re *regexp.Regexp) { compiled[re.String()] = re })
	}
	var has4, has6 [129]bool
	for _, a := range rows {
		e, p, err := toEntry(a, compiled)
		if err != nil {
			t.skipped++
			if skip != nil {
				skip(a, err)
			}
			continue
		}
		a, bits := p.Addr(), uint8(p.Bits())
		switch {
		case a.Is4() && p.IsSingleIP():
			k := v4key(a)
			t.exact4[k] = append(t.exact4[k], e)
		case a.Is4():
			k := sub4key(v4key(a), bits)
			t.sub4[k] = append(t.sub4[k], e)
			has4[bits] = true
		case p.IsSingleIP():
			k := v6key(a)
			t.exact6[k] = append(t.exact6[k], e)
		default:
			k := sub6key(v6key(a), bits)
			t.sub6[k] = append(t.sub6[k], e)
			has6[bits] = true
		}
		t.groups[int(e.group)]++
		t.entries++
	}
	for l := 128; l >= 0; l-- {
		if has4[l] {
			t.lens4 = append(t.lens4, uint8(l))
		}
		if has6[l] {
			t.lens6 = append(t.lens6, uint8(l))
		}
	}
	t.eachList(sortEntries)
	return t
}

func toEntry(a store.Address, compiled map[string]*regexp.Regexp) (entry, netip.Prefix, error) {
	// The pattern is compiled below, once per distinct text, rather than
	// by NormalizeStoredAddress for every row and reload. The row's mask
	// is its prefix length as stored: mask 0 is /0 (NormalizeAddress,
	// for input, would read it as "not given", a single address).
	pattern := a.Pattern
	a.Pattern = ""
	if err := store.NormalizeStoredAddress(&a); err != nil {
		return entry{}, netip.Prefix{}, err
	}
	a.Pattern = pattern
	p := netip.PrefixFrom(netip.MustParseAddr(a.IP), a.Mask)
	e := entry{id: a.ID, group: uint16(a.Group), port: uint16(a.Port), info: a.ContextInfo, protos: anyProto}
	if a.Proto != "any" {
		tp, _ := transport.ParseProto(a.Proto)
		e.protos = 1 << tp
	}
	if a.Pattern != "" {
		re := compiled[a.Pattern]
		if re == nil {
			if len(a.Pattern) > store.MaxPatternLen {
				return entry{}, netip.Prefix{}, fmt.Errorf("pattern %.20q... longer than %d bytes", a.Pattern, store.MaxPatternLen)
			}
			var err error
			if re, err = regexp.Compile(a.Pattern); err != nil {
				return entry{}, netip.Prefix{}, fmt.Errorf("pattern %q: %v", a.Pattern, err)
			}
			compiled[a.Pattern] = re
		}
		e.pattern = re
	}
	return e, p, nil
}

func sortEntries(es []entry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := &es[i], &es[j]
		if a.group != b.group {
			return a.group < b.group
		}
		if sa, sb := a.specificity(), b.specificity(); sa != sb {
			return sa > sb
		}
		return a.id < b.id
	})
}

func (e *entry) specificity() int {
	s := 0
	if e.port != 0 {
		s += 4
	}
	if e.protos != anyProto {
		s += 2
	}
	if e.pattern != nil {
		s++
	}
	return s
}

func (t *table) eachList(f func([]entry)) {
	for _, es := range t.exact4 {
		f(es)
	}
	for _, es := range t.exact6 {
		f(es)
	}
	for _, es := range t.sub4 {
		f(es)
	}
	for _, es := range t.sub6 {
		f(es)
	}
}

func (t *table) eachPattern(f func(*regexp.Regexp)) {
	t.eachList(func(es []entry) {
		for i := range es {
			if es[i].pattern != nil {
				f(es[i].pattern)
			}
		}
	})
}

// query is what a lookup matches entries against.
type query struct {
	group uint16 // 0: any group
	port  uint16
	proto transport.Proto
	// full: port, proto and pattern are checked too; otherwise only the
	// address and the group (InGroup).
	full    bool
	subject []byte
}

// lookup returns the first entry that matches addr and q, most specific
// address first, or nil. It allocates nothing.
func (t *table) lookup(addr netip.Addr, q *query) *entry {
	if !addr.IsValid() || addr.Zone() != "" {
		// A zone (fe80::1%eth0) is a link-local source: no entry names
		// one, and none should match it by accident.
		return nil
	}
	addr = addr.Unmap()
	if addr.Is4() {
		a := v4key(addr)
		if es, ok := t.exact4[a]; ok {
			if e := q.pick(es); e != nil {
				return e
			}
		}
		for _, l := range t.lens4 {
			if es, ok := t.sub4[sub4key(a, l)]; ok {
				if e := q.pick(es); e != nil {
					return e
				}
			}
		}
		return nil
	}
	a := v6key(addr)
	if es, ok := t.exact6[a]; ok {
		if e := q.pick(es); e != nil {
			return e
		}
	}
	for _, l := range t.lens6 {
		if es, ok := t.sub6[sub6key(a, l)]; ok {
			if e := q.pick(es); e != nil {
				return e
			}
		}
	}
	return nil
}

func (q *query) pick(es []entry) *entry {
	for i := range es {
		e := &es[i]
		if q.group != 0 && e.group != q.group {
			continue
		}
		if !q.full {
			return e
		}
		if e.port != 0 && e.port != q.port {
			continue
		}
		if e.protos&(1<<q.proto) == 0 {
			continue
		}
		if e.pattern != nil && !e.pattern.Match(q.subject) {
			continue
		}
		return e
	}
	return nil
}
