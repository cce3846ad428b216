package registrar

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"switchboard/modules/internal/redistest"
	"switchboard/shards"
)

// redisServer is a real redis-server (modules/internal/redistest).
type redisServer = redistest.Server

func startRedis(t *testing.T) *redisServer { return redistest.Start(t) }

// sharedNode is a registrar in a harness, sharing its bindings on rs.
type sharedNode struct {
	*harness
	mu       sync.Mutex
	degraded string
}

func newSharedNode(t *testing.T, rs *redisServer, node string) *sharedNode {
	t.Helper()
	// Redis expires keys on the wall clock: the harness's clock starts now.
	h := newHarnessClock(t, Config{}, shards.NewManualClock(time.Now().UnixMilli()))
	n := &sharedNode{harness: h}
	st := defaultRedisSettings()
	st.Addr, st.Node, st.Timeout, st.DialTimeout = rs.Addr(), node, 300*time.Millisecond, 300*time.Millisecond
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sh, err := newSharer(h.reg, st, log, func(string, ...any) {}, func(reason string) {
		n.mu.Lock()
		n.degraded = reason
		n.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	h.reg.share = sh
	sh.load()
	sh.start()
	t.Cleanup(sh.stop)
	return n
}

func (n *sharedNode) degradedReason() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.degraded
}

func waitFor(t *testing.T, what string, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sentTo returns the first request sent (not a response) and where.
func (h *harness) sentRequest() (sent, bool) {
	for _, s := range h.take() {
		if !strings.HasPrefix(s.data, "SIP/2.0 ") {
			return s, true
		}
	}
	return sent{}, false
}

// A binding saved on one node is found by a lookup on another, with the
// node and the address that hold the phone's flow; Redis holds it as one
// hash field with the binding's expiry as the key's TTL; a removal made on
// the second node reaches the first and Redis.
func TestRedisShareAcrossNodes(t *testing.T) {
	rs := startRedis(t)
	a := newSharedNode(t, rs, "node-a")
	b := newSharedNode(t, rs, "node-b")
	rc := rs.Client()
	ctx := context.Background()

	// Behind NAT: a private Contact, reached at the REGISTER's source.
	resp := a.request("127.0.0.1:5062", register("alice", "cid-alice", 1, "Contact: <sip:alice@10.0.0.5:5060>\r\nExpires: 600\r\n"))
	if statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER on a: %s", resp)
	}
	waitFor(t, "node b never saw alice's binding", 5*time.Second, func() bool { return b.reg.Registered([]byte("alice@example.com")) })
	l := b.reg.List("alice@example.com")
	if len(l) != 1 || l[0].Node != "node-a" || l[0].Received != "udp:127.0.0.1:5062" || !l[0].NAT || l[0].Contact != "sip:alice@10.0.0.5:5060" {
		t.Fatalf("node b's copy: %+v", l)
	}

	// A call through b goes to where alice registered from.
	b.take()
	b.receive("127.0.0.1:5080", invite("alice"))
	s, ok := b.sentRequest()
	if !ok || s.dst != netip.MustParseAddrPort("127.0.0.1:5062") || !strings.HasPrefix(s.data, "INVITE sip:alice@10.0.0.5:5060 ") {
		t.Fatalf("INVITE through b: sent %v to %v:\n%s", ok, s.dst, s.data)
	}

	key := "switchboard:loc:{alice@example.com}"
	if n := rc.HLen(ctx, key).Val(); n != 1 {
		t.Fatalf("Redis hash has %d fields, want 1", n)
	}
	if ttl := rc.PTTL(ctx, key).Val(); ttl < 590*time.Second || ttl > 600*time.Second {
		t.Fatalf("Redis TTL %s, want the binding's 600s", ttl)
	}
	// Only the node holding the flow pings it.
	var pinged []bool
	for _, n := range []*sharedNode{a, b} {
		h := shards.SumString("alice@example.com")
		s := n.reg.tbl.Shard(h)
		s.Lock()
		e := s.Get(h, []byte("alice@example.com"))
		pinged = append(pinged, e.Value.b[0].pinged())
		s.Unlock()
	}
	if !pinged[0] || pinged[1] {
		t.Fatalf("keepalive on a, b: %v, want only on a", pinged)
	}

	// The phone's unregistration lands on b this time.
	resp = b.request("127.0.0.1:5062", register("alice", "cid-alice", 2, "Contact: <sip:alice@10.0.0.5:5060>;expires=0\r\n"))
	if statusOf(resp) != "200 OK" {
		t.Fatalf("unREGISTER on b: %s", resp)
	}
	waitFor(t, "node a kept alice's binding", 5*time.Second, func() bool { return !a.reg.Registered([]byte("alice@example.com")) })
	waitFor(t, "Redis kept alice's hash", 5*time.Second, func() bool { return rc.Exists(ctx, key).Val() == 0 })

	// A node started later reads what is there.
	resp = a.request("127.0.0.1:5064", register("bob", "cid-bob", 1, "Contact: <sip:bob@127.0.0.1:5064>\r\nExpires: 600\r\n"))
	if statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER bob: %s", resp)
	}
	waitFor(t, "bob never written", 5*time.Second, func() bool { return rc.Exists(ctx, "switchboard:loc:{bob@example.com}").Val() == 1 })
	c := newSharedNode(t, rs, "node-c")
	if !c.reg.Registered([]byte("bob@example.com")) || c.reg.Registered([]byte("alice@example.com")) {
		t.Fatalf("node c after start: %+v", c.reg.List(""))
	}
	if st := a.reg.ShareStats(); !st.Up || st.Pending != 0 || st.Published < 2 || st.Ops == 0 {
		t.Fatalf("node a's stats: %+v", st)
	}
}

// While Redis is down, REGISTERs are answered at once and kept in memory,
// cached bindings are still found; the node says it is degraded; when Redis
// is back the new bindings are written and reach the other nodes.
func TestRedisShareOutage(t *testing.T) {
	rs := startRedis(t)
	a := newSharedNode(t, rs, "node-a")
	b := newSharedNode(t, rs, "node-b")

	if resp := a.request("127.0.0.1:5062", register("bob", "cid-bob", 1, "Contact: <sip:bob@127.0.0.1:5062>\r\nExpires: 600\r\n")); statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER bob: %s", resp)
	}
	waitFor(t, "b never saw bob", 5*time.Second, func() bool { return b.reg.Registered([]byte("bob@example.com")) })

	rs.Stop()
	start := time.Now()
	if resp := a.request("127.0.0.1:5066", register("carol", "cid-carol", 1, "Contact: <sip:carol@127.0.0.1:5066>\r\nExpires: 600\r\n")); statusOf(resp) != "200 OK" {
		t.Fatalf("REGISTER carol with Redis down: %s", resp)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("the REGISTER waited %s for Redis", d)
	}
	waitFor(t, "a never noticed the outage", 5*time.Second, func() bool { return !a.reg.ShareStats().Up })
	waitFor(t, "carol not pending", 5*time.Second, func() bool { return a.reg.ShareStats().Pending == 1 })
	if a.degradedReason() == "" {
		t.Fatalf("a during the outage: degraded %q, %+v", a.degradedReason(), a.reg.ShareStats())
	}
	// Cached bindings still work on b.
	b.take()
	b.receive("127.0.0.1:5080", invite("bob"))
	if s, ok := b.sentRequest(); !ok || !strings.HasPrefix(s.data, "INVITE sip:bob@127.0.0.1:5062 ") {
		t.Fatalf("INVITE to bob through b during the outage: %v %q", ok, s.data)
	}
	if b.reg.Registered([]byte("carol@example.com")) {
		t.Fatal("carol reached b without Redis")
	}

	rs.Start()
	waitFor(t, "carol never reached b after Redis came back", 10*time.Second, func() bool { return b.reg.Registered([]byte("carol@example.com")) })
	waitFor(t, "a still degraded", 5*time.Second, func() bool { return a.reg.ShareStats().Up && a.degradedReason() == "" })
	if st := a.reg.ShareStats(); st.Pending != 0 || st.Outages != 1 {
		t.Fatalf("a after the outage: %+v", st)
	}
	if !b.reg.Registered([]byte("bob@example.com")) {
		t.Fatal("b lost bob")
	}
}

// Configuration errors name the key.
func TestSharingSettings(t *testing.T) {
	for _, c := range []struct {
		edit func(*Settings)
		key  string
	}{
		{func(s *Settings) { s.Sharing = "memcache" }, "sharing"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr = "redis", "" }, "redis.addr"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr = "redis", "localhost" }, "redis.addr"},
		{func(s *Settings) { s.Sharing, s.Redis.Addr = "redis", "a:1,b:2" }, "redis.addr"},
		{func(s *Settings) { s.Sharing, s.Redis.Cluster, s.Redis.DB = "redis", true, 2 }, "redis.db"},
		{func(s *Settings) { s.Sharing, s.Redis.Timeout = "redis", 0 }, "redis.timeout"},
		{func(s *Settings) { s.Sharing, s.Redis.Node = "redis", "a b" }, "redis.node"},
	} {
		s := DefaultSettings()
		c.edit(s)
		err := s.check()
		if err == nil || !strings.HasPrefix(err.Error(), c.key+": ") {
			t.Errorf("%s: got %v", c.key, err)
		}
	}
	s := DefaultSettings()
	s.Sharing, s.Redis.Addr, s.Redis.Cluster = "redis", "10.0.0.1:7000,10.0.0.2:7000", true
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	s.Redis.Cluster, s.Redis.Addr = false, "redis://:pw@127.0.0.1:6380/3"
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
}
