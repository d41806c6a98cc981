package core

import (
	"strings"
	"testing"
)

func TestTokens(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := NewToken()
		if !ValidToken(tok) {
			t.Fatalf("NewToken made an invalid token %q", tok)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
	for _, bad := range []string{"", strings.Repeat("a", 42), strings.Repeat("a", 44), strings.Repeat("a", 42) + "=",
		strings.Repeat("a", 42) + "+", strings.Repeat("a", 42) + "/", strings.Repeat("a", 42) + " "} {
		if ValidToken(bad) {
			t.Errorf("ValidToken(%q) = true", bad)
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
		if ValidToken(s) && (len(s) != TokenLength || strings.ContainsAny(s, "+/= \x00")) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestCookieValue(t *testing.T) {
	cases := []struct {
		lines []string
		want  string
	}{
		{nil, ""},
		{[]string{"a=1; session=tok; b=2"}, "tok"},
		{[]string{"sessionx=no; session=yes"}, "yes"},
		{[]string{"a=1", "session=\"quoted\""}, "quoted"},
		{[]string{"session=first; session=second"}, "first"},
		{[]string{"session"}, ""},
		{[]string{";;; session=v ;"}, "v"},
	}
	for _, c := range cases {
		if got := CookieValue(c.lines, "session"); got != c.want {
			t.Errorf("CookieValue(%q) = %q, want %q", c.lines, got, c.want)
		}
	}
}
