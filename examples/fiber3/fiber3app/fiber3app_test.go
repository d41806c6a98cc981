package fiber3app_test

import (
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v3"
	"github.com/hybridsession/hybridsession/examples/fiber3/fiber3app"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
)

// appTransport serves each request with fiber's App.Test: no listener.
type appTransport struct{ app *fiber.App }

func (t appTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.app.Test(req, fiber.TestConfig{Timeout: 0})
	if err != nil {
		return nil, err
	}
	resp.Request = req
	return resp, nil
}

func TestJourney(t *testing.T) {
	m := demotest.Manager(t)
	demotest.Journey(t, appTransport{fiber3app.New(m)}, fiber3app.Name, "session")
}
