// Package scsstore is a session store for github.com/alexedwards/scs/v2
// on hybridsession's tiered core.Store: sessions live in memcached and in a
// database (see the gormstore module), a session's database row is written
// at most once per SyncInterval, and users stay logged in when memcached
// restarts, evicts or fails.
//
// The smallest complete use, with memcached on localhost and an embedded
// SQLite database:
//
//	db, err := sqlite.Open("sessions.db") // package gormstore/sqlite
//	if err != nil {
//		log.Fatal(err)
//	}
//	durable, err := gormstore.New(db, gormstore.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	tiers, err := core.NewStore(core.StoreConfig{
//		Memcached: core.MemcachedConfig{Servers: []string{"127.0.0.1:11211"}},
//		Durable:   durable,
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer tiers.Close(context.Background())
//	store, err := scsstore.New(tiers, scsstore.Config{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	sessionManager := scs.New()
//	sessionManager.Store = store
//	sessionManager.HashTokenInStore = true
//	http.ListenAndServe(":8080", sessionManager.LoadAndSave(mux))
//
// # What is stored
//
// Each scs session is one entry of a core.KV whose codec is CodecID and whose
// value wraps scs's encoded session in a small header (the expiry scs
// gave, the commit time and, with Config.Iterable, scs's token; see
// DecodePayload). scs keeps its own codec: the core.Manager cannot read
// these entries, and a Store shared by both sees each side's sessions as
// absent from the other.
//
// # Expiry
//
// scs manages its idle timeout and lifetime itself and hands the store one
// expiry per Commit. Find reports a session gone at that expiry, to the
// millisecond. The entry's IdleTimeout reaches that expiry, so the Store
// sees the session end when scs does: a copy memcached still holds past it
// is dead, and like any dead copy it is checked against the database row,
// which another app server may have written since (a Commit made around a
// memcached node it could not reach). The entry's Deadline is the expiry
// plus the Store's SyncInterval, and the row lives until then: that covers
// the lag of the database copy (up to SyncInterval of commits). After a
// memcached loss the session is read back from its row and accepted until
// the row's expiry plus SyncInterval. A copy restored that way is not dead
// to the Store at scs's expiry (the restore counts as activity): it stands
// until its Deadline, which bounds that overshoot, and is then dead and
// checked against the row like any other.
//
// # Iteration
//
// scs's Iterate needs All, which must return tokens; the tiers hold only
// hashes of them. All therefore needs Config.Iterable, which keeps scs's
// token inside the stored session, and a Store with a durable tier (the
// rows are listed with core.Store.List). Use it only with HashTokenInStore
// on, so that the kept token is a hash.
package scsstore
