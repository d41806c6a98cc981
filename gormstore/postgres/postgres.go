// Package postgres opens PostgreSQL databases for gormstore with GORM's
// pgx-based driver. Import it instead of opening the database yourself
// only for its defaults; either way, a program that uses PostgreSQL links
// neither the MySQL nor the SQLite driver.
package postgres

import (
	"fmt"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Open opens the PostgreSQL database at dsn, a URL such as
// "postgres://user:password@127.0.0.1:5432/app?sslmode=disable" or a
// key=value string ("host=... user=... dbname=..."), with pgx. GORM's
// logger is silenced: gormstore returns every error it meets. The caller
// closes the database (db.DB() and Close); gormstore.New does not.
func Open(dsn string) (*gorm.DB, error) {
	db, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("gormstore/postgres: open: %w", err)
	}
	return db, nil
}
