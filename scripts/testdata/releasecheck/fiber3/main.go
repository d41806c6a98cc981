package main

import (
	"context"
	"log"
	"net"

	"github.com/gofiber/fiber/v3"
	"github.com/hybridsession/hybridsession/adapters/fiber3session"
	"github.com/hybridsession/hybridsession/core"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}

	app := fiber.New()
	app.Use(fiber3session.New(m, fiber3session.Config{}))
	app.Get("/put", func(c fiber.Ctx) error {
		fiber3session.Get(c).Put("greeting", want)
		return c.SendString("stored")
	})
	app.Get("/get", func(c fiber.Ctx) error {
		v, _ := core.Value[string](fiber3session.Get(c), "greeting")
		return c.SendString(v)
	})
	check("fiber v3 (fiber3session)", func(ln net.Listener) error {
		return app.Listener(ln, fiber.ListenConfig{DisableStartupMessage: true})
	})
}
