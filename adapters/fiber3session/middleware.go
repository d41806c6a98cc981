package fiber3session

import (
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v3"
	"github.com/hybridsession/hybridsession/core"
)

// Config configures the middleware. The zero value is ready to use.
type Config struct {
	// Next reports whether a request is served without a session (Get
	// returns nil), for example static assets, as fiber's own middleware
	// Next does. Optional. Default: no request is skipped.
	Next func(c fiber.Ctx) bool

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
	ErrorHandler func(c fiber.Ctx, err error) error
}

// localsKey is the c.Locals key under which New keeps the innermost
// session; each Manager's session is also kept under the Manager itself.
type localsKey struct{}

// New returns fiber v3 middleware that loads the request's session with m,
// makes it available to the handlers through Get and GetFor (and
// core.FromContext on c.Context(); m.FromContext(c) too, since a fiber.Ctx
// is a context.Context whose Value reads c.Locals), and saves it when the
// handlers return — also when they return an error: the error response
// fiber writes is still a response and carries the session's cookie. The
// save happens before fiber sends anything, because fiber buffers the
// response; a handler that streams with SendStreamWriter must still change
// the session before it returns. 103 Early Hints (c.SendEarlyHints) go out
// at once and do not commit the session.
//
// The cookie is set with c.Cookie, so fasthttp writes Max-Age without
// Expires for a persistent cookie, and an Expires in 1970 for a destroyed
// one. Vary: Cookie and Cache-Control: no-cache="Set-Cookie" accompany it,
// as with core.Manager.WriteCookie. In header mode (core.Config.Header)
// the token is read from that request header and a new one is returned in
// core.HeaderConfig.Response instead.
//
// Register it once, before the handlers that use sessions:
//
//	app.Use(fiber3session.New(m, fiber3session.Config{}))
//
// If a handler panics the session is not saved. New panics if m is nil.
func New(m *core.Manager, cfg Config) fiber.Handler {
	if m == nil {
		panic("fiber3session: New expects a non-nil *core.Manager")
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	name, header := m.CookieName(), m.TokenHeader()
	return func(c fiber.Ctx) error {
		if cfg.Next != nil && cfg.Next(c) {
			return c.Next()
		}
		var token string
		if header != "" {
			token = m.HeaderToken(c.Get(header))
		} else {
			token = c.Cookies(name)
		}
		// fiber's strings point into buffers reused by the next request:
		// copy the value before the session keeps it as its token.
		if core.ValidToken(token) {
			token = strings.Clone(token)
		} else {
			token = ""
		}
		ctx := c.Context()
		s, err := m.Load(ctx, token)
		if err != nil {
			return cfg.ErrorHandler(c, err)
		}
		// c.Locals(k, v) would allocate its variadic argument; this is
		// what it does, without.
		rc := c.RequestCtx()
		rc.SetUserValue(localsKey{}, s)
		rc.SetUserValue(m, s)
		c.SetContext(core.NewContext(ctx, s))

		herr := c.Next()
		if err := m.Save(c.Context(), s); err != nil {
			// Nothing was sent yet: drop the handler's response body and
			// the headers that described it.
			resp := c.Response()
			resp.ResetBody()
			resp.Header.Del(fiber.HeaderContentEncoding)
			resp.Header.Del(fiber.HeaderContentType)
			return cfg.ErrorHandler(c, err)
		}
		if n, v, ok := m.ResponseHeader(s); ok {
			c.Set(n, v)
			c.Vary(header)
			c.Set(fiber.HeaderCacheControl, "no-store")
		} else {
			hc := m.Cookie(s)
			m.WarnPlainHTTP(hc, c.Protocol() == "https")
			setCookie(c, hc)
		}
		return herr
	}
}

// Get returns the session of the request, loaded by the middleware New, or
// nil when the middleware did not run for this request (or skipped it).
// With several Managers it returns the innermost middleware's session; see
// GetFor. Call it as often as needed; it is a lookup in c.Locals.
func Get(c fiber.Ctx) *core.Session {
	s, _ := c.Locals(localsKey{}).(*core.Session)
	return s
}

// GetFor returns the session that m's middleware loaded for the request,
// or nil when it did not run. It is m.FromContext(c).
func GetFor(c fiber.Ctx, m *core.Manager) *core.Session {
	s, _ := c.Locals(m).(*core.Session)
	return s
}

// setCookie converts the cookie core.Manager.Cookie returned, if any, and
// sets it with the headers core.Manager.WriteCookie adds.
func setCookie(c fiber.Ctx, hc *http.Cookie) {
	if hc == nil {
		return
	}
	c.Cookie(&fiber.Cookie{
		Name:     hc.Name,
		Value:    hc.Value,
		Path:     hc.Path,
		Domain:   hc.Domain,
		MaxAge:   hc.MaxAge,
		Expires:  hc.Expires,
		Secure:   hc.Secure,
		HTTPOnly: hc.HttpOnly,
		SameSite: sameSite(hc.SameSite),
	})
	c.Vary(fiber.HeaderCookie)
	c.Append(fiber.HeaderCacheControl, `no-cache="Set-Cookie"`)
}

// sameSite maps net/http's SameSite to fiber's. http.SameSiteDefaultMode,
// which net/http writes as no attribute, becomes fiber's "disabled".
func sameSite(s http.SameSite) string {
	switch s {
	case http.SameSiteStrictMode:
		return fiber.CookieSameSiteStrictMode
	case http.SameSiteNoneMode:
		return fiber.CookieSameSiteNoneMode
	case http.SameSiteLaxMode:
		return fiber.CookieSameSiteLaxMode
	}
	return fiber.CookieSameSiteDisabled
}

func defaultErrorHandler(_ fiber.Ctx, err error) error {
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
