#!/usr/bin/env bash
# make demo: the cluster sample — gin, echo, fiber and net/http servers behind one
# round-robin load balancer, sharing sessions through memcached and an
# embedded SQLite database, with the operator panel on the page and /metrics.
# Starts two memcached processes of its own (memcached from PATH, installed
# with the system package manager where it can), uses HYBRIDSESSION_MEMCACHED
# instead when set, and otherwise runs database-only.
set -euo pipefail
cd "$(dirname "$0")/.."

addr="${HYBRIDSESSION_MEMCACHED:-}"
dsn="${HYBRIDSESSION_DSN:-examples/demo.db}"
listen="${HYBRIDSESSION_LISTEN:-127.0.0.1:8080}"

bin=$(./scripts/ensure-memcached.sh || true)

if [ -n "${HYBRIDSESSION_MEMCACHED+set}" ]; then
	echo "demo: using HYBRIDSESSION_MEMCACHED=$addr (the operator panel cannot kill or restart those nodes)"
	exec go run ./examples/cluster -memcached "$addr" -dsn "$dsn" -listen "$listen"
fi
if [ -n "$bin" ]; then
	# Two memcached processes of the demo's own, on free loopback ports: the
	# operator panel can kill, restart, add and remove them. They stop with it.
	PATH="$(dirname "$bin"):$PATH" exec go run ./examples/cluster -spawn 2 -dsn "$dsn" -listen "$listen"
fi
echo "demo: memcached unavailable — running DATABASE-ONLY: every request reads and writes SQLite."
echo "demo: install memcached (apt-get install memcached) to see the hybrid store."
exec go run ./examples/cluster -memcached "" -dsn "$dsn" -listen "$listen"
