package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"switchboard/cmd/switchboard/config"
	"switchboard/mgmt"
)

// tokenEnv names the environment variable ctl reads the token from: it
// keeps the token out of the process list, where --token shows it.
const tokenEnv = "SWITCHBOARD_MGMT_TOKEN"

// cmdCtl calls the management API of a running server:
//
//	switchboard ctl info
//	switchboard ctl registrations.list '{"aor":"alice@example.com"}'
//	switchboard ctl registrations.list aor=alice@example.com
//
// The token comes from --token, else $SWITCHBOARD_MGMT_TOKEN, else
// mgmt.token of the configuration, else the file mgmt.token in its
// storage.dir (which the server creates), so that ctl on the server host
// works without being told anything.
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path, sets := configFlags(fs)
	addr := fs.String("a", "", "management `address` host:port (default: mgmt.listen of the configuration)")
	token := fs.String("token", "", "bearer `token` (default: $"+tokenEnv+", else mgmt.token of the configuration, else the file mgmt.token in its storage.dir)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	format := fs.String("o", outTable, "output `format`: table (readable), json (the API's result), names (the keys of the result, one a line)")
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
	switch *format {
	case outTable, outJSON, outNames:
	default:
		fmt.Fprintf(stderr, "switchboard ctl: -o %s: want table, json or names\n", *format)
		return 2
	}
	tok := ctlToken{value: *token, source: "--token"}
	if tok.value == "" {
		tok = ctlToken{value: os.Getenv(tokenEnv), source: "$" + tokenEnv}
	}
	if *addr == "" || tok.value == "" {
		cfg, err := loadConfig(*path, *sets)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		if *addr == "" {
			*addr = cfg.Mgmt.Listen
		}
		if *addr != "" && tok.value == "" {
			if tok, err = configToken(cfg, *path); err != nil {
				fmt.Fprintln(stderr, "switchboard ctl:", err)
				return 2
			}
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
	cl := &mgmt.Client{Addr: *addr, Token: tok.value}
	res, err := cl.Call(ctx, cmd, cmdArgs)
	if err != nil {
		fmt.Fprintln(stderr, "switchboard ctl:", err)
		var ae *mgmt.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized {
			fmt.Fprintln(stderr, "switchboard ctl:", tok.hint())
		}
		return 1
	}
	if err := writeResult(stdout, res, *format); err != nil {
		fmt.Fprintln(stderr, "switchboard ctl:", err)
		return 1
	}
	return 0
}

// ctlToken is the token ctl sends and where it came from, for the advice
// printed when the server refuses it.
type ctlToken struct {
	value, source string
	file          bool // source is the token file
}

// configToken is mgmt.token of cfg, else the token file in its data
// directory. The errors say how to get a token.
func configToken(cfg *config.Config, cfgPath string) (ctlToken, error) {
	name := cfgPath
	if name == "" {
		name = "the embedded default configuration"
	}
	if cfg.Mgmt.Token != "" {
		return ctlToken{value: cfg.Mgmt.Token, source: "mgmt.token of " + name}, nil
	}
	path := filepath.Join(cfg.Storage.Dir, mgmt.TokenFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	tok, err := mgmt.ReadTokenFile(path)
	switch {
	case err == nil:
		return ctlToken{value: tok, source: path, file: true}, nil
	case errors.Is(err, os.ErrNotExist):
		return ctlToken{}, fmt.Errorf("no management token: %s does not exist. The server creates it at its first start (when mgmt.token is empty) in its storage.dir: give ctl the server's configuration with -c (a relative storage.dir is relative to the server's working directory), or pass --token or set %s", path, tokenEnv)
	case errors.Is(err, os.ErrPermission):
		return ctlToken{}, fmt.Errorf("no management token: cannot read %s (permission denied); run ctl on the server host as a user who can read it (the server's user), or pass --token or set %s", path, tokenEnv)
	}
	return ctlToken{}, fmt.Errorf("no management token: %w", err)
}

func (t ctlToken) hint() string {
	if t.file {
		return "the token was read from " + t.source + ", which the server does not use: is it running with this configuration (-c) and this storage.dir? Otherwise pass --token or set " + tokenEnv
	}
	return "the server refused the token from " + t.source + "; the server's token is mgmt.token of its configuration, or the file " + mgmt.TokenFile + " in its storage.dir"
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
