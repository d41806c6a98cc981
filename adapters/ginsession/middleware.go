package ginsession

import (
	"slices"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/core"
)

// Config configures the middleware. The zero value is ready to use.
type Config struct {
	// Skip reports whether a request is served without a session (Get
	// returns nil), for example static assets. Optional. Default: no
	// request is skipped, except those SkipPaths names.
	Skip func(c *gin.Context) bool

	// SkipPaths lists URL path prefixes served without a session, for
	// example "/static/". Optional.
	SkipPaths []string

	// ErrorHandler answers a request whose session could not be loaded or
	// saved. It must write the response (a status at least). Optional.
	// Default: c.AbortWithError(core.StatusCode(err), err) — 503 Service
	// Unavailable for core.ErrUnavailable, 413 Content Too Large for
	// core.ErrTooLarge, 500 otherwise, with no body and
	// err recorded in c.Errors for gin's logger, never sent to the client.
	//
	// When loading fails it is called instead of the handlers, and the
	// chain is aborted. When saving fails on the handler's first write it
	// is called in the middle of that write: it writes to the real
	// response, and everything the handler writes afterwards is discarded.
	ErrorHandler func(c *gin.Context, err error)
}

// New returns gin middleware that loads the request's session with m, makes
// it available to the handlers through Get (and core.FromContext on
// c.Request.Context()), and saves it when the response starts: on the
// handler's first Write, WriteString, WriteHeaderNow, Flush or Hijack, or
// after the handlers return when they wrote nothing. The Set-Cookie header,
// when the session was created, renewed or destroyed, goes out with that
// response.
//
// Register it once, before the handlers that use sessions:
//
//	r.Use(ginsession.New(m, ginsession.Config{}))
//
// If a handler panics the session is not saved, unless the handler had
// already started its response. New panics if m is nil.
func New(m *core.Manager, cfg Config) gin.HandlerFunc {
	if m == nil {
		panic("ginsession: New expects a non-nil *core.Manager")
	}
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = defaultErrorHandler
	}
	skipPaths := slices.Clone(cfg.SkipPaths)
	skip := func(c *gin.Context) bool {
		if cfg.Skip != nil && cfg.Skip(c) {
			return true
		}
		return slices.ContainsFunc(skipPaths, func(p string) bool { return strings.HasPrefix(c.Request.URL.Path, p) })
	}
	return func(c *gin.Context) {
		if skip(c) {
			c.Next()
			return
		}
		s, ctx, err := m.LoadFrom(c.Request.Context(), c.Request.Header.Get)
		if err != nil {
			cfg.ErrorHandler(c, err)
			c.Abort()
			return
		}
		// The request context is the session's only home: Get and
		// core.FromContext both read it. Copying the request costs 2
		// allocations (~370 B); keeping a second reference with c.Set
		// would cost as much again (gin allocates c.Keys per request).
		c.Request = c.Request.WithContext(ctx)

		w := writers.Get().(*writer)
		*w = writer{ResponseWriter: c.Writer, c: c, m: m, s: s, onError: cfg.ErrorHandler}
		c.Writer = w
		// Restore gin's writer even when a handler panics, so that a
		// recovery middleware's error page does not save the session;
		// then recycle the writer.
		defer func() {
			c.Writer = w.ResponseWriter
			*w = writer{}
			writers.Put(w)
		}()
		c.Next()
		if w.commit() {
			_ = m.SaveTo(c.Request.Context(), s, false, nil) // logs a change made too late
		}
	}
}

// writers recycles the middleware's writers, as gin recycles its Context:
// neither may be used after the request ends.
var writers = sync.Pool{New: func() any { return new(writer) }}

// Get returns the session of the request, loaded by the middleware New, or
// nil when the middleware did not run for this request (or skipped it).
// With several Managers it returns the innermost middleware's session; see
// GetFor. It is the accessor to use in gin handlers: core.FromContext
// needs the request's context, c.Request.Context() — given the
// *gin.Context itself it finds nothing unless the engine sets
// ContextWithFallback. It is
// core.FromContext(c.Request.Context()): code that has only the request's
// context can get the session that way. Call it as often as needed; it is
// a context lookup.
func Get(c *gin.Context) *core.Session {
	if c.Request == nil {
		return nil
	}
	return core.FromContext(c.Request.Context())
}

// GetFor returns the session that m's middleware loaded for the request,
// or nil when it did not run: with several Managers in one request each
// finds its own. It is m.FromContext(c.Request.Context()).
func GetFor(c *gin.Context, m *core.Manager) *core.Session {
	if c.Request == nil {
		return nil
	}
	return m.FromContext(c.Request.Context())
}

func defaultErrorHandler(c *gin.Context, err error) {
	_ = c.AbortWithError(core.StatusCode(err), err)
}
