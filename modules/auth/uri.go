package auth

import (
	"bytes"

	"switchboard/parser"
)

// sameResource reports whether the digest uri parameter names the resource
// of the Request-URI, as RFC 7616 §3.4.6 and RFC 2617 §3.2.2.5 require of
// the server: the credentials were computed for this request and not
// captured from a request to another URI. The uri is the one the client
// put in the Request-Line, so a phone sends it byte for byte (the fast
// path). Otherwise two SIP URIs are the same resource when RFC 3261
// §19.1.4 calls them equal: scheme and host compare without case, the user
// and password with case, escaped and plain characters alike, the port
// only when both give it or neither does, parameters in any order (user,
// ttl, method and maddr must be in both or neither; others present in only
// one are ignored, such as a transport a proxy added), and headers as sets.
// Other schemes (tel) must be byte-equal, and so must URIs with more than
// maxComparedItems parameters or headers.
func sameResource(digestURI, ruri []byte) bool {
	if len(digestURI) == 0 {
		return false
	}
	if bytes.Equal(digestURI, ruri) {
		return true
	}
	var a, b parser.URI
	if a.Parse(digestURI) != nil || b.Parse(ruri) != nil {
		return false
	}
	if a.Scheme != b.Scheme || (a.Scheme != parser.SchemeSIP && a.Scheme != parser.SchemeSIPS) {
		return false
	}
	if tooMany(a.Params, ';') || tooMany(b.Params, ';') || tooMany(a.Headers, '&') || tooMany(b.Headers, '&') {
		return false
	}
	return equalEscaped(a.User, b.User, false) && equalEscaped(a.Password, b.Password, false) &&
		parser.EqualFold(a.Host, b.Host) && a.Port == b.Port &&
		sameParams(a.Params, b.Params) && sameHeaders(a.Headers, b.Headers)
}

// maxComparedItems bounds the parameters (and the headers) of a URI that
// sameResource compares item by item: each item of one URI is looked for
// in the other, so two URIs of 10,000 parameters each, which fit in one
// datagram, took seconds of CPU, for a request that need not authenticate
// to get there. A phone's Request-URI has a handful.
const maxComparedItems = 32

// tooMany reports whether list holds more than maxComparedItems items
// separated by sep.
func tooMany(list []byte, sep byte) bool {
	return bytes.Count(list, []byte{sep}) >= maxComparedItems
}

// sameParams compares uri-parameters by RFC 3261 §19.1.4.
func sameParams(a, b []byte) bool {
	ok := true
	eachFirstPair(a, ';', func(name, val []byte) bool {
		if v, found := pairValue(b, ';', name); found {
			ok = equalEscaped(val, v, true)
		} else {
			ok = !mustMatch(name)
		}
		return ok
	})
	if !ok {
		return false
	}
	// A parameter that must be in both and is only in b.
	eachPair(b, ';', func(name, _ []byte) bool {
		if mustMatch(name) {
			_, ok = pairValue(a, ';', name)
		}
		return ok
	})
	return ok
}

// mustMatch: "A user, ttl, or method uri-parameter appearing in only one
// URI never matches", and neither does an maddr in only one.
func mustMatch(name []byte) bool {
	for _, n := range [...]string{"user", "ttl", "method", "maddr"} {
		if parser.EqualFold(name, []byte(n)) {
			return true
		}
	}
	return false
}

// sameHeaders compares the "?name=value&..." components as sets: every
// header of one must be in the other with the same value.
func sameHeaders(a, b []byte) bool {
	return subsetHeaders(a, b) && subsetHeaders(b, a)
}

func subsetHeaders(a, b []byte) bool {
	ok := true
	eachFirstPair(a, '&', func(name, val []byte) bool {
		v, found := pairValue(b, '&', name)
		ok = found && equalEscaped(val, v, true)
		return ok
	})
	return ok
}

// eachPair calls fn with every "name[=value]" of list (separated by sep)
// until fn returns false.
func eachPair(list []byte, sep byte, fn func(name, val []byte) bool) {
	for len(list) > 0 {
		item := list
		if i := bytes.IndexByte(list, sep); i >= 0 {
			item, list = list[:i], list[i+1:]
		} else {
			list = nil
		}
		name, val := item, []byte(nil)
		if i := bytes.IndexByte(item, '='); i >= 0 {
			name, val = item[:i], item[i+1:]
		}
		if len(name) > 0 && !fn(name, val) {
			return
		}
	}
}

// eachFirstPair is eachPair for the first item of each name: a name
// given twice (";x=1;x=2") counts once, with its first value, as
// pairValue reads the other list's. Comparing every item of one list with
// the first of its name in the other made a URI differ from itself spelt
// otherwise, and a from b but not b from a. Lists hold at most
// maxComparedItems items here, so looking back is cheap.
func eachFirstPair(list []byte, sep byte, fn func(name, val []byte) bool) {
	all := list
	eachPair(list, sep, func(name, val []byte) bool {
		before := all[:cap(all)-cap(name)] // name is a view into all: what came before it
		if _, seen := pairValue(before, sep, name); seen {
			return true
		}
		return fn(name, val)
	})
}

// pairValue finds name (without case) in list.
func pairValue(list []byte, sep byte, name []byte) (val []byte, found bool) {
	eachPair(list, sep, func(n, v []byte) bool {
		if equalEscaped(n, name, true) {
			val, found = v, true
			return false
		}
		return true
	})
	return val, found
}

// equalEscaped compares two URI components with %HH escapes decoded
// (RFC 3261 §19.1.4: an escaped character equals its plain form), with or
// without case. A malformed escape never equals anything but itself.
func equalEscaped(a, b []byte, fold bool) bool {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, na, oka := unescapeAt(a, i)
		cb, nb, okb := unescapeAt(b, j)
		if !oka || !okb {
			return bytes.Equal(a, b)
		}
		if fold {
			ca, cb = lower(ca), lower(cb)
		}
		if ca != cb {
			return false
		}
		i, j = na, nb
	}
	return i == len(a) && j == len(b)
}

// unescapeAt returns the character at s[i] (decoding %HH) and the index
// after it; ok is false for a "%" that starts no escape.
func unescapeAt(s []byte, i int) (c byte, next int, ok bool) {
	if s[i] != '%' {
		return s[i], i + 1, true
	}
	c, ok = parser.DecodeEscape(s, i)
	return c, i + 3, ok
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
