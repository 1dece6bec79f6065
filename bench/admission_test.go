package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/valkeybackend"
)

// TestWindowStats: the sliding maximum counts a window [t, t+W) from each
// admission (half-open, as the quota's own window: an admission W after
// another is in the next window), whole back-to-back windows give the
// mean, and a window over the limit is counted.
func TestWindowStats(t *testing.T) {
	t.Parallel()
	// 3 per 10ms, exactly at the limit: 0, 1, 2 | 10, 11, 12 | 20, 21, 22.
	ts := []int64{0, 1, 2, 10, 11, 12, 20, 21, 22}
	s := windowStats(ts, 10, 3)
	if s.maxIn != 3 || s.over != 0 || s.windows != 2 || s.meanIn != 3 {
		t.Fatalf("at the limit: %+v", s)
	}
	// One more at 9: [0, 10) holds 4, and so do [1, 11), [2, 12) and
	// [9, 19); [10, 20) holds 3 (20 is the next window's).
	s = windowStats([]int64{0, 1, 2, 9, 10, 11, 12, 20}, 10, 3)
	if s.maxIn != 4 || s.over != 4 {
		t.Fatalf("over the limit: %+v", s)
	}
	if s := windowStats(nil, 10, 3); s.maxIn != 0 || s.windows != 0 {
		t.Fatalf("no admission: %+v", s)
	}
	// One burst shorter than a window: no whole window, no mean.
	if s := windowStats([]int64{5, 5, 6}, 10, 3); s.maxIn != 3 || s.windows != 0 || s.meanIn != 0 {
		t.Fatalf("one burst: %+v", s)
	}
}

// TestAdmissionFailureFailsTheRun: a window over the quota's limit, an
// admission the check did not see, a quota'd lane's work handed off or
// claimed without ff_quota_admit, or nothing measured fails the run; clean
// results pass.
func TestAdmissionFailureFailsTheRun(t *testing.T) {
	t.Parallel()
	rate := func(over, unobserved, twice float64) *Result {
		return &Result{Scenario: ScenarioAdmission, Variant: admRate, Partitions: 16, Ops: 500,
			Extra: map[string]float64{"admissions": 520, "limit": 50, "window_ms": 200, "max_per_window": 50 + over,
				"windows_over_limit": over, "unobserved_starts": unobserved, "started_twice": twice}}
	}
	quota := func(handoffs, zrem float64) *Result {
		return &Result{Scenario: ScenarioAdmission, Variant: admQuota, Partitions: 16, Ops: 400, OfferedRate: 200, Throughput: 200,
			CommandMix: map[string]float64{"zremrangebyscore": zrem}, Extra: map[string]float64{"handoffs": handoffs}}
	}
	for name, tc := range map[string]struct {
		res  *Result
		want string
	}{
		"over the limit": {rate(1, 0, 0), "RATE LIMIT EXCEEDED: up to 51 admissions within 200ms"},
		"unobserved":     {rate(0, 3, 0), "the check is incomplete"},
		"started twice":  {rate(0, 0, 1), "started twice"},
		"not admitted":   {quota(0, 0.1), "ff_quota_admit did not run"},
		"nothing":        {&Result{Scenario: ScenarioAdmission, Variant: admPlain, Partitions: 16, Extra: map[string]float64{}}, "no job measured"},
	} {
		rep := &Report{Results: []*Result{tc.res}}
		(&Runner{}).finish(rep)
		if rep.OK() || len(rep.Failures) != 1 || !strings.Contains(rep.Failures[0], "admission: ") || !strings.Contains(rep.Failures[0], tc.want) {
			t.Errorf("%s: report OK %v, failures %q", name, rep.OK(), rep.Failures)
		}
	}
	// Under a backlog fewer jobs than arrived are claimed in the window:
	// ZREMRANGEBYSCORE per arrival is judged against the share claimed.
	backlog := quota(0, 0.2)
	backlog.Throughput = 50
	// Hand-offs of the quota lane are admitted in the create: they pass.
	for _, res := range []*Result{rate(0, 0, 0), quota(0, 1.02), quota(300, 1.02), backlog,
		{Scenario: ScenarioAdmission, Variant: admPlain, Partitions: 16, Ops: 400, Extra: map[string]float64{"handoffs": 400}}} {
		rep := &Report{Results: []*Result{res}}
		if (&Runner{}).finish(rep); !rep.OK() {
			t.Errorf("%s: a clean result failed: %q", res.Key(), rep.Failures)
		}
	}
}

func TestAdmissionConfig(t *testing.T) {
	t.Parallel()
	var c Config
	if c.admissionRate() != AdmissionRateDefault || c.admissionLimit() != AdmissionLimitDefault ||
		c.admissionWindow() != AdmissionWindowDefault || c.admissionOverload() != AdmissionOverloadDefault || c.validateAdmission() != nil {
		t.Fatalf("defaults: %v %v %v %v", c.admissionRate(), c.admissionLimit(), c.admissionWindow(), c.admissionOverload())
	}
	for _, bad := range []Config{{AdmissionRate: -1}, {AdmissionLimit: -1}, {AdmissionWindow: 5 * time.Millisecond},
		{AdmissionWindow: 10500 * time.Microsecond}, {AdmissionOverload: 1}, {AdmissionOverload: -2}} {
		if bad.validateAdmission() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	ok := Config{AdmissionRate: 500, AdmissionLimit: 10, AdmissionWindow: 50 * time.Millisecond, AdmissionOverload: 2.5}
	if err := ok.validateAdmission(); err != nil || ok.admissionWindow() != 50*time.Millisecond {
		t.Errorf("%+v: %v", ok, err)
	}
	for _, p := range []string{"smoke", "gate"} {
		c, _ := Profile(p)
		found := false
		for _, s := range c.Scenarios {
			found = found || s == ScenarioAdmission
		}
		if !found {
			t.Errorf("profile %s lacks %s", p, ScenarioAdmission)
		}
	}
	hash, win := valkeybackend.QuotaKeys("ffbench-rate")
	if !strings.HasPrefix(hash, "ff:q:{q:") || win != hash+":win" || !strings.HasSuffix(hash, "}:ffbench-rate") {
		t.Errorf("keys %q %q", win, hash)
	}
}
