package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// probeConn is a bare RESP connection for the anchors: it writes a
// pre-encoded command and reads replies with no client library in between,
// the way valkey-benchmark does, so the round trip it measures is the
// server's and the network's, not a client's. (The SDK's own client cost is
// what the scenarios measure against it.)
type probeConn struct {
	c io.ReadWriteCloser
	r *bufio.Reader
}

// dialProbe connects a blocking socket (see blockingSocket).
func dialProbe(ctx context.Context, addr string) (*probeConn, error) {
	c, err := dialBlocking(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &probeConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (p *probeConn) Close() error { return p.c.Close() }

// encodeCommand encodes args as a RESP array of bulk strings.
func encodeCommand(args []string) []byte {
	b := []byte("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// readReply consumes one reply; a top-level error reply is returned as an
// error.
func (p *probeConn) readReply() error {
	line, err := p.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 {
		return errors.New("probe: short reply line")
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':', ',', '#', '_', '(':
		return nil
	case '-', '!':
		if line[0] == '!' {
			n, _ := strconv.Atoi(string(body))
			_, err := p.r.Discard(n + 2)
			if err != nil {
				return err
			}
			return errors.New("probe: server error")
		}
		return fmt.Errorf("probe: %s", body)
	case '$', '=':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return err
		}
		if n < 0 {
			return nil
		}
		_, err = p.r.Discard(n + 2)
		return err
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return err
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			if err := p.readReply(); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("probe: unknown reply type %q", line[0])
}

// probeSerial sends cmd, waits for the reply, and repeats for d, recording
// each round trip in µs.
//
// cpu >= 0 pins the prober's thread to that CPU (calibrate pins it and
// valkey-benchmark to the same one; see probeCPU); -1 leaves it to the
// scheduler.
func probeSerial(ctx context.Context, addr string, cmd []byte, d time.Duration, cpu int) (*hdrhistogram.Histogram, error) {
	p, err := dialProbe(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	defer pinThread(cpu)()
	h := newHist()
	end := time.Now().Add(d)
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		if _, err := p.c.Write(cmd); err != nil {
			return nil, err
		}
		if err := p.readReply(); err != nil {
			return nil, err
		}
		_ = h.RecordValue(max(time.Since(t0).Microseconds(), 1))
	}
	return h, ctx.Err()
}

// probePipelined runs conns connections, each writing depth copies of cmd
// at once and reading the depth replies (valkey-benchmark -c conns -P
// depth), for d; it returns commands per second. cpu as for probeSerial.
func probePipelined(ctx context.Context, addr string, cmd []byte, conns, depth int, d time.Duration, cpu int) (float64, error) {
	batch := make([]byte, 0, len(cmd)*depth)
	for range depth {
		batch = append(batch, cmd...)
	}
	var calls atomic.Int64
	var firstErr atomic.Value
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	var end time.Time
	for range conns {
		p, err := dialProbe(ctx, addr)
		if err != nil {
			return 0, err
		}
		ready.Add(1)
		wg.Go(func() {
			defer p.Close()
			defer pinThread(cpu)()
			ready.Done()
			<-start
			for time.Now().Before(end) && ctx.Err() == nil {
				if _, err := p.c.Write(batch); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				for range depth {
					if err := p.readReply(); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
				}
				calls.Add(int64(depth))
			}
		})
	}
	ready.Wait()
	t0 := time.Now()
	end = t0.Add(d)
	close(start)
	wg.Wait()
	if e, _ := firstErr.Load().(error); e != nil {
		return 0, e
	}
	return float64(calls.Load()) / time.Since(t0).Seconds(), ctx.Err()
}
