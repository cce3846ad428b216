package parser

import (
	"os"
	"testing"
)

func mustRead(t testing.TB, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseAllocs(t *testing.T) {
	b := mustRead(t, "testdata/bench/invite.sip")
	var m Message
	n := testing.AllocsPerRun(200, func() {
		if err := m.Parse(b); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("Parse: %v allocs/op", n)
	}
}
