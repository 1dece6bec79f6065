package valkeybackend_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// topology is one server layout the tests run against.
type topology struct {
	name  string
	addrs func(t *testing.T) []string
}

var (
	sharedServer   *valkeytest.Server
	sharedCluster  *valkeytest.Cluster
	sharedReplicas *valkeytest.Cluster
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

// replicatedCluster is a 3-primary cluster with a replica each, started
// once per test binary and shared (tests flush before use).
func replicatedCluster(t *testing.T) []string {
	if sharedReplicas == nil {
		c, err := valkeytest.StartCluster(context.Background(), valkeytest.ClusterOptions{Replicas: 1})
		if err != nil {
			t.Fatal(err)
		}
		sharedReplicas = c
	}
	return sharedReplicas.Addrs()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedServer != nil {
		sharedServer.Close()
	}
	if sharedCluster != nil {
		sharedCluster.Close()
	}
	if sharedReplicas != nil {
		sharedReplicas.Close()
	}
	os.Exit(code)
}

// freshBackend flushes every primary and connects with opts.
func freshBackend(t *testing.T, addrs []string, opts valkeybackend.Options) *valkeybackend.Backend {
	t.Helper()
	flushAll(t, addrs)
	opts.Addrs = addrs
	return connectOpts(t, opts, 8)
}

// connectOpts connects with opts (partitions, when opts leaves them 0),
// failing t on an error, and closes the backend when t ends.
func connectOpts(t *testing.T, opts valkeybackend.Options, partitions int) *valkeybackend.Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if opts.Partitions == 0 {
		opts.Partitions = partitions
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
	if err := valkeytest.FlushAll(context.Background(), addrs); err != nil {
		t.Fatal(err)
	}
}

// commandCounts sums INFO commandstats calls over every primary of addrs.
func commandCounts(t *testing.T, addrs []string) map[string]int64 {
	t.Helper()
	calls, err := valkeytest.CommandCalls(context.Background(), addrs)
	if err != nil {
		t.Fatal(err)
	}
	return calls
}

func resetStats(t *testing.T, addrs []string) {
	t.Helper()
	if err := valkeytest.ResetStats(context.Background(), addrs); err != nil {
		t.Fatal(err)
	}
}
