package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"switchboard/sipdns/dnstest"
)

// TestE2EOutboundResolver: outbound.resolver names a DNS server on
// loopback that serves carrier.test per RFC 3263: NAPTR prefers TCP, whose
// SRV target is a closed port, then UDP, whose target is a sipp callee.
// Five calls to sip:callee@carrier.test through the relay route set all
// complete on both sides (each INVITE fails over from the refused TCP
// connection to the UDP target), and the answers come from the cache after
// the first call.
func TestE2EOutboundResolver(t *testing.T) {
	t.Parallel()
	needSipp(t)
	uas, dead := freeSIPPort(t), freeSIPPort(t)
	z := dnstest.NewZone(t,
		dnstest.NAPTR("carrier.test", 300, 10, 10, "s", "SIP+D2T", "_sip._tcp.carrier.test"),
		dnstest.NAPTR("carrier.test", 300, 20, 10, "s", "SIP+D2U", "_sip._udp.carrier.test"),
		dnstest.SRV("_sip._tcp.carrier.test", 300, 10, 0, dead, "dead.carrier.test"),
		dnstest.SRV("_sip._udp.carrier.test", 300, 10, 0, uas, "live.carrier.test"),
		dnstest.A("dead.carrier.test", 300, "127.0.0.1"),
		dnstest.A("live.carrier.test", 300, "127.0.0.1"),
	)
	srv := startServerWith(t, "routes: relay\n", serverOptions{Resolver: z.Addr})

	callee := startSipp(t, "-sf", "uas_callee.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(uas), "-m", "5")
	time.Sleep(200 * time.Millisecond)
	res := runSipp(t, 30*time.Second, "-sf", "uac_call_hold.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(freeSIPPort(t)),
		"-key", "ruri", "sip:callee@carrier.test",
		"-rsa", "127.0.0.1:"+strconv.Itoa(srv.Port), "-d", "200", "-m", "5", "-r", "10",
		"127.0.0.1:"+strconv.Itoa(uas))
	if res.Code != 0 {
		t.Fatalf("sipp caller exit %d:\n%s", res.Code, res.Output)
	}
	// The callee exits after its 5 calls: 0 when each was complete.
	exited := make(chan error, 1)
	go func() { exited <- callee.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("sipp callee: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("sipp callee did not finish its 5 calls")
	}
	q := z.Log()
	naptr := 0
	for _, s := range q {
		if strings.HasPrefix(s, "carrier.test/NAPTR/") {
			naptr++
		}
	}
	// Once, unless two INVITEs arrived while the first resolution was
	// still running (they are 100 ms apart): not per message.
	if naptr == 0 || naptr >= 5 {
		t.Errorf("NAPTR asked %d times for 5 calls: %v", naptr, q)
	}
	if !srv.logged("trying the next") {
		t.Errorf("no fail-over from the closed TCP target in the log:\n%s", srv.Log)
	}
}
