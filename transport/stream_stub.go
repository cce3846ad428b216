package transport

import (
	"errors"
	"net/netip"
	"strconv"
)

type streams struct{}

func (t *Transport) bindStreams() error {
	for _, l := range t.listeners {
		if l.Proto.Stream() {
			return &ConfigError{"listeners[" + strconv.Itoa(l.Index) + "].proto", errors.New(l.Proto.String() + " is not served yet")}
		}
	}
	return nil
}
func (t *Transport) startStreams() error { return nil }
func (t *Transport) stopStreams()        {}
func (t *Transport) sendStream(l *Listener, dst netip.AddrPort, data []byte) error {
	return ErrNoListener
}
