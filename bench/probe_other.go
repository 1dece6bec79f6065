//go:build !unix

package bench

import (
	"context"
	"io"
	"net"
)

// dialBlocking falls back to a net.Conn where raw sockets are not at hand.
func dialBlocking(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
