package dialog

import (
	"switchboard/routing"
	"switchboard/shards"
)

// Limits of the values a route stores with a dialog (SetValue).
const (
	maxValues    = 8   // pairs per dialog
	maxValueName = 32  // bytes of a name
	maxValueLen  = 256 // bytes of a value
)

// Values are the name/value pairs stored with a dialog (SetValue), in
// the order they were first set, as the events carry them: a view into
// the dialog during a subscriber's call. Encoded as, per pair, a byte of
// name length, the name, two bytes (big endian) of value length, the
// value.
type Values []byte

// Each calls fn with every pair, in order. A malformed encoding (never
// made by SetValue) ends the walk.
func (v Values) Each(fn func(name, value []byte)) {
	for len(v) > 0 {
		name, value, rest, ok := v.next()
		if !ok {
			return
		}
		fn(name, value)
		v = rest
	}
}

// Get returns the value stored under name.
func (v Values) Get(name string) ([]byte, bool) {
	for len(v) > 0 {
		n, value, rest, ok := v.next()
		if !ok {
			break
		}
		if string(n) == name {
			return value, true
		}
		v = rest
	}
	return nil, false
}

// Len returns the number of pairs.
func (v Values) Len() int {
	n := 0
	v.Each(func(_, _ []byte) { n++ })
	return n
}

func (v Values) next() (name, value []byte, rest Values, ok bool) {
	if len(v) < 1 {
		return nil, nil, nil, false
	}
	nl := int(v[0])
	if len(v) < 1+nl+2 {
		return nil, nil, nil, false
	}
	name = v[1 : 1+nl]
	vl := int(v[1+nl])<<8 | int(v[2+nl])
	if len(v) < 3+nl+vl {
		return nil, nil, nil, false
	}
	return name, v[3+nl : 3+nl+vl], v[3+nl+vl:], true
}

func appendValue(dst []byte, name string, value []byte) []byte {
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	dst = append(dst, byte(len(value)>>8), byte(len(value)))
	return append(dst, value...)
}

// SetValue stores name = value with the request's dialog, replacing an
// earlier value of that name (OpenSIPS store_dlg_value, $dlg_val(name)):
// the events carry the pairs (an accounting module writes them in the
// call's record). The request's dialog is the one CreateDialog made in
// this route, or that MatchDialog found for a re-INVITE or UPDATE. At
// most 8 pairs, a name of 1 to 32 letters, digits, '-' or '_', a value of
// at most 256 bytes, 1 KiB in all; false when one of those is passed, or
// the request has no dialog. A replaced pair's bytes stay in the
// dialog's buffer (4 KiB in all) until it ends, unless the new value has
// the old one's length: routes set values once or twice per call, not in
// a loop.
func (d *Dialog) SetValue(c *routing.Ctx, name string, value []byte) bool {
	if !validName(name) || len(name) > maxValueName || len(value) > maxValueLen {
		return false
	}
	id := uint64(c.Value(SlotDialog))
	if id == 0 {
		return false
	}
	callID := c.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := find(s, h, callID, id)
	if e == nil {
		return false
	}
	g := &e.Value
	old := Values(g.get(g.vals))
	size, count := 3+len(name)+len(value), 1
	var same []byte // the stored value of name, when it has value's length
	old.Each(func(n, v []byte) {
		if string(n) != name {
			size += 3 + len(n) + len(v)
			count++
		} else if len(v) == len(value) {
			same = v
		}
	})
	switch {
	case same != nil:
		copy(same, value) // in place: nothing moves
		d.changed(s, e)
		return true
	case count > maxValues || size > maxPart:
		return false
	case int(g.vals.off)+int(g.vals.n) == len(g.buf) && count > old.Len():
		// A new name and the pairs at the end of the buffer: append.
		if len(g.buf)+size-len(old) > maxStored {
			return false
		}
		g.reserve(size - len(old))
		off := len(g.buf) - len(old)
		g.buf = appendValue(g.buf, name, value)
		g.vals = span{uint16(off), uint16(size)}
	default:
		// Written again at the end, the new value in the old one's place
		// (or last).
		if len(g.buf)+size > maxStored {
			return false
		}
		g.reserve(size)
		// old still reads the bytes where they were, when reserve moved
		// the buffer.
		off := len(g.buf)
		found := false
		old.Each(func(n, v []byte) {
			if string(n) == name {
				v, found = value, true
			}
			g.buf = append(g.buf, byte(len(n)))
			g.buf = append(g.buf, n...)
			g.buf = append(g.buf, byte(len(v)>>8), byte(len(v)))
			g.buf = append(g.buf, v...)
		})
		if !found {
			g.buf = appendValue(g.buf, name, value)
		}
		g.vals = span{uint16(off), uint16(size)}
	}
	s.Account(e, cap(g.buf))
	d.changed(s, e)
	return true
}

// SetFlag sets the bits of flags on the request's dialog (OpenSIPS
// set_dlg_flag); the events carry them. Bits 24 to 31 belong to modules
// (the acc module marks calls to account as missed with bit 31); routes
// use bits 0 to 23. False: the request has no dialog.
func (d *Dialog) SetFlag(c *routing.Ctx, flags uint32) bool {
	id := uint64(c.Value(SlotDialog))
	if id == 0 {
		return false
	}
	callID := c.CallID()
	h := shards.Sum(callID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := find(s, h, callID, id)
	if e == nil {
		return false
	}
	if e.Value.flags|flags != e.Value.flags {
		e.Value.flags |= flags
		d.changed(s, e)
	}
	return true
}
