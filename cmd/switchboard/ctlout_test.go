package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCtlTableOutput: lists of objects become columns with a header in
// the server's key order, objects KEY VALUE lines with their lists as
// sections, nested values compact JSON; control characters from SIP
// values are escaped; -o json is the result indented; -o names the keys.
func TestCtlTableOutput(t *testing.T) {
	format := func(res, f string) string {
		t.Helper()
		var b strings.Builder
		if err := writeResult(&b, json.RawMessage(res), f); err != nil {
			t.Fatalf("%s: %v", res, err)
		}
		return b.String()
	}
	got := format(`[{"aor":"alice@example.com","expires":3542,"nat":false},{"aor":"bob@example.com","expires":60,"ua":"x\r\nFAKE ROW"}]`, outTable)
	want := "AOR                EXPIRES  NAT    UA\n" +
		"alice@example.com  3542     false  \n" +
		"bob@example.com    60              x\\r\\nFAKE ROW\n"
	if got != want {
		t.Errorf("list:\n%q\nwant\n%q", got, want)
	}
	got = format(`{"version":"dev","pid":42,"ready":true,"tags":["a","b"],"limits":{"x":1},"subscribers":[{"name":"crm","queued":0}],"empty":[]}`, outTable)
	want = "version  dev\npid      42\nready    true\ntags     a,b\nempty    (none)\n" +
		"limits:\n  x  1\nsubscribers:\n  NAME  QUEUED\n  crm   0\n"
	if got != want {
		t.Errorf("object:\n%q\nwant\n%q", got, want)
	}
	if got := format(`[]`, outTable); got != "(none)\n" {
		t.Errorf("empty list: %q", got)
	}
	if got := format(`"reloaded"`, outTable); got != "reloaded\n" {
		t.Errorf("string: %q", got)
	}
	if got := format(`[{"a":{"b":[1,2]}}]`, outTable); got != "A\n{\"b\":[1,2]}\n" {
		t.Errorf("nested cell: %q", got)
	}
	if got := format(`{"b":1,"a":2}`, outJSON); got != "{\n  \"b\": 1,\n  \"a\": 2\n}\n" {
		t.Errorf("json: %q", got)
	}
	if got := format(`{"b":1,"a":2}`, outNames); got != "a\nb\n" {
		t.Errorf("names: %q", got)
	}
	var b strings.Builder
	if err := writeResult(&b, json.RawMessage(`[1]`), outNames); err == nil {
		t.Error("names of a list: no error")
	}
	if err := writeResult(&b, json.RawMessage(`{}`), "yaml"); err == nil {
		t.Error("-o yaml: no error")
	}
}
