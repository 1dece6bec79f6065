package valkeytest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func TestACLHelpers(t *testing.T) {
	ctx := t.Context()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	if err := valkeytest.SetUser(ctx, addrs, "reader", "reset", "on", ">pw", "~app:*", "+get"); err != nil {
		t.Fatal(err)
	}
	if err := valkeytest.ResetACLLog(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: addrs, Username: "reader", Password: "pw",
		DisableCache: true, ForceSingleClient: true, ClientSetInfo: valkey.DisableClientSetInfo})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(ctx, c.B().Get().Key("app:x").Build().Pin()).Error(); !valkey.IsValkeyNil(err) {
		t.Fatalf("allowed GET: %v", err)
	}
	if err := c.Do(ctx, c.B().Set().Key("app:x").Value("1").Build().Pin()).Error(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Fatalf("denied SET: %v", err)
	}
	got, err := valkeytest.ACLDenials(ctx, addrs)
	if err != nil || !slices.Equal(got, []string{"reader command set"}) {
		t.Fatalf("ACLDenials = %q, %v", got, err)
	}
	if err := valkeytest.ResetACLLog(ctx, addrs); err != nil {
		t.Fatal(err)
	}
	if got, err := valkeytest.ACLDenials(ctx, addrs); err != nil || len(got) != 0 {
		t.Fatalf("after ResetACLLog: %q, %v", got, err)
	}
}

func TestDeleteLibrary(t *testing.T) {
	ctx := t.Context()
	addrs := []string{valkeytest.NewServer(t).Addr()}
	const lib = "#!lua name=scratch\nredis.register_function('scratch_f', function() return 1 end)"
	if err := valkeytest.EachPrimary(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().FunctionLoad().FunctionCode(lib).Build().Pin()).Error()
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second finds nothing to delete
		if err := valkeytest.DeleteLibrary(ctx, addrs, "scratch"); err != nil {
			t.Fatal(err)
		}
	}
	err := valkeytest.EachPrimary(ctx, addrs, func(c valkey.Client) error {
		return c.Do(ctx, c.B().Fcall().Function("scratch_f").Numkeys(0).Build().Pin()).Error()
	})
	if err == nil || !strings.Contains(err.Error(), "Function not found") {
		t.Fatalf("FCALL after DeleteLibrary: %v", err)
	}
}
