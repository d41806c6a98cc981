package bench

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/gin-contrib/sessions"
	gcgorm "github.com/gin-contrib/sessions/gorm"
	gcmemcached "github.com/gin-contrib/sessions/memcached"
	"github.com/gin-gonic/gin"
	"github.com/gofiber/fiber/v2"
	fibersess "github.com/gofiber/fiber/v2/middleware/session"
)

// The peers, as a user would set them up, with their defaults; every
// gomemcache client gets the same timeout and idle-connection pool as ours
// (newMemcacheClient), so that no peer pays for dialling under parallel load.
//
// Not measured, because the module proxy refuses them (403 "module version
// not available"): github.com/alexedwards/scs/postgresstore,
// github.com/alexedwards/scs/gormstore and github.com/gofiber/storage/memcache.
// fiber's session middleware is paired instead with gomemcacheStorage below,
// a minimal fiber.Storage written here — labelled as such in the tables.

func init() {
	builders["gincontrib-memcached"] = ginContribMemcached
	builders["gincontrib-gorm-pg"] = ginContribGorm
	builders["fiber-session-gomemcache"] = fiberSessionGomemcache
}

var cookieSecret = []byte("bench-hash-key-0123456789abcdef0123456789abcdef")

// ginContribApp serves the benchmark routes with gin-contrib/sessions.
func ginContribApp(store sessions.Store) *gin.Engine {
	r := gin.New()
	r.Use(sessions.Sessions("session", store))
	r.GET("/new", func(c *gin.Context) {
		s := sessions.Default(c)
		for _, v := range newValues {
			s.Set(v.key, v.value)
		}
		if err := s.Save(); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/read", func(c *gin.Context) {
		_, _ = sessions.Default(c).Get("user").(string)
		c.String(http.StatusOK, "ok")
	})
	r.GET("/modify", func(c *gin.Context) {
		s := sessions.Default(c)
		n, _ := s.Get("n").(int)
		s.Set("n", n+1)
		if err := s.Save(); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/add/:k", func(c *gin.Context) {
		s := sessions.Default(c)
		s.Set(c.Param("k"), 1)
		if err := s.Save(); err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, "ok")
	})
	r.GET("/count", func(c *gin.Context) {
		s := sessions.Default(c)
		c.String(http.StatusOK, countKeys(func(k string) bool { return s.Get(k) != nil }))
	})
	return r
}

// ginContribMemcached is gin-contrib/sessions with its memcached store
// (gorilla-sessions-memcache on gomemcache).
func ginContribMemcached(e *env, _ testing.TB) *target {
	trips := new(atomic.Int64)
	store := gcmemcached.NewStore(newMemcacheClient(e.mc.Addr, trips), "gc:", cookieSecret)
	r := ginContribApp(store)
	return &target{
		name:       "gincontrib-memcached",
		trips:      trips,
		cookieName: "session",
		newClient:  func() client { return newHTTPClient(r, "session") },
	}
}

// ginContribGorm is gin-contrib/sessions with its gorm store
// (wader/gormstore) on PostgreSQL.
func ginContribGorm(_ *env, tb testing.TB) *target {
	counter := new(sqlCounter)
	db := openGormPostgres(tb, counter) // skips without PostgreSQL
	store := gcgorm.NewStore(db, false, cookieSecret)
	r := ginContribApp(store)
	return &target{
		name:       "gincontrib-gorm-pg",
		sql:        counter,
		cookieName: "session",
		newClient:  func() client { return newHTTPClient(r, "session") },
	}
}

// gomemcacheStorage is a minimal fiber.Storage on gomemcache, written for
// this benchmark because github.com/gofiber/storage/memcache is not
// available from the module proxy. It does what such a driver must: one
// get, set or delete per call.
type gomemcacheStorage struct{ c *memcache.Client }

func (s gomemcacheStorage) Get(key string) ([]byte, error) {
	if key == "" {
		return nil, nil
	}
	it, err := s.c.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return it.Value, nil
}

func (s gomemcacheStorage) Set(key string, val []byte, exp time.Duration) error {
	if key == "" || len(val) == 0 {
		return nil
	}
	return s.c.Set(&memcache.Item{Key: key, Value: val, Expiration: int32(exp / time.Second)})
}

func (s gomemcacheStorage) Delete(key string) error {
	if key == "" {
		return nil
	}
	err := s.c.Delete(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

func (s gomemcacheStorage) Reset() error { return s.c.DeleteAll() }
func (s gomemcacheStorage) Close() error { return s.c.Close() }

// fiberSessionGomemcache is fiber v2's session middleware on
// gomemcacheStorage.
func fiberSessionGomemcache(e *env, _ testing.TB) *target {
	trips := new(atomic.Int64)
	store := fibersess.New(fibersess.Config{
		Storage:   gomemcacheStorage{newMemcacheClient(e.mc.Addr, trips)},
		KeyLookup: "cookie:session",
	})
	app := newFiberApp()
	get := func(c *fiber.Ctx) (*fibersess.Session, error) { return store.Get(c) }
	app.Get("/new", func(c *fiber.Ctx) error {
		s, err := get(c)
		if err != nil {
			return err
		}
		for _, v := range newValues {
			s.Set(v.key, v.value)
		}
		if err := s.Save(); err != nil {
			return err
		}
		return c.SendString("ok")
	})
	app.Get("/read", func(c *fiber.Ctx) error {
		s, err := get(c)
		if err != nil {
			return err
		}
		_, _ = s.Get("user").(string)
		return c.SendString("ok")
	})
	app.Get("/modify", func(c *fiber.Ctx) error {
		s, err := get(c)
		if err != nil {
			return err
		}
		n, _ := s.Get("n").(int)
		s.Set("n", n+1)
		if err := s.Save(); err != nil {
			return err
		}
		return c.SendString("ok")
	})
	app.Get("/add/:k", func(c *fiber.Ctx) error {
		s, err := get(c)
		if err != nil {
			return err
		}
		s.Set(c.Params("k"), 1)
		if err := s.Save(); err != nil {
			return err
		}
		return c.SendString("ok")
	})
	app.Get("/count", func(c *fiber.Ctx) error {
		s, err := get(c)
		if err != nil {
			return err
		}
		return c.SendString(countKeys(func(k string) bool { return s.Get(k) != nil }))
	})
	h := app.Handler()
	return &target{
		name:       "fiber-session-gomemcache",
		trips:      trips,
		cookieName: "session",
		newClient:  func() client { return newFiberClient(h, "session") },
	}
}
