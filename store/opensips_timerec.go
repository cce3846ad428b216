package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// OpenSIPS's dr_rules.timerec is an RFC 2445 recurrence, the fields
// separated by "|": [timezone|]dtstart|dtend|duration|freq|until|interval|
// byday|bymonthday|byyearday|byweekno|bymonth. Switchboard's drouting
// takes days of the week and a span of minutes (DRTimeRec). The common
// forms, a daily or weekly span on some weekdays, translate both ways;
// anything else (a time zone, an end date, an interval, month days,
// several recurrences joined by & / !, a span that crosses midnight on
// chosen weekdays) is left as OpenSIPS wrote it, which the drouting module
// refuses and reports (the rule is not used).

var osDays = [7]string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}

// weekOrder is the order days are written in: Monday first.
var weekOrder = [7]time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday, time.Saturday, time.Sunday}

// fromOSTimeRec translates an OpenSIPS recurrence into a TimeRec; ok is
// false for a form it does not cover.
func fromOSTimeRec(s string) (rec string, ok bool) {
	if s == "" {
		return "", true
	}
	if strings.ContainsAny(s, "&/!") {
		return "", false
	}
	f := strings.Split(s, "|")
	if len(f) > 0 && !strings.Contains(f[0], "T") && f[0] != "" {
		return "", false // a time zone
	}
	for len(f) < 11 {
		f = append(f, "")
	}
	start, err := time.Parse("20060102T150405", f[0])
	if err != nil || start.Second() != 0 {
		return "", false
	}
	var span time.Duration
	switch {
	case f[1] != "" && f[2] == "":
		end, err := time.Parse("20060102T150405", f[1])
		if err != nil {
			return "", false
		}
		span = end.Sub(start)
	case f[2] != "" && f[1] == "":
		if span, ok = parseOSDuration(f[2]); !ok {
			return "", false
		}
	default:
		return "", false
	}
	freq := strings.ToLower(f[3])
	if (freq != "daily" && freq != "weekly") || f[4] != "" || (f[5] != "" && f[5] != "1") || strings.Join(f[7:], "") != "" {
		return "", false
	}
	if span <= 0 || span > 24*time.Hour || span%time.Minute != 0 {
		return "", false
	}
	days := f[6]
	if freq == "weekly" && days == "" {
		days = osDays[start.Weekday()]
	}
	from := start.Hour()*60 + start.Minute()
	to := from + int(span/time.Minute) - 1
	var hours string
	if from != 0 || to != 24*60-1 {
		if to >= 24*60 {
			if days != "" {
				return "", false // the days of the minutes after midnight differ
			}
			to -= 24 * 60
		}
		hours = fmt.Sprintf("%02d:%02d-%02d:%02d", from/60, from%60, to/60, to%60)
	}
	var mask uint8
	for _, d := range strings.Split(days, ",") {
		if d = strings.ToUpper(strings.TrimSpace(d)); d == "" {
			continue
		}
		i := indexOf(osDays[:], d)
		if i < 0 {
			return "", false
		}
		mask |= 1 << i
	}
	var names []string
	for _, d := range weekOrder {
		if mask&(1<<d) != 0 {
			names = append(names, d.String()[:3])
		}
	}
	rec = strings.TrimSpace(strings.Join(names, ",") + " " + hours)
	if _, err := ParseDRTimeRec(rec); err != nil {
		return "", false
	}
	return rec, true
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// parseOSDuration reads an RFC 2445 duration of hours, minutes and
// seconds (PT10H, PT8H30M, P1D).
func parseOSDuration(s string) (time.Duration, bool) {
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "P") {
		return 0, false
	}
	var d time.Duration
	n := ""
	for _, c := range s[1:] {
		switch {
		case c >= '0' && c <= '9':
			n += string(c)
			continue
		case c == 'T' && n == "":
			continue
		}
		v, err := strconv.Atoi(n)
		if err != nil {
			return 0, false
		}
		unit := map[rune]time.Duration{'W': 7 * 24 * time.Hour, 'D': 24 * time.Hour, 'H': time.Hour, 'M': time.Minute, 'S': time.Second}[c]
		if unit == 0 {
			return 0, false
		}
		d += time.Duration(v) * unit
		n = ""
	}
	return d, n == ""
}

// toOSTimeRec writes a TimeRec as an OpenSIPS recurrence: weekly on its
// days (daily when every day), from its first minute for its length. The
// start date is a Monday in the past; OpenSIPS counts from it.
func toOSTimeRec(rec string) (string, error) {
	if strings.TrimSpace(rec) == "" {
		return "", nil
	}
	t, err := ParseDRTimeRec(rec)
	if err != nil {
		return "", err
	}
	span := t.End - t.Start + 1
	if t.End < t.Start {
		if t.Days != 0x7f {
			return "", fmt.Errorf("%q: OpenSIPS's recurrences cannot say a span across midnight on some days only; give it as two rules", rec)
		}
		span += 24 * 60
	}
	start := time.Date(2024, 1, 1, t.Start/60, t.Start%60, 0, 0, time.UTC) // a Monday
	dur := fmt.Sprintf("PT%dH%dM", span/60, span%60)
	if t.Days == 0x7f {
		return start.Format("20060102T150405") + "||" + dur + "|daily", nil
	}
	var days []string
	for _, d := range weekOrder {
		if t.Days&(1<<d) != 0 {
			days = append(days, osDays[d])
		}
	}
	return start.Format("20060102T150405") + "||" + dur + "|weekly|||" + strings.Join(days, ","), nil
}
