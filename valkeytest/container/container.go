// Package container runs valkeytest's container mode through testcontainers-go. Importing
// it registers its runtime with valkeytest:
//
//	import _ "github.com/flowfabric/flowfabric-go/valkeytest/container"
//
// It is a module of its own so that the engine's users do not pull testcontainers-go and
// the Docker client into their module graph.
package container

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/flowfabric/flowfabric-go/valkeytest"
)

func init() { valkeytest.RegisterContainerRuntime(Runtime{}) }

// dockerProbeTimeout bounds the check that a Docker engine answers, so a missing or
// wedged engine fails fast instead of hanging a test run.
const dockerProbeTimeout = 10 * time.Second

// stopTimeout is how long a graceful stop waits before the container is killed.
const stopTimeout = 10 * time.Second

const containerPort = "6379/tcp"

// Runtime is valkeytest.ContainerRuntime over testcontainers-go.
type Runtime struct{}

// Run starts image with args and waits for Valkey's ready line and its port. It fails
// fast, naming Docker, when no Docker engine answers.
func (Runtime) Run(ctx context.Context, image string, args []string, startTimeout time.Duration) (_ valkeytest.Container, err error) {
	// testcontainers-go panics in some paths when it finds no Docker host.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("valkeytest: container start failed: %v", r)
		}
	}()
	if err := dockerAnswers(ctx); err != nil {
		return nil, fmt.Errorf("valkeytest: container mode needs a Docker engine, and none answers: %w; unset %s to use the local valkey-server", err, valkeytest.EnvContainer)
	}
	ctr, err := testcontainers.Run(ctx, image,
		testcontainers.WithCmd(args...),
		testcontainers.WithExposedPorts(containerPort),
		testcontainers.WithWaitStrategyAndDeadline(startTimeout,
			wait.ForLog("Ready to accept connections"),
			wait.ForListeningPort(containerPort)),
	)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.Background())
		}
		return nil, fmt.Errorf("valkeytest: run %s: %w", image, err)
	}
	return &server{ctr: ctr}, nil
}

// dockerAnswers pings the Docker engine testcontainers-go would use.
func dockerAnswers(ctx context.Context) (err error) {
	ctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("%v", r)
			}
		}()
		cli, err := testcontainers.NewDockerClientWithOpts(ctx)
		if err != nil {
			done <- err
			return
		}
		defer cli.Close()
		_, err = cli.Ping(ctx, client.PingOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no answer within %v: %w", dockerProbeTimeout, ctx.Err())
	}
}

// server is one running Valkey container.
type server struct {
	ctr *testcontainers.DockerContainer
}

// Endpoint returns host:port of the mapped Valkey port; it can change across restarts.
func (c *server) Endpoint(ctx context.Context) (string, error) {
	ep, err := c.ctr.PortEndpoint(ctx, containerPort, "")
	if err != nil {
		return "", fmt.Errorf("valkeytest: container endpoint: %w", err)
	}
	if host, port, ok := strings.Cut(ep, ":"); ok && host == "localhost" {
		ep = "127.0.0.1:" + port
	}
	return ep, nil
}

func (c *server) Restart(ctx context.Context) (string, error) {
	timeout := stopTimeout
	if err := c.ctr.Stop(ctx, &timeout); err != nil {
		return "", fmt.Errorf("valkeytest: stop container: %w", err)
	}
	if err := c.ctr.Start(ctx); err != nil {
		return "", fmt.Errorf("valkeytest: start container: %w", err)
	}
	return c.Endpoint(ctx)
}

func (c *server) Kill() error {
	var zero time.Duration
	if err := c.ctr.Stop(context.Background(), &zero); err != nil {
		return fmt.Errorf("valkeytest: kill container: %w", err)
	}
	return nil
}

func (c *server) Close() error {
	if err := c.ctr.Terminate(context.Background()); err != nil {
		return fmt.Errorf("valkeytest: terminate container: %w", err)
	}
	return nil
}
