// Package echo5session is the echo v5 middleware of hybridsession: it
// loads the request's session from a core.Manager, hands it to the
// handlers, and saves it — and sets its cookie — just before the response
// headers go out. (For echo v4 use echosession.)
//
// The smallest complete use:
//
//	store, err := core.NewStore(core.StoreConfig{
//		Memcached: core.MemcachedConfig{Servers: []string{"127.0.0.1:11211"}},
//		Durable:   durable, // for example a gormstore.Store; optional
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer store.Close(context.Background())
//	m, err := core.New(core.Config{Store: store})
//	if err != nil {
//		log.Fatal(err)
//	}
//
//	e := echo.New()
//	e.Use(echo5session.New(m, echo5session.Config{}))
//	e.GET("/", func(c *echo.Context) error {
//		s := echo5session.Get(c)
//		n, _ := core.Value[int](s, "visits")
//		n++
//		s.Put("visits", n) // change the session before writing the response
//		return c.String(http.StatusOK, fmt.Sprintf("visit %d", n))
//	})
//
// Changes must be made before the handler starts writing its response: the
// session is saved when the response header is written (after every
// function registered with the *echo.Response's Before has run), or when
// the handler returns without writing, because its cookie travels in the
// response headers. A change made later is not saved; the middleware logs
// it with core.ErrChangedAfterCommit. A handler that returns an error
// still gets its session saved and its cookie set on the error response
// echo writes.
//
// When the store cannot load or save the session (both tiers down:
// core.ErrUnavailable) the middleware returns an *echo.HTTPError with status
// 503 (500 for other failures) wrapping the cause, so that echo's
// HTTPErrorHandler answers it in its usual shape. If the save fails while
// the handler is writing, the handler's output is discarded and the error
// is answered instead when the handler returns.
//
// With the Manager's core.Config.Header set, the token travels in a request
// header (Authorization: Bearer, or a named header) and a new one comes
// back in a response header; see core.Config.TokenHeader for the CSRF note of
// each mode. Several Managers may serve one request (an admin and a user
// session under different cookie names): GetFor finds each one's session.
package echo5session
