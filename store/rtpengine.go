package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// RTPEngine is one row of the rtpengine table: an rtpengine control
// socket in a set, as OpenSIPS's rtpengine module reads them from its
// own rtpengine table (db_url, columns socket and set_id), with the
// weight and the disabled state as columns of their own instead of
// OpenSIPS's "=weight" suffix.
type RTPEngine struct {
	ID int64
	// SetID is the set the instance belongs to, 0-65535 (set_id). Routes
	// use set 0 unless they name another (rtpengine_use_set).
	SetID int
	// Socket is the ng control socket, "udp:IP:port" (IPv6 in brackets),
	// stored in canonical form (ParseRTPEngineSocket).
	Socket string
	// Weight is the instance's share of new calls in its set, 1-1000.
	Weight int
	// Disabled rows are loaded but not used until enabled (by the
	// management command, for the running server, or by changing the
	// row).
	Disabled bool
	// Description is free text for operators, at most 255 bytes.
	Description string
	Created     int64 // unix seconds
}

// Errors of the rtpengine table.
var (
	ErrMalformedRTPEngine = errors.New("malformed rtpengine instance")
	ErrRTPEngineExists    = errors.New("rtpengine instance already in its set")
	ErrNoRTPEngine        = errors.New("no such rtpengine instance")
)

// Limits of rtpengine fields.
const (
	MaxRTPEngineSet    = 65535
	MaxRTPEngineWeight = 1000
)

// ParseRTPEngineSocket parses an ng control socket, "udp:IP:port" or
// "udp:[IPv6]:port" (the udp: prefix may be left out), and returns its
// address and canonical text. Host names are refused: the module sends to
// addresses and resolves nothing; so are port 0, zones and OpenSIPS's
// "=weight" suffix (the weight is a column).
func ParseRTPEngineSocket(s string) (netip.AddrPort, string, error) {
	raw := strings.TrimSpace(s)
	bad := func(format string, args ...any) (netip.AddrPort, string, error) {
		return netip.AddrPort{}, "", errorf(ErrMalformedRTPEngine, "socket %q: "+format, append([]any{s}, args...)...)
	}
	if strings.Contains(raw, "=") {
		return bad("give the weight in its own field (--weight), not after '='")
	}
	rest := raw
	if p, r, ok := strings.Cut(raw, ":"); ok && !strings.HasPrefix(raw, "[") && strings.Count(raw, ":") >= 2 {
		if !strings.EqualFold(p, "udp") {
			return bad("only udp: control sockets are supported (rtpengine's ng over UDP)")
		}
		rest = r
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return bad("want udp:IP:port, an IP address (not a name) and a port")
	}
	if ap.Addr().Zone() != "" || ap.Addr().Is4In6() {
		return bad("write IPv4 addresses plainly and IPv6 ones without a zone")
	}
	if ap.Port() == 0 {
		return bad("port 0")
	}
	return ap, "udp:" + ap.String(), nil
}

// CheckRTPEngine validates r and puts its socket in canonical form.
// Errors name the field and wrap ErrMalformedRTPEngine.
func CheckRTPEngine(r *RTPEngine) error {
	if r.SetID < 0 || r.SetID > MaxRTPEngineSet {
		return rtpengineErr("set_id", "%d: must be between 0 and %d", r.SetID, MaxRTPEngineSet)
	}
	_, canon, err := ParseRTPEngineSocket(r.Socket)
	if err != nil {
		return rtpengineErr("socket", "%s", strings.TrimPrefix(err.Error(), "socket "))
	}
	r.Socket = canon
	if r.Weight < 1 || r.Weight > MaxRTPEngineWeight {
		return rtpengineErr("weight", "%d: must be between 1 and %d", r.Weight, MaxRTPEngineWeight)
	}
	if len(r.Description) > 255 {
		return rtpengineErr("description", "%.20q...: longer than 255 bytes", r.Description)
	}
	if !utf8.ValidString(r.Description) || strings.ContainsFunc(r.Description, isControl) {
		return rtpengineErr("description", "%q: control characters or invalid UTF-8", r.Description)
	}
	return nil
}

func rtpengineErr(field, format string, args ...any) error {
	return errorf(ErrMalformedRTPEngine, "rtpengine instance: "+field+": "+format, args...)
}

// rtpengineTable is the database work for the rtpengine table, which the
// SQLite, PostgreSQL and MySQL backends implement (rtpengine_sql.go).
// Every write bumps the "rtpengine" table version in its transaction.
type rtpengineTable interface {
	// AddRTPEngine inserts r and sets r.ID; ErrRTPEngineExists for a
	// socket already in the set.
	AddRTPEngine(ctx context.Context, r *RTPEngine) error
	// DeleteRTPEngine removes and returns the row with id, or (id 0)
	// the one of set and socket (ErrNoRTPEngine).
	DeleteRTPEngine(ctx context.Context, id int64, set int, socket string) (RTPEngine, error)
	// ListRTPEngines lists every row by set and id.
	ListRTPEngines(ctx context.Context) ([]RTPEngine, error)
}

func (s *Store) rtpengineTable() (rtpengineTable, error) {
	t, ok := s.b.(rtpengineTable)
	if !ok {
		return nil, notInSchema("rtpengine")
	}
	return t, nil
}

// AddRTPEngine validates r (CheckRTPEngine), stores it and returns it as
// stored. A socket already in the set is ErrRTPEngineExists.
func (s *Store) AddRTPEngine(ctx context.Context, r RTPEngine) (RTPEngine, error) {
	if err := CheckRTPEngine(&r); err != nil {
		return RTPEngine{}, err
	}
	t, err := s.rtpengineTable()
	if err != nil {
		return RTPEngine{}, err
	}
	if r.Created == 0 {
		r.Created = time.Now().Unix()
	}
	if err := t.AddRTPEngine(ctx, &r); err != nil {
		if errors.Is(err, ErrRTPEngineExists) {
			return RTPEngine{}, errorf(ErrRTPEngineExists, "rtpengine %s is already in set %d", r.Socket, r.SetID)
		}
		return RTPEngine{}, err
	}
	return r, nil
}

// DeleteRTPEngine removes the row with id and returns it.
func (s *Store) DeleteRTPEngine(ctx context.Context, id int64) (RTPEngine, error) {
	t, err := s.rtpengineTable()
	if err != nil {
		return RTPEngine{}, err
	}
	r, err := t.DeleteRTPEngine(ctx, id, 0, "")
	if errors.Is(err, ErrNoRTPEngine) {
		return r, errorf(ErrNoRTPEngine, "no rtpengine instance with id %d", id)
	}
	return r, err
}

// DeleteRTPEngineOf removes socket (in any form ParseRTPEngineSocket
// takes) from set and returns the row.
func (s *Store) DeleteRTPEngineOf(ctx context.Context, set int, socket string) (RTPEngine, error) {
	_, canon, err := ParseRTPEngineSocket(socket)
	if err != nil {
		return RTPEngine{}, err
	}
	t, err := s.rtpengineTable()
	if err != nil {
		return RTPEngine{}, err
	}
	r, err := t.DeleteRTPEngine(ctx, 0, set, canon)
	if errors.Is(err, ErrNoRTPEngine) {
		return r, errorf(ErrNoRTPEngine, "rtpengine %s is not in set %d", canon, set)
	}
	return r, err
}

// ListRTPEngines returns every row by set and id. A backend without the
// table (storage.schema opensips) has none.
func (s *Store) ListRTPEngines(ctx context.Context) ([]RTPEngine, error) {
	t, err := s.rtpengineTable()
	if err != nil {
		return nil, nil
	}
	return t.ListRTPEngines(ctx)
}

// RTPEngineVersion is a number that changes with every write to the
// rtpengine table, by this process or another sharing the database: the
// server polls it and reloads the table when it moves.
func (s *Store) RTPEngineVersion(ctx context.Context) (int64, error) {
	if _, err := s.rtpengineTable(); err != nil {
		return 0, nil
	}
	return s.b.TableVersion(ctx, "rtpengine")
}

// String describes a row for log lines and errors: "id 3 (set 1,
// udp:127.0.0.1:2223)".
func (r RTPEngine) String() string {
	return fmt.Sprintf("id %d (set %d, %s)", r.ID, r.SetID, r.Socket)
}

// The rtpengine table's migration, one step for each dialect, listed in
// migrations.go under the number it landed with. The unique key is
// (set_id, socket): one rtpengine may serve several sets.
var (
	rtpengineSQLite = []string{
		`CREATE TABLE rtpengine (
			id          INTEGER PRIMARY KEY AUTOINCREMENT,
			set_id      INTEGER NOT NULL DEFAULT 0,
			socket      TEXT NOT NULL,
			weight      INTEGER NOT NULL DEFAULT 1,
			disabled    INTEGER NOT NULL DEFAULT 0,
			description TEXT NOT NULL DEFAULT '',
			created     INTEGER NOT NULL,
			UNIQUE (set_id, socket)
		)`,
		`INSERT OR IGNORE INTO table_versions (name, version) VALUES ('rtpengine', 0)`,
	}
	rtpenginePostgres = []string{
		`CREATE TABLE rtpengine (
			id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			set_id      BIGINT NOT NULL DEFAULT 0,
			socket      TEXT COLLATE "C" NOT NULL,
			weight      BIGINT NOT NULL DEFAULT 1,
			disabled    BIGINT NOT NULL DEFAULT 0,
			description TEXT COLLATE "C" NOT NULL DEFAULT '',
			created     BIGINT NOT NULL,
			UNIQUE (set_id, socket)
		)`,
		`INSERT INTO table_versions (name, version) VALUES ('rtpengine', 0) ON CONFLICT DO NOTHING`,
	}
	rtpengineMySQL = []string{
		`CREATE TABLE IF NOT EXISTS rtpengine (
			id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
			set_id      BIGINT NOT NULL,
			socket      VARBINARY(64) NOT NULL,
			weight      BIGINT NOT NULL,
			disabled    BIGINT NOT NULL,
			description BLOB NOT NULL,
			created     BIGINT NOT NULL,
			UNIQUE KEY rtpengine_socket (set_id, socket)
		) ENGINE=InnoDB`,
		`INSERT IGNORE INTO table_versions (name, version) VALUES ('rtpengine', 0)`,
	}
)

// rtpengineDisabled converts the column.
func rtpengineDisabled(b bool) int {
	if b {
		return 1
	}
	return 0
}
