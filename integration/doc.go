// Package integration holds hybridsession's end-to-end tests: the core
// Manager and Store against real memcached processes (memcachedtest) and
// real databases through gormstore — SQLite always, PostgreSQL and
// MariaDB/MySQL when HYBRIDSESSION_POSTGRES_DSN and HYBRIDSESSION_MYSQL_DSN
// are set. They check the invariants of docs/consistency.md under real
// faults — memcached processes killed, paused or restarted, toxiproxy
// proxies that cut off or blackhole a node or the database (TestFault runs
// them under load; the database faults need PostgreSQL) — and hostile bytes
// in either tier (docs/security.md). The randomized fault-history checker
// is the history subpackage. It is a module of its own so the core module
// never depends on GORM.
package integration
