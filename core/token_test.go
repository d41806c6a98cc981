package core

import (
	"net/http"
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := NewToken()
		if !validToken(tok) {
			t.Fatalf("NewToken made an invalid token %q", tok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", strings.Repeat("a", 42), strings.Repeat("a", 44), strings.Repeat("a", 42) + "=",
		strings.Repeat("a", 42) + "+", strings.Repeat("a", 42) + "/", strings.Repeat("a", 42) + " "} {
		if validToken(bad) {
			t.Errorf("validToken(%q) = true", bad)
		}
	}
}

func TestStorageKeyHidesToken(t *testing.T) {
	tok := NewToken()
	k := StorageKey(tok)
	if len(k) != 43 || strings.Contains(k, tok) || k != StorageKey(tok) || k == StorageKey(NewToken()) {
		t.Fatalf("StorageKey(%q) = %q", tok, k)
	}
}

func FuzzValidToken(f *testing.F) {
	f.Add(NewToken())
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		if validToken(s) && (len(s) != tokenLength || strings.ContainsAny(s, "+/= \x00")) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestCookieValue(t *testing.T) {
	cases := []struct {
		line string
		want string
	}{
		{"", ""},
		{"a=1; session=tok; b=2", "tok"},
		{"sessionx=no; session=yes", "yes"},
		{"a=1; session=\"quoted\"", "quoted"},
		{"session=first; session=second", "first"},
		{"session", ""},
		{";;; session=v ;", "v"},
	}
	for _, c := range cases {
		if got := cookieValue(c.line, "session"); got != c.want {
			t.Errorf("cookieValue(%q) = %q, want %q", c.line, got, c.want)
		}
	}
}

// BenchmarkCookieValue compares the in-place scan with net/http's parsing
// on a browser-like Cookie header (analytics cookies before ours).
func BenchmarkCookieValue(b *testing.B) {
	tok := NewToken()
	line := "_ga=GA1.1.123456789.1700000000; theme=dark; _gid=GA1.1.987654321.1700000000; session=" + tok + "; lang=en"
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", line)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if cookieValue(r.Header.Get("Cookie"), "session") != tok {
				b.Fatal("wrong value")
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if c, err := r.Cookie("session"); err != nil || c.Value != tok {
				b.Fatal("wrong value")
			}
		}
	})
}
