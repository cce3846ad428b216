package main

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // Kamailio's subscriber table for db_sqlite

	"switchboard/store"
)

// The two servers under test.
const (
	switchboard = "switchboard"
	kamailio    = "kamailio"
)

// What a server is configured to do; each maps to a Switchboard route set
// and a Kamailio configuration in bench/kamailio/.
const (
	workRelay        = "relay"          // stateful relay with Record-Route
	workStateless    = "stateless"      // stateless forward
	workRegistrar    = "registrar"      // registrar + location lookup, no auth
	workRegistrarAut = "registrar-auth" // registrar with digest auth
	workDrouting     = "drouting"       // 10,000 prefix rules to one gateway, Record-Route
	workDialog       = "dialog"         // relay with a dialog and a CDR for every call
	workMedia        = "media"          // relay with rtpengine_manage (a local rtpengine)
)

// Users of the REGISTER and lookup scenarios.
const (
	benchDomain = "localhost"
	userCount   = 10000
)

func userName(i int) string { return fmt.Sprintf("u%05d", i) }
func userPass(i int) string { return fmt.Sprintf("pw-%05d-bench", i) }

func ha1(user, realm, pass string) string {
	h := md5.Sum([]byte(user + ":" + realm + ":" + pass))
	return hex.EncodeToString(h[:])
}

// providerNoAuth and providerAuth are the --set overrides that make the
// "provider" route set register without and with digest authentication
// (MD5 only: what sipp and the Kamailio configuration speak).
var (
	providerNoAuth = []string{"auth.register=false"}
	providerAuth   = []string{"auth.register=true", "auth.algorithms=[MD5]"}
)

// server is a proxy under test, listening on UDP 127.0.0.1:port.
type server struct {
	kind string
	work string
	port int
	p    *proc
	// uasPort is where the registered users' contacts point (lookup), or
	// the address of the gateway of the drouting rules.
	uasPort int
	// rtpe is the server's own rtpengine (work media), ngPort its control
	// port.
	rtpe   *proc
	ngPort int
}

func (s *server) String() string { return s.kind + "/" + s.work }

// cpu is the CPU time used so far by the server and its worker processes.
func (s *server) cpu() time.Duration { return treeCPU(s.p.pid()) }

func (s *server) memory() memory { return treeMemory(s.p.pid()) }

// alive reports whether the server is still running.
func (s *server) alive() bool { return !s.p.exited() }

func (s *server) stop() {
	s.p.stop(syscall.SIGTERM, 5*time.Second)
	if s.rtpe != nil {
		s.rtpe.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// startServer starts kind configured for work, pinned to the proxy core,
// and waits until it answers SIP.
func (b *bench) startServer(kind, work string) (*server, error) {
	port, err := b.freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.work, fmt.Sprintf("%s-%s-%d", kind, work, port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &server{kind: kind, work: work, port: port}
	if work == workDrouting {
		// The gateway is in the rules the server loads at start: its port
		// is chosen first, and the UAS of every rung listens there.
		if s.uasPort, err = b.freePort(); err != nil {
			return nil, err
		}
	}
	if work == workMedia {
		if err := b.startRtpengine(s, dir); err != nil {
			return nil, err
		}
	}
	var bin string
	var args []string
	peer := s.uasPort // the drouting gateway, or the rtpengine control port
	if work == workMedia {
		peer = s.ngPort
	}
	switch kind {
	case switchboard:
		bin, args, err = b.switchboardArgs(dir, work, port, peer)
	case kamailio:
		bin, args, err = b.kamailioArgs(dir, work, port, peer)
	default:
		err = fmt.Errorf("unknown server %q", kind)
	}
	if err != nil {
		return nil, err
	}
	s.p, err = b.procs.start(kind, b.proxyCPU, filepath.Join(dir, "server.log"), bin, args...)
	if err != nil {
		if s.rtpe != nil {
			s.rtpe.stop(syscall.SIGTERM, 5*time.Second)
		}
		return nil, err
	}
	if err := probe(port, 15*time.Second, s.p); err != nil {
		tail := s.p.logTail(20)
		s.stop()
		return nil, fmt.Errorf("%s (%s) did not answer on 127.0.0.1:%d: %v\n%s", kind, work, port, err, tail)
	}
	return s, nil
}

func (b *bench) switchboardArgs(dir, work string, port, gwPort int) (string, []string, error) {
	routes := map[string]string{workRelay: "relay", workStateless: "stateless",
		workRegistrar: "provider", workRegistrarAut: "provider", workDrouting: "drouting",
		workDialog: "calls", workMedia: "relay"}[work]
	if routes == "" {
		return "", nil, fmt.Errorf("switchboard: no route set for %q", work)
	}
	data := filepath.Join(dir, "data")
	// Calls to local users check that the user exists (does_uri_exist), so
	// both registrar configurations have the subscribers.
	if work == workRegistrar || work == workRegistrarAut {
		if err := fillSwitchboardSubscribers(data); err != nil {
			return "", nil, err
		}
	}
	if work == workDrouting {
		if err := fillSwitchboardDrouting(data, gwPort); err != nil {
			return "", nil, err
		}
	}
	cfg := fmt.Sprintf(`listen:
  - proto: udp
    address: 127.0.0.1:%d
domains: [%s, 127.0.0.1]
routes: %s
storage:
  driver: sqlite
  dir: %s
log:
  level: warn
mgmt:
  listen: ""
outbound:
  allow: [127.0.0.0/8]
# One sipp address sends thousands of REGISTERs and INVITEs a second:
# the default per-source pipes would refuse most of them.
ratelimit:
  pipes: []
`, port, benchDomain, routes, data)
	if work == workMedia {
		cfg += fmt.Sprintf("rtpengine:\n  instances: [\"udp:127.0.0.1:%d\"]\n", gwPort)
	}
	path := filepath.Join(dir, "switchboard.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", nil, err
	}
	args := []string{"run", "-c", path}
	var sets []string
	switch work {
	case workRegistrar:
		sets = providerNoAuth
	case workRegistrarAut:
		sets = providerAuth
	}
	for _, s := range append(sets, b.sbSets...) {
		args = append(args, "--set", s)
	}
	return b.sbBin, args, nil
}

// fillSwitchboardSubscribers writes the benchmark's users into the store
// the server will open, with their HA1 only.
func fillSwitchboardSubscribers(dir string) error {
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	if ok, _ := st.DomainExists(ctx, benchDomain); !ok {
		if err := st.AddDomain(ctx, benchDomain); err != nil {
			return fmt.Errorf("switchboard store: %w", err)
		}
	}
	for i := range userCount {
		u := userName(i)
		err := st.AddSubscriber(ctx, store.Subscriber{Username: u, Domain: benchDomain, HA1: ha1(u, benchDomain, userPass(i))})
		if err != nil {
			return fmt.Errorf("switchboard store: %w", err)
		}
	}
	return nil
}

func (b *bench) kamailioArgs(dir, work string, port, gwPort int) (string, []string, error) {
	cfg := map[string]string{workRelay: "relay.cfg", workStateless: "stateless.cfg",
		workRegistrar: "registrar.cfg", workRegistrarAut: "registrar.cfg", workDrouting: "drouting.cfg",
		workDialog: "dialog.cfg", workMedia: "media.cfg"}[work]
	args := []string{"-f", filepath.Join(b.kamDir, cfg), "-DD", "-E", "-n", strconv.Itoa(b.kamChildren),
		"-m", "1024", "-M", "16", "-l", "udp:127.0.0.1:" + strconv.Itoa(port), "-w", dir}
	if work == workRegistrar || work == workRegistrarAut {
		db := filepath.Join(dir, "subscriber.db")
		if err := fillKamailioSubscribers(db); err != nil {
			return "", nil, err
		}
		args = append(args, "-A", `DBURL="sqlite:///`+db+`"`)
		if work == workRegistrarAut {
			args = append(args, "-A", "WITH_AUTH")
		}
	}
	if work == workDrouting {
		db := filepath.Join(dir, "drouting.db")
		if err := fillKamailioDrouting(db, gwPort); err != nil {
			return "", nil, err
		}
		args = append(args, "-A", `DBURL="sqlite:///`+db+`"`)
	}
	if work == workDialog && b.kamDialogDB {
		acc, dlg := filepath.Join(dir, "acc.db"), filepath.Join(dir, "dialog.db")
		if err := fillKamailioDialog(acc, dlg); err != nil {
			return "", nil, err
		}
		args = append(args, "-A", "WITH_DB", "-A", `DBURL="sqlite:///`+acc+`"`, "-A", `DLGDBURL="sqlite:///`+dlg+`"`)
	}
	if work == workMedia {
		args = append(args, "-A", fmt.Sprintf(`RTPENGINE_SOCK="udp:127.0.0.1:%d"`, gwPort))
	}
	return b.kamBin, args, nil
}

// startRtpengine starts the media scenario's rtpengine for server s
// (Debian's rtpengine-daemon, userspace forwarding, on 127.0.0.1 with a
// port range of its own per server kind), pinned to the load CPU so that
// the proxy's CPU per call is its own; the media itself is not sent, the
// benchmark measures the control exchange.
func (b *bench) startRtpengine(s *server, dir string) error {
	bin, err := exec.LookPath("rtpengine")
	if err != nil {
		return fmt.Errorf("the media scenario needs rtpengine (Debian package rtpengine-daemon): %w", err)
	}
	if s.ngPort, err = b.freePort(); err != nil {
		return err
	}
	lo := 20000
	if s.kind == kamailio {
		lo = 40000
	}
	s.rtpe, err = b.procs.start("rtpengine", b.loadCPU, filepath.Join(dir, "rtpengine.log"), bin,
		"--config-file=none", "--table=-1", "--foreground", "--log-stderr", "--log-level=4", "--no-fallback",
		"--interface=127.0.0.1", "--listen-ng=127.0.0.1:"+strconv.Itoa(s.ngPort),
		"--port-min="+strconv.Itoa(lo), "--port-max="+strconv.Itoa(lo+19999), "--delete-delay=0",
		"--timeout=60", "--pidfile="+filepath.Join(dir, "rtpengine.pid"))
	if err != nil {
		return err
	}
	// Ready when it answers an ng ping.
	c, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(s.ngPort))
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 256)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c.Write([]byte("p d7:command4:pinge"))
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && strings.Contains(string(buf[:n]), "pong") {
			return nil
		}
	}
	s.rtpe.stop(syscall.SIGTERM, 5*time.Second)
	return fmt.Errorf("rtpengine did not answer ping on 127.0.0.1:%d:\n%s", s.ngPort, s.rtpe.logTail(20))
}

// fillKamailioSubscribers creates the SQLite database that Kamailio's
// auth_db reads through db_sqlite: the version table it checks and the
// subscriber table (schema version 7), HA1 only.
func fillKamailioSubscribers(path string) error {
	os.Remove(path)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return err
	}
	defer db.Close()
	stmts := []string{
		`CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL)`,
		`INSERT INTO version VALUES ('subscriber', 7)`,
		`CREATE TABLE subscriber (id INTEGER PRIMARY KEY NOT NULL, username VARCHAR(64) DEFAULT '' NOT NULL,
		  domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL,
		  ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL,
		  CONSTRAINT subscriber_account_idx UNIQUE (username, domain))`,
		`CREATE INDEX subscriber_username_idx ON subscriber (username)`,
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			return fmt.Errorf("kamailio subscriber db: %w", err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	ins, err := tx.Prepare(`INSERT INTO subscriber (username, domain, ha1) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	for i := range userCount {
		u := userName(i)
		if _, err := ins.Exec(u, benchDomain, ha1(u, benchDomain, userPass(i))); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// writeUsers writes the sipp injection file of the benchmark's users.
func (b *bench) writeUsers() (string, error) {
	path := filepath.Join(b.work, "users.csv")
	var sb strings.Builder
	sb.WriteString("SEQUENTIAL\n")
	for i := range userCount {
		u, p := userName(i), userPass(i)
		sb.WriteString(u + ";" + p + ";[authentication username=" + u + " password=" + p + "]\n")
	}
	return path, os.WriteFile(path, []byte(sb.String()), 0o644)
}

// probe sends OPTIONS with Max-Forwards 0 until the server answers (both
// servers reply 483 without routing it), or until d passes.
func probe(port int, d time.Duration, p *proc) error {
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.UDPAddr).Port
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	deadline := time.Now().Add(d)
	buf := make([]byte, 4096)
	for i := 0; time.Now().Before(deadline); i++ {
		if p.exited() {
			return errors.New("exited")
		}
		msg := fmt.Sprintf("OPTIONS sip:127.0.0.1:%d SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-probe-%d;rport\r\n"+
			"From: <sip:probe@127.0.0.1>;tag=probe%d\r\nTo: <sip:127.0.0.1:%d>\r\n"+
			"Call-ID: probe-%d-%d@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\nContent-Length: 0\r\n\r\n",
			port, lp, i, i, port, lp, i)
		c.WriteTo([]byte(msg), to)
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := c.ReadFrom(buf)
		if err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 ") {
			// Kamailio answers from its main process before the workers
			// are all up; give them a moment.
			time.Sleep(300 * time.Millisecond)
			return nil
		}
	}
	return errors.New("no answer")
}
