package fieldtext

import (
	"strconv"
	"testing"
)

// TestFields: fields come back in order, empty ones included, from one
// allocation a record once the buffers have their room, and a reused
// Fields does not change the strings of the record before.
func TestFields(t *testing.T) {
	var f Fields
	f.Reset()
	f.Add([]byte("call-1@host"))
	f.Add(nil)
	f.End(strconv.AppendInt(append(f.Buf(), "udp:"...), 5060, 10))
	f.Add([]byte("tag"))
	f.Copy()
	got := []string{f.Next(), f.Next(), f.Next(), f.Next()}
	want := []string{"call-1@host", "", "udp:5060", "tag"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("field %d: %q, want %q", i, got[i], want[i])
		}
	}
	f.Reset()
	f.Add([]byte("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"))
	f.Copy()
	if got[0] != "call-1@host" || got[2] != "udp:5060" {
		t.Fatalf("the next record changed the last one's fields: %q", got)
	}
	fields := [][]byte{[]byte("a"), []byte("bb"), []byte("ccc"), []byte("dddd")}
	n := testing.AllocsPerRun(100, func() {
		f.Reset()
		for _, b := range fields {
			f.Add(b)
		}
		f.Copy()
		for range fields {
			_ = f.Next()
		}
	})
	if n != 1 {
		t.Fatalf("%v allocations a record, want 1", n)
	}
}
