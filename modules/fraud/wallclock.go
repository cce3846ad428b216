package fraud

import (
	"sync/atomic"
	"time"
)

// wallClock turns the coarse clock's milliseconds into the local minute of
// the day, day of the week and day number that rules and daily counters
// need. The conversion (time zone rules) is done once a minute and cached
// in one atomic word; every other call reads that word.
type wallClock struct {
	loc   *time.Location
	cache atomic.Uint64 // packed wallTime and the Unix minute it is for
}

// wallTime is a moment as rules see it.
type wallTime struct {
	minute  int   // minutes after local midnight
	weekday int   // time.Weekday
	day     int32 // local calendar day, days since 1970-01-01
}

func newWallClock(loc *time.Location) *wallClock { return &wallClock{loc: loc} }

// Packing: minute 11 bits, weekday 3, day 20, then the Unix minute plus one
// (so that the zero word matches no minute) in the top 30. Time zone
// offsets are whole minutes, so a local minute never straddles two Unix
// minutes.
const (
	packDayShift  = 14
	packUnixShift = 34
)

func (w *wallClock) at(ms int64) wallTime {
	unixMin := uint64(ms/60_000+1) & (1<<30 - 1)
	if v := w.cache.Load(); v>>packUnixShift == unixMin {
		return wallTime{minute: int(v & 0x7ff), weekday: int(v >> 11 & 7), day: int32(v >> packDayShift & (1<<20 - 1))}
	}
	t := time.UnixMilli(ms).In(w.loc)
	y, m, d := t.Date()
	wt := wallTime{
		minute:  t.Hour()*60 + t.Minute(),
		weekday: int(t.Weekday()),
		day:     int32(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400),
	}
	w.cache.Store(uint64(wt.minute) | uint64(wt.weekday)<<11 | uint64(wt.day)&(1<<20-1)<<packDayShift | unixMin<<packUnixShift)
	return wt
}
