package echo5app_test

import (
	"testing"

	"github.com/hybridsession/hybridsession/examples/echo5/echo5app"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
)

func TestJourney(t *testing.T) {
	m := demotest.Manager(t)
	demotest.Journey(t, demotest.HandlerTransport{Handler: echo5app.New(m)}, echo5app.Name, "session")
}
