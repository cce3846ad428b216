package permissions

import (
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"switchboard/store"
	"switchboard/transport"
)

// mixedRows makes n distinct address entries, as the store holds them,
// the way a large provider's table looks: half single IPv4 addresses, a
// fifth IPv4 subnets of three sizes, the rest IPv6 addresses and /64 and
// /48 prefixes, in ten groups, a few with ports, transports and
// patterns. benchCases looks up addresses in them.
func mixedRows(n int) []store.Address {
	rows := make([]store.Address, 0, n)
	add := func(a store.Address) {
		a.ID = int64(len(rows) + 1)
		a.Group = 1 + len(rows)%10
		if err := store.NormalizeAddress(&a); err != nil { // as the store holds it
			panic(err)
		}
		rows = append(rows, a)
	}
	add(store.Address{IP: "192.0.2.10", Pattern: `^sip:\+49[0-9]+@`})
	for i := 0; len(rows) < n; i++ {
		j := i / 10 // counts the entries of each kind
		switch i % 10 {
		case 0, 1, 2, 3, 4:
			a := store.Address{IP: fmt.Sprintf("11.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)}
			if i%50 == 0 {
				a.Port, a.Proto = 5060, "udp"
			}
			add(a)
		case 5:
			add(store.Address{IP: fmt.Sprintf("12.%d.%d.0/24", j>>8&0xff, j&0xff)})
		case 6:
			add(store.Address{IP: fmt.Sprintf("13.%d.%d.%d/28", j>>12&0xff, j>>4&0xff, (j&0xf)<<4)})
		case 7:
			add(store.Address{IP: fmt.Sprintf("%d.%d.%d.0/20", 14+j>>12, j>>4&0xff, (j&0xf)<<4)})
		case 8:
			add(store.Address{IP: fmt.Sprintf("2001:db8:%x:%x::1", j>>16&0xffff, j&0xffff)})
		case 9:
			if j%2 == 0 {
				add(store.Address{IP: fmt.Sprintf("2001:db9:%x:%x::/64", j>>16&0xffff, j&0xffff)})
			} else {
				add(store.Address{IP: fmt.Sprintf("2001:dba:%x::/48", j&0xffff)})
			}
		}
	}
	return rows
}

func benchModule(tb testing.TB, n int) *Permissions {
	rows := mixedRows(n)
	tab := buildTable(rows, subjectFrom, nil, func(a store.Address, err error) { tb.Fatalf("%+v: %v", a, err) })
	if tab.entries != n {
		tb.Fatalf("%d entries, want %d", tab.entries, n)
	}
	set := metrics.NewSet()
	p := &Permissions{checks: set.NewCounter("c"), matches: set.NewCounter("m")}
	p.tab.Store(tab)
	return p
}

type benchCase struct {
	name    string
	group   int
	addr    netip.Addr
	port    uint16
	subject []byte
	want    bool
}

func benchCases() []benchCase {
	return []benchCase{
		// 11.0.0.1 is the third row: group 3. The others are the 30th
		// entry of their kind.
		{"exact-hit", 3, netip.MustParseAddr("11.0.0.1"), 5060, nil, true},
		{"exact-any-group", 0, netip.MustParseAddr("11.0.0.1"), 5060, nil, true},
		{"miss", 1, netip.MustParseAddr("198.51.100.77"), 5060, nil, false},
		{"subnet-hit", 0, netip.MustParseAddr("12.0.30.77"), 5060, nil, true},
		{"subnet-28-hit", 0, netip.MustParseAddr("13.0.1.237"), 5060, nil, true},
		{"ipv6-exact-hit", 0, netip.MustParseAddr("2001:db8:0:1e::1"), 5060, nil, true},
		{"ipv6-subnet-hit", 0, netip.MustParseAddr("2001:dba:1f::abcd"), 5060, nil, true},
		{"ipv6-miss", 0, netip.MustParseAddr("2001:dbf::1"), 5060, nil, false},
		{"pattern-hit", 1, netip.MustParseAddr("192.0.2.10"), 5060, []byte("sip:+4930123456@gw.example.net"), true},
		{"pattern-miss", 1, netip.MustParseAddr("192.0.2.10"), 5060, []byte("sip:+1202555@gw.example.net"), false},
	}
}

// BenchmarkCheckAddress is the cost of check_source_address with 1,000
// and 100,000 entries: the same per lookup, whatever the table size.
func BenchmarkCheckAddress(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		p := benchModule(b, n)
		for _, c := range benchCases() {
			if _, ok := p.CheckAddress(c.group, c.addr, c.port, transport.UDP, c.subject); ok != c.want {
				b.Fatalf("%s with %d entries: %v, want %v", c.name, n, ok, c.want)
			}
			b.Run("entries="+strconv.Itoa(n)+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					p.CheckAddress(c.group, c.addr, c.port, transport.UDP, c.subject)
				}
			})
		}
	}
}

// BenchmarkInGroup is what the pike module pays per datagram to exempt
// trusted sources.
func BenchmarkInGroup(b *testing.B) {
	p := benchModule(b, 100_000)
	for _, c := range []struct {
		name string
		addr netip.Addr
	}{
		{"hit", netip.MustParseAddr("11.0.0.1")},
		{"miss", netip.MustParseAddr("198.51.100.77")},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.InGroup(3, c.addr)
			}
		})
	}
}

// BenchmarkBuildTable is the CPU of a reload of 100,000 entries, once
// they are read from the store.
func BenchmarkBuildTable(b *testing.B) {
	rows := mixedRows(100_000)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buildTable(rows, subjectFrom, nil, nil)
	}
}

func TestCheckAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	p := benchModule(t, 100_000)
	for _, c := range benchCases() {
		if _, ok := p.CheckAddress(c.group, c.addr, c.port, transport.UDP, c.subject); ok != c.want {
			t.Fatalf("%s: %v, want %v", c.name, ok, c.want)
		}
		if n := testing.AllocsPerRun(1000, func() { p.CheckAddress(c.group, c.addr, c.port, transport.UDP, c.subject) }); n != 0 {
			t.Errorf("%s: %.1f allocations per check", c.name, n)
		}
	}
	a := netip.MustParseAddr("12.0.5.77")
	if n := testing.AllocsPerRun(1000, func() { p.InGroup(0, a) }); n != 0 {
		t.Errorf("InGroup: %.1f allocations", n)
	}
}

// BenchmarkReload is a whole reload of 100,000 entries as the poller does
// it: read the table from SQLite, build the snapshot (patterns reused).
func BenchmarkReload(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.AddAddresses(ctx, mixedRows(100_000)); err != nil {
		b.Fatal(err)
	}
	prev := emptyTable
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rows, err := st.ListAddresses(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		prev = buildTable(rows, subjectFrom, prev, nil)
	}
}

var tableSink *table

// TestTableMemory reports the live heap of a 100,000-entry table (the
// README's figure) and bounds it, so a change that bloats entries shows.
func TestTableMemory(t *testing.T) {
	rows := mixedRows(100_000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tableSink = buildTable(rows, subjectFrom, nil, nil)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(len(rows))
	tableSink = nil
	runtime.KeepAlive(rows) // the rows are not part of the table
	t.Logf("%d bytes of heap per entry", per)
	if per > 200 {
		t.Errorf("%d bytes per entry", per)
	}
}
