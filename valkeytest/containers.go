package valkeytest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// ContainerRuntime runs a Valkey image for container mode (Options.Container or
// FF_VALKEY_CONTAINER=1). The core module carries no container engine client: the nested
// module github.com/flowfabric/flowfabric-go/valkeytest/container provides one
// (testcontainers-go) and registers it when imported, so only programs that want
// containers pay for that dependency.
type ContainerRuntime interface {
	// Run starts image with args as its command and returns once the server inside
	// answers, or after startTimeout with an error.
	Run(ctx context.Context, image string, args []string, startTimeout time.Duration) (Container, error)
}

// Container is one running Valkey container.
type Container interface {
	// Endpoint returns host:port of the container's Valkey port.
	Endpoint(ctx context.Context) (string, error)
	// Restart stops and starts the container, keeping its data; the endpoint can change.
	Restart(ctx context.Context) (string, error)
	// Kill stops the container at once.
	Kill() error
	// Close removes the container.
	Close() error
}

var (
	runtimeMu sync.Mutex
	runtime   ContainerRuntime
)

// RegisterContainerRuntime sets the runtime container mode uses; the last call wins.
func RegisterContainerRuntime(r ContainerRuntime) {
	runtimeMu.Lock()
	defer runtimeMu.Unlock()
	runtime = r
}

// startContainer runs opts.Image through the registered runtime.
func startContainer(ctx context.Context, opts Options) (*Server, error) {
	runtimeMu.Lock()
	r := runtime
	runtimeMu.Unlock()
	if r == nil {
		return nil, fmt.Errorf("valkeytest: %s=1 (or Options.Container) needs a container runtime: import _ %q (its own module, which brings testcontainers-go and a Docker engine client); unset %s to use the local valkey-server",
			EnvContainer, "github.com/flowfabric/flowfabric-go/valkeytest/container", EnvContainer)
	}
	args := []string{"valkey-server", "--save", ""}
	if opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	args = append(args, opts.ExtraArgs...)
	c, err := r.Run(ctx, opts.Image, args, opts.StartTimeout)
	if err != nil {
		return nil, err
	}
	addr, err := c.Endpoint(ctx)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return &Server{addr: addr, opts: opts, ctr: c, owned: true}, nil
}
