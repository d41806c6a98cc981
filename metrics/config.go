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

	// Reaper, when set, is the Store's durable tier wrapped with NewDurable:
	// it sees the reaper's batches and adds the reaper_last_pass metrics
	// (Stats does not carry them). Optional.
	Reaper *Durable

	// Labels are added to every metric: Prometheus constant labels,
	// OpenTelemetry attributes. Set them to tell several Stores in one
	// process apart (e.g. {"app": "checkout"}). The metrics' own labels,
	// "node" and "outcome", are reserved. Optional.
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
	if c.Reaper != nil {
		s.reap, s.hasReaps = c.Reaper.LastReapPass(), true
	}
	return s
}

// table returns the stats exported for c: reapStats too with a Reaper.
func (c *Config) table() []stat {
	if c.Reaper == nil {
		return stats
	}
	return append(slices.Clip(stats), reapStats...)
}
