package valkeytest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// respConn is a minimal RESP2 client used for readiness probes and cluster setup,
// so the package needs no client library to tell whether a server is up.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

// respError is an error reply (-ERR ..., -LOADING ...) from the server.
type respError string

func (e respError) Error() string { return string(e) }

func dialRESP(ctx context.Context, addr string, timeout time.Duration) (*respConn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c, r: bufio.NewReader(c)}, nil
}

func (rc *respConn) Close() error { return rc.c.Close() }

// do sends one command and returns its reply as a string; arrays are joined by newlines.
func (rc *respConn) do(timeout time.Duration, args ...string) (string, error) {
	if err := rc.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return rc.read()
}

func (rc *respConn) read() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+', ':':
		return body, nil
	case '-':
		return "", respError(body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad bulk length %q", body)
		}
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil {
			return "", fmt.Errorf("bad array length %q", body)
		}
		parts := make([]string, 0, max(n, 0))
		var firstErr error
		for range n {
			s, err := rc.read()
			if err != nil {
				var re respError
				if !errors.As(err, &re) {
					return "", err
				}
				if firstErr == nil {
					firstErr = err
				}
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, "\n"), firstErr
	default:
		return "", fmt.Errorf("unexpected RESP reply %q", line)
	}
}

// command dials addr, runs one command and closes the connection.
func command(ctx context.Context, addr string, args ...string) (string, error) {
	rc, err := dialRESP(ctx, addr, time.Second)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	return rc.do(2*time.Second, args...)
}

// infoField returns the value of field in an INFO or CLUSTER INFO reply.
func infoField(info, field string) string {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), field+":"); ok {
			return v
		}
	}
	return ""
}
