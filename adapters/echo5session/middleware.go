package echo5session

import (
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v5"
)

// Config configures the middleware. The zero value is ready to use.
type Config struct {
	// Skipper reports whether a request is served without a session (Get
	// returns nil), for example static assets, as echo's own middleware
	// Skipper does. Optional. Default: no request is skipped.
	Skipper func(c *echo.Context) bool

	// ErrorHandler turns a failure to load or save the session into the
	// error the middleware returns to echo, whose HTTPErrorHandler then
	// answers the request. It may instead write a response itself and
	// return nil. Optional. Default:
	//
	//	echo.NewHTTPError(core.StatusCode(err), http.StatusText(code)).Wrap(err)
	//
	// that is 503 Service Unavailable for core.ErrUnavailable, 413 Content
	// Too Large for core.ErrTooLarge and 500 otherwise, with the status
	// text as the message; err stays wrapped
	// (echo's default error handler does not send it to the client).
	//
	// When loading fails the handler does not run. When saving fails the
	// handler's output is discarded and its own error, if any, superseded.
	ErrorHandler func(c *echo.Context, err error) error
}

// New returns echo middleware that loads the request's session with m,
// makes it available to the handlers through Get and GetFor (and
// core.FromContext on c.Request().Context()), and saves it when the
// response header is written — after every function registered with the
// *echo.Response's Before, which may therefore still change the session —
// or, when the handler wrote nothing, as soon as it returns (also when it
// returns an error: the error response echo writes carries the cookie).
//
// Register it once, before the handlers that use sessions:
//
//	e.Use(echo5session.New(m, echo5session.Config{}))
//
// The session is saved by a wrapper around the *echo.Response's writer.
// When the save fails there, the wrapper discards the handler's output,
// and when the handler returns the middleware resets the response
// (Committed false, Status 200, Size 0) and returns the error, so that
// echo's HTTPErrorHandler writes the only response the client sees.
//
// If a handler panics the session is not saved, unless the handler had
// already started its response. New panics if m is nil.
func New(m *core.Manager, cfg Config) echo.MiddlewareFunc {
	if m == nil {
		panic("echo5session: New expects a non-nil *core.Manager")
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			if cfg.Skipper != nil && cfg.Skipper(c) {
				return next(c)
			}
			req := c.Request()
			s, err := m.LoadRequest(req)
			if err != nil {
				return cfg.ErrorHandler(c, err)
			}
			// The request context is the session's only home: Get, GetFor
			// and core.FromContext read it.
			req = req.WithContext(core.NewContext(req.Context(), s))
			c.SetRequest(req)

			resp, err := echo.UnwrapResponse(c.Response())
			if err != nil {
				// Another middleware put a writer that hides echo's
				// Response in front of it: wrap that writer instead.
				return serveWrapped(c, m, s, cfg, next)
			}
			w := m.NewSaveWriter(resp.ResponseWriter, req, s, nil)
			resp.ResponseWriter = w
			// Restore echo's writer even when the handler panics, so that a
			// recovery middleware's error page does not save the session.
			defer func() { resp.ResponseWriter = w.ResponseWriter }()

			herr := next(c)
			if !w.Commit() {
				// Nothing reached the client: start the response afresh.
				resp.ResponseWriter = w.ResponseWriter
				resp.Committed, resp.Status, resp.Size = false, http.StatusOK, 0
				dropBodyHeaders(resp.Header())
				return cfg.ErrorHandler(c, w.Err())
			}
			_ = m.CheckCommitted(s)
			return herr
		}
	}
}

// serveWrapped runs next with the session writer in front of c.Response()
// when that does not unwrap to echo's Response.
func serveWrapped(c *echo.Context, m *core.Manager, s *core.Session, cfg Config, next echo.HandlerFunc) error {
	orig := c.Response()
	w := m.NewSaveWriter(orig, c.Request(), s, nil)
	c.SetResponse(w)
	defer c.SetResponse(orig)
	herr := next(c)
	if !w.Commit() {
		c.SetResponse(orig)
		dropBodyHeaders(orig.Header())
		return cfg.ErrorHandler(c, w.Err())
	}
	_ = m.CheckCommitted(s)
	return herr
}

// dropBodyHeaders removes the headers that described a body that is not
// sent.
func dropBodyHeaders(h http.Header) {
	h.Del(echo.HeaderContentLength)
	h.Del(echo.HeaderContentEncoding)
	h.Del(echo.HeaderContentType)
}

// Get returns the session of the request, loaded by the middleware New, or
// nil when the middleware did not run for this request (or skipped it).
// With several Managers it returns the innermost middleware's session; see
// GetFor. It is core.FromContext(c.Request().Context()). Call it as often
// as needed; it is a context lookup.
func Get(c *echo.Context) *core.Session {
	r := c.Request()
	if r == nil {
		return nil
	}
	return core.FromContext(r.Context())
}

// GetFor returns the session that m's middleware loaded for the request,
// or nil when it did not run. It is m.FromContext(c.Request().Context()).
func GetFor(c *echo.Context, m *core.Manager) *core.Session {
	r := c.Request()
	if r == nil {
		return nil
	}
	return m.FromContext(r.Context())
}

func defaultErrorHandler(_ *echo.Context, err error) error {
	code := core.StatusCode(err)
	return echo.NewHTTPError(code, http.StatusText(code)).Wrap(err)
}
