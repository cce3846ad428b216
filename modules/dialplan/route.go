package dialplan

import (
	"bytes"
	"sync"

	"switchboard/parser"
	"switchboard/routing"
)

// userBuf is the room kept on the stack for a user part and its
// translation; longer ones still work, through the heap.
const userBuf = 256

// TranslateRUser translates the Request-URI's user part with the rules of
// dialplan id and writes the result back (OpenSIPS dp_translate(id,
// "$rU", "$rU")). It returns false, leaving the Request-URI alone, when
// the URI has no user part or no rule matches. Escapes in the user part
// (%2B for '+') are decoded before matching, so a number is matched as
// the next hop reads it; characters of the output a user part cannot
// carry are escaped. It allocates nothing for exact and prefix rules.
func (d *Dialplan) TranslateRUser(c *routing.Ctx, id int) bool {
	_, ok := d.TranslateRUserAttrs(c, id)
	return ok
}

// TranslateRUserAttrs is TranslateRUser returning the matching rule's
// attributes (OpenSIPS dp_translate's attrs variable).
func (d *Dialplan) TranslateRUserAttrs(c *routing.Ctx, id int) (attrs string, ok bool) {
	user := c.RUser()
	if len(user) == 0 {
		return "", false
	}
	in := user
	if bytes.IndexByte(user, '%') >= 0 {
		in = unescape(user)
	}
	var ob [userBuf]byte
	res, attrs, ok := d.Translate(id, in, ob[:0])
	if !ok {
		return "", false
	}
	if i := firstUnsafe(res); i >= 0 {
		var eb [3 * userBuf]byte
		res = escapeUser(eb[:0], res, i)
	}
	return attrs, c.SetRUser(res)
}

// unescape decodes a user part's escapes. It is the rare case, and its
// result may reach a regular expression (which makes it escape), so it
// gets a buffer of its own on the heap. A malformed escape is matched as
// written.
func unescape(user []byte) []byte {
	dec, err := parser.Unescape(make([]byte, 0, len(user)), user)
	if err != nil {
		return user
	}
	return dec
}

// isUserChar reports the characters a SIP user part carries unescaped
// (RFC 3261 §25.1: unreserved and user-unreserved).
func isUserChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '!', '~', '*', '\'', '(', ')', '&', '=', '+', '$', ',', ';', '?', '/':
		return true
	}
	return false
}

func firstUnsafe(b []byte) int {
	for i, c := range b {
		if !isUserChar(c) {
			return i
		}
	}
	return -1
}

// escapeUser appends b to dst with the characters from i on that a user
// part cannot carry written as %HH ('%' included: the input was decoded,
// so a '%' in the output is a character, not an escape).
func escapeUser(dst, b []byte, i int) []byte {
	const hex = "0123456789ABCDEF"
	dst = append(dst, b[:i]...)
	for _, c := range b[i:] {
		if isUserChar(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', hex[c>>4], hex[c&15])
	}
	return dst
}

// bufPool holds output buffers for TranslateTo, whose setter is a
// function value: what is passed to it escapes, so a stack buffer would
// be moved to the heap on every call.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, userBuf); return &b }}

// TranslateTo is dp_translate(id, input, output) for any input and
// output: in is what the route chooses (c.FUser(), c.TUser(), a header
// value...) and set writes the result where the route wants it, e.g.
// (*routing.Ctx).SetRUser or (*routing.Ctx).SetRDomain, or a function of
// the route's own. The result is passed as the rule produced it (no
// escaping) and is valid during set only: SetRUser and SetRDomain refuse
// what a URI user or host cannot carry as it is. It returns the rule's
// attributes; false when no rule matches (set is not called) or set
// returned false.
func (d *Dialplan) TranslateTo(c *routing.Ctx, id int, in []byte, set func(c *routing.Ctx, out []byte) bool) (attrs string, ok bool) {
	bp := bufPool.Get().(*[]byte)
	res, attrs, ok := d.Translate(id, in, (*bp)[:0])
	if ok {
		ok = set(c, res)
	}
	if cap(res) <= 4096 { // a rare huge result is not kept
		*bp = res[:0]
	}
	bufPool.Put(bp)
	return attrs, ok
}
