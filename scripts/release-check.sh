#!/usr/bin/env bash
# release-check: try the release as its users will get it, before any tag
# is pushed (docs/releasing.md). It serves every module at the release
# version from a local module proxy (scripts/modproxy), then, in new modules
# outside the repository with no workspace, fetches from that proxy, builds
# and runs one small app per adapter and database (scripts/testdata/releasecheck),
# the README's three-statement start among them, and `go install`s hsctl.
#
#   scripts/release-check.sh            # at the version the go.mod files require
#   VERSION=v0.2.0 scripts/release-check.sh
#   FLOORS=1 scripts/release-check.sh   # build each app with the oldest Go its go line
#                                       # admits, fetched as a toolchain module
#
# Third-party modules come from this machine's module cache when it has them,
# else from the proxy GOPROXY already names. PostgreSQL and MySQL apps are
# built always and run when HYBRIDSESSION_POSTGRES_DSN / HYBRIDSESSION_MYSQL_DSN
# are set. Needs memcached (scripts/ensure-memcached.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

modproxy() { GOWORK=off go run -C scripts/modproxy . "$@"; }
version=${VERSION:-$(modproxy version)}
inherited_proxy=$(go env GOPROXY)
shared_modcache=$(go env GOMODCACHE)
memcached_bin=$(./scripts/ensure-memcached.sh)

work=$(mktemp -d "${TMPDIR:-/tmp}/hybridsession-release-check.XXXXXX")
memcached_pid=
cleanup() {
	[ -n "$memcached_pid" ] && kill "$memcached_pid" 2>/dev/null
	chmod -R u+w "$work" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "release-check: $version, from a module proxy in $work/proxy"
modproxy build -out "$work/proxy" -version "$version"

# Every go command below runs as a user's would, outside the repository:
# no go.work, go.mod and go.sum written as needed, our unpublished modules
# from the local proxy and not checked against the public checksum database,
# and no toolchain switch hiding a go line this Go cannot build. The module
# cache is this run's own, so that no module of ours from an earlier run (or
# the published one) stands in for the tree's; -trimpath keeps the build
# cache's compiled packages valid across such caches.
export GOWORK=off
export GOFLAGS="-mod=mod -trimpath"
export GOTOOLCHAIN=local
export GONOSUMDB=github.com/hybridsession/hybridsession
export GOMODCACHE="$work/modcache"
export GOPROXY="file://$work/proxy,file://$shared_modcache/cache/download,$inherited_proxy"
export HYBRIDSESSION_SEAL_KEYS
HYBRIDSESSION_SEAL_KEYS=$(head -c 32 /dev/urandom | base64)

# The checksums the repository already trusts, so that go.sum needs the
# checksum database only for modules the repository does not use.
known_sums="$work/known.sum"
cat $(git ls-files '*go.sum' 'go.work.sum') | sort -u >"$known_sums"

# memcached on a free loopback port.
for _ in $(seq 1 20); do
	port=$((20000 + RANDOM % 40000))
	"$memcached_bin" -l 127.0.0.1 -p "$port" -U 0 -m 16 -u "$(id -un)" >/dev/null 2>&1 &
	memcached_pid=$!
	sleep 0.2
	kill -0 "$memcached_pid" 2>/dev/null && break
	memcached_pid=
done
[ -n "$memcached_pid" ] || { echo "release-check: could not start memcached" >&2; exit 1; }
export HYBRIDSESSION_MEMCACHED="127.0.0.1:$port"

# app NAME [run|build]: a new module with the app's sources, the
# hybridsession packages it imports fetched at $version, built, and run
# unless the second argument is "build".
app() {
	local name=$1 mode=${2:-run} dir="$work/apps/$1" t0=$SECONDS
	mkdir -p "$dir"
	cp scripts/testdata/releasecheck/check.go scripts/testdata/releasecheck/"$name"/main.go "$dir"
	(
		cd "$dir"
		printf 'module example.com/releasecheck/%s\n\ngo 1.21\n' "$name" >go.mod
		cp "$known_sums" go.sum
		local pkgs
		pkgs=$(grep -ho '"github.com/hybridsession/hybridsession[^"]*"' ./*.go | tr -d '"' | sort -u | sed "s/\$/@$version/")
		# shellcheck disable=SC2086
		go get $pkgs 2>get.log || { cat get.log >&2; exit 1; }
		go mod tidy 2>tidy.log || { cat tidy.log >&2; exit 1; }
		local lang toolchain=local
		lang=$(sed -n 's/^go //p' go.mod)
		if [ -n "${FLOORS:-}" ]; then
			# The oldest Go the go line admits: go 1.24 is go1.24.0.
			toolchain=go$lang
			[[ $lang =~ ^[0-9]+\.[0-9]+$ ]] && toolchain=go$lang.0
		fi
		GOTOOLCHAIN=$toolchain go build -ldflags='-s -w' -o app .
		echo "release-check: $name built in $((SECONDS - t0))s with $(GOTOOLCHAIN=$toolchain go env GOVERSION); its go.mod says go $lang"
		[ "$mode" = build ] || ./app 2>app.log || { cat app.log >&2; exit 1; }
	)
}

app walkthrough
for a in gin echo echo5 fiber fiber3 scs; do app "$a"; done
for db in postgres mysql; do
	env=HYBRIDSESSION_${db^^}_DSN
	if [ -n "${!env:-}" ]; then
		DSN=${!env} TABLE="release_check_$RANDOM$RANDOM" app "$db"
	else
		app "$db" build
		echo "release-check: $env not set: $db built, not run"
	fi
done

# The operations command, installed as the docs say.
GOBIN="$work/bin" GOFLAGS=-trimpath go install "github.com/hybridsession/hybridsession/examples/hsctl@$version"
(cd "$work" && "$work/bin/hsctl" migrate -dsn "$work/hsctl.db")
echo "release-check: hsctl installed and ran"

echo "release-check: $version passed in $((SECONDS - start))s"
