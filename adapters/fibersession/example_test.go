package fibersession_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
)

func Example() {
	// A real application configures memcached servers and a database tier
	// (gormstore); this example keeps sessions in memory so that it runs
	// anywhere.
	store, err := core.NewStore(core.StoreConfig{Durable: newMemoryDurable()})
	if err != nil {
		panic(err)
	}
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		panic(err)
	}

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/", func(c *fiber.Ctx) error {
		s := fibersession.Get(c)
		n := s.GetInt("visits") + 1
		s.Put("visits", n)
		return c.SendString(fmt.Sprintf("visit %d", n))
	})

	var cookie *http.Cookie
	for range 3 {
		req := httptest.NewRequest(http.MethodGet, "https://example.com/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := app.Test(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if cs := resp.Cookies(); len(cs) > 0 {
			cookie = cs[0]
		}
		fmt.Println(resp.StatusCode, string(body))
	}
	fmt.Println(cookie.Name, cookie.HttpOnly, cookie.Secure, cookie.SameSite == http.SameSiteLaxMode)
	// Output:
	// 200 visit 1
	// 200 visit 2
	// 200 visit 3
	// session true true true
}

// memoryDurable is a minimal in-memory core.Durable for the example: one
// process, no reaping.
type memoryDurable struct {
	mu   sync.Mutex
	rows map[string]core.Record
}

func newMemoryDurable() *memoryDurable { return &memoryDurable{rows: map[string]core.Record{}} }

func (d *memoryDurable) Load(_ context.Context, key string, now time.Time) (core.Record, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.rows[key]
	if !ok || !r.ExpiresAt.After(now) || !r.Deadline.After(now) {
		return core.Record{}, false, nil
	}
	r.Payload = append([]byte(nil), r.Payload...)
	return r, true, nil
}

func (d *memoryDurable) Save(_ context.Context, rec core.Record) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.rows[rec.Key]; ok && (old.Version > rec.Version || old.Version == rec.Version && old.ExpiresAt.After(rec.ExpiresAt)) {
		return false, nil
	}
	rec.Payload = append([]byte(nil), rec.Payload...)
	d.rows[rec.Key] = rec
	return true, nil
}

func (d *memoryDurable) Delete(_ context.Context, keys ...string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range keys {
		delete(d.rows, k)
	}
	return nil
}

func (d *memoryDurable) DeleteSubject(context.Context, string) ([]string, error) { return nil, nil }

func (d *memoryDurable) List(context.Context, time.Time, string, int) ([]core.Record, error) {
	return nil, nil
}

func (d *memoryDurable) Reap(context.Context, time.Time, int, core.ReapJudge) (int, error) {
	return 0, nil
}
