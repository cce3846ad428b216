package acc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"switchboard/modules"
	"switchboard/routing"
	"switchboard/store"
)

var t0ctx = context.Background()

// only returns the one record of callID in acc (missed false) or
// missed_calls, and fails when the call has records in the other table
// or more than one.
func (e *env) only(missed bool, callID string) store.CDR {
	e.t.Helper()
	got, other := e.records(missed, callID), e.records(!missed, callID)
	if len(got) != 1 || len(other) != 0 {
		e.t.Fatalf("%s: %d records in the table, %d in the other, want 1 and 0", callID, len(got), len(other))
	}
	return got[0]
}

// TestCallRecords: each way a call ends leaves one record with its
// times on the clock, parties, final status and who ended it: BYE from
// the caller (with the route's extra pairs), BYE from the callee, the
// callee's 486, the caller's CANCEL, no answer (timer C's 408 from the
// proxy), the route's own refusal after CreateDialog.
func TestCallRecords(t *testing.T) {
	e := newEnv(t, nil, true)
	t0 := e.clock.Now()
	e.beforeRelay = func(c *routing.Ctx) bool {
		if c.CallID()[0] == 'x' && !(e.a.SetExtra(c, "account", []byte("1001")) && e.a.SetExtra(c, "src_user", c.FUser())) {
			t.Error("SetExtra refused")
		}
		return true
	}

	c := e.invite("x-caller-bye")
	e.clock.Advance(250 * time.Millisecond)
	c.respond(180, "", "b1")
	e.clock.Advance(750 * time.Millisecond)
	c.respond(200, "", "b1")
	e.clock.Advance(1500 * time.Millisecond)
	c.bye(true)
	e.waitWritten(1)
	r := e.only(false, "x-caller-bye")
	want := store.CDR{ID: r.ID, CallID: "x-caller-bye", FromTag: "a-x-caller-bye", ToTag: "b1",
		FromURI: "sip:alice@example.com", FromUser: "alice", ToURI: "sip:bob@example.com", ToUser: "bob",
		Caller: callerAddr, Start: t0, Answer: t0 + 1000, End: t0 + 2500, Duration: 1500, Code: 200, Reason: "OK",
		EndReason: "bye", EndedBy: "caller", Extra: map[string]string{"account": "1001", "src_user": "alice"}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("record\n%+v\nwant\n%+v", r, want)
	}

	t1 := e.clock.Now()
	c = e.invite("callee-bye")
	c.respond(200, "", "b2")
	e.clock.Advance(2 * time.Second)
	c.bye(false)
	e.waitWritten(2)
	if r := e.only(false, "callee-bye"); r.EndedBy != "callee" || r.EndReason != "bye" || r.Duration != 2000 || r.Start != t1 || r.Code != 200 {
		t.Fatalf("callee's BYE: %+v", r)
	}

	c = e.invite("busy")
	c.respond(180, "", "b3")
	e.clock.Advance(400 * time.Millisecond)
	c.respond(486, "Busy Here", "b3")
	e.waitWritten(3)
	if r := e.only(false, "busy"); r.Code != 486 || r.Reason != "Busy Here" || r.EndReason != "failed" || r.EndedBy != "callee" ||
		r.Answer != 0 || r.Duration != 0 || r.End-r.Start != 400 || r.ToTag != "" {
		t.Fatalf("busy: %+v", r)
	}

	c = e.invite("cancel")
	c.respond(180, "", "b4")
	e.clock.Advance(time.Second)
	c.cancel()
	c.respond(487, "", "b4")
	e.waitWritten(4)
	if r := e.only(false, "cancel"); r.Code != 487 || r.EndReason != "canceled" || r.EndedBy != "caller" || r.End-r.Start != 1000 {
		t.Fatalf("cancel: %+v", r)
	}

	c = e.invite("noanswer")
	c.respond(180, "", "b5")
	e.clock.Advance(3*time.Minute + 100*time.Millisecond) // timer C
	e.waitWritten(5)
	if r := e.only(false, "noanswer"); r.Code != 408 || r.Reason != "Request Timeout" || r.EndReason != "failed" || r.EndedBy != "proxy" {
		t.Fatalf("no answer: %+v", r)
	}

	e.beforeRelay = func(c *routing.Ctx) bool {
		c.Reply(403, "Not Allowed")
		return false
	}
	e.invite("refused")
	e.waitWritten(6)
	if r := e.only(false, "refused"); r.Code != 403 || r.EndedBy != "proxy" || r.Reason != "Forbidden" {
		t.Fatalf("refused: %+v", r)
	}
	if m := e.a.queued[0].Get(); m != 6 {
		t.Fatalf("queued %d", m)
	}
}

// TestMissedCalls: a call the route marked (MarkMissed) that fails goes
// to missed_calls, and only there; one that is answered is an ordinary
// record. With acc.failed off, failed calls leave no record but the
// missed ones do.
func TestMissedCalls(t *testing.T) {
	s := DefaultSettings()
	s.Failed = false
	e := newEnv(t, s, true)
	e.beforeRelay = func(c *routing.Ctx) bool {
		if strings.HasPrefix(string(c.CallID()), "m-") && !e.a.MarkMissed(c) {
			t.Error("MarkMissed refused")
		}
		return true
	}
	c := e.invite("m-busy")
	c.respond(486, "", "b")
	c = e.invite("m-answered")
	c.respond(200, "", "b")
	c.bye(true)
	c = e.invite("m-cancel")
	c.respond(180, "", "b")
	c.cancel()
	c.respond(487, "", "b")
	c = e.invite("unmarked-busy") // failed, acc.failed false: no record
	c.respond(486, "", "b")
	e.waitWritten(3)
	if r := e.only(true, "m-busy"); r.Code != 486 || r.EndedBy != "callee" {
		t.Fatalf("missed busy: %+v", r)
	}
	if r := e.only(true, "m-cancel"); r.Code != 487 || r.EndedBy != "caller" {
		t.Fatalf("missed cancel: %+v", r)
	}
	if r := e.only(false, "m-answered"); r.Code != 200 {
		t.Fatalf("answered: %+v", r)
	}
	if n := len(e.records(false, "unmarked-busy")) + len(e.records(true, "unmarked-busy")); n != 0 {
		t.Fatalf("failed call written with acc.failed false: %d", n)
	}
	if e.a.queued[0].Get() != 1 || e.a.queued[1].Get() != 2 {
		t.Fatalf("queued acc %d missed %d", e.a.queued[0].Get(), e.a.queued[1].Get())
	}

	// Without a dialog, neither function does anything.
	e.Route = func(c *routing.Ctx) {
		if e.a.SetExtra(c, "k", nil) || e.a.MarkMissed(c) {
			t.Error("SetExtra or MarkMissed without a dialog")
		}
		c.ReplyStateless(404, "", nil)
	}
	e.invite("nodialog")
}

// TestQueueFull: with the writer stopped, a queue of 2 takes two records
// and drops the third, counted and logged with its Call-ID; Stop still
// writes the two queued; a call that ends after Stop is dropped,
// counted and logged.
func TestQueueFull(t *testing.T) {
	s := DefaultSettings()
	s.QueueSize = 2
	e := newEnv(t, s, false)
	for _, id := range []string{"q1", "q2", "q3"} {
		c := e.invite(id)
		c.respond(486, "", "b")
	}
	if e.a.full.Get() != 1 || len(e.a.queue) != 2 {
		t.Fatalf("dropped %d, queued %d", e.a.full.Get(), len(e.a.queue))
	}
	if l := e.logs.String(); !strings.Contains(l, "queue full") || !strings.Contains(l, "call_id=q3") {
		t.Fatalf("no warning naming the dropped record: %s", l)
	}
	e.a.Stop()
	if len(e.records(false, "q1")) != 1 || len(e.records(false, "q2")) != 1 || len(e.records(false, "q3")) != 0 {
		t.Fatal("Stop did not write the queued records")
	}
	c := e.invite("late")
	c.respond(486, "", "b")
	if e.a.late.Get() != 1 || !strings.Contains(e.logs.String(), "call_id=late") {
		t.Fatalf("record after Stop: dropped %d; %s", e.a.late.Get(), e.logs.String())
	}
}

// TestStopWritesEverything: Stop right after many calls ended writes
// every record queued, in batches of batch_size.
func TestStopWritesEverything(t *testing.T) {
	s := DefaultSettings()
	s.BatchSize = 64
	e := newEnv(t, s, true)
	const n = 1000
	for i := range n {
		c := e.invite(fmt.Sprintf("s%04d", i))
		c.respond(486, "", "b")
	}
	e.a.Stop()
	cs, err := e.st.ListCDRs(t0ctx, store.CDRFilter{})
	if err != nil || len(cs) != n {
		t.Fatalf("%d records after Stop, want %d (%v)", len(cs), n, err)
	}
	if e.a.written[sinkStore].Get() != n || e.a.full.Get() != 0 {
		t.Fatalf("written %d, dropped %d", e.a.written[sinkStore].Get(), e.a.full.Get())
	}
}

// TestRecordsGathered: records that end a few milliseconds apart are
// written together (acc.batch_wait), not one transaction each; with
// batch_wait 0 each goes as soon as the writer sees it.
func TestRecordsGathered(t *testing.T) {
	for _, tc := range []struct {
		wait       time.Duration
		maxBatches uint64
	}{
		{100 * time.Millisecond, 2}, // 20 records within ~25 ms: one batch, two if the wait fell between
		{0, 20},
	} {
		s := DefaultSettings()
		s.BatchWait = tc.wait
		e := newEnv(t, s, true)
		const n = 20
		for i := range n {
			c := e.invite(fmt.Sprintf("g%02d", i))
			c.respond(486, "", "b")
			time.Sleep(time.Millisecond)
		}
		e.waitWritten(n)
		if b := e.a.batches.Get(); b > tc.maxBatches {
			t.Fatalf("batch_wait %s: %d records in %d batches, want at most %d", tc.wait, n, b, tc.maxBatches)
		}
	}
}

// TestStopEndsBatchWait: Stop does not sit out a long batch_wait; the
// record waiting is written.
func TestStopEndsBatchWait(t *testing.T) {
	s := DefaultSettings()
	s.BatchWait = 10 * time.Second
	e := newEnv(t, s, true)
	c := e.invite("w1")
	c.respond(486, "", "b")
	for e.a.queued[1].Get()+e.a.queued[0].Get() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond) // the writer is in its wait
	t0 := time.Now()
	e.a.Stop()
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("Stop took %s", d)
	}
	if e.a.written[sinkStore].Get() != 1 {
		t.Fatalf("written %d, want 1", e.a.written[sinkStore].Get())
	}
}

// TestStoreDown: a store that fails every write (closed): the record is
// kept and tried again, none given up; the file gets it at once, without
// an id; at Stop it is counted lost and logged with its Call-ID.
func TestStoreDown(t *testing.T) {
	saved := storeRetryWaits
	storeRetryWaits = []time.Duration{time.Millisecond, time.Millisecond}
	t.Cleanup(func() { storeRetryWaits = saved })
	s := DefaultSettings()
	s.File = t.TempDir() + "/cdr.csv"
	e := newEnv(t, s, true)
	e.st.Close() // every write fails from now on
	c := e.invite("down-1")
	c.respond(486, "", "b")
	deadline := time.Now().Add(5 * time.Second)
	for e.a.writeErr[sinkStore].Get() < 5 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if e.a.lost[sinkStore].Get() != 0 || e.a.writeErr[sinkStore].Get() < 5 {
		t.Fatalf("lost %d after %d errors, want 0 after 5 or more", e.a.lost[sinkStore].Get(), e.a.writeErr[sinkStore].Get())
	}
	if e.a.written[sinkFile].Get() != 1 {
		t.Fatalf("file written %d", e.a.written[sinkFile].Get())
	}
	e.a.Stop()
	if e.a.lost[sinkStore].Get() != 1 {
		t.Fatalf("lost %d at Stop, want 1", e.a.lost[sinkStore].Get())
	}
	if l := e.logs.String(); !strings.Contains(l, "not written to the store before the stop") || !strings.Contains(l, "down-1") {
		t.Fatalf("log: %s", l)
	}
}

// TestSettingsChecked: bad values are errors naming the key.
func TestSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		mod  func(s *Settings)
		want string
	}{
		{func(s *Settings) { s.Format = "xml" }, "format"},
		{func(s *Settings) { s.FileMaxSize = "10 parsecs" }, "file_max_size"},
		{func(s *Settings) { s.FileMaxSize = "1KiB" }, "file_max_size"},
		{func(s *Settings) { s.FileKeep = -1 }, "file_keep"},
		{func(s *Settings) { s.QueueSize = 0 }, "queue_size"},
		{func(s *Settings) { s.BatchSize = 0 }, "batch_size"},
		{func(s *Settings) { s.BatchWait = -time.Second }, "batch_wait"},
		{func(s *Settings) { s.BatchWait = time.Minute }, "batch_wait"},
	} {
		s := DefaultSettings()
		tc.mod(s)
		err := checkSettings(s)
		var ke *modules.KeyError
		if err == nil || !errorsAs(err, &ke) || ke.Key != tc.want {
			t.Errorf("%s: %v", tc.want, err)
		}
	}
	for in, want := range map[string]int64{"4096": 4096, "100MiB": 100 << 20, "64KiB": 64 << 10, "2GB": 2e9, "5 MB": 5e6} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v", in, got, err)
		}
	}
	if err := checkSettings(DefaultSettings()); err != nil {
		t.Fatal(err)
	}
}

// TestReload: the file keys and store/failed apply at once; the queue's
// size and turning accounting off need a restart: CheckReload names them
// (not a refusal), and Reload applies the rest and keeps them in force.
func TestReload(t *testing.T) {
	e := newEnv(t, nil, true)
	s := DefaultSettings()
	s.File = t.TempDir() + "/cdr.json"
	s.Format = "json"
	s.Failed = false
	if err := e.a.Reload(s); err != nil {
		t.Fatal(err)
	}
	if f := e.a.file.Load(); f == nil || f.path != s.File || f.format != "json" || e.a.failed.Load() {
		t.Fatalf("not applied: %+v", f)
	}
	s2 := *s
	s2.QueueSize, s2.Failed = 5, true
	if keys := restartKeys(e.a.CheckReload(&s2)); keys != "queue_size" {
		t.Fatalf("queue_size: CheckReload names %q as needing a restart, want queue_size", keys)
	}
	if err := e.a.Reload(&s2); err != nil || s2.QueueSize != s.QueueSize || !e.a.failed.Load() {
		t.Fatalf("queue_size: %v, settings left with %d, failed %v", err, s2.QueueSize, e.a.failed.Load())
	}
	// Off: store and file stay as they are, format is applied.
	s3 := *s
	s3.Store, s3.File, s3.Format = false, "", "csv"
	if keys := restartKeys(e.a.CheckReload(&s3)); keys != "store,file" {
		t.Fatalf("off: CheckReload names %q as needing a restart, want store,file", keys)
	}
	if err := e.a.Reload(&s3); err != nil || s3.Store != s.Store || s3.File != s.File {
		t.Fatalf("off: %v, settings left with store %v, file %q", err, s3.Store, s3.File)
	}
	if f := e.a.file.Load(); f == nil || f.path != s.File || f.format != "csv" || e.a.toStore.Load() != s.Store {
		t.Fatalf("off: in force %+v, store %v; want the file kept, in csv", f, e.a.toStore.Load())
	}
}

// restartKeys lists the keys err names as needing a restart; an error
// that names none makes it answer "refused: " and the error.
func restartKeys(err error) string {
	var keys []string
	for _, one := range inJoin(err) {
		var ke *modules.KeyError
		if !errors.As(one, &ke) || !ke.Restart {
			return "refused: " + one.Error()
		}
		keys = append(keys, ke.Key)
	}
	return strings.Join(keys, ",")
}

func inJoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// TestStoreRefusesOne: a record the store would refuse (a Call-ID longer
// than it keeps) is left out of its batch on its own, counted and
// logged; the records around it are written and get their ids.
func TestStoreRefusesOne(t *testing.T) {
	e := newEnv(t, nil, false)
	rec := func(callID string) store.CDR {
		return store.CDR{CallID: callID, Start: 1_700_000_000_000, End: 1_700_000_001_000, Code: 200}
	}
	long := strings.Repeat("x", store.MaxCDRText+1)
	batch := []store.CDR{rec("keep-1"), rec(long), rec("keep-2"), rec(long), rec("keep-3")}
	e.a.writeStore(&storeSink{}, batch)
	if got := e.a.lost[sinkStore].Get(); got != 2 {
		t.Fatalf("lost %d, want 2", got)
	}
	if got := e.a.written[sinkStore].Get(); got != 3 {
		t.Fatalf("written %d, want 3", got)
	}
	for _, i := range []int{0, 2, 4} {
		r := e.only(false, batch[i].CallID)
		if batch[i].ID == 0 || batch[i].ID != r.ID {
			t.Errorf("%s: id %d in the batch, %d in the store", batch[i].CallID, batch[i].ID, r.ID)
		}
	}
	if batch[1].ID != 0 || batch[3].ID != 0 {
		t.Errorf("refused records got ids %d, %d", batch[1].ID, batch[3].ID)
	}
	if l := e.logs.String(); strings.Count(l, "refused by the store") != 2 {
		t.Fatalf("log: %s", l)
	}
	// All good: written as they are, ids set in place.
	good := []store.CDR{rec("all-1"), rec("all-2")}
	e.a.writeStore(&storeSink{}, good)
	if good[0].ID == 0 || good[1].ID != good[0].ID+1 {
		t.Fatalf("ids %d, %d", good[0].ID, good[1].ID)
	}
}
