package nethttpapp_test

import (
	"testing"

	"github.com/hybridsession/hybridsession/examples/internal/demotest"
	"github.com/hybridsession/hybridsession/examples/nethttp/nethttpapp"
)

func TestJourney(t *testing.T) {
	m := demotest.Manager(t)
	demotest.Journey(t, demotest.HandlerTransport{Handler: nethttpapp.New(m)}, nethttpapp.Name, "session")
}
