package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// want is the value /put stores and /get must return.
const want = "hello from a release check"

// memcachedStore returns a memcached-only Store on $HYBRIDSESSION_MEMCACHED,
// sealed with $HYBRIDSESSION_SEAL_KEYS.
func memcachedStore() *core.Store {
	keys, err := core.ParseSealKeys(os.Getenv("HYBRIDSESSION_SEAL_KEYS"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := core.NewStore(core.StoreConfig{
		Memcached: core.MemcachedConfig{Servers: []string{os.Getenv("HYBRIDSESSION_MEMCACHED")}},
		Seal:      core.SealConfig{Keys: keys},
	})
	if err != nil {
		log.Fatal(err)
	}
	return store
}

// check serves with serve on a loopback port, stores the value with GET
// /put, reads it back with GET /get carrying the cookie /put set, and exits
// the process unless it comes back.
func check(name string, serve func(net.Listener) error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := serve(ln); err != nil && err != http.ErrServerClosed {
			log.Printf("%s: serve: %v", name, err)
		}
	}()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(base + "/put")
	if err != nil {
		log.Fatalf("%s: /put: %v", name, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) == 0 {
		log.Fatalf("%s: /put answered %s with cookies %v", name, resp.Status, resp.Cookies())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/get", nil)
	for _, c := range resp.Cookies() {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	resp, err = client.Do(req)
	if err != nil {
		log.Fatalf("%s: /get: %v", name, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != want {
		log.Fatalf("%s: /get answered %s %q (%v), want %q", name, resp.Status, body, err, want)
	}
	fmt.Printf("%s: stored and read back a session value\n", name)
}
