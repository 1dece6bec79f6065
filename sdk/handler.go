package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Handler runs one claimed task. ctx is t.Context(): it is cancelled when the
// lease is lost, revoked or expires, the execution is cancelled, or the worker
// stops hard. Returning nil completes the task (unless the handler already
// called a terminal method); returning an error fails the attempt, and the
// execution's retry policy decides what happens next.
//
// A server outage never turns the handler's outcome into a failure. A
// terminal call (Complete, Fail, Cancel, Delay) that meets a transport error
// keeps trying while the lease can be saved; when the handler returns
// without its terminal call having landed, the worker finishes that call
// itself, whatever the handler returned. A typed transport or timeout error
// (sdk.KindTransport, sdk.KindTimeout) that the handler returns is not its
// failure either: the attempt is given back unchanged, consuming no retry.
// When nothing can be written before the lease runs out, the reclaim
// scanner requeues the attempt once the lease has expired.
type Handler interface {
	HandleTask(ctx context.Context, t *Task) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Task) error

// HandleTask calls f(ctx, t).
func (f HandlerFunc) HandleTask(ctx context.Context, t *Task) error { return f(ctx, t) }

// Middleware wraps a Handler, e.g. for logging, metrics or tracing.
type Middleware func(Handler) Handler

// Chain wraps h in mws; the first middleware is the outermost.
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Failure attaches a failure category to a handler error, so the retry policy
// (RetryPolicy.RetryableCategories) can tell failures apart:
//
//	return &sdk.Failure{Category: "upstream_timeout", Err: err}
type Failure struct {
	Category string
	Err      error
}

func (f *Failure) Error() string {
	if f.Err == nil {
		return f.Category
	}
	return f.Err.Error()
}

func (f *Failure) Unwrap() error { return f.Err }

// Failure categories the worker uses itself.
const (
	CategoryHandlerError   = "handler_error"   // the handler returned an error
	CategoryHandlerPanic   = "handler_panic"   // the handler panicked
	CategoryNoHandler      = "no_handler"      // the Mux has no handler for the kind
	CategoryWorkerShutdown = "worker_shutdown" // the worker stopped before the task finished
)

// FailureCategory returns the category of a handler error: the Category of
// the outermost *Failure in its chain, or CategoryHandlerError.
func FailureCategory(err error) string {
	var f *Failure
	if errors.As(err, &f) && f.Category != "" {
		return f.Category
	}
	return CategoryHandlerError
}

// Mux dispatches tasks to handlers by execution kind, like http.ServeMux by
// path. Register handlers before the worker runs; dispatch is safe for
// concurrent use.
type Mux struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	mws      []Middleware
	notFound Handler
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: make(map[string]Handler)} }

// Handle registers h for kind. It panics on an invalid kind, a nil handler or
// a duplicate registration: those are programming errors, found at start-up.
func (m *Mux) Handle(kind string, h Handler) {
	if err := ValidateKind(kind); err != nil {
		panic(fmt.Sprintf("sdk: Mux.Handle: %v", err))
	}
	if h == nil {
		panic("sdk: Mux.Handle: nil handler for kind " + kind)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.handlers[kind]; dup {
		panic("sdk: Mux.Handle: kind " + kind + " registered twice")
	}
	m.handlers[kind] = h
}

// HandleFunc registers f for kind.
func (m *Mux) HandleFunc(kind string, f func(ctx context.Context, t *Task) error) {
	m.Handle(kind, HandlerFunc(f))
}

// NotFound sets the handler for kinds with no registration. The default fails
// the attempt with category CategoryNoHandler (so a worker that knows the
// kind can pick up the retry).
func (m *Mux) NotFound(h Handler) {
	m.mu.Lock()
	m.notFound = h
	m.mu.Unlock()
}

// Use appends middleware applied to every dispatched task, the not-found
// handler included. The first middleware is the outermost.
func (m *Mux) Use(mws ...Middleware) {
	m.mu.Lock()
	m.mws = append(m.mws, mws...)
	m.mu.Unlock()
}

// Handler returns the handler registered for kind and whether there is one.
func (m *Mux) Handler(kind string) (Handler, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.handlers[kind]
	return h, ok
}

// HandleTask dispatches t to the handler registered for t.Kind.
func (m *Mux) HandleTask(ctx context.Context, t *Task) error {
	m.mu.RLock()
	h, ok := m.handlers[t.Kind]
	nf := m.notFound
	mws := m.mws
	m.mu.RUnlock()
	if !ok {
		h = nf
		if h == nil {
			h = HandlerFunc(noHandler)
		}
	}
	return Chain(h, mws...).HandleTask(ctx, t)
}

func noHandler(_ context.Context, t *Task) error {
	return &Failure{Category: CategoryNoHandler, Err: fmt.Errorf("no handler for execution kind %q", t.Kind)}
}
