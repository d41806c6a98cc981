package echoapp_test

import (
	"testing"

	"github.com/hybridsession/hybridsession/examples/echo/echoapp"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
)

func TestJourney(t *testing.T) {
	m := demotest.Manager(t)
	demotest.Journey(t, demotest.HandlerTransport{Handler: echoapp.New(m)}, echoapp.Name, "session")
}
