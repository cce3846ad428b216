package siptrace

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"switchboard/transport"
)

// FuzzHEP3: ParseHEP3 takes any bytes without panicking, and a record
// built from the fuzz input reads back as encoded (IPv4-mapped addresses
// as IPv4 or both as IPv6, type 0 as SIP, a stream as TCP).
func FuzzHEP3(f *testing.F) {
	r := Record{Proto: transport.UDP, Src: netip.MustParseAddrPort("192.0.2.1:5060"),
		Dst: netip.MustParseAddrPort("198.51.100.2:5080"), Sec: 1600000000, Usec: 123456, NodeID: 2001,
		Password: []byte("pw"), CallID: []byte("ab@c"), Payload: []byte("OPTIONS sip:x SIP/2.0\r\n\r\n")}
	pkt, _ := AppendHEP3(nil, &r)
	f.Add(pkt, []byte("\x00\x01"), uint8(0))
	r.Src, r.Proto, r.Type = netip.MustParseAddrPort("[2001:db8::1]:5061"), transport.TLS, ProtoTypeLog
	pkt, _ = AppendHEP3(nil, &r)
	f.Add(pkt, []byte("\xff\xff\x7f\x00\x00\x01\x00\x00"), uint8(3))
	f.Add([]byte("HEP3\x00\x06"), []byte{}, uint8(255))
	f.Fuzz(func(t *testing.T, packet, addrs []byte, sel uint8) {
		var back Record
		if ParseHEP3(packet, &back) == nil {
			if n := int(binary.BigEndian.Uint16(packet[4:])); len(back.Payload) > n || len(back.CallID) > n || len(back.Password) > n {
				t.Fatalf("%q: chunks longer than the packet's %d bytes", packet, n)
			}
		}

		// A record from the fuzz input: the packet's bytes as the payload,
		// the others cut into addresses, ports and texts.
		var a [36]byte
		copy(a[:], addrs)
		src, dst := netip.AddrFrom16([16]byte(a[0:16])), netip.AddrFrom16([16]byte(a[16:32]))
		if sel&1 != 0 {
			src = netip.AddrFrom4([4]byte(a[0:4]))
		}
		if sel&2 != 0 {
			dst = netip.AddrFrom4([4]byte(a[16:20]))
		}
		split := len(packet) / 3
		rec := Record{Proto: transport.Proto(sel >> 2 % 5), Src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(a[32:])),
			Dst: netip.AddrPortFrom(dst, binary.BigEndian.Uint16(a[34:])), Sec: uint32(len(addrs)), Usec: uint32(sel),
			NodeID: uint32(len(packet)), Password: packet[:split/2], CallID: packet[split/2 : split],
			Payload: packet[split:], Type: sel >> 5}
		enc, err := AppendHEP3(nil, &rec)
		if err != nil {
			if EncodedLen(&rec) <= maxHEP {
				t.Fatalf("%+v: %v, at %d bytes", rec, err, EncodedLen(&rec))
			}
			return
		}
		if len(enc) != EncodedLen(&rec) {
			t.Fatalf("%+v: %d bytes, EncodedLen says %d", rec, len(enc), EncodedLen(&rec))
		}
		if err := ParseHEP3(enc, &back); err != nil {
			t.Fatalf("%+v encodes to %q, which does not read back: %v", rec, enc, err)
		}
		wantType := rec.Type
		if wantType == 0 {
			wantType = protoTypeSIP
		}
		wantProto := transport.UDP
		if rec.Proto.Stream() {
			wantProto = transport.TCP
		}
		unmapped := func(ap netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) }
		if unmapped(back.Src) != unmapped(rec.Src) || unmapped(back.Dst) != unmapped(rec.Dst) || back.Proto != wantProto ||
			back.Sec != rec.Sec || back.Usec != rec.Usec || back.NodeID != rec.NodeID || back.Type != wantType ||
			string(back.Password) != string(rec.Password) || string(back.CallID) != string(rec.CallID) ||
			string(back.Payload) != string(rec.Payload) {
			t.Fatalf("%+v reads back as %+v", rec, back)
		}
	})
}
