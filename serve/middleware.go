package serve

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// The layers every request passes before its route, outermost first:
// the request log (one line per request), CORS (a preflight is answered
// here, before the key is asked for: browsers send none with it), then the
// API key.

// logEntry is what a handler adds to its request's log line.
type logEntry struct {
	id               string // the completion's id
	promptTokens     int
	completionTokens int
	stream           bool
	adapted, base    int // choices adapted, choices on the base model
	clusters         []int
	errCode          string // the API error's code
}

type logKey struct{}

// entry is the request's log entry; a throwaway one when there is none
// (a handler called without the log layer).
func entry(r *http.Request) *logEntry {
	if e, ok := r.Context().Value(logKey{}).(*logEntry); ok {
		return e
	}
	return &logEntry{}
}

// countingWriter records the status and the bytes written (for the log
// line and the metrics).
type countingWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logged writes one structured line per request to log when it is done:
// method, path, status (499 when the client left first), duration, bytes,
// remote address, and for completions the id, token counts and the
// adaptation of its choices. 5xx are logged at level Error, 4xx at Warn.
func logged(log *slog.Logger, h http.Handler) http.Handler {
	if log == nil {
		return h
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		e := &logEntry{}
		w := &countingWriter{ResponseWriter: rw}
		defer func() {
			code := w.code
			if code == 0 && r.Context().Err() != nil {
				code = 499
			}
			attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", code), slog.Float64("duration_ms", float64(time.Since(t0).Microseconds())/1000),
				slog.Int64("bytes", w.bytes), slog.String("remote", r.RemoteAddr)}
			if e.id != "" {
				attrs = append(attrs, slog.String("id", e.id), slog.Bool("stream", e.stream),
					slog.Int("prompt_tokens", e.promptTokens), slog.Int("completion_tokens", e.completionTokens),
					slog.Int("adapted", e.adapted), slog.Int("base", e.base))
				if len(e.clusters) > 0 {
					attrs = append(attrs, slog.Any("clusters", e.clusters))
				}
			}
			if e.errCode != "" {
				attrs = append(attrs, slog.String("error", e.errCode))
			}
			level := slog.LevelInfo
			switch {
			case code >= 500:
				level = slog.LevelError
			case code >= 400:
				level = slog.LevelWarn
			}
			log.LogAttrs(context.Background(), level, "request", attrs...)
		}()
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), logKey{}, e)))
	})
}

// cors answers cross-origin requests from the allowed origins ("*": any):
// an OPTIONS preflight gets 204 with the methods and headers allowed, and
// every response to an allowed Origin carries Access-Control-Allow-Origin.
// A preflight from another origin gets 403. With no origins, cors is h.
func cors(origins []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	all, set := false, map[string]bool{}
	for _, o := range origins {
		if o == "*" {
			all = true
		}
		set[strings.TrimSuffix(o, "/")] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		ok := origin != "" && (all || set[origin])
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if ok {
			hd := w.Header()
			if all {
				hd.Set("Access-Control-Allow-Origin", "*")
			} else {
				hd.Set("Access-Control-Allow-Origin", origin)
				hd.Add("Vary", "Origin")
			}
			hd.Set("Access-Control-Expose-Headers", "Retry-After")
		}
		if !preflight {
			h.ServeHTTP(w, r)
			return
		}
		if !ok {
			writeError(w, &APIError{Status: http.StatusForbidden, Type: "invalid_request_error", Code: "origin_not_allowed",
				Message: fmt.Sprintf("origin %q may not call this server; start it with --cors-origin to allow it", origin)})
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			hd.Set("Access-Control-Allow-Headers", req)
		} else {
			hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		}
		hd.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	})
}

// authorized asks every request but /health and /healthz (probes) for
// "Authorization: Bearer key"; others get 401 as OpenAI answers a wrong
// key. With key "", authorized is h.
func authorized(key string, h http.Handler) http.Handler {
	if key == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" || r.URL.Path == "/healthz" {
			h.ServeHTTP(w, r)
			return
		}
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			msg := "Incorrect API key provided. Send it as Authorization: Bearer KEY."
			if r.Header.Get("Authorization") == "" {
				msg = "You didn't provide an API key. Send it as Authorization: Bearer KEY."
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="chameleon"`)
			entry(r).errCode = "invalid_api_key"
			writeError(w, &APIError{Status: http.StatusUnauthorized, Type: "invalid_request_error", Code: "invalid_api_key", Message: msg})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
// The scheme's name is case-insensitive (RFC 9110, section 11.1): some
// clients send "bearer".
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}
