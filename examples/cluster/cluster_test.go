package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/examples/echo/echoapp"
	"github.com/hybridsession/hybridsession/examples/echo5/echo5app"
	"github.com/hybridsession/hybridsession/examples/fiber/fiberapp"
	"github.com/hybridsession/hybridsession/examples/fiber3/fiber3app"
	"github.com/hybridsession/hybridsession/examples/gin/ginapp"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
	"github.com/hybridsession/hybridsession/examples/internal/setup"
	"github.com/hybridsession/hybridsession/examples/nethttp/nethttpapp"
	"github.com/hybridsession/hybridsession/memcachedtest"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

var frameworks = []string{ginapp.Name, echoapp.Name, fiberapp.Name, nethttpapp.Name, echo5app.Name, fiber3app.Name}

// startCluster starts memcached and the cluster, in this process, on an
// SQLite database in t.TempDir(); both stop when the test ends.
func startCluster(t *testing.T) (*Cluster, *memcachedtest.Server) {
	t.Helper()
	mc := memcachedtest.Start(t, memcachedtest.Options{})
	c, err := start(setup.Options{
		Name:      "cluster",
		Memcached: mc.Addr,
		DSN:       filepath.Join(t.TempDir(), "sessions.db"),
		Listen:    "127.0.0.1:0",
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), setup.ShutdownTimeout)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Errorf("closing the cluster: %v", err)
		}
	})
	if len(c.Backends) != len(frameworks) {
		t.Fatalf("backends %v, want %v", c.Backends, frameworks)
	}
	return c, mc
}

// distinct fails the test unless servedBy names each framework once.
func distinct(t *testing.T, what string, servedBy []string) {
	t.Helper()
	got := slices.Sorted(slices.Values(servedBy))
	want := slices.Sorted(slices.Values(frameworks))
	if !slices.Equal(got, want) {
		t.Errorf("%s: served by %v, want each of %v once", what, servedBy, frameworks)
	}
}

// TestJourneyAcrossFrameworks walks a real HTTP client with a cookie jar
// through the load balancer: log in on one framework, fill the cart on the
// next, read it on the others (six frameworks), and stay logged in with the
// cart across a memcached restart.
func TestJourneyAcrossFrameworks(t *testing.T) {
	c, mc := startCluster(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	client := demotest.NewClient(t, tr)

	login := demotest.Post(t, client, c.URL, "/login", url.Values{"name": {"ada"}})
	add := demotest.Post(t, client, c.URL, "/cart/add", url.Values{"item": {"apple"}})
	st, read := demotest.State(t, client, c.URL)
	page := demotest.Do(t, client, c.URL, "/", nil)
	// The echo v5 and fiber v3 backends come next in the round robin.
	st5, read5 := demotest.State(t, client, c.URL)
	st6, read6 := demotest.State(t, client, c.URL)
	distinct(t, "login, add, read, page, read, read", []string{login.ServedBy, add.ServedBy, read.ServedBy,
		page.ServedBy, read5.ServedBy, read6.ServedBy})
	want := demo.State{User: "ada", Cart: []string{"apple"}}
	for i, got := range []demo.State{st, st5, st6} {
		by := []string{read.ServedBy, read5.ServedBy, read6.ServedBy}[i]
		if got.User != want.User || !slices.Equal(got.Cart, want.Cart) {
			t.Fatalf("state read on %s: %+v, want user ada with [apple]", by, got)
		}
	}

	// Every framework sees the same session, on the page too.
	check := func(when string) {
		t.Helper()
		var servedBy []string
		for range frameworks {
			st, r := demotest.State(t, client, c.URL)
			servedBy = append(servedBy, r.ServedBy)
			if st.User != "ada" || !slices.Equal(st.Cart, want.Cart) {
				t.Errorf("%s: %s sees %+v, want user ada with [apple]", when, r.ServedBy, st)
			}
		}
		distinct(t, when, servedBy)
		servedBy = nil
		for range frameworks {
			p := demotest.Do(t, client, c.URL, "/", nil)
			servedBy = append(servedBy, p.ServedBy)
			for _, s := range []string{"Served by " + p.ServedBy, "Logged in as ada", "<li>apple</li>"} {
				if !strings.Contains(p.Body, s) {
					t.Errorf("%s: page from %s lacks %q:\n%s", when, p.ServedBy, s, p.Body)
				}
			}
		}
		distinct(t, when+", pages", servedBy)
	}
	check("before the memcached restart")

	// memcached forgets everything; the database does not.
	mc.Restart()
	check("after the memcached restart")

	demotest.Post(t, client, c.URL, "/logout", url.Values{})
	if st, r := demotest.State(t, client, c.URL); st.User != "" || len(st.Cart) != 0 {
		t.Errorf("after logout %s sees %+v", r.ServedBy, st)
	}
}

const chromium = "/usr/bin/chromium"

// TestBrowserJourney drives Debian's headless chromium through the same
// journey: fill the login form, add to the cart, and reload the page once
// on each of the six frameworks.
func TestBrowserJourney(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing: install chromium (apt-get install chromium); CI runs the browser test", chromium)
		}
		t.Skipf("%s missing: install chromium (apt-get install chromium) to run the browser test", chromium)
	}
	c, _ := startCluster(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()

	err := chromedp.Do(browser,
		chromedp.Navigate(c.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login`)),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=name]`), "ada"),
		chromedp.Click(chromedp.CSS(`#login-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#logout`)),
		chromedp.SendKeys(chromedp.CSS(`#add input[name=item]`), "apple"),
		chromedp.Click(chromedp.CSS(`#add-to-cart`)),
		chromedp.WaitVisible(chromedp.CSS(`#cart li`)),
	)
	if err != nil {
		t.Fatalf("log in and add to the cart: %v", err)
	}

	var servedBy []string
	for i := range len(frameworks) {
		err := chromedp.Do(browser, chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(`#visits`)))
		if err != nil {
			t.Fatalf("reload %d: %v", i+1, err)
		}
		text, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(`body`)))
		if err != nil {
			t.Fatalf("reload %d: reading the page: %v", i+1, err)
		}
		// Page views so far: the first, one after each form, and the reloads.
		for _, want := range []string{"Logged in as ada", "apple", fmt.Sprintf("Visits: %d", 4+i)} {
			if !strings.Contains(text, want) {
				t.Errorf("reload %d: page lacks %q:\n%s", i+1, want, text)
			}
		}
		for _, f := range frameworks {
			if strings.Contains(text, "Served by "+f+"\n") {
				servedBy = append(servedBy, f)
			}
		}
	}
	distinct(t, "the reloads", servedBy)
	t.Logf("the reloads were served by %v", servedBy)
}
