package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"switchboard/cmd/switchboard/config"
	"switchboard/modules"
	"switchboard/store"
)

// The user and domain commands work on the store named by the configuration
// (storage.dir, or storage.dsn with the postgres and mysql drivers), the same database
// the running server uses; the server notices the change within a second
// through the store's change log.

const userUsage = `usage:
  switchboard user add USER@DOMAIN [--password P | --password-stdin | --ha1 HEX [--ha1-sha256 HEX]] [--email E]
  switchboard user passwd USER@DOMAIN [--password P | --password-stdin]
  switchboard user del USER@DOMAIN
  switchboard user list [DOMAIN]

Without --password, --password-stdin or --ha1 the password is read from the terminal
(standard input), one line. Common flags: -c FILE, --set key=value (storage.dir, storage.dsn).
`

func cmdUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var password, ha1, ha1sha, email *string
	var passwordStdin *bool
	sub, c, code := openStoreCommand("user", userUsage, args, stderr, func(fs *flag.FlagSet) {
		password = fs.String("password", "", "the password (visible in the process list; prefer --password-stdin)")
		passwordStdin = fs.Bool("password-stdin", false, "read the password from standard input")
		ha1 = fs.String("ha1", "", "store this MD5 HA1 (hex of MD5(user:domain:password)) instead of a password")
		ha1sha = fs.String("ha1-sha256", "", "with --ha1: the SHA-256 HA1 as well")
		email = fs.String("email", "", "e-mail address")
	})
	if c == nil {
		return code
	}
	defer c.close()
	fs, st, ctx := c.fs, c.st, c.ctx

	switch sub {
	case "add", "passwd":
		if fs.NArg() != 1 {
			fs.Usage()
			return 2
		}
		user, domain, err := splitAOR(fs.Arg(0))
		if err != nil {
			return exitCode(&exitError{2, err}, stderr)
		}
		s := store.Subscriber{Username: user, Domain: domain, Email: *email}
		if *ha1 != "" {
			s.HA1, s.HA1SHA256 = *ha1, *ha1sha
		} else {
			pw, err := readPassword(*password, *passwordStdin, stdin, stderr)
			if err != nil {
				return exitCode(&exitError{2, err}, stderr)
			}
			s.Password = pw
		}
		if sub == "add" {
			err = st.AddSubscriber(ctx, s)
		} else if s.Password != "" {
			err = st.SetPassword(ctx, user, domain, s.Password)
		} else {
			err = st.SetCredentials(ctx, s)
		}
		if err != nil {
			return exitCode(err, stderr)
		}
		verb := map[string]string{"add": "added", "passwd": "password changed for"}[sub]
		fmt.Fprintf(stdout, "%s %s@%s\n", verb, user, domain)
		return 0
	case "del":
		if fs.NArg() != 1 {
			fs.Usage()
			return 2
		}
		user, domain, err := splitAOR(fs.Arg(0))
		if err != nil {
			return exitCode(&exitError{2, err}, stderr)
		}
		if err := st.DeleteSubscriber(ctx, user, domain); err != nil {
			return exitCode(err, stderr)
		}
		fmt.Fprintf(stdout, "deleted %s@%s\n", user, domain)
		return 0
	case "list":
		if fs.NArg() > 1 {
			fs.Usage()
			return 2
		}
		subs, err := st.ListSubscribers(ctx, fs.Arg(0))
		if err != nil {
			return exitCode(err, stderr)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBSCRIBER\tEMAIL\tCREATED")
		for _, s := range subs {
			fmt.Fprintf(tw, "%s@%s\t%s\t%s\n", s.Username, s.Domain, s.Email, time.Unix(s.Created, 0).UTC().Format(time.RFC3339))
		}
		tw.Flush()
		return 0
	}
	fmt.Fprintf(stderr, "switchboard user: unknown subcommand %q\n\n%s", sub, userUsage)
	return 2
}

const domainUsage = `usage:
  switchboard domain add DOMAIN
  switchboard domain del DOMAIN
  switchboard domain list
Common flags: -c FILE, --set key=value (storage.dir, storage.dsn).
`

func cmdDomain(args []string, stdout, stderr io.Writer) int {
	sub, c, code := openStoreCommand("domain", domainUsage, args, stderr, nil)
	if c == nil {
		return code
	}
	defer c.close()
	fs, st, ctx := c.fs, c.st, c.ctx
	var err error
	switch sub {
	case "add", "del":
		if fs.NArg() != 1 {
			fs.Usage()
			return 2
		}
		if sub == "add" {
			err = st.AddDomain(ctx, fs.Arg(0))
		} else {
			err = st.DeleteDomain(ctx, fs.Arg(0))
		}
		if err != nil {
			return exitCode(err, stderr)
		}
		fmt.Fprintf(stdout, "%s %s\n", map[string]string{"add": "added", "del": "deleted"}[sub], fs.Arg(0))
		return 0
	case "list":
		ds, err := st.ListDomains(ctx)
		if err != nil {
			return exitCode(err, stderr)
		}
		for _, d := range ds {
			fmt.Fprintln(stdout, d.Domain)
		}
		return 0
	}
	fmt.Fprintf(stderr, "switchboard domain: unknown subcommand %q\n\n%s", sub, domainUsage)
	return 2
}

// storeCommand is a parsed user or domain subcommand with its store open.
type storeCommand struct {
	fs     *flag.FlagSet
	st     *store.Store
	ctx    context.Context
	cancel context.CancelFunc
}

func (c *storeCommand) close() {
	c.cancel()
	c.st.Close()
}

// openStoreCommand parses "SUB [flags] ARGS" for the command group name,
// with the common -c/--set flags and those addFlags registers, and opens
// the store. On failure it returns a nil command and the exit code.
func openStoreCommand(name, usage string, args []string, stderr io.Writer, addFlags func(*flag.FlagSet)) (string, *storeCommand, int) {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return "", nil, 2
	}
	sub := args[0]
	fs := flag.NewFlagSet(name+" "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	path, sets := configFlags(fs)
	if addFlags != nil {
		addFlags(fs)
	}
	if err := fs.Parse(reorderFlags(args[1:])); err != nil {
		return sub, nil, 2
	}
	st, err := openStore(*path, *sets)
	if err != nil {
		return sub, nil, exitCode(err, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	return sub, &storeCommand{fs: fs, st: st, ctx: ctx, cancel: cancel}, 0
}

func openStore(path string, sets []string) (*store.Store, error) {
	cfg, err := loadConfig(path, sets)
	if err != nil {
		return nil, &exitError{2, err}
	}
	return openStorage(cfg)
}

// openStorage opens the store the storage section names, with the options
// the modules ask for (registrar.persist, auth.store_passwords); its error
// names the setting at fault.
func openStorage(cfg *config.Config) (*store.Store, error) {
	o := store.Options{
		Driver:   cfg.Storage.Driver,
		DSN:      cfg.Storage.DSN,
		MaxConns: cfg.Storage.MaxConns,
		Timeout:  cfg.Storage.Timeout.D(),
		Schema:   cfg.Storage.Schema,
	}
	modules.StoreOptions(cfg.Modules, &o)
	s, err := store.Open(cfg.Storage.Dir, o)
	if err == nil {
		return s, nil
	}
	if o.Driver != store.DriverSQLite {
		return nil, fmt.Errorf("storage.dsn: %w", err)
	}
	return nil, fmt.Errorf("storage.dir %s: %w", cfg.Storage.Dir, err)
}

func splitAOR(s string) (user, domain string, err error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sip:"), "sips:")
	user, domain, ok := strings.Cut(s, "@")
	if !ok || user == "" || domain == "" {
		return "", "", fmt.Errorf("%q is not USER@DOMAIN", s)
	}
	return user, domain, nil
}

func readPassword(flagValue string, fromStdin bool, stdin io.Reader, stderr io.Writer) (string, error) {
	if flagValue != "" {
		if fromStdin {
			return "", errors.New("give either --password or --password-stdin, not both")
		}
		return flagValue, nil
	}
	if !fromStdin {
		if f, ok := stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				fmt.Fprint(stderr, "Password: ")
			}
		}
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", errors.New("no password given: use --password, --password-stdin or type it at the prompt")
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

// reorderFlags moves flags after positional arguments to the front, so that
// "user add alice@example.com --password x" works like the usual CLI tools.
func reorderFlags(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && flagTakesValue(name) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func flagTakesValue(name string) bool {
	switch name {
	case "password-stdin", "h", "help":
		return false
	}
	return true
}
