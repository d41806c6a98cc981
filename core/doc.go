// Package core is hybridsession's framework-neutral session library: sessions as fast as memcached and
// as durable as a database.
//
// A Store keeps sessions in two tiers. Reads go to memcached first and to the database when memcached
// lacks the session, so a memcached restart, eviction or node change logs nobody out. Writes go to
// memcached at once and reach the database within StoreConfig.SyncInterval through a background writer,
// a few multi-row statements per batch of sessions rather than one per request. A reaper deletes dead
// sessions' rows after asking memcached for their latest copy. docs/consistency.md states what holds
// under which faults.
//
// A Manager turns the Store into HTTP sessions: tokens and cookies, typed values, idle and absolute
// timeouts, token renewal, logout everywhere, and merging concurrent requests' changes. Use its Handler
// as net/http middleware, or an adapter module (ginsession, echosession, echo5session, fibersession,
// fiber3session) or scsstore.
//
// The smallest complete use, with memcached and SQLite (gormstore; tests use durabletest.NewMemory):
//
//	store, err := core.NewStore(core.StoreConfig{
//		Memcached: core.MemcachedConfig{Servers: []string{"127.0.0.1:11211"}},
//		Durable:   db, // gormstore.New(gormDB, gormstore.Config{})
//		Seal:      core.SealConfig{Keys: keys}, // core.ParseSealKeys(os.Getenv("HYBRIDSESSION_SEAL_KEYS"))
//	})
//	if err != nil {
//		return err
//	}
//	defer store.Close(context.Background())
//	m, err := core.New(core.Config{Store: store})
//	if err != nil {
//		return err
//	}
//	http.ListenAndServe(":8080", m.Handler(mux))
//
// In a handler, core.FromContext(r.Context()) returns the request's Session: Get and Put values,
// RenewToken at login, Destroy at logout. The middleware saves it before the response headers go out.
package core
