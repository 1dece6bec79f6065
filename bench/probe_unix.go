//go:build unix

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// probeIOTimeout bounds one blocking read or write of a probe connection
// (SO_RCVTIMEO / SO_SNDTIMEO): a server that stops answering fails the
// probe instead of hanging it.
const probeIOTimeout = 5 * time.Second

// blockingSocket is a TCP socket used with blocking read(2) and write(2),
// bypassing Go's network poller. A prober waiting for a reply then sleeps in
// the kernel, as valkey-benchmark does in epoll_wait. Through the poller, an
// otherwise idle Go process keeps polling the network from a spare P, and
// on some machines a serial round trip then measures 2-3x faster than any
// event-loop client sees: the anchor would disagree with valkey-benchmark
// by more than the calibration tolerance, run to run.
type blockingSocket struct{ fd int }

// dialBlocking connects to addr (numeric or resolvable host:port).
func dialBlocking(ctx context.Context, addr string) (io.ReadWriteCloser, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("probe resolve %s: %v", addr, err)
	}
	portNum, err := net.LookupPort("tcp", port)
	if err != nil {
		return nil, err
	}
	ip := ips[0].Unmap() // an IPv4-mapped address dials as IPv4
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip.Is4() {
		sa = &syscall.SockaddrInet4{Port: portNum, Addr: ip.As4()}
	} else {
		family = syscall.AF_INET6
		sa = &syscall.SockaddrInet6{Port: portNum, Addr: ip.As16()}
	}
	// A blocking connect that a signal interrupts (EINTR: the runtime's
	// preemption signals reach this thread) goes on in the background and
	// cannot simply be called again: the attempt starts over on a new socket.
	for attempt := 0; ; attempt++ {
		fd, err := probeSocket(family, sa)
		if errors.Is(err, syscall.EINTR) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("probe connect %s: %w", addr, err)
		}
		return &blockingSocket{fd: fd}, nil
	}
}

// probeSocket makes a blocking TCP socket with the probe's options and
// connects it to sa; on failure the socket is closed.
func probeSocket(family int, sa syscall.Sockaddr) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM, 0)
	if err != nil {
		return 0, err
	}
	tv := syscall.NsecToTimeval(probeIOTimeout.Nanoseconds())
	for _, opt := range []error{
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1),
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv),
		syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &tv),
		syscall.Connect(fd, sa),
	} {
		if opt != nil {
			syscall.Close(fd)
			return 0, opt
		}
	}
	return fd, nil
}

func (s *blockingSocket) Read(p []byte) (int, error) {
	for {
		n, err := syscall.Read(s.fd, p)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (s *blockingSocket) Write(p []byte) (int, error) {
	written := 0
	for written < len(p) {
		n, err := syscall.Write(s.fd, p[written:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

func (s *blockingSocket) Close() error { return syscall.Close(s.fd) }
