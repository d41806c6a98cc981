package scsapp_test

import (
	"testing"

	"github.com/hybridsession/hybridsession/examples/internal/demotest"
	"github.com/hybridsession/hybridsession/examples/scs/scsapp"
)

func TestJourney(t *testing.T) {
	env, _ := demotest.Open(t)
	tiers, err := env.NewStore()
	if err != nil {
		t.Fatal(err)
	}
	h, sm, err := scsapp.New(tiers)
	if err != nil {
		t.Fatal(err)
	}
	demotest.Journey(t, demotest.HandlerTransport{Handler: h}, scsapp.Name, sm.Cookie.Name)
}
