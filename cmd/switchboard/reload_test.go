package main

import (
	"reflect"
	"strings"
	"testing"

	"switchboard/cmd/switchboard/config"
)

// reloadedLive are the keys of config.Config a reload applies while the
// server runs (server.reload); the modules' sections say for themselves.
var reloadedLive = []string{"domains", "log.level", "tls", "outbound.allow"}

// TestRestartKeysCoverEveryKey: every key of the configuration is either
// applied by a SIGHUP or, when it changed, named by restartKeys in the
// reload's need_restart. A key added to config.Config and forgotten in
// both fails here: a SIGHUP would have logged nothing about it while the
// old value stayed in force (as outbound.*, tls.* and anycast.* did).
func TestRestartKeysCoverEveryKey(t *testing.T) {
	var walk func(path string, typ reflect.Type, index []int)
	walk = func(path string, typ reflect.Type, index []int) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "-" {
				continue // unexported: parsed from a key; "-": the modules
			}
			if tag == "" {
				t.Fatalf("%s: field %s has no yaml key", path, f.Name)
			}
			key := strings.TrimPrefix(path+"."+tag, ".")
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(key, f.Type, idx)
				continue
			}
			old, cfg := config.Default(), config.Default()
			change(t, key, reflect.ValueOf(cfg).Elem().FieldByIndex(idx))
			got := restartKeys(old, cfg)
			if live(key) {
				if len(got) != 0 {
					t.Errorf("%s is applied by a reload, yet listed as needing a restart: %v", key, got)
				}
				continue
			}
			if len(got) != 1 || !(got[0] == key || strings.HasPrefix(key, got[0]+".")) {
				t.Errorf("%s changed: restartKeys says %v; a reload neither applies it nor says it needs a restart", key, got)
			}
		}
	}
	walk("", reflect.TypeOf(config.Config{}), nil)
}

func live(key string) bool {
	for _, k := range reloadedLive {
		if key == k || strings.HasPrefix(key, k+".") {
			return true
		}
	}
	return false
}

// change makes v differ from its value.
func change(t *testing.T, key string, v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Slice:
		e := reflect.New(v.Type().Elem()).Elem()
		if e.Kind() == reflect.String {
			e.SetString("x")
		}
		v.Set(reflect.Append(v, e))
	default:
		t.Fatalf("%s: cannot change a %s; teach change", key, v.Type())
	}
}
