package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Limits are the connection-level defences of an HTTP server made by
// NewHTTPServer (the API and the browser demo). Zero values take the
// defaults named.
//
// A request's headers must arrive within HeaderTimeout of its first byte
// and its body within BodyTimeout of the end of the headers; once the body
// has been read the read deadline is lifted, so a long server-sent-events
// stream is never cut by it. Every write of a response (each event of a
// stream) must be taken by the client within WriteTimeout. A keep-alive
// connection is closed after IdleTimeout without a request. At most
// MaxConns connections are open: at the cap one that does no work (idle,
// silent, or still sending its request) is closed to make room for the
// next; when every one is at work, the next waits until one closes.
type Limits struct {
	HeaderTimeout time.Duration // default 10 s
	BodyTimeout   time.Duration // default 30 s
	WriteTimeout  time.Duration // per write; default 60 s
	IdleTimeout   time.Duration // default 60 s
	MaxConns      int           // default 256, at most the descriptor limit less 64
	// AllowedHosts are the Host header values (host or host:port) a
	// request may carry besides the defaults: on a loopback address only
	// localhost, 127.0.0.1 and [::1] (with the listening port) are
	// accepted, which stops DNS rebinding; elsewhere any Host is accepted
	// unless this list is given. "*" accepts any.
	AllowedHosts []string
}

// Default limits.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultBodyTimeout   = 30 * time.Second
	DefaultWriteTimeout  = 60 * time.Second
	DefaultIdleTimeout   = 60 * time.Second
	DefaultMaxConns      = 256
	fdReserve            = 64 // descriptors kept for files, the GPU driver, logs
)

// WithDefaults fills in the zero values and caps MaxConns at the process's
// descriptor limit (less a reserve). It fails on a negative value.
func (l Limits) WithDefaults() (Limits, error) {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"header timeout", &l.HeaderTimeout, DefaultHeaderTimeout}, {"body timeout", &l.BodyTimeout, DefaultBodyTimeout},
		{"write timeout", &l.WriteTimeout, DefaultWriteTimeout}, {"idle timeout", &l.IdleTimeout, DefaultIdleTimeout}} {
		if *d.v < 0 {
			return l, fmt.Errorf("serve: %s %v: want a positive duration", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if l.MaxConns < 0 {
		return l, fmt.Errorf("serve: connection limit %d: want at least 1", l.MaxConns)
	}
	if l.MaxConns == 0 {
		l.MaxConns = maxConnsFor(fdLimit())
	}
	return l, nil
}

// maxConnsFor is the default connection cap under a limit of fds open
// descriptors (0: unknown): DefaultMaxConns, or fds less a reserve when
// that leaves too few, but at least 4.
func maxConnsFor(fds int) int {
	if fds > 0 && fds < DefaultMaxConns+2*fdReserve {
		return max(4, fds-fdReserve)
	}
	return DefaultMaxConns
}

// NewHTTPServer returns an http.Server for h with lim's defences, and ln
// capped at lim.MaxConns: serve that listener (hs.Serve(capped)).
func NewHTTPServer(h http.Handler, ln net.Listener, lim Limits) (*http.Server, net.Listener, error) {
	lim, err := lim.WithDefaults()
	if err != nil {
		return nil, nil, err
	}
	hosts, err := allowedHosts(ln.Addr(), lim.AllowedHosts)
	if err != nil {
		return nil, nil, err
	}
	cl := newCapListener(ln, lim.MaxConns)
	hs := &http.Server{
		Handler:           &guard{h: h, hosts: hosts, lim: lim},
		ReadHeaderTimeout: lim.HeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		ConnState:         cl.track,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
	}
	return hs, cl, nil
}

// hostSet is the accepted Host header values; nil accepts any.
type hostSet map[string]bool

// allowedHosts is the Host allow-list for a server listening on addr.
func allowedHosts(addr net.Addr, extra []string) (hostSet, error) {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return nil, nil // not TCP/IP (a unix socket): no browser can reach it by name
	}
	port := fmt.Sprint(ap.Port())
	set := hostSet{}
	if ap.Addr().IsLoopback() {
		for _, h := range []string{"localhost", "127.0.0.1", "[::1]"} {
			set[h+":"+port] = true
			if port == "80" {
				set[h] = true
			}
		}
	} else if len(extra) == 0 {
		return nil, nil
	}
	for _, h := range extra {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "*":
			return nil, nil
		case h == "":
			return nil, fmt.Errorf("serve: an empty allowed host")
		case strings.Contains(h, "/"):
			return nil, fmt.Errorf("serve: allowed host %q: want host or host:port", h)
		}
		set[h] = true
		if _, _, err := net.SplitHostPort(h); err != nil { // no port: this server's port
			set[net.JoinHostPort(strings.Trim(h, "[]"), port)] = true
		}
	}
	return set, nil
}

// guard is the per-request half of the defences: the Host check, the body
// deadline and the per-write deadline.
type guard struct {
	h     http.Handler
	hosts hostSet
	lim   Limits
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(g.lim.WriteTimeout)) //nolint:errcheck // always supported by net/http's writer
	if g.hosts != nil && !g.hosts[strings.ToLower(r.Host)] {
		w.Header().Set("Connection", "close")
		writeError(w, &APIError{Status: http.StatusForbidden, Type: "invalid_request_error", Code: "host_not_allowed",
			Message: fmt.Sprintf("Host %q is not one this server answers to (a DNS-rebinding guard); start it with --allow-host to add a name", r.Host)})
		return
	}
	cc, _ := r.Context().Value(connKey{}).(*capConn)
	if r.Body != nil && r.Body != http.NoBody {
		rc.SetReadDeadline(time.Now().Add(g.lim.BodyTimeout)) //nolint:errcheck
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, cc: cc}
	} else {
		cc.working()
	}
	g.h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, d: g.lim.WriteTimeout}, r)
}

// deadlineBody lifts the read deadline once the body has been read, so
// that a response streamed after it is not cut: net/http's background read
// of a finished request (it watches for the client leaving) would fail at
// the deadline and cancel the request's context. net/http 1.26 clears the
// deadline itself when it starts that read, but does not document it.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	cc   *capConn // nil when not served through a capListener
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{}) //nolint:errcheck
		b.cc.working()
	}
	return n, err
}

// deadlineWriter renews the write deadline before every write: a client
// must take each write (each event of a stream) within the timeout, however
// long the whole response takes.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.d)) //nolint:errcheck
	return w.ResponseWriter.Write(b)
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// connKey is the request context's key of its *capConn.
type connKey struct{}

// capListener holds at most max connections open. At the cap, Accept
// closes a connection that does no work to make room: an idle keep-alive
// one first, else the oldest that has been sending its request (headers or
// body) or nothing at all for silentAge. A connection whose handler has
// its whole request (a completion being generated or streamed) is never
// closed; when every one is such, Accept waits until one closes.
type capListener struct {
	net.Listener
	max    int
	mu     sync.Mutex
	freed  chan struct{} // signalled when a connection closes
	conns  map[*capConn]struct{}
	closed bool
}

type capConn struct {
	net.Conn
	l     *capListener
	once  sync.Once
	state http.ConnState // under l.mu
	since time.Time      // when it entered state
	busy  bool           // its handler has the whole request: not to be closed
}

// working marks c busy until its next state change; nil c is a no-op.
func (c *capConn) working() {
	if c == nil {
		return
	}
	c.l.mu.Lock()
	c.busy = true
	c.l.mu.Unlock()
}

func newCapListener(ln net.Listener, max int) *capListener {
	return &capListener{Listener: ln, max: max, freed: make(chan struct{}, 1), conns: map[*capConn]struct{}{}}
}

func (l *capListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		if len(l.conns) < l.max {
			cc := &capConn{Conn: c, l: l, state: http.StateNew, since: time.Now()}
			l.conns[cc] = struct{}{}
			l.mu.Unlock()
			return cc, nil
		}
		v := l.victim()
		l.mu.Unlock()
		if v != nil {
			v.Close()
			continue
		}
		select { // a silent connection may come of age meanwhile
		case <-l.freed:
		case <-time.After(silentAge):
		}
	}
}

// silentAge is how long a connection must have been silent, or sending
// its request, before it may be closed to make room (a fresh one's bytes
// may not have been read yet).
const silentAge = 250 * time.Millisecond

// victim is the connection to close at the cap: the oldest idle one, else
// the oldest that has sent nothing, or has not finished sending its
// request, for silentAge; nil when there is none. l.mu held.
func (l *capListener) victim() *capConn {
	var v *capConn
	now := time.Now()
	for c := range l.conns {
		slow := (c.state == http.StateNew || (c.state == http.StateActive && !c.busy)) && now.Sub(c.since) >= silentAge
		if c.state != http.StateIdle && !slow {
			continue
		}
		idle := c.state == http.StateIdle
		better := v == nil || (idle && v.state != http.StateIdle) ||
			(idle == (v.state == http.StateIdle) && c.since.Before(v.since))
		if better {
			v = c
		}
	}
	return v
}

// track is the http.Server's ConnState hook.
func (l *capListener) track(c net.Conn, st http.ConnState) {
	cc, ok := c.(*capConn)
	if !ok {
		return
	}
	l.mu.Lock()
	cc.state, cc.since, cc.busy = st, time.Now(), false
	l.mu.Unlock()
}

func (l *capListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.signal()
	return l.Listener.Close()
}

func (l *capListener) signal() {
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// Open is the number of open connections.
func (l *capListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (c *capConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
	return err
}
