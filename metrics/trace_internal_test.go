package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

func TestServerAttributes(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want []attribute.KeyValue
	}{
		{"10.0.0.7:11211", []attribute.KeyValue{semconv.ServerAddress("10.0.0.7"), semconv.ServerPort(11211)}},
		{"[::1]:11311", []attribute.KeyValue{semconv.ServerAddress("::1"), semconv.ServerPort(11311)}},
		{"/run/memcached.sock", []attribute.KeyValue{semconv.ServerAddress("/run/memcached.sock"), semconv.NetworkTransportUnix}},
	} {
		if got := serverAttributes(tc.addr); !slices.Equal(got, tc.want) {
			t.Errorf("serverAttributes(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// typedError names its own error.type.
type typedError struct{}

func (typedError) Error() string     { return "typed" }
func (typedError) ErrorType() string { return "deadlock" }

// TestCacheResults: answers are response codes, failures error types.
func TestCacheResults(t *testing.T) {
	unavailable := errors.New("cache: memcached unavailable")
	for _, tc := range []struct {
		err             error
		code, errorType string
	}{
		{memcache.ErrCacheMiss, "NOT_FOUND", ""},
		{memcache.ErrNotStored, "NOT_STORED", ""},
		{fmt.Errorf("wrapped: %w", memcache.ErrCASConflict), "EXISTS", ""},
		{memcache.ErrServerError, "", "SERVER_ERROR"},
		{errors.New("memcache: unexpected response line from \"set\": \"SERVER_ERROR out of memory storing object\\r\\n\""), "", "SERVER_ERROR"},
		{memcache.ErrMalformedKey, "", "malformed_key"},
		{fmt.Errorf("%w: 127.0.0.1:1: %w", unavailable, timeoutError{}), "", "timeout"},
		{fmt.Errorf("%w: %w", unavailable, context.DeadlineExceeded), "", "timeout"},
		{fmt.Errorf("%w: %w", unavailable, context.Canceled), "", "canceled"},
		{fmt.Errorf("%w: %w", unavailable, typedError{}), "", "deadlock"},
		{fmt.Errorf("%w: 127.0.0.1:1: connection refused", unavailable), "", "_OTHER"},
	} {
		code := answerCode(tc.err)
		et := ""
		if code == "" {
			et = cacheErrorType(tc.err)
		}
		if code != tc.code || et != tc.errorType {
			t.Errorf("%v: response code %q, error.type %q; want %q, %q", tc.err, code, et, tc.code, tc.errorType)
		}
	}
}
