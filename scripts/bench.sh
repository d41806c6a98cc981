#!/usr/bin/env bash
# make bench: hybridsession side by side with its peers, the floors, the
# click-stream simulation and the reaper, in one run, then the ratio tables
# of BENCHMARKS.md computed from that run.
#
# Needs memcached in PATH (the benchmarks start their own processes through
# memcachedtest) and PostgreSQL at HYBRIDSESSION_POSTGRES_DSN (default below;
# the benchmarks work in a schema of their own, dropped at the end). Without
# PostgreSQL the PostgreSQL peers, floors and the reaper are skipped.
#
# Knobs (environment):
#   BENCH_COUNT        rounds of the request benchmarks; tables use the median (default 5)
#   CLICKSTREAM_USERS  users the click stream simulates, scaled to 10,000 (default 400;
#                      10000 simulates them all, ~8 minutes more on 2 cores)
#   BENCH_OUT          where the raw `go test -bench` output goes (default: a temp file)
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/ensure-memcached.sh >/dev/null
export HYBRIDSESSION_POSTGRES_DSN="${HYBRIDSESSION_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}"
GO="${GO:-go}"
count="${BENCH_COUNT:-5}"
users="${CLICKSTREAM_USERS:-400}"
out="${BENCH_OUT:-$(mktemp -t hybridsession-bench.XXXXXX)}"
: >"$out"

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)
echo "machine: $(nproc) cores, ${cpu:-unknown CPU}, $($GO version)"
echo "raw output: $out"
start=$(date +%s)

# run BENCHTIME ARGS...: one `go test -bench` of the bench module, appended to $out.
run() {
	local benchtime=$1
	shift
	(cd bench && $GO test -run '^$' -timeout 30m -benchtime "$benchtime" "$@") | tee -a "$out"
}

$GO build -o /dev/null ./bench/cmd/benchtables
# Rounds rather than -count (which repeats each sub-benchmark in a row): each
# round runs every request benchmark once, the libraries in a rotated order,
# so that neighbours, position and the machine's other load spread evenly.
for round in $(seq 0 $((count - 1))); do
	echo "round $((round + 1)) of $count"
	shift=$((round * 3))
	run 3000x -bench '^Benchmark(Floor|Baseline|Read|Modify)$' . -targets.shift=$shift
	run 500x -bench '^BenchmarkNew$' . -targets.shift=$shift
	run 20000x -bench '^BenchmarkParallel16$' . -targets.shift=$shift
	run 20x -bench '^BenchmarkOneSession16$' . -targets.shift=$shift
done
run 1x -bench '^Benchmark(ClickStream|Reaper)$' . -clickstream.users="$users"

echo
echo "benchmarks took $(($(date +%s) - start)) s"
echo
$GO run ./bench/cmd/benchtables "$out"
