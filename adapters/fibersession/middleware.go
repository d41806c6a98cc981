package fibersession

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/core"
)

// Config configures the middleware. The zero value is ready to use.
type Config struct {
	// Next reports whether a request is served without a session (Get
	// returns nil), for example static assets, as fiber's own middleware
	// Next does. Optional. Default: no request is skipped.
	Next func(c *fiber.Ctx) bool

	// ErrorHandler turns a failure to load or save the session into the
	// error the middleware returns, which fiber's ErrorHandler then
	// answers. Optional. Default: an error in which errors.As finds a
	// *fiber.Error with core.StatusCode(err) — 503 Service Unavailable for
	// core.ErrUnavailable, 413 Content Too Large for core.ErrTooLarge, 500
	// otherwise — and its status text as message,
	// and which wraps err (errors.Is(e, core.ErrUnavailable) holds). Its
	// Error method returns only the status text, so fiber's
	// DefaultErrorHandler, which sends err.Error() to the client, reveals
	// nothing internal.
	//
	// When loading fails the handlers do not run. When saving fails the
	// handler's response body has been dropped, and its own error, if any,
	// is superseded.
	ErrorHandler func(c *fiber.Ctx, err error) error
}

// localsKey is the c.Locals key under which New keeps the session.
type localsKey struct{}

// New returns fiber middleware that loads the request's session with m,
// makes it available to the handlers through Get (and core.FromContext on
// c.UserContext()), and saves it when the handlers return — also when they
// return an error: the error response fiber writes is still a response and
// carries the session's cookie. The save happens before fiber sends
// anything, because fiber buffers the response; a handler that streams
// with SetBodyStreamWriter must still change the session before it
// returns.
//
// The cookie (or token header) and its Vary and Cache-Control headers are
// those core.Manager.SaveTo adds; the first Secure cookie set on a
// plain-HTTP request (c.Protocol() is not "https") logs a warning.
//
// Register it once, before the handlers that use sessions:
//
//	app.Use(fibersession.New(m, fibersession.Config{}))
//
// If a handler panics the session is not saved. New panics if m is nil.
func New(m *core.Manager, cfg Config) fiber.Handler {
	if m == nil {
		panic("fibersession: New expects a non-nil *core.Manager")
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	return func(c *fiber.Ctx) error {
		if cfg.Next != nil && cfg.Next(c) {
			return c.Next()
		}
		ctx := c.UserContext()
		s, sctx, err := m.LoadFrom(ctx, func(name string) string { return strings.Clone(c.Get(name)) })
		if err != nil {
			return cfg.ErrorHandler(c, err)
		}
		// c.Locals(k, v) would allocate its variadic argument; this is
		// what it does, without.
		rc := c.Context()
		rc.SetUserValue(localsKey{}, s)
		rc.SetUserValue(m, s)
		c.SetUserContext(sctx)

		herr := c.Next()
		if err := m.SaveTo(c.UserContext(), s, c.Protocol() == "https", c.Response().Header.Add); err != nil {
			// Nothing was sent yet: drop the handler's response body and
			// the headers that described it.
			resp := c.Response()
			resp.ResetBody()
			resp.Header.Del(fiber.HeaderContentEncoding)
			resp.Header.Del(fiber.HeaderContentType)
			return cfg.ErrorHandler(c, err)
		}
		return herr
	}
}

// Get returns the session of the request, loaded by the middleware New, or
// nil when the middleware did not run for this request (or skipped it).
// With several Managers it returns the innermost middleware's session; see
// GetFor. Call it as often as needed; it is a lookup in c.Locals.
func Get(c *fiber.Ctx) *core.Session {
	s, _ := c.Locals(localsKey{}).(*core.Session)
	return s
}

// GetFor returns the session that m's middleware loaded for the request,
// or nil when it did not run: with several Managers in one request each
// finds its own.
func GetFor(c *fiber.Ctx, m *core.Manager) *core.Session {
	s, _ := c.Locals(m).(*core.Session)
	return s
}

func defaultErrorHandler(_ *fiber.Ctx, err error) error {
	return &statusError{status: fiber.NewError(core.StatusCode(err)), cause: err}
}

// statusError is a *fiber.Error for fiber's ErrorHandler that keeps the
// cause for errors.Is and errors.As, without showing it in Error.
type statusError struct {
	status *fiber.Error
	cause  error
}

func (e *statusError) Error() string { return e.status.Message }

func (e *statusError) Unwrap() []error { return []error{e.status, e.cause} }
