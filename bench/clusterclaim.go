package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// clusterClaimTarget bounds a cluster's claim p50 against one server's at
// the same rate in the same run: a deployment that outgrows one server
// keeps its fast claim path.
const clusterClaimTarget = 1.5

// runClusterClaim measures claim latency on the run's standalone server
// and on a throwaway 3-primary cluster started beside it, both at one rate
// (--rate, else RateFraction of the lower of the two topologies' e2e
// closed-loop capacities: the same load, at most half of either's), rounds
// alternating A B, B A (ABRounds), each round a fresh deployment of
// cfg.Partitions. Each variant's rounds are merged; the cluster's result
// carries claim_p50_vs_standalone and both carry their hand-off share and
// their own loaded FCALL round trip.
func (r *Runner) runClusterClaim(ctx context.Context) ([]*Result, error) {
	if !r.t.Embedded || r.t.Cluster {
		return nil, errors.New("cluster-claim starts its own servers: run it without --addr and without --cluster")
	}
	const standalone, cluster = "standalone", "cluster"
	rate, err := r.rate(ctx)
	if err != nil {
		return nil, err
	}
	r.prog.Stage(ScenarioClusterClaim + ": starting a 3-primary cluster")
	c, err := valkeytest.StartCluster(ctx, valkeytest.ClusterOptions{})
	if err != nil {
		return nil, fmt.Errorf("start cluster: %w", err)
	}
	ct := &Target{Addrs: c.Addrs(), Embedded: true, cluster: c, flush: true, noArrivals: r.t.noArrivals}
	if err := ct.dial(ctx); err != nil {
		ct.Close()
		return nil, err
	}
	defer ct.Close()
	cr := *r
	cr.t, cr.capacity = ct, 0
	crate, err := cr.rate(ctx) // the cluster's own capacity probe, unless --rate
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// An open loop costs more per job than the closed loop that measured
	// the capacity (smaller batches), so half of the stronger topology's
	// capacity can saturate the weaker one: both run at the lower rate.
	rate = min(rate, crate)

	runners := map[string]*Runner{standalone: r, cluster: &cr}
	rounds, err := r.interleave(standalone, cluster, func(i int, v string) (*Result, error) {
		r.prog.Stage(fmt.Sprintf("%s %s round %d/%d at %.0f/s", ScenarioClusterClaim, v, i+1, r.cfg.ABRounds, rate))
		res, err := runners[v].runPipeline(ctx, pipelineSpec{scenario: ScenarioClusterClaim, variant: v,
			partitions: r.cfg.Partitions, mode: r.mode(), open: true, rate: rate})
		if err != nil {
			return nil, fmt.Errorf("%s round %d: %w", v, i+1, err)
		}
		return res, nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*Result{}
	for _, v := range []string{standalone, cluster} {
		m := mergeHandoffRounds(rounds[v])
		if rv := runners[v]; rv.capacity > 0 {
			m.Extra["capacity"] = round3(rv.capacity)
		}
		out[v] = m
	}
	s, cl := out[standalone].Latency["claim"], out[cluster].Latency["claim"]
	if s != nil && cl != nil && s.P50 > 0 {
		out[cluster].Extra["claim_p50_vs_standalone"] = round3(cl.P50 / s.P50)
	}
	out[cluster].Note = fmt.Sprintf("claim latency on a throwaway 3-primary cluster and on the standalone server, both at %.0f jobs/s "+
		"(--rate, else the rate fraction of the lower of their e2e closed-loop capacities), rounds interleaved (%d each); "+
		"claim_p50_vs_standalone is the cluster's claim p50 over the standalone's", rate, r.cfg.ABRounds)
	return []*Result{out[standalone], out[cluster]}, nil
}

// clusterClaimResults returns cluster-claim's standalone and cluster
// results, or nils.
func clusterClaimResults(rep *Report) (standalone, cluster *Result) {
	p := "/P=" + fmt.Sprint(rep.Config.Partitions)
	return rep.Find(ScenarioClusterClaim + "/standalone" + p), rep.Find(ScenarioClusterClaim + "/cluster" + p)
}

func clusterClaimGoal(c *Result) Goal {
	return newGoal(fmt.Sprintf("cluster / standalone claim p50 at P=%d", c.Partitions), c.Extra["claim_p50_vs_standalone"], true,
		clusterClaimTarget, "×")
}

// clusterClaimHeadline is cluster-claim's line: both claim p50s and p99s,
// their ratio with its verdict, each side's loaded round trip and hand-off
// share.
func clusterClaimHeadline(rep *Report) string {
	s, c := clusterClaimResults(rep)
	if s == nil || c == nil || c.Extra["claim_p50_vs_standalone"] <= 0 {
		return ""
	}
	side := func(r *Result) string {
		line := fmt.Sprintf("p50 %s, p99 %s, %.0f%% hand-offs", fmtUS(r.Latency["claim"].P50),
			fmtUS(r.Latency["claim"].P99), 100*r.Extra["handoff_share"])
		if lr := r.Latency["fcall_rtt"]; lr != nil && lr.Count > 0 {
			line += fmt.Sprintf(", loaded FCALL p50 %s", fmtUS(lr.P50))
		}
		return line
	}
	load := fmt.Sprintf("at %s/s (%.0f%% of the lower capacity: standalone %s/s, cluster %s/s)", fmtRate(c.OfferedRate),
		100*rep.Config.RateFraction, fmtRate(s.Extra["capacity"]), fmtRate(c.Extra["capacity"]))
	if rep.Config.Rate > 0 {
		load = fmt.Sprintf("at --rate %s/s", fmtRate(c.OfferedRate))
	}
	return fmt.Sprintf("cluster vs standalone claim %s (%.0f interleaved rounds each): 3-primary cluster %s; standalone %s; cluster/standalone p50 %.2f× %s",
		load, c.Extra["rounds"], side(c), side(s), c.Extra["claim_p50_vs_standalone"], clusterClaimGoal(c).Tag())
}
