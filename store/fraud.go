package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// FraudRule is one row of the fraud_rules table, the rules of the fraud
// module (OpenSIPS: a row of the fraud_detection table). Calls are checked
// against the rules of one profile: the rule with the longest Prefix of the
// dialled number whose hours and days include the present time applies.
type FraudRule struct {
	ID      int64
	Profile int // 1 or more; a route checks a call against one profile
	// Prefix is matched against the dialled number: digits, '+', '*' and
	// '#', at most 64; "" matches every number.
	Prefix string
	// StartHour and EndHour ("HH:MM", default 00:00 and 23:59) bound the
	// minutes of the day in which the rule applies, both included; a
	// StartHour after EndHour spans midnight.
	StartHour, EndHour string
	// Days lists the days of the week the rule applies on, three-letter
	// English names and ranges ("Mon-Fri, Sun", "Fri-Mon"); "" is every day.
	Days string
	// The thresholds, each a warning and a critical level; 0 leaves one
	// off. TotalCalls counts the calls of the day (OpenSIPS total_calls).
	CPM, TotalCalls, ConcurrentCalls, SequentialCalls FraudLimit

	Created int64 // unix seconds
}

// FraudLimit is a warning and a critical threshold. A value reaches a
// threshold when it is equal to it or above; 0 is no threshold.
type FraudLimit struct {
	Warning, Critical int
}

// Limits of fraud rule fields.
const (
	MaxFraudPrefix    = 64
	MaxFraudThreshold = 1_000_000
	maxFraudProfile   = 1<<31 - 1
	maxFraudDays      = 64
)

// FraudLimitNames are the rule's thresholds as named in the table, the
// management API and error messages, in the order of FraudRule.Limits.
var FraudLimitNames = [4]string{"cpm", "total_calls", "concurrent_calls", "sequential_calls"}

// Limits returns pointers to the four thresholds in the order of
// FraudLimitNames.
func (r *FraudRule) Limits() [4]*FraudLimit {
	return [4]*FraudLimit{&r.CPM, &r.TotalCalls, &r.ConcurrentCalls, &r.SequentialCalls}
}

// CheckFraudRule validates r and fills the defaults (hours), naming the
// field at fault: `fraud rule: prefix "09a": ...`.
func CheckFraudRule(r *FraudRule) error {
	if r.Profile < 1 || r.Profile > maxFraudProfile {
		return fraudErr("profile", "%d: must be between 1 and %d", r.Profile, maxFraudProfile)
	}
	if len(r.Prefix) > MaxFraudPrefix {
		return fraudErr("prefix", "%.20q...: longer than %d characters", r.Prefix, MaxFraudPrefix)
	}
	for i := 0; i < len(r.Prefix); i++ {
		if !IsFraudDigit(r.Prefix[i]) {
			return fraudErr("prefix", "%q: invalid character %q (digits, '+', '*' and '#' only)", r.Prefix, r.Prefix[i])
		}
	}
	if r.StartHour == "" {
		r.StartHour = "00:00"
	}
	if r.EndHour == "" {
		r.EndHour = "23:59"
	}
	if _, err := ParseFraudHour(r.StartHour); err != nil {
		return fraudErr("start_hour", "%v", err)
	}
	if _, err := ParseFraudHour(r.EndHour); err != nil {
		return fraudErr("end_hour", "%v", err)
	}
	r.Days = strings.TrimSpace(r.Days)
	if _, err := ParseFraudDays(r.Days); err != nil {
		return fraudErr("days", "%v", err)
	}
	for i, l := range r.Limits() {
		name := FraudLimitNames[i]
		if l.Warning < 0 || l.Warning > MaxFraudThreshold {
			return fraudErr(name+"_warning", "%d: must be between 0 (off) and %d", l.Warning, MaxFraudThreshold)
		}
		if l.Critical < 0 || l.Critical > MaxFraudThreshold {
			return fraudErr(name+"_critical", "%d: must be between 0 (off) and %d", l.Critical, MaxFraudThreshold)
		}
		if l.Warning > 0 && l.Critical > 0 && l.Warning > l.Critical {
			return fraudErr(name+"_warning", "%d is above %s_critical (%d): the warning would never be seen", l.Warning, name, l.Critical)
		}
	}
	return nil
}

func fraudErr(field, format string, args ...any) error {
	return errorf(ErrMalformedFraudRule, "fraud rule: "+field+": "+format, args...)
}

// IsFraudDigit reports whether c may appear in a fraud rule prefix.
func IsFraudDigit(c byte) bool {
	return c >= '0' && c <= '9' || c == '+' || c == '*' || c == '#'
}

// ParseFraudHour parses "HH:MM" (00:00 to 23:59) into minutes after
// midnight.
func ParseFraudHour(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) == 0 || len(h) > 2 || len(m) != 2 {
		return 0, errorf(ErrMalformedFraudRule, "%q: want HH:MM", s)
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || h[0] == '+' || h[0] == '-' {
		return 0, errorf(ErrMalformedFraudRule, "%q: want HH:MM between 00:00 and 23:59", s)
	}
	return hh*60 + mm, nil
}

var weekDays = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseFraudDays parses a list of days of the week ("Mon-Fri, Sun";
// ranges may wrap: "Fri-Mon") into a set, bit d for time.Weekday d. ""
// is every day.
func ParseFraudDays(s string) (uint8, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0x7f, nil
	}
	if len(s) > maxFraudDays {
		return 0, errorf(ErrMalformedFraudRule, "%.20q...: longer than %d characters", s, maxFraudDays)
	}
	var set uint8
	for _, item := range strings.Split(s, ",") {
		from, to, isRange := strings.Cut(item, "-")
		a, ok := weekDay(from)
		if !ok {
			return 0, errorf(ErrMalformedFraudRule, "%q: %q is not a day (Sun, Mon, Tue, Wed, Thu, Fri, Sat)", s, strings.TrimSpace(from))
		}
		b := a
		if isRange {
			if b, ok = weekDay(to); !ok {
				return 0, errorf(ErrMalformedFraudRule, "%q: %q is not a day (Sun, Mon, Tue, Wed, Thu, Fri, Sat)", s, strings.TrimSpace(to))
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			set |= 1 << d
			if d == b {
				break
			}
		}
	}
	return set, nil
}

func weekDay(s string) (int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, d := range weekDays {
		if s == d {
			return i, true
		}
	}
	return 0, false
}

// AddFraudRule validates r and adds it; the stored rule (with its ID and
// defaults) is returned. A rule with the same profile, prefix, hours and
// days exists already: ErrFraudRuleExists.
func (s *Store) AddFraudRule(ctx context.Context, r FraudRule) (FraudRule, error) {
	r.ID = 0
	if err := CheckFraudRule(&r); err != nil {
		return r, err
	}
	if r.Created == 0 {
		r.Created = time.Now().Unix()
	}
	if err := s.b.AddFraudRule(ctx, &r); err != nil {
		return r, s.fraudNameErr(err, &r)
	}
	return r, nil
}

// UpdateFraudRule replaces the rule with r.ID by r, keeping its ID, so the
// counters of calls it matched carry on (a deleted and re-added rule has a
// new ID, and counters start again when a caller's rule changes).
func (s *Store) UpdateFraudRule(ctx context.Context, r FraudRule) error {
	if err := CheckFraudRule(&r); err != nil {
		return err
	}
	return s.fraudNameErr(s.b.UpdateFraudRule(ctx, &r), &r)
}

// DeleteFraudRule removes the rule with id.
func (s *Store) DeleteFraudRule(ctx context.Context, id int64) error {
	return s.fraudNameErr(s.b.DeleteFraudRule(ctx, id), &FraudRule{ID: id})
}

// GetFraudRule returns the rule with id.
func (s *Store) GetFraudRule(ctx context.Context, id int64) (FraudRule, error) {
	var r FraudRule
	err := s.b.GetFraudRule(ctx, id, &r)
	return r, s.fraudNameErr(err, &FraudRule{ID: id})
}

// ListFraudRules returns every rule by profile, prefix and ID.
func (s *Store) ListFraudRules(ctx context.Context) ([]FraudRule, error) {
	return s.b.ListFraudRules(ctx)
}

// FraudRulesVersion is a number that changes with every write to the fraud
// rules, by this process or another sharing the database: the server polls
// it and reloads the rules when it moves.
func (s *Store) FraudRulesVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "fraud_rules")
}

func (s *Store) fraudNameErr(err error, r *FraudRule) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNoFraudRule):
		return errorf(ErrNoFraudRule, "fraud rule %d does not exist", r.ID)
	case errors.Is(err, ErrFraudRuleExists):
		return errorf(ErrFraudRuleExists, "a fraud rule for profile %d, prefix %q, %s-%s, days %q exists already",
			r.Profile, r.Prefix, r.StartHour, r.EndHour, r.Days)
	}
	return err
}
