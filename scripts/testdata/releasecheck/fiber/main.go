package main

import (
	"context"
	"log"

	"github.com/gofiber/fiber/v2"
	"github.com/hybridsession/hybridsession/adapters/fibersession"
	"github.com/hybridsession/hybridsession/core"
)

func main() {
	store := memcachedStore()
	defer store.Close(context.Background())
	m, err := core.New(core.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}

	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Use(fibersession.New(m, fibersession.Config{}))
	app.Get("/put", func(c *fiber.Ctx) error {
		fibersession.Get(c).Put("greeting", want)
		return c.SendString("stored")
	})
	app.Get("/get", func(c *fiber.Ctx) error {
		v, _ := core.Value[string](fibersession.Get(c), "greeting")
		return c.SendString(v)
	})
	check("fiber v2 (fibersession)", app.Listener)
}
