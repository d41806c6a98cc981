package bench

import (
	"net/http"

	"github.com/valyala/fasthttp"
)

// client performs requests against one in-process application, from one
// goroutine. It reuses its request and response objects, so that what a
// benchmark allocates is the framework's and the session library's doing.
type client interface {
	// do sends GET path with the session cookie (none when cookie is "").
	// With wantCookie it returns the value of the session cookie the
	// response set ("" when none, or when it was deleted). The body is
	// valid until the next call.
	do(path, cookie string, wantCookie bool) (setCookie string, body []byte, status int)
}

// ---------------------------------------------------------------------------
// net/http applications (gin, echo, scs, gin-contrib/sessions)

type reqKey struct{ path, cookie string }

// httpClient keeps one template request per path and cookie; each request
// served is a copy of it (one allocation, counted for every net/http
// library alike).
type httpClient struct {
	h          http.Handler
	cookieName string
	reqs       map[reqKey]*http.Request
	w          respWriter
}

func newHTTPClient(h http.Handler, cookieName string) *httpClient {
	return &httpClient{h: h, cookieName: cookieName, reqs: map[reqKey]*http.Request{}, w: respWriter{h: http.Header{}}}
}

func (c *httpClient) do(path, cookie string, wantCookie bool) (string, []byte, int) {
	k := reqKey{path, cookie}
	req := c.reqs[k]
	if req == nil {
		if len(c.reqs) > 64 {
			clear(c.reqs)
		}
		var err error
		req, err = http.NewRequestWithContext(requestContext, http.MethodGet, "http://bench.local"+path, nil)
		if err != nil {
			panic(err)
		}
		req.RequestURI = path
		req.RemoteAddr = "127.0.0.1:40000"
		if cookie != "" {
			req.Header.Set("Cookie", c.cookieName+"="+cookie)
		}
		c.reqs[k] = req
	}
	w := &c.w
	clear(w.h)
	w.code, w.body = 0, w.body[:0]
	// A fresh shallow copy per request, as a server makes a fresh request:
	// some libraries keep state in the request (gorilla/sessions replaces
	// *r with a copy carrying its registry).
	r := new(http.Request)
	*r = *req
	c.h.ServeHTTP(w, r)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if !wantCookie {
		return "", w.body, w.code
	}
	value := ""
	for _, line := range w.h.Values("Set-Cookie") {
		ck, err := http.ParseSetCookie(line)
		if err == nil && ck.Name == c.cookieName {
			value = ck.Value
			if ck.MaxAge < 0 {
				value = ""
			}
		}
	}
	return value, w.body, w.code
}

// respWriter is a reusable http.ResponseWriter that keeps the body.
type respWriter struct {
	h    http.Header
	code int
	body []byte
}

func (w *respWriter) Header() http.Header { return w.h }

func (w *respWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *respWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.body = append(w.body, b...)
	return len(b), nil
}

// ---------------------------------------------------------------------------
// fiber applications: fasthttp request contexts, reused as fasthttp's server
// reuses them

type fiberClient struct {
	h          fasthttp.RequestHandler
	cookieName string
	rc         fasthttp.RequestCtx
}

func newFiberClient(h fasthttp.RequestHandler, cookieName string) *fiberClient {
	c := &fiberClient{h: h, cookieName: cookieName}
	c.rc.Init(&fasthttp.Request{}, nil, nil)
	return c
}

func (c *fiberClient) do(path, cookie string, wantCookie bool) (string, []byte, int) {
	rc := &c.rc
	rc.Request.Reset()
	rc.Response.Reset()
	rc.ResetUserValues()
	rc.Request.Header.SetMethod(fasthttp.MethodGet)
	rc.Request.SetRequestURI(path)
	rc.Request.Header.SetHost("bench.local")
	if cookie != "" {
		rc.Request.Header.SetCookie(c.cookieName, cookie)
	}
	c.h(rc)
	status := rc.Response.StatusCode()
	if !wantCookie {
		return "", rc.Response.Body(), status
	}
	value := ""
	rc.Response.Header.VisitAllCookie(func(key, raw []byte) {
		if string(key) != c.cookieName {
			return
		}
		var ck fasthttp.Cookie
		if ck.ParseBytes(raw) == nil {
			value = string(ck.Value())
			if ck.MaxAge() < 0 || (!ck.Expire().IsZero() && ck.Expire().Unix() < 1000) {
				value = ""
			}
		}
	})
	return value, rc.Response.Body(), status
}
