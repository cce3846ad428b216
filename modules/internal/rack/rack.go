// Package rack shifts the CSeq number a PRACK's RAck names (RFC 3262:
// "RAck: rseq cseq method"), for the modules that change the CSeq
// numbers of a dialog's requests on their way (uac_auth's re-sent INVITE
// one number up): the callee knows its INVITE by the shifted number.
package rack

import (
	"strconv"

	"switchboard/parser"
	"switchboard/txn"
)

// Shift adds n to the CSeq number of m's RAck in the copy ed edits (the
// value's own bytes kept by r until the relay). False when m has no RAck
// that reads, or the number would pass 2^32-1.
func Shift(r *txn.Request, ed *parser.Editor, m *parser.Message, n uint32) bool {
	if v := m.Get(parser.HdrRAck); v != nil {
		j := digits(v, 0)
		k := j
		// Linear white space, a fold's line end included: the parser
		// keeps a folded value's bytes as they came.
		for k < len(v) && (v[k] == ' ' || v[k] == '\t' || v[k] == '\r' || v[k] == '\n') {
			k++
		}
		e := digits(v, k)
		if j == 0 || k == j || e == k || e-k > 10 {
			return false
		}
		cs, err := strconv.ParseUint(string(v[k:e]), 10, 64)
		if err != nil || cs+uint64(n) > 1<<32-1 {
			return false
		}
		var buf [96]byte
		out := append(buf[:0], v[:k]...)
		out = strconv.AppendUint(out, cs+uint64(n), 10)
		out = append(out, v[e:]...)
		return ed.SetHeaderValue(parser.HdrRAck, r.Own(out))
	}
	return false
}

// digits returns the end of the run of decimal digits in v from i.
func digits(v []byte, i int) int {
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	return i
}
