package serve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// APIError is an error answered as OpenAI does:
// {"error": {"message", "type", "param", "code"}} with an HTTP status.
type APIError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`  // invalid_request_error, rate_limit_error, server_error, ...
	Param   string `json:"param"` // the offending request field, or ""
	Code    string `json:"code"`  // a machine-readable reason, or ""
	// RetryAfter, when positive, is sent as the Retry-After header.
	RetryAfter time.Duration `json:"-"`
}

func (e *APIError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Type, e.Message) }

// MarshalJSON writes param and code as null when empty.
func (e *APIError) MarshalJSON() ([]byte, error) {
	nullable := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	return json.Marshal(struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}{e.Message, e.Type, nullable(e.Param), nullable(e.Code)})
}

// badRequest is a 400 about param.
func badRequest(param, code, format string, args ...any) *APIError {
	return &APIError{Status: http.StatusBadRequest, Type: "invalid_request_error", Param: param, Code: code,
		Message: fmt.Sprintf(format, args...)}
}

// runError maps an error of Submit or of a Run to its API error.
func runError(err error, retry time.Duration) *APIError {
	switch {
	case errors.Is(err, ErrQueueFull):
		msg := "the server's request queue is full; retry later"
		if err != ErrQueueFull {
			msg = strings.TrimPrefix(err.Error(), "serve: ") + "; retry later"
		}
		return &APIError{Status: http.StatusTooManyRequests, Type: "rate_limit_error", Code: "queue_full",
			Message: msg, RetryAfter: retry}
	case errors.Is(err, ErrUnavailable):
		return &APIError{Status: http.StatusServiceUnavailable, Type: "server_error", Code: "unavailable",
			Message: err.Error(), RetryAfter: retry}
	}
	return &APIError{Status: http.StatusInternalServerError, Type: "server_error", Code: "internal_error", Message: err.Error()}
}

// writeError answers e as JSON.
func writeError(w http.ResponseWriter, e *APIError) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((e.RetryAfter+time.Second-1)/time.Second))))
	}
	writeJSON(w, e.Status, map[string]*APIError{"error": e}) //nolint:errcheck // the client may be gone

}

// writeJSON answers v with status; the error is the write's (the client
// may be gone). v is encoded before the status goes out: a value JSON
// cannot carry (a NaN log-probability from a broken model) is answered
// as a 500 error, where encoding after the header left a 200 with an
// empty body.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(map[string]*APIError{"error": {Type: "server_error", Code: "internal_error",
			Message: fmt.Sprintf("encoding the response: %v", err)}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}
