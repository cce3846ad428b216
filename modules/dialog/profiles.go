package dialog

import (
	"sort"
	"sync"
	"sync/atomic"

	"switchboard/routing"
	"switchboard/shards"
)

// Profile counts dialogs (OpenSIPS dialog profiles): a route puts a
// dialog in it, with a value for a profile with values (the caller, a
// trunk), and reads how many dialogs are in it to limit concurrent
// calls. A dialog leaves its profiles when it ends.
type Profile struct {
	name      string
	idx       uint8
	withValue bool
	auto      uint8 // what ApplyProfiles takes as value (autoNone: it skips the profile)
	limit     int
	total     atomic.Int64
	stripes   [profileStripes]profileStripe
}

// profileStripes spreads the values of a profile over locks of their
// own, picked by the value's hash, so that calls of different callers
// do not meet on one lock.
const profileStripes = 64

type profileStripe struct {
	mu     sync.Mutex
	counts map[string]int32
	_      [40]byte // one stripe per cache line
}

func newProfiles(ps []ProfileSettings) ([]*Profile, map[string]*Profile) {
	out := make([]*Profile, len(ps))
	byName := make(map[string]*Profile, len(ps))
	for i, s := range ps {
		p := &Profile{name: s.Name, idx: uint8(i), withValue: s.WithValue, auto: autoOf(s.Value), limit: s.Limit}
		for j := range p.stripes {
			p.stripes[j].counts = map[string]int32{}
		}
		out[i] = p
		byName[s.Name] = p
	}
	return out, byName
}

func sameProfiles(have []*Profile, want []ProfileSettings) bool {
	if len(have) != len(want) {
		return false
	}
	for i, p := range have {
		if p.name != want[i].Name || p.withValue != want[i].WithValue || p.auto != autoOf(want[i].Value) || p.limit != want[i].Limit {
			return false
		}
	}
	return true
}

// Name is the profile's name.
func (p *Profile) Name() string { return p.name }

// WithValue reports whether the profile counts per value.
func (p *Profile) WithValue() bool { return p.withValue }

// Total returns the dialogs in the profile, all values together.
func (p *Profile) Total() int64 { return p.total.Load() }

// Size returns the dialogs in the profile with value (any value, or the
// only counter, for a profile without values or a nil value).
func (p *Profile) Size(value []byte) int {
	if !p.withValue || value == nil {
		return int(p.total.Load())
	}
	st := &p.stripes[shards.Sum(value)%profileStripes]
	st.mu.Lock()
	n := st.counts[string(value)]
	st.mu.Unlock()
	return int(n)
}

// add counts one more dialog with value, unless limit > 0 and there are
// limit already. A new value allocates its key.
func (p *Profile) add(value []byte, limit int) bool {
	if !p.withValue {
		for {
			n := p.total.Load()
			if limit > 0 && n >= int64(limit) {
				return false
			}
			if p.total.CompareAndSwap(n, n+1) {
				return true
			}
		}
	}
	st := &p.stripes[shards.Sum(value)%profileStripes]
	st.mu.Lock()
	n := st.counts[string(value)]
	if limit > 0 && int(n) >= limit {
		st.mu.Unlock()
		return false
	}
	st.counts[string(value)] = n + 1
	st.mu.Unlock()
	p.total.Add(1)
	return true
}

// release counts one dialog less with value.
func (p *Profile) release(value []byte) {
	p.total.Add(-1)
	if !p.withValue {
		return
	}
	st := &p.stripes[shards.Sum(value)%profileStripes]
	st.mu.Lock()
	if n := st.counts[string(value)]; n <= 1 {
		delete(st.counts, string(value))
	} else {
		st.counts[string(value)] = n - 1
	}
	st.mu.Unlock()
}

// values returns every value with its count (management API).
func (p *Profile) values() []ProfileValue {
	var out []ProfileValue
	for i := range p.stripes {
		st := &p.stripes[i]
		st.mu.Lock()
		for v, n := range st.counts {
			out = append(out, ProfileValue{Value: v, Size: int(n)})
		}
		st.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Size != out[j].Size {
			return out[i].Size > out[j].Size
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// Profile returns the profile named name (dialog.profiles), nil when
// there is none: a route set looks its profiles up once, when it is
// built.
func (d *Dialog) Profile(name string) *Profile { return d.byName[name] }

// SetProfile puts the request's dialog (made by CreateDialog in this
// route) in the profile named name, with value for a profile with values
// (OpenSIPS set_dlg_profile(name, value)); a dialog in it with that
// value already is counted once. False: no such profile, no dialog, or
// the dialog is in maxDlgProfile (4) profiles.
func (d *Dialog) SetProfile(c *routing.Ctx, name string, value []byte) bool {
	return d.SetProfileLimit(c, name, value, 0)
}

// SetProfileLimit is SetProfile that puts the dialog in the profile only
// while it holds fewer than limit dialogs with that value, checked and
// counted in one step (two calls at once cannot both take the last
// place, as get_profile_size followed by set_dlg_profile could). limit 0:
// no limit. The route answers a refusal (486, or 403, 503...).
func (d *Dialog) SetProfileLimit(c *routing.Ctx, name string, value []byte, limit int) bool {
	p := d.byName[name]
	if p == nil {
		return false
	}
	return d.setProfile(c, p, value, limit)
}

func (d *Dialog) setProfile(c *routing.Ctx, p *Profile, value []byte, limit int) bool {
	id := uint64(c.Value(SlotDialog))
	if id == 0 {
		return false
	}
	if !p.withValue {
		value = nil
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
	for i := 0; i < int(g.nprof); i++ {
		if g.profs[i].idx == p.idx && string(g.get(g.profs[i].val)) == string(value) {
			return true // in it already: counted once
		}
	}
	if int(g.nprof) >= maxDlgProfile {
		return false
	}
	ref := profRef{idx: p.idx}
	if !g.put(value, &ref.val) {
		return false
	}
	if !p.add(value, limit) {
		g.buf = g.buf[:ref.val.off] // the value put last
		return false
	}
	g.profs[g.nprof] = ref
	g.nprof++
	s.Account(e, cap(g.buf))
	d.changed(s, e)
	return true
}

// ProfileSize returns the dialogs in the profile named name with value
// (OpenSIPS get_profile_size(name, value)); value nil, or a profile
// without values: all of them. -1: no such profile.
func (d *Dialog) ProfileSize(name string, value []byte) int {
	p := d.byName[name]
	if p == nil {
		return -1
	}
	return p.Size(value)
}

// IsInProfile reports whether the request's dialog is in the profile
// named name, with value when value is not nil (OpenSIPS
// is_in_profile(name, value)).
func (d *Dialog) IsInProfile(c *routing.Ctx, name string, value []byte) bool {
	p := d.byName[name]
	id := uint64(c.Value(SlotDialog))
	if p == nil || id == 0 {
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
	for i := 0; i < int(g.nprof); i++ {
		if g.profs[i].idx == p.idx && (value == nil || string(g.get(g.profs[i].val)) == string(value)) {
			return true
		}
	}
	return false
}

// What ApplyProfiles takes as a profile's value (ProfileSettings.Value).
const (
	autoNone uint8 = iota
	autoAll
	autoFromUser
	autoRURIUser
	autoSourceIP
)

func autoOf(v string) uint8 {
	switch v {
	case "all":
		return autoAll
	case "from_user":
		return autoFromUser
	case "ruri_user":
		return autoRURIUser
	case "source_ip":
		return autoSourceIP
	}
	return autoNone
}

// Limit is the profile's configured limit per value (0: none).
func (p *Profile) Limit() int { return p.limit }

// ApplyProfiles puts the request's dialog (made by CreateDialog in this
// route) in every profile whose configuration names a value
// (dialog.profiles[].value: the From user, the Request-URI user, the
// source address, or all for a profile without values), each within its
// limit. False: a limit is reached (the profile named in the second
// result), and the route refuses the call (486 Busy Here, or 403 / 503 as
// the operator prefers); the profiles taken before are released when the
// refused dialog ends. A request without dialog is put in nothing: true.
func (d *Dialog) ApplyProfiles(c *routing.Ctx) (bool, string) {
	if c.Value(SlotDialog) == 0 {
		return true, ""
	}
	for _, p := range d.profiles {
		var v []byte
		var ip [48]byte
		switch p.auto {
		case autoNone:
			continue
		case autoFromUser:
			v = c.FUser()
		case autoRURIUser:
			v = c.RUser()
		case autoSourceIP:
			a := c.SrcIP().Unmap()
			v = a.AppendTo(ip[:0])
		}
		if !d.setProfile(c, p, v, p.limit) {
			d.h.Warn("dialog: profile limit reached, call refused", "profile", p.name, "value", string(v), "limit", p.limit)
			d.limited.Inc()
			return false, p.name
		}
	}
	return true, ""
}
