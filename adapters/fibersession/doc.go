// Package fibersession is the fiber (v2) middleware of hybridsession, and a
// fiber.Storage on the hybrid store for fiber's own middleware.
//
// The middleware loads the request's session from a core.Manager, hands it
// to the handlers, and once they return saves it and sets its cookie (fiber
// buffers the response, so nothing has been sent yet). The smallest
// complete use:
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
//	app.Use(fibersession.New(m, fibersession.Config{}))
//	app.Get("/", func(c *fiber.Ctx) error {
//		s := fibersession.Get(c)
//		n, _ := core.Value[int](s, "visits")
//		n++
//		s.Put("visits", n)
//		return c.SendString(fmt.Sprintf("visit %d", n))
//	})
//
// When the store cannot load or save the session (both tiers down:
// core.ErrUnavailable) the middleware returns an error carrying a
// *fiber.Error with status 503 (413 for core.ErrTooLarge, 500 for other
// failures), which fiber's
// ErrorHandler answers; the handler's response body is dropped first.
//
// Storage is for applications that keep fiber's middleware/session (or
// another fiber middleware that takes a fiber.Storage) and only want the
// hybrid memcached + database store underneath:
//
//	sessions := session.New(session.Config{
//		Storage: fibersession.NewStorage(store, fibersession.StorageConfig{}),
//	})
package fibersession
