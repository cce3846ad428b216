package modules

import (
	"errors"
	"flag"
	"reflect"
	"testing"
)

func TestParseFlagsInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("x add", flag.ContinueOnError)
	group := fs.Int("group", 0, "")
	pos, err := ParseFlags(fs, []string{"192.0.2.1", "--group", "2", "note", "-group=3"})
	if err != nil || !reflect.DeepEqual(pos, []string{"192.0.2.1", "note"}) || *group != 3 {
		t.Fatalf("%v %v %d", pos, err, *group)
	}
	var ke *KeyError
	if _, err := ParseFlags(fs, []string{"a", "--nope"}); !errors.As(err, &ke) || ke.Msg == "" {
		t.Fatalf("bad flag: %v", err)
	}
	if _, err := ParseFlags(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
}
