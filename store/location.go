package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Binding is one registered contact of an address-of-record (RFC 3261 §10,
// RFC 5626 instance/reg-id, RFC 3327 Path).
//
// A binding is identified by (AOR, Instance, RegID) when Instance is set, so
// a device that re-registers with a new contact replaces its old binding,
// and by (AOR, Contact) otherwise.
type Binding struct {
	AOR          string // "user@domain", domain lower-case, no scheme
	Contact      string // contact URI as registered
	Received     string // source address the REGISTER came from, e.g. "udp:198.51.100.7:5062"
	Path         string // Path header values, comma separated, as received
	Q            uint16 // q-value in thousandths: q=0.5 is 500, q=1 is 1000
	Expires      int64  // absolute unix seconds
	CallID       string
	CSeq         uint32
	UserAgent    string
	Instance     string // +sip.instance value, "" when absent
	RegID        uint32 // reg-id, 0 when absent
	Socket       string // local listener that received the REGISTER, e.g. "udp:127.0.0.1:5060"
	Flags        uint32 // registrar-defined flags (e.g. behind NAT)
	LastModified int64  // unix seconds; set to the apply time when 0

	// badRow is why a stored row is not a binding (a value outside its
	// field's range, or no integer): LoadBindings reports the row as bad.
	badRow error
}

// Key returns the identity of b within its AOR, as stored in the
// binding_key column.
func (b *Binding) Key() string {
	if b.Instance != "" {
		return "i " + b.Instance + " " + strconv.FormatUint(uint64(b.RegID), 10)
	}
	return "c " + b.Contact
}

// BindingOpKind says what a BindingOp does.
type BindingOpKind uint8

const (
	// OpUpsert inserts Binding or replaces the one with the same key.
	OpUpsert BindingOpKind = 1
	// OpDelete removes the binding with Binding's key.
	OpDelete BindingOpKind = 2
	// OpDeleteAOR removes every binding of Binding.AOR (Contact: *).
	OpDeleteAOR BindingOpKind = 3
)

// BindingOp is one queued location change.
type BindingOp struct {
	Kind    BindingOpKind
	Binding Binding
}

func checkBinding(op *BindingOp) error {
	b := &op.Binding
	if err := checkAOR(b.AOR); err != nil {
		return err
	}
	if op.Kind == OpDeleteAOR {
		return nil
	}
	if b.Contact == "" && b.Instance == "" {
		return errorf(ErrMalformedBinding, "binding of %s: empty contact", b.AOR)
	}
	if op.Kind == OpUpsert {
		if b.Contact == "" {
			return errorf(ErrMalformedBinding, "binding of %s: empty contact", b.AOR)
		}
		if b.Expires <= 0 {
			return errorf(ErrMalformedBinding, "binding %s of %s: expires must be an absolute unix time", b.Contact, b.AOR)
		}
		if b.Q > 1000 {
			return errorf(ErrMalformedBinding, "binding %s of %s: q %d above 1000", b.Contact, b.AOR, b.Q)
		}
	}
	return nil
}

// LoadBindings returns every binding that has not expired at now, for the
// registrar to fill its in-memory table at start. A row written by hand or
// by another tool with a value its field cannot hold (q other than -1 and
// 0 to 1000, cseq, reg_id or flags outside 0 to 2^32-1, a value that is
// no integer) is returned in bad, with what is wrong, and not in the
// bindings: the server starts with the others, as LoadDialogs does. A q
// of -1 is OpenSIPS's "no q": the binding gets 1000, as a contact
// registered without q does.
func (s *Store) LoadBindings(ctx context.Context, now time.Time) (bindings []Binding, bad []error, err error) {
	all, err := s.b.LoadBindings(ctx, now.Unix())
	if err != nil {
		return nil, nil, err
	}
	bindings = all[:0]
	for i := range all {
		b := &all[i]
		if b.badRow != nil {
			bad = append(bad, errorf(ErrMalformedBinding, "binding %s of %s: %v", b.Contact, b.AOR, b.badRow))
			continue
		}
		bindings = append(bindings, *b)
	}
	return bindings, bad, nil
}

// looseInt is an integer column scanned without failing the row: a value
// that is no integer (SQLite keeps whatever it is given: text, a
// fraction, NULL) is kept as bad, for the loader to report the row and go
// on with the others.
type looseInt struct {
	v   int64
	bad error
}

func (l *looseInt) Scan(src any) error {
	l.v, l.bad = 0, nil
	switch x := src.(type) {
	case int64:
		l.v = x
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x >= math.MaxInt64 {
			l.bad = fmt.Errorf("%v is not an integer", x)
		} else {
			l.v = int64(x)
		}
	case []byte:
		l.parse(string(x))
	case string:
		l.parse(x)
	case nil:
		l.bad = errors.New("NULL")
	default:
		l.bad = fmt.Errorf("%T is not an integer", src)
	}
	return nil
}

func (l *looseInt) parse(s string) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil {
		l.bad = fmt.Errorf("%q is not an integer", s)
		return
	}
	l.v = v
}

// bindingInts are the integer columns of a location row as read, checked
// against the ranges of Binding's fields by set.
type bindingInts struct {
	q, expires, cseq, regID, flags, lastModified looseInt
}

// set puts the values in x, or returns what is wrong with the first one
// out of its field's range (x is then not a binding).
func (n *bindingInts) set(x *Binding) error {
	for _, c := range []struct {
		name string
		v    *looseInt
	}{{"q", &n.q}, {"expires", &n.expires}, {"cseq", &n.cseq}, {"reg_id", &n.regID}, {"flags", &n.flags}, {"last_modified", &n.lastModified}} {
		if c.v.bad != nil {
			return fmt.Errorf("%s: %v", c.name, c.v.bad)
		}
	}
	switch q := n.q.v; {
	case q == -1: // OpenSIPS's "no q", copied as it is
		x.Q = 1000
	case q < 0 || q > 1000:
		return fmt.Errorf("q %d outside 0 to 1000 (thousandths; -1: none)", q)
	default:
		x.Q = uint16(q)
	}
	var err error
	if x.CSeq, err = uint32Col("cseq", n.cseq.v); err != nil {
		return err
	}
	if x.RegID, err = uint32Col("reg_id", n.regID.v); err != nil {
		return err
	}
	if x.Flags, err = uint32Col("flags", n.flags.v); err != nil {
		return err
	}
	x.Expires, x.LastModified = n.expires.v, n.lastModified.v
	return nil
}

// uint32Col is v, a stored column's value, if it fits a uint32.
func uint32Col(name string, v int64) (uint32, error) {
	if v < 0 || v > math.MaxUint32 {
		return 0, fmt.Errorf("%s %d outside 0 to %d", name, v, uint32(math.MaxUint32))
	}
	return uint32(v), nil
}

// DeleteExpiredBindings removes bindings whose expiry is at or before now
// and returns how many. The registrar expires bindings in memory; this
// clears what a stopped or crashed server left behind.
func (s *Store) DeleteExpiredBindings(ctx context.Context, now time.Time) (int64, error) {
	return s.b.DeleteExpiredBindings(ctx, now.Unix())
}

// ApplyBindings validates ops and applies them synchronously in one
// transaction. The management API and tools use it; the registrar's hot
// path uses a LocationWriter instead.
func (s *Store) ApplyBindings(ctx context.Context, ops []BindingOp) error {
	for i := range ops {
		if err := checkBinding(&ops[i]); err != nil {
			return err
		}
	}
	return s.b.ApplyBindings(ctx, ops)
}

// LastChange returns the sequence number of the newest change-log entry
// (0 when there is none). A cache remembers it when it starts.
func (s *Store) LastChange(ctx context.Context) (uint64, error) {
	_, last, err := s.b.Changes(ctx, 0, 0)
	return last, err
}

// Changes returns the subscriber and domain changes made after since (by
// this process or any other sharing the database) and the sequence number
// to pass next time. The server polls it about once a second and drops the
// cached credentials named; a ChangeAll entry means drop everything. At most
// 1000 entries are returned per call; call again with the returned sequence
// number to get more.
func (s *Store) Changes(ctx context.Context, since uint64) ([]Change, uint64, error) {
	return s.b.Changes(ctx, since, 1000)
}
