package store

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DialplanRule is one row of the dialplan table, the rules of the dialplan
// module (OpenSIPS and Kamailio: a row of their dialplan table). Rules are
// grouped by DPID; a route translates an input (a number, a user part)
// with the rules of one DPID: the best rule that matches the input gives
// the output, built from ReplExp.
type DialplanRule struct {
	ID int64
	// DPID is the dialplan the rule belongs to (0 or more).
	DPID int
	// Priority orders the rules of a dialplan (pr): the lowest number that
	// matches wins. At equal priority an exact rule wins over a prefix
	// rule, a longer prefix over a shorter one, and both over regular
	// expressions, which are tried by ID.
	Priority int
	// MatchOp is how MatchExp is compared with the input: DialplanExact
	// (the whole input), DialplanPrefix (the input starts with it) or
	// DialplanRegex (a Go regular expression, RE2 syntax, that matches
	// somewhere in the input: anchor it with ^ and $).
	MatchOp string
	// MatchExp is the string, prefix or regular expression. A prefix is
	// made of digits, '+', '*' and '#' and may be empty (every input).
	MatchExp string
	// MatchFlags: DialplanCaseInsensitive makes exact and regex rules
	// ignore case.
	MatchFlags int
	// SubstExp, regex rules only, is a regular expression whose first
	// match in the input is replaced by ReplExp, the rest of the input
	// kept (sed's s/subst/repl/). Empty: ReplExp replaces the whole input.
	SubstExp string
	// ReplExp is the output. It may refer to parts of the input with \0
	// to \9: \0 is the whole input (for regex rules, the part matched),
	// for prefix rules \1 is the prefix and \2 what follows it, for regex
	// rules \N is group N of SubstExp, or of MatchExp without SubstExp.
	// \\ is a backslash. Empty: the output is the input unchanged (the
	// rule only matches, for its Attrs).
	ReplExp string
	// Attrs is free text handed to the route with the output: a tariff, a
	// gateway group, a note (OpenSIPS attrs).
	Attrs string
	// Disabled rules are kept in the table but never match.
	Disabled bool
	Created  int64 // unix seconds
}

// Match operators of DialplanRule.MatchOp.
const (
	DialplanExact  = "exact"
	DialplanPrefix = "prefix"
	DialplanRegex  = "regex"
)

// DialplanCaseInsensitive is the MatchFlags bit for case-insensitive
// matching (OpenSIPS match_flags 1).
const DialplanCaseInsensitive = 1

// Limits of dialplan rule fields.
const (
	MaxDialplanID     = 1<<31 - 1
	MaxDialplanKey    = 128 // bytes of an exact or prefix MatchExp
	MaxDialplanRegex  = 512 // bytes of a regular expression
	MaxDialplanRepl   = 256 // bytes of ReplExp
	maxDialplanAttrs  = 255
	maxDialplanGroups = 9 // \1..\9
)

// DialplanReplPart is one piece of a parsed ReplExp: a literal, or a
// reference to a part of the input (Ref >= 0).
type DialplanReplPart struct {
	Lit string
	Ref int // -1: Lit; 0-9: \N
}

// ParseDialplanRepl splits a ReplExp into literals and references \0-\9
// (\\ is a backslash). A backslash before anything else is an error, so a
// PCRE or sed habit ($1, \d) does not pass as a literal silently.
func ParseDialplanRepl(repl string) ([]DialplanReplPart, error) {
	var parts []DialplanReplPart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, DialplanReplPart{Lit: lit.String(), Ref: -1})
			lit.Reset()
		}
	}
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '\\' {
			lit.WriteByte(c)
			continue
		}
		if i+1 == len(repl) {
			return nil, fmt.Errorf("%s ends with a lone backslash (\\\\ for a backslash)", quoteExp(repl))
		}
		i++
		switch n := repl[i]; {
		case n == '\\':
			lit.WriteByte('\\')
		case n >= '0' && n <= '9':
			flush()
			parts = append(parts, DialplanReplPart{Ref: int(n - '0')})
		default:
			return nil, fmt.Errorf("%s: \\%c is not a reference (\\0 to \\9, or \\\\ for a backslash)", quoteExp(repl), n)
		}
	}
	flush()
	return parts, nil
}

// DialplanRegexp compiles a rule's regular expression as the dialplan
// module does: RE2 syntax, with (?i) for a case-insensitive rule.
func DialplanRegexp(expr string, flags int) (*regexp.Regexp, error) {
	if flags&DialplanCaseInsensitive != 0 {
		expr = "(?i)" + expr
	}
	return regexp.Compile(expr)
}

// CheckDialplanRule validates r, naming the rule and the field at fault:
// `dialplan rule 7 (dpid 1, regex "^0(\d+"): match_exp: ...`. Regular
// expressions are compiled to check them (and references in ReplExp
// against their groups); the module compiles them again once per load.
func CheckDialplanRule(r *DialplanRule) error {
	r.MatchOp = strings.ToLower(strings.TrimSpace(r.MatchOp))
	if r.DPID < 0 || r.DPID > MaxDialplanID {
		return dialplanErr(r, "dpid", "%d: must be between 0 and %d", r.DPID, MaxDialplanID)
	}
	if r.Priority < 0 || r.Priority > MaxDialplanID {
		return dialplanErr(r, "pr", "%d: must be between 0 and %d", r.Priority, MaxDialplanID)
	}
	if r.MatchFlags != 0 && r.MatchFlags != DialplanCaseInsensitive {
		return dialplanErr(r, "match_flags", "%d: want 0 (case-sensitive) or 1 (case-insensitive)", r.MatchFlags)
	}
	if len(r.Attrs) > maxDialplanAttrs {
		return dialplanErr(r, "attrs", "longer than %d bytes", maxDialplanAttrs)
	}
	if i := controlChar(r.Attrs); i >= 0 {
		return dialplanErr(r, "attrs", "%q: control character at byte %d", r.Attrs, i)
	}
	if len(r.ReplExp) > MaxDialplanRepl {
		return dialplanErr(r, "repl_exp", "longer than %d bytes", MaxDialplanRepl)
	}
	if i := controlChar(r.ReplExp); i >= 0 {
		return dialplanErr(r, "repl_exp", "%q: control character at byte %d", r.ReplExp, i)
	}
	parts, err := ParseDialplanRepl(r.ReplExp)
	if err != nil {
		return dialplanErr(r, "repl_exp", "%v", err)
	}
	if r.SubstExp != "" && r.ReplExp == "" {
		return dialplanErr(r, "subst_exp", "needs a repl_exp (without one the input is left as it is)")
	}
	maxRef := 0
	switch r.MatchOp {
	case DialplanExact:
		if err := checkDialplanKey(r); err != nil {
			return err
		}
	case DialplanPrefix:
		if err := checkDialplanKey(r); err != nil {
			return err
		}
		for i := 0; i < len(r.MatchExp); i++ {
			if !IsFraudDigit(r.MatchExp[i]) {
				return dialplanErr(r, "match_exp", "%s: invalid character %q in a prefix (digits, '+', '*' and '#'; use a regex rule for other strings)", quoteExp(r.MatchExp), r.MatchExp[i])
			}
		}
		if r.MatchFlags != 0 {
			return dialplanErr(r, "match_flags", "a prefix of digits has no case: 0 only")
		}
		maxRef = 2
	case DialplanRegex:
		if r.MatchExp == "" {
			return dialplanErr(r, "match_exp", "empty regular expression")
		}
		re, err := checkDialplanRegex(r, "match_exp", r.MatchExp)
		if err != nil {
			return err
		}
		maxRef = re.NumSubexp()
		if r.SubstExp != "" {
			sub, err := checkDialplanRegex(r, "subst_exp", r.SubstExp)
			if err != nil {
				return err
			}
			maxRef = sub.NumSubexp()
		}
	case "":
		return dialplanErr(r, "match_op", "missing: want exact, prefix or regex")
	default:
		return dialplanErr(r, "match_op", "%q: want exact, prefix or regex", r.MatchOp)
	}
	if r.MatchOp != DialplanRegex && r.SubstExp != "" {
		return dialplanErr(r, "subst_exp", "only regex rules take one (in a prefix rule's repl_exp \\1 is the prefix and \\2 the rest)")
	}
	if maxRef > maxDialplanGroups {
		maxRef = maxDialplanGroups
	}
	for _, p := range parts {
		if p.Ref > maxRef {
			return dialplanErr(r, "repl_exp", "%s: \\%d refers to nothing (%s)", quoteExp(r.ReplExp), p.Ref, refsOf(r, maxRef))
		}
	}
	return nil
}

func refsOf(r *DialplanRule, maxRef int) string {
	switch {
	case r.MatchOp == DialplanExact:
		return `an exact rule has \0, the input`
	case r.MatchOp == DialplanPrefix:
		return `a prefix rule has \0 the input, \1 the prefix, \2 the rest`
	case r.SubstExp != "":
		return "subst_exp has " + strconv.Itoa(maxRef) + " groups"
	}
	return "match_exp has " + strconv.Itoa(maxRef) + " groups"
}

func checkDialplanKey(r *DialplanRule) error {
	if len(r.MatchExp) > MaxDialplanKey {
		return dialplanErr(r, "match_exp", "longer than %d bytes", MaxDialplanKey)
	}
	if r.MatchOp == DialplanExact && r.MatchExp == "" {
		return dialplanErr(r, "match_exp", "empty: an exact rule needs the string it matches")
	}
	if i := controlChar(r.MatchExp); i >= 0 {
		return dialplanErr(r, "match_exp", "%q: control character at byte %d", r.MatchExp, i)
	}
	return nil
}

func checkDialplanRegex(r *DialplanRule, field, expr string) (*regexp.Regexp, error) {
	if len(expr) > MaxDialplanRegex {
		return nil, dialplanErr(r, field, "longer than %d bytes", MaxDialplanRegex)
	}
	re, err := DialplanRegexp(expr, r.MatchFlags)
	if err != nil {
		// regexp's errors name the expression already.
		return nil, dialplanErr(r, field, "%v (Go RE2 syntax: no backreferences or lookaround)", err)
	}
	return re, nil
}

// controlChar returns the index of the first ASCII control character in s,
// or -1.
func controlChar(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return i
		}
	}
	return -1
}

// DialplanRuleName names a rule in messages: `dialplan rule 7 (dpid 1,
// prefix "00")`, without the ID for a rule not stored yet.
func DialplanRuleName(r *DialplanRule) string {
	var b strings.Builder
	b.WriteString("dialplan rule ")
	if r.ID != 0 {
		b.WriteString(strconv.FormatInt(r.ID, 10))
		b.WriteByte(' ')
	}
	exp := r.MatchExp
	if len(exp) > 40 {
		exp = exp[:40] + "..."
	}
	op := r.MatchOp
	if op == "" {
		op = "match"
	}
	fmt.Fprintf(&b, "(dpid %d, pr %d, %s %s)", r.DPID, r.Priority, op, quoteExp(exp))
	return b.String()
}

// quoteExp quotes an expression for a message: in backquotes, so that
// `^0(\d+)$` reads as it was written, or Go-quoted when it holds a
// backquote or a control character.
func quoteExp(s string) string {
	if strings.IndexByte(s, '`') >= 0 || controlChar(s) >= 0 {
		return strconv.Quote(s)
	}
	return "`" + s + "`"
}

func dialplanErr(r *DialplanRule, field, format string, args ...any) error {
	return errorf(ErrMalformedDialplanRule, DialplanRuleName(r)+": "+field+": "+format, args...)
}

// AddDialplanRule validates r and adds it; the stored rule (with its ID)
// is returned. The same dpid, pr, match_op, match_exp and match_flags
// twice is ErrDialplanRuleExists.
func (s *Store) AddDialplanRule(ctx context.Context, r DialplanRule) (DialplanRule, error) {
	rs := []DialplanRule{r}
	if err := s.AddDialplanRules(ctx, rs, false); err != nil {
		return rs[0], err
	}
	return rs[0], nil
}

// AddDialplanRules validates and adds rules in one transaction: all or
// none. With replace, the rules stored before are deleted in the same
// transaction, so a running server goes from the old table to the new one
// in one reload (bulk provisioning, `switchboard dialplan import
// --replace`). The IDs are set in rs. An error names the rule by its index
// in rs ("rule 12: ...") when there is more than one.
func (s *Store) AddDialplanRules(ctx context.Context, rs []DialplanRule, replace bool) error {
	now := time.Now().Unix()
	for i := range rs {
		rs[i].ID = 0
		if err := CheckDialplanRule(&rs[i]); err != nil {
			return indexed(err, i, len(rs))
		}
		if rs[i].Created == 0 {
			rs[i].Created = now
		}
	}
	if len(rs) == 0 && !replace {
		return nil
	}
	err := s.b.AddDialplanRules(ctx, rs, replace)
	var dup *dialplanExistsError
	if errors.As(err, &dup) {
		r := &rs[dup.index]
		return indexed(errorf(ErrDialplanRuleExists, "%s exists already (id %d; match_flags %d)",
			DialplanRuleName(r), dup.id, r.MatchFlags), dup.index, len(rs))
	}
	return err
}

// indexed prefixes err with the rule's index when a batch has several.
func indexed(err error, i, n int) error {
	if n <= 1 {
		return err
	}
	var we *wordedError
	if errors.As(err, &we) {
		return &wordedError{msg: "rule " + strconv.Itoa(i+1) + " of the batch: " + we.msg, sentinel: we.sentinel}
	}
	return fmt.Errorf("rule %d of the batch: %w", i+1, err)
}

// dialplanExistsError is how a backend says which rule of a batch was a
// duplicate, and of which stored row.
type dialplanExistsError struct {
	index int
	id    int64
}

func (e *dialplanExistsError) Error() string { return ErrDialplanRuleExists.Error() }
func (e *dialplanExistsError) Unwrap() error { return ErrDialplanRuleExists }

// DeleteDialplanRule removes the rule with id and returns it.
func (s *Store) DeleteDialplanRule(ctx context.Context, id int64) (DialplanRule, error) {
	r, err := s.b.DeleteDialplanRule(ctx, id)
	if errors.Is(err, ErrNoDialplanRule) {
		return r, errorf(ErrNoDialplanRule, "no dialplan rule with id %d", id)
	}
	return r, err
}

// DeleteDialplan removes every rule of dpid and returns how many there
// were; ErrNoDialplanRule when there was none.
func (s *Store) DeleteDialplan(ctx context.Context, dpid int) (int, error) {
	n, err := s.b.DeleteDialplan(ctx, dpid)
	if errors.Is(err, ErrNoDialplanRule) {
		return 0, errorf(ErrNoDialplanRule, "dialplan %d has no rules", dpid)
	}
	return n, err
}

// ListDialplanRules returns the rules of dpid, or of every dialplan when
// dpid is negative, by dpid, priority and ID.
func (s *Store) ListDialplanRules(ctx context.Context, dpid int) ([]DialplanRule, error) {
	return s.b.ListDialplanRules(ctx, dpid)
}

// DialplanVersion is a number that changes with every write to the
// dialplan table, by this process or another sharing the database: the
// server polls it and reloads the rules when it moves.
func (s *Store) DialplanVersion(ctx context.Context) (int64, error) {
	return s.b.TableVersion(ctx, "dialplan")
}
