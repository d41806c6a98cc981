package metrics

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/hybridsession/hybridsession/core/durable"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// fullBatchTier claims limit rows at every Reap: a pass through it never ends.
type fullBatchTier struct{ durable.Tier }

func (fullBatchTier) Reap(_ context.Context, _ time.Time, limit int, _ durable.Judge) (int, error) {
	return limit, nil
}

// TestAbandonedPassesForgotten: passes whose reaper stopped between two
// batches are forgotten, oldest first, past maxPasses.
func TestAbandonedPassesForgotten(t *testing.T) {
	d := NewDurable(fullBatchTier{}, nil)
	start := time.Now()
	for i := range maxPasses + 10 {
		d.Reap(context.Background(), start.Add(time.Duration(i)), 1, nil)
	}
	if len(d.passes) != maxPasses {
		t.Errorf("%d passes in progress kept, want %d", len(d.passes), maxPasses)
	}
	if _, ok := d.passes[start.UnixNano()]; ok {
		t.Error("the oldest pass is still kept")
	}
	if _, ok := d.passes[start.Add(maxPasses+9).UnixNano()]; !ok {
		t.Error("the newest pass is not kept")
	}
}

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
