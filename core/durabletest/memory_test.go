package durabletest_test

import (
	"testing"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
)

// TestMemory runs the suite on Memory, which also checks that the suite
// accepts a correct implementation. Memory holds no lock while the judge
// runs, so the racing-Save tests take the path where the Save lands first
// and Reap must notice the change.
func TestMemory(t *testing.T) {
	durabletest.Run(t, func(t *testing.T) core.Durable { return durabletest.NewMemory() })
}
