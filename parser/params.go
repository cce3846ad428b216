package parser

import "bytes"

// Parameter lists (";name=value" sequences in URIs and header values) are
// validated once when the value is parsed and kept as one raw view; lookups
// rescan that view, which is faster than storing every parameter for the
// few that are ever read.

// skipQuoted returns the index after the quoted-string that starts at b[i]
// (which must be '"'), or -1 when it is not terminated.
func skipQuoted(b []byte, i int) int {
	i++
	for {
		k := bytes.IndexByte(b[i:], '"')
		if k < 0 {
			return -1
		}
		j := i + k
		// The quote is escaped when an odd run of backslashes precedes it.
		bs := 0
		for j-1-bs >= i && b[j-1-bs] == '\\' {
			bs++
		}
		if bs&1 == 0 {
			return j + 1
		}
		i = j + 1
	}
}

// scanParam parses one generic-param (token [EQUAL (token / host /
// quoted-string)]) at b[i], LWS allowed around "=". It returns the name, the
// raw value (quotes kept; nil when there is no "="), and the index after it.
func scanParam(b []byte, i int) (name, val []byte, next int, ok bool) {
	ns, ne, vs, next, ok := paramAt(b, i)
	if !ok {
		return nil, nil, next, false
	}
	if vs >= 0 {
		val = b[vs:next]
	}
	return b[ns:ne], val, next, true
}

// paramAt is scanParam returning offsets, which the hot paths (Via and
// name-addr parameters) keep instead of building views they do not store:
// the name is b[ns:ne], the value b[vs:next], vs < 0 when there is no "=".
func paramAt(b []byte, i int) (ns, ne, vs, next int, ok bool) {
	if uint(i) < uint(len(b)) && lwsTab[b[i]] {
		i = skipLWS(b, i)
	}
	ns = i
	i = span(&tokenTab, b, i)
	if i == ns {
		return ns, ns, -1, i, false
	}
	if uint(i) < uint(len(b)) {
		c := b[i]
		if c == '=' {
			vs := i + 1
			if uint(vs) < uint(len(b)) && paramTab[b[vs]] {
				// the common case: no LWS, no quotes
				return ns, i, vs, span(&paramTab, b, vs), true
			}
			vs, next, ok := valueAt(b, vs)
			return ns, i, vs, next, ok
		}
		if lwsTab[c] {
			if j := skipLWS(b, i); j < len(b) && b[j] == '=' {
				vs, next, ok := valueAt(b, j+1)
				return ns, i, vs, next, ok
			}
		}
	}
	return ns, i, -1, i, true
}

// valueAt parses the value of a parameter after "=" (LWS allowed first):
// b[vs:next].
func valueAt(b []byte, j int) (vs, next int, ok bool) {
	j = skipLWS(b, j)
	vs = j
	if j < len(b) && b[j] == '"' {
		j = skipQuoted(b, j)
		if j < 0 {
			return -1, len(b), false
		}
	} else {
		j = span(&paramTab, b, j)
		if j == vs {
			return -1, j, false
		}
	}
	return vs, j, true
}

// nameAt reports whether b[ns:ne] equals the lower-case letters-only word w
// of length n (at most 8), ignoring case; nameIs without the view.
func nameAt(b []byte, ns, ne int, w uint64, n int) bool {
	return ne-ns == n && (load8(b, ns)|0x2020202020202020)&keepBytes[n] == w
}

// scanParams parses ";"-separated parameters starting at b[i], where b[i]
// (after LWS) is ';'. It stops before the first byte after the last
// parameter that is not LWS and not ';' (a ',' or the end). It returns the
// view of the parameters (without the first ';') and the index where it
// stopped, after trailing LWS.
func scanParams(b []byte, i int) (params []byte, next int, ok bool) {
	i = skipLWS(b, i)
	if i >= len(b) || b[i] != ';' {
		return nil, i, true
	}
	start := -1
	end := i
	for i < len(b) && b[i] == ';' {
		_, _, n, okp := scanParam(b, i+1)
		if !okp {
			return nil, n, false
		}
		if start < 0 {
			start = skipLWS(b, i+1)
		}
		end = n
		i = skipLWS(b, n)
	}
	return b[start:end], i, true
}

// lookupParam finds name (case-insensitive) in a parameter view produced by
// scanParams or a URI's Params.
func lookupParam(params []byte, name string) ([]byte, bool) {
	i := 0
	for i < len(params) {
		n, v, next, ok := scanParam(params, i)
		if !ok {
			// URI params may hold characters outside the header grammar;
			// fall back to a plain split.
			return lookupPlain(params, name)
		}
		if equalFoldString(n, name) {
			return v, true
		}
		i = skipLWS(params, next)
		if i < len(params) && params[i] == ';' {
			i++
		} else {
			break
		}
	}
	return nil, false
}

func lookupPlain(params []byte, name string) ([]byte, bool) {
	for len(params) > 0 {
		seg := params
		rest := []byte(nil)
		for k, c := range params {
			if c == ';' {
				seg, rest = params[:k], params[k+1:]
				break
			}
		}
		n, v := seg, []byte(nil)
		for k, c := range seg {
			if c == '=' {
				n, v = seg[:k], seg[k+1:]
				break
			}
		}
		if equalFoldString(trimLWS(n), name) {
			if v != nil {
				v = trimLWS(v)
			}
			return v, true
		}
		if rest == nil {
			break
		}
		params = rest
	}
	return nil, false
}

// Unquote returns the content of a quoted-string without the quotes, or v
// unchanged when it is not quoted. Quoted-pairs are left escaped; use
// AppendUnquoted to resolve them.
func Unquote(v []byte) []byte {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// AppendUnquoted appends v to dst with its quotes removed and quoted-pairs
// (\x) resolved.
func AppendUnquoted(dst, v []byte) []byte {
	v = Unquote(v)
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		dst = append(dst, v[i])
	}
	return dst
}
