package fibersession_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/session"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
)

// clock is a virtual clock for the Store: expiry is judged from the sealed
// entry with the Store's clock, so advancing it expires entries without
// waiting (memcached's own expiry, in whole seconds, comes later).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestStorage(t *testing.T) {
	clk := &clock{t: time.Now()}
	store, _ := newStoreClock(t, clk.Now)
	st := fibersession.NewStorage(store, fibersession.StorageConfig{})
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Get of a missing key is nil, nil", func(t *testing.T) {
			v, err := st.Get("missing")
			if v != nil || err != nil {
				t.Errorf("Get = %q, %v", v, err)
			}
		}},
		{"Set then Get", func(t *testing.T) {
			mustSet(t, st, "a", []byte("one"), time.Minute)
			expect(t, st, "a", []byte("one"))
		}},
		{"Set overwrites", func(t *testing.T) {
			mustSet(t, st, "b", []byte("one"), time.Minute)
			mustSet(t, st, "b", []byte("two"), time.Minute)
			expect(t, st, "b", []byte("two"))
		}},
		{"Delete", func(t *testing.T) {
			mustSet(t, st, "c", []byte("one"), time.Minute)
			if err := st.Delete("c"); err != nil {
				t.Fatal(err)
			}
			expect(t, st, "c", nil)
			if err := st.Delete("c"); err != nil {
				t.Errorf("Delete of a missing key: %v", err)
			}
		}},
		{"empty value is ignored", func(t *testing.T) {
			mustSet(t, st, "d", nil, time.Minute)
			expect(t, st, "d", nil)
			mustSet(t, st, "d", []byte("kept"), time.Minute)
			mustSet(t, st, "d", []byte{}, time.Minute)
			expect(t, st, "d", []byte("kept"))
		}},
		{"empty key is ignored", func(t *testing.T) {
			if err := st.Set("", []byte("x"), time.Minute); err != nil {
				t.Errorf("Set with an empty key: %v, want nil (ignored)", err)
			}
			if v, err := st.Get(""); v != nil || err != nil {
				t.Errorf("Get(\"\") = %q, %v", v, err)
			}
		}},
		{"expiry", func(t *testing.T) {
			mustSet(t, st, "e", []byte("short"), 300*time.Millisecond)
			expect(t, st, "e", []byte("short"))
			clk.Advance(400 * time.Millisecond)
			expect(t, st, "e", nil)
		}},
		{"Set slides the expiry", func(t *testing.T) {
			mustSet(t, st, "f", []byte("v1"), 2*time.Second)
			clk.Advance(1200 * time.Millisecond)
			mustSet(t, st, "f", []byte("v2"), 2*time.Second)
			clk.Advance(1200 * time.Millisecond)
			expect(t, st, "f", []byte("v2")) // 2.4s after the first Set
			clk.Advance(time.Second)
			expect(t, st, "f", nil)
		}},
		{"entry shape", func(t *testing.T) {
			mustSet(t, st, "g", []byte("x"), 0)
			it, err := core.NewKV(store, fibersession.RawCodecID).Read(context.Background(), "g")
			if err != nil || it == nil || string(it.Value) != "x" {
				t.Fatalf("entry of codec RawCodecID = %+v, %v; want payload x", it, err)
			}
			// exp 0: the entry lives 30 days (NoExpiration's default).
			clk.Advance(30*24*time.Hour - time.Second)
			expect(t, st, "g", []byte("x"))
			clk.Advance(time.Minute)
			expect(t, st, "g", nil)
		}},
		{"Reset is refused", func(t *testing.T) {
			mustSet(t, st, "h", []byte("kept"), time.Minute)
			if err := st.Reset(); !errors.Is(err, fibersession.ErrResetNotSupported) {
				t.Errorf("Reset = %v", err)
			}
			expect(t, st, "h", []byte("kept"))
		}},
		{"Close leaves the store open", func(t *testing.T) {
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			mustSet(t, st, "i", []byte("after close"), time.Minute)
			expect(t, st, "i", []byte("after close"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func mustSet(t *testing.T, st *fibersession.Storage, key string, val []byte, exp time.Duration) {
	t.Helper()
	if err := st.Set(key, val, exp); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func expect(t *testing.T, st *fibersession.Storage, key string, want []byte) {
	t.Helper()
	got, err := st.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if (got == nil) != (want == nil) || !bytes.Equal(got, want) {
		t.Errorf("Get(%q) = %q (nil %t), want %q (nil %t)", key, got, got == nil, want, want == nil)
	}
}

// TestStorageAndManager checks that the two kinds of entries keep apart
// when keys meet: neither reads nor overwrites the other's.
func TestStorageAndManager(t *testing.T) {
	store, _ := newStore(t)
	st := fibersession.NewStorage(store, fibersession.StorageConfig{})
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	token := core.NewToken()
	mustSet(t, st, token, []byte("fiber data"), time.Minute)
	s, err := m.Load(ctx, token)
	if err != nil || !s.IsNew() {
		t.Errorf("Manager loaded fiber data as a session: new=%t err=%v", s != nil && s.IsNew(), err)
	}

	s, _ = m.Load(ctx, "")
	s.Put("k", "v")
	if err := m.Save(ctx, s); err != nil {
		t.Fatal(err)
	}
	expect(t, st, s.Token(), nil)
	if err := st.Set(s.Token(), []byte("x"), time.Minute); err == nil {
		t.Error("Set overwrote a Manager session")
	}
	if s2, _ := m.Load(ctx, s.Token()); getString(s2, "k") != "v" {
		t.Error("the Manager session was damaged")
	}
}

// TestStorageConcurrentSet checks that racing Sets of one key all succeed
// and that one of them wins whole.
func TestStorageConcurrentSet(t *testing.T) {
	store, _ := newStore(t)
	st := fibersession.NewStorage(store, fibersession.StorageConfig{})
	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				if err := st.Set("shared", []byte(fmt.Sprintf("writer %d round %d", i, j)), time.Minute); err != nil {
					t.Errorf("writer %d: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	v, err := st.Get("shared")
	if err != nil || !bytes.HasSuffix(v, []byte("round 4")) {
		t.Errorf("final value %q, %v: want some writer's last round", v, err)
	}
}

func TestStorageUnavailable(t *testing.T) {
	store, mc := newStore(t)
	st := fibersession.NewStorage(store, fibersession.StorageConfig{})
	mustSet(t, st, "a", []byte("x"), time.Minute)
	mc.Stop()
	if _, err := st.Get("a"); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Get = %v, want core.ErrUnavailable", err)
	}
	if err := st.Set("a", []byte("y"), time.Minute); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Set = %v, want core.ErrUnavailable", err)
	}
	if err := st.Delete("a"); !errors.Is(err, core.ErrUnavailable) {
		t.Errorf("Delete = %v, want core.ErrUnavailable", err)
	}
}

// TestFiberSessionMiddleware drives fiber's own middleware/session on the
// Storage through a real server and a cookie jar.
func TestFiberSessionMiddleware(t *testing.T) {
	store, _ := newStore(t)
	sessions := session.New(session.Config{Storage: fibersession.NewStorage(store, fibersession.StorageConfig{})})
	app := newApp()
	app.Get("/incr", func(c *fiber.Ctx) error {
		sess, err := sessions.Get(c)
		if err != nil {
			return err
		}
		n, _ := sess.Get("n").(int)
		sess.Set("n", n+1)
		if err := sess.Save(); err != nil {
			return err
		}
		return c.SendString(fmt.Sprintf("n=%d", n+1))
	})
	app.Get("/regenerate", func(c *fiber.Ctx) error {
		sess, err := sessions.Get(c)
		if err != nil {
			return err
		}
		if err := sess.Regenerate(); err != nil {
			return err
		}
		return sess.Save()
	})
	app.Get("/destroy", func(c *fiber.Ctx) error {
		sess, err := sessions.Get(c)
		if err != nil {
			return err
		}
		return sess.Destroy()
	})
	base := serve(t, app)
	c := newClient(t, base)
	for _, want := range []string{"n=1", "n=2", "n=3"} {
		if resp, body := c.get("/incr"); resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, body, want)
		}
	}

	old := c.cookie("session_id")
	c.get("/regenerate")
	if id := c.cookie("session_id"); id == "" || id == old {
		t.Fatalf("Regenerate: cookie %q, old %q", id, old)
	}
	if _, body := c.get("/incr"); body != "n=4" {
		t.Errorf("after Regenerate: %q, want n=4", body)
	}
	if _, body := do(t, c.hc, base+"/incr", "session_id", old); body != "n=1" {
		t.Errorf("the old id still loads: %q", body)
	}

	c.get("/destroy")
	if _, body := c.get("/incr"); body != "n=1" {
		t.Errorf("after Destroy: %q, want a new session", body)
	}
}
