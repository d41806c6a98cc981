package integration

// The attacker suite: what someone who can reach memcached's port (it has
// no authentication), or write to the sessions table, can do to an app
// server — on real memcached and real databases, with a raw gomemcache
// client and SQL. See docs/security.md.

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/hybridsession/hybridsession/core"
)

// sealed returns a StoreConfig modifier that sets the key ring.
func sealed(keys ...[]byte) func(*core.StoreConfig) {
	return func(c *core.StoreConfig) { c.Seal.Keys = keys }
}

// site is an app behind the net/http middleware: /login?user=x writes
// user, /cart?item=x appends to cart, / answers "user=<user> n=<count>"
// and counts the visit.
func site(m *core.Manager) http.Handler {
	return m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		switch r.URL.Path {
		case "/login":
			s.Put("user", r.URL.Query().Get("user"))
		case "/cart":
			s.Put("cart", getString(s, "cart")+r.URL.Query().Get("item"))
		}
		s.Put("n", getInt(s, "n")+1)
		fmt.Fprintf(w, "user=%s n=%d", getString(s, "user"), getInt(s, "n"))
	}))
}

// tokenOf returns the session token in c's cookie jar for srv.
func tokenOf(t *testing.T, c *http.Client, srv string) string {
	t.Helper()
	u, _ := url.Parse(srv)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// rowPayload reads token's row payload with SQL.
func rowPayload(t *testing.T, st *stack, token string) []byte {
	t.Helper()
	var p []byte
	if err := st.db.Table(st.table).Select("payload").Where(map[string]any{"key": core.StorageKey(token)}).Row().Scan(&p); err != nil {
		t.Fatalf("select payload: %v", err)
	}
	return p
}

func setRowPayload(t *testing.T, st *stack, token string, p []byte) {
	t.Helper()
	if err := st.db.Table(st.table).Where(map[string]any{"key": core.StorageKey(token)}).Update("payload", p).Error; err != nil {
		t.Fatalf("update payload: %v", err)
	}
}

// forge builds a plain envelope holding values, as an attacker who knows
// the format writes it.
func forge(t *testing.T, values map[string]any) []byte {
	t.Helper()
	payload, err := core.Msgpack.Encode(values)
	if err != nil {
		t.Fatal(err)
	}
	return hostileEnvelope(core.Msgpack.ID(), payload)
}

// hostileEnvelope is a well-formed plain envelope, alive for an hour, around
// payload.
func hostileEnvelope(codec uint8, payload []byte) []byte {
	now := time.Now()
	return envelope{
		Codec: codec, Lineage: 1 << 40, Created: now, ActiveAt: now, Deadline: now.Add(time.Hour),
		IdleTimeout: time.Hour, Version: 1 << 40, Payload: payload,
	}.encode()
}

func TestAttackForgedEnvelopeIsANewSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, sealed(core.NewSealKey()), nil)
		srv := serve(t, site(m))
		raw := memcache.New(st.mc.Addr)
		attacker := client(t)
		if _, body := get(t, attacker, srv.URL+"/login?user=mallory"); body != "user=mallory n=1" {
			t.Fatalf("login: %q", body)
		}
		token := tokenOf(t, attacker, srv.URL)
		flush(t, m.Store())

		// Forged in memcached only: plain text where sealing is required
		// is unreadable here, so it is neither served nor overwritten; the
		// row (the attacker's real session) serves and takes the write.
		forged := forge(t, map[string]any{"user": "admin", "n": 100})
		newRawMemcached(t, st.mc.Addr).set(t, mkey(token), forged)
		code, body := get(t, attacker, srv.URL+"/")
		if code != http.StatusOK || strings.Contains(body, "admin") {
			t.Fatalf("forged memcached entry: %d %q", code, body)
		}
		if body != "user=mallory n=2" {
			t.Fatalf("forged memcached entry: got %q, want the database's copy of the real session", body)
		}
		if !bytes.Equal(rawGet(t, raw, token), forged) {
			t.Fatal("the unreadable entry in memcached was overwritten")
		}
		if got := m.Store().Stats().Unreadable; got == 0 {
			t.Fatal("Stats.Unreadable = 0 after a plain-text envelope on a sealed Store")
		}

		// Forged in both tiers (memcached and an SQL UPDATE of the row):
		// a new, empty session — no panic, no 500.
		newRawMemcached(t, st.mc.Addr).set(t, mkey(token), forged)
		setRowPayload(t, st, token, forged)
		code, body = get(t, attacker, srv.URL+"/")
		if code != http.StatusOK || body != "user= n=1" {
			t.Fatalf("forged in both tiers: %d %q, want a new session", code, body)
		}
		fresh := tokenOf(t, attacker, srv.URL)
		if fresh == token {
			t.Fatal("the forged session's token was kept")
		}
		// Garbage behind a real seal header (its key id is in the clear)
		// fails to authenticate: corrupt, a miss, replaced from the row.
		header := rawGet(t, raw, fresh)[:7]
		newRawMemcached(t, st.mc.Addr).set(t, mkey(fresh), append(bytes.Clone(header), bytes.Repeat([]byte{0xaa}, 80)...))
		if code, body := get(t, attacker, srv.URL+"/"); code != http.StatusOK || body != "user= n=2" {
			t.Fatalf("garbage: %d %q, want the row's copy of the new session", code, body)
		}
		if got := m.Store().Stats().Corrupt; got == 0 {
			t.Fatal("Stats.Corrupt = 0 after an envelope that fails to authenticate")
		}
	})
}

func TestAttackCopiedEnvelopeIsAMiss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, sealed(core.NewSealKey()), nil)
		srv := serve(t, site(m))
		raw := memcache.New(st.mc.Addr)
		victim, attacker := client(t), client(t)
		get(t, victim, srv.URL+"/login?user=victim")
		get(t, attacker, srv.URL+"/login?user=mallory")
		flush(t, m.Store())
		vt, at := tokenOf(t, victim, srv.URL), tokenOf(t, attacker, srv.URL)

		// The victim's sealed bytes, under the attacker's key, in both tiers.
		newRawMemcached(t, st.mc.Addr).set(t, mkey(at), rawGet(t, raw, vt))
		setRowPayload(t, st, at, rowPayload(t, st, vt))
		code, body := get(t, attacker, srv.URL+"/")
		if code != http.StatusOK || strings.Contains(body, "victim") {
			t.Fatalf("copied envelope: %d %q", code, body)
		}
		if _, body := get(t, victim, srv.URL+"/"); !strings.HasPrefix(body, "user=victim ") {
			t.Fatalf("the victim lost the session: %q", body)
		}
	})
}

func TestAttackTamperedRowIsAMiss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, sealed(core.NewSealKey()), nil)
		srv := serve(t, site(m))
		c := client(t)
		get(t, c, srv.URL+"/login?user=ada")
		flush(t, m.Store())
		token := tokenOf(t, c, srv.URL)
		p := rowPayload(t, st, token)
		p[len(p)/2] ^= 0x01 // one bit
		setRowPayload(t, st, token, p)
		if err := memcache.New(st.mc.Addr).Delete(mkey(token)); err != nil {
			t.Fatal(err)
		}
		code, body := get(t, c, srv.URL+"/")
		if code != http.StatusOK || body != "user= n=1" {
			t.Fatalf("tampered row: %d %q, want a new session", code, body)
		}
		if got := m.Store().Stats().Corrupt; got != 1 {
			t.Fatalf("Stats.Corrupt = %d, want 1 (the tampered row)", got)
		}
	})
}

// TestAttackHostilePayloads plants payloads built to exhaust a decoder's
// memory or stack — on a Store without keys, where the codecs see them, and
// on one with keys, where plain text is unreadable — and checks that each
// request is answered, the process lives, and memory stays bounded.
func TestAttackHostilePayloads(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		hostile := map[string]struct {
			codec   uint8
			payload []byte
		}{
			"msgpack array of 2^32-1": {core.Msgpack.ID(), []byte{0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff}},
			"msgpack 1 MB deep":       {core.Msgpack.ID(), append([]byte{0x81, 0xa1, 'a'}, bytes.Repeat([]byte{0x91}, 1000000)...)},
			"msgpack map of 2^32-1":   {core.Msgpack.ID(), []byte{0xdf, 0xff, 0xff, 0xff, 0xff}},
			"json 1 MB deep":          {core.JSON.ID(), []byte(`{"a":` + strings.Repeat("[", 1000000))},
			"gob 1 GiB message":       {core.Gob.ID(), []byte{0xfc, 0x3f, 0xff, 0xff, 0xff, 0xff}},
		}
		// Every built-in codec is configured, so that the plain Store hands
		// each payload to its decoder.
		codecs := func(c *core.StoreConfig) { c.Codecs = []core.Codec{core.JSON, core.Gob} }
		key := core.NewSealKey()
		for _, mode := range []struct {
			name string
			mod  func(*core.StoreConfig)
		}{{"plain", codecs}, {"sealed", func(c *core.StoreConfig) { codecs(c); sealed(key)(c) }}} {
			m := st.manager(t, mode.mod, nil)
			srv := serve(t, site(m))
			for name, h := range hostile {
				c := client(t)
				get(t, c, srv.URL+"/login?user=x")
				token := tokenOf(t, c, srv.URL)
				env := hostileEnvelope(h.codec, h.payload)
				newRawMemcached(t, st.mc.Addr).set(t, mkey(token), env)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				const requests = 20
				for range requests {
					code, body := get(t, c, srv.URL+"/")
					if code != http.StatusOK || strings.Contains(body, "user=x") && mode.name == "plain" {
						t.Fatalf("%s %s: %d %q", mode.name, name, code, body)
					}
				}
				runtime.ReadMemStats(&after)
				// Each request reads at most the 1 MB entry (and, sealed,
				// refills memcached); decoding may cost a small multiple.
				perRequest := (after.TotalAlloc - before.TotalAlloc) / requests
				if limit := uint64(64*len(env) + 4<<20); perRequest > limit {
					t.Errorf("%s %s: %d bytes allocated per request, limit %d", mode.name, name, perRequest, limit)
				}
			}
		}
	})
}

// TestSealedValuesInvisible checks that a known value appears nowhere in
// memcached's bytes or the table, while the app reads it back.
func TestSealedValuesInvisible(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, sealed(core.NewSealKey()), nil)
		srv := serve(t, site(m))
		c := client(t)
		const secret = "SECRETCART7f3a"
		get(t, c, srv.URL+"/cart?item="+secret)
		_, body := get(t, c, srv.URL+"/cart?item="+secret) // a second write: version 2 in both tiers after the flush
		if !strings.Contains(body, "n=2") {
			t.Fatalf("app: %q", body)
		}
		flush(t, m.Store())
		token := tokenOf(t, c, srv.URL)
		if v := rawGet(t, memcache.New(st.mc.Addr), token); bytes.Contains(v, []byte(secret)) || bytes.Contains(v, []byte("cart")) {
			t.Fatal("the value is readable in memcached")
		}
		var payloads [][]byte
		rows, err := st.db.Table(st.table).Select("payload").Rows()
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p []byte
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, p)
		}
		rows.Close()
		if len(payloads) == 0 {
			t.Fatal("no rows")
		}
		for _, p := range payloads {
			if bytes.Contains(p, []byte(secret)) || bytes.Contains(p, []byte("cart")) {
				t.Fatal("the value is readable in the table")
			}
		}
		if s := load(t, m, token); getString(s, "cart") != secret+secret {
			t.Fatalf("app reads cart %q", getString(s, "cart"))
		}
	})
}

// TestKeyRotationUnderLoad rotates the key ring of two app servers, one
// after the other, the documented way (add the new key second everywhere,
// then move it first everywhere, then drop the old one after Lifetime),
// while clients keep counting on both servers. Nobody is logged out: every
// client's count keeps growing by one per request, and no envelope fails
// to open.
func TestKeyRotationUnderLoad(t *testing.T) {
	b := backends(t)[0]
	if len(backends(t)) > 1 {
		b = backends(t)[1] // a database server when one is configured
	}
	st := newStack(t, b)
	k1, k2 := core.NewSealKey(), core.NewSealKey()
	var servers [2]atomic.Pointer[core.Manager]
	var stores []*core.Store
	var mu sync.Mutex
	deploy := func(i int, keys ...[]byte) {
		m := st.manager(t, func(c *core.StoreConfig) { c.Seal.Keys = keys }, nil)
		mu.Lock()
		stores = append(stores, m.Store())
		mu.Unlock()
		servers[i].Store(m)
	}
	deploy(0, k1)
	deploy(1, k1)
	var urls [2]string
	for i := range urls {
		urls[i] = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			site(servers[i].Load()).ServeHTTP(w, r)
		})).URL
	}

	const clients = 8
	stop := make(chan struct{})
	errs := make(chan error, clients)
	var requests atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := client(t)
			want := 0
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				resp, err := hc.Get(urls[(c+i)%2] + "/")
				if err != nil {
					errs <- err
					return
				}
				var buf bytes.Buffer
				buf.ReadFrom(resp.Body)
				resp.Body.Close()
				want++
				if resp.StatusCode != http.StatusOK || buf.String() != "user= n="+strconv.Itoa(want) {
					errs <- fmt.Errorf("client %d request %d: %d %q, want n=%d", c, i, resp.StatusCode, buf.String(), want)
					return
				}
				requests.Add(1)
			}
		}()
	}
	waitRequests := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for target := requests.Load() + n; requests.Load() < target; {
			select {
			case err := <-errs: // only failures arrive before stop
				close(stop)
				t.Fatal(err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("load stalled")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitRequests(100)
	deploy(0, k1, k2) // step 1: the new key opens everywhere
	waitRequests(100)
	deploy(1, k1, k2)
	waitRequests(100)
	deploy(0, k2, k1) // step 2: the new key seals everywhere
	waitRequests(100)
	deploy(1, k2, k1)
	waitRequests(200)
	close(stop)
	wg.Wait()
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, s := range stores {
		if st := s.Stats(); st.Corrupt+st.Unreadable != 0 {
			t.Errorf("store %d: %d corrupt and %d unreadable envelopes", i, st.Corrupt, st.Unreadable)
		}
	}
	t.Logf("%d requests across the rotation", requests.Load())
}

// TestReaperWithoutTheKeyKeepsRows: a reaper deployed without the key that
// sealed the rows cannot tell live from dead, so it postpones them by its
// Interval instead of deleting sessions that may live; a reaper with the
// key deletes the dead at its pass after that.
func TestReaperWithoutTheKeyKeepsRows(t *testing.T) {
	st := newStack(t, backends(t)[0])
	k1 := core.NewSealKey()
	m := st.manager(t, sealed(k1), nil)
	token := put(t, m, "", "user", "ada")
	st.clock.Advance(40 * time.Minute) // idle: the row looks expired, the session is dead
	if rep := reapOnce(t, st.store(t, sealed(core.NewSealKey())), core.ReaperConfig{}); rep != (reapCounts{}) {
		t.Fatalf("reaper without the key: %+v, want the row left alone", rep)
	}
	if len(rowPayload(t, st, token)) == 0 {
		t.Fatal("row gone")
	}
	st.clock.Advance(time.Minute) // the postponement: one reaper Interval
	if rep := reapOnce(t, m.Store(), core.ReaperConfig{}); rep.Deleted != 1 {
		t.Fatalf("reaper with the key: %+v, want the dead row deleted", rep)
	}
}

// TestAttackTokenOfAnotherManagerIsANewSession: an app with a user area and
// an admin area, two Managers on one Store under different cookie names.
// A user's token presented as the admin cookie gets a new, empty admin
// session — from memcached's copy and from the row alike — and the admin's
// token gets nothing in the user area (issue 23, finding 3). A session from
// before format 4 carries no scope and loads in either until it is written.
func TestAttackTokenOfAnotherManagerIsANewSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		st := newStack(t, b)
		store := st.store(t, sealed(core.NewSealKey()))
		newManager := func(cookie string) *core.Manager {
			m, err := core.New(core.Config{Store: store, Cookie: core.CookieConfig{Name: cookie, Insecure: true}})
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		user, admin := newManager("session"), newManager("admin")
		login := func(m *core.Manager, who string) string {
			s := load(t, m, "")
			s.Put("user", who)
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			return s.Token()
		}
		ut, at := login(user, "mallory"), login(admin, "root")
		check := func(where string) {
			t.Helper()
			for _, c := range []struct {
				m     *core.Manager
				token string
				want  string // "": a new session
			}{{user, ut, "mallory"}, {admin, ut, ""}, {admin, at, "root"}, {user, at, ""}} {
				s := load(t, c.m, c.token)
				if got := getString(s, "user"); got != c.want || s.IsNew() != (c.want == "") {
					t.Errorf("%s: token of user %q in the %s Manager: user=%q new=%t, want %q", where, c.want, map[bool]string{true: "user", false: "admin"}[c.m == user], got, s.IsNew(), c.want)
				}
			}
		}
		check("memcached")
		flushAll(t, st)
		check("database")

		// A session written before format 4 (a plain format-3 envelope here, on an unsealed Store) has no scope.
		plain := st.store(t, nil)
		legacyUser, err := core.New(core.Config{Store: plain, Cookie: core.CookieConfig{Insecure: true}})
		if err != nil {
			t.Fatal(err)
		}
		legacyAdmin, err := core.New(core.Config{Store: plain, Cookie: core.CookieConfig{Name: "admin", Insecure: true}})
		if err != nil {
			t.Fatal(err)
		}
		old := core.NewToken()
		newRawMemcached(t, st.mc.Addr).set(t, mkey(old), forge(t, map[string]any{"user": "old"}))
		for _, m := range []*core.Manager{legacyUser, legacyAdmin} {
			if s := load(t, m, old); getString(s, "user") != "old" {
				t.Fatalf("a format-3 session in a Manager: %v, want it loaded", s.Get("user"))
			}
		}
	})
}

// TestAttackEnvelopeUnderAnotherPrefixIsAMiss: two applications share
// memcached and the seal keys under different key prefixes; app A's sealed
// envelope copied under app B's prefix, same storage key, does not open in
// B, which counts it as corrupt (issue 23, finding 4). The control: under
// the prefix it was sealed for, the same bytes open.
func TestAttackEnvelopeUnderAnotherPrefixIsAMiss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		key := core.NewSealKey()
		st := newStack(t, b)
		prefixed := func(p string) func(*core.StoreConfig) {
			return func(c *core.StoreConfig) { c.Memcached.KeyPrefix, c.Seal.Keys, c.Durable = p, [][]byte{key}, nil }
		}
		a := st.manager(t, prefixed("a:"), nil)
		bApp := st.manager(t, prefixed("b:"), nil)
		s := load(t, a, "")
		s.Put("user", "victim")
		if err := a.Save(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		raw := newRawMemcached(t, st.mc.Addr)
		it, err := raw.c.Get("a:" + core.StorageKey(s.Token()))
		if err != nil {
			t.Fatal(err)
		}
		raw.set(t, "b:"+core.StorageKey(s.Token()), it.Value)
		if got := load(t, bApp, s.Token()); !got.IsNew() || got.Get("user") != nil {
			t.Fatalf("app A's envelope under app B's prefix: user=%v, want a new session", got.Get("user"))
		}
		if n := bApp.Store().Stats().Corrupt; n != 1 {
			t.Errorf("app B's Stats.Corrupt = %d, want 1", n)
		}
		other := core.NewToken() // control: the prefix, not the storage key alone, is what B checked
		raw.set(t, "a:"+core.StorageKey(other), it.Value)
		if got := load(t, a, s.Token()); getString(got, "user") != "victim" {
			t.Fatalf("app A's own envelope: user=%v", got.Get("user"))
		}
	})
}

// TestAttackEditedExpiryDoesNotRevive: an UPDATE of the row's plain
// expires_at column does not bring back a session that idled out; the
// idle timeout is enforced from the sealed envelope (issue 23, finding 7).
// The control: before its idle timeout the same session is served from
// the row.
func TestAttackEditedExpiryDoesNotRevive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		m := st.manager(t, sealed(core.NewSealKey()), func(c *core.Config) { c.IdleTimeout = 10 * time.Minute })
		s := load(t, m, "")
		s.Put("user", "victim")
		s.MarkDurable()
		if err := m.Save(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		token := s.Token()
		flushAll(t, st)
		st.clock.Advance(9 * time.Minute)
		if got := load(t, m, token); getString(got, "user") != "victim" {
			t.Fatalf("before the idle timeout: user=%v, want the session from its row", got.Get("user"))
		}
		flushAll(t, st)
		st.clock.Advance(time.Hour) // idle well past IdleTimeout + SyncInterval
		far := st.clock.Now().Add(24 * time.Hour).UnixMilli()
		res := st.db.Table(st.table).Where(map[string]any{"key": core.StorageKey(token)}).Update("expires_at", far)
		if res.Error != nil || res.RowsAffected != 1 {
			t.Fatalf("update expires_at: %v, %d rows", res.Error, res.RowsAffected)
		}
		if got := load(t, m, token); !got.IsNew() {
			t.Fatalf("idled out, expires_at edited: user=%v, want a new session", got.Get("user"))
		}
	})
}

// flushAll empties the stack's memcached, as a restart or flush_all does.
func flushAll(t *testing.T, st *stack) {
	t.Helper()
	if err := memcache.New(st.mc.Addr).FlushAll(); err != nil {
		t.Fatal(err)
	}
}
