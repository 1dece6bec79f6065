package valkeytest

import (
	"net"
	"sync"
)

// linkProxy forwards replication links (replica to primary TCP connections) and can hold
// them: while held, what either side sends is read and kept, not delivered, as a slow or
// partitioned network would; cut closes every link and throws what was kept away. It
// lets a test kill a primary whose replicas have not received its last writes, which on
// loopback otherwise happens only by chance.
type linkProxy struct {
	l      net.Listener
	target string

	mu    sync.Mutex
	cond  *sync.Cond
	held  bool
	conns map[net.Conn]bool
}

func newLinkProxy(target string) (*linkProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &linkProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	return p, nil
}

// port is the proxy's listening port, for --replicaof.
func (p *linkProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *linkProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go p.pipe(up, c)
		go p.pipe(c, up)
	}
}

// pipe copies src to dst: a reader takes everything src sends at once (so the sender
// believes it delivered), a writer passes it on while the proxy is not held.
func (p *linkProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	chunks := make(chan []byte, 4096)
	go func() {
		defer close(chunks)
		defer src.Close()
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- buf[:n]
			}
			if err != nil {
				return
			}
		}
	}()
	for chunk := range chunks {
		p.mu.Lock()
		for p.held && p.conns[src] {
			p.cond.Wait()
		}
		open := p.conns[src]
		p.mu.Unlock()
		if !open {
			return // cut: what was kept is lost
		}
		if _, err := dst.Write(chunk); err != nil {
			return
		}
	}
}

// hold stops delivery on every link, current and future, until release or cut.
func (p *linkProxy) hold() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

// release delivers what was kept and forwards again.
func (p *linkProxy) release() {
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// cut closes every link, losing what was kept, and forwards new links again.
func (p *linkProxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *linkProxy) close() {
	p.l.Close()
	p.cut()
}
