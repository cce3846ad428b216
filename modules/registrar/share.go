package registrar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"switchboard/modules"
	"switchboard/modules/internal/rediscfg"
	"switchboard/shards"
	"switchboard/store"
)

// Shared location on Redis (registrar.sharing: redis). Every node keeps
// the whole location in its own shards table, as without sharing, so
// Lookup stays in memory and allocation-free; Redis is where nodes meet:
//
//   - a binding change made here (REGISTER, management API) marks its
//     (AOR, binding) dirty; one goroutine writes the dirty bindings to
//     Redis, as they are in memory when it gets to them, and publishes the
//     AOR on a channel. Nothing on the receive path waits for Redis.
//   - every node subscribes to the channel and re-reads an AOR another node
//     published, replacing its cached bindings of it (but those it has not
//     written yet).
//   - at start, and whenever the connection comes back (a new
//     subscription), a node reads every AOR from Redis: what it missed
//     while away is caught up.
//
// Each AOR is a hash, one field per binding (field: the binding's key, as
// store.Binding.Key; value: its expiry in unix ms, "|", the binding as
// JSON). The hash's TTL is its latest binding's expiry, and a write drops
// the fields already expired, so Redis holds nothing past its expiry.
//
// While Redis cannot be reached, REGISTERs are answered and kept in
// memory, dirty; they are written when it is back. switchboard_registrar_redis_up
// says 0, /readyz lists "registrar.redis" as degraded, the log says when
// it starts and ends.

// RedisSettings are registrar.redis (docs/configuration.md): the keys
// every module that shares state on Redis has (modules/internal/rediscfg).
type RedisSettings = rediscfg.Settings

// Sharing modes of registrar.sharing.
const (
	SharingNone  = "none"
	SharingRedis = "redis"
)

func defaultRedisSettings() RedisSettings { return rediscfg.Default() }

func (s *Settings) checkSharing() error {
	switch s.Sharing {
	case SharingNone, "":
		return nil
	case SharingRedis:
	default:
		return modules.Errorf("sharing", "must be none or redis, not %q", s.Sharing)
	}
	return s.Redis.Check("redis.")
}

// dirtyShards spreads the set of unwritten changes over locks, so REGISTERs
// on different cores rarely meet on one.
const dirtyShards = 64

// dirtyAOR is what is left to write of one AOR: the keys of its changed
// bindings, or all of it ("Contact: *" or a management flush).
type dirtyAOR struct {
	all  bool
	keys map[string]struct{}
}

type dirtySet struct {
	mu   sync.Mutex
	aors map[string]*dirtyAOR
}

// sharer keeps the registrar's table and Redis coherent.
type sharer struct {
	r       *Registrar
	c       redis.UniversalClient
	node    string
	prefix  string // of the AOR hashes
	channel string
	timeout time.Duration
	log     *slog.Logger
	warn    func(msg string, args ...any)
	// degraded reports the outage on /readyz ("" when over).
	degraded func(reason string)

	// syncMu keeps the writes (flush), the full reads (resync) and the
	// reads of one AOR (readAOR) apart: a read that overlapped a write of
	// the same AOR would take Redis's older state for newer than the
	// change being written, which is no longer marked dirty.
	syncMu sync.Mutex

	dirty    [dirtyShards]dirtySet
	inflight atomic.Int64 // AORs taken from dirty and being written
	kick     chan struct{}

	up                 atomic.Bool
	downAt             atomic.Int64  // unix ms when the outage going on began
	ops, errs, outages atomic.Uint64 // commands sent, failed batches, outages
	published, applied atomic.Uint64 // AORs published, remote AOR updates applied
	resyncs            atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ps     *redis.PubSub // closed by stop: a blocked Receive ignores the context
}

// upsertScript writes one binding and keeps the hash's TTL at its latest
// expiry, dropping the fields already expired. KEYS[1] the AOR's hash,
// ARGV: field, value ("<expires ms>|json"), expires ms, now ms.
var upsertScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local now = tonumber(ARGV[4])
local last = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local exp = tonumber(string.match(all[i+1], '^(%d+)|'))
  if exp == nil or exp <= now then
    redis.call('HDEL', KEYS[1], all[i])
  elseif exp > last then
    last = exp
  end
end
redis.call('PEXPIREAT', KEYS[1], last)
return 1
`)

// deleteScript removes bindings and the hash when none is left.
// KEYS[1] the AOR's hash, ARGV the fields.
var deleteScript = redis.NewScript(`
redis.call('HDEL', KEYS[1], unpack(ARGV))
return 1
`)

func newSharer(r *Registrar, rs RedisSettings, log *slog.Logger, warn func(string, ...any), degraded func(string)) (*sharer, error) {
	o, err := rs.Options()
	if err != nil {
		return nil, err
	}
	node := rs.NodeName()
	sh := &sharer{
		r: r, c: redis.NewUniversalClient(o), node: node,
		prefix: rs.Prefix + "loc:", channel: rs.Prefix + "loc",
		timeout: rs.Timeout, log: log, warn: warn, degraded: degraded,
		kick: make(chan struct{}, 1),
	}
	for i := range sh.dirty {
		sh.dirty[i].aors = map[string]*dirtyAOR{}
	}
	sh.up.Store(true)
	sh.ctx, sh.cancel = context.WithCancel(context.Background())
	return sh, nil
}

// hashKey is the AOR's hash. The AOR is in braces, a Cluster hash tag, so
// a key and anything added for the AOR later share a slot.
func (sh *sharer) hashKey(aor string) string { return sh.prefix + "{" + aor + "}" }

func (sh *sharer) aorOf(key string) (string, bool) {
	if !strings.HasPrefix(key, sh.prefix+"{") || !strings.HasSuffix(key, "}") {
		return "", false
	}
	return key[len(sh.prefix)+1 : len(key)-1], true
}

// load reads every AOR from Redis, before the transport starts: a node
// that rejoins the group answers calls with every binding. When Redis
// does not answer, the node starts degraded and catches up when it does.
func (sh *sharer) load() {
	if err := sh.resync(); err != nil {
		sh.down(err)
	}
}

// start starts the writer and the subscriber.
func (sh *sharer) start() {
	sh.ps = sh.c.Subscribe(sh.ctx, sh.channel)
	sh.wg.Add(2)
	go sh.writeLoop()
	go sh.subscribeLoop()
}

func (sh *sharer) stop() {
	// Write what is dirty while Redis answers, within a few seconds.
	deadline := time.Now().Add(3 * time.Second)
	for sh.pending() > 0 && sh.up.Load() && time.Now().Before(deadline) {
		if sh.flush() != nil {
			break
		}
	}
	sh.cancel()
	if sh.ps != nil {
		sh.ps.Close()
	}
	sh.wg.Wait()
	sh.c.Close()
}

// mark records the bindings a change touched, from the operations the
// registrar built for the store. Called with the AOR's shard locked; it
// never waits for Redis.
func (sh *sharer) mark(aor []byte, ops []store.BindingOp) {
	if len(ops) == 0 {
		return
	}
	d := &sh.dirty[shards.Sum(aor)%dirtyShards]
	d.mu.Lock()
	a := d.aors[string(aor)]
	if a == nil {
		a = &dirtyAOR{}
		d.aors[string(aor)] = a
	}
	for i := range ops {
		if ops[i].Kind == store.OpDeleteAOR {
			a.all = true
			continue
		}
		if a.keys == nil {
			a.keys = map[string]struct{}{}
		}
		a.keys[ops[i].Binding.Key()] = struct{}{}
	}
	d.mu.Unlock()
	select {
	case sh.kick <- struct{}{}:
	default:
	}
}

// isDirty reports whether the binding key of aor has a change not yet
// written (a remote update must not overwrite it).
func (sh *sharer) dirtyOf(aor string) (all bool, keys map[string]struct{}) {
	d := &sh.dirty[shards.SumString(aor)%dirtyShards]
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.aors[aor]
	if a == nil {
		return false, nil
	}
	keys = make(map[string]struct{}, len(a.keys))
	for k := range a.keys {
		keys[k] = struct{}{}
	}
	return a.all, keys
}

// pending is the number of AORs with changes not yet written.
func (sh *sharer) pending() int {
	n := 0
	for i := range sh.dirty {
		d := &sh.dirty[i]
		d.mu.Lock()
		n += len(d.aors)
		d.mu.Unlock()
	}
	return n + int(sh.inflight.Load())
}

// take removes and returns what is dirty in shard i.
func (sh *sharer) take(i int) map[string]*dirtyAOR {
	d := &sh.dirty[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.aors) == 0 {
		return nil
	}
	m := d.aors
	d.aors = map[string]*dirtyAOR{}
	return m
}

// putBack returns what could not be written, merged with what was marked
// since.
func (sh *sharer) putBack(i int, m map[string]*dirtyAOR) {
	d := &sh.dirty[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	for aor, a := range m {
		cur := d.aors[aor]
		if cur == nil {
			d.aors[aor] = a
			continue
		}
		cur.all = cur.all || a.all
		for k := range a.keys {
			if cur.keys == nil {
				cur.keys = map[string]struct{}{}
			}
			cur.keys[k] = struct{}{}
		}
	}
}

// writeLoop writes what is dirty as soon as it is marked while Redis is
// up; while it is down, it tries again every second.
func (sh *sharer) writeLoop() {
	defer sh.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastWarn time.Time
	for {
		select {
		case <-sh.ctx.Done():
			return
		case <-sh.kick:
		case <-t.C:
		}
		if !sh.up.Load() {
			if err := sh.ping(); err != nil {
				if since := time.UnixMilli(sh.downAt.Load()); lastWarn.Before(since) {
					lastWarn = since // the outage's first line was logged by down
				}
				if time.Since(lastWarn) >= 30*time.Second {
					lastWarn = time.Now()
					sh.warn("registrar: Redis still unreachable; registrations kept in memory until it is back", "pending_aors", sh.pending(), "err", err)
				}
				continue
			}
			// Back: catch up with what the others changed, then write
			// ours (the resync keeps what is dirty here).
			if err := sh.resync(); err != nil {
				sh.down(err)
				continue
			}
		}
		if err := sh.flush(); err != nil {
			sh.down(err)
			continue
		}
		sh.setUp()
	}
}

func (sh *sharer) ping() error {
	ctx, cancel := context.WithTimeout(sh.ctx, sh.timeout)
	defer cancel()
	sh.ops.Add(1)
	return sh.c.Ping(ctx).Err()
}

func (sh *sharer) down(err error) {
	sh.errs.Add(1)
	if sh.up.CompareAndSwap(true, false) {
		sh.downAt.Store(time.Now().UnixMilli())
		sh.outages.Add(1)
		sh.degraded("Redis unreachable: " + err.Error())
		sh.log.Warn("registrar: Redis unreachable: REGISTERs are answered and kept in memory, lookups use the cached bindings; changes are written when it is back", "err", err)
	}
}

func (sh *sharer) setUp() {
	if sh.up.CompareAndSwap(false, true) {
		sh.degraded("")
		sh.log.Info("registrar: Redis reachable again; bindings caught up and written")
	}
}

// flush writes every dirty AOR; on an error the rest goes back to the
// dirty set.
func (sh *sharer) flush() error {
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	for i := range sh.dirty {
		m := sh.take(i)
		if m == nil {
			continue
		}
		sh.inflight.Add(int64(len(m)))
		aors := make([]string, 0, len(m))
		for aor := range m {
			aors = append(aors, aor)
		}
		for len(aors) > 0 {
			n := min(len(aors), writeBatch)
			if err := sh.writeAORs(aors[:n], m); err != nil {
				sh.putBack(i, m)
				sh.inflight.Add(-int64(len(m)))
				return err
			}
			for _, aor := range aors[:n] {
				delete(m, aor)
			}
			sh.inflight.Add(-int64(n))
			aors = aors[n:]
		}
	}
	return nil
}

// writeBatch is the most AORs written in one pipeline (one round trip,
// one message on the channel): under load the changes queued while a
// batch was on the wire go together in the next.
const writeBatch = 128

// writeAORs writes the dirty bindings of aors as they are in memory now
// and tells the other nodes, in one pipeline.
func (sh *sharer) writeAORs(aors []string, m map[string]*dirtyAOR) error {
	now := sh.r.tbl.Now()
	vals := make([]map[string]wireValue, len(aors))
	for i, aor := range aors {
		vals[i] = sh.r.snapshot(aor, now, sh.node)
	}
	ctx, cancel := context.WithTimeout(sh.ctx, 2*sh.timeout)
	defer cancel()
	exec := func() error {
		pipe := sh.c.Pipeline()
		for i, aor := range aors {
			queueAOR(ctx, pipe, sh.hashKey(aor), m[aor], vals[i], now)
		}
		pipe.Publish(ctx, sh.channel, sh.node+"|"+strings.Join(aors, "\n"))
		sh.ops.Add(uint64(pipe.Len()))
		_, err := pipe.Exec(ctx)
		return err
	}
	err := exec()
	if isNoScript(err) {
		// The scripts are not loaded (the first write, or a Redis
		// restarted empty): load them and go again.
		sh.ops.Add(2)
		if err = upsertScript.Load(ctx, sh.c).Err(); err == nil {
			if err = deleteScript.Load(ctx, sh.c).Err(); err == nil {
				err = exec()
			}
		}
	}
	if err != nil {
		return err
	}
	sh.published.Add(uint64(len(aors)))
	return nil
}

// queueAOR adds the commands that write one AOR's dirty bindings (vals:
// its live bindings by key) to pipe.
func queueAOR(ctx context.Context, pipe redis.Pipeliner, key string, a *dirtyAOR, vals map[string]wireValue, now int64) {
	if a.all {
		pipe.Del(ctx, key)
	} else {
		var gone []any
		for k := range a.keys {
			if _, ok := vals[k]; !ok {
				gone = append(gone, k)
			}
		}
		if len(gone) > 0 {
			deleteScript.EvalSha(ctx, pipe, []string{key}, gone...)
		}
	}
	for k, v := range vals {
		if _, ok := a.keys[k]; !ok && !a.all {
			continue
		}
		upsertScript.EvalSha(ctx, pipe, []string{key}, k, v.value, v.expires, now)
	}
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// subscribeLoop applies the AORs other nodes publish. Every (re)subscription
// after the first starts with a resync: messages sent while the connection
// was down are lost.
func (sh *sharer) subscribeLoop() {
	defer sh.wg.Done()
	ps := sh.ps
	first := true
	for {
		msg, err := ps.Receive(sh.ctx)
		if err != nil {
			if sh.ctx.Err() != nil {
				return
			}
			sh.down(err)
			select {
			case <-sh.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			if !first {
				if err := sh.resync(); err != nil {
					sh.down(err)
				} else {
					sh.setUp()
					select { // write what waited for Redis
					case sh.kick <- struct{}{}:
					default:
					}
				}
			}
			first = false
		case *redis.Message:
			node, list, ok := strings.Cut(m.Payload, "|")
			if !ok || node == sh.node {
				continue
			}
			if err := sh.readAORs(strings.Split(list, "\n")); err != nil {
				sh.down(err)
			}
		}
	}
}

// readAORs re-reads AORs another node wrote from Redis into the table, in
// one pipeline.
func (sh *sharer) readAORs(aors []string) error {
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	ctx, cancel := context.WithTimeout(sh.ctx, 2*sh.timeout)
	defer cancel()
	pipe := sh.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(aors))
	for i, aor := range aors {
		if len(aor) <= maxAOR {
			cmds[i] = pipe.HGetAll(ctx, sh.hashKey(aor))
		}
	}
	sh.ops.Add(uint64(pipe.Len()))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	for i, aor := range aors {
		if cmds[i] != nil {
			sh.applyRemote(aor, cmds[i].Val())
		}
	}
	return nil
}

// resync reads every AOR from Redis: bindings the table has and Redis has
// not (removed elsewhere while this node was not listening) go, unless
// they are dirty here.
func (sh *sharer) resync() error {
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	ctx, cancel := context.WithTimeout(sh.ctx, 60*time.Second)
	defer cancel()
	// The AORs cached before the scan: only those can have gone from
	// Redis. One that arrives during the scan came from a newer write.
	before := map[string]bool{}
	sh.r.tbl.Range(func(_ *shards.Shard[record], e *shards.Entry[record]) bool {
		before[string(e.Key())] = true
		return true
	})
	seen := map[string]bool{}
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, sh.prefix+"{*}", 1000).Iterator()
		var batch []string
		read := func() error {
			if len(batch) == 0 {
				return nil
			}
			pipe := c.Pipeline()
			cmds := make([]*redis.MapStringStringCmd, len(batch))
			for i, k := range batch {
				cmds[i] = pipe.HGetAll(ctx, k)
			}
			sh.ops.Add(uint64(len(batch)))
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
			for i, k := range batch {
				aor, ok := sh.aorOf(k)
				if !ok || len(aor) > maxAOR {
					continue
				}
				sh.applyRemote(aor, cmds[i].Val())
				seen[aor] = true
			}
			batch = batch[:0]
			return nil
		}
		for it.Next(ctx) {
			batch = append(batch, it.Val())
			if len(batch) == 200 {
				if err := read(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		return read()
	}
	var err error
	var mu sync.Mutex
	switch c := sh.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, n)
		})
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("registrar: unsupported Redis client %T", sh.c)
	}
	if err != nil {
		return err
	}
	// AORs Redis no longer has.
	for aor := range before {
		if !seen[aor] {
			sh.applyRemote(aor, nil)
		}
	}
	sh.resyncs.Add(1)
	return nil
}

// wireBinding is a binding as stored in Redis: the store's record and
// the node that holds the phone's flow.
type wireBinding struct {
	store.Binding
	ExpiresMs int64  `json:"ExpiresMs"`
	ModMs     int64  `json:"ModMs"`
	Node      string `json:"Node,omitempty"`
	// Flow is the TCP, TLS or WebSocket connection the binding registered
	// over, as its holder names it (txn.Core.FlowName: the holder's branch
	// prefix and the connection's number there); Outbound says it was
	// registered with RFC 5626 outbound. Another node hands the requests
	// for the phone to the holder (package anycast).
	Flow     string `json:"Flow,omitempty"`
	Outbound bool   `json:"Outbound,omitempty"`
}

// wireValue is one encoded binding, with its expiry for the script.
type wireValue struct {
	value   string
	expires int64
}

// encodeBinding renders b as a hash field value.
func encodeBinding(wb *wireBinding) string {
	js, _ := json.Marshal(wb)
	return strconv.FormatInt(wb.ExpiresMs, 10) + "|" + string(js)
}

// decodeBinding parses a hash field value.
func decodeBinding(v string) (wireBinding, bool) {
	var wb wireBinding
	_, js, ok := strings.Cut(v, "|")
	if !ok || json.Unmarshal([]byte(js), &wb) != nil {
		return wb, false
	}
	return wb, true
}

// applyRemote replaces the cached bindings of aor with those read from
// Redis (fields; nil: none), keeping the ones changed here and not yet
// written.
func (sh *sharer) applyRemote(aor string, fields map[string]string) {
	all, keys := sh.dirtyOf(aor)
	if all {
		return // the whole AOR is being rewritten from here
	}
	r := sh.r
	now := r.tbl.Now()
	var in []binding
	for k, v := range fields {
		if _, mine := keys[k]; mine {
			continue
		}
		wb, ok := decodeBinding(v)
		if !ok || wb.ExpiresMs <= now {
			continue
		}
		b := fromStore(&wb.Binding)
		b.expires, b.modified = wb.ExpiresMs, wb.ModMs
		b.node = wb.Node
		b.remote = wb.Node != sh.node
		b.flowName, b.outbound = wb.Flow, wb.Outbound && wb.Flow != ""
		in = append(in, b)
	}
	key := []byte(aor)
	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, key)
	if e == nil {
		if len(in) == 0 {
			return
		}
		var err error
		if e, err = s.Insert(h, key); err != nil {
			return // the memory cap: it stays in Redis, not cached here
		}
	}
	v := &e.Value
	// Keep the dirty ones (not yet written: Redis has an older state). A
	// new slice: the old one's spare bindings share buffers with the kept
	// ones, and Save reuses spare buffers.
	nb := make([]binding, 0, len(v.b)+len(in))
	for i := range v.b {
		if _, mine := keys[v.b[i].key()]; mine {
			nb = append(nb, v.b[i])
		}
	}
	v.b = append(nb, in...)
	// Under the shard lock: SetFlowNames stores the namer before it walks
	// the shards, so a binding added here is resolved by one or the other.
	if names := r.flowNames.Load(); names != nil {
		for i := len(nb); i < len(v.b); i++ {
			names.resolve(&v.b[i])
		}
	}
	s.Account(e, v.bytes())
	r.schedule(s, e)
	sh.applied.Add(1)
}

// snapshot returns the live bindings of aor, encoded for Redis, by key.
// Bindings made here carry this node's name.
func (r *Registrar) snapshot(aor string, now int64, node string) map[string]wireValue {
	key := []byte(aor)
	h := shards.Sum(key)
	s := r.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := s.Get(h, key)
	if e == nil {
		return nil
	}
	out := make(map[string]wireValue, len(e.Value.b))
	for i := range e.Value.b {
		b := &e.Value.b[i]
		if b.expires <= now {
			continue
		}
		wb := wireBinding{Binding: storeBinding(key, b), ExpiresMs: b.expires, ModMs: b.modified, Node: b.node}
		if wb.Node == "" {
			wb.Node = node
		}
		wb.Flow = b.flowName
		if names := r.flowNames.Load(); wb.Flow == "" && b.flow != 0 && names != nil {
			wb.Flow, _ = names.name(b.flow)
		}
		wb.Outbound = b.outbound && wb.Flow != ""
		out[wb.Binding.Key()] = wireValue{value: encodeBinding(&wb), expires: b.expires}
	}
	return out
}

// key is the binding's identity within its AOR (store.Binding.Key).
func (b *binding) key() string {
	if len(b.instance) > 0 {
		return "i " + string(b.instance) + " " + strconv.FormatUint(uint64(b.regID), 10)
	}
	return "c " + string(b.contact)
}

// ShareStats are the counters of the Redis sharing.
type ShareStats struct {
	Up                 bool
	Node               string
	Pending            int    // AORs with changes not yet written
	Ops                uint64 // Redis commands sent
	Errors             uint64 // failed writes, reads and pings
	Outages            uint64
	Published, Applied uint64 // AOR updates written here, and read from others
	Resyncs            uint64
}

// ShareStats returns the sharing's counters (the zero value without
// sharing).
func (r *Registrar) ShareStats() ShareStats {
	sh := r.share
	if sh == nil {
		return ShareStats{}
	}
	return ShareStats{Up: sh.up.Load(), Node: sh.node, Pending: sh.pending(), Ops: sh.ops.Load(), Errors: sh.errs.Load(),
		Outages: sh.outages.Load(), Published: sh.published.Load(), Applied: sh.applied.Load(), Resyncs: sh.resyncs.Load()}
}
