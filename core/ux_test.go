package core_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

// uxManager is a Manager on real memcached and an in-memory durable tier,
// with a clock the test moves and a Config the test adjusts.
func uxManager(t *testing.T, mod func(*core.Config), codec ...core.Codec) (*core.Manager, *atomic.Int64) {
	t.Helper()
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	now := new(atomic.Int64)
	now.Store(time.Now().UnixNano())
	st, err := core.NewStore(core.StoreConfig{
		Memcached:    core.MemcachedConfig{Servers: []string{mc.Addr}},
		Durable:      durabletest.NewMemory(),
		SyncInterval: time.Hour, // memcached runs ahead of the rows
		Codec:        append(codec, nil)[0],
		Logger:       quiet,
		Clock:        func() time.Time { return time.Unix(0, now.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	cfg := core.Config{Store: st, Cookie: core.CookieConfig{Insecure: true}}
	if mod != nil {
		mod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, now
}

// serve runs one request through m.Handler(h) with the cookie, returning
// the recorder and the session cookie the response set (nil: none).
func serve(m *core.Manager, h http.HandlerFunc, cookie *http.Cookie) (*httptest.ResponseRecorder, *http.Cookie) {
	req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
	if cookie != nil {
		req.AddCookie(cookie)
	}
	rec := httptest.NewRecorder()
	m.Handler(h).ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "session" { // the default name, which uxManager keeps
			return rec, c
		}
	}
	return rec, nil
}

func TestRememberMeCookieAndExpiry(t *testing.T) {
	m, clock := uxManager(t, func(c *core.Config) {
		c.Cookie.SessionOnly = true
		c.Lifetime = 12 * time.Hour
	})
	visit := func(w http.ResponseWriter, r *http.Request) { core.FromContext(r.Context()).Put("cart", "book") }
	_, anon := serve(m, visit, nil)
	if anon == nil || anon.MaxAge != 0 || !anon.Expires.IsZero() {
		t.Fatalf("anonymous session cookie %+v, want a browser-session cookie", anon)
	}

	var deadline, idleExpiry time.Time
	login := func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.RenewToken()
		s.SetSubject("ada")
		s.RememberMe(30 * 24 * time.Hour)
		s.SetIdleTimeout(7 * 24 * time.Hour)
		deadline, idleExpiry = s.Deadline(), s.IdleExpiry()
	}
	_, remembered := serve(m, login, anon)
	now := time.Unix(0, clock.Load())
	if remembered == nil || remembered.Value == anon.Value {
		t.Fatalf("login cookie %+v, want a new token", remembered)
	}
	if d := time.Duration(remembered.MaxAge) * time.Second; d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour {
		t.Fatalf("remember-me cookie Max-Age %v, want about 30 days", d)
	}
	if !deadline.Equal(now.Add(30*24*time.Hour).Truncate(time.Millisecond)) && deadline.Sub(now) < 30*24*time.Hour-time.Second {
		t.Fatalf("Deadline %v (now %v)", deadline, now)
	}
	if got := idleExpiry.Sub(now); got < 7*24*time.Hour-time.Second || got > 7*24*time.Hour {
		t.Fatalf("IdleExpiry is now+%v, want now+7 days", got)
	}

	// The choice is stored: hours later, past the 12h default lifetime and
	// the default 30m idle timeout, a renewal keeps the persistent cookie.
	clock.Add(int64(13 * time.Hour))
	var reloaded time.Time
	_, renewed := serve(m, func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		if s.IsNew() {
			t.Error("the remembered session expired at the default idle timeout or lifetime")
		}
		reloaded = s.IdleExpiry() // last activity (the login) + the idle timeout
		s.RenewToken()
	}, remembered)
	if renewed == nil || renewed.MaxAge < int((29*24*time.Hour)/time.Second) {
		t.Fatalf("cookie after RenewToken %+v, want a persistent one", renewed)
	}
	if d := reloaded.Sub(idleExpiry); d < -time.Second || d > time.Second {
		t.Fatalf("IdleExpiry %v after reload, want %v: the 7-day idle timeout was not kept", reloaded, idleExpiry)
	}

	// Another visitor who does not tick the box keeps a browser-session
	// cookie and the default expiry.
	_, other := serve(m, func(w http.ResponseWriter, r *http.Request) {
		s := core.FromContext(r.Context())
		s.Put("user", "bob")
		if got := s.IdleExpiry().Sub(time.Unix(0, clock.Load())); got != 30*time.Minute {
			t.Errorf("IdleExpiry is now+%v for a plain session, want the default 30m", got)
		}
	}, nil)
	if other == nil || other.MaxAge != 0 {
		t.Fatalf("plain session cookie %+v", other)
	}
}

func TestRememberMeShortensAndResendsCookie(t *testing.T) {
	m, clock := uxManager(t, nil)
	_, ck := serve(m, func(w http.ResponseWriter, r *http.Request) { core.FromContext(r.Context()).Put("k", 1) }, nil)
	_, again := serve(m, func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).RememberMe(time.Hour)
	}, ck)
	if again == nil || again.MaxAge > 3600 || again.MaxAge < 3500 {
		t.Fatalf("cookie after RememberMe(1h): %+v", again)
	}
	clock.Add(int64(61 * time.Minute))
	serve(m, func(w http.ResponseWriter, r *http.Request) {
		if !core.FromContext(r.Context()).IsNew() {
			t.Error("session alive past the deadline RememberMe chose")
		}
	}, again)
}

func TestOneTimeMessageSurvivesRedirectOnce(t *testing.T) {
	for _, codec := range []core.Codec{core.Msgpack, core.JSON, core.Gob} {
		t.Run(fmt.Sprint(codec.ID()), func(t *testing.T) {
			m, _ := uxManager(t, nil, codec)
			mux := http.NewServeMux()
			mux.HandleFunc("POST /save", func(w http.ResponseWriter, r *http.Request) {
				s := core.FromContext(r.Context())
				s.Put("flash", []string{"success:Saved.", "info:Check your mail."})
				http.Redirect(w, r, "/show", http.StatusSeeOther)
			})
			mux.HandleFunc("GET /show", func(w http.ResponseWriter, r *http.Request) {
				s := core.FromContext(r.Context())
				msgs, _ := core.Value[[]string](s, "flash")
				s.Delete("flash")
				for _, msg := range msgs {
					fmt.Fprintf(w, "%s;", msg)
				}
			})
			srv := httptest.NewServer(m.Handler(mux))
			defer srv.Close()
			c := jarClient(t)
			resp, err := c.Post(srv.URL+"/save", "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := body(t, resp); got != "success:Saved.;info:Check your mail.;" {
				t.Fatalf("after the redirect: %q", got)
			}
			if got := body(t, do(t, c, srv.URL+"/show")); got != "" {
				t.Fatalf("flashes shown twice: %q", got)
			}
		})
	}
}

func TestPopAndTypedValues(t *testing.T) {
	gob.Register(time.Time{}) // gob needs concrete types stored in an any registered
	for _, codec := range []core.Codec{core.Msgpack, core.JSON, core.Gob} {
		t.Run(fmt.Sprint(codec.ID()), func(t *testing.T) {
			m, _ := uxManager(t, nil, codec)
			ctx := context.Background()
			when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			s, _ := m.Load(ctx, "")
			s.Put("s", "x")
			s.Put("i", 42)
			s.Put("b", true)
			s.Put("f", 1.5)
			s.Put("t", when)
			s.Put("bytes", []byte("raw"))
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			tok := s.Token()

			s, _ = m.Load(ctx, tok)
			str, _ := core.Value[string](s, "s")
			i, _ := core.Value[int](s, "i")
			f, _ := core.Value[float64](s, "f")
			at, _ := core.Value[time.Time](s, "t")
			raw, _ := core.Value[[]byte](s, "bytes")
			if str != "x" || i != 42 || s.Get("b") != true || f != 1.5 || !at.Equal(when) || string(raw) != "raw" {
				t.Fatal("a typed Value returned the wrong value")
			}
			for _, k := range []string{"s", "i", "b", "f", "t", "bytes"} {
				if s.Pop(k) == nil {
					t.Fatalf("Pop(%q) = nil", k)
				}
			}
			if s.Pop("s") != nil || s.Pop("missing") != nil || len(s.Keys()) != 0 {
				t.Fatalf("popped keys are still there: %v", s.Keys())
			}
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			s, _ = m.Load(ctx, tok)
			if len(s.Keys()) != 0 {
				t.Fatalf("keys after the pops were saved: %v", s.Keys())
			}
			if err := s.Destroy(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStatusCodeTooLarge(t *testing.T) {
	if got := core.StatusCode(fmt.Errorf("save: %w", core.ErrTooLarge)); got != http.StatusRequestEntityTooLarge {
		t.Fatalf("StatusCode(ErrTooLarge) = %d", got)
	}
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}, MaxItemSize: 4096},
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	m, _ := core.New(core.Config{Store: st})
	rec, _ := serve(m, func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("big", strings.Repeat("x", 8192))
		fmt.Fprint(w, "handler body")
	}, nil)
	if rec.Code != http.StatusRequestEntityTooLarge || strings.Contains(rec.Body.String(), "handler body") {
		t.Fatalf("oversized session: %d %q, want a bare 413", rec.Code, rec.Body.String())
	}
}

// loggedManager returns a Manager on a sealed Store on the returned
// memcached alone, whose log goes to the returned buffer, with codec (nil: the default) and mod
// applied to the Manager's Config.
func loggedManager(t *testing.T, codec core.Codec, mod func(*core.Config)) (*core.Manager, *memcachedtest.Server, *bytes.Buffer) {
	t.Helper()
	logs := new(bytes.Buffer)
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	st, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}},
		Seal:      core.SealConfig{Keys: [][]byte{core.NewSealKey()}}, // no warning of its own
		Codec:     codec,
		Logger:    slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	cfg := core.Config{Store: st}
	if mod != nil {
		mod(&cfg)
	}
	m, err := core.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, mc, logs
}

func TestPlainHTTPSecureCookieWarnsOnceAMinute(t *testing.T) {
	m, _, logs := loggedManager(t, nil, nil) // a Secure cookie
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("k", "v")
	}))
	req := func(target string, hdr string) {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if hdr != "" {
			r.Header.Set("X-Forwarded-Proto", hdr)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	req("https://example.com/", "")
	req("http://localhost/", "https") // TLS terminated by a proxy
	if logs.Len() != 0 {
		t.Fatalf("warned for HTTPS requests: %s", logs.String())
	}
	req("http://localhost/", "")
	req("http://localhost/", "")
	if n := strings.Count(logs.String(), "plain-HTTP"); n != 1 {
		t.Fatalf("%d warnings, want exactly 1:\n%s", n, logs.String())
	}
}

// failingDecode is msgpack whose Decode fails: a codec that can no longer
// read what it wrote (a library upgrade gone wrong).
type failingDecode struct{ core.Codec }

func (failingDecode) ID() uint8 { return 64 }
func (failingDecode) Decode([]byte) (map[string]any, error) {
	return nil, errors.New("cannot decode")
}

// A stored payload its codec cannot decode is counted on every request and
// logged once a minute, not once per request.
func TestUndecodablePayloadLoggedOnceAMinute(t *testing.T) {
	m, _, logs := loggedManager(t, failingDecode{core.Msgpack}, nil)
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	s.Put("k", "v")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	const requests = 50
	for range requests {
		s, err := m.Load(ctx, s.Token())
		if err != nil || s.IsNew() {
			t.Fatalf("load: %v (new: %v)", err, s.IsNew())
		}
		if v := s.Get("k"); v != nil {
			t.Fatalf("an undecodable payload gave %v", v)
		}
	}
	if n := strings.Count(logs.String(), "cannot be decoded"); n != 1 {
		t.Errorf("%d warnings for %d requests, want 1:\n%s", n, requests, logs.String())
	}
	if got := m.Store().Stats().Corrupt; got != requests {
		t.Errorf("Stats.Corrupt = %d, want %d", got, requests)
	}
}

// nullDecode is msgpack whose Decode returns a nil map and no error: a
// codec's "null", which the Store takes for an empty map.
type nullDecode struct{ core.Codec }

func (nullDecode) ID() uint8                             { return 65 }
func (nullDecode) Decode([]byte) (map[string]any, error) { return nil, nil }

// A codec that decodes to a nil map does not crash a request that has to
// replay its changes on a re-read session.
func TestCodecNilMapIsAnEmptySession(t *testing.T) {
	m, _ := uxManager(t, nil, nullDecode{core.Msgpack})
	ctx := context.Background()
	s, _ := m.Load(ctx, "")
	s.Put("k", "v")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	a, _ := m.Load(ctx, s.Token())
	b, _ := m.Load(ctx, s.Token())
	a.Put("a", 1)
	b.Put("b", 2)
	if err := m.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(ctx, b); err != nil { // a conflict: b re-reads and replays its change
		t.Fatal(err)
	}
	if got := b.Get("b"); got != 2 {
		t.Fatalf("b's change after the replay: %v", got)
	}
}

// A value of a type gob was never told of (gob.Register) fails the save
// with ErrEncode naming the type, answered 500 and logged with that cause.
func TestUnregisteredGobTypeIsNamed(t *testing.T) {
	type unregistered struct{ N int }
	m, _, logs := loggedManager(t, core.Gob, func(c *core.Config) { c.Cookie.Insecure = true })
	s, _ := m.Load(context.Background(), "")
	s.Put("v", unregistered{1})
	err := m.Save(context.Background(), s)
	if !errors.Is(err, core.ErrEncode) || !strings.Contains(err.Error(), "unregistered") {
		t.Fatalf("Save = %v, want ErrEncode naming the type", err)
	}
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("v", unregistered{2})
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(logs.String(), "not registered") {
		t.Fatalf("status %d, log %q: want 500 and the cause logged", rec.Code, logs.String())
	}
}

// A handler run without the session middleware gets a panic that names
// the fix, not a bare nil-pointer dereference.
func TestNilSessionPanicNamesTheMiddleware(t *testing.T) {
	s := core.FromContext(context.Background())
	defer func() {
		if msg := fmt.Sprint(recover()); !strings.Contains(msg, "Manager.Handler") {
			t.Fatalf("panic %q does not name the middleware", msg)
		}
	}()
	s.Put("k", "v")
}

// The default error handling answers with a status only, and the cause
// reaches the Store's logger, once a minute per kind.
func TestRequestFailuresAreLogged(t *testing.T) {
	m, mc, logs := loggedManager(t, nil, func(c *core.Config) { c.Cookie.Insecure = true })
	h := m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		core.FromContext(r.Context()).Put("big", strings.Repeat("x", 2<<20))
	}))
	for range 5 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusRequestEntityTooLarge || strings.Contains(rec.Body.String(), "bytes") {
			t.Fatalf("status %d, body %q: want 413 with no detail", rec.Code, rec.Body.String())
		}
	}
	if n := strings.Count(logs.String(), "could not be saved"); n != 1 || !strings.Contains(logs.String(), "too large") {
		t.Fatalf("%d save warnings for 5 failed requests, want 1 naming the cause:\n%s", n, logs.String())
	}
	mc.Stop() // loads fail from now on
	for range 5 {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: "session", Value: core.NewToken()})
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d with memcached down, want 503", rec.Code)
		}
	}
	if n := strings.Count(logs.String(), "could not be loaded"); n != 1 {
		t.Fatalf("%d load warnings for 5 failed requests, want 1:\n%s", n, logs.String())
	}
}

func TestDevicesListRevokeAndLogOutOthers(t *testing.T) {
	for _, codec := range []core.Codec{core.Msgpack, core.JSON, core.Gob} {
		t.Run(fmt.Sprintf("codec%d", codec.ID()), func(t *testing.T) { testDevices(t, codec) })
	}
}

func testDevices(t *testing.T, codec core.Codec) {
	m, clock := uxManager(t, nil, codec)
	ctx := context.Background()
	login := func(subject, ua string) *core.Session {
		s, _ := m.Load(ctx, "")
		s.SetSubject(subject)
		s.SetDeviceInfo(map[string]string{"ua": ua, "ip": "192.0.2.1"})
		if err := m.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
		clock.Add(int64(time.Second))
		return s
	}
	laptop, phone, tablet := login("ada", "laptop"), login("ada", "phone"), login("ada", "tablet")

	// The laptop keeps working: memcached records the activity and a
	// change, and the rows lag behind (SyncInterval is an hour).
	clock.Add(int64(10 * time.Minute))
	s, _ := m.Load(ctx, laptop.Token())
	s.Put("page", 7)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	active := time.Unix(0, clock.Load())
	s, _ = m.Load(ctx, phone.Token())
	s.Put("page", 1)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	// The tablet goes idle past its timeout: its row, synced at login,
	// still looks alive (last sync + idle + SyncInterval), memcached knows better.
	clock.Add(int64(25 * time.Minute))

	list, err := m.Sessions(ctx, "ada")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("Sessions(ada) listed %d sessions, want laptop and phone (the tablet is idle-expired): %+v", len(list), list)
	}
	if list[0].ID != laptop.ID() || list[1].ID != phone.ID() || list[0].ID == "" {
		t.Fatalf("IDs %q %q, want laptop %q then phone %q", list[0].ID, list[1].ID, laptop.ID(), phone.ID())
	}
	for _, info := range list {
		for _, secret := range []string{laptop.Token(), phone.Token(), tablet.Token(), core.StorageKey(laptop.Token()), core.StorageKey(phone.Token())} {
			if strings.Contains(info.ID, secret) || strings.Contains(secret, info.ID) {
				t.Fatalf("ID %q reveals a token or storage key", info.ID)
			}
		}
	}
	if !list[0].LastActive.Equal(active.Truncate(time.Millisecond)) {
		t.Fatalf("laptop LastActive %v, want %v from memcached", list[0].LastActive, active)
	}
	if list[0].Info["ua"] != "laptop" || list[1].Info["ip"] != "192.0.2.1" {
		t.Fatalf("device info %v %v", list[0].Info, list[1].Info)
	}

	// Revoking by id: another subject's id does nothing.
	login("bob", "bob's laptop")
	bob, _ := m.Sessions(ctx, "bob")
	if ok, err := m.RevokeSession(ctx, "ada", bob[0].ID); ok || err != nil {
		t.Fatalf("RevokeSession(ada, bob's id) = %v, %v", ok, err)
	}
	if ok, err := m.RevokeSession(ctx, "ada", phone.ID()); !ok || err != nil {
		t.Fatalf("RevokeSession(phone) = %v, %v", ok, err)
	}
	if s, _ := m.Load(ctx, phone.Token()); !s.IsNew() {
		t.Fatal("the revoked phone session still loads")
	}

	// A new login, then "log out everywhere else" from the laptop.
	login("ada", "desktop")
	s, _ = m.Load(ctx, laptop.Token())
	if n, err := m.DestroyOtherSessions(ctx, s); n != 1 || err != nil {
		t.Fatalf("DestroyOtherSessions = %d, %v; want the desktop", n, err)
	}
	list, _ = m.Sessions(ctx, "ada")
	if len(list) != 1 || list[0].ID != laptop.ID() {
		t.Fatalf("after DestroyOtherSessions: %+v", list)
	}
	if bob, _ := m.Sessions(ctx, "bob"); len(bob) != 1 {
		t.Fatalf("bob's sessions: %+v", bob)
	}
}

func TestSessionsNeedsDurableTier(t *testing.T) {
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	m := newManager(t, mc, nil)
	if _, err := m.Sessions(context.Background(), "ada"); err == nil || errors.Is(err, core.ErrUnavailable) {
		t.Fatalf("Sessions without a durable tier: %v", err)
	}
}

// getInt and getString read a session value as the tests compare it: the zero value
// when it is absent or does not convert.
func getInt(s *core.Session, key string) int       { v, _ := core.Value[int](s, key); return v }
func getString(s *core.Session, key string) string { v, _ := core.Value[string](s, key); return v }
