package valkeybackend_test

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// hideRoles is a backend with only the EngineBackend methods: SubmitBatch
// sends it one CreateExecution per item (the path before batch submit).
type hideRoles struct{ sdk.EngineBackend }

// The server's work per created job, SubmitBatch of 1,000 no-op executions
// on 16 partitions: one ff_create per job (A) against one ff_create_batch
// per partition (B), same server, rounds interleaved (ABAB...). Valkey CPU
// is INFO cpu's user+sys delta, commands INFO commandstats' (script-internal
// included). A measurement, not a check: run with FF_BATCH_AB=<rounds>.
func TestSubmitBatchCostAB(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("FF_BATCH_AB"))
	if rounds < 1 {
		t.Skip("set FF_BATCH_AB=<rounds> to measure")
	}
	const jobs = 1000
	ctx := context.Background()
	addrs := topologies()[0].addrs(t)
	b := freshBackend(t, addrs, valkeybackend.Options{Partitions: 16})
	nodes := nodeClients(t, addrs)
	defer func() {
		for _, c := range nodes {
			c.Close()
		}
	}()
	cpu := func() float64 {
		info, err := nodes[0].Do(ctx, nodes[0].B().Info().Section("cpu").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, line := range strings.Split(info, "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			if k == "used_cpu_user" || k == "used_cpu_sys" {
				f, _ := strconv.ParseFloat(v, 64)
				s += f
			}
		}
		return s
	}
	items := make([]sdk.CreateExecutionArgs, jobs)
	for i := range items {
		items[i] = sdk.CreateExecutionArgs{Lane: "ab", Kind: "noop"}
	}
	clients := map[string]*sdk.Client{"A one ff_create each": sdk.NewClient(hideRoles{b}), "B one FCALL per partition": sdk.NewClient(b)}
	if _, err := clients["A one ff_create each"].SubmitBatch(ctx, items[:1]); err != nil { // warm the lane registry
		t.Fatal(err)
	}
	cpuPer := map[string][]float64{}
	cmdPer := map[string][]float64{}
	fcallPer := map[string][]float64{}
	for r := range 2 * rounds {
		name := "A one ff_create each"
		if r%2 == 1 {
			name = "B one FCALL per partition"
		}
		resetStats(t, addrs)
		c0 := cpu()
		res, err := clients[name].SubmitBatch(ctx, items)
		c1 := cpu()
		if err != nil || len(res) != jobs {
			t.Fatalf("%s: %d results, %v", name, len(res), err)
		}
		c := commandCounts(t, addrs)
		cmds := sum(c) - setup(c)
		cpuPer[name] = append(cpuPer[name], (c1-c0)*1e6/jobs)
		cmdPer[name] = append(cmdPer[name], float64(cmds)/jobs)
		fcallPer[name] = append(fcallPer[name], float64(c["fcall"])/jobs)
	}
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range cpuPer {
			if !yield(k) {
				return
			}
		}
	}) {
		cs := slices.Clone(cpuPer[name])
		slices.Sort(cs)
		t.Logf("%s: Valkey CPU µs/job per round %.1f (median %.1f); commands/job %.2f; FCALLs/job %.3f",
			name, cpuPer[name], cs[len(cs)/2], cmdPer[name][0], fcallPer[name][0])
	}
}
