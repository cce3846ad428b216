package fraud

import (
	"switchboard/modules/internal/calltrack"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
)

// Result is what Check found (OpenSIPS check_fraud's return codes in
// brackets).
type Result int8

const (
	// NoRule: no rule of the profile is active for the number now (2).
	// Nothing is counted.
	NoRule Result = iota
	// OK: a rule matched and every count is below its thresholds (1).
	OK
	// Warning: a count reached a warning threshold (-1). The call may go
	// on; it is an event.
	Warning
	// Critical: a count reached a critical threshold (-2). The route
	// refuses the call; it is an event.
	Critical
	numResults
)

var resultNames = [numResults]string{"no_rule", "ok", "warning", "critical"}

func (r Result) String() string { return resultNames[r] }

// Check counts a new call from user (a caller name: the provider route set
// passes the authenticated user@domain) to number (the dialled user part)
// under the rules of profile, and compares the counts with the thresholds
// of the rule matched (OpenSIPS: check_fraud(user, number, profile)).
//
// The rule is the one with the longest prefix of number active at the
// present minute and day of the week. The counts are kept per user,
// profile and rule prefix; each includes the call being checked. A call
// is counted in calls per minute, of the day and sequential whatever the
// result, so a caller who keeps trying past a critical threshold stays
// refused; it is counted as concurrent only when it goes on (not
// Critical), c is an initial INVITE and the tracker keeps it, until the
// call ends (see CallEnded, CallFailed, Reply). Call Check just before
// relaying: a route that refuses the call afterwards calls CallFailed.
//
// An initial INVITE with the Call-ID and From tag of a call in progress
// that another INVITE started (not the call passing through the proxy
// again: that has the call's user too) is Critical, whatever the counts:
// its call could not be counted apart from the first one (see
// calltrack), and relayed it would be a call past the limits. CallInUse
// tells the route, which answers 482.
//
// c may be nil (nothing is tracked). Check allocates nothing.
func (f *Fraud) Check(c *routing.Ctx, user, number []byte, profile int) Result {
	rs := f.rules.Load()
	t := rs.profiles[profile]
	if t == nil {
		f.results[NoRule].Inc()
		return NoRule
	}
	now := f.clock.Now()
	wt := f.wall.Load().at(now)
	r := t.match(rs.rules, number, wt.minute, wt.weekday)
	if r == nil {
		f.results[NoRule].Inc()
		return NoRule
	}
	var kb [maxKey]byte
	key := appendKey(kb[:0], user, profile, r.prefix)
	h := shards.Sum(key)
	s := f.counters.Shard(h)
	track := c != nil && f.tracker != nil && c.IsMethod(parser.MethodInvite) && !c.HasToTag() && c.R.HasTransaction()

	s.Lock()
	e := f.counterFor(s, h, key)
	if e == nil { // cannot happen with maxKey below the table's key limit
		s.Unlock()
		f.results[OK].Inc()
		return OK
	}
	v := &e.Value
	v.count(r, now/1000, wt.day, numberHash(number))
	res, p, val, thr := v.judge(r)
	var lease Lease
	if track && res != Critical {
		v.conc++
		lease = Lease{ref: s.Ref(e)}
	}
	s.Unlock()

	if track && res != Critical {
		switch f.track(c, lease, user) {
		case calltrack.Tracked:
		case calltrack.InUse:
			lease.Release()
			f.results[Critical].Inc()
			f.h.Warn("fraud: INVITE with the Call-ID and From tag of a call in progress refused",
				"user", string(user), "call_id", string(c.CallID()))
			return Critical
		default:
			lease.Release()
		}
	}
	f.results[res].Inc()
	if res >= Warning {
		f.event(now, res, p, val, thr, user, number, r)
	}
	return res
}

// numberHash hashes the number as matching reads it (escapes decoded,
// visual separators skipped), so that "0900-123", "%30900123" and
// "0900123" are the same number for sequential calls.
func numberHash(number []byte) uint64 {
	var b [64]byte
	n := 0
	for i := 0; i < len(number); {
		var c byte
		c, i = numberByte(number, i)
		if isSeparator(c) {
			continue
		}
		if n == len(b) {
			return shards.Sum(number) // long: hash as it is
		}
		b[n] = c
		n++
	}
	return shards.Sum(b[:n])
}

// AppendCaller appends the caller of c as the provider route set names it
// for Check: the From user, '@', and the From host in lower case. Behind
// proxy authorization the From user is the authenticated one.
func AppendCaller(dst []byte, c *routing.Ctx) []byte {
	dst = append(dst, c.FUser()...)
	dst = append(dst, '@')
	for _, b := range c.FDomain() {
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		dst = append(dst, b)
	}
	return dst
}
