package drouting

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"switchboard/store"
)

// rule is a dr_rules row made ready for routing. Rules are many (a
// million is a normal table), so the row's text is not kept: the list is
// shared by every rule with the same gwlist, attrs and routeid are
// interned.
type rule struct {
	id       int64
	prio     int32
	list     int32 // index into ruleSet.lists
	attrs    int32 // index into ruleSet.strs (0: "")
	routeID  int32
	start    int16 // minutes after midnight, both included
	end      int16
	days     uint8 // bit d: time.Weekday d
	sort     byte  // 'N', 'W', 'R'
	timeless bool  // applies at every minute
}

// activeAt reports whether the rule applies at minute of the day on
// weekday. A start after the end spans midnight; the days are those of
// the minute itself.
func (r *rule) activeAt(minute, weekday int) bool {
	if r.timeless {
		return true
	}
	if r.days&(1<<weekday) == 0 {
		return false
	}
	m := int16(minute)
	if r.start <= r.end {
		return m >= r.start && m <= r.end
	}
	return m >= r.start || m <= r.end
}

// ruleSet is one generation of rules: swapped whole on reload, so a call
// sees the old rules or the new ones, never a mix.
type ruleSet struct {
	rules  []rule
	lists  [][]listItem
	strs   []string
	groups map[int]*trie
	// Figures for drouting.status.
	loadedAt int64 // unix ms
	took     time.Duration
	skipped  int
	version  int64
}

// match finds the rule for number in group at minute on weekday: the
// longest prefix with a rule active now, the highest priority among them
// (then the lowest ID). A prefix whose rules are all out of their time
// falls back to a shorter one. It allocates nothing.
func (rs *ruleSet) match(group int, number []byte, minute, weekday int) *rule {
	t := rs.groups[group]
	if t == nil {
		return nil
	}
	var path [maxDepth + 1]int32
	for i := t.walk(number, &path) - 1; i >= 0; i-- {
		for _, ri := range t.ruleRefs(path[i]) {
			if r := &rs.rules[ri]; r.activeAt(minute, weekday) {
				return r
			}
		}
	}
	return nil
}

// bytes estimates the memory the rule set holds.
func (rs *ruleSet) bytes() int64 {
	n := int64(cap(rs.rules)) * int64(unsafe.Sizeof(rule{}))
	for _, t := range rs.groups {
		n += t.bytes()
	}
	for _, l := range rs.lists {
		n += int64(cap(l))*int64(unsafe.Sizeof(listItem{})) + 24
	}
	return n
}

// ruleBuilder builds a ruleSet from rows given one at a time.
type ruleBuilder struct {
	d       *Drouting
	rs      *ruleSet
	max     int
	lists   map[string]int32
	strs    map[string]int32
	groups  map[string][]int
	times   map[string]store.DRTimeRec
	ents    map[int][]trieEntry
	refs    map[*gwSlot]bool
	crefs   map[*crSlot]bool
	bad     []error
	tooMany bool
}

func newRuleBuilder(d *Drouting, max int) *ruleBuilder {
	return &ruleBuilder{d: d, max: max, rs: &ruleSet{strs: []string{""}, groups: map[int]*trie{}},
		lists: map[string]int32{}, strs: map[string]int32{"": 0}, ents: map[int][]trieEntry{},
		groups: map[string][]int{}, times: map[string]store.DRTimeRec{},
		refs: map[*gwSlot]bool{}, crefs: map[*crSlot]bool{}}
}

// maxBadReported bounds the skipped rows a reload reports one by one.
const maxBadReported = 10

// add takes one stored row (reused by the caller). A row that does not
// validate (written to the database by hand) is skipped and reported.
// Rows are checked field by field with the store's parsers, each distinct
// value once: a million rules share a few lists, groups and time
// specifications.
func (b *ruleBuilder) add(row *store.DRRule) {
	if len(b.rs.rules) >= b.max {
		b.tooMany = true
		b.rs.skipped++
		return
	}
	groups, tr, li, sortAlg, err := b.check(row)
	if err != nil {
		b.rs.skipped++
		if len(b.bad) < maxBadReported {
			b.bad = append(b.bad, fmt.Errorf("rule %d skipped: %w", row.ID, err))
		}
		return
	}
	idx := int32(len(b.rs.rules))
	b.rs.rules = append(b.rs.rules, rule{id: row.ID, prio: int32(row.Priority), list: li,
		attrs: b.intern(row.Attrs), routeID: b.intern(row.RouteID),
		start: int16(tr.Start), end: int16(tr.End), days: tr.Days, sort: sortAlg, timeless: tr.Always()})
	for _, g := range groups {
		b.ents[g] = append(b.ents[g], trieEntry{prefix: row.Prefix, prio: int32(row.Priority), id: row.ID, rule: idx})
	}
}

// check validates a row as store.CheckDRRule does, from the caches.
func (b *ruleBuilder) check(row *store.DRRule) (groups []int, tr store.DRTimeRec, list int32, sortAlg byte, err error) {
	fail := func(field string, err error) ([]int, store.DRTimeRec, int32, byte, error) {
		return nil, tr, 0, 0, fmt.Errorf("%s: %w", field, err)
	}
	if len(row.Prefix) > store.MaxDRPrefix {
		return fail("prefix", fmt.Errorf("longer than %d characters", store.MaxDRPrefix))
	}
	for i := 0; i < len(row.Prefix); i++ {
		if !store.IsDRDigit(row.Prefix[i]) {
			return fail("prefix", fmt.Errorf("%q: invalid character %q", row.Prefix, row.Prefix[i]))
		}
	}
	if row.Priority < -1_000_000_000 || row.Priority > 1_000_000_000 {
		return fail("priority", fmt.Errorf("%d out of range", row.Priority))
	}
	if groups = b.groups[row.Groups]; groups == nil {
		if groups, err = store.ParseDRGroups(row.Groups); err != nil {
			return fail("groupid", err)
		}
		b.groups[row.Groups] = groups
	}
	var ok bool
	if tr, ok = b.times[row.TimeRec]; !ok {
		if tr, err = store.ParseDRTimeRec(row.TimeRec); err != nil {
			return fail("timerec", err)
		}
		b.times[row.TimeRec] = tr
	}
	if list, ok = b.lists[row.GWList]; !ok {
		entries, err := store.ParseDRList(row.GWList, true)
		if err != nil {
			return fail("gwlist", err)
		}
		list = int32(len(b.rs.lists))
		b.rs.lists = append(b.rs.lists, b.d.list(entries, b.refs, b.crefs))
		b.lists[row.GWList] = list
	}
	switch row.SortAlg {
	case "N", "W", "R":
		sortAlg = row.SortAlg[0]
	case "":
		sortAlg = 'N'
	default:
		return fail("sort_alg", fmt.Errorf("%q: want N, W or R", row.SortAlg))
	}
	for _, t := range [...]struct{ name, v string }{{"attrs", row.Attrs}, {"routeid", row.RouteID}} {
		if _, known := b.strs[t.v]; !known && len(t.v) > 255 {
			return fail(t.name, fmt.Errorf("longer than 255 bytes"))
		}
	}
	return groups, tr, list, sortAlg, nil
}

func (b *ruleBuilder) intern(s string) int32 {
	if i, ok := b.strs[s]; ok {
		return i
	}
	i := int32(len(b.rs.strs))
	b.rs.strs = append(b.rs.strs, s)
	b.strs[s] = i
	return i
}

// finish builds the tries.
func (b *ruleBuilder) finish() *ruleSet {
	for g, ents := range b.ents {
		b.rs.groups[g] = buildTrie(ents)
		delete(b.ents, g) // let the entries go as each trie is built
	}
	return b.rs
}

// wallClock turns the coarse clock's milliseconds into the local minute
// of the day and day of the week; the conversion (time zone rules) is done
// once a minute and cached in one atomic word.
type wallClock struct {
	loc   *time.Location
	cache atomic.Uint64 // minute (11 bits), weekday (3), the Unix minute + 1 above
}

func (w *wallClock) at(ms int64) (minute, weekday int) {
	unixMin := uint64(ms/60_000 + 1)
	if v := w.cache.Load(); v>>14 == unixMin {
		return int(v & 0x7ff), int(v >> 11 & 7)
	}
	t := time.UnixMilli(ms).In(w.loc)
	minute, weekday = t.Hour()*60+t.Minute(), int(t.Weekday())
	w.cache.Store(uint64(minute) | uint64(weekday)<<11 | unixMin<<14)
	return minute, weekday
}

func loadZone(name string) (*time.Location, error) {
	switch name {
	case "", "Local":
		return time.Local, nil
	}
	return time.LoadLocation(name)
}
