// Package ginsession is the gin middleware of hybridsession: it loads the
// request's session from a core.Manager, hands it to the handlers, and saves
// it — and sets its cookie — just before the response headers go out.
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
//	r := gin.New()
//	r.Use(ginsession.New(m, ginsession.Config{}))
//	r.GET("/", func(c *gin.Context) {
//		s := ginsession.Get(c)
//		n, _ := core.Value[int](s, "visits")
//		n++
//		s.Put("visits", n) // change the session before writing the response
//		c.String(http.StatusOK, "visit %d", n)
//	})
//
// Changes must be made before the handler starts writing its response: the
// session is saved on the first write (or when the handler returns without
// writing), because its cookie travels in the response headers.
//
// When the store cannot load or save the session (both tiers down:
// core.ErrUnavailable) the request is answered by Config.ErrorHandler —
// by default 503 Service Unavailable, 413 Content Too Large for
// core.ErrTooLarge, or 500 for other failures — and
// whatever the handler writes afterwards is discarded.
package ginsession
