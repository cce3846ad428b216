package main

import (
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	webpanel "switchboard/mgmt/panel"
	"switchboard/store"
)

const panelUsage = `usage:
  switchboard panel user add NAME [--role admin|read-only] [--password P | --password-stdin]
  switchboard panel user passwd NAME [--password P | --password-stdin]
  switchboard panel user role NAME admin|read-only
  switchboard panel user del NAME
  switchboard panel user list

The operators of the web panel under /ui on mgmt.listen (docs/panel.md). Passwords have
at least 10 characters and are stored as Argon2id hashes. Without --password or
--password-stdin the password is read from the terminal (standard input), one line.
Common flags: -c FILE, --set key=value (storage.dir, storage.dsn).
`

func cmdPanel(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "user" {
		fmt.Fprint(stderr, panelUsage)
		return 2
	}
	var password, role *string
	var passwordStdin *bool
	sub, c, code := openStoreCommand("panel user", panelUsage, args[1:], stderr, func(fs *flag.FlagSet) {
		password = fs.String("password", "", "the password (visible in the process list; prefer --password-stdin)")
		passwordStdin = fs.Bool("password-stdin", false, "read the password from standard input")
		role = fs.String("role", store.RoleAdmin, "admin (every command) or read-only (only commands that change nothing)")
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
		pw, err := readPassword(*password, *passwordStdin, stdin, stderr)
		if err != nil {
			return exitCode(&exitError{2, err}, stderr)
		}
		if sub == "add" {
			err = st.AddPanelUser(ctx, fs.Arg(0), pw, *role)
		} else {
			err = st.SetPanelUser(ctx, fs.Arg(0), pw, "")
		}
		if err != nil {
			return exitCode(err, stderr)
		}
		if sub == "add" {
			fmt.Fprintf(stdout, "added panel user %s (%s)\n", fs.Arg(0), *role)
		} else {
			fmt.Fprintf(stdout, "password changed for panel user %s; their sessions end within %s\n", fs.Arg(0), webpanel.RecheckEvery)
		}
		return 0
	case "role":
		if fs.NArg() != 2 {
			fs.Usage()
			return 2
		}
		if err := st.SetPanelUser(ctx, fs.Arg(0), "", fs.Arg(1)); err != nil {
			return exitCode(err, stderr)
		}
		fmt.Fprintf(stdout, "panel user %s is %s\n", fs.Arg(0), fs.Arg(1))
		return 0
	case "del":
		if fs.NArg() != 1 {
			fs.Usage()
			return 2
		}
		if err := st.DeletePanelUser(ctx, fs.Arg(0)); err != nil {
			return exitCode(err, stderr)
		}
		fmt.Fprintf(stdout, "deleted panel user %s\n", fs.Arg(0))
		return 0
	case "list":
		us, err := st.ListPanelUsers(ctx)
		if err != nil {
			return exitCode(err, stderr)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tCREATED\tPASSWORD CHANGED")
		for _, u := range us {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Role, time.Unix(u.Created, 0).UTC().Format(time.RFC3339), time.Unix(u.Updated, 0).UTC().Format(time.RFC3339))
		}
		tw.Flush()
		return 0
	}
	fmt.Fprintf(stderr, "switchboard panel user: unknown subcommand %q\n\n%s", sub, panelUsage)
	return 2
}

// mountPanel serves the web panel under /ui on the management listener
// (mgmt.panel.enabled): it runs the same commands as ctl, in process.
func (s *server) mountPanel() error {
	pc := s.cfg.Mgmt.Panel
	if !pc.Enabled || s.cfg.Mgmt.Listen == "" {
		return nil
	}
	cfg := webpanel.Config{
		Commands: s.mgmt, Users: s.store, Metrics: s.mgmt.Metrics(), Logger: s.log,
		SessionTTL: pc.SessionTTL.D(), SessionLifetime: pc.SessionLifetime.D(), LockoutFailures: pc.LockoutFailures, LockoutTime: pc.LockoutTime.D(),
	}
	if s.store.HasPanelSessions() {
		cfg.Sessions = s.store
	}
	p, err := webpanel.New(cfg)
	if err != nil {
		return err
	}
	s.mgmt.Mount("/ui/", p)
	return nil
}
