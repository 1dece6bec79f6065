package sdk_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCoreModuleStaysLight checks the root module (sdk, valkeybackend, scanner, lua,
// valkeytest) keeps the harness's, the container helper's and OpenTelemetry's
// dependencies out of its module graph: those live in nested modules (bench, profiles,
// cmd/ffbench, cmd/ffengine, otel, valkeytest/container) so a user who imports the engine
// does not download or resolve them.
func TestCoreModuleStaysLight(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	cmd := exec.Command("go", "list", "-m", "all")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list -m all: %v\n%s", err, out)
	}
	mods := strings.Split(strings.TrimSpace(string(out)), "\n")
	heavy := []string{"testcontainers", "moby", "docker", "pyroscope", "asynq", "HdrHistogram",
		"opentelemetry", "prometheus", "go-redis"}
	for _, m := range mods[1:] {
		for _, h := range heavy {
			if strings.Contains(m, h) {
				t.Errorf("the core module's graph holds %s (move what needs it to a nested module)", m)
			}
		}
	}
	t.Logf("core module graph: %d modules besides the root: %s", len(mods)-1, strings.Join(mods[1:], ", "))
}
