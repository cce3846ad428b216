package transport

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw socket addresses are converted by hand: unix.Sockaddr is an interface
// and building one allocates, which the receive and send paths must not do.

// putSockaddr writes ap into rsa and returns the length to pass to the
// kernel. IPv4-mapped IPv6 addresses are written as IPv4 when v6 is false.
func putSockaddr(rsa *unix.RawSockaddrInet6, ap netip.AddrPort, v6 bool) uint32 {
	addr := ap.Addr()
	port := ap.Port()
	if !v6 {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		sa.Family = unix.AF_INET
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa.Addr = addr.Unmap().As4()
		sa.Zero = [8]uint8{}
		return unix.SizeofSockaddrInet4
	}
	rsa.Family = unix.AF_INET6
	p := (*[2]byte)(unsafe.Pointer(&rsa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	rsa.Flowinfo = 0
	rsa.Addr = addr.As16()
	rsa.Scope_id = 0
	return unix.SizeofSockaddrInet6
}

// getSockaddr reads the address the kernel wrote into rsa.
func getSockaddr(rsa *unix.RawSockaddrInet6) netip.AddrPort {
	switch rsa.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&rsa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(rsa.Addr), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}

// sockaddrOf converts for the few non-hot calls (bind) that use unix.Sockaddr.
func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func addrPortOf(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// hostForURI writes an address as it appears in a SIP URI: IPv6 in brackets.
// uriHost returns a configured advertised host as Via and Record-Route
// need it: an IPv6 address in brackets (RFC 3261 §25.1), whether it was
// given with them or not ("2001:db8::1", what splitting "[2001:db8::1]:5060"
// into host and port gives); anything else as it is.
func uriHost(h string) string {
	if a, err := netip.ParseAddr(h); err == nil && a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return h
}

func hostForURI(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		return "[" + a.String() + "]"
	}
	return a.Unmap().String()
}

func closeFD(fd int) { unix.Close(fd) }
