package bench

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// The durability scenario: what acknowledged writes (valkeybackend
// Options.WaitReplicas) cost the e2e pipeline, A/B on one primary with its
// replicas. Rounds alternate A B, B A, … (cfg.ABRounds of each): first the
// closed loops (capacity), then the open loops at one rate for both
// (cfg.Rate, else RateFraction of the lower of the two capacities), each
// round a fresh deployment on the same servers.

const durabilityOff = "off"

// durabilityReplicas is the N of Config.Durability "waitN" (1 when empty).
func (c *Config) durabilityReplicas() int {
	n, _ := parseDurability(c.Durability)
	return n
}

func (c *Config) validateDurability() error {
	_, err := parseDurability(c.Durability)
	return err
}

// parseDurability reads "waitN" (N in 1..8; "" is wait1).
func parseDurability(s string) (int, error) {
	if s == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(s, "wait"))
	if !strings.HasPrefix(s, "wait") || err != nil || n < 1 || n > 8 {
		return 0, fmt.Errorf("durability %q: want waitN, N replicas to acknowledge each write, 1..8 (e.g. wait1)", s)
	}
	return n, nil
}

// replicasLinkWithin bounds startReplicas' wait for its replicas to link.
const replicasLinkWithin = 30 * time.Second

// startReplicas starts n replicas of the embedded server and waits until
// the server counts them all, linked.
func (t *Target) startReplicas(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	host, port, _ := strings.Cut(t.server.Addr(), ":")
	for range n {
		r, err := valkeytest.Start(ctx, valkeytest.Options{ExtraArgs: []string{"--replicaof", host, port}})
		if err != nil {
			return fmt.Errorf("replica: %w", err)
		}
		t.replicas = append(t.replicas, r)
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{t.server.Addr()}, ForceSingleClient: true, DisableCache: true})
	if err != nil {
		return err
	}
	defer c.Close()
	return waitLinkedReplicas(ctx, c, n, replicasLinkWithin)
}

// waitLinkedReplicas waits until the primary behind c counts n linked
// replicas, for at most within and no longer than ctx lasts, with an error
// saying how many linked. Each INFO runs on its own goroutine and the wait
// does not wait for it once ctx ends: valkey-go lets a call whose context
// has a deadline run to that deadline (cancellation aside), so a primary
// that stops answering would hold a cancelled run until then. An
// abandoned call ends by the bound's deadline, or when c is closed.
func waitLinkedReplicas(ctx context.Context, c valkey.Client, n int, within time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	type read struct {
		linked int
		err    error
	}
	linked := 0 // as last read
	for {
		reads := make(chan read, 1)
		go func() {
			n, err := linkedReplicas(wctx, c)
			reads <- read{n, err}
		}()
		select {
		case r := <-reads:
			switch {
			case r.err == nil && r.linked >= n:
				return nil
			case r.err == nil:
				linked = r.linked
			case wctx.Err() == nil:
				return r.err
			}
		case <-wctx.Done():
		}
		select {
		case <-wctx.Done():
		case <-time.After(50 * time.Millisecond):
			continue
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%d of %d replicas linked when the run ended: %w", linked, n, ctx.Err())
		}
		return fmt.Errorf("%d of %d replicas linked after %v: %w", linked, n, within, wctx.Err())
	}
}

// linkedReplicas counts a primary's replicas whose link is online.
func linkedReplicas(ctx context.Context, c valkey.Client) (int, error) {
	info, err := c.Do(ctx, c.B().Info().Section("replication").Build()).ToString()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "state=online") {
			n++
		}
	}
	return n, nil
}

// runDurability runs the A/B (see the top of the file).
func (r *Runner) runDurability(ctx context.Context) ([]*Result, error) {
	cfg := r.cfg
	n := cfg.durabilityReplicas()
	for i, p := range r.t.primaries {
		linked, err := linkedReplicas(ctx, p)
		if err != nil {
			return nil, err
		}
		if linked < n {
			return nil, fmt.Errorf("%s wait%d needs %d replicas of every primary; %s has %d linked "+
				"(with no --addr, --durability wait%d starts them)", ScenarioDurability, n, n, r.t.primaryAddrs[i], linked, n)
		}
	}
	on := "wait" + strconv.Itoa(n)
	defer func() { r.t.waitReplicas = 0 }()
	run := func(v string, i int, sp pipelineSpec) (*Result, error) {
		r.t.waitReplicas = 0
		if v == on {
			r.t.waitReplicas = n
		}
		loop := "closed loop"
		if sp.open {
			loop = fmt.Sprintf("open loop, %.0f/s", sp.rate)
		}
		r.prog.Stage(fmt.Sprintf("%s %s round %d/%d (%s)", ScenarioDurability, v, i+1, cfg.ABRounds, loop))
		sp.scenario, sp.partitions, sp.mode = ScenarioDurability, cfg.Partitions, r.mode()
		return r.runPipeline(ctx, sp)
	}
	closed, err := r.interleave(durabilityOff, on, func(i int, v string) (*Result, error) {
		c, err := run(v, i, pipelineSpec{variant: v + "-closed", inFlight: cfg.InFlight})
		if err != nil {
			return nil, fmt.Errorf("%s closed loop: %w", v, err)
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	// The merged closed loops: Throughput is the rounds' median, the
	// capacity; Lost and Duplicated their sums.
	caps := map[string]*Result{}
	for _, v := range []string{durabilityOff, on} {
		caps[v] = mergeRounds(closed[v])
	}
	rate := cfg.Rate
	if rate <= 0 {
		rate = cfg.RateFraction * min(caps[durabilityOff].Throughput, caps[on].Throughput)
	}
	open, err := r.interleave(durabilityOff, on, func(i int, v string) (*Result, error) {
		o, err := run(v, i, pipelineSpec{variant: v, open: true, rate: rate})
		if err != nil {
			return nil, fmt.Errorf("%s open loop: %w", v, err)
		}
		return o, nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]*Result{}
	for _, v := range []string{durabilityOff, on} {
		m, c := mergeRounds(open[v]), caps[v]
		m.Lost += c.Lost // the closed loops' work counts in the correctness totals too
		m.Duplicated += c.Duplicated
		// Each round's claim p50: a stall in one round shows here (the
		// merged histograms blend it in).
		var p50s []float64
		for _, res := range open[v] {
			if c := res.Latency["claim"]; c != nil && c.Count > 0 {
				p50s = append(p50s, c.P50)
			}
		}
		if len(p50s) > 0 {
			m.Extra["claim_p50_round_min"], m.Extra["claim_p50_round_max"] = slices.Min(p50s), slices.Max(p50s)
		}
		m.Extra["capacity"] = round3(c.Throughput)
		m.Extra["capacity_min"], m.Extra["capacity_max"] = c.Extra["throughput_min"], c.Extra["throughput_max"]
		m.Extra["capacity_valkey_cpu_us_per_op"] = c.ValkeyCPUPerOpUS
		m.Extra["capacity_commands_per_op"] = c.CommandsPerOp
		m.Extra["waits_per_op"] = c.CommandMix["wait"]
		m.Extra["wait_replicas"] = 0
		if v == on {
			m.Extra["wait_replicas"] = float64(n)
		}
		out[v] = m
	}
	a, b := out[on], out[durabilityOff]
	for _, name := range []string{"claim", "e2e"} {
		if as, bs := a.Latency[name], b.Latency[name]; as != nil && bs != nil && bs.P50 > 0 && bs.P99 > 0 {
			a.Extra[name+"_p50_vs_off"] = round3(as.P50 / bs.P50)
			a.Extra[name+"_p99_vs_off"] = round3(as.P99 / bs.P99)
		}
	}
	if b.Extra["capacity"] > 0 {
		a.Extra["capacity_vs_off"] = round3(a.Extra["capacity"] / b.Extra["capacity"])
	}
	return []*Result{b, a}, nil
}

// durabilityResults are the A/B's two results at the config's partition
// count (nil, nil when absent).
func durabilityResults(rep *Report) (off, on *Result) {
	for _, r := range rep.Results {
		if r.Scenario != ScenarioDurability || r.Partitions != rep.Config.Partitions {
			continue
		}
		switch {
		case r.Variant == durabilityOff:
			off = r
		case strings.HasPrefix(r.Variant, "wait") && !strings.HasSuffix(r.Variant, "-closed"):
			on = r
		}
	}
	if off == nil || on == nil {
		return nil, nil
	}
	return off, on
}

// durabilityHeadline is the A/B in one line ("" without it).
func durabilityHeadline(rep *Report) string {
	off, on := durabilityResults(rep)
	if off == nil {
		return ""
	}
	lat := func(r *Result, name string) string {
		if s := r.Latency[name]; s != nil {
			return fmtUS(s.P50)
		}
		return "-"
	}
	return fmt.Sprintf("durability A/B at P=%d, %.0f interleaved rounds each: capacity %s vs %s jobs/s (%.2f×); "+
		"open loop at %s jobs/s: claim p50 %s vs %s (%.2f×), e2e p50 %s vs %s (%.2f×); Valkey CPU per job (closed loop) %.1f vs %.1f µs; "+
		"%.2f WAITs per job",
		on.Partitions, on.Extra["rounds"], fmtRate(on.Extra["capacity"]), fmtRate(off.Extra["capacity"]), on.Extra["capacity_vs_off"],
		fmtRate(on.OfferedRate), lat(on, "claim"), lat(off, "claim"), on.Extra["claim_p50_vs_off"],
		lat(on, "e2e"), lat(off, "e2e"), on.Extra["e2e_p50_vs_off"],
		on.Extra["capacity_valkey_cpu_us_per_op"], off.Extra["capacity_valkey_cpu_us_per_op"], on.Extra["waits_per_op"]) +
		" (" + on.Variant + " vs " + durabilityOff + ")"
}

// durabilityMarkdown is the report's section on the A/B.
func durabilityMarkdown(b *strings.Builder, rep *Report) {
	off, on := durabilityResults(rep)
	if off == nil {
		return
	}
	b.WriteString("## Durability: acknowledged writes\n\n")
	b.WriteString(md(durabilityHeadline(rep), maxTextRunes) + "\n\n")
	b.WriteString("| variant | capacity jobs/s (min–max) | claim p50 / p99 | e2e p50 / p99 | Valkey CPU µs/job | cmds/job | WAITs/job |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range []*Result{off, on} {
		c, e := r.Latency["claim"], r.Latency["e2e"]
		if c == nil || e == nil {
			continue
		}
		fmt.Fprintf(b, "| %s | %s (%s–%s) | %s / %s | %s / %s | %.1f | %.2f | %.2f |\n", md(r.Variant, maxNameRunes),
			fmtRate(r.Extra["capacity"]), fmtRate(r.Extra["capacity_min"]), fmtRate(r.Extra["capacity_max"]),
			fmtUS(c.P50), fmtUS(c.P99), fmtUS(e.P50), fmtUS(e.P99), r.Extra["capacity_valkey_cpu_us_per_op"],
			r.Extra["capacity_commands_per_op"], r.Extra["waits_per_op"])
	}
	b.WriteString("\n")
}

// ReplicasWanted is how many replicas of an embedded server the config's
// durability A/B needs: 0 when it runs none.
func (c Config) ReplicasWanted() int {
	if c.Durability == "" && !slices.Contains(c.Scenarios, ScenarioDurability) {
		return 0
	}
	return c.durabilityReplicas()
}
