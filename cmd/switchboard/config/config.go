// Package config loads and checks the switchboard configuration file.
//
// The file is YAML. Every key is known in advance: an unknown key, a value of
// the wrong type or a value out of range stops the start with an error that
// names the file, the line and the dotted key (for example
// "switchboard.yaml:12: timers.t1: ..."). Keys left out take the defaults
// documented in docs/configuration.md, which are also the values of Default().
package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"switchboard/mgmt"
	"switchboard/modules"
	"switchboard/store"
)

// Config is the whole configuration of one switchboard process.
type Config struct {
	// Listen lists the SIP sockets. Each needs a protocol and an address.
	Listen []Listener `yaml:"listen"`
	// Domains are the SIP domains this server is responsible for: REGISTER
	// and calls for them are handled locally, others are relayed.
	Domains []string `yaml:"domains"`
	// Routes names the compiled-in route set that handles traffic.
	Routes   string   `yaml:"routes"`
	Timers   Timers   `yaml:"timers"`
	Limits   Limits   `yaml:"limits"`
	Storage  Storage  `yaml:"storage"`
	Log      Log      `yaml:"log"`
	Mgmt     Mgmt     `yaml:"mgmt"`
	TLS      TLS      `yaml:"tls"`
	Outbound Outbound `yaml:"outbound"`
	// Anycast joins this node to a group of nodes sharing its SIP
	// address (docs/deployment.md).
	Anycast Anycast `yaml:"anycast"`
	// Provider configures the provider route set (routing/provider).
	Provider Provider `yaml:"provider"`

	// Modules holds the settings of every module compiled in (registrar,
	// auth, ...), by name: the section of the file named after a module
	// decodes into the value its modules.Definition.Settings returned
	// (see modules/module.go).
	Modules map[string]any `yaml:"-"`
}

// ModuleSettings returns fresh default settings of every registered module
// that takes settings.
func ModuleSettings() map[string]any {
	defs, _ := modules.Ordered()
	m := make(map[string]any, len(defs))
	for _, d := range defs {
		if d.Settings != nil {
			m[d.Name] = d.Settings()
		}
	}
	return m
}

// Provider configures the provider route set.
type Provider struct {
	// RevealUnknownUsers answers 404 to a call for a name that is no
	// subscriber; false answers the 480 of a subscriber who is not
	// registered, so that scanners cannot tell which names exist.
	RevealUnknownUsers bool `yaml:"reveal_unknown_users"`
	// TrustedGroup is the permissions group whose sources (trusted
	// gateways) call served domains without digest authentication; 0
	// trusts no one.
	TrustedGroup int `yaml:"trusted_group"`
	// DialplanID is the dialplan (modules/dialplan) that normalises the
	// numbers authenticated subscribers call before they are looked up
	// and routed to the PSTN; -1: none.
	DialplanID int `yaml:"dialplan_id"`
}

// Listener is one SIP socket.
type Listener struct {
	Proto string `yaml:"proto"`
	// Address is host:port to bind, e.g. 127.0.0.1:5060 or [::1]:5060.
	Address string `yaml:"address"`
	// Advertise is host[:port] written into Via and Record-Route instead of
	// the bound address, for a node behind NAT or an anycast address.
	Advertise string `yaml:"advertise"`

	// WebSocket listeners (ws, wss) only.
	//
	// Path is the HTTP path the upgrade must ask for ("/sip"); empty:
	// any path.
	Path string `yaml:"path"`
	// Origins are the web origins whose pages may connect
	// ("https://phone.example.com"); empty: any.
	Origins []string `yaml:"origins"`
	// MaxFrameSize bounds one WebSocket frame's payload; 0: the
	// message limit.
	MaxFrameSize int `yaml:"max_frame_size"`
	// MaxMessageSize bounds one WebSocket message (one SIP message); 0:
	// limits.max_message_size.
	MaxMessageSize int `yaml:"max_message_size"`

	addr netip.AddrPort
}

// AddrPort is the parsed bind address, valid after Load or Check.
func (l *Listener) AddrPort() netip.AddrPort { return l.addr }

// Timers are the RFC 3261 timer values.
type Timers struct {
	T1     Duration `yaml:"t1"`
	T2     Duration `yaml:"t2"`
	T4     Duration `yaml:"t4"`
	TimerC Duration `yaml:"timer_c"`
	Wait   Duration `yaml:"wait"`
	FR     Duration `yaml:"fr"`
}

// Limits bound what peers can make the server hold.
type Limits struct {
	MaxMessageSize  int `yaml:"max_message_size"`
	MaxTransactions int `yaml:"max_transactions"`
	// MaxTransactionMemory caps the memory of the transaction table, in
	// MiB; 0 takes a share of the available memory (TransactionMemory).
	MaxTransactionMemory int `yaml:"max_transaction_memory"`
	MaxConnections       int `yaml:"max_connections"`
	MaxConnectionsPerIP  int `yaml:"max_connections_per_ip"`
	// OutboundReservedPercent is the share of MaxConnections, in percent,
	// that inbound connections may not take: kept for the connections
	// the server dials to next hops.
	OutboundReservedPercent int      `yaml:"outbound_connections_reserved_percent"`
	IdleTimeout             Duration `yaml:"idle_timeout"`
	// MessageTimeout closes a stream connection whose message began this
	// long ago and is not whole yet (Kamailio tcp_msg_read_timeout).
	MessageTimeout Duration `yaml:"message_timeout"`
	Shards         int      `yaml:"shards"`
	// UDPSocketBuffer is SO_RCVBUF and SO_SNDBUF of the UDP sockets, in
	// bytes; 0 keeps the kernel's default. The kernel caps it at
	// net.core.rmem_max / wmem_max.
	UDPSocketBuffer int `yaml:"udp_socket_buffer"`
}

// OutboundReserved is the number of connection slots kept for outbound
// connections: OutboundReservedPercent of MaxConnections, rounded down.
func (l Limits) OutboundReserved() int {
	return l.MaxConnections * l.OutboundReservedPercent / 100
}

// Storage says where persistent data lives.
type Storage struct {
	// Driver is sqlite (a file in Dir), postgres or mysql (the database at
	// DSN, which several nodes can share).
	Driver string `yaml:"driver"`
	// Dir holds the SQLite database, and with either driver the server's
	// secrets (auth.secret, mgmt.token, route.secret).
	Dir string `yaml:"dir"`
	// DSN names the database: for postgres a postgres:// URL or libpq
	// key=value pairs, for mysql go-sql-driver's user@tcp(host)/db.
	DSN string `yaml:"dsn"`
	// MaxConns is the database server's connection pool's size.
	MaxConns int `yaml:"max_conns"`
	// Timeout bounds each database server operation, connecting included.
	Timeout Duration `yaml:"timeout"`
	// Schema is the layout of the tables: switchboard (its own, migrated
	// at start) or opensips (the tables of an OpenSIPS 3.x database, used
	// as they are: docs/opensips-migration.md).
	Schema string `yaml:"schema"`
}

func (st *Storage) check(fail func(key, format string, args ...any) error) error {
	switch st.Driver {
	case "sqlite":
		if st.Dir == "" {
			return fail("storage.dir", "missing; the directory for the SQLite database")
		}
		if st.DSN != "" {
			return fail("storage.dsn", "is for storage.driver postgres or mysql; sqlite keeps its database in storage.dir")
		}
	case "postgres", "mysql":
		if st.Dir == "" {
			return fail("storage.dir", "missing; the directory for the server's secrets (auth.secret, mgmt.token, route.secret)")
		}
		if strings.TrimSpace(st.DSN) == "" {
			if st.Driver == "mysql" {
				return fail("storage.dsn", "missing; the MariaDB or MySQL database, e.g. switchboard:password@tcp(db.example.net:3306)/switchboard or switchboard@unix(/run/mysqld/mysqld.sock)/switchboard")
			}
			return fail("storage.dsn", "missing; the PostgreSQL database, e.g. postgres://switchboard@db.example.net/switchboard or host=/run/postgresql dbname=switchboard")
		}
		// Parsed now so that check-config finds a typo; the drivers word
		// their errors without the password.
		if st.Driver == "mysql" {
			if c, err := mysql.ParseDSN(st.DSN); err != nil {
				return fail("storage.dsn", "%v", err)
			} else if c.DBName == "" {
				return fail("storage.dsn", "names no database (user@tcp(host:3306)/switchboard)")
			}
		} else if _, err := pgx.ParseConfig(st.DSN); err != nil {
			// pgx's error may quote the DSN with its password (a
			// "password = x" pair escapes its redaction): only what
			// went wrong, without the DSN.
			return fail("storage.dsn", "%s", store.PostgresDSNError(err))
		}
	default:
		return fail("storage.driver", "unknown driver %q; supported: sqlite, postgres, mysql", st.Driver)
	}
	switch st.Schema {
	case "switchboard":
	case "opensips":
		if st.Driver == "sqlite" {
			return fail("storage.schema", "opensips needs storage.driver postgres or mysql (the database OpenSIPS uses); sqlite has only Switchboard's own schema")
		}
	default:
		return fail("storage.schema", "unknown schema %q; supported: switchboard, opensips", st.Schema)
	}
	if st.MaxConns < 1 || st.MaxConns > 1000 {
		return fail("storage.max_conns", "must be between 1 and 1000, not %d", st.MaxConns)
	}
	if st.Timeout.D() < 100*time.Millisecond || st.Timeout.D() > 5*time.Minute {
		return fail("storage.timeout", "must be between 100ms and 5m, not %s", st.Timeout.D())
	}
	return nil
}

// Log configures log/slog output.
type Log struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// Mgmt configures the HTTP listener for /metrics, health and the management API.
type Mgmt struct {
	Listen string `yaml:"listen"`
	// Token is required as "Authorization: Bearer <token>" on the
	// management API (not on /metrics or health). Empty: the server uses
	// the file mgmt.token in storage.dir, creating it at the first start.
	Token string `yaml:"token"`
	// AllowedHosts are names (host or host:port) the API answers to in
	// Host and Origin besides mgmt.listen: a reverse proxy in front of it,
	// a DNS name of the host.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Panel is the web panel under /ui on this listener (mgmt/panel).
	Panel Panel `yaml:"panel"`
}

// Panel configures the web panel. Its users are in the store
// (`switchboard panel user add`).
type Panel struct {
	Enabled bool `yaml:"enabled"`
	// SessionTTL ends a session idle this long.
	SessionTTL Duration `yaml:"session_ttl"`
	// SessionLifetime ends a session this long after its login, however
	// busy: a stolen cookie kept in use is good this long at most.
	SessionLifetime Duration `yaml:"session_lifetime"`
	// LockoutFailures wrong passwords in a row for an account, or from
	// an address, lock it for LockoutTime.
	LockoutFailures int      `yaml:"lockout_failures"`
	LockoutTime     Duration `yaml:"lockout_time"`
}

// TLS holds the certificate used by tls listeners and outbound TLS.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCA, when set, makes tls listeners require client certificates
	// signed by this CA (mutual TLS for trunks).
	ClientCA   string `yaml:"client_ca"`
	MinVersion string `yaml:"min_version"`
	// CA verifies the servers of outbound TLS connections (trunks,
	// gateways); empty means the system's trusted roots.
	CA string `yaml:"ca"`
	// VerifyServer checks the certificate of outbound TLS peers. Off only
	// for lab set-ups: anyone on the path can then read the calls.
	VerifyServer bool `yaml:"verify_server"`
}

// Outbound restricts where the server sends requests and replies.
type Outbound struct {
	// Allow lists the networks the server may send to. Empty means anywhere.
	Allow []string `yaml:"allow"`
	// Resolver is host:port of the DNS server used for SIP name lookups.
	// Empty means the system resolver.
	Resolver string `yaml:"resolver"`

	allow []netip.Prefix
}

// Anycast is the relay of responses between the nodes that share one SIP
// address (package anycast).
type Anycast struct {
	// Relay is this node's own unicast address (ip:port, UDP) where the
	// other nodes send it the responses to its requests that reached
	// them. Empty: the node is not in a group.
	Relay string `yaml:"relay"`
	// Peers are the relay addresses of the other nodes of the group.
	Peers []string `yaml:"peers"`
	// MaxFlows bounds the other nodes' TCP/TLS/WebSocket connections
	// this node keeps an id for (anycast.Config.MaxFlows).
	MaxFlows int `yaml:"max_flows"`

	relay netip.AddrPort
	peers []netip.AddrPort
}

// RelayAddr and PeerAddrs are the parsed addresses, valid after Load or
// Check.
func (a *Anycast) RelayAddr() netip.AddrPort   { return a.relay }
func (a *Anycast) PeerAddrs() []netip.AddrPort { return a.peers }

// AllowPrefixes is the parsed allow-list, valid after Load or Check.
func (o *Outbound) AllowPrefixes() []netip.Prefix { return o.allow }

// Duration is a time.Duration written as "500ms", "4s" or "3m" in the file.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d *Duration) setScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 500ms, 4s, 3m): %q", s)
	}
	*d = Duration(v)
	return nil
}

// Default returns the configuration used when no file is given: a demo
// server on 127.0.0.1:5060 (UDP and TCP) serving the domain "localhost",
// with its data under ./data.
func Default() *Config {
	return &Config{
		Listen: []Listener{
			{Proto: "udp", Address: "127.0.0.1:5060"},
			{Proto: "tcp", Address: "127.0.0.1:5060"},
		},
		Domains: []string{"localhost", "127.0.0.1"},
		Routes:  "provider",
		Timers: Timers{
			T1:     Duration(500 * time.Millisecond),
			T2:     Duration(4 * time.Second),
			T4:     Duration(5 * time.Second),
			TimerC: Duration(3 * time.Minute),
			Wait:   Duration(5 * time.Second),
		},
		Limits: Limits{
			MaxMessageSize:          65535,
			MaxTransactions:         1_000_000,
			MaxTransactionMemory:    0,
			MaxConnections:          10_000,
			MaxConnectionsPerIP:     100,
			OutboundReservedPercent: 10,
			IdleTimeout:             Duration(10 * time.Minute),
			MessageTimeout:          Duration(20 * time.Second),
			Shards:                  0,
			UDPSocketBuffer:         1 << 20,
		},
		Storage: Storage{Driver: "sqlite", Dir: "data", MaxConns: 8, Timeout: Duration(10 * time.Second), Schema: "switchboard"},
		Log:     Log{Level: "info", Format: "text"},
		Mgmt: Mgmt{Listen: "127.0.0.1:8080", Panel: Panel{Enabled: true, SessionTTL: Duration(8 * time.Hour), SessionLifetime: Duration(12 * time.Hour),
			LockoutFailures: 5, LockoutTime: Duration(15 * time.Minute)}},
		TLS:      TLS{MinVersion: "1.2", VerifyServer: true},
		Anycast:  Anycast{MaxFlows: 65536},
		Provider: Provider{TrustedGroup: 1, DialplanID: -1},
		Modules:  ModuleSettings(),
	}
}

// check validates values that the decoder cannot: ranges, addresses and
// combinations. at returns the line of a dotted key for error messages.
func (c *Config) check(at func(key string) int) error {
	fail := func(key, format string, args ...any) error {
		return &Error{Line: at(key), Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	if len(c.Listen) == 0 {
		return fail("listen", "at least one listener is needed")
	}
	needTLS := false
	for i := range c.Listen {
		l := &c.Listen[i]
		key := fmt.Sprintf("listen[%d]", i)
		switch l.Proto {
		case "udp", "tcp", "ws":
		case "tls", "wss":
			needTLS = true
		case "":
			return fail(key+".proto", "missing; one of udp, tcp, tls, ws, wss")
		default:
			return fail(key+".proto", "unknown protocol %q; one of udp, tcp, tls, ws, wss", l.Proto)
		}
		if err := c.checkWebSocket(key, l, fail); err != nil {
			return err
		}
		if l.Address == "" {
			return fail(key+".address", "missing; host:port such as 127.0.0.1:5060 or [::1]:5060")
		}
		ap, err := netip.ParseAddrPort(l.Address)
		if err != nil {
			return fail(key+".address", "not an IP address with a port (%q): %v", l.Address, err)
		}
		l.addr = ap
		if ap.Addr().IsUnspecified() && l.Advertise == "" {
			// A socket on every interface cannot tell which local address a
			// datagram reached, and "0.0.0.0" in Via and Record-Route sends
			// responses and in-dialog requests nowhere.
			return fail(key+".advertise", "required when listening on %s: the address or name peers reach this server at, written into Via and Record-Route (or listen on that address itself)", ap.Addr())
		}
		if l.Advertise != "" && strings.ContainsAny(l.Advertise, " \t;,<>\"") {
			return fail(key+".advertise", "not a host[:port]: %q", l.Advertise)
		}
		for j := 0; j < i; j++ {
			if c.Listen[j].Proto == l.Proto && c.Listen[j].addr == ap {
				return fail(key+".address", "%s %s is already listed as listen[%d]", l.Proto, l.Address, j)
			}
		}
	}
	if needTLS && (c.TLS.Cert == "" || c.TLS.Key == "") {
		return fail("tls", "a tls or wss listener needs tls.cert and tls.key")
	}
	switch c.TLS.MinVersion {
	case "1.2", "1.3":
	default:
		return fail("tls.min_version", "must be 1.2 or 1.3, not %q", c.TLS.MinVersion)
	}
	if key, msg := checkTLSFiles(&c.TLS); key != "" {
		return fail(key, "%s", msg)
	}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, " \t;,<>@:\"") {
			return fail(fmt.Sprintf("domains[%d]", i), "not a domain name: %q", d)
		}
	}
	if c.Routes == "" {
		return fail("routes", "missing; the name of a compiled-in route set such as provider")
	}
	t := c.Timers
	if t.T1 <= 0 || t.T1.D() > 10*time.Second {
		return fail("timers.t1", "must be between 1ms and 10s, not %s", t.T1.D())
	}
	if t.T2 < t.T1 || t.T2.D() > time.Minute {
		return fail("timers.t2", "must be at least timers.t1 and at most 1m, not %s", t.T2.D())
	}
	if t.T4 <= 0 || t.T4.D() > time.Minute {
		return fail("timers.t4", "must be between 1ms and 1m, not %s", t.T4.D())
	}
	if t.TimerC.D() < time.Second || t.TimerC.D() > time.Hour {
		return fail("timers.timer_c", "must be between 1s and 1h, not %s", t.TimerC.D())
	}
	if t.FR != 0 && (t.FR.D() < 100*time.Millisecond || t.FR.D() > 5*time.Minute) {
		return fail("timers.fr", "must be 0 (64×t1) or between 100ms and 5m, not %s", t.FR.D())
	}
	if t.Wait.D() < 100*time.Millisecond || t.Wait.D() > 5*time.Minute {
		return fail("timers.wait", "must be between 100ms and 5m, not %s", t.Wait.D())
	}
	lim := c.Limits
	if lim.MaxMessageSize < 1024 || lim.MaxMessageSize > 1<<20 {
		return fail("limits.max_message_size", "must be between 1024 and 1048576 bytes, not %d", lim.MaxMessageSize)
	}
	if lim.MaxTransactions < 1 {
		return fail("limits.max_transactions", "must be at least 1, not %d", lim.MaxTransactions)
	}
	if lim.MaxTransactionMemory < 0 || lim.MaxTransactionMemory > 1<<20 {
		return fail("limits.max_transaction_memory", "must be 0 (a share of the available memory) or between 1 and 1048576 (MiB), not %d", lim.MaxTransactionMemory)
	}
	if lim.MaxConnections < 1 || lim.MaxConnections > 10_000_000 {
		return fail("limits.max_connections", "must be between 1 and 10000000, not %d", lim.MaxConnections)
	}
	if lim.UDPSocketBuffer != 0 && (lim.UDPSocketBuffer < 65536 || lim.UDPSocketBuffer > 1<<28) {
		return fail("limits.udp_socket_buffer", "must be 0 (the kernel's default) or between 65536 and 268435456 (bytes), not %d", lim.UDPSocketBuffer)
	}
	if lim.MaxConnectionsPerIP < 1 || lim.MaxConnectionsPerIP > lim.MaxConnections {
		return fail("limits.max_connections_per_ip", "must be between 1 and limits.max_connections (%d), not %d", lim.MaxConnections, lim.MaxConnectionsPerIP)
	}
	if lim.OutboundReservedPercent < 0 || lim.OutboundReservedPercent > 90 {
		return fail("limits.outbound_connections_reserved_percent", "must be between 0 and 90 (percent of limits.max_connections), not %d", lim.OutboundReservedPercent)
	}
	if lim.IdleTimeout.D() < time.Second {
		return fail("limits.idle_timeout", "must be at least 1s, not %s", lim.IdleTimeout.D())
	}
	if lim.MessageTimeout.D() < time.Second {
		return fail("limits.message_timeout", "must be at least 1s, not %s", lim.MessageTimeout.D())
	}
	if lim.Shards < 0 || lim.Shards > 65536 || lim.Shards&(lim.Shards-1) != 0 {
		return fail("limits.shards", "must be 0 (automatic) or a power of two up to 65536, not %d", lim.Shards)
	}
	if err := c.Storage.check(fail); err != nil {
		return err
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fail("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fail("log.format", "must be text or json, not %q", c.Log.Format)
	}
	if err := c.Mgmt.check(fail); err != nil {
		return err
	}
	c.Outbound.allow = nil
	for i, s := range c.Outbound.Allow {
		p, err := parsePrefix(s)
		if err != nil {
			return fail(fmt.Sprintf("outbound.allow[%d]", i), "not an address or network (%q): %v", s, err)
		}
		c.Outbound.allow = append(c.Outbound.allow, p)
	}
	if g := c.Provider.TrustedGroup; g < 0 || g > 65535 {
		return fail("provider.trusted_group", "must be a permissions group (1-65535) or 0 for none, not %d", g)
	}
	if id := c.Provider.DialplanID; id < -1 || id > 1<<31-1 {
		return fail("provider.dialplan_id", "must be a dialplan id (0 or more) or -1 for none, not %d", id)
	}
	if c.Outbound.Resolver != "" {
		if _, err := netip.ParseAddrPort(c.Outbound.Resolver); err != nil {
			return fail("outbound.resolver", "not an IP address with a port (%q)", c.Outbound.Resolver)
		}
	}
	if err := c.checkAnycast(fail); err != nil {
		return err
	}
	return c.checkModules(at)
}

func (c *Config) checkAnycast(fail func(key, format string, args ...any) error) error {
	a := &c.Anycast
	a.relay, a.peers = netip.AddrPort{}, nil
	// Each flow costs about 100 bytes; 1<<24 is also the most the table's
	// ids can number.
	if a.MaxFlows < 16 || a.MaxFlows > 1<<24 {
		return fail("anycast.max_flows", "must be between 16 and 16777216, not %d", a.MaxFlows)
	}
	if a.Relay == "" {
		if len(a.Peers) > 0 {
			return fail("anycast.relay", "missing: anycast.peers needs this node's own relay address")
		}
		return nil
	}
	var err error
	if a.relay, err = netip.ParseAddrPort(a.Relay); err != nil || a.relay.Port() == 0 {
		return fail("anycast.relay", "not an IP address with a port (%q)", a.Relay)
	}
	if len(a.Peers) == 0 {
		return fail("anycast.peers", "missing: the relay addresses of the other nodes of the group")
	}
	for i, s := range a.Peers {
		p, err := netip.ParseAddrPort(s)
		if err != nil || p.Port() == 0 {
			return fail(fmt.Sprintf("anycast.peers[%d]", i), "not an IP address with a port (%q)", s)
		}
		if p == a.relay {
			return fail(fmt.Sprintf("anycast.peers[%d]", i), "is anycast.relay, this node's own address")
		}
		a.peers = append(a.peers, p)
	}
	for _, l := range c.Listen {
		if l.Proto == "udp" && l.addr.IsValid() && l.addr == a.relay {
			return fail("anycast.relay", "is a SIP listener's address; the relay needs its own port")
		}
	}
	return nil
}

// checkModules runs each module's Check on its settings; a *modules.KeyError
// gets the section's name in front and the line of its key.
func (c *Config) checkModules(at func(key string) int) error {
	defs, err := modules.Ordered()
	if err != nil {
		return &Error{Msg: err.Error()}
	}
	for _, d := range defs {
		st, ok := c.Modules[d.Name]
		if !ok || d.Check == nil {
			continue
		}
		err := d.Check(st)
		if err == nil && d.CheckOutbound != nil {
			allow := c.Outbound.allow
			err = d.CheckOutbound(st, func(a netip.Addr) bool { return modules.AllowedBy(allow, a) })
		}
		if err != nil {
			key := d.Name
			var ke *modules.KeyError
			msg := err.Error()
			if errors.As(err, &ke) {
				if ke.Key != "" {
					key += "." + ke.Key
				}
				msg = ke.Msg
			}
			return &Error{Line: at(key), Key: key, Msg: msg}
		}
	}
	return nil
}

func (m *Mgmt) check(fail func(key, format string, args ...any) error) error {
	if m.Listen != "" {
		if _, err := netip.ParseAddrPort(m.Listen); err != nil {
			return fail("mgmt.listen", "not an IP address with a port (%q); empty disables the management listener", m.Listen)
		}
	}
	if m.Token != "" {
		if err := mgmt.CheckToken(m.Token); err != nil {
			return fail("mgmt.token", "%v; leave it empty to use a random token kept in storage.dir", err)
		}
	}
	for i, h := range m.AllowedHosts {
		if !validHost(h) {
			return fail(fmt.Sprintf("mgmt.allowed_hosts[%d]", i), "not a host name or host:port as written in a Host header (%q), e.g. switchboard.example.net or 192.0.2.10:8080", h)
		}
	}
	if d := m.Panel.SessionTTL.D(); d < time.Minute || d > 30*24*time.Hour {
		return fail("mgmt.panel.session_ttl", "%s: want 1m to 720h", d)
	}
	if d := m.Panel.SessionLifetime.D(); d < time.Minute || d > 30*24*time.Hour {
		return fail("mgmt.panel.session_lifetime", "%s: want 1m to 720h", d)
	}
	if n := m.Panel.LockoutFailures; n < 1 || n > 1000 {
		return fail("mgmt.panel.lockout_failures", "%d: want 1 to 1000", n)
	}
	if d := m.Panel.LockoutTime.D(); d < time.Second || d > 7*24*time.Hour {
		return fail("mgmt.panel.lockout_time", "%s: want 1s to 168h", d)
	}
	return nil
}

// validHost says whether s is a name, an IPv4 address or a bracketed IPv6
// address, with an optional port: what a Host header carries.
func validHost(s string) bool {
	host, port := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return false
		}
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(host); err == nil {
		// An IPv6 address needs brackets (with or without a port).
		return !a.Is6() || strings.HasPrefix(s, "[") || port != ""
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkTLSFiles loads the certificate, key and CA bundles the tls section
// names, so that check-config and a reload catch a wrong path or a key
// that does not match before the server is started with them. It returns
// the key at fault and why.
func checkTLSFiles(t *TLS) (key, msg string) {
	switch {
	case t.Cert != "" && t.Key == "":
		return "tls.key", "missing; tls.cert needs its private key"
	case t.Key != "" && t.Cert == "":
		return "tls.cert", "missing; tls.key needs its certificate"
	case t.Cert != "":
		if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
			return "tls.cert", "cannot load the certificate and key: " + err.Error()
		}
	}
	for _, ca := range []struct{ key, path string }{{"tls.client_ca", t.ClientCA}, {"tls.ca", t.CA}} {
		if ca.path == "" {
			continue
		}
		pem, err := os.ReadFile(ca.path)
		if err != nil {
			return ca.key, err.Error()
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return ca.key, "no PEM certificate in " + ca.path
		}
	}
	return "", ""
}

// checkWebSocket checks the keys of a ws or wss listener, and that other
// listeners do not use them.
func (c *Config) checkWebSocket(key string, l *Listener, fail func(key, format string, args ...any) error) error {
	if l.Proto != "ws" && l.Proto != "wss" {
		set := []struct {
			key string
			set bool
		}{{"path", l.Path != ""}, {"origins", len(l.Origins) > 0}, {"max_frame_size", l.MaxFrameSize != 0}, {"max_message_size", l.MaxMessageSize != 0}}
		for _, k := range set {
			if k.set {
				return fail(key+"."+k.key, "only for ws and wss listeners")
			}
		}
		return nil
	}
	if l.Path != "" && (!strings.HasPrefix(l.Path, "/") || strings.ContainsAny(l.Path, " ?#")) {
		return fail(key+".path", "not an absolute path such as /sip: %q", l.Path)
	}
	for i, o := range l.Origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			return fail(fmt.Sprintf("%s.origins[%d]", key, i), "not a web origin such as https://phone.example.com or https://phone.example.com:8443: %q", o)
		}
	}
	limit := c.Limits.MaxMessageSize
	if l.MaxMessageSize < 0 || l.MaxMessageSize > limit {
		return fail(key+".max_message_size", "must be between 0 (limits.max_message_size) and limits.max_message_size (%d), not %d", limit, l.MaxMessageSize)
	}
	if l.MaxFrameSize < 0 || l.MaxFrameSize > limit || l.MaxMessageSize > 0 && l.MaxFrameSize > l.MaxMessageSize {
		return fail(key+".max_frame_size", "must be between 0 (the message size) and the listener's max_message_size, not %d", l.MaxFrameSize)
	}
	return nil
}
