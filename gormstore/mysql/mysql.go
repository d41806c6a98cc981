// Package mysql opens MySQL and MariaDB databases for gormstore with
// go-sql-driver/mysql. A program that imports it links neither the
// PostgreSQL nor the SQLite driver.
package mysql

import (
	"fmt"
	"net/url"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// Open opens a MySQL or MariaDB database from dsn, in either form:
//
//   - "mysql://user:password@host:port/dbname?param=value", over TCP; the
//     port defaults to 3306 and the query parameters are
//     go-sql-driver/mysql's (parseTime, loc, tls, ...);
//   - go-sql-driver/mysql's own DSN, such as
//     "user:password@tcp(127.0.0.1:3306)/app?parseTime=true".
//
// GORM's logger is silenced: gormstore returns every error it meets. The
// caller closes the database (db.DB() and Close); gormstore.New does not.
// With interpolateParams=true each statement saves its prepare and close
// round trips.
func Open(dsn string) (*gorm.DB, error) {
	var cfg *gomysql.Config
	var err error
	if strings.HasPrefix(dsn, "mysql://") {
		cfg, err = fromURL(dsn)
	} else {
		cfg, err = gomysql.ParseDSN(dsn)
	}
	if err != nil {
		return nil, fmt.Errorf("gormstore/mysql: open: %w", err)
	}
	db, err := gorm.Open(mysql.New(mysql.Config{DSNConfig: cfg}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		return nil, fmt.Errorf("gormstore/mysql: open: %w", err)
	}
	return db, nil
}

// fromURL converts a mysql:// URL to a go-sql-driver configuration.
func fromURL(dsn string) (*gomysql.Config, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	cfg := gomysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	if u.User != nil {
		cfg.User = u.User.Username()
		cfg.Passwd, _ = u.User.Password()
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if u.RawQuery != "" {
		// Let the driver interpret its parameters, as in its own DSN form.
		return gomysql.ParseDSN(cfg.FormatDSN() + "?" + u.RawQuery)
	}
	return cfg, nil
}
