package fiber3session_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/gofiber/fiber/v3"
	"github.com/gofiber/fiber/v3/middleware/csrf"
	"github.com/gofiber/fiber/v3/middleware/limiter"
	"github.com/gofiber/fiber/v3/middleware/session"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
)

func TestStorage(t *testing.T) {
	store, _ := newStore(t)
	st := fiber3session.NewStorage(store, fiber3session.StorageConfig{})
	ctx := context.Background()
	if err := st.SetWithContext(ctx, "a", []byte("one"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if v, err := st.GetWithContext(ctx, "a"); err != nil || string(v) != "one" {
		t.Fatalf("GetWithContext = %q, %v", v, err)
	}
	if err := st.Set("a", []byte("two"), 0); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get("a"); err != nil || string(v) != "two" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	// fiber's contract: an empty key or value is ignored without an error.
	if err := st.Set("a", nil, time.Minute); err != nil {
		t.Errorf("Set of an empty value: %v", err)
	}
	if err := st.Set("", []byte("x"), time.Minute); err != nil {
		t.Errorf("Set with an empty key: %v", err)
	}
	if v, _ := st.Get("a"); string(v) != "two" {
		t.Errorf("an empty Set changed the value: %q", v)
	}
	if v, err := st.Get(""); v != nil || err != nil {
		t.Errorf("Get(\"\") = %q, %v", v, err)
	}
	if err := st.DeleteWithContext(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get("a"); v != nil || err != nil {
		t.Errorf("after Delete: %q, %v", v, err)
	}
	if err := st.Delete("missing"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if err := st.ResetWithContext(ctx); !errors.Is(err, fiber3session.ErrResetNotSupported) {
		t.Errorf("Reset: %v", err)
	}
	// A context that is already done fails the call instead of waiting.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := st.SetWithContext(done, "b", []byte("x"), time.Minute); err == nil {
		if v, _ := st.Get("b"); v == nil {
			t.Errorf("SetWithContext with a cancelled context returned nil but wrote nothing")
		}
	}
	// Manager sessions and fiber data do not mix.
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.Load(ctx, "")
	s.Put("k", 1)
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	if v, err := st.Get(s.Token()); v != nil || err != nil {
		t.Errorf("Storage read a Manager session: %q, %v", v, err)
	}
	if err := st.Set(s.Token(), []byte("x"), time.Minute); err == nil {
		t.Errorf("Storage overwrote a Manager session")
	}
}

// twoApps returns the URLs of two fiber apps built by build on one Storage,
// as two app servers behind a load balancer.
func twoApps(t *testing.T, build func(st fiber.Storage) *fiber.App) [2]string {
	store, _ := newStore(t)
	var urls [2]string
	for i := range urls {
		urls[i] = listen(t, build(fiber3session.NewStorage(store, fiber3session.StorageConfig{})))
	}
	return urls
}

type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *browser) do(method, url string, header ...string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// The cookie jar shares cookies between the two apps (both on 127.0.0.1),
// like a browser talking to one site behind a load balancer.

func TestFiberSessionOnStorage(t *testing.T) {
	urls := twoApps(t, func(st fiber.Storage) *fiber.App {
		app := fiber.New()
		app.Use(session.New(session.Config{Storage: st}))
		app.Get("/set", func(c fiber.Ctx) error {
			session.FromContext(c).Set("user", "ada")
			return c.SendString("ok")
		})
		app.Get("/get", func(c fiber.Ctx) error {
			v, _ := session.FromContext(c).Get("user").(string)
			return c.SendString(v)
		})
		return app
	})
	b := newBrowser(t)
	if code, _ := b.do("GET", urls[0]+"/set"); code != 200 {
		t.Fatalf("set: %d", code)
	}
	if _, body := b.do("GET", urls[1]+"/get"); body != "ada" {
		t.Errorf("the other app server read %q, want ada", body)
	}
}

func TestFiberCSRFOnStorage(t *testing.T) {
	urls := twoApps(t, func(st fiber.Storage) *fiber.App {
		app := fiber.New()
		app.Use(csrf.New(csrf.Config{Storage: st}))
		app.Get("/form", func(c fiber.Ctx) error { return c.SendString(csrf.TokenFromContext(c)) })
		app.Post("/submit", func(c fiber.Ctx) error { return c.SendString("accepted") })
		return app
	})
	b := newBrowser(t)
	_, token := b.do("GET", urls[0]+"/form")
	if token == "" {
		t.Fatal("no CSRF token")
	}
	if code, _ := b.do("POST", urls[1]+"/submit"); code != http.StatusForbidden {
		t.Errorf("POST without the token: %d, want 403", code)
	}
	if code, body := b.do("POST", urls[1]+"/submit", "X-Csrf-Token", token); code != 200 || body != "accepted" {
		t.Errorf("POST with the token on the other app server: %d %q", code, body)
	}
}

func TestFiberLimiterOnStorage(t *testing.T) {
	urls := twoApps(t, func(st fiber.Storage) *fiber.App {
		app := fiber.New()
		app.Use(limiter.New(limiter.Config{Max: 3, Expiration: time.Minute, Storage: st}))
		app.Get("/", func(c fiber.Ctx) error { return c.SendString("ok") })
		return app
	})
	b := newBrowser(t)
	for i := range 3 {
		if code, _ := b.do("GET", urls[i%2]+"/"); code != 200 {
			t.Fatalf("request %d: %d", i+1, code)
		}
	}
	// The limit is shared: the fourth request is refused whichever app
	// server it reaches.
	for _, u := range urls {
		if code, _ := b.do("GET", u+"/"); code != http.StatusTooManyRequests {
			t.Errorf("over the limit at %s: %d, want 429", u, code)
		}
	}
}
