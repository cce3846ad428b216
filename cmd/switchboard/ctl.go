package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"switchboard/mgmt"
)

// cmdCtl calls the management API of a running server:
//
//	switchboard ctl info
//	switchboard ctl registrations.list '{"aor":"alice@example.com"}'
//	switchboard ctl registrations.list aor=alice@example.com
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path, sets := configFlags(fs)
	addr := fs.String("a", "", "management `address` host:port (default: mgmt.listen of the configuration)")
	token := fs.String("token", "", "bearer `token` (default: mgmt.token of the configuration)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: switchboard ctl [flags] COMMAND [JSON | key=value ...]\n\n'switchboard ctl help' lists the commands of the running server.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if *addr == "" || *token == "" {
		cfg, err := loadConfig(*path, *sets)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if *addr == "" {
			*addr = cfg.Mgmt.Listen
		}
		if *token == "" {
			*token = cfg.Mgmt.Token
		}
	}
	if *addr == "" {
		fmt.Fprintln(stderr, "switchboard ctl: no management address: mgmt.listen is empty in the configuration; give -a host:port")
		return 2
	}
	cmd := fs.Arg(0)
	cmdArgs, err := ctlArgs(fs.Args()[1:])
	if err != nil {
		fmt.Fprintln(stderr, "switchboard ctl:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cl := &mgmt.Client{Addr: *addr, Token: *token}
	res, err := cl.Call(ctx, cmd, cmdArgs)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard ctl:", err)
		return 1
	}
	var out bytes.Buffer
	if json.Indent(&out, res, "", "  ") != nil {
		out.Reset()
		out.Write(res)
	}
	out.WriteByte('\n')
	stdout.Write(out.Bytes())
	return 0
}

// ctlArgs turns the words after the command into the JSON arguments: one
// word starting with '{' is taken as JSON; key=value words make an object.
func ctlArgs(words []string) (any, error) {
	if len(words) == 0 {
		return nil, nil
	}
	if len(words) == 1 && strings.HasPrefix(strings.TrimSpace(words[0]), "{") {
		if !json.Valid([]byte(words[0])) {
			return nil, fmt.Errorf("arguments are not valid JSON: %s", words[0])
		}
		return json.RawMessage(words[0]), nil
	}
	obj := map[string]string{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q is neither JSON nor key=value", w)
		}
		obj[k] = v
	}
	return obj, nil
}
