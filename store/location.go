package store

import (
	"context"
	"strconv"
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
// registrar to fill its in-memory table at start.
func (s *Store) LoadBindings(ctx context.Context, now time.Time) ([]Binding, error) {
	return s.b.LoadBindings(ctx, now.Unix())
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
