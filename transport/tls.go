package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// TLS runs in worker goroutines with crypto/tls (gnet has no TLS): per
// connection one reader, which frames and calls the handler, and one
// writer, which drains the bounded queue. Certificates live behind an
// atomic pointer so that ReloadCertificates and ReloadTLS take effect for
// the next handshake without a restart.

type tlsState struct {
	server atomic.Pointer[tls.Config]
	client atomic.Pointer[tls.Config]

	mu sync.Mutex // serialises load
	// inForce is the TLS part of the configuration last loaded: what
	// ReloadCertificates reads again (ReloadTLS replaces it).
	inForce Config
}

func newTLSState(cfg *Config) (*tlsState, error) {
	st := &tlsState{}
	if err := st.load(cfg); err != nil {
		return nil, err
	}
	return st, nil
}

// load puts the TLS settings of cfg in force (its other fields are not
// read); on error those in force stay.
func (st *tlsState) load(cfg *Config) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	server, client, err := buildTLS(cfg)
	if err != nil {
		return err
	}
	st.server.Store(server)
	st.client.Store(client)
	st.inForce = tlsPart(cfg)
	return nil
}

// tlsPart is the TLS settings of cfg, alone.
func tlsPart(cfg *Config) Config {
	return Config{
		TLSCertFile:           cfg.TLSCertFile,
		TLSKeyFile:            cfg.TLSKeyFile,
		TLSCertificates:       append([]CertKeyFiles(nil), cfg.TLSCertificates...),
		TLSClientCAFile:       cfg.TLSClientCAFile,
		TLSRequireClientCert:  cfg.TLSRequireClientCert,
		TLSRootCAFile:         cfg.TLSRootCAFile,
		TLSInsecureSkipVerify: cfg.TLSInsecureSkipVerify,
		TLSMinVersion:         cfg.TLSMinVersion,
	}
}

// buildTLS reads the files of cfg's TLS settings and makes the listeners'
// and the dialer's configurations.
func buildTLS(cfg *Config) (server, client *tls.Config, err error) {
	minVer := cfg.TLSMinVersion
	if minVer < tls.VersionTLS12 {
		minVer = tls.VersionTLS12
	}
	pairs := append([]CertKeyFiles{{cfg.TLSCertFile, cfg.TLSKeyFile}}, cfg.TLSCertificates...)
	certs := make([]tls.Certificate, 0, len(pairs))
	for i, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			key := "tls_cert_file"
			if i > 0 {
				key = "tls_certificates[" + strconv.Itoa(i-1) + "]"
			}
			return nil, nil, &ConfigError{key, err}
		}
		certs = append(certs, c)
	}
	server = &tls.Config{
		// With several certificates crypto/tls picks the first one that
		// matches the client's SNI and algorithms.
		Certificates: certs,
		MinVersion:   minVer,
	}
	if cfg.TLSClientCAFile != "" {
		pool, err := loadPool(cfg.TLSClientCAFile)
		if err != nil {
			return nil, nil, &ConfigError{"tls_client_ca_file", err}
		}
		server.ClientCAs = pool
		server.ClientAuth = tls.VerifyClientCertIfGiven
		if cfg.TLSRequireClientCert {
			server.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	client = &tls.Config{
		Certificates:       certs[:1], // presented to trunks that ask
		MinVersion:         minVer,
		InsecureSkipVerify: cfg.TLSInsecureSkipVerify,
	}
	if cfg.TLSRootCAFile != "" {
		pool, err := loadPool(cfg.TLSRootCAFile)
		if err != nil {
			return nil, nil, &ConfigError{"tls_root_ca_file", err}
		}
		client.RootCAs = pool
	}
	return server, client, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in " + file)
	}
	return pool, nil
}

// ErrNoTLS is returned by ReloadCertificates and ReloadTLS when no TLS or
// WSS listener was configured: the TLS settings are not used.
var ErrNoTLS = errors.New("transport: no TLS listener")

// ReloadCertificates reads the certificate, key and CA files in force
// again (those of Config, or of the last ReloadTLS). New handshakes use
// them; open connections keep theirs. On error the previous certificates
// stay in use.
func (t *Transport) ReloadCertificates() error {
	if t.streams == nil || t.streams.tls == nil {
		return ErrNoTLS
	}
	st := t.streams.tls
	st.mu.Lock()
	cfg := st.inForce
	st.mu.Unlock()
	return st.load(&cfg)
}

// ReloadTLS puts the TLS settings of cfg in force (only its TLS fields
// are read: certificate and key files, SNI pairs, client CA and whether a
// client certificate is required, root CA, server verification, minimum
// version), reading their files: new handshakes, inbound and outbound,
// use them; open connections keep theirs. On error the settings in force
// stay, all of them.
func (t *Transport) ReloadTLS(cfg Config) error {
	if t.streams == nil || t.streams.tls == nil {
		return ErrNoTLS
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return &ConfigError{"tls_cert_file", errors.New("a TLS or WSS listener needs a certificate and key file")}
	}
	if cfg.TLSMinVersion != 0 && cfg.TLSMinVersion < 0x0303 {
		return &ConfigError{"tls_min_version", errors.New("below TLS 1.2")}
	}
	return t.streams.tls.load(&cfg)
}

func (s *streams) acceptTLS(ln net.Listener, l *Listener) {
	s.acceptLoop(ln, l, nil, func(c *streamConn, nc net.Conn) {
		// Serve through the dynamic config so reloads apply.
		s.serveTLS(c, tls.Server(nc, &tls.Config{
			GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return s.tls.server.Load(), nil
			},
		}))
	})
}

// acceptLoop accepts connections on ln, a listener served by goroutines
// rather than gnet (TLS, WS, WSS): Admit before anything is read, then the
// table's limits. setup (if not nil) runs before the connection enters the
// table, where senders may already queue for it; the connection stays
// dialing until serve, on a goroutine of its own, has done its handshake.
// serve calls s.wg.Done when it returns.
func (s *streams) acceptLoop(ln net.Listener, l *Listener, setup func(*streamConn), serve func(*streamConn, net.Conn)) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and friends: count, back off, keep serving.
			s.t.stats.errors.Add(1)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		ra, _ := nc.RemoteAddr().(*net.TCPAddr)
		if ra == nil {
			nc.Close()
			continue
		}
		if admit := s.t.cfg.Admit; admit != nil && !admit(ra.AddrPort().Addr().Unmap()) {
			// Refused before the handshake costs anything; a reset
			// leaves no TIME-WAIT socket behind.
			if tc, ok := nc.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			nc.Close()
			s.t.stats.admitRefused.Add(1)
			continue
		}
		c := s.newConn(l.Proto, l, unmapAP(ra.AddrPort()), true)
		c.state = connDialing // until the handshake is done
		c.raw = nc
		if setup != nil {
			setup(c)
		}
		if _, err := s.table.admit(c, s.limits); err != nil {
			s.t.stats.rejected(err)
			nc.Close()
			continue
		}
		s.t.stats.connsOpen.Add(1)
		s.t.stats.connsAccepted.Add(1)
		s.wg.Add(1)
		go serve(c, nc)
	}
}

func (s *streams) dialTLS(c *streamConn) {
	defer s.wg.Done()
	cfg := s.tls.client.Load().Clone()
	cfg.ServerName = c.serverName
	if cfg.ServerName == "" {
		cfg.ServerName = c.remote.Addr().String()
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: s.t.cfg.DialTimeout}, Config: cfg}
	ctx, cancel := context.WithTimeout(s.ctx, s.t.cfg.DialTimeout)
	nc, err := d.DialContext(ctx, "tcp", c.remote.String())
	cancel()
	if err != nil {
		s.t.stats.tlsHandshakeKO.Add(1)
		s.t.stats.errors.Add(1)
		c.fail(err, true)
		return
	}
	tc := nc.(*tls.Conn)
	c.mu.Lock()
	if c.state == connClosed {
		c.mu.Unlock()
		tc.NetConn().Close()
		return
	}
	c.raw = tc.NetConn()
	c.mu.Unlock()
	s.t.stats.connsDialed.Add(1)
	s.wg.Add(1)
	s.runTLS(c, tc)
}

// serveTLS does the server handshake, then runs the connection.
func (s *streams) serveTLS(c *streamConn, tc *tls.Conn) {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.t.cfg.DialTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.t.stats.tlsHandshakeKO.Add(1)
		c.close()
		return
	}
	s.wg.Add(1)
	s.runTLS(c, tc)
}

// tlsBusyBuf is the largest read buffer a TLS connection keeps once it is
// empty: one a large message grew (up to MaxMessageSize) goes.
const tlsBusyBuf = 16384

// runTLS starts the writer and reads until the connection ends.
func (s *streams) runTLS(c *streamConn, tc *tls.Conn) {
	defer s.wg.Done()
	c.mu.Lock()
	if c.state == connClosed {
		c.mu.Unlock()
		return
	}
	c.tc = tc
	c.wake = make(chan struct{}, 1)
	c.state = connOpen
	pending := len(c.queue) > 0
	c.flushPending = pending
	c.mu.Unlock()
	c.lastRead.Store(s.now.Load())
	if pending {
		c.wake <- struct{}{}
	}
	s.wg.Add(1)
	go s.writeTLS(c, tc)
	defer c.close()

	max := s.t.cfg.MaxMessageSize + 4
	buf := make([]byte, 4096)
	start, end := 0, 0
	for {
		if end == len(buf) {
			if start > 0 {
				end = copy(buf, buf[start:end])
				start = 0
			} else if len(buf) < max {
				n := 2 * len(buf)
				if n > max {
					n = max
				}
				nb := make([]byte, n)
				copy(nb, buf[:end])
				buf = nb
			}
		}
		if end == len(buf) {
			// Cannot happen with FrameLength's limits; never spin on it.
			s.t.stats.connsOversize.Add(1)
			return
		}
		n, err := tc.Read(buf[end:])
		if n > 0 {
			end += n
			c.lastRead.Store(s.now.Load())
			used, ferr := c.consume(buf[start:end])
			start += used
			if start == end {
				start, end = 0, 0
				if len(buf) > tlsBusyBuf {
					// A large message came and went: an idle connection
					// keeps only a small buffer (as WebSocket's do).
					buf = make([]byte, 4096)
				}
			}
			c.partial(start < end)
			if ferr != nil {
				if ferr != errRefused {
					s.t.stats.connsOversize.Add(1)
					s.t.stats.errors.Add(1)
				}
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// writeTLS drains the connection's queue (TLS, WS and WSS). A peer that
// stops reading blocks it; the queue bound then closes the connection,
// which unblocks it.
func (s *streams) writeTLS(c *streamConn, tc net.Conn) {
	defer s.wg.Done()
	var batch []*wbuf
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		batch = append(batch[:0], c.queue...)
		for i := range c.queue {
			c.queue[i] = nil
		}
		c.queue = c.queue[:0]
		c.pongBuf = nil
		c.flushPending = false
		c.mu.Unlock()
		written := 0
		for i, w := range batch {
			if _, err := tc.Write(w.b); err != nil {
				c.writeFailed(batch[i:], err)
				return
			}
			written += cap(w.b)
			putWbuf(w)
			batch[i] = nil
		}
		c.mu.Lock()
		if c.state != connClosed {
			c.queuedBytes -= written
		}
		c.mu.Unlock()
	}
}

// writeFailed closes a TLS connection whose write failed. The messages not
// written go back to the head of the queue, so that closing reports them;
// if the connection was closed meanwhile (the reader saw the error first)
// they are reported here.
func (c *streamConn) writeFailed(rest []*wbuf, err error) {
	c.mu.Lock()
	if c.state != connClosed {
		c.queue = append(rest[:len(rest):len(rest)], c.queue...)
		c.mu.Unlock()
		c.fail(err, true)
		return
	}
	c.mu.Unlock()
	c.s.t.stats.sendDrops.Add(uint64(len(rest)))
	if lost := taggedOf(rest); len(lost) > 0 {
		c.s.reportDropped(c, lost, err)
	}
	for _, w := range rest {
		putWbuf(w)
	}
}
