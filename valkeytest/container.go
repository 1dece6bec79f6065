package valkeytest

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// dockerProbeTimeout bounds the check that a Docker engine answers, so a missing or
// wedged engine fails fast instead of hanging a test run.
const dockerProbeTimeout = 10 * time.Second

const containerPort = "6379/tcp"

// containerServer is a Valkey server running in a container (Options.Container or
// FF_VALKEY_CONTAINER=1).
type containerServer struct {
	ctr *testcontainers.DockerContainer
}

// startContainer runs opts.Image through testcontainers-go. It is only called when a
// container was asked for, and fails with a clear error when no Docker engine answers.
func startContainer(ctx context.Context, opts Options) (s *Server, err error) {
	// testcontainers-go panics in some paths when it finds no Docker host.
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("valkeytest: container start failed: %v", r)
		}
	}()
	if err := dockerAnswers(ctx); err != nil {
		return nil, fmt.Errorf("valkeytest: %s=1 (or Options.Container) needs a Docker engine, and none answers: %w; unset %s to use the local valkey-server", EnvContainer, err, EnvContainer)
	}
	args := []string{"valkey-server", "--save", ""}
	if opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, opts.ExtraArgs...)
	ctr, err := testcontainers.Run(ctx, opts.Image,
		testcontainers.WithCmd(args...),
		testcontainers.WithExposedPorts(containerPort),
		testcontainers.WithWaitStrategyAndDeadline(opts.StartTimeout,
			wait.ForLog("Ready to accept connections"),
			wait.ForListeningPort(containerPort)),
	)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.Background())
		}
		return nil, fmt.Errorf("valkeytest: run %s: %w", opts.Image, err)
	}
	cs := &containerServer{ctr: ctr}
	addr, err := cs.endpoint(ctx)
	if err != nil {
		_ = cs.close()
		return nil, err
	}
	return &Server{addr: addr, opts: opts, ctr: cs, owned: true}, nil
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

// endpoint returns host:port of the mapped Valkey port; it can change across restarts.
func (c *containerServer) endpoint(ctx context.Context) (string, error) {
	ep, err := c.ctr.PortEndpoint(ctx, containerPort, "")
	if err != nil {
		return "", fmt.Errorf("valkeytest: container endpoint: %w", err)
	}
	if host, port, ok := strings.Cut(ep, ":"); ok && host == "localhost" {
		ep = "127.0.0.1:" + port
	}
	return ep, nil
}

func (c *containerServer) restart(ctx context.Context) (string, error) {
	timeout := stopTimeout
	if err := c.ctr.Stop(ctx, &timeout); err != nil {
		return "", fmt.Errorf("valkeytest: stop container: %w", err)
	}
	if err := c.ctr.Start(ctx); err != nil {
		return "", fmt.Errorf("valkeytest: start container: %w", err)
	}
	return c.endpoint(ctx)
}

func (c *containerServer) kill() error {
	var zero time.Duration
	if err := c.ctr.Stop(context.Background(), &zero); err != nil {
		return fmt.Errorf("valkeytest: kill container: %w", err)
	}
	return nil
}

func (c *containerServer) close() error {
	if err := c.ctr.Terminate(context.Background()); err != nil {
		return fmt.Errorf("valkeytest: terminate container: %w", err)
	}
	return nil
}
