package store

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkGetSubscriber is the credential lookup auth makes on a cache miss.
func BenchmarkGetSubscriber(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		s.AddDomain(ctx, "example.com")
		const n = 10000
		users := make([]string, n)
		ops := 0
		for i := range users {
			users[i] = fmt.Sprintf("user%05d", i)
			ha1 := HA1MD5(users[i], "example.com", "pw")
			if err := s.b.AddSubscriber(ctx, &Subscriber{Username: users[i], Domain: "example.com", HA1: ha1, Created: 1}); err != nil {
				b.Fatal(err)
			}
			ops++
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := s.GetSubscriber(ctx, users[i%n], "example.com"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkWriterUpsert measures sustained write-behind throughput: a
// producer queues b.N upserts (spread over 10,000 AORs, so most are
// refreshes) as fast as the writer accepts them, then flushes. ops/s is end
// to end (queued and committed); batch is the mean operations per
// transaction the writer chose.
func BenchmarkWriterUpsert(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) { benchWriterUpsert(b, db) })
}

func benchWriterUpsert(b *testing.B, db *testDB) {
	for _, maxBatch := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("maxbatch=%d", maxBatch), func(b *testing.B) {
			s := db.open(b, Options{})
			w := s.NewLocationWriter(WriterOptions{QueueSize: 16384, MaxBatch: maxBatch})
			const aors = 10000
			bs := make([]Binding, aors)
			exp := time.Now().Add(time.Hour).Unix()
			for i := range bs {
				bs[i] = binding(fmt.Sprintf("user%05d@example.com", i), fmt.Sprintf("sip:user%05d@192.0.2.1:5060", i), exp)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			full := 0
			for i := 0; i < b.N; i++ {
				for w.Upsert(bs[i%aors]) == ErrQueueFull {
					full++
					runtime.Gosched()
				}
			}
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.StopTimer()
			st := w.Stats()
			b.ReportMetric(float64(b.N)/el.Seconds(), "ops/s")
			b.ReportMetric(float64(st.Applied)/float64(st.Batches), "batch")
			w.Close()
		})
	}
}

// BenchmarkApplyBindings is the cost of one transaction of n upserts, without
// the queue: the commit cost that batching shares.
func BenchmarkApplyBindings(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) { benchApplyBindings(b, db) })
}

func benchApplyBindings(b *testing.B, db *testDB) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := db.open(b, Options{})
			exp := time.Now().Add(time.Hour).Unix()
			ops := make([]BindingOp, n)
			for i := range ops {
				ops[i] = BindingOp{Kind: OpUpsert, Binding: binding(fmt.Sprintf("user%05d@example.com", i), "sip:x@192.0.2.1", exp)}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.b.ApplyBindings(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkLoadBindings is the start-up load of 10,000 bindings.
func BenchmarkLoadBindings(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		exp := time.Now().Add(time.Hour).Unix()
		ops := make([]BindingOp, 10000)
		for i := range ops {
			ops[i] = BindingOp{Kind: OpUpsert, Binding: binding(fmt.Sprintf("user%05d@example.com", i), "sip:x@192.0.2.1", exp)}
		}
		if err := s.ApplyBindings(ctx, ops); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			bs, _, err := s.LoadBindings(ctx, time.Now())
			if err != nil || len(bs) != len(ops) {
				b.Fatal(len(bs), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/binding")
	})
}

// BenchmarkChangesPoll is the once-a-second poll when nothing changed.
func BenchmarkChangesPoll(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		s.AddDomain(ctx, "example.com")
		for i := 0; i < 100; i++ {
			s.AddSubscriber(ctx, Subscriber{Username: fmt.Sprintf("u%d", i), Domain: "example.com", Password: "p"})
		}
		since, _ := s.LastChange(ctx)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ch, next, err := s.Changes(ctx, since)
			if err != nil || len(ch) != 0 || next != since {
				b.Fatal(ch, next, err)
			}
		}
	})
}

// BenchmarkAddDRRules is an import of 10,000 routing rules in one
// transaction (drouting's rule-import).
func BenchmarkAddDRRules(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		rs := make([]DRRule, 10000)
		for i := range rs {
			rs[i] = DRRule{Groups: "0", Prefix: fmt.Sprintf("49%06d", i), GWList: "gw1", Created: 1}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.b.AddDRRules(ctx, rs, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "rules/s")
	})
}

// BenchmarkAddDialplanRules is an import of 10,000 dialplan rules in one
// transaction, replacing the table: the batched insert that names a
// duplicate (PostgreSQL: ON CONFLICT DO NOTHING in pgx batches; SQLite
// and MySQL: a prepared statement).
func BenchmarkAddDialplanRules(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		rs := make([]DialplanRule, 10000)
		for i := range rs {
			rs[i] = DialplanRule{DPID: 1, MatchOp: DialplanPrefix, MatchExp: fmt.Sprintf("49%06d", i), Created: 1}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := s.b.AddDialplanRules(ctx, rs, true); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "rules/s")
	})
}

// BenchmarkForEachDRRule walks 10,000 routing rules, as the drouting
// module's load does.
func BenchmarkForEachDRRule(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) {
		s := db.open(b, Options{})
		rs := make([]DRRule, 10000)
		for i := range rs {
			rs[i] = DRRule{Groups: "0", Prefix: fmt.Sprintf("49%06d", i), GWList: "gw1", Created: 1}
		}
		if err := s.b.AddDRRules(ctx, rs, true); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			n := 0
			if err := s.b.ForEachDRRule(ctx, DRRuleFilter{Group: -1}, func(*DRRule) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			if n != len(rs) {
				b.Fatalf("walked %d rules, want %d", n, len(rs))
			}
		}
		b.ReportMetric(float64(b.N*len(rs))/b.Elapsed().Seconds(), "rules/s")
	})
}

// BenchmarkApplyDialogs is one flush of the dialog module's writer: a
// transaction of n dialogs written (inserted, then replaced) and as many
// deleted, and LoadDialogs of 10,000 at start.
func BenchmarkApplyDialogs(b *testing.B) {
	for _, n := range []int{64, 1000} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := openT(b, b.TempDir(), Options{})
			up, del := make([]DialogOp, n), make([]DialogOp, n)
			for i := range up {
				d := testDialog(uint64(i+1), fmt.Sprintf("call-%05d-a84b4c76e66710@pc33.example.com", i))
				up[i], del[i] = DialogOp{Kind: DialogUpsert, Dialog: d}, DialogOp{Kind: DialogDelete, Dialog: Dialog{ID: d.ID}}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ops := up
				if i%2 == 1 {
					ops = del
				}
				if err := s.ApplyDialogs(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
		})
	}
	b.Run("load=10000", func(b *testing.B) {
		s := openT(b, b.TempDir(), Options{})
		ops := make([]DialogOp, 10000)
		for i := range ops {
			ops[i] = DialogOp{Kind: DialogUpsert, Dialog: testDialog(uint64(i+1), fmt.Sprintf("call-%05d-a84b4c76e66710@pc33.example.com", i))}
		}
		if err := s.ApplyDialogs(ctx, ops); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ds, bad, err := s.LoadDialogs(ctx)
			if err != nil || len(ds) != len(ops) || len(bad) != 0 {
				b.Fatal(len(ds), bad, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(ops)), "ns/dialog")
	})
}

// BenchmarkApplyDialogsOrder is the dialog writer's steady state: every
// flush writes the dialogs answered in the last interval (512, ids in
// sequence) and deletes those of the flush three before (calls that last
// three intervals). In "shards" order the new rows come in 16 runs, one
// per shard of the dialog table, each run's ids spread over the whole
// interval, as the writer took them before it sorted; in "ids" order
// they come sorted, as it writes them now.
func BenchmarkApplyDialogsOrder(b *testing.B) {
	const n, lasts, shards = 512, 3, 16
	for _, order := range []string{"shards", "ids"} {
		b.Run(order, func(b *testing.B) {
			s := openT(b, b.TempDir(), Options{})
			// id is the kth dialog the flush of interval i takes.
			id := func(i, k int) uint64 {
				if order == "shards" {
					k = k%(n/shards)*shards + k/(n/shards)
				}
				return uint64(1)<<40 + uint64(i*n+k)
			}
			ops := make([]DialogOp, 0, 2*n)
			flush := func(i int) {
				ops = ops[:0]
				for k := 0; i >= lasts && k < n; k++ {
					ops = append(ops, DialogOp{Kind: DialogDelete, Dialog: Dialog{ID: id(i-lasts, k)}})
				}
				for k := 0; k < n; k++ {
					d := testDialog(id(i, k), fmt.Sprintf("call-%016x-a84b4c76e66710@pc33.example.com", id(i, k)))
					ops = append(ops, DialogOp{Kind: DialogUpsert, Dialog: d})
				}
				if err := s.ApplyDialogs(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
			for i := 0; i < lasts; i++ {
				flush(i)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				flush(lasts + i)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/call")
		})
	}
}

// BenchmarkAddCDRs is the accounting module's batch write: batches of
// call records in one transaction each. rows/s counts records committed.
func BenchmarkAddCDRs(b *testing.B) {
	eachBackendB(b, func(b *testing.B, db *testDB) { benchAddCDRs(b, db) })
}

func benchAddCDRs(b *testing.B, db *testDB) {
	for _, batch := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			s := db.open(b, Options{})
			cs := make([]CDR, batch)
			const t0 = int64(1_700_000_000_000)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for j := range cs {
					cs[j] = cdrAt(fmt.Sprintf("%d-%d@bench", i, j), "alice", "bob", t0+int64(i), false)
					cs[j].Extra = map[string]string{"account": "1001"}
				}
				// With a deadline, as the accounting writer calls it.
				wctx, cancel := context.WithTimeout(ctx, time.Minute)
				err := s.AddCDRs(wctx, cs)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// BenchmarkListCDRs is `cdr list`: the newest 1,000 of 10,000 records,
// and one user's among them (a filter the start time index serves
// before it is tested row by row).
func BenchmarkListCDRs(b *testing.B) {
	s := openT(b, b.TempDir(), Options{})
	const t0 = int64(1_700_000_000_000)
	users := []string{"alice", "bob", "carol", "dave"}
	cs := make([]CDR, 250)
	for i := 0; i < 40; i++ {
		for j := range cs {
			n := i*len(cs) + j
			cs[j] = cdrAt(fmt.Sprintf("%d@bench", n), users[n%4], users[(n+1)%4], t0+int64(n), false)
		}
		if err := s.AddCDRs(ctx, cs); err != nil {
			b.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		f    CDRFilter
	}{{"newest=1000", CDRFilter{Limit: 1000}}, {"user=100", CDRFilter{FromUser: "carol", Limit: 100}}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				got, err := s.ListCDRs(ctx, f.f)
				if err != nil || len(got) != f.f.Limit {
					b.Fatalf("%d records, %v", len(got), err)
				}
			}
		})
	}
}
