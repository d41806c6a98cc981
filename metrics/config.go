package metrics

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/hybridsession/hybridsession/core"
)

// Config says what NewCollector and RegisterOTel export.
type Config struct {
	// Store is the Store whose Stats are exported. Required.
	Store *core.Store

	// Tracer, when set, is the Tracer whose StartCacheOp is the Store's
	// core.MemcachedConfig.Tracer: it times every memcached operation for
	// the cache_operation_duration_seconds histogram (Stats does not carry
	// durations). Optional.
	Tracer *Tracer

	// Durable, when set, is the Store's durable tier wrapped with
	// NewDurable: it times the database calls for the
	// db_operation_duration_seconds histogram and sees the reaper's batches
	// for the reaper_last_pass metrics (Stats carries neither). Optional.
	Durable *Durable

	// Labels are added to every metric: Prometheus constant labels,
	// OpenTelemetry attributes. Set them to tell several Stores in one
	// process apart (e.g. {"app": "checkout"}). The metrics' own labels,
	// "node", "outcome" and "operation", are reserved. Optional.
	Labels map[string]string
}

// errNoStore is returned for a Config without a Store.
var errNoStore = errors.New("metrics: Config.Store is required")

func (c Config) check() (Config, error) {
	if c.Store == nil {
		return c, errNoStore
	}
	for _, l := range reservedLabels {
		if _, ok := c.Labels[l]; ok {
			return c, fmt.Errorf("metrics: Config.Labels must not contain %q", l)
		}
	}
	c.Labels = maps.Clone(c.Labels)
	return c, nil
}

// read takes one snapshot of everything exported.
func (c *Config) read() *snapshot {
	s := &snapshot{Stats: c.Store.Stats()}
	if c.Durable != nil {
		s.reap, s.hasReaps = c.Durable.LastReapPass(), true
	}
	return s
}

// table returns the stats exported for c: reapStats too with a Durable.
func (c *Config) table() []stat {
	if c.Durable == nil {
		return stats
	}
	return append(slices.Clip(stats), reapStats...)
}

// timedCalls is a source of calls and the histogram they go to.
type timedCalls struct {
	calls *recorders
	l     latency
}

// timed returns the sources of calls c has: its Tracer, its Durable.
func (c *Config) timed() []timedCalls {
	var out []timedCalls
	if c.Tracer != nil {
		out = append(out, timedCalls{&c.Tracer.timing, cacheLatency})
	}
	if c.Durable != nil {
		out = append(out, timedCalls{&c.Durable.timing, dbLatency})
	}
	return out
}
