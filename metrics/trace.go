package metrics

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope is the instrumentation scope name of the spans.
const scope = "github.com/hybridsession/hybridsession/metrics"

// Tracer times every memcached operation of a Store and records an
// OpenTelemetry span for it. Set its StartCacheOp as
// core.MemcachedConfig.Tracer; leave that field nil for neither, at no
// cost. The durations go to the latency histogram of every Collector and
// RegisterOTel given the Tracer in Config.Tracer.
//
// The spans follow OpenTelemetry's semantic conventions for database
// clients: client spans named after the operation ("get", "get_multi",
// "add", "set", "cas"), children of the span in the context the Store
// serves, with db.system.name=memcached, db.operation.name, server.address
// (the node's host, or its unix socket path) and server.port. A miss, "not
// stored" or a CAS conflict is an answer, not a failure: it is recorded as
// db.response.status_code (NOT_FOUND, NOT_STORED, EXISTS). A failure — a
// network error, a timeout, a SERVER_ERROR line, a malformed key — sets
// error.type and the span's status to Error.
type Tracer struct {
	tracer trace.Tracer // nil: no spans
	timing recorders
}

// NewTracer returns a Tracer that records spans with tp's tracer, or none
// when tp is nil (to time the operations for the histograms alone; pass
// otel.GetTracerProvider() for the global provider).
func NewTracer(tp trace.TracerProvider) *Tracer {
	t := &Tracer{}
	if tp != nil {
		t.tracer = tp.Tracer(scope, trace.WithSchemaURL(semconv.SchemaURL))
	}
	return t
}

// StartCacheOp starts timing one memcached operation and its span; see
// core.MemcachedConfig.Tracer. With no span recorded (no TracerProvider,
// or the sampler dropped it) and no histogram, it costs a Start and
// nothing more.
func (t *Tracer) StartCacheOp(ctx context.Context, op, addr string) func(error) {
	var span trace.Span
	if t.tracer != nil {
		ctx, span = t.tracer.Start(ctx, op, clientKind)
		if span.IsRecording() {
			span.SetAttributes(semconv.DBSystemNameMemcached, semconv.DBOperationName(op))
			span.SetAttributes(serverAttributes(addr)...)
		} else {
			span = nil
		}
	}
	recs := t.timing.load()
	if span == nil && len(recs) == 0 {
		return noEnd
	}
	start := time.Now()
	return func(err error) {
		c := call{op: op, addr: addr, took: time.Since(start)}
		code := answerCode(err)
		if err != nil && code == "" {
			c.errorType = cacheErrorType(err)
		}
		if span != nil {
			if code != "" {
				span.SetAttributes(semconv.DBResponseStatusCode(code))
			} else if err != nil {
				failed(span, c.errorType, err)
			}
			span.End()
		}
		for _, r := range recs {
			r.record(ctx, c)
		}
	}
}

// serverAttributes returns server.address and server.port of a node's
// "host:port", or server.address and network.transport=unix of a unix
// socket's path.
func serverAttributes(addr string) []attribute.KeyValue {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(addr), semconv.NetworkTransportUnix}
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return []attribute.KeyValue{semconv.ServerAddress(host)}
	}
	return []attribute.KeyValue{semconv.ServerAddress(host), semconv.ServerPort(port)}
}

// answerCode returns the memcached response of a protocol answer handed to
// a tracer's end — a miss, "not stored", a CAS conflict — and "" for nil or
// a failure. The Store counts the same answers as successes of the node.
func answerCode(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, memcache.ErrCacheMiss):
		return "NOT_FOUND"
	case errors.Is(err, memcache.ErrNotStored):
		return "NOT_STORED"
	case errors.Is(err, memcache.ErrCASConflict):
		return "EXISTS"
	}
	return ""
}

// failed marks span as failed with err: error.type, and the status Error
// with err's message.
func failed(span trace.Span, errorType string, err error) {
	span.SetAttributes(semconv.ErrorTypeKey.String(errorType))
	span.SetStatus(codes.Error, err.Error())
}

// cacheErrorType is errorType for a memcached failure, which may also be
// SERVER_ERROR (the node's answer when it cannot store an item; gomemcache
// reports some such lines as unexpected response lines) or malformed_key.
func cacheErrorType(err error) string {
	switch {
	case errors.Is(err, memcache.ErrServerError) || strings.Contains(err.Error(), "SERVER_ERROR"):
		return "SERVER_ERROR"
	case errors.Is(err, memcache.ErrMalformedKey):
		return "malformed_key"
	}
	return errorType(err)
}

// errorType classifies a failure for the error.type attribute with few
// values: timeout, canceled, the value of an ErrorType() string method in
// err's chain, else _OTHER.
func errorType(err error) string {
	var ne net.Error
	var et interface{ ErrorType() string }
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &et) && et.ErrorType() != "":
		return et.ErrorType()
	}
	return semconv.ErrorTypeOther.Value.AsString()
}

var (
	clientKind = trace.WithSpanKind(trace.SpanKindClient)
	noEnd      = func(error) {}
)
