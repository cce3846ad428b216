package config

import (
	"strings"
	"testing"
	"time"

	"switchboard/modules/rtpengine" // its section is in default.yaml
)

func TestRtpengineSection(t *testing.T) {
	cfg, err := Load("x.yaml", []byte("rtpengine:\n  instances: [\"udp:127.0.0.1:2223\", \"udp:127.0.0.2:2223=3\"]\n  timeout: 300ms\n  flags: \"ICE=remove RTP/AVP direction=pub direction=priv\"\n  on_unavailable: relay\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Modules["rtpengine"].(*rtpengine.Settings)
	if len(s.Instances) != 2 || s.Timeout != 300*time.Millisecond || s.Retries != 2 || s.OnUnavailable != "relay" {
		t.Fatalf("%+v", s)
	}
	for _, c := range []struct{ in, want string }{
		{"rtpengine:\n  instances: [\"udp:rtp.example.com:2223\"]\n", "x.yaml:2: rtpengine.instances[0]: \"udp:rtp.example.com:2223\": want udp:IP:port"},
		{"rtpengine:\n  instances: [\"udp:127.0.0.1:2223\", \"127.0.0.1:2223=2\"]\n", "x.yaml:2: rtpengine.instances[1]: 127.0.0.1:2223 is listed twice"},
		{"rtpengine:\n  timeout: 1ms\n", "x.yaml:2: rtpengine.timeout"},
		{"rtpengine:\n  retries: 11\n", "x.yaml:2: rtpengine.retries"},
		{"rtpengine:\n  disable_timeout: 0s\n", "x.yaml:2: rtpengine.disable_timeout"},
		{"rtpengine:\n  ping_interval: 5ms\n", "x.yaml:2: rtpengine.ping_interval"},
		{"rtpengine:\n  flags: \"call-id=x\"\n", "x.yaml:2: rtpengine.flags: flag \"call-id=x\": call-id is set by the module"},
		{"rtpengine:\n  on_unavailable: drop\n", "x.yaml:2: rtpengine.on_unavailable: must be reject or relay"},
		{"outbound:\n  allow: [127.0.0.0/8]\nrtpengine:\n  instances: [\"udp:127.0.0.1:2223\", \"2 == udp:10.0.0.8:2223=2\"]\n",
			"x.yaml:4: rtpengine.instances[1]: 10.0.0.8:2223 is outside outbound.allow"},
		{"rtpengine:\n  bind_address: \"::\"\n", "x.yaml:2: rtpengine.bind_address: :: is the wildcard address"},
	} {
		_, err := Load("x.yaml", []byte(c.in), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.in, err, c.want)
		}
	}
}
