package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowfabric/flowfabric-go/sdk"
	"github.com/flowfabric/flowfabric-go/valkeybackend"
	"github.com/flowfabric/flowfabric-go/valkeytest"
)

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// sample reads the value of metric name's sample whose labels contain
// every one of labels (`k="v"`) from Prometheus text; ok is false when
// there is none.
func sample(text, name string, labels ...string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(line, l)
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

// ffengine --http serves /metrics whose per-lane gauges follow the work
// submitted, held and completed, /healthz, and /readyz, which answers 503
// while Valkey is down and 200 again once it is back.
func TestHTTPEndpoints(t *testing.T) {
	ctx := context.Background()
	srv, err := valkeytest.Start(ctx, valkeytest.Options{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e := startEngine(t, "web", srv.Addr(), "--http", "127.0.0.1:0", "--status-interval", "0")
	_, line := e.waitLine(regexp.MustCompile(`msg="http endpoints" addr=`), 10*time.Second)
	addr := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	base := "http://" + addr

	for _, p := range []string{"/healthz", "/readyz"} {
		if code, body := get(t, base+p); code != http.StatusOK {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	b, err := valkeybackend.Connect(ctx, valkeybackend.Options{Addrs: []string{srv.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const lane sdk.LaneID = "web"
	laneLabel := `messaging_destination_name="` + string(lane) + `"`
	gauge := func(name string, labels ...string) float64 {
		t.Helper()
		code, text := get(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		v, ok := sample(text, name, labels...)
		if !ok {
			t.Fatalf("/metrics has no %s{%s}:\n%s", name, strings.Join(labels, ","), text)
		}
		return v
	}
	waitGauge := func(name string, want float64, labels ...string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := gauge(name, labels...)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s{%s} = %v, want %v", name, strings.Join(labels, ","), got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	client := sdk.NewClient(b)
	for i := range 5 {
		kind := "quick"
		if i == 0 {
			kind = "hold"
		}
		if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Submit(ctx, sdk.CreateExecutionArgs{Lane: lane, Kind: "later", DelayUntil: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitGauge("flowfabric_lane_eligible", 5, laneLabel)
	waitGauge("flowfabric_lane_delayed", 1, laneLabel)
	if age := gauge("flowfabric_lane_oldest_waiting_seconds", laneLabel); age <= 0 {
		t.Fatalf("oldest waiting %vs with 5 eligible, want above 0", age)
	}
	waitGauge("flowfabric_active", 0)

	release := make(chan struct{})
	w, err := sdk.NewWorker(b, sdk.WorkerConfig{WorkerID: "web", Lanes: []sdk.LaneID{lane}})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- w.Run(wctx, sdk.HandlerFunc(func(ctx context.Context, task *sdk.Task) error {
			if task.Kind == "hold" {
				<-release
			}
			return nil
		}))
	}()
	defer func() {
		stop()
		<-done
	}()
	waitGauge("flowfabric_lane_eligible", 0, laneLabel)
	waitGauge("flowfabric_active", 1) // the held one
	close(release)
	waitGauge("flowfabric_active", 0)
	waitGauge("flowfabric_lane_delayed", 1, laneLabel)

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(path string, want int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, body := get(t, base+path)
			if code == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s, want %d", path, code, body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitStatus("/readyz", http.StatusServiceUnavailable)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d with Valkey down, want 200 (the process is up)", code)
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
		t.Fatalf("/metrics %d with Valkey down, want 200 (without the lane gauges)", code)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitStatus("/readyz", http.StatusOK)
	waitGauge("flowfabric_lane_delayed", 1, laneLabel) // the data came back with the server
}
