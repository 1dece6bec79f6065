// Package cliconn is the Valkey connection part of the command lines
// (ffengine, ffctl): one set of flags, one environment variable, one way
// to turn them into valkeybackend.Options, so every command connects the
// same way.
package cliconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// EnvPassword supplies the Valkey password when --password is not given.
const EnvPassword = "FF_VALKEY_PASSWORD"

// Defaults of the flags.
const (
	AddrDefault           = "127.0.0.1:6379"
	ConnectTimeoutDefault = 10 * time.Second
)

// Flags is the parsed connection part of a command line.
type Flags struct {
	// Addrs are the seed addresses (--addr, comma-separated). Default
	// AddrDefault.
	Addrs []string
	// Namespace is --namespace, the deployment's namespace
	// (valkeybackend.Options.Namespace). Default "": the default namespace.
	Namespace string
	// Partitions is --partitions: 0 adopts the deployment's stored count.
	Partitions int
	// Username and Password authenticate (ACL); Password defaults to
	// $FF_VALKEY_PASSWORD.
	Username, Password string
	// Cluster is --cluster: informational, cluster mode is detected from
	// the server (CheckCluster says when they disagree).
	Cluster bool
	// ConnectTimeout bounds the dial at start. Default
	// ConnectTimeoutDefault.
	ConnectTimeout time.Duration
	// TLS is the TLS configuration the --tls flags describe; nil: plain
	// TCP.
	TLS *tls.Config

	addr                               string
	tlsOn, tlsInsecure                 bool
	tlsCA, tlsCert, tlsKey, tlsSrvName string
}

// Register declares the connection flags on fs. Call Finish once fs has
// parsed.
func Register(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.StringVar(&f.addr, "addr", AddrDefault, "Valkey seed `addresses`, comma-separated (host:port,...)")
	fs.StringVar(&f.Namespace, "namespace", "", "the deployment's `namespace`: the prefix of its keys, library and functions (default \""+valkeybackend.DefaultNamespace+"\"); deployments sharing a server need one each")
	fs.IntVar(&f.Partitions, "partitions", 0, "partition count; 0 adopts the deployment's stored count (16 for a new one)")
	fs.StringVar(&f.Username, "username", "", "Valkey ACL user name")
	fs.StringVar(&f.Password, "password", "", "Valkey password (default $"+EnvPassword+")")
	fs.BoolVar(&f.Cluster, "cluster", false, "informational: cluster mode is detected from the server")
	fs.DurationVar(&f.ConnectTimeout, "connect-timeout", ConnectTimeoutDefault, "how long to wait for Valkey at start")
	fs.BoolVar(&f.tlsOn, "tls", false, "connect with TLS (implied by the other --tls-* flags)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `file` of the CAs that sign the server's certificate (default: the system's)")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM `file` of the client certificate (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM `file` of the client certificate's key (with --tls-cert)")
	fs.StringVar(&f.tlsSrvName, "tls-server-name", "", "server name to verify (default: the address's host)")
	fs.BoolVar(&f.tlsInsecure, "tls-insecure", false, "do not verify the server's certificate (testing only)")
	return f
}

// Finish checks and completes what the flags hold: the addresses, the
// password from the environment, the TLS configuration (its files are
// read now, so a bad one is a usage error before any dial).
func (f *Flags) Finish() error {
	f.Addrs = f.Addrs[:0]
	for _, a := range strings.Split(f.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			f.Addrs = append(f.Addrs, a)
		}
	}
	if len(f.Addrs) == 0 {
		return errors.New("--addr is empty")
	}
	if err := valkeybackend.CheckNamespace(f.Namespace); err != nil {
		return fmt.Errorf("--namespace: %v", err)
	}
	if f.Partitions < 0 {
		return errors.New("--partitions is negative")
	}
	if f.ConnectTimeout <= 0 {
		return errors.New("--connect-timeout must be positive")
	}
	if f.Password == "" {
		f.Password = os.Getenv(EnvPassword)
	}
	cfg, err := f.tlsConfig()
	if err != nil {
		return err
	}
	f.TLS = cfg
	return nil
}

// tlsConfig builds the TLS configuration, nil when no --tls flag is set.
func (f *Flags) tlsConfig() (*tls.Config, error) {
	if !f.tlsOn && !f.tlsInsecure && f.tlsCA == "" && f.tlsCert == "" && f.tlsKey == "" && f.tlsSrvName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.tlsSrvName, InsecureSkipVerify: f.tlsInsecure}
	if f.tlsCA != "" {
		pem, err := os.ReadFile(f.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: %s holds no PEM certificate", f.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if f.tlsCert != "" {
		pair, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// Options returns base with the connection fields set from the flags.
func (f *Flags) Options(base valkeybackend.Options) valkeybackend.Options {
	base.Addrs, base.Username, base.Password, base.Partitions, base.TLS = f.Addrs, f.Username, f.Password, f.Partitions, f.TLS
	base.Namespace = f.Namespace
	return base
}

// Connect dials Valkey with the flags (and base's other fields), waiting
// up to ConnectTimeout.
func (f *Flags) Connect(ctx context.Context, base valkeybackend.Options) (*valkeybackend.Backend, error) {
	cctx, cancel := context.WithTimeout(ctx, f.ConnectTimeout)
	defer cancel()
	return valkeybackend.Connect(cctx, f.Options(base))
}

// CheckCluster returns a warning when --cluster was given and b is not a
// cluster, else "".
func (f *Flags) CheckCluster(b *valkeybackend.Backend) string {
	if f.Cluster && !b.IsCluster() {
		return "--cluster given but the server is not a cluster; running standalone"
	}
	return ""
}

// Help is the connection part of a command's --help footer.
func Help() string {
	return "Environment:\n  " + EnvPassword + "\tpassword, when --password is not given\n"
}

// PrintFlags writes fs's flags to w in the style of ffbench's --help: "--name
// value" then the usage and a non-zero default, one flag per entry, so every
// command line documents its flags alike.
func PrintFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		def := ""
		switch f.DefValue {
		case "", "false", "0", "0s", "[]":
		default:
			if fmt.Sprintf("%T", f.Value) == "*flag.stringValue" { // quoted, as flag.PrintDefaults does
				def = fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
		}
		fmt.Fprintf(w, "%s\n    \t%s%s\n", line, strings.ReplaceAll(usage, "\n", "\n    \t"), def)
	})
}
