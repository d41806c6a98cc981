#!/usr/bin/env bash
# tidy: go mod tidy every published module as a user's build sees it —
# outside the workspace, its siblings served at the version the go.mod files
# require by a local module proxy (scripts/modproxy) — repeating until no
# go.mod changes, since a module's tidy reads its siblings' go.mod files.
# The local zips' checksums of our own modules are kept out of go.sum: the
# workspace needs none, and the published ones will differ.
#
#   scripts/tidy.sh             # every module
#   scripts/tidy.sh gormstore   # the modules in these directories (and still
#                               # every module's go.mod served as it is now)
set -euo pipefail
cd "$(dirname "$0")/.."

modproxy() { GOWORK=off go run -C scripts/modproxy . "$@"; }
shared_modcache=$(go env GOMODCACHE)
inherited_proxy=$(go env GOPROXY)
work=$(mktemp -d "${TMPDIR:-/tmp}/hybridsession-tidy.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
export GONOSUMDB=github.com/hybridsession/hybridsession
export GOMODCACHE="$work/modcache"
export GOPROXY="file://$work/proxy,file://$shared_modcache/cache/download,$inherited_proxy"

if [ $# -gt 0 ]; then
	dirs=("$@")
else
	mapfile -t dirs < <(modproxy modules | cut -f1)
fi
gomods() { git ls-files '*go.mod' | xargs cat | cksum; }

for pass in 1 2 3 4; do
	before=$(gomods)
	rm -rf "$work/proxy"
	modproxy build -out "$work/proxy"
	# Our modules as the proxy now serves them, not as an earlier pass did.
	chmod -R u+w "$GOMODCACHE" 2>/dev/null || true
	rm -rf "$GOMODCACHE/github.com/hybridsession" "$GOMODCACHE/cache/download/github.com/hybridsession"
	for dir in "${dirs[@]}"; do
		(
			cd "$dir"
			go mod tidy
			if [ -f go.sum ]; then
				grep -v '^github.com/hybridsession/hybridsession[/ ]' go.sum >go.sum.tmp || true
				if [ -s go.sum.tmp ]; then mv go.sum.tmp go.sum; else rm go.sum.tmp go.sum; fi
			fi
		)
	done
	[ "$(gomods)" = "$before" ] && { echo "tidy: ${#dirs[@]} modules tidy after $pass passes"; exit 0; }
done
echo "tidy: go.mod files still changing after 4 passes" >&2
exit 1
