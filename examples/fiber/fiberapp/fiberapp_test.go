package fiberapp_test

import (
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/examples/fiber/fiberapp"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
)

// appTransport serves each request with fiber's App.Test: no listener.
type appTransport struct{ app *fiber.App }

func (t appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.app.Test(req, -1)
	if err != nil {
		return nil, err
	}
	resp.Request = req
	return resp, nil
}

func TestJourney(t *testing.T) {
	m := demotest.Manager(t)
	demotest.Journey(t, appTransport{fiberapp.New(m)}, fiberapp.Name, "session")
}
