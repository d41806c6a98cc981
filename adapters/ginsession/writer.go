package ginsession

import (
	"bufio"
	"net"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/core"
)

// Commit states of a writer.
const (
	pending   = iota // the session is not saved yet
	committed        // saved, cookie in the header
	failed           // the save failed; the error handler answered
)

// writer is the gin.ResponseWriter the handlers see: it saves the session
// and adds its cookie just before the first byte of the response, and after
// a failed save it discards the handler's output. Status, Size, Written,
// CloseNotify, Pusher and Header are gin's own.
//
// gin's WriteHeader only records the status (the header goes out on the
// first write or WriteHeaderNow), so WriteHeader does not commit: headers
// set after c.Status still make it into the response.
type writer struct {
	gin.ResponseWriter
	c       *gin.Context
	m       *core.Manager
	s       *core.Session
	onError func(*gin.Context, error)
	state   uint8
	err     error // the save error, once failed
}

// commit saves the session and adds its cookie, once. It reports false when
// the save failed: the error handler has answered, and the handler's output
// must be dropped.
func (w *writer) commit() bool {
	switch w.state {
	case committed:
		return true
	case failed:
		return false
	}
	w.state = committed
	r := w.c.Request
	https := r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
	if err := w.m.SaveTo(r.Context(), w.s, https, w.ResponseWriter.Header().Add); err != nil {
		w.state, w.err = failed, err
		w.fail(err)
		return false
	}
	return true
}

// fail lets the error handler answer on gin's own writer, then leaves the
// discarding writer in place for whatever the handler still writes.
func (w *writer) fail(err error) {
	h := w.ResponseWriter.Header()
	// These described the handler's body, which is not sent.
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Del("Content-Type")
	cur := w.c.Writer
	w.c.Writer = w.ResponseWriter
	w.onError(w.c, err)
	w.c.Writer = cur
	w.c.Abort()
}

// WriteHeader records the status, as gin's writer does; it is ignored after
// a failed save.
func (w *writer) WriteHeader(code int) {
	if w.state != failed {
		w.ResponseWriter.WriteHeader(code)
	}
}

// WriteHeaderNow commits the session and sends the header.
func (w *writer) WriteHeaderNow() {
	if w.commit() {
		w.ResponseWriter.WriteHeaderNow()
	}
}

// Write commits the session and writes b. After a failed save it discards
// b and reports success, so the handler runs to its end undisturbed.
func (w *writer) Write(b []byte) (int, error) {
	if !w.commit() {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// WriteString is Write for a string.
func (w *writer) WriteString(s string) (int, error) {
	if !w.commit() {
		return len(s), nil
	}
	return w.ResponseWriter.WriteString(s)
}

// Flush commits the session and flushes, so streaming handlers work.
func (w *writer) Flush() {
	if w.commit() {
		w.ResponseWriter.Flush()
	}
}

// Hijack commits the session (a WebSocket handshake may still read it on
// later requests) and hands over the connection. After a failed save it
// returns the save error.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.commit() {
		return nil, nil, w.err
	}
	return w.ResponseWriter.Hijack()
}

// Unwrap returns gin's writer, for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
