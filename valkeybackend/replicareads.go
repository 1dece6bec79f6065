package valkeybackend

import (
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// Reads from replicas (Options.ReadFromReplicas).
//
// Snapshot reads (DescribeExecution, ReadExecutionInfo, ListExecutions,
// ListLanes, DescribeFlow, ListFlows, ListEdges, DescribeEdge,
// ListSuspended, ListPendingWaitpoints, GetBudgetStatus, and ffctl's
// ListLaneExecutions and LaneDepths) and the scanners' no-writes ff_due
// go through b.reads: with the option, a second valkey-go
// client whose SendToReplicas sends every read-only command to a replica
// (on a cluster, of the key's slot; a single server's replicas are
// Options.ReplicaAddrs; a Sentinel deployment's are the master set's).
// Without it, b.reads is b.client. The reads a write depends on stay on
// the primary: the worker's and the client's reads (state, result,
// context, readiness, heads), ff_fence (it authorises ReportUsage), and
// every write's own checks, which run in Lua on the primary.
//
// A replica serves what it has replicated: a read can miss the newest
// writes by the replication lag (usually under a millisecond on a LAN;
// unbounded while a replica resyncs or is cut off: set
// replica-serve-stale-data no to refuse reads then). A scanner that reads
// a due list from a replica may act a scan later; what it acts on is
// checked again on the primary.

// replicaTopologyRefresh is how often the replica client of a cluster
// re-reads the topology (one CLUSTER SHARDS), unless ConfigureClient set
// ClusterOption.ShardsRefreshInterval.
const replicaTopologyRefresh = 5 * time.Second

// dialReads sets b.reads: a client that reads from replicas when the
// option asks, else the backend's own. co is the option b.client dialed
// with (after ConfigureClient).
func (b *Backend) dialReads(co valkey.ClientOption) error {
	b.reads = b.client
	if !b.opts.ReadFromReplicas {
		return nil
	}
	ro := co
	ro.ClientName = "flowfabric-reads"
	ro.DisableCache = true // snapshots are read fresh; nothing to invalidate
	ro.OnInvalidations = nil
	ro.SendToReplicas = func(cmd valkey.Completed) bool { return cmd.IsReadOnly() }
	if b.cluster && ro.ClusterOption.ShardsRefreshInterval == 0 {
		// A replica that was not online when the client read the topology
		// (CLUSTER SHARDS drops those) is used once a refresh sees it;
		// without a periodic one, its slots' reads stay on the primary.
		ro.ClusterOption.ShardsRefreshInterval = replicaTopologyRefresh
	}
	if !b.cluster && ro.Sentinel.MasterSet == "" {
		if len(b.opts.ReplicaAddrs) == 0 {
			return sdk.Validationf(sdk.CodeInvalidInput, "ReadFromReplicas on a single server needs ReplicaAddrs (a cluster's and a Sentinel's replicas are found)")
		}
		ro.Standalone.ReplicaAddress = b.opts.ReplicaAddrs
	}
	c, err := valkey.NewClient(ro)
	if err != nil {
		if pe := permissionError("connect", "", err); pe != nil {
			return pe
		}
		return sdk.TransportError("connect replicas", err)
	}
	b.reads = c
	return nil
}

// closeReads closes the replica client when there is one of its own.
func (b *Backend) closeReads() {
	if b.reads != nil && b.reads != b.client {
		b.reads.Close()
	}
}
