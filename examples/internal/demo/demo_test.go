package demo_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/examples/internal/demo"
)

// mapSession is a demo.Session in a map, holding values as msgpack
// returns them ([]any, int64) to exercise the conversions.
type mapSession struct {
	values        map[string]any
	renewed, gone bool
	subject       string
}

func (s *mapSession) Get(k string) any { return s.values[k] }
func (s *mapSession) Put(k string, v any) {
	switch v := v.(type) {
	case int:
		s.values[k] = int64(v)
	case []string:
		a := make([]any, len(v))
		for i, x := range v {
			a[i] = x
		}
		s.values[k] = a
	default:
		s.values[k] = v
	}
}
func (s *mapSession) RenewToken() error   { s.renewed = true; return nil }
func (s *mapSession) SetSubject(u string) { s.subject = u }
func (s *mapSession) Destroy() error      { s.gone = true; clear(s.values); return nil }

func TestInput(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "ada", "ada", true},
		{"trimmed", "  ada lovelace \t", "ada lovelace", true},
		{"unicode", "Zoë 🍐", "Zoë 🍐", true},
		{"empty", "", "", false},
		{"blank", " \t ", "", false},
		{"control", "ada\nbob", "", false},
		{"invalid utf-8", "ada\xff", "", false},
		{"too long", strings.Repeat("é", demo.MaxInput+1), "", false},
		{"longest", strings.Repeat("é", demo.MaxInput), strings.Repeat("é", demo.MaxInput), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &mapSession{values: map[string]any{}}
			err := demo.Login(s, tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("Login(%q) = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if !tc.ok {
				if !errors.Is(err, demo.ErrInput) || demo.StatusCode(err) != http.StatusBadRequest {
					t.Errorf("Login(%q): %v (status %d), want ErrInput and 400", tc.in, err, demo.StatusCode(err))
				}
				if s.renewed || len(s.values) != 0 {
					t.Errorf("Login(%q) failed but changed the session", tc.in)
				}
				return
			}
			if got := demo.Read(s, "x").User; got != tc.want || s.subject != tc.want || !s.renewed {
				t.Errorf("Login(%q): user %q subject %q renewed %v, want %q", tc.in, got, s.subject, s.renewed, tc.want)
			}
		})
	}
}

func TestCartAndVisits(t *testing.T) {
	s := &mapSession{values: map[string]any{}}
	for i := range demo.MaxCart {
		if err := demo.AddToCart(s, string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := demo.AddToCart(s, "one more"); !errors.Is(err, demo.ErrInput) {
		t.Errorf("adding to a full cart: %v, want ErrInput", err)
	}
	demo.Visit(s, "x")
	st := demo.Visit(s, "x")
	if len(st.Cart) != demo.MaxCart || st.Cart[0] != "a" || st.Visits != 2 {
		t.Errorf("state %+v, want %d items from a and 2 visits", st, demo.MaxCart)
	}
	if err := demo.Logout(s); err != nil || !s.gone {
		t.Errorf("Logout: %v, destroyed %v", err, s.gone)
	}
}

func TestStatusCode(t *testing.T) {
	if got := demo.StatusCode(core.ErrUnavailable); got != http.StatusServiceUnavailable {
		t.Errorf("StatusCode(ErrUnavailable) = %d", got)
	}
	if got := demo.ErrorText(errors.New("secret detail")); got != "Internal Server Error" {
		t.Errorf("ErrorText reveals %q", got)
	}
}

func TestPageEscapes(t *testing.T) {
	b, err := demo.Page(demo.State{ServedBy: "gin", User: "<script>", Cart: []string{"a&b"}, Visits: 3})
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{"Served by gin", "Logged in as &lt;script&gt;", "<li>a&amp;b</li>", "Visits: 3"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

// TestChanges: every request that changes the session counts once (what a
// write-through store writes); reads and refused inputs do not.
func TestChanges(t *testing.T) {
	s := &mapSession{values: map[string]any{}}
	before := demo.Changes()
	if err := demo.Login(s, "ada"); err != nil {
		t.Fatal(err)
	}
	if err := demo.AddToCart(s, "apple"); err != nil {
		t.Fatal(err)
	}
	if err := demo.AddToCart(s, ""); err == nil {
		t.Fatal("adding an empty item: no error")
	}
	demo.Read(s, "x")
	demo.Visit(s, "x")
	if err := demo.Logout(s); err != nil {
		t.Fatal(err)
	}
	if got := demo.Changes() - before; got != 4 {
		t.Errorf("Changes grew by %d, want 4: login, add, visit, logout", got)
	}
}

// described is a mapSession that tells where it was read from.
type described struct {
	mapSession
	src string
}

func (d *described) Source() string { return d.src }

func TestReadSource(t *testing.T) {
	if st := demo.Read(&mapSession{values: map[string]any{}}, "x"); st.Source != "" {
		t.Errorf("Source of a session that cannot tell = %q, want empty", st.Source)
	}
	for src, want := range map[string]string{"memcached": "memcached", "database": "database", "": "none"} {
		if st := demo.Read(&described{mapSession{values: map[string]any{}}, src}, "x"); st.Source != want {
			t.Errorf("Source = %q, want %q", st.Source, want)
		}
	}
	b, err := demo.Page(demo.State{ServedBy: "gin", Source: "database"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `<dd id="source" class="src-database">the database — restored: memcached did not have it</dd>`) {
		t.Errorf("page of a restored session lacks its source:\n%s", b)
	}
}
