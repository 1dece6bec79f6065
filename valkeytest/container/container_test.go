package container_test

import (
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/flowfabric/flowfabric-go/valkeytest"
	_ "github.com/flowfabric/flowfabric-go/valkeytest/container"
)

// TestContainerWithoutDocker checks FF_VALKEY_CONTAINER=1 either starts a container (when a
// Docker engine answers) or fails fast with an error that names Docker.
func TestContainerWithoutDocker(t *testing.T) {
	t.Setenv(valkeytest.EnvContainer, "1")
	start := time.Now()
	srv, err := valkeytest.Start(t.Context(), valkeytest.Options{})
	if err == nil {
		defer srv.Close()
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{srv.Addr()}, DisableCache: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Do(t.Context(), c.B().Ping().Build().Pin()).Error(); err != nil {
			t.Fatalf("PING container: %v", err)
		}
		return
	}
	if !strings.Contains(err.Error(), "Docker") {
		t.Fatalf("error does not name Docker: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("failing took %v; want a fast failure", d)
	}
	t.Logf("as expected without Docker: %v", err)
}
