package valkeytest

import (
	"errors"
	"net"
	"strconv"
)

// maxClusterPort keeps port+10000 (the cluster bus port) inside the valid range.
const maxClusterPort = 55535

// freePort asks the kernel for a free loopback port. With bus set it also requires
// port+10000 to be free, for cluster nodes. Another process can still take the port
// before the server binds it; callers retry startup on a bind failure.
func freePort(bus bool) (int, error) {
	var lastErr error
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		if !bus {
			l.Close()
			return port, nil
		}
		if port >= maxClusterPort {
			l.Close()
			continue
		}
		b, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		b.Close()
		return port, nil
	}
	if lastErr == nil {
		lastErr = errors.New("kernel handed out no port below 55535")
	}
	return 0, errors.Join(errors.New("no free port pair (port, port+10000) on 127.0.0.1"), lastErr)
}
