package ffotel

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/flowfabric/flowfabric-go/sdk"
)

// A span context survives formatTraceParent then parseTraceParent (as a
// remote one); malformed carriers read as no span context, never a panic.
func TestTraceParentRoundTrip(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: flags})
		s := formatTraceParent(sc)
		if len(s) != 55 || !strings.HasPrefix(s, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0") {
			t.Fatalf("formatted %q", s)
		}
		got := parseTraceParent(s)
		if got.TraceID() != tid || got.SpanID() != sid || got.TraceFlags() != flags || !got.IsRemote() {
			t.Fatalf("parsed %q as %+v", s, got)
		}
	}
	if s := formatTraceParent(trace.SpanContext{}); s != "" {
		t.Fatalf("an invalid span context formats as %q", s)
	}
	for _, bad := range []string{"", "00", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", strings.Repeat("-", 80)} {
		if sc := parseTraceParent(bad); sc.IsValid() {
			t.Errorf("%q parsed as %+v", bad, sc)
		}
	}
	// A later version's longer header is read by its first 55 bytes.
	if sc := parseTraceParent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"); !sc.IsValid() {
		t.Error("a version 01 header with more fields was refused")
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if sc := parseTraceParent(s); sc.IsValid() && formatTraceParent(sc)[3:52] != s[3:52] {
			t.Fatalf("%q read as %v", s, sc)
		}
	})
}

// mintedAt reads the time of an SDK-minted (version 7) id, and refuses
// other ids.
func TestMintedAt(t *testing.T) {
	before := time.Now().Truncate(time.Millisecond)
	id := sdk.NewExecutionID(5)
	got, ok := mintedAt(id)
	if !ok || got.Before(before) || got.After(time.Now()) {
		t.Fatalf("minted at %v (%v), want about %v", got, ok, before)
	}
	for _, other := range []sdk.ExecutionID{"{p:1}:0b7c6f7e-2a51-4c1e-9d3a-5f0e8b1c2d3e", "", "{p:1}:", "x:zzzzzzzz-zzzz-7zzz-zzzz-zzzzzzzzzzzz"} {
		if _, ok := mintedAt(other); ok {
			t.Errorf("%q: read a mint time", other)
		}
	}
}

// A sampled submit span is carried (a caller's own carrier is kept); an
// unsampled one, or none, leaves the execution without a carrier.
func TestSubmitCarrier(t *testing.T) {
	own := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, c := range []struct {
		name  string
		tp    trace.TracerProvider
		given string
		want  func(string) bool
	}{
		{"sampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())), "",
			func(s string) bool { return parseTraceParent(s).IsSampled() }},
		{"caller's own", sdktrace.NewTracerProvider(), own, func(s string) bool { return s == own }},
		{"unsampled", sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())), "",
			func(s string) bool { return s == "" }},
		{"no tracing", noop.NewTracerProvider(), "", func(s string) bool { return s == "" }},
	} {
		obs, err := NewClientObserver(Options{TracerProvider: c.tp})
		if err != nil {
			t.Fatal(err)
		}
		args := sdk.CreateExecutionArgs{Lane: "l", Kind: "k", TraceParent: c.given}
		ctx := obs.SubmitStarted(context.Background(), &args)
		if !c.want(args.TraceParent) {
			t.Errorf("%s: carrier %q", c.name, args.TraceParent)
		}
		obs.SubmitEnded(ctx, &args, sdk.CreateExecutionResult{}, nil, time.Millisecond)
	}
}
