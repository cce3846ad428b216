package dialog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"

	"switchboard/modules/internal/fieldtext"
	"switchboard/modules/internal/rediscfg"
	"switchboard/parser"
	"switchboard/routing"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/txn"
)

// Shared dialogs on Redis (dialog.sharing: redis). A node keeps its
// dialogs in its own table, as without sharing; Redis is where the nodes
// behind one address meet, for three things:
//
//   - an in-dialog request of a call set up through node A that lands on
//     node B (the callee's flow hashes to B) is relayed by B on its
//     verified Route at once; B reads the dialog from Redis off the
//     receive path, keeps a copy (fRemote) and applies the request to it
//     (its CSeq; a BYE ends the call);
//   - a dialog ends through Redis: the node that ends it (a BYE, its
//     timeout, dialog.end, a failed ping) claims it with one atomic
//     script, and only the node whose claim wins sends the proxy's BYEs
//     and tells the subscribers (the acc module's record). Two nodes never
//     both write a call's record or both send its BYEs;
//   - every dialog's deadline is in a sorted set; every node looks once a
//     second for deadlines more than takeover_delay past (their node
//     should have ended them: it died) and claims them the same way: one
//     survivor sends the BYEs and writes the record.
//
// Keys (P: the redis prefix): a hash per dialog, P+"dlg:{<id>-<hash of
// the Call-ID>}", with the dialog as JSON (d, the store's row: what the
// BYEs and the record need), the node that set it up (owner), its
// deadline in unix ms, the highest CSeq of each side (cc, ce: the nodes
// that see requests of the call write the highest; a copy writes only
// these), and once it ended, ended (the node that ended it) and claim
// (its claim's token); the row is dropped but after a takeover. The
// hash expires takeover_delay + 1 min after its deadline; an ended one is
// kept at most an hour, so that a node that held a copy and missed the
// end (disconnected) learns it when it next writes. The deadlines are
// the sorted set P+"dlg:deadlines" (member "<id>-<hash>"); ends are
// published on P+"dlg" ("<node>|<member>"), and the other nodes drop
// their copies.
//
// Nothing on the receive path waits for Redis or allocates (but the
// read of another node's dialog, which copies the request's Call-ID and
// tags). A change marks the dialog on its shard's list under the lock
// the path holds already; one goroutine writes the changes, runs the
// claims and the reads, in pipelines. While Redis cannot be reached the
// calls go on: changes wait on the lists, reads are dropped (counted),
// and an end of this node's own dialog waits up to localEndAfter, then
// is settled here alone (counted, logged): its BYEs and record are not
// held back for long. An end of another node's dialog waits for Redis.

// Settings of the sharing that are not configuration.
const (
	// shareBatch is the most dialogs in one pipeline.
	shareBatch = 128
	// maxFetches bounds the reads of other nodes' dialogs waiting.
	maxFetches = 4096
	// localEndAfter is how long an end of this node's own dialog waits
	// for Redis before it is settled here alone.
	localEndAfter = 10 * time.Second
	// endedKeep bounds how long an ended dialog's hash is kept.
	endedKeep = time.Hour
	// expireAfter is how long past takeover_delay after its deadline a
	// dialog's hash is kept: every node has had its chance to end it.
	expireAfter = time.Minute
	// scanEvery is how often a node looks for dialogs past their
	// deadline whose node did not end them.
	scanEvery = time.Second
)

// Claim modes of claimScript.
const (
	claimOwn  = "own"  // this node's dialog: a hash gone from Redis is still ours to end
	claimEnd  = "end"  // another node's dialog ended here (a BYE, dialog.end)
	claimTake = "take" // another node's dialog past its deadline: only when takeover_delay has passed too
)

// saveScript writes a dialog unless it ended: KEYS[1] its hash; ARGV the
// row, the node, the deadline (ms), the caller's and the callee's CSeq,
// the expiry (unix ms), and "own" or "copy". Only the dialog's own node
// writes the row, the deadline and the expiry: a copy (fRemote) was read
// at some point and may be behind (a deadline the owner moved since with
// SetTimeout, which a copy writing back would bring forward for every
// node's takeover; its row lacks the profiles), so it writes only the
// CSeqs, and only into a hash that is there. The CSeqs only grow: two
// nodes that saw requests of one call both write, and the highest stays.
// 0: the dialog ended (another node ended it; nothing written).
var saveScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 0 end
if ARGV[7] == 'copy' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
else
  redis.call('HSETNX', KEYS[1], 'owner', ARGV[2])
  redis.call('HSET', KEYS[1], 'd', ARGV[1], 'deadline', ARGV[3])
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
end
local cc = tonumber(redis.call('HGET', KEYS[1], 'cc') or '0')
local ce = tonumber(redis.call('HGET', KEYS[1], 'ce') or '0')
if tonumber(ARGV[4]) > cc then redis.call('HSET', KEYS[1], 'cc', ARGV[4]) end
if tonumber(ARGV[5]) > ce then redis.call('HSET', KEYS[1], 'ce', ARGV[5]) end
return 1
`)

// targetScript records a target refresh (a re-INVITE's or UPDATE's
// Contact, its 2xx's) that a node saw: KEYS[1] the dialog's hash; ARGV
// the field (tc: the caller's target, te: the callee's), the time of the
// refresh (unix ms) and the target. The latest refresh any node saw is
// kept ("ms target"): the node that ends the call (claimScript returns
// them) sends its BYEs there, though the refresh went through another
// node. Nothing for a dialog that ended or is not there.
var targetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'ended') == 1 then return 0 end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local t = tonumber(string.match(cur, '^(%d+) '))
  if t and t > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
`)

// claimScript ends a dialog for one node: KEYS[1] its hash; ARGV the
// node, the mode (claimOwn, claimEnd, claimTake), now (ms),
// takeover_delay (ms), how long to keep the ended hash (ms), and the
// claim's token (one per end of a dialog on a node: claimToken). It
// returns {"won", row, cc, ce, tc, te}: this node ends the call (tc, te:
// the latest target refreshes, targetScript); {"lost", node}:
// another node did, or this node did in another claim; {"gone"}: no such
// dialog (expired, or never written); for claimTake, {"early",
// deadline}: not past its deadline and the delay.
//
// A claim runs again with the same token when its answer was lost:
// go-redis sends a pipeline again after a read timeout or a broken
// connection, and a node sends again the claims of a pipeline that
// failed, which Redis may have run. Such a run answers what the first
// one did ("won"): without the token, the winner would read its own
// end as lost and drop the call (no BYEs, no record). A claim of the
// same node with another token is another end (a scan after a takeover
// whose index entry stayed, a node restored from its store after it
// ended the call): lost, not ended twice. The row a takeover needs stays
// in an ended hash (a takeover is rare; the others need only the CSeqs).
var claimScript = redis.NewScript(`
local ended = redis.call('HGET', KEYS[1], 'ended')
if ended then
  if ended == ARGV[1] and redis.call('HGET', KEYS[1], 'claim') == ARGV[6] then
    return {'won', redis.call('HGET', KEYS[1], 'd') or '', redis.call('HGET', KEYS[1], 'cc') or '0', redis.call('HGET', KEYS[1], 'ce') or '0',
      redis.call('HGET', KEYS[1], 'tc') or '', redis.call('HGET', KEYS[1], 'te') or ''}
  end
  return {'lost', ended}
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[2] ~= 'own' then return {'gone'} end
  redis.call('HSET', KEYS[1], 'ended', ARGV[1], 'claim', ARGV[6])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return {'won', '', '0', '0', '', ''}
end
if ARGV[2] == 'take' then
  local dl = redis.call('HGET', KEYS[1], 'deadline') or '0'
  if tonumber(dl) + tonumber(ARGV[4]) > tonumber(ARGV[3]) then return {'early', dl} end
end
local row = redis.call('HGET', KEYS[1], 'd') or ''
local cc = redis.call('HGET', KEYS[1], 'cc') or '0'
local ce = redis.call('HGET', KEYS[1], 'ce') or '0'
local tc = redis.call('HGET', KEYS[1], 'tc') or ''
local te = redis.call('HGET', KEYS[1], 'te') or ''
if ARGV[2] ~= 'take' then redis.call('HDEL', KEYS[1], 'd') end
redis.call('HSET', KEYS[1], 'ended', ARGV[1], 'claim', ARGV[6])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or ttl > tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return {'won', row, cc, ce, tc, te}
`)

// endJob is an end waiting for Redis's word.
type endJob struct {
	h, id uint64
	at    int64 // when it ended here (ms)
	why   Reason
	by    Side
	byes  bool
	mode  string
	seq   uint64 // its claim's token (claimToken): the same when the claim is sent again
}

// fetchJob is an in-dialog request of a dialog not held here: what of it
// applies to the dialog once it is read.
type fetchJob struct {
	h, id          uint64
	callID         string
	fromTag, toTag string
	cseq           uint32
	method         parser.Method
	from           Side
	src            netip.AddrPort // where the request came from (byeFromElsewhere)
	at             int64
	watch          bool
	// ruri and next are a BYE's Request-URI and next hop: it ends the
	// dialog only when they go to the other party (goesTo).
	ruri, next string
	// A request suspended until its dialog is here (FetchDialogID): the
	// read only keeps the copy, and then runs on the resumed request,
	// which matches the copy and applies itself.
	resume *txn.Request
	env    *routing.Env
	then   func(c *routing.Ctx)
}

// targetJob is a target refresh seen here, for targetScript.
type targetJob struct {
	h, id uint64
	side  int // toCaller, toCallee
	uri   string
	at    int64 // ms
}

// sharer keeps the module's table and Redis together.
type sharer struct {
	d        *Dialog
	c        redis.UniversalClient
	node     string
	prefix   string // of the dialogs' hashes
	index    string // the deadlines
	channel  string
	timeout  time.Duration
	grace    int64 // takeover_delay, ms
	log      *slog.Logger
	degraded func(reason string)
	// localWait is localEndAfter (tests shorten it).
	localWait time.Duration
	// epoch and seq make the claims' tokens: epoch is random per run of
	// the node, so that a node restarted does not repeat an earlier run's.
	epoch string
	seq   atomic.Uint64
	// taking are the scan's claims sent whose answer did not come (the
	// pipeline failed; Redis may have run them), by member: sent again,
	// with the same token, at the next scan, whether the member is still
	// in the deadlines or not (another node that lost to one of them
	// removes it). Only the run goroutine uses it.
	taking map[string]uint64

	pend    []pendList // per shard, under the shard's lock: dialogs to write
	maxPend int

	mu   sync.Mutex // ends, fetches, late (taken after a shard's lock, never before one)
	ends []endJob
	// late are the ends settled here without Redis: marked ended there
	// once it is back, so that no other node takes them over.
	late    []endJob
	fetches []fetchJob
	targets []targetJob // target refreshes to write (targetScript)
	kick    chan struct{}

	up      atomic.Bool
	downAt  atomic.Int64
	pending atomic.Int64 // ends waiting (for the gauge)

	ops, errs, outages                   *metrics.Counter
	writes, ended                        *metrics.Counter
	fetchFound, fetchEnded, fetchMissing *metrics.Counter
	fetchDropped, won, lost, takeovers   *metrics.Counter
	localEnds, forgotten, writeDrops     *metrics.Counter
	conflicts                            *metrics.Counter

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ps     *redis.PubSub
	// resubscribed is set by the subscriber when it subscribed again
	// after a break: the loop writes every shared dialog again, and the
	// writes tell which ones ended elsewhere meanwhile.
	resubscribed atomic.Bool
}

func newSharer(d *Dialog, rs rediscfg.Settings, takeover time.Duration, degraded func(string)) (*sharer, error) {
	o, err := rs.Options()
	if err != nil {
		return nil, err
	}
	sh := &sharer{
		d: d, c: redis.NewUniversalClient(o), node: rs.NodeName(),
		prefix: rs.Prefix + "dlg:", index: rs.Prefix + "dlg:deadlines", channel: rs.Prefix + "dlg",
		timeout: rs.Timeout, grace: takeover.Milliseconds(), log: d.log, degraded: degraded,
		pend: make([]pendList, d.tbl.NumShards()), maxPend: d.perShard + 16,
		kick: make(chan struct{}, 1), localWait: localEndAfter,
		epoch: randomEpoch(), taking: map[string]uint64{},
	}
	// Room for the ends of a busy second, so that the receive path's
	// appends do not grow the slice.
	sh.ends = make([]endJob, 0, 1024)
	sh.up.Store(true)
	sh.ctx, sh.cancel = context.WithCancel(context.Background())
	return sh, nil
}

func (sh *sharer) registerMetrics(set *metrics.Set) {
	set.NewGauge("switchboard_dialog_redis_up", func() float64 {
		if sh.up.Load() {
			return 1
		}
		return 0
	})
	set.NewGauge("switchboard_dialog_redis_pending_ends", func() float64 { return float64(sh.pending.Load()) })
	sh.ops = set.NewCounter("switchboard_dialog_redis_ops_total")
	sh.errs = set.NewCounter("switchboard_dialog_redis_errors_total")
	sh.outages = set.NewCounter("switchboard_dialog_redis_outages_total")
	sh.writes = set.NewCounter("switchboard_dialog_redis_writes_total")
	sh.writeDrops = set.NewCounter("switchboard_dialog_redis_write_drops_total")
	sh.ended = set.NewCounter("switchboard_dialog_redis_ended_elsewhere_total")
	sh.fetchFound = set.NewCounter(`switchboard_dialog_redis_reads_total{result="found"}`)
	sh.fetchEnded = set.NewCounter(`switchboard_dialog_redis_reads_total{result="ended"}`)
	sh.fetchMissing = set.NewCounter(`switchboard_dialog_redis_reads_total{result="missing"}`)
	sh.fetchDropped = set.NewCounter(`switchboard_dialog_redis_reads_total{result="dropped"}`)
	sh.won = set.NewCounter(`switchboard_dialog_redis_claims_total{result="won"}`)
	sh.lost = set.NewCounter(`switchboard_dialog_redis_claims_total{result="lost"}`)
	sh.takeovers = set.NewCounter("switchboard_dialog_redis_takeovers_total")
	sh.localEnds = set.NewCounter("switchboard_dialog_redis_local_ends_total")
	sh.forgotten = set.NewCounter("switchboard_dialog_redis_forgotten_total")
	sh.conflicts = set.NewCounter("switchboard_dialog_redis_late_conflicts_total")
}

// member names a dialog in the deadlines and the messages: its id and
// the hash of its Call-ID (two nodes' ids may meet; a call's Call-ID and
// id together do not).
func member(id, h uint64) string {
	var b [2*idLen + 1]byte
	out := appendID(b[:0], id)
	out = append(out, '-')
	out = appendID(out, h)
	return string(out)
}

func parseMember(m string) (id, h uint64, ok bool) {
	a, b, found := strings.Cut(m, "-")
	if !found {
		return 0, 0, false
	}
	id, ok1 := parseID([]byte(a))
	h, ok2 := parseHex([]byte(b))
	return id, h, ok1 && ok2
}

// parseHex is parseID for a hash, which may be 0.
func parseHex(b []byte) (uint64, bool) {
	if len(b) != idLen {
		return 0, false
	}
	if v, ok := parseID(b); ok {
		return v, true
	}
	return 0, string(b) == "0000000000000000"
}

func (sh *sharer) key(m string) string { return sh.prefix + "{" + m + "}" }

// claimToken names one claim of this node (claimScript's last argument).
func (sh *sharer) claimToken(seq uint64) string {
	return sh.epoch + "." + strconv.FormatUint(seq, 36)
}

func randomEpoch() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// Not expected; the clock still differs between two runs.
		return strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// deadline is when the dialog ends at its timeout (ms); a copy of another
// node's dialog has its timer takeover_delay later.
func (d *Dialog) deadline(g *dlg) int64 {
	when := g.timer.When()
	if g.pflags&fRemote != 0 && d.share != nil {
		when -= d.share.grace
	}
	return when
}

func (sh *sharer) wake() {
	select {
	case sh.kick <- struct{}{}:
	default:
	}
}

// changed lists a confirmed dialog for the writer. The shard is locked.
func (sh *sharer) changed(s *shards.Shard[dlg], e *shards.Entry[dlg]) {
	g := &e.Value
	if g.pflags&(fShareDirty|fEnding) != 0 {
		return
	}
	l := &sh.pend[s.Index()]
	if len(l.ops) >= sh.maxPend {
		sh.writeDrops.Inc()
		return
	}
	l.ops = append(l.ops, pendOp{h: e.Hash(), id: g.id})
	g.pflags |= fShareDirty
	sh.wake()
}

// end queues the end of a shared dialog for a claim: the dialog stays in
// the table, out of reach of requests, until Redis answers. The shard is
// locked.
func (sh *sharer) end(s *shards.Shard[dlg], e *shards.Entry[dlg], why Reason, by Side, byes bool) {
	sh.endAt(s, e, why, by, byes, s.Now())
}

// endAt is end for an end that happened at the time at (ms).
func (sh *sharer) endAt(s *shards.Shard[dlg], e *shards.Entry[dlg], why Reason, by Side, byes bool, at int64) {
	g := &e.Value
	g.pflags |= fEnding
	s.StopTimer(&g.timer)
	mode := claimOwn
	if g.pflags&fRemote != 0 {
		mode = claimEnd
		if why == ReasonTimeout {
			mode = claimTake
		}
	}
	sh.mu.Lock()
	sh.ends = append(sh.ends, endJob{h: e.Hash(), id: g.id, at: at, why: why, by: by, byes: byes, mode: mode, seq: sh.seq.Add(1)})
	sh.mu.Unlock()
	sh.pending.Add(1)
	sh.wake()
}

// fetch queues the read of dialog id, which an in-dialog request names
// and this node does not hold, with what the request does to it. ACK
// and CANCEL change nothing in a dialog: not read for them. A re-INVITE
// or UPDATE is watched, so that its 2xx refreshes the targets if the
// dialog is here by then.
func (sh *sharer) fetch(c *routing.Ctx, h, id uint64, from Side, ruri, next []byte) {
	m := c.Msg()
	meth := m.Method()
	if meth == parser.MethodAck || meth == parser.MethodCancel {
		return
	}
	j := fetchJob{h: h, id: id, callID: string(m.CallID()), fromTag: string(m.FromTag()), toTag: string(m.ToTag()),
		cseq: m.CSeq().Num, method: meth, from: from, src: c.R.Src, at: sh.d.clock.Now()}
	if meth == parser.MethodBye {
		j.ruri, j.next = string(ruri), string(next)
	}
	if meth == parser.MethodInvite || meth == parser.MethodUpdate {
		c.SetValue(SlotDialog, int64(id))
		c.R.Watch(sh.d)
	}
	sh.mu.Lock()
	if len(sh.fetches) >= maxFetches || !sh.up.Load() {
		sh.mu.Unlock()
		sh.fetchDropped.Inc()
		return
	}
	sh.fetches = append(sh.fetches, j)
	sh.mu.Unlock()
	sh.wake()
}

// fetchResume queues the read of dialog id for a request that needs the
// dialog before it can be relayed (FetchDialogID) and suspends the
// request; false when it cannot be read now.
func (sh *sharer) fetchResume(c *routing.Ctx, id uint64, from Side, then func(c *routing.Ctx)) bool {
	m := c.Msg()
	if meth := m.Method(); meth == parser.MethodAck || meth == parser.MethodCancel {
		return false
	}
	callID := m.CallID()
	j := fetchJob{h: shards.Sum(callID), id: id, callID: string(callID), from: from, at: sh.d.clock.Now(), env: c.Env, then: then}
	sh.mu.Lock()
	if len(sh.fetches) >= maxFetches || !sh.up.Load() {
		sh.mu.Unlock()
		sh.fetchDropped.Inc()
		return false
	}
	if j.resume = c.Suspend(); j.resume == nil {
		sh.mu.Unlock()
		return false
	}
	sh.fetches = append(sh.fetches, j)
	sh.mu.Unlock()
	sh.wake()
	return true
}

// refreshed queues the write of a target refresh of a shared dialog
// (side's new Contact URI), so that whichever node ends the call sends
// its BYE there. The shard is locked.
func (sh *sharer) refreshed(h, id uint64, side int, uri []byte) {
	sh.mu.Lock()
	if len(sh.targets) >= maxFetches {
		sh.mu.Unlock()
		sh.writeDrops.Inc()
		return
	}
	sh.targets = append(sh.targets, targetJob{h: h, id: id, side: side, uri: string(uri), at: sh.d.clock.Now()})
	sh.mu.Unlock()
	sh.wake()
}

// writeTargets writes the target refreshes queued; on an error they are
// queued again (within maxFetches) for when Redis is back.
func (sh *sharer) writeTargets(ctx context.Context) error {
	sh.mu.Lock()
	jobs := sh.targets
	sh.targets = nil
	sh.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	_, err := sh.exec(ctx, func(p redis.Pipeliner) {
		for _, j := range jobs {
			field := "tc"
			if j.side == toCallee {
				field = "te"
			}
			targetScript.EvalSha(ctx, p, []string{sh.key(member(j.id, j.h))}, field, j.at, j.uri)
		}
	})
	if err != nil {
		sh.mu.Lock()
		sh.targets = append(jobs, sh.targets...)
		if len(sh.targets) > maxFetches {
			sh.writeDrops.Add(len(sh.targets) - maxFetches)
			sh.targets = sh.targets[len(sh.targets)-maxFetches:]
		}
		sh.mu.Unlock()
	}
	return err
}

// resumeAll runs the continuations of the suspended requests among jobs,
// whatever their reads found: a request whose dialog is still not here
// is answered by its route as for no dialog, instead of waiting for its
// transaction to time out.
func resumeAll(jobs []fetchJob) {
	for i := range jobs {
		if j := &jobs[i]; j.resume != nil {
			routing.Resume(j.env, j.resume, j.then) // an ended transaction: nothing to do
		}
	}
}

// resumeWaiting resumes the requests suspended for a read while Redis is
// unreachable: their routes answer as for no dialog instead of leaving
// them until Redis is back or their transactions time out. The reads of
// requests relayed already stay queued.
func (sh *sharer) resumeWaiting() {
	sh.mu.Lock()
	var waiting []fetchJob
	kept := sh.fetches[:0]
	for _, j := range sh.fetches {
		if j.resume != nil {
			waiting = append(waiting, j)
		} else {
			kept = append(kept, j)
		}
	}
	sh.fetches = kept
	sh.mu.Unlock()
	if len(waiting) > 0 {
		sh.fetchDropped.Add(len(waiting))
		resumeAll(waiting)
	}
}

func (sh *sharer) start() {
	sh.ps = sh.c.Subscribe(sh.ctx, sh.channel)
	sh.wg.Add(2)
	go sh.run()
	go sh.subscribeLoop()
}

// stop writes what changed and settles the ends waiting, while Redis
// answers (a few seconds at most); the ends of this node's own dialogs
// that Redis did not settle are settled here.
func (sh *sharer) stop() {
	sh.cancel()
	if sh.ps != nil {
		sh.ps.Close()
	}
	sh.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if sh.up.Load() {
		if err := sh.writeAll(ctx); err == nil {
			sh.settle(ctx)
		}
	}
	sh.settleLocally(0)
	sh.c.Close()
}

// run is the sharing's goroutine: the reads, writes and claims as soon
// as they are queued, the look for dialogs of dead nodes every
// scanEvery, and while Redis is down, a ping a second.
func (sh *sharer) run() {
	defer sh.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	var lastScan time.Time
	var lastWarn time.Time
	for {
		select {
		case <-sh.ctx.Done():
			return
		case <-sh.kick:
		case <-t.C:
		}
		if !sh.up.Load() {
			sh.resumeWaiting()
			sh.settleLocally(sh.localWait)
			if err := sh.ping(); err != nil {
				if time.Since(lastWarn) >= 30*time.Second && time.Since(time.UnixMilli(sh.downAt.Load())) >= 30*time.Second {
					lastWarn = time.Now()
					sh.log.Warn("dialog: Redis still unreachable; dialogs kept here, ends of this node's calls settled here after 10 s",
						"pending_ends", sh.pending.Load(), "err", err)
				}
				continue
			}
			sh.setUp()
			sh.resubscribed.Store(true) // what ended elsewhere meanwhile
		}
		if sh.resubscribed.Swap(false) {
			sh.markAll()
		}
		ctx, cancel := context.WithTimeout(sh.ctx, 4*sh.timeout)
		err := sh.readAll(ctx)
		if err == nil {
			err = sh.writeTargets(ctx)
		}
		if err == nil {
			err = sh.writeAll(ctx)
		}
		if err == nil {
			err = sh.settle(ctx)
		}
		if err == nil {
			err = sh.settleLate(ctx)
		}
		if err == nil && time.Since(lastScan) >= scanEvery {
			lastScan = time.Now()
			err = sh.scan(ctx)
		}
		cancel()
		if err != nil && sh.ctx.Err() == nil {
			sh.down(err)
		}
	}
}

func (sh *sharer) ping() error {
	ctx, cancel := context.WithTimeout(sh.ctx, sh.timeout)
	defer cancel()
	sh.ops.Inc()
	return sh.c.Ping(ctx).Err()
}

func (sh *sharer) down(err error) {
	sh.errs.Inc()
	if sh.up.CompareAndSwap(true, false) {
		sh.downAt.Store(time.Now().UnixMilli())
		sh.outages.Inc()
		sh.degraded("Redis unreachable: " + err.Error())
		sh.log.Warn("dialog: Redis unreachable: calls go on here; dialog changes are written when it is back, requests of other nodes' calls are relayed without their dialog, ends of this node's calls are settled here after 10 s", "err", err)
	}
}

func (sh *sharer) setUp() {
	if sh.up.CompareAndSwap(false, true) {
		sh.degraded("")
		sh.log.Info("dialog: Redis reachable again")
	}
}

// markAll lists every shared dialog for writing again.
func (sh *sharer) markAll() {
	d := sh.d
	d.tbl.Range(func(s *shards.Shard[dlg], e *shards.Entry[dlg]) bool {
		if e.Value.state == stConfirmed && e.Value.pflags&fShared != 0 {
			sh.changed(s, e)
		}
		return true
	})
}

// exec runs a pipeline, loading the scripts first when Redis does not
// have them (the first use, or a Redis restarted empty).
func (sh *sharer) exec(ctx context.Context, build func(p redis.Pipeliner)) ([]redis.Cmder, error) {
	run := func() ([]redis.Cmder, error) {
		p := sh.c.Pipeline()
		build(p)
		sh.ops.Add(p.Len())
		return p.Exec(ctx)
	}
	cmds, err := run()
	if isNoScript(cmds, err) {
		sh.ops.Add(3)
		if err = saveScript.Load(ctx, sh.c).Err(); err == nil {
			if err = claimScript.Load(ctx, sh.c).Err(); err == nil {
				if err = targetScript.Load(ctx, sh.c).Err(); err == nil {
					cmds, err = run()
				}
			}
		}
	}
	return cmds, err
}

func isNoScript(cmds []redis.Cmder, err error) bool {
	if err == nil {
		return false
	}
	if strings.HasPrefix(err.Error(), "NOSCRIPT") {
		return true
	}
	for _, c := range cmds {
		if c.Err() != nil && strings.HasPrefix(c.Err().Error(), "NOSCRIPT") {
			return true
		}
	}
	return false
}

// shareRow is a dialog to write, copied under its shard's lock.
type shareRow struct {
	h, id    uint64
	row      store.Dialog // the owner's only
	deadline int64
	cc, ce   uint32
	copy     bool // another node's dialog: only its CSeqs are written
}

// writeAll writes the listed dialogs, as they are now, in pipelines.
func (sh *sharer) writeAll(ctx context.Context) error {
	d := sh.d
	var rows []shareRow
	var text fieldtext.Fields
	for i := range sh.pend {
		s := d.tbl.ShardAt(i)
		s.Lock()
		l := &sh.pend[i]
		for _, op := range l.ops {
			e := findID(s, op.h, op.id)
			if e == nil || e.Value.pflags&fShareDirty == 0 {
				continue
			}
			g := &e.Value
			g.pflags &^= fShareDirty
			if g.pflags&fEnding != 0 || !g.timer.Active() {
				continue
			}
			// From here its end goes through Redis.
			g.pflags |= fShared
			if g.pflags&fRemote != 0 {
				rows = append(rows, shareRow{h: op.h, id: op.id, cc: g.cseq[toCaller], ce: g.cseq[toCallee], copy: true})
				continue
			}
			r := d.row(e, &text)
			r.Timeout = d.deadline(g)
			rows = append(rows, shareRow{h: op.h, id: op.id, row: r, deadline: r.Timeout, cc: r.CallerCSeq, ce: r.CalleeCSeq})
		}
		l.ops = l.ops[:0]
		s.Unlock()
	}
	for len(rows) > 0 {
		n := min(len(rows), shareBatch)
		if err := sh.writeRows(ctx, rows[:n]); err != nil {
			// Listed again: written when Redis is back.
			for _, r := range rows {
				sh.relist(r.h, r.id)
			}
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func (sh *sharer) relist(h, id uint64) {
	s := sh.d.tbl.Shard(h)
	s.Lock()
	if e := findID(s, h, id); e != nil && e.Value.pflags&fEnding == 0 {
		sh.changed(s, e)
	}
	s.Unlock()
}

func (sh *sharer) writeRows(ctx context.Context, rows []shareRow) error {
	saves := make([]*redis.Cmd, len(rows))
	cmds, err := sh.exec(ctx, func(p redis.Pipeliner) {
		for i := range rows {
			r := &rows[i]
			m := member(r.id, r.h)
			if r.copy {
				// The deadline and the index are the owner's.
				saves[i] = saveScript.EvalSha(ctx, p, []string{sh.key(m)}, "", sh.node, 0, r.cc, r.ce, 0, "copy")
				continue
			}
			js, _ := json.Marshal(&r.row)
			expire := r.deadline + sh.grace + expireAfter.Milliseconds()
			saves[i] = saveScript.EvalSha(ctx, p, []string{sh.key(m)}, js, sh.node, r.deadline, r.cc, r.ce, expire, "own")
			p.ZAdd(ctx, sh.index, redis.Z{Score: float64(r.deadline), Member: m})
		}
	})
	_ = cmds
	if err != nil {
		return err
	}
	sh.writes.Add(len(rows))
	for i := range rows {
		if n, _ := saves[i].Int(); n == 0 {
			// Ended by another node while this one held it (a
			// copy that missed the message, a restart): dropped.
			sh.forget(rows[i].h, rows[i].id)
		}
	}
	return nil
}

// forget drops the copy of a dialog another node ended.
func (sh *sharer) forget(h, id uint64) {
	s := sh.d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e := findID(s, h, id)
	if e == nil || e.Value.pflags&fEnding != 0 {
		return // not here, or its own claim will say
	}
	sh.ended.Inc()
	sh.d.drop(s, e)
}

// readAll reads the dialogs requests named that this node does not hold,
// and applies the requests to them.
func (sh *sharer) readAll(ctx context.Context) error {
	sh.mu.Lock()
	jobs := sh.fetches
	sh.fetches = nil
	sh.mu.Unlock()
	for len(jobs) > 0 {
		n := min(len(jobs), shareBatch)
		batch := jobs[:n]
		jobs = jobs[n:]
		gets := make([]*redis.MapStringStringCmd, len(batch))
		_, err := sh.exec(ctx, func(p redis.Pipeliner) {
			for i := range batch {
				gets[i] = p.HGetAll(ctx, sh.key(member(batch[i].id, batch[i].h)))
			}
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			sh.fetchDropped.Add(len(batch) + len(jobs))
			resumeAll(batch)
			resumeAll(jobs)
			return err
		}
		for i := range batch {
			sh.apply(&batch[i], gets[i].Val())
		}
		resumeAll(batch)
	}
	return nil
}

// apply puts a dialog read from Redis in the table, as a copy of another
// node's, and applies the request that named it.
func (sh *sharer) apply(j *fetchJob, fields map[string]string) {
	d := sh.d
	if _, ok := fields["ended"]; ok {
		sh.fetchEnded.Inc()
		return
	}
	var r store.Dialog
	if fields["d"] == "" || json.Unmarshal([]byte(fields["d"]), &r) != nil {
		sh.fetchMissing.Inc()
		return
	}
	// The hash named by the request's verified id and Call-ID must hold
	// that call: a row for another Call-ID, or one that does not pass the
	// store's checks, is not taken.
	if r.ID != j.id || r.CallID != j.callID || store.CheckDialog(&r) != nil {
		sh.fetchMissing.Inc()
		d.log.Warn("dialog: a dialog read from Redis is not the one its key names; not taken", "id", j.id, "call_id", j.callID)
		return
	}
	r.CallerCSeq = max(r.CallerCSeq, cseqOf(fields["cc"]))
	r.CalleeCSeq = max(r.CalleeCSeq, cseqOf(fields["ce"]))
	sh.fetchFound.Inc()
	s := d.tbl.Shard(j.h)
	s.Lock()
	defer s.Unlock()
	e := findID(s, j.h, j.id)
	if e == nil {
		if e = sh.install(s, j.h, &r); e == nil {
			return
		}
	} else if e.Value.pflags&fEnding != 0 {
		return
	}
	if j.resume != nil {
		return // the request, resumed, matches the copy and applies itself
	}
	g := &e.Value
	side, ok := g.side([]byte(j.fromTag), []byte(j.toTag))
	if !ok || side != j.from {
		d.mismatched.Inc()
		return
	}
	if j.method == parser.MethodBye && !g.goesTo(peerOf(side), []byte(j.ruri), []byte(j.next)) {
		// Relayed elsewhere (before the read): the call goes on.
		d.misrouted.Inc()
		return
	}
	i := toCaller
	if side == Callee {
		i = toCallee
	}
	if j.cseq > g.cseq[i] && j.cseq <= maxCSeq {
		g.cseq[i] = j.cseq
		if j.method != parser.MethodBye {
			d.changed(s, e)
		}
	}
	if j.method == parser.MethodBye {
		if g.state == stConfirmed {
			d.byeFromElsewhere(e, side, j.src)
		}
		// The end is the BYE's arrival, not the read's.
		sh.endAt(s, e, ReasonBye, side, false, j.at)
	}
}

// cseqOf reads a CSeq number a node wrote to Redis (cc, ce); 0 for one
// past maxCSeq, which no node records.
func cseqOf(s string) uint32 {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n > maxCSeq {
		return 0
	}
	return uint32(n)
}

// install puts r in shard s (locked) as a copy of another node's dialog:
// not in this node's profiles, counts or store; its timer is
// takeover_delay past its deadline, by when its own node should have
// ended it.
func (sh *sharer) install(s *shards.Shard[dlg], h uint64, r *store.Dialog) *shards.Entry[dlg] {
	d := sh.d
	e, why := d.fill(s, h, r, false)
	if e == nil {
		d.log.Warn("dialog: a dialog read from Redis is not kept here", "id", r.ID, "call_id", r.CallID, "why", why)
		return nil
	}
	e.Value.pflags = fShared | fRemote
	d.remote.Add(1)
	s.StartTimerAt(e, &e.Value.timer, 0, restoredTimeout(r)+sh.grace)
	return e
}

// claimResult is what claimScript answered for one end.
type claimResult struct {
	outcome string // won, lost, gone, early
	row     string
	cc, ce  uint32
	dl      int64
	targets [2]string // the latest refreshes of the caller's and the callee's target: "ms uri", "" none
}

// applyTargets takes the latest target refreshes any node saw (tc, te)
// into g before its BYEs are built. The shard is locked.
func (d *Dialog) applyTargets(g *dlg, targets [2]string) {
	for i, t := range targets {
		if _, uri, ok := strings.Cut(t, " "); ok && uri != "" && (i == toCaller || g.hasCallee) {
			d.retarget(g, i, []byte(uri), nil)
		}
	}
}

func parseClaim(cmd *redis.Cmd) (claimResult, error) {
	v, err := cmd.StringSlice()
	if err != nil {
		return claimResult{}, err
	}
	var r claimResult
	if len(v) > 0 {
		r.outcome = v[0]
	}
	switch {
	case r.outcome == "won" && len(v) == 6:
		r.row, r.cc, r.ce = v[1], cseqOf(v[2]), cseqOf(v[3])
		r.targets = [2]string{v[4], v[5]}
	case r.outcome == "early" && len(v) == 2:
		r.dl, _ = strconv.ParseInt(v[1], 10, 64)
	}
	return r, nil
}

// settle runs the claims of the ends waiting and settles them.
func (sh *sharer) settle(ctx context.Context) error {
	sh.mu.Lock()
	jobs := append([]endJob(nil), sh.ends...)
	sh.ends = sh.ends[:0]
	sh.mu.Unlock()
	for len(jobs) > 0 {
		n := min(len(jobs), shareBatch)
		batch := jobs[:n]
		claims := make([]*redis.Cmd, n)
		now := strconv.FormatInt(sh.d.clock.Now(), 10)
		_, err := sh.exec(ctx, func(p redis.Pipeliner) {
			for i := range batch {
				j := &batch[i]
				m := member(j.id, j.h)
				claims[i] = claimScript.EvalSha(ctx, p, []string{sh.key(m)}, sh.node, j.mode, now, sh.grace,
					endedKeep.Milliseconds(), sh.claimToken(j.seq))
			}
		})
		if err != nil {
			// Back on the queue, in front of what came meanwhile.
			sh.mu.Lock()
			sh.ends = append(jobs, sh.ends...)
			sh.mu.Unlock()
			return err
		}
		// Only a claim won removes the index entry and tells the other
		// nodes to drop their copies: a claim that found no hash (Redis
		// lost it) must not make the dialog's own node drop a live call,
		// which it alone can still end.
		var after []string
		for i := range batch {
			res, err := parseClaim(claims[i])
			if err != nil {
				sh.errs.Inc()
				res.outcome = "gone"
			}
			if res.outcome == "won" {
				after = append(after, member(batch[i].id, batch[i].h))
			}
			sh.resolve(&batch[i], res)
		}
		if len(after) > 0 {
			sh.announce(ctx, after)
		}
		jobs = jobs[n:]
	}
	return nil
}

// announce removes ended dialogs from the deadlines and tells the other
// nodes.
func (sh *sharer) announce(ctx context.Context, members []string) {
	_, err := sh.exec(ctx, func(p redis.Pipeliner) {
		args := make([]any, len(members))
		for i, m := range members {
			args[i] = m
			p.Publish(ctx, sh.channel, sh.node+"|"+m)
		}
		p.ZRem(ctx, sh.index, args...)
	})
	if err != nil {
		sh.errs.Inc() // the scans drop the index entries, the copies expire
	}
}

// resolve settles one end with Redis's answer; true when this node ended
// the call.
func (sh *sharer) resolve(j *endJob, res claimResult) bool {
	d := sh.d
	s := d.tbl.Shard(j.h)
	s.Lock()
	defer s.Unlock()
	sh.pending.Add(-1)
	e := findID(s, j.h, j.id)
	if e == nil || e.Value.pflags&fEnding == 0 {
		return false
	}
	g := &e.Value
	switch res.outcome {
	case "won":
		sh.won.Inc()
		if g.pflags&fRemote != 0 && j.why == ReasonTimeout {
			sh.takeovers.Inc()
		}
		// The highest CSeqs any node saw: the BYEs must be above them.
		g.cseq[toCaller] = max(g.cseq[toCaller], res.cc)
		g.cseq[toCallee] = max(g.cseq[toCallee], res.ce)
		if j.byes {
			d.applyTargets(g, res.targets)
			d.queueEnd(e)
		}
		d.endAt(s, e, j.why, j.by, j.at)
		return true
	case "early":
		// Its deadline moved (SetTimeout on its node): wait again.
		g.pflags &^= fEnding
		s.StartTimerAt(e, &g.timer, 0, res.dl+sh.grace)
		return false
	default:
		sh.lost.Inc()
		d.drop(s, e)
		return false
	}
}

// settleLocally settles, without Redis, the ends of this node's own
// dialogs that waited longer than wait: this node ends them (their BYEs,
// their record). Ends of other nodes' dialogs keep waiting: their node
// ends them if it is there.
func (sh *sharer) settleLocally(wait time.Duration) {
	now := sh.d.clock.Now()
	sh.mu.Lock()
	var mine []endJob
	keep := sh.ends[:0]
	for _, j := range sh.ends {
		if j.mode == claimOwn && now-j.at >= wait.Milliseconds() {
			mine = append(mine, j)
		} else {
			keep = append(keep, j)
		}
	}
	sh.ends = keep
	sh.late = append(sh.late, mine...)
	sh.mu.Unlock()
	for i := range mine {
		sh.localEnds.Inc()
		sh.resolve(&mine[i], claimResult{outcome: "won"})
	}
	if len(mine) > 0 {
		sh.log.Warn("dialog: calls ended without Redis: this node sent their BYEs and wrote their records", "calls", len(mine))
	}
}

// settleLate marks ended in Redis the calls this node ended while Redis
// was away. A claim this node loses there means another node ended the
// call too meanwhile (two records): counted and logged.
func (sh *sharer) settleLate(ctx context.Context) error {
	sh.mu.Lock()
	jobs := sh.late
	sh.late = nil
	sh.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	claims := make([]*redis.Cmd, len(jobs))
	now := strconv.FormatInt(sh.d.clock.Now(), 10)
	_, err := sh.exec(ctx, func(p redis.Pipeliner) {
		for i := range jobs {
			m := member(jobs[i].id, jobs[i].h)
			claims[i] = claimScript.EvalSha(ctx, p, []string{sh.key(m)}, sh.node, claimOwn, now, sh.grace,
				endedKeep.Milliseconds(), sh.claimToken(jobs[i].seq))
			p.ZRem(ctx, sh.index, m)
			p.Publish(ctx, sh.channel, sh.node+"|"+m)
		}
	})
	if err != nil {
		sh.mu.Lock()
		sh.late = append(jobs, sh.late...)
		sh.mu.Unlock()
		return err
	}
	for i := range jobs {
		if res, err := parseClaim(claims[i]); err == nil && res.outcome == "lost" {
			sh.conflicts.Inc()
			sh.log.Warn("dialog: a call this node ended without Redis was ended by another node too", "id", jobs[i].id)
		}
	}
	return nil
}

// scan claims the dialogs whose deadline passed more than takeover_delay
// ago and that no node ended: their node is gone. The winner sends the
// BYEs and writes the record.
func (sh *sharer) scan(ctx context.Context) error {
	d := sh.d
	now := d.clock.Now()
	sh.ops.Inc()
	members, err := sh.c.ZRangeByScore(ctx, sh.index, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now-sh.grace, 10), Count: shareBatch,
	}).Result()
	if err != nil || len(members)+len(sh.taking) == 0 {
		return err
	}
	type cand struct {
		m     string
		id, h uint64
	}
	var cands []cand
	var stale []any
	// The claims whose answer was lost first: Redis may have given this
	// node the call, and no other node will end it.
	for m := range sh.taking {
		id, h, _ := parseMember(m)
		cands = append(cands, cand{m: m, id: id, h: h})
	}
	for _, m := range members {
		id, h, ok := parseMember(m)
		if !ok {
			stale = append(stale, m)
			continue
		}
		if _, again := sh.taking[m]; again {
			continue
		}
		s := d.tbl.Shard(h)
		s.Lock()
		held := findID(s, h, id) != nil
		s.Unlock()
		if !held && len(sh.taking) < maxFetches { // a dialog held here is ended by its own timer
			cands = append(cands, cand{m: m, id: id, h: h})
			sh.taking[m] = sh.seq.Add(1)
		}
	}
	claims := make([]*redis.Cmd, len(cands))
	nowArg := strconv.FormatInt(now, 10)
	_, err = sh.exec(ctx, func(p redis.Pipeliner) {
		for i, c := range cands {
			claims[i] = claimScript.EvalSha(ctx, p, []string{sh.key(c.m)}, sh.node, claimTake, nowArg, sh.grace,
				endedKeep.Milliseconds(), sh.claimToken(sh.taking[c.m]))
		}
		if len(stale) > 0 {
			p.ZRem(ctx, sh.index, stale...)
		}
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	var taken []string
	var gone []any
	for i, c := range cands {
		delete(sh.taking, c.m) // answered
		res, err := parseClaim(claims[i])
		if err != nil {
			continue
		}
		switch res.outcome {
		case "won":
			if sh.takeOver(c.h, c.id, res) {
				taken = append(taken, c.m)
			} else {
				gone = append(gone, c.m)
			}
		case "early":
			// The index was behind the hash (a write between): fixed.
			sh.ops.Inc()
			sh.c.ZAdd(ctx, sh.index, redis.Z{Score: float64(res.dl), Member: c.m})
		default:
			gone = append(gone, c.m)
		}
	}
	if len(gone) > 0 {
		sh.ops.Inc()
		sh.c.ZRem(ctx, sh.index, gone...)
	}
	if len(taken) > 0 {
		sh.announce(ctx, taken)
	}
	return nil
}

// takeOver ends a dialog of a node that is gone, which this node won:
// put in the table from its row, ended at once with a BYE each way.
func (sh *sharer) takeOver(h, id uint64, res claimResult) bool {
	d := sh.d
	var r store.Dialog
	if json.Unmarshal([]byte(res.row), &r) != nil || r.ID != id || store.CheckDialog(&r) != nil {
		d.log.Warn("dialog: a dialog of another node past its timeout could not be read from Redis; not ended here", "id", id)
		return false
	}
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	if findID(s, h, id) != nil {
		return false
	}
	e := sh.install(s, h, &r)
	if e == nil {
		return false
	}
	g := &e.Value
	g.cseq[toCaller] = max(g.cseq[toCaller], res.cc)
	g.cseq[toCallee] = max(g.cseq[toCallee], res.ce)
	d.applyTargets(g, res.targets)
	sh.won.Inc()
	sh.takeovers.Inc()
	d.log.Info("dialog: call of another node ended at its timeout (that node did not)", "id", id, "call_id", r.CallID)
	d.queueEnd(e)
	d.end(s, e, ReasonTimeout, Proxy)
	return true
}

// subscribeLoop drops the copies of dialogs other nodes ended. After a
// break of the subscription, messages may have been lost: every shared
// dialog is written again, and a dialog that ended elsewhere says so.
func (sh *sharer) subscribeLoop() {
	defer sh.wg.Done()
	first := true
	for {
		msg, err := sh.ps.Receive(sh.ctx)
		if err != nil {
			if sh.ctx.Err() != nil {
				return
			}
			select {
			case <-sh.ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if !first {
					sh.resubscribed.Store(true)
					sh.wake()
				}
				first = false
			}
		case *redis.Message:
			node, mem, ok := strings.Cut(m.Payload, "|")
			if !ok || node == sh.node {
				continue
			}
			if id, h, ok := parseMember(mem); ok {
				sh.forget(h, id)
			}
		}
	}
}
