package ng

import (
	"bytes"
	"testing"
)

// An offer's answer as rtpengine sends it (captured from rtpengine
// 11.x): result, sdp and a nested dictionary.
const realAnswer = "d3:sdp148:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:30001\r\na=ptime:20\r\n6:result2:ok8:warnings" +
	"l11:one warninge6:totalsd3:RTPd7:packetsi42e5:bytesi-7eeee"

func TestDecodeAnswer(t *testing.T) {
	var d Decoder
	v, err := d.Decode([]byte(realAnswer))
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind() != KindDict || v.Len() != 4 {
		t.Fatalf("kind %d len %d", v.Kind(), v.Len())
	}
	if got := string(v.Get("result").Bytes()); got != "ok" {
		t.Fatalf("result %q", got)
	}
	if sdp := v.Get("sdp").Bytes(); !bytes.HasPrefix(sdp, []byte("v=0\r\n")) || !bytes.HasSuffix(sdp, []byte("a=ptime:20\r\n")) {
		t.Fatalf("sdp %q", sdp)
	}
	if w := v.Get("warnings"); w.Kind() != KindList || w.Len() != 1 || string(w.Index(0).Bytes()) != "one warning" || w.Index(1).Kind() != KindNone {
		t.Fatalf("warnings %q", w.Raw())
	}
	p, ok := v.Get("totals").Get("RTP").Get("packets").Int()
	if !ok || p != 42 {
		t.Fatalf("packets %d %v", p, ok)
	}
	if b, ok := v.Get("totals").Get("RTP").Get("bytes").Int(); !ok || b != -7 {
		t.Fatalf("bytes %d", b)
	}
	if v.Get("missing").Kind() != KindNone || v.Get("result").Get("x").Kind() != KindNone {
		t.Fatal("absent values")
	}
	k, val := v.Entry(1)
	if string(k) != "result" || string(val.Raw()) != "2:ok" {
		t.Fatalf("entry 1: %q %q", k, val.Raw())
	}
	if string(v.Get("totals").Get("RTP").Get("packets").Raw()) != "i42e" {
		t.Fatal("raw int")
	}
	// A string whose content is digits, right before another string: Raw
	// must not run into it.
	v, err = d.Decode([]byte("l1:13:abce"))
	if err != nil || string(v.Index(1).Raw()) != "3:abc" {
		t.Fatalf("%v %q", err, v.Index(1).Raw())
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	b := AppendDict(nil)
	b = AppendKeyStr(b, "command", "offer")
	b = AppendKeyString(b, "sdp", []byte("v=0\r\n"))
	b = AppendStr(b, "flags")
	b = AppendList(b)
	b = AppendStr(b, "trust-address")
	b = AppendEnd(b)
	b = AppendStr(b, "n")
	b = AppendInt(b, -12)
	b = AppendEnd(b)
	want := "d7:command5:offer3:sdp5:v=0\r\n5:flagsl13:trust-addresse1:ni-12ee"
	if string(b) != want {
		t.Fatalf("got %q", b)
	}
	var d Decoder
	v, err := d.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Get("command").Bytes()) != "offer" || string(v.Get("flags").Index(0).Bytes()) != "trust-address" {
		t.Fatal("round trip")
	}
	if n, _ := v.Get("n").Int(); n != -12 {
		t.Fatal(n)
	}
	if string(v.Raw()) != want {
		t.Fatal("raw")
	}
}

// Every malformed input is refused with an error, never a panic or a
// value read past the end.
func TestDecodeMalformed(t *testing.T) {
	for _, in := range []string{
		"", "d", "l", "i", "ie", "i-e", "i01e", "i-0e", "i12", "i1x2e",
		"5:abc", "01:a", "-1:a", "99999999999:a", "3abc", ":",
		"d3:keye",        // a key without a value
		"di1e1:ae",       // an integer key
		"d1:a1:b",        // no end
		"le1:a",          // data after the value
		"x", "d1:ai1ee1", // trailing
		"i123456789012345678901e", // too long
	} {
		var d Decoder
		if _, err := d.Decode([]byte(in)); err == nil {
			t.Errorf("%q decoded", in)
		}
	}
	deep := bytes.Repeat([]byte("l"), MaxDepth+1)
	deep = append(deep, bytes.Repeat([]byte("e"), MaxDepth+1)...)
	var d Decoder
	if _, err := d.Decode(deep); err != ErrTooDeep {
		t.Errorf("deep: %v", err)
	}
	ok := bytes.Repeat([]byte("l"), MaxDepth)
	ok = append(ok, bytes.Repeat([]byte("e"), MaxDepth)...)
	if _, err := d.Decode(ok); err != nil {
		t.Errorf("depth %d: %v", MaxDepth, err)
	}
	many := []byte("l")
	for i := 0; i < MaxTokens; i++ {
		many = append(many, "i1e"...)
	}
	many = append(many, 'e')
	if _, err := d.Decode(many); err != ErrTooLarge {
		t.Errorf("many: %v", err)
	}
	// An integer beyond int64 decodes as a value but does not read as one.
	v, err := d.Decode([]byte("i99999999999999999999e"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Int(); ok {
		t.Error("overflow read as int64")
	}
	v, _ = d.Decode([]byte("i-9223372036854775808e"))
	if n, ok := v.Int(); !ok || n != -9223372036854775808 {
		t.Errorf("min int64: %d %v", n, ok)
	}
}

func TestCodecAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	var d Decoder
	in := []byte(realAnswer)
	buf := make([]byte, 0, 512)
	sdp := []byte("v=0\r\no=- 1 1 IN IP4 192.168.1.10\r\n")
	n := testing.AllocsPerRun(200, func() {
		v, err := d.Decode(in)
		if err != nil || len(v.Get("sdp").Bytes()) == 0 {
			t.Fatal(err)
		}
		buf = encodeOffer(buf[:0], sdp)
	})
	if n != 0 {
		t.Fatalf("%.1f allocations per decode and encode", n)
	}
}

func encodeOffer(b, sdp []byte) []byte {
	b = AppendDict(b)
	b = AppendKeyStr(b, "command", "offer")
	b = AppendKeyString(b, "call-id", []byte("a84b4c76e66710@pc33.atlanta.example.com"))
	b = AppendKeyString(b, "from-tag", []byte("1928301774"))
	b = AppendKeyString(b, "sdp", sdp)
	b = AppendStr(b, "flags")
	b = AppendList(b)
	b = AppendStr(b, "trust-address")
	b = AppendEnd(b)
	b = AppendStr(b, "replace")
	b = AppendList(b)
	b = AppendStr(b, "origin")
	b = AppendStr(b, "session-connection")
	b = AppendEnd(b)
	return AppendEnd(b)
}

func BenchmarkDecodeAnswer(b *testing.B) {
	var d Decoder
	in := []byte(realAnswer)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for i := 0; i < b.N; i++ {
		v, err := d.Decode(in)
		if err != nil || v.Get("sdp").Kind() != KindString {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeOffer(b *testing.B) {
	sdp := bytes.Repeat([]byte("a=x\r\n"), 60)
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = encodeOffer(buf[:0], sdp)
	}
	b.SetBytes(int64(len(buf)))
}

// FuzzDecode: any input decodes or is refused; what decodes re-encodes to
// itself through Raw, and every accessor stays inside the input.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{realAnswer, "d7:command4:pinge", "d6:result4:ponge", "li1ei-2e0:e", "de", "le"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Decoder
		v, err := d.Decode(in)
		if err != nil {
			return
		}
		if !bytes.Equal(v.Raw(), in) {
			t.Fatalf("raw %q of %q", v.Raw(), in)
		}
		walk(t, v, 0)
	})
}

func walk(t *testing.T, v Value, depth int) {
	if depth > MaxDepth+1 {
		t.Fatal("deeper than the limit")
	}
	switch v.Kind() {
	case KindList:
		for i := 0; i < v.Len(); i++ {
			walk(t, v.Index(i), depth+1)
		}
	case KindDict:
		for i := 0; i < v.Len(); i++ {
			k, x := v.Entry(i)
			if x.Kind() == KindNone {
				t.Fatalf("entry %d of %q has no value", i, v.Raw())
			}
			if v.Get(string(k)).Kind() == KindNone {
				t.Fatalf("key %q not found", k)
			}
			walk(t, x, depth+1)
		}
	case KindInt:
		v.Int()
	case KindString:
		_ = v.Bytes()
	}
}
