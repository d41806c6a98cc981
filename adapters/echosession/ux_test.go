package echosession_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/adapters/echosession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
	"github.com/labstack/echo/v4"
)

// A Secure cookie set on a plain-HTTP request is logged once.
func TestPlainHTTPSecureCookieWarnsOnce(t *testing.T) {
	var logs bytes.Buffer
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	store, err := core.NewStore(core.StoreConfig{Memcached: core.MemcachedConfig{Servers: []string{mc.Addr}}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	e := newEcho()
	e.Use(echosession.New(m, echosession.Config{}))
	e.GET("/", func(c echo.Context) error { echosession.Get(c).Put("k", "v"); return nil })
	srv := serve(t, e)
	newClient(t, srv).get("/")
	newClient(t, srv).get("/")
	if n := strings.Count(logs.String(), "plain-HTTP"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
}
