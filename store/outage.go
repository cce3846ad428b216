package store

import "errors"

// OncePerOutage keeps a poll loop from logging the same outage at every
// poll: while the database cannot be reached (ErrUnavailable) only the
// first failure is reported; the server reports the outage itself
// (/readyz, switchboard_storage_up, its log). The zero value is ready; not
// safe for concurrent use (one per loop).
type OncePerOutage struct{ away bool }

// Report tells whether err, the result of one poll (nil after a
// successful one), should be reported: any error but an ErrUnavailable
// right after another.
func (o *OncePerOutage) Report(err error) bool {
	unreachable := errors.Is(err, ErrUnavailable)
	report := err != nil && (!unreachable || !o.away)
	o.away = unreachable
	return report
}
