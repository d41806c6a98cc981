#!/usr/bin/env bash
# make demo: the cluster sample — gin, echo, fiber and net/http servers behind one
# round-robin load balancer, sharing sessions through memcached and an
# embedded SQLite database. Uses memcached from PATH, installs it with the
# system package manager where it can, and otherwise runs database-only.
set -euo pipefail
cd "$(dirname "$0")/.."

addr="${HYBRIDSESSION_MEMCACHED:-127.0.0.1:11211}"
dsn="${HYBRIDSESSION_DSN:-examples/demo.db}"
listen="${HYBRIDSESSION_LISTEN:-127.0.0.1:8080}"

bin=$(./scripts/ensure-memcached.sh || true)

up() { (exec 3<>"/dev/tcp/${addr%:*}/${addr##*:}") 2>/dev/null; }
if [ -n "$bin" ]; then
	if up; then
		echo "demo: using the memcached already listening on $addr"
	else
		user_flag=(); [ "$(id -u)" = 0 ] && user_flag=(-u root)
		"$bin" -l "${addr%:*}" -p "${addr##*:}" -U 0 -m 64 "${user_flag[@]}" &
		mc_pid=$!
		trap 'kill $mc_pid 2>/dev/null || true' EXIT
		for _ in $(seq 1 50); do up && break; sleep 0.1; done
		echo "demo: started memcached on $addr (pid $mc_pid); it stops with the demo"
	fi
else
	echo "demo: memcached unavailable — running DATABASE-ONLY: every request reads and writes SQLite."
	echo "demo: install memcached (apt-get install memcached) to see the hybrid store."
	addr=""
fi

go run ./examples/cluster -memcached "$addr" -dsn "$dsn" -listen "$listen"
