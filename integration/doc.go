// Package integration holds hybridsession's end-to-end tests: the core
// Manager and Store against real memcached processes (memcachedtest) and
// real databases through gormstore — SQLite always, PostgreSQL and
// MariaDB/MySQL when HYBRIDSESSION_POSTGRES_DSN and HYBRIDSESSION_MYSQL_DSN
// are set. It is a module of its own so the core module never depends on
// GORM.
package integration
