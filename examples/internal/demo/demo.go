// Package demo is the one small application every sample serves, whatever
// its framework: a login, a shopping cart and a visit counter kept in the
// session, shown on a server-rendered page and as JSON. The samples' own
// files only route requests to it and write its answers.
package demo

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/hybridsession/hybridsession/core"
)

// The session keys of the demo. "user" and "cart" are also the samples'
// core.Config.DurableKeys (see setup.DurableKeys).
const (
	KeyUser   = "user"
	KeyCart   = "cart"
	KeyVisits = "visits"
)

// HeaderServedBy is the response header naming the framework that served
// the request, so a client behind the cluster's load balancer can tell.
const HeaderServedBy = "X-Served-By"

// Limits on what a visitor may put in the session.
const (
	MaxInput = 40 // runes in a name or an item
	MaxCart  = 20 // items in the cart
)

// ErrInput is returned for a name or item that is empty, too long or
// contains control characters, and for a full cart; answer it with 400.
var ErrInput = errors.New("demo: invalid input")

// Session is what the demo needs from a session library. Core adapts a
// *core.Session; the scs sample adapts scs.
type Session interface {
	Get(key string) any
	Put(key string, value any)
	// RenewToken moves the session to a new token (at login).
	RenewToken() error
	// SetSubject records the session's user, for "log out everywhere".
	SetSubject(user string)
	// Destroy ends the session (at logout).
	Destroy() error
}

// Core adapts a *core.Session, from any of the adapters' Get functions, to
// Session. ctx is the request's context.
func Core(ctx context.Context, s *core.Session) Session { return coreSession{ctx, s} }

type coreSession struct {
	ctx context.Context
	s   *core.Session
}

func (c coreSession) Get(key string) any        { return c.s.Get(key) }
func (c coreSession) Put(key string, value any) { c.s.Put(key, value) }
func (c coreSession) RenewToken() error         { c.s.RenewToken(); return nil }
func (c coreSession) SetSubject(user string)    { c.s.SetSubject(user) }
func (c coreSession) Destroy() error            { return c.s.Destroy(c.ctx) }
func (c coreSession) Source() string            { return c.s.Source() }

// State is what the page and /api/state show.
type State struct {
	// ServedBy names the framework that served the request.
	ServedBy string `json:"served_by"`
	// User is the logged-in user, "" when nobody is.
	User string `json:"user"`
	// Cart lists the items added, oldest first.
	Cart []string `json:"cart"`
	// Visits counts the page views of this session.
	Visits int `json:"visits"`

	// Source tells where this request's copy of the session came from:
	// "memcached", "database" (restored: memcached did not have it or
	// could not be asked) or "none" (a new session). Empty when the
	// session library cannot tell (the scs sample).
	Source string `json:"source,omitempty"`
}

// Describer is implemented by Sessions that can tell which tier they were
// read from (Core's do); Read fills State's Source from it.
type Describer interface {
	Source() string // Session.Source: "memcached", "database", or "" (not found)
}

// Read returns the session's state without changing it (GET /api/state).
func Read(s Session, servedBy string) State {
	st := State{
		ServedBy: servedBy,
		User:     str(s.Get(KeyUser)),
		Cart:     strs(s.Get(KeyCart)),
		Visits:   num(s.Get(KeyVisits)),
	}
	if d, ok := s.(Describer); ok {
		st.Source = cmp.Or(d.Source(), "none")
	}
	return st
}

// changes counts the requests that changed a session, in every sample of
// the process (see Changes).
var changes atomic.Uint64

// Changes returns how many requests changed a session so far, over every
// sample in this process: page views, logins, cart additions and logouts.
// A write-through store (Django's cached_db) writes the database on each;
// the cluster's operator panel compares that with what hybridsession sent.
func Changes() uint64 { return changes.Load() }

// Visit counts a page view and returns the state to show (GET /).
func Visit(s Session, servedBy string) State {
	st := Read(s, servedBy)
	st.Visits++
	s.Put(KeyVisits, st.Visits)
	changes.Add(1)
	return st
}

// Login logs name in (POST /login): a new token first, as at every change
// of privilege, then the user and the session's subject.
func Login(s Session, name string) error {
	name, err := clean(name)
	if err != nil {
		return err
	}
	if err := s.RenewToken(); err != nil {
		return err
	}
	s.Put(KeyUser, name)
	s.SetSubject(name)
	changes.Add(1)
	return nil
}

// AddToCart appends item to the cart (POST /cart/add).
func AddToCart(s Session, item string) error {
	item, err := clean(item)
	if err != nil {
		return err
	}
	cart := strs(s.Get(KeyCart))
	if len(cart) >= MaxCart {
		return fmt.Errorf("%w: the cart holds at most %d items", ErrInput, MaxCart)
	}
	s.Put(KeyCart, append(cart, item))
	changes.Add(1)
	return nil
}

// Logout ends the session (POST /logout): the cart and counter go with it.
func Logout(s Session) error {
	if err := s.Destroy(); err != nil {
		return err
	}
	changes.Add(1)
	return nil
}

// StatusCode maps an error of Login, AddToCart or Logout to an HTTP status:
// 400 for ErrInput, otherwise core.StatusCode (503 when the session store
// is unavailable, 500 else).
func StatusCode(err error) int {
	if errors.Is(err, ErrInput) {
		return http.StatusBadRequest
	}
	return core.StatusCode(err)
}

// ErrorText is the text to answer err with: the reason for ErrInput, the
// status text otherwise (never internal details).
func ErrorText(err error) string {
	if errors.Is(err, ErrInput) {
		return err.Error()
	}
	return http.StatusText(StatusCode(err))
}

// clean trims s and checks it is fit to show.
func clean(s string) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrInput)
	case !utf8.ValidString(s), strings.ContainsFunc(s, unicode.IsControl):
		return "", fmt.Errorf("%w: not printable text", ErrInput)
	case utf8.RuneCountInString(s) > MaxInput:
		return "", fmt.Errorf("%w: longer than %d characters", ErrInput, MaxInput)
	}
	return s, nil
}

// The codecs return what they decode: msgpack gives []any for a []string
// and int64 for an int, gob the types stored, JSON float64 for numbers.
func str(v any) string {
	s, _ := v.(string)
	return s
}

func strs(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func num(v any) int {
	switch v := v.(type) {
	case int:
		return v
	case int64:
		return int(v)
	case uint64:
		return int(v)
	case int32:
		return int(v)
	case float64:
		return int(v)
	}
	return 0
}

// ContentTypeHTML is the Content-Type of Page's output.
const ContentTypeHTML = "text/html; charset=utf-8"

// Page renders the HTML page for st.
func Page(st State) ([]byte, error) {
	var b bytes.Buffer
	if err := page.Execute(&b, st); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// The data: icon keeps browsers from asking for /favicon.ico, a request
// that would otherwise take a turn of the cluster's round robin.
//
// The operator panel (#ops) stays hidden unless /ops/stats answers: only
// the cluster demo serves it (examples/cluster).
var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>hybridsession — {{.ServedBy}}</title>
<link rel="icon" href="data:,">
<style>
body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}form{margin:.5em 0}
.cols{display:flex;gap:2em;flex-wrap:wrap}.col{flex:1;min-width:20em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{color:#555}dd{margin:0}
.src-memcached{color:#070}.src-database{color:#a50;font-weight:bold}
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}
.up{color:#070}.open,.down{color:#b00;font-weight:bold}svg{background:#f8f8f8;border:1px solid #ddd}
button.op{font-size:.85em}
</style>
</head>
<body>
<h1>hybridsession demo</h1>
<p id="served-by">Served by {{.ServedBy}}</p>
<div class="cols">
<div class="col">
{{if .User}}
<p id="user">Logged in as {{.User}}</p>
<form id="logout" method="post" action="/logout"><button type="submit">Log out</button></form>
{{else}}
<p id="user">Not logged in</p>
<form id="login" method="post" action="/login">
<label>Name <input name="name" required maxlength="40"></label>
<button type="submit" id="login-button">Log in</button>
</form>
{{end}}
<h2>Cart</h2>
{{if .Cart}}<ul id="cart">{{range .Cart}}<li>{{.}}</li>{{end}}</ul>{{else}}<p id="cart">Cart is empty</p>{{end}}
<form id="add" method="post" action="/cart/add">
<label>Item <input name="item" required maxlength="40"></label>
<button type="submit" id="add-to-cart">Add to cart</button>
</form>
<p id="visits">Visits: {{.Visits}}</p>
<p><a href="/api/state">/api/state</a></p>
{{if .Source}}
<h2>Your session</h2>
<dl id="session">
<dt>App server</dt><dd id="app-server">{{.ServedBy}}</dd>
<dt>This request read it from</dt><dd id="source" class="src-{{.Source}}">{{if eq .Source "memcached"}}memcached (a hit){{else if eq .Source "database"}}the database — restored: memcached did not have it{{else}}nowhere yet (a new session){{end}}</dd>
</dl>
{{end}}
</div>
<div class="col" id="ops" hidden>
<h2>Operator panel</h2>
<p><small>All app servers together, refreshed every 2 s. <a href="/metrics">/metrics</a></small></p>
<table id="nodes"><thead><tr><th>memcached node</th><th>state</th><th></th></tr></thead><tbody></tbody></table>
<p><button class="op" id="node-add">Add a memcached node</button>
<button class="op" id="db-cut">Cut the database for 30 s</button> <span id="db-state"></span></p>
<dl>
<dt>Cache hit ratio</dt><dd id="ops-hit-ratio">–</dd>
<dt>Database calls / min</dt><dd id="ops-db-rate">–</dd>
<dt>Write-through would cost</dt><dd id="ops-wt-rate">–</dd>
<dt>DB reads (misses, fallbacks)</dt><dd id="ops-db-reads">–</dd>
<dt>Failed memcached operations</dt><dd id="ops-cache-errors">–</dd>
<dt>Reaper last pass</dt><dd id="ops-reaper">–</dd>
</dl>
<p><small>Last minutes: hit ratio (green, 0–100 %); database calls/min (orange) against write-through (grey)</small></p>
<svg id="chart" width="360" height="120" viewBox="0 0 360 120"></svg>
</div>
</div>
<script>` + opsScript + `</script>
</body>
</html>
`))
