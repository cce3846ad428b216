package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"switchboard/modules/auth"
	_ "switchboard/modules/authban" // its section is in default.yaml
	"switchboard/modules/permissions"
	_ "switchboard/modules/pike"
	"switchboard/modules/registrar"
	_ "switchboard/modules/sst" // its section is in default.yaml
	"testing"
	"time"
)

func TestDefaultYAMLMatchesDefault(t *testing.T) {
	cfg, err := Load("default.yaml", DefaultYAML, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	if err := want.check(func(string) int { return 0 }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("embedded default.yaml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	cfg, err := Load("empty.yaml", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timers.T1.D() != 500*time.Millisecond || len(cfg.Listen) != 2 {
		t.Fatalf("empty file did not give defaults: %+v", cfg)
	}
}

func TestValues(t *testing.T) {
	src := `
listen:
  - proto: udp
    address: "[::1]:5070"
    advertise: sip.example.com:5060
domains: [example.com]
timers:
  t1: 250ms
  timer_c: 90s
limits:
  shards: 64
outbound:
  allow: [127.0.0.0/8, "::1"]
  resolver: 127.0.0.1:5353
`
	cfg, err := Load("x.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listen[0].AddrPort().String(); got != "[::1]:5070" {
		t.Errorf("listen address %s", got)
	}
	if cfg.Timers.T1.D() != 250*time.Millisecond || cfg.Timers.T2.D() != 4*time.Second || cfg.Timers.TimerC.D() != 90*time.Second {
		t.Errorf("timers %+v", cfg.Timers)
	}
	if cfg.Limits.Shards != 64 || cfg.Limits.MaxMessageSize != 65535 {
		t.Errorf("limits %+v", cfg.Limits)
	}
	p := cfg.Outbound.AllowPrefixes()
	if len(p) != 2 || p[0].String() != "127.0.0.0/8" || p[1].String() != "::1/128" {
		t.Errorf("allow %v", p)
	}
}

func TestErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"unknown top key", "listen:\n  - {proto: udp, address: 127.0.0.1:5060}\nlisen: 1\n", "x.yaml:3: lisen: unknown key"},
		{"unknown nested key", "timers:\n  t1: 1s\n  t3: 2s\n", "x.yaml:3: timers.t3: unknown key; known keys here: fr, t1, t2, t4, timer_c, wait"},
		{"fr out of range", "timers:\n  fr: 50ms\n", "x.yaml:2: timers.fr: must be 0 (64×t1) or between 100ms and 5m, not 50ms"},
		{"wait out of range", "timers:\n  wait: 10m\n", "x.yaml:2: timers.wait: must be between 100ms and 5m, not 10m0s"},
		{"bad duration", "timers:\n  t1: fast\n", "x.yaml:2: timers.t1: not a duration"},
		{"duration out of range", "timers:\n  t1: 20s\n", "x.yaml:2: timers.t1: must be between 1ms and 10s"},
		{"t2 below t1", "timers:\n  t1: 2s\n  t2: 1s\n", "x.yaml:3: timers.t2: must be at least timers.t1"},
		{"bad proto", "listen:\n  - proto: sctp\n    address: 127.0.0.1:5060\n", "x.yaml:2: listen[0].proto: unknown protocol \"sctp\""},
		{"bad address", "listen:\n  - proto: udp\n    address: localhost:5060\n", "x.yaml:3: listen[0].address: not an IP address with a port"},
		{"wildcard without advertise", "listen:\n  - proto: udp\n    address: 0.0.0.0:5060\n", "x.yaml:2: listen[0].advertise: required when listening on 0.0.0.0: the address or name peers reach this server at"},
		{"missing address", "listen:\n  - proto: udp\n", "x.yaml:2: listen[0].address: missing"},
		{"duplicate listener", "listen:\n  - {proto: udp, address: 127.0.0.1:5060}\n  - {proto: udp, address: 127.0.0.1:5060}\n", "x.yaml:3: listen[1].address: udp 127.0.0.1:5060 is already listed as listen[0]"},
		{"tls without cert", "listen:\n  - {proto: tls, address: 127.0.0.1:5061}\n", "tls: a tls or wss listener needs tls.cert and tls.key"},
		{"wss without cert", "listen:\n  - {proto: wss, address: 127.0.0.1:8443}\n", "tls: a tls or wss listener needs tls.cert and tls.key"},
		{"ws path relative", "listen:\n  - proto: ws\n    address: 127.0.0.1:8080\n    path: sip\n", "x.yaml:4: listen[0].path: not an absolute path such as /sip"},
		{"ws origin not an origin", "listen:\n  - proto: ws\n    address: 127.0.0.1:8080\n    origins: [phone.example.com]\n", "x.yaml:4: listen[0].origins[0]: not a web origin"},
		{"ws origin with a path", "listen:\n  - proto: ws\n    address: 127.0.0.1:8080\n    origins: [\"https://a.example.com/app\"]\n", "listen[0].origins[0]: not a web origin"},
		{"ws message over the limit", "listen:\n  - proto: ws\n    address: 127.0.0.1:8080\n    max_message_size: 100000\n", "x.yaml:4: listen[0].max_message_size: must be between 0 (limits.max_message_size) and limits.max_message_size (65535)"},
		{"ws frame over the message", "listen:\n  - proto: ws\n    address: 127.0.0.1:8080\n    max_message_size: 4000\n    max_frame_size: 5000\n", "x.yaml:5: listen[0].max_frame_size: must be between 0"},
		{"path on udp", "listen:\n  - proto: udp\n    address: 127.0.0.1:5060\n    path: /sip\n", "x.yaml:4: listen[0].path: only for ws and wss listeners"},
		{"not a number", "limits:\n  max_connections: many\n", "x.yaml:2: limits.max_connections: want a whole number, not \"many\""},
		{"negative transaction memory", "limits:\n  max_transaction_memory: -1\n", "x.yaml:2: limits.max_transaction_memory: must be 0 (a share of the available memory) or between 1 and 1048576 (MiB), not -1"},
		{"transaction memory not a number", "limits:\n  max_transaction_memory: 4GB\n", "x.yaml:2: limits.max_transaction_memory: want a whole number"},
		{"reserve over 90%", "limits:\n  outbound_connections_reserved_percent: 95\n", "x.yaml:2: limits.outbound_connections_reserved_percent: must be between 0 and 90"},
		{"shards not power of two", "limits:\n  shards: 12\n", "x.yaml:2: limits.shards: must be 0 (automatic) or a power of two"},
		{"udp socket buffer too small", "limits:\n  udp_socket_buffer: 4096\n", "x.yaml:2: limits.udp_socket_buffer: must be 0 (the kernel's default) or between 65536 and 268435456 (bytes), not 4096"},
		{"list where section", "timers: [1, 2]\n", "x.yaml:1: timers: want a section of keys, not a list"},
		{"bad driver", "storage:\n  driver: oracle\n", "x.yaml:2: storage.driver: unknown driver \"oracle\"; supported: sqlite, postgres, mysql"},
		{"mysql without dsn", "storage:\n  driver: mysql\n", "storage.dsn: missing; the MariaDB or MySQL database"},
		{"bad mysql dsn", "storage:\n  driver: mysql\n  dsn: \"sb@tcp(db.example.net:3306\"\n", "x.yaml:3: storage.dsn: invalid DSN"},
		{"mysql dsn without database", "storage:\n  driver: mysql\n  dsn: \"sb@tcp(db.example.net:3306)/\"\n", "x.yaml:3: storage.dsn: names no database"},
		{"postgres without dsn", "storage:\n  driver: postgres\n", "storage.dsn: missing; the PostgreSQL database"},
		{"bad dsn", "storage:\n  driver: postgres\n  dsn: \"postgres://sb@db.example.net:port/sb\"\n", "x.yaml:3: storage.dsn: cannot parse"},
		{"dsn for sqlite", "storage:\n  dsn: host=/run/postgresql\n", "x.yaml:2: storage.dsn: is for storage.driver postgres or mysql"},
		{"max_conns 0", "storage:\n  max_conns: 0\n", "x.yaml:2: storage.max_conns: must be between 1 and 1000, not 0"},
		{"storage timeout", "storage:\n  timeout: 1ms\n", "x.yaml:2: storage.timeout: must be between 100ms and 5m, not 1ms"},
		{"bad schema", "storage:\n  schema: kamailio\n", "x.yaml:2: storage.schema: unknown schema \"kamailio\"; supported: switchboard, opensips"},
		{"opensips on sqlite", "storage:\n  schema: opensips\n", "x.yaml:2: storage.schema: opensips needs storage.driver postgres or mysql"},
		{"bad log level", "log:\n  level: loud\n", "x.yaml:2: log.level: must be debug, info, warn or error"},
		{"bad allow", "outbound:\n  allow: [10.0.0.0/33]\n", "x.yaml:2: outbound.allow[0]: not an address or network"},
		{"given twice", "routes: a\nroutes: b\n", "routes"},
		{"bad yaml", "timers:\n  t1: [\n", "x.yaml:"},
		{"bad domain", "domains: [\"a b\"]\n", "x.yaml:1: domains[0]: not a domain name"},
		{"anycast relay not an address", "anycast:\n  relay: relay.example.net:5099\n  peers: [10.0.0.2:5099]\n", "x.yaml:2: anycast.relay: not an IP address with a port"},
		{"anycast without peers", "anycast:\n  relay: 10.0.0.1:5099\n", "anycast.peers: missing"},
		{"anycast peer not an address", "anycast:\n  relay: 10.0.0.1:5099\n  peers: [10.0.0.2]\n", "anycast.peers[0]: not an IP address with a port"},
		{"anycast peer is self", "anycast:\n  relay: 10.0.0.1:5099\n  peers: [10.0.0.1:5099]\n", "anycast.peers[0]: is anycast.relay"},
		{"anycast max_flows too small", "anycast:\n  max_flows: 8\n", "x.yaml:2: anycast.max_flows: must be between 16 and 16777216, not 8"},
		{"anycast max_flows too large", "anycast:\n  relay: 10.0.0.1:5099\n  peers: [10.0.0.2:5099]\n  max_flows: 16777217\n", "anycast.max_flows: must be between 16 and 16777216"},
		{"anycast peers without relay", "anycast:\n  peers: [10.0.0.2:5099]\n", "anycast.relay: missing"},
		{"anycast relay on the SIP port", "listen:\n  - {proto: udp, address: 127.0.0.1:5060}\nanycast:\n  relay: 127.0.0.1:5060\n  peers: [127.0.0.2:5099]\n", "anycast.relay: is a SIP listener's address"},
		{"bad sharing", "registrar:\n  sharing: memcached\n", "registrar.sharing: must be none or redis"},
		{"redis addr", "registrar:\n  sharing: redis\n  redis:\n    addr: redis-host\n", "registrar.redis.addr: \"redis-host\": want host:port or a redis:// URL"},
		{"redis cluster db", "registrar:\n  sharing: redis\n  redis:\n    cluster: true\n    db: 3\n", "registrar.redis.db: must be 0 with redis.cluster"},
		{"redis timeout", "registrar:\n  sharing: redis\n  redis:\n    timeout: 0s\n", "registrar.redis.timeout: must be between 10ms and 1m"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("x.yaml", []byte(c.src), nil)
			if err == nil {
				t.Fatalf("no error for %q", c.src)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("timers:\n  t1: 1s\n"), []string{
		"timers.t1=250ms",
		"log.level=debug",
		"listen=[{proto: udp, address: 127.0.0.1:5099}]",
		"mgmt.listen=",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Timers.T1.D() != 250*time.Millisecond || cfg.Log.Level != "debug" || cfg.Mgmt.Listen != "" {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if len(cfg.Listen) != 1 || cfg.Listen[0].AddrPort().Port() != 5099 {
		t.Fatalf("listen override: %+v", cfg.Listen)
	}
	_, err = Load("x.yaml", nil, []string{"timers.t9=1s"})
	var ce *Error
	if !errors.As(err, &ce) || ce.Key != "timers.t9" {
		t.Fatalf("unknown override key: %v", err)
	}
	_, err = Load("x.yaml", nil, []string{"novalue"})
	if err == nil || !strings.Contains(err.Error(), "not key=value") {
		t.Fatalf("malformed override: %v", err)
	}
}

func TestModuleKeys(t *testing.T) {
	src := `
registrar:
  default_expires: 10m
  min_expires: 30s
  max_expires: 1h
  max_contacts: 3
  max_memory: 16
  nat_tests: [private_via, flow]
  persist: write-through
auth:
  register: false
  algorithms: [MD5]
  nonce_lifetime: 1m
  cache_entries: 500
  workers: 2
  poll_interval: 250ms
  check_uri: false
`
	cfg, err := Load("x.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, a := cfg.Modules["registrar"].(*registrar.Settings), cfg.Modules["auth"].(*auth.Settings)
	if r.DefaultExpires != 10*time.Minute || r.MinExpires != 30*time.Second || r.MaxExpires != time.Hour || r.MaxContacts != 3 || r.MaxMemory != 16 ||
		strings.Join(r.NATTests, ",") != "private_via,flow" || r.Persist != "write-through" {
		t.Errorf("registrar %+v", r)
	}
	if a.Register || len(a.Algorithms) != 1 || a.Algorithms[0] != "MD5" || a.NonceLifetime != time.Minute ||
		a.CacheEntries != 500 || a.Workers != 2 || a.PollInterval != 250*time.Millisecond || a.CheckURI {
		t.Errorf("auth %+v", a)
	}
	d := Default()
	da, dr := d.Modules["auth"].(*auth.Settings), d.Modules["registrar"].(*registrar.Settings)
	if !da.Register || da.Algorithms[0] != "SHA-256" || dr.MinExpires != time.Minute || !da.CheckURI {
		t.Errorf("defaults %+v %+v", da, dr)
	}
	cfg, err = Load("x.yaml", nil, []string{"auth.register=false", "registrar.min_expires=2s"})
	if err != nil || cfg.Modules["auth"].(*auth.Settings).Register || cfg.Modules["registrar"].(*registrar.Settings).MinExpires != 2*time.Second {
		t.Errorf("overrides: %v %+v", err, cfg)
	}
	if Default().Modules["auth"] == d.Modules["auth"] {
		t.Error("Default shares the modules' settings between calls")
	}

	for _, tc := range []struct{ src, want string }{
		{"registrar:\n  min_expires: 0s\n", "x.yaml:2: registrar.min_expires: must be whole seconds, at least 1s"},
		{"registrar:\n  min_expires: 1500ms\n", "x.yaml:2: registrar.min_expires: must be whole seconds"},
		{"registrar:\n  max_expires: 30s\n", "x.yaml:2: registrar.max_expires: must be whole seconds between registrar.min_expires (1m0s)"},
		{"registrar:\n  default_expires: 3h\n", "x.yaml:2: registrar.default_expires: must be whole seconds between"},
		{"registrar:\n  max_contacts: 0\n", "x.yaml:2: registrar.max_contacts: must be between 1 and 1000"},
		{"registrar:\n  max_contact: 5\n", "x.yaml:2: registrar.max_contact: unknown key"},
		{"registrar:\n  max_memory: 0\n", "x.yaml:2: registrar.max_memory: must be between 1 and 1048576"},
		{"registrar:\n  nat_tests: [flow, rfc1918]\n", `x.yaml:2: registrar.nat_tests[1]: unknown NAT test "rfc1918"; one of private_contact, via_received, private_via, via_rport, contact_port, flow`},
		{"registrar:\n  nat_tests: [flow, flow]\n", "x.yaml:2: registrar.nat_tests[1]: flow is listed twice"},
		{"registrar:\n  persist: sync\n", `x.yaml:2: registrar.persist: must be write-back or write-through, not "sync"`},
		{"registrar:\n  write_interval: 11s\n", "x.yaml:2: registrar.write_interval: must be between 0s and 10s, not 11s"},
		{"registrar:\n  write_interval: -1ms\n", "x.yaml:2: registrar.write_interval: must be between 0s and 10s"},
		{"registrar:\n  flow_timer: 5s\n", "x.yaml:2: registrar.flow_timer: must be 0 or whole seconds between 10s and 1h, not 5s"},
		{"auth:\n  algorithms: []\n", "x.yaml:2: auth.algorithms: at least one of SHA-256, MD5"},
		{"auth:\n  algorithms: [MD5, SHA-512]\n", `x.yaml:2: auth.algorithms[1]: unknown algorithm "SHA-512"`},
		{"auth:\n  algorithms: [MD5, MD5]\n", "x.yaml:2: auth.algorithms[1]: MD5 is listed twice"},
		{"auth:\n  nonce_lifetime: 1s\n", "x.yaml:2: auth.nonce_lifetime: must be between 10s and 24h"},
		{"auth:\n  cache_entries: 5\n", "x.yaml:2: auth.cache_entries: must be at least 100"},
		{"auth:\n  workers: 0\n", "x.yaml:2: auth.workers: must be between 1 and 256"},
		{"auth:\n  poll_interval: 1ms\n", "x.yaml:2: auth.poll_interval: must be between 10ms and 1m"},
		{"auth:\n  register: maybe\n", "x.yaml:2: auth.register:"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}

func TestTLSFilesChecked(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, src, want string }{
		{"cert without key", "tls:\n  cert: c.pem\n", "x.yaml:2: tls.key: missing; tls.cert needs its private key"},
		{"missing cert file", "tls:\n  cert: " + dir + "/none.pem\n  key: " + dir + "/none.key\n", "x.yaml:2: tls.cert: cannot load the certificate and key: open " + dir + "/none.pem: no such file or directory"},
		{"missing ca", "tls:\n  ca: " + dir + "/none.pem\n", "x.yaml:2: tls.ca: open " + dir + "/none.pem: no such file or directory"},
		{"ca not PEM", "tls:\n  client_ca: " + notPEM + "\n", "x.yaml:2: tls.client_ca: no PEM certificate in " + notPEM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("x.yaml", []byte(c.src), nil)
			if err == nil || err.Error() != c.want {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestNATTestNames: the default NAT tests are the registrar's.
func TestNATTestNames(t *testing.T) {
	if got, want := strings.Join(Default().Modules["registrar"].(*registrar.Settings).NATTests, ","), strings.Join(registrar.DefaultNATTests.Names(), ","); got != want {
		t.Fatalf("default %s, the registrar's default %s", got, want)
	}
}

func TestMgmtKeys(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("mgmt:\n  token: 0123456789abcdef-XYZ\n  allowed_hosts: [sb.example.net, \"sb.example.net:8443\", \"192.0.2.1:8080\", \"[2001:db8::1]:8080\", \"[::1]\"]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mgmt.Token != "0123456789abcdef-XYZ" || len(cfg.Mgmt.AllowedHosts) != 5 {
		t.Fatalf("mgmt: %+v", cfg.Mgmt)
	}
	for _, c := range []struct{ src, want string }{
		{"mgmt:\n  token: short\n", "x.yaml:2: mgmt.token: a token needs at least 16 characters, this one has 5; leave it empty"},
		{"mgmt:\n  token: \"0123456789abcdef 0\"\n", "x.yaml:2: mgmt.token: a token may hold letters, digits"},
		{"mgmt:\n  allowed_hosts: [\"http://sb.example.net\"]\n", "x.yaml:2: mgmt.allowed_hosts[0]: not a host name or host:port"},
		{"mgmt:\n  allowed_hosts: [ok.example.net, \"sb.example.net:0\"]\n", "x.yaml:2: mgmt.allowed_hosts[1]:"},
		{"mgmt:\n  allowed_hosts: [\"2001:db8::1\"]\n", "mgmt.allowed_hosts[0]:"},
		{"mgmt:\n  allowed_hosts: [\"sb.example.net/api\"]\n", "mgmt.allowed_hosts[0]:"},
		{"mgmt:\n  allowed_hosts: [\"\"]\n", "mgmt.allowed_hosts[0]:"},
		{"mgmt:\n  panel:\n    session_ttl: 10s\n", "x.yaml:3: mgmt.panel.session_ttl: 10s: want 1m to 720h"},
		{"mgmt:\n  panel:\n    session_lifetime: 0s\n", "x.yaml:3: mgmt.panel.session_lifetime: 0s: want 1m to 720h"},
		{"mgmt:\n  panel:\n    session_lifetime: 721h\n", "x.yaml:3: mgmt.panel.session_lifetime: 721h0m0s: want 1m to 720h"},
		{"mgmt:\n  panel:\n    lockout_failures: 0\n", "x.yaml:3: mgmt.panel.lockout_failures: 0: want 1 to 1000"},
		{"mgmt:\n  panel:\n    lockout_time: 0s\n", "x.yaml:3: mgmt.panel.lockout_time: 0s: want 1s to 168h"},
		{"mgmt:\n  allowed_host: [a]\n", "x.yaml:2: mgmt.allowed_host: unknown key; known keys here: allowed_hosts, listen, panel, token"},
	} {
		_, err := Load("x.yaml", []byte(c.src), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.src, err, c.want)
		}
	}
}

func TestPermissionsKeys(t *testing.T) {
	src := "permissions:\n  poll_interval: 250ms\n  max_entries: 500\n  pattern_on: ruri\nprovider:\n  trusted_group: 7\n"
	cfg, err := Load("x.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Modules["permissions"].(*permissions.Settings)
	if p.PollInterval != 250*time.Millisecond || p.MaxEntries != 500 || p.PatternOn != "ruri" || cfg.Provider.TrustedGroup != 7 {
		t.Errorf("permissions %+v, provider %+v", p, cfg.Provider)
	}
	d := Default()
	if dp := d.Modules["permissions"].(*permissions.Settings); dp.PollInterval != time.Second || dp.MaxEntries != 1_000_000 || dp.PatternOn != "from" || d.Provider.TrustedGroup != 1 {
		t.Errorf("defaults %+v, trusted_group %d", dp, d.Provider.TrustedGroup)
	}
	for _, tc := range []struct{ src, want string }{
		{"permissions:\n  poll_interval: 5ms\n", "x.yaml:2: permissions.poll_interval: must be between 10ms and 1m"},
		{"permissions:\n  max_entries: 0\n", "x.yaml:2: permissions.max_entries: must be between 1 and 100000000"},
		{"permissions:\n  pattern_on: to\n", `x.yaml:2: permissions.pattern_on: must be from or ruri, not "to"`},
		{"permissions:\n  patern_on: to\n", "x.yaml:2: permissions.patern_on: unknown key"},
		{"provider:\n  trusted_group: 70000\n", "x.yaml:2: provider.trusted_group: must be a permissions group (1-65535) or 0 for none, not 70000"},
		{"provider:\n  trusted_group: -1\n", "x.yaml:2: provider.trusted_group:"},
	} {
		_, err := Load("x.yaml", []byte(tc.src), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.src, err, tc.want)
		}
	}
}

func TestStoragePostgres(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("storage:\n  driver: postgres\n  dsn: host=/run/postgresql dbname=switchboard\n  max_conns: 20\n  timeout: 3s\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := cfg.Storage; st.Driver != "postgres" || st.DSN != "host=/run/postgresql dbname=switchboard" || st.MaxConns != 20 || st.Timeout.D() != 3*time.Second || st.Dir != "data" {
		t.Fatalf("storage %+v", st)
	}
	// A DSN that does not parse is named, its password is not.
	_, err = Load("x.yaml", []byte("storage:\n  driver: postgres\n  dsn: postgres://sb:hunter2@db.example.net:port/sb\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "storage.dsn") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v", err)
	}
}

// TestDSNPasswordNotRepeated: a PostgreSQL DSN that does not parse (a
// missing sslrootcert file) is refused naming the key and what went
// wrong, never with the DSN's password, however it is written.
func TestDSNPasswordNotRepeated(t *testing.T) {
	const pw = "S3cretPassw0rd"
	for _, dsn := range []string{
		"host=db.example.net user=switchboard password = " + pw + " sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
		"host=db.example.net user=switchboard password=" + pw + " sslmode=verify-full sslrootcert=/nonexistent/ca.pem",
		"postgres://switchboard:" + pw + "@db.example.net/sb?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
	} {
		_, err := Load("t.yaml", []byte("storage:\n  driver: postgres\n  dsn: \""+dsn+"\"\n"), nil)
		if err == nil {
			t.Fatalf("%s: accepted", dsn)
		}
		if strings.Contains(err.Error(), pw) || !strings.Contains(err.Error(), "storage.dsn") || !strings.Contains(err.Error(), "ca.pem") {
			t.Errorf("%v", err)
		}
	}
}

// TestMaxConnectionsBounded: a max_connections whose outbound share
// would overflow is refused by its key.
func TestMaxConnectionsBounded(t *testing.T) {
	_, err := Load("t.yaml", []byte("limits:\n  max_connections: 1000000000000000000\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "limits.max_connections") {
		t.Fatalf("%v", err)
	}
}
