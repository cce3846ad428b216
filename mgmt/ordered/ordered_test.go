package ordered

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeKeepsKeyOrder(t *testing.T) {
	v, err := Decode([]byte(`{"z":1,"a":[{"y":true,"b":null}],"m":"s","z":2}`))
	if err != nil {
		t.Fatal(err)
	}
	o := v.(*Object)
	if !reflect.DeepEqual(o.Keys, []string{"z", "a", "m"}) {
		t.Fatalf("keys %v", o.Keys)
	}
	if o.Vals["z"] != json.Number("2") || o.Vals["m"] != "s" {
		t.Fatalf("values %v", o.Vals)
	}
	inner := o.Vals["a"].([]any)[0].(*Object)
	if !reflect.DeepEqual(inner.Keys, []string{"y", "b"}) || inner.Vals["y"] != true || inner.Vals["b"] != nil {
		t.Fatalf("nested %+v", inner)
	}
	if p := o.Plain(); p["a"].([]any)[0].(*Object) != inner || p["m"] != "s" {
		t.Fatalf("plain %v", p)
	}
	for _, bad := range []string{``, `{"a":`, `[1,`, `{"a" 1}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// An object re-encodes with its keys in document order, nested ones too,
// numbers as they were written.
func TestMarshalKeepsKeyOrder(t *testing.T) {
	in := `{"z":1,"a":[{"y":true,"b":null}],"m":"s\"<","n":12345678901234567890}`
	v, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":1,"a":[{"y":true,"b":null}],"m":"s\"\u003c","n":12345678901234567890}`; string(out) != want {
		t.Fatalf("re-encoded %s, want %s", out, want)
	}
	if out, _ := json.Marshal(&Object{Vals: map[string]any{}}); string(out) != "{}" {
		t.Fatalf("empty object: %s", out)
	}
}
