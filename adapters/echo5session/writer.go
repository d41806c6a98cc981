package echo5session

import (
	"bufio"
	"net"
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v5"
)

// Commit states of a writer.
const (
	pending   = iota // the session is not saved yet
	committed        // saved, cookie in the header
	failed           // the save failed; output is discarded
)

// writer sits under echo's Response (as its Writer): it saves the session
// and adds its cookie just before the header goes out, and after a failed
// save it swallows everything, so that the middleware can answer with the
// error once the handler returns.
type writer struct {
	http.ResponseWriter
	c     *echo.Context
	m     *core.Manager
	s     *core.Session
	state uint8
	err   error // the save error, once failed
}

// commit saves the session and adds its cookie, once. It reports false when
// the save failed.
func (w *writer) commit() bool {
	switch w.state {
	case committed:
		return true
	case failed:
		return false
	}
	w.state = committed
	if err := w.m.Save(w.c.Request().Context(), w.s); err != nil {
		w.state, w.err = failed, err
		return false
	}
	w.m.WriteCookie(w.ResponseWriter.Header(), w.s)
	return true
}

// WriteHeader commits the session and sends the header; after a failed
// save it does nothing.
func (w *writer) WriteHeader(code int) {
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
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

// Flush commits the session and flushes; after a failed save it does
// nothing.
func (w *writer) Flush() {
	if w.commit() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack commits the session and hands over the connection. After a failed
// save it returns the save error.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.commit() {
		return nil, nil, w.err
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
