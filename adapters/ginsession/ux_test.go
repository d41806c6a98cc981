package ginsession_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/adapters/ginsession"
	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/memcachedtest"
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
	r := gin.New()
	r.Use(ginsession.New(m, ginsession.Config{}))
	r.GET("/", func(c *gin.Context) { ginsession.Get(c).Put("k", "v") })
	srv := serve(t, r)
	newClient(t, srv).get("/")
	newClient(t, srv).get("/")
	if n := strings.Count(logs.String(), "plain-HTTP"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.String())
	}
}
