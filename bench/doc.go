// Package bench measures hybridsession side by side with the session
// libraries users would pick instead, in one run, on the same memcached and
// PostgreSQL: one request's session work through the real middleware,
// in-process, against loopback servers.
//
// It is its own module so that the peers' dependencies (gin-contrib/sessions,
// gorilla, wader/gormstore, fiber's session, scs, pgx) never reach library
// users. Everything lives in the _test.go files and in cmd/benchtables,
// which turns `go test -bench` output into the ratio tables of
// BENCHMARKS.md. Run it all with `make bench` (scripts/bench.sh).
//
// What is counted, and how:
//
//   - memcached round trips, on the connections: every gomemcache client
//     (ours and the peers') dials through a wrapper that counts a round trip
//     each time the client starts writing after having read (one command
//     flight), whatever the number of write calls it takes;
//   - SQL statements, in the driver: PostgreSQL connections carry a pgx
//     QueryTracer (BEGIN and COMMIT included); statements run under a
//     request's context are also counted as "on the request path";
//   - database reads and writes in the click-stream simulation and the
//     restore, on the durable tier's interface (Load calls; rows written
//     and Write calls).
//
// Environment: memcached in PATH (each benchmark starts its own through
// memcachedtest); PostgreSQL at HYBRIDSESSION_POSTGRES_DSN, default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable. The benchmarks
// create a schema of their own there and drop it at the end. Without
// PostgreSQL the hybrid stores use SQLite and the PostgreSQL peers, floors
// and the reaper benchmark are skipped.
package bench
