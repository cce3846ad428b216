package dialog

import (
	"cmp"
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/modules/internal/fieldtext"
	"switchboard/shards"
	"switchboard/store"
	"switchboard/transport"
)

// Persistence (dialog.persist, OpenSIPS db_mode delayed). A confirmed
// dialog is written to the store's dialog table and deleted from it when
// it ends, so that the calls up across a restart keep their dialog. The
// receive path only notes that a dialog changed: under the dialog's shard
// lock, which it holds already, it appends {hash, id} to that shard's
// pending list and marks the dialog dirty (a dialog is listed once however
// often it changes before the next write). Every write_interval the
// writer goroutine takes each shard's list, copies the rows of the dirty
// dialogs still there (under the lock, off the receive path) and applies
// them with the deletes of the ended dialogs that had a row in one
// transaction. A call shorter than the interval is never written. Nothing on the receive path
// allocates, waits for the store, or takes a lock of its own.
//
// The pending lists are bounded (two entries per dialog a shard may
// hold: an upsert and a delete). A change that finds its list full is
// counted (switchboard_dialog_store_drops_total) and logged; it can only
// happen when the store has been failing for long. A batch the store
// refuses is retried (three attempts), then its changes go back on the
// lists for the next interval. Each row is checked first (the store's
// CheckDialog): one that would fail it is left out of the batch,
// counted (switchboard_dialog_store_refused_total) and logged, instead
// of failing the batch, every interval, with every other call of the
// node in it.

// writer is the module's write-behind to the store.
type writer struct {
	st       *store.Store
	interval time.Duration
	pend     []pendList // per shard, under the shard's lock
	maxPend  int        // entries a shard's list may hold
	// The batch being written, by one flush at a time (the writer
	// goroutine; Stop and tests call flush too).
	mu    sync.Mutex
	ops   []store.DialogOp
	from  []pendOp // the change each op came from, to put it back
	taken []pendOp // the shards' lists, taken for the flush
	text  fieldtext.Fields
	retry time.Duration

	// restore holds the timers of the dialogs loaded in New, started in
	// Start (a timer that fired before the subscribers were there would
	// end a call without telling them).
	restore []restoredTimer

	storeMetrics
}

// pendList is one shard's changes not written yet, padded so that two
// shards' lists are not in one cache line.
type pendList struct {
	ops []pendOp
	_   [40]byte
}

// pendOp is one change: the dialog (hash of its Call-ID, id) was
// changed, or ended (del).
type pendOp struct {
	h, id uint64
	del   bool
}

type restoredTimer struct {
	h, id uint64
	when  int64
}

// storeMetrics are the persistence's counters, registered whether it is
// on or not.
type storeMetrics struct {
	writes, errors, drops, restored *metrics.Counter
	// refused counts the rows left out of a write-back: they fail the
	// store's checks (store.CheckDialog).
	refused *metrics.Counter
}

func newStoreMetrics(set *metrics.Set) storeMetrics {
	return storeMetrics{
		writes:   set.NewCounter("switchboard_dialog_store_writes_total"),
		errors:   set.NewCounter("switchboard_dialog_store_errors_total"),
		drops:    set.NewCounter("switchboard_dialog_store_drops_total"),
		restored: set.NewCounter("switchboard_dialog_restored_total"),
		refused:  set.NewCounter("switchboard_dialog_store_refused_total"),
	}
}

func newWriter(st *store.Store, interval time.Duration, numShards, perShard int, m storeMetrics) *writer {
	return &writer{
		st: st, interval: interval, retry: 50 * time.Millisecond,
		pend: make([]pendList, numShards), maxPend: 2*perShard + 16, storeMetrics: m,
	}
}

// push appends op to shard s's list. The shard is locked.
func (w *writer) push(s *shards.Shard[dlg], op pendOp) bool {
	l := &w.pend[s.Index()]
	if len(l.ops) >= w.maxPend {
		w.drops.Inc()
		return false
	}
	l.ops = append(l.ops, op)
	return true
}

// changed notes that a confirmed dialog changed (a CSeq, a target, its
// timeout, a profile, a flag or value of the route's): it is written at
// the next interval. The shard is locked.
func (d *Dialog) changed(s *shards.Shard[dlg], e *shards.Entry[dlg]) {
	g := &e.Value
	if g.state != stConfirmed || g.pflags&fEnding != 0 {
		return
	}
	if d.share != nil {
		d.share.changed(s, e)
	}
	// Another node's dialog (a copy read from Redis) is that node's to
	// keep in its store.
	if d.w == nil || g.pflags&(fDirty|fRemote) != 0 {
		return
	}
	if !d.w.push(s, pendOp{h: e.Hash(), id: g.id}) {
		d.h.Warn("dialog: store queue full, dialog change not written", "id", g.id)
		return
	}
	g.pflags |= fDirty
}

// forget notes that a dialog ended: when a row of it was taken for the
// store, the row is deleted at the next interval (a call that ended
// before the flush after its answer costs the store nothing). The shard
// is locked.
func (d *Dialog) forget(s *shards.Shard[dlg], e *shards.Entry[dlg]) {
	g := &e.Value
	if d.w == nil || g.pflags&fStored == 0 {
		return
	}
	if !d.w.push(s, pendOp{h: e.Hash(), id: g.id, del: true}) {
		d.h.Warn("dialog: store queue full, ended dialog not deleted from the store", "id", g.id)
	}
}

// writeLoop writes the changes every interval until Stop, then once more.
func (d *Dialog) writeLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.w.interval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			d.flush()
			return
		case <-t.C:
			d.flush()
		}
	}
}

// flush writes what changed since the last flush, in one transaction.
// Writer goroutine (or Stop, once it has ended).
//
// The changes go to the store in the order of the dialogs' ids, which is
// the order of the table's key: ids are handed out in sequence, so the
// new rows are appended to the end of the B-tree and the deletes take
// rows off its old end. In the shards' order (each shard's changes in
// turn) every shard after the first inserts between the rows the others
// just wrote, splitting half-full pages: a third more of the writer's
// time in BenchmarkApplyDialogsOrder.
func (d *Dialog) flush() {
	w := d.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.pend {
		s := d.tbl.ShardAt(i)
		s.Lock()
		l := &w.pend[i]
		w.taken = append(w.taken, l.ops...)
		l.ops = l.ops[:0]
		s.Unlock()
	}
	// A dialog is in a batch once at most (an upsert if it is up, a delete
	// if it ended), so any order of equal ids does.
	slices.SortFunc(w.taken, func(a, b pendOp) int { return cmp.Compare(int64(a.id), int64(b.id)) })
	refused := 0
	var why error
	for _, op := range w.taken {
		if op.del {
			w.ops = append(w.ops, store.DialogOp{Kind: store.DialogDelete, Dialog: store.Dialog{ID: op.id}})
			w.from = append(w.from, op)
			continue
		}
		s := d.tbl.Shard(op.h)
		s.Lock()
		if e := findID(s, op.h, op.id); e != nil && e.Value.pflags&fDirty != 0 && e.Value.timer.Active() {
			e.Value.pflags &^= fDirty
			// A row the store would refuse fails the whole batch:
			// checked here, it alone is left out (written again at its
			// next change, checked again), and the calls of the node
			// are written back as ever.
			r := d.row(e, &w.text)
			if err := store.CheckDialog(&r); err != nil {
				refused++
				why = err
			} else {
				e.Value.pflags |= fStored
				w.ops = append(w.ops, store.DialogOp{Kind: store.DialogUpsert, Dialog: r})
				w.from = append(w.from, op)
			}
		} // else ended (its delete follows), or written already
		s.Unlock()
	}
	w.taken = w.taken[:0]
	if refused > 0 {
		w.refused.Add(refused)
		d.h.Warn("dialog: dialogs the store would refuse left out of the write-back; the others written", "dialogs", refused, "err", why)
	}
	if len(w.ops) == 0 {
		w.trim(0)
		return
	}
	err := d.apply(w.ops)
	if err != nil {
		w.errors.Add(len(w.ops))
		d.log.Error("dialog: changes not written to the store; retried at the next interval", "changes", len(w.ops), "err", err)
		d.requeue(w.from)
	} else {
		w.writes.Add(len(w.ops))
	}
	n := len(w.ops)
	clear(w.ops) // the rows' strings
	w.ops, w.from = w.ops[:0], w.from[:0]
	w.trim(n)
}

// trim lets the batch's room go after a flush of n rows when it is more
// than keptBatch rows and more than twice n: room left by a burst (the
// first flush after a restart, a store back from an outage) is not kept,
// a row takes about 400 bytes. The room a steady load needs is: at 500
// calls a second a flush carries about 1,000 rows, and allocating them
// afresh each second cost page faults and collections (the flush's
// profile, bench/results/dialog-acc.md).
func (w *writer) trim(n int) {
	if cap(w.ops) > keptBatch && cap(w.ops) > 2*n {
		w.ops, w.from = nil, nil
	}
	if cap(w.taken) > 2*keptBatch && cap(w.taken) > 4*n {
		w.taken = nil
	}
}

// keptBatch is the most rows the writer keeps room for between flushes
// whatever their number.
const keptBatch = 1024

// apply writes ops, trying three times: a store busy with another
// process's write (the CLI) usually answers the next attempt.
func (d *Dialog) apply(ops []store.DialogOp) error {
	var err error
	delay := d.w.retry
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(delay)
			delay *= 4
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err = d.w.st.ApplyDialogs(ctx, ops)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

// requeue puts the changes of a batch that was not written back on their
// shards' lists: deletes as they were, upserts by marking their dialog
// dirty again (its row is copied afresh at the next flush).
func (d *Dialog) requeue(ops []pendOp) {
	for _, op := range ops {
		s := d.tbl.Shard(op.h)
		s.Lock()
		if op.del {
			d.w.push(s, op)
		} else if e := findID(s, op.h, op.id); e != nil {
			d.changed(s, e)
		}
		s.Unlock()
	}
}

// findID returns the live dialog id with Call-ID hash h. The shard is
// locked.
func findID(s *shards.Shard[dlg], h, id uint64) *shards.Entry[dlg] {
	return s.Find(h, func(e *shards.Entry[dlg]) bool { return e.Value.id == id })
}

// row copies a confirmed dialog into a store row. The shard is locked.
// The row's strings are cut from one copy of its text (t gathers it): one
// allocation a row instead of one a field, about twenty.
func (d *Dialog) row(e *shards.Entry[dlg], t *fieldtext.Fields) store.Dialog {
	g := &e.Value
	t.Reset()
	t.Add(e.Key())
	t.Add(g.get(g.fromTag))
	t.Add(g.get(g.toTag))
	t.Add(g.get(g.from))
	t.Add(g.get(g.to))
	t.Add(uriOf(g.get(g.from)))
	t.Add(uriOf(g.get(g.to)))
	t.Add(g.get(g.calleeFrom))
	t.Add(g.get(g.calleeTo))
	t.Add(g.get(g.route[toCaller]))
	t.Add(g.get(g.target[toCaller]))
	t.Add(g.relayedTarget(toCaller))
	t.End(appendHop(t.Buf(), g.proto[toCaller], g.hop[toCaller].AddrPort()))
	t.Add(g.get(g.phrase))
	if g.hasCallee {
		t.Add(g.get(g.route[toCallee]))
		t.Add(g.get(g.target[toCallee]))
		t.Add(g.relayedTarget(toCallee))
		t.End(appendHop(t.Buf(), g.proto[toCallee], g.hop[toCallee].AddrPort()))
	}
	for i := 0; i < int(g.nprof); i++ {
		t.Add(g.get(g.profs[i].val))
	}
	nvals := 0
	Values(g.get(g.vals)).Each(func(name, value []byte) {
		t.Add(name)
		t.Add(value)
		nvals++
	})
	t.Copy()
	r := store.Dialog{
		ID: g.id, CallID: t.Next(),
		FromTag: t.Next(), ToTag: t.Next(), FromHdr: t.Next(), ToHdr: t.Next(), FromURI: t.Next(), ToURI: t.Next(),
		CalleeFromHdr: t.Next(), CalleeToHdr: t.Next(),
		CallerCSeq: g.cseq[toCaller], CalleeCSeq: g.cseq[toCallee], CSeqOffset: g.cseqOffset,
		CallerRouteSet: t.Next(), CallerContact: t.Next(), CallerContactSent: t.Next(), CallerHop: t.Next(),
		State: store.DialogConfirmed, StartTime: g.start, AnswerTime: g.answer, Timeout: g.timer.When(),
		Code: int(g.code), Phrase: t.Next(), Flags: g.flags,
	}
	if g.hasCallee {
		r.CalleeRouteSet, r.CalleeContact, r.CalleeContactSent, r.CalleeHop = t.Next(), t.Next(), t.Next(), t.Next()
	}
	if g.nprof > 0 {
		r.Profiles = make([]store.DialogProfile, g.nprof)
		for i := range r.Profiles {
			r.Profiles[i] = store.DialogProfile{Name: d.profiles[g.profs[i].idx].name, Value: t.Next()}
		}
	}
	if nvals > 0 {
		r.Values = make([]store.DialogValue, nvals)
		for i := range r.Values {
			r.Values[i] = store.DialogValue{Name: t.Next(), Value: t.Next()}
		}
	}
	return r
}

// appendHop appends a hop as the store keeps it, "udp:192.0.2.1:5060", or
// nothing.
func appendHop(b []byte, p transport.Proto, ap netip.AddrPort) []byte {
	if !ap.IsValid() {
		return b
	}
	for _, c := range []byte(p.String()) {
		b = append(b, c|0x20) // the names are upper-case letters
	}
	return ap.AppendTo(append(b, ':'))
}

func parseHop(s string) (transport.Proto, netip.AddrPort, bool) {
	proto, addr, ok := strings.Cut(s, ":")
	if !ok {
		return 0, netip.AddrPort{}, false
	}
	p, ok := transport.ParseProto(proto)
	ap, err := netip.ParseAddrPort(addr)
	return p, ap, ok && err == nil
}

// load puts the dialogs stored by the previous run in the table (New,
// before the transport listens). Their timers start in Start. A row that
// cannot be restored (the table is full, a profile or the row is too
// large) is logged and deleted from the store: its call goes on without
// a dialog, as every call did before persistence.
func (d *Dialog) load() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rows, bad, err := d.w.st.LoadDialogs(ctx)
	if err != nil {
		return 0, err
	}
	for _, err := range bad {
		d.log.Warn("dialog: stored dialog not restored", "err", err)
	}
	n := 0
	for i := range rows {
		r := &rows[i]
		if why := d.restore(r); why != "" {
			d.log.Warn("dialog: stored dialog not restored; deleted from the store", "id", r.ID, "call_id", r.CallID, "why", why)
			h := shards.SumString(r.CallID)
			s := d.tbl.Shard(h)
			s.Lock()
			d.w.push(s, pendOp{h: h, id: r.ID, del: true})
			s.Unlock()
			continue
		}
		n++
	}
	d.w.restored.Add(n)
	return n, nil
}

// restore puts one stored dialog in the table; it returns why not.
func (d *Dialog) restore(r *store.Dialog) string {
	h := shards.SumString(r.CallID)
	s := d.tbl.Shard(h)
	s.Lock()
	defer s.Unlock()
	e, why := d.fill(s, h, r, true)
	if e == nil {
		return why
	}
	e.Value.pflags = fStored
	if d.share != nil {
		// Written to Redis before the restart, perhaps ended there since
		// by another node: its end goes through Redis, and writing it
		// again tells whether it did (shareResult).
		e.Value.pflags |= fShared
		d.share.changed(s, e)
	}
	d.confirmed.Add(1)
	d.w.restore = append(d.w.restore, restoredTimer{h: h, id: r.ID, when: restoredTimeout(r)})
	return ""
}

// restoredTimeout is when a stored dialog ends: its timeout, at most
// maxTimeout after its answer, as a live dialog's (SetTimeout). A row
// with a timeout ten years on (edited by hand, or written by a broken
// tool) was restored as it was, past any bound of the configuration.
// The store refuses a row answered before its start or after its
// timeout (store.CheckDialog).
func restoredTimeout(r *store.Dialog) int64 {
	return min(r.Timeout, r.AnswerTime+maxTimeout.Milliseconds())
}

// fill puts a confirmed dialog stored as r in shard s (locked) and
// returns its entry, or nil and why not; with profiles, it is counted in
// the profiles r names. Its timer is not started and its counts not
// taken: the caller's.
func (d *Dialog) fill(s *shards.Shard[dlg], h uint64, r *store.Dialog, profiles bool) (*shards.Entry[dlg], string) {
	if r.State != store.DialogConfirmed {
		return nil, "not confirmed"
	}
	callID := []byte(r.CallID)
	if s.Len() >= d.perShard {
		return nil, "dialog.max_dialogs reached"
	}
	if findID(s, h, r.ID) != nil {
		return nil, "id held by another dialog"
	}
	callerProto, callerHop, ok := parseHop(r.CallerHop)
	if !ok {
		return nil, "caller_hop"
	}
	e, err := s.Insert(h, callID)
	if err != nil {
		return nil, err.Error()
	}
	g := &e.Value
	g.id, g.state = r.ID, stConfirmed
	g.start, g.answer = r.StartTime, r.AnswerTime
	g.cseq, g.cseqOffset = [2]uint32{r.CallerCSeq, r.CalleeCSeq}, r.CSeqOffset
	g.code, g.flags = uint16(r.Code), r.Flags
	if g.flags&FlagSessionTimer != 0 {
		// The stored timeout is the session's expiry; the dialog's own
		// timeout is not stored: the default's bounds a later refresh.
		g.sessEnd = uint32(max(restoredTimeout(r)-r.AnswerTime, 0))
		g.timeout = uint32(min(d.timeout.Load(), maxTimeout.Milliseconds()))
	}
	g.proto[toCaller], g.hop[toCaller] = callerProto, packAddr(callerHop)
	size := len(r.FromTag) + len(r.ToTag) + len(r.FromHdr) + len(r.ToHdr) + len(r.CallerContact) + len(r.CalleeContact) +
		len(r.CallerContactSent) + len(r.CalleeContactSent) + 4 +
		len(r.CallerRouteSet) + len(r.CalleeRouteSet) + len(r.CalleeFromHdr) + len(r.CalleeToHdr) + len(r.Phrase)
	var vals []byte
	for _, v := range r.Values {
		vals = appendValue(vals, v.Name, []byte(v.Value))
	}
	size += len(vals)
	for _, p := range r.Profiles {
		size += len(p.Value)
	}
	g.reserve(size)
	ok = g.put([]byte(r.FromTag), &g.fromTag) && g.put([]byte(r.FromHdr), &g.from) && g.put([]byte(r.ToHdr), &g.to) &&
		g.put([]byte(r.ToTag), &g.toTag) && g.putTarget(toCaller, []byte(r.CallerContact), []byte(r.CallerContactSent)) &&
		g.put([]byte(r.CallerRouteSet), &g.route[toCaller]) &&
		g.put([]byte(r.CalleeFromHdr), &g.calleeFrom) && g.put([]byte(r.CalleeToHdr), &g.calleeTo) &&
		g.put([]byte(r.Phrase), &g.phrase) && g.put(vals, &g.vals)
	if ok && r.CalleeHop != "" {
		p, ap, hopOK := parseHop(r.CalleeHop)
		if hopOK && g.putTarget(toCallee, []byte(r.CalleeContact), []byte(r.CalleeContactSent)) &&
			g.put([]byte(r.CalleeRouteSet), &g.route[toCallee]) {
			g.proto[toCallee], g.hop[toCallee], g.hasCallee = p, packAddr(ap), true
		}
	}
	for _, p := range r.Profiles {
		if !ok || !profiles {
			break
		}
		prof := d.byName[p.Name]
		if prof == nil {
			d.log.Warn("dialog: restored dialog left out of a profile that is not configured any more", "id", r.ID, "profile", p.Name)
			continue
		}
		if int(g.nprof) >= maxDlgProfile {
			break
		}
		var v []byte
		if prof.withValue {
			v = []byte(p.Value)
		}
		ref := profRef{idx: prof.idx}
		if ok = g.put(v, &ref.val); ok {
			prof.add(v, 0) // counted as it was before the restart, past a limit too
			g.profs[g.nprof] = ref
			g.nprof++
		}
	}
	if !ok {
		for i := 0; i < int(g.nprof); i++ {
			d.profiles[g.profs[i].idx].release(g.get(g.profs[i].val))
		}
		s.Remove(e)
		return nil, "too large to keep"
	}
	s.Account(e, cap(g.buf))
	return e, ""
}

// startRestored starts the timers of the dialogs load restored: a
// dialog whose timeout passed while the server was down is ended at the
// next tick, with its BYEs.
func (d *Dialog) startRestored() {
	for _, rt := range d.w.restore {
		s := d.tbl.Shard(rt.h)
		s.Lock()
		if e := findID(s, rt.h, rt.id); e != nil && !e.Value.timer.Active() {
			s.StartTimerAt(e, &e.Value.timer, 0, rt.when)
		}
		s.Unlock()
	}
	d.w.restore = nil
}
