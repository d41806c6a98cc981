package echosession

import (
	"net/http"

	"github.com/hybridsession/hybridsession/core"
	"github.com/labstack/echo/v4"
)

// Config configures the middleware. The zero value is ready to use.
type Config struct {
	// Skipper reports whether a request is served without a session (Get
	// returns nil), for example static assets, as echo's own middleware
	// Skipper does. Optional. Default: no request is skipped.
	Skipper func(c echo.Context) bool

	// ErrorHandler turns a failure to load or save the session into the
	// error the middleware returns to echo, whose HTTPErrorHandler then
	// answers the request. It may instead write a response itself and
	// return nil. Optional. Default:
	//
	//	echo.NewHTTPError(core.StatusCode(err)).SetInternal(err)
	//
	// that is 503 Service Unavailable for core.ErrUnavailable, 413 Content
	// Too Large for core.ErrTooLarge and 500 otherwise, with the status
	// text as the message; err stays internal (logged by echo's middleware,
	// never sent to the client).
	//
	// When loading fails the handler does not run. When saving fails the
	// handler's output is discarded and its own error, if any, superseded.
	ErrorHandler func(c echo.Context, err error) error
}

// New returns echo middleware that loads the request's session with m,
// makes it available to the handlers through Get (and core.FromContext on
// c.Request().Context()), and saves it when the response header is
// written — after every function registered with c.Response().Before,
// which may therefore still change the session — or, when the handler
// wrote nothing, as soon as it returns (also when it returns an error:
// the error response echo writes carries the cookie).
//
// Register it once, before the handlers that use sessions:
//
//	e.Use(echosession.New(m, echosession.Config{}))
//
// The session is saved by a wrapper around c.Response().Writer, which also
// catches c.Response().Flush (in echo v4 it bypasses WriteHeader and its
// Before functions). When the save fails there, the wrapper discards the
// handler's output, and when the handler returns the middleware resets
// c.Response() (Committed false, Status 200, Size 0) and returns the
// error, so that echo's HTTPErrorHandler writes the only response the
// client sees. Functions registered with Before then run a second time.
//
// If a handler panics the session is not saved, unless the handler had
// already started its response. New panics if m is nil.
func New(m *core.Manager, cfg Config) echo.MiddlewareFunc {
	if m == nil {
		panic("echosession: New expects a non-nil *core.Manager")
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if cfg.Skipper != nil && cfg.Skipper(c) {
				return next(c)
			}
			resp := c.Response()
			orig := resp.Writer
			// Restore echo's writer even when the handler panics, so that a
			// recovery middleware's error page does not save the session.
			defer func() { resp.Writer = orig }()
			var herr error
			err := m.Serve(orig, c.Request(), func(w http.ResponseWriter, r *http.Request) {
				c.SetRequest(r) // Get and core.FromContext read r's context
				resp.Writer = w
				herr = next(c)
			})
			if err != nil {
				// Nothing reached the client: start the response afresh.
				resp.Writer = orig
				resp.Committed, resp.Status, resp.Size = false, http.StatusOK, 0
				h := resp.Header()
				h.Del("Content-Length")
				h.Del("Content-Encoding")
				h.Del("Content-Type")
				return cfg.ErrorHandler(c, err)
			}
			return herr
		}
	}
}

// Get returns the session of the request, loaded by the middleware New, or
// nil when the middleware did not run for this request (or skipped it).
// With several Managers it returns the innermost middleware's session; see
// GetFor. It is
// core.FromContext(c.Request().Context()): code that has only the
// request's context can get the session that way. Call it as often as
// needed; it is a context lookup.
func Get(c echo.Context) *core.Session {
	r := c.Request()
	if r == nil {
		return nil
	}
	return core.FromContext(r.Context())
}

// GetFor returns the session that m's middleware loaded for the request,
// or nil when it did not run: with several Managers in one request each
// finds its own. It is m.FromContext(c.Request().Context()).
func GetFor(c echo.Context, m *core.Manager) *core.Session {
	r := c.Request()
	if r == nil {
		return nil
	}
	return m.FromContext(r.Context())
}

func defaultErrorHandler(_ echo.Context, err error) error {
	return echo.NewHTTPError(core.StatusCode(err)).SetInternal(err)
}
