package valkeytest_test

import (
	"context"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_get:calls=3,usec=10,usec_per_call=3.33\r\ncmdstat_client|setinfo:calls=2,usec=1\r\nnoise\r\n"
	got := valkeytest.ParseCommandStats(info)
	if len(got) != 2 || got["get"] != 3 || got["client|setinfo"] != 2 {
		t.Fatalf("parsed %v", got)
	}
}

func TestCommandCallsResetAndFlush(t *testing.T) {
	ctx := context.Background()
	srv := valkeytest.NewServer(t)
	addrs := []string{srv.Addr()}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := valkeytest.ResetStats(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build().Pin()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	calls, err := valkeytest.CommandCalls(ctx, addrs)
	if err != nil || calls["set"] != 5 {
		t.Fatalf("calls %v %v, want set=5", calls, err)
	}
	if err := valkeytest.FlushAll(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Do(ctx, c.B().Dbsize().Build().Pin()).AsInt64(); n != 0 {
		t.Fatalf("dbsize %d after FlushAll", n)
	}
}
