// Package rediscfg is the Redis connection settings the modules that
// share state between nodes have in common (registrar.redis,
// dialog.redis): the same keys, defaults and checks, turned into
// go-redis's options in one place.
package rediscfg

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"switchboard/modules"
)

// Settings are a module's redis section (docs/configuration.md).
type Settings struct {
	// Addr is "host:port", a URL (redis://user:password@host:port/db,
	// rediss:// for TLS, unix:///path), or with Cluster a comma-separated
	// list of seed nodes.
	Addr     string `yaml:"addr"`
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
	// Cluster uses Redis Cluster (the same client, go-redis's cluster mode).
	Cluster bool `yaml:"cluster"`
	// DialTimeout bounds a connection attempt, Timeout each command.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	Timeout     time.Duration `yaml:"timeout"`
	// Prefix starts every key and channel: several deployments can share
	// one Redis.
	Prefix string `yaml:"prefix"`
	// Node names this node in what it writes (which node holds a phone's
	// flow, which node owns a dialog). Empty: the host name. Set it when
	// several nodes run on one host.
	Node string `yaml:"node"`
}

// Default are the defaults of every key.
func Default() Settings {
	return Settings{Addr: "127.0.0.1:6379", DialTimeout: 2 * time.Second, Timeout: time.Second, Prefix: "switchboard:"}
}

// Check validates the settings; errors name the key under prefix
// ("redis.": "redis.addr").
func (rs *Settings) Check(prefix string) error {
	if strings.TrimSpace(rs.Addr) == "" {
		return modules.Errorf(prefix+"addr", "missing: the Redis address (host:port or redis://...)")
	}
	if _, err := rs.Options(); err != nil {
		return modules.Errorf(prefix+"addr", "%v", err)
	}
	if rs.DB < 0 || rs.DB > 15 && !rs.Cluster {
		return modules.Errorf(prefix+"db", "must be between 0 and 15, not %d", rs.DB)
	}
	if rs.Cluster && rs.DB != 0 {
		return modules.Errorf(prefix+"db", "must be 0 with %scluster: Redis Cluster has only database 0", prefix)
	}
	if rs.DialTimeout < 10*time.Millisecond || rs.DialTimeout > time.Minute {
		return modules.Errorf(prefix+"dial_timeout", "must be between 10ms and 1m, not %s", rs.DialTimeout)
	}
	if rs.Timeout < 10*time.Millisecond || rs.Timeout > time.Minute {
		return modules.Errorf(prefix+"timeout", "must be between 10ms and 1m, not %s", rs.Timeout)
	}
	if len(rs.Prefix) > 64 || strings.ContainsAny(rs.Prefix, " {}\r\n") {
		return modules.Errorf(prefix+"prefix", "must be at most 64 characters without spaces or braces, not %q", rs.Prefix)
	}
	if len(rs.Node) > 64 || strings.ContainsAny(rs.Node, " \r\n|") {
		return modules.Errorf(prefix+"node", "must be at most 64 characters without spaces or '|', not %q", rs.Node)
	}
	return nil
}

// NodeName is Node, or the host name when it is empty.
func (rs *Settings) NodeName() string {
	if rs.Node != "" {
		return rs.Node
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "node"
}

// Options turns the settings into the client's options.
func (rs *Settings) Options() (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Password:     rs.Password,
		DB:           rs.DB,
		DialTimeout:  rs.DialTimeout,
		ReadTimeout:  rs.Timeout,
		WriteTimeout: rs.Timeout,
		// One retry: an outage should show within a command or two, and
		// whatever failed stays queued and is written again.
		MaxRetries:    1,
		IsClusterMode: rs.Cluster,
	}
	for _, a := range strings.Split(rs.Addr, ",") {
		a = strings.TrimSpace(a)
		if strings.Contains(a, "://") {
			if rs.Cluster {
				return nil, fmt.Errorf("with redis.cluster give host:port seed nodes, not a URL (%q)", a)
			}
			po, err := redis.ParseURL(a)
			if err != nil {
				return nil, err
			}
			o.Addrs = []string{po.Addr}
			if o.Password == "" {
				o.Username, o.Password = po.Username, po.Password
			}
			if o.DB == 0 {
				o.DB = po.DB
			}
			if po.TLSConfig != nil {
				o.TLSConfig = po.TLSConfig
			}
			if po.Network == "unix" {
				o.Dialer = func(ctx context.Context, _, addr string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", addr)
				}
			}
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%q: want host:port or a redis:// URL", a)
		}
		o.Addrs = append(o.Addrs, a)
	}
	if len(o.Addrs) > 1 && !rs.Cluster {
		return nil, errors.New("several addresses need redis.cluster: true")
	}
	if o.TLSConfig != nil && o.TLSConfig.MinVersion == 0 {
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return o, nil
}
