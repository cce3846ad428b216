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
