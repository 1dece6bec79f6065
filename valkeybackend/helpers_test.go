package valkeybackend_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// topology is one server layout the tests run against.
type topology struct {
	name  string
	addrs func(t *testing.T) []string
}

var (
	sharedServer  *valkeytest.Server
	sharedCluster *valkeytest.Cluster
)

// topologies returns standalone and a 3-primary cluster, each started once
// per test binary and shared (tests flush before use).
func topologies() []topology {
	return []topology{
		{"standalone", func(t *testing.T) []string {
			if sharedServer == nil {
				s, err := valkeytest.Start(context.Background(), valkeytest.Options{})
				if err != nil {
					t.Fatal(err)
				}
				sharedServer = s
			}
			return []string{sharedServer.Addr()}
		}},
		{"cluster", func(t *testing.T) []string {
			if sharedCluster == nil {
				c, err := valkeytest.StartCluster(context.Background(), valkeytest.ClusterOptions{})
				if err != nil {
					t.Fatal(err)
				}
				sharedCluster = c
			}
			return sharedCluster.Addrs()
		}},
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedServer != nil {
		sharedServer.Close()
	}
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	os.Exit(code)
}

// freshBackend flushes every primary and connects with opts.
func freshBackend(t *testing.T, addrs []string, opts valkeybackend.Options) *valkeybackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	flushAll(t, addrs)
	opts.Addrs = addrs
	if opts.Partitions == 0 {
		opts.Partitions = 8
	}
	b, err := valkeybackend.Connect(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func flushAll(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		role, _ := c.Do(context.Background(), c.B().Role().Build()).ToArray()
		if len(role) > 0 {
			if r, _ := role[0].ToString(); r == "master" {
				if err := c.Do(context.Background(), c.B().Flushall().Build()).Error(); err != nil {
					t.Fatal(err)
				}
			}
		}
		c.Close()
	}
}

// commandCounts sums INFO commandstats calls over every node of addrs.
func commandCounts(t *testing.T, addrs []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "cmdstat_") {
				continue
			}
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "cmdstat_"), ":")
			for _, kv := range strings.Split(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					out[name] += n
				}
			}
		}
	}
	return out
}

func resetStats(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{a}, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Do(context.Background(), c.B().ConfigResetstat().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
