package ginapp_test

import (
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/hybridsession/hybridsession/examples/gin/ginapp"
	"github.com/hybridsession/hybridsession/examples/internal/demotest"
)

func TestJourney(t *testing.T) {
	gin.SetMode(gin.TestMode)
	m := demotest.Manager(t)
	demotest.Journey(t, demotest.HandlerTransport{Handler: ginapp.New(m)}, ginapp.Name, "session")
}
