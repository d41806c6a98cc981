package core

import "context"

// CacheTracer is told about every memcached operation the Store makes, to
// trace them (the metrics module's Tracer records OpenTelemetry spans).
// Set it as MemcachedConfig.Tracer; nil, the default, costs one nil check
// per operation.
type CacheTracer interface {
	// StartCacheOp is called before operation op on the memcached node at
	// addr. op is one of "get", "get_multi", "add", "set", "cas",
	// "delete" and "purge" (the removal of a copy that went stale while
	// the node was unreachable: a get, then a compare-and-swap). The
	// function it returns is called once, with the operation's result: nil, a protocol answer (memcache.ErrCacheMiss,
	// memcache.ErrNotStored, memcache.ErrCASConflict), or a failure — a
	// network error or timeout, wrapped in ErrCacheUnavailable.
	//
	// ctx is context.Background() today: the memcached tier does not yet
	// receive the request's context, so cache spans start their own trace.
	// StartCacheOp must be safe for concurrent use and must not block.
	StartCacheOp(ctx context.Context, op, addr string) (end func(err error))
}
