package registrar

// Why a binding went, in E_UL_CONTACT_DELETE's reason.
const (
	goneUnregistered = "unregistered" // a REGISTER with expires 0, or "*"
	goneExpired      = "expired"
	goneRemoved      = "removed"     // the management API (registrations.remove)
	goneUnreachable  = "unreachable" // NAT keepalives unanswered
)

// raiseContact raises E_UL_CONTACT_INSERT, _UPDATE or _DELETE for b of
// the AOR key (OpenSIPS usrloc's events, with their fields). It costs
// nothing when nobody subscribed; the shard is locked and raising never
// waits.
func (r *Registrar) raiseContact(name string, key []byte, b *binding, now int64, reason string) {
	ev := r.cfg.Events.Begin(name)
	if ev == nil {
		return
	}
	ev.Bytes("aor", key).Bytes("uri", b.contact).AddrPort("received", b.src).
		Str("transport", b.proto.String()).AddrPort("socket", b.socket).
		Int("expires", max(0, (b.expires-now+999)/1000)).Int("q", int64(b.q)).
		Bytes("callid", b.callID).Int("cseq", int64(b.cseq)).Bytes("user_agent", b.ua).
		Bytes("path", b.path).Bytes("instance", b.instance).Int("reg_id", int64(b.regID)).Bool("nat", b.nat)
	if reason != "" {
		ev.Str("reason", reason)
	}
	ev.Raise()
}
