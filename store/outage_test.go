package store

import (
	"errors"
	"fmt"
	"testing"
)

func TestOncePerOutage(t *testing.T) {
	down := fmt.Errorf("dial: %w", ErrUnavailable)
	other := errors.New("syntax error")
	var o OncePerOutage
	for i, c := range []struct {
		err  error
		want bool
	}{
		{nil, false}, {down, true}, {down, false}, {down, false}, // one outage: reported once
		{other, true}, {other, true}, // other errors every time
		{down, true}, {nil, false}, {down, true}, // a new outage after a success or another error
	} {
		if got := o.Report(c.err); got != c.want {
			t.Errorf("poll %d (%v): Report = %v, want %v", i, c.err, got, c.want)
		}
	}
}
