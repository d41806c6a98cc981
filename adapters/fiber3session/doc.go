// Package fiber3session is the fiber v3 middleware of hybridsession: it
// loads the request's session from a core.Manager, hands it to the
// handlers, and saves it — and sets its cookie — when they return, before
// fiber sends the response. It also provides a fiber v3 Storage on the
// hybrid store, for fiber's own session, CSRF and limiter middleware.
// (For fiber v2 use fibersession.)
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
//	app := fiber.New()
//	app.Use(fiber3session.New(m, fiber3session.Config{}))
//	app.Get("/", func(c fiber.Ctx) error {
//		s := fiber3session.Get(c)
//		n, _ := core.Value[int](s, "visits")
//		n++
//		s.Put("visits", n)
//		return c.SendString(fmt.Sprintf("visit %d", n))
//	})
//
// fasthttp buffers the response, so every change made before the handler
// returns is saved, and the cookie goes out with the response; a handler
// that streams with SendStreamWriter must change the session before it
// returns. Values taken from fiber's context (c.Params, c.FormValue) point
// into buffers reused by the next request unless the app sets Immutable:
// copy them (strings.Clone) before storing them in the session.
//
// When the store cannot load or save the session (both tiers down:
// core.ErrUnavailable) the middleware returns an error that is a
// *fiber.Error with status 503 (500 for other failures) to fiber's
// ErrorHandler, and the handler's response body is dropped.
//
// With the Manager's core.Config.Header set, the token travels in a request
// header (Authorization: Bearer, or a named header) and a new one comes
// back in a response header; see core.Config.TokenHeader for the CSRF note of
// each mode. Several Managers may serve one request (an admin and a user
// session under different cookie names): GetFor finds each one's session.
package fiber3session
