package routing

import (
	"sync/atomic"
)

// Domains is the set of SIP domains served here (OpenSIPS: the domain
// module's table and is_myself's aliases). It is read on every request
// without a lock and replaced as a whole on reload.
type Domains struct {
	set atomic.Pointer[map[string]struct{}]
}

// NewDomains returns a set holding names (compared case-insensitively).
func NewDomains(names []string) *Domains {
	d := &Domains{}
	d.Replace(names)
	return d
}

// Replace swaps in a new list of domains.
func (d *Domains) Replace(names []string) {
	m := make(map[string]struct{}, len(names))
	for _, n := range names {
		m[lowerASCII(n)] = struct{}{}
	}
	d.set.Store(&m)
}

// Has reports whether host is a served domain. It does not allocate: the
// lookup lowers host into a stack buffer.
func (d *Domains) Has(host []byte) bool {
	if len(host) > 253 {
		return false
	}
	var buf [253]byte
	n := copy(buf[:], host)
	for i := 0; i < n; i++ {
		if c := buf[i]; c >= 'A' && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	_, ok := (*d.set.Load())[string(buf[:n])]
	return ok
}

// List returns the served domains.
func (d *Domains) List() []string {
	m := *d.set.Load()
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
