#!/usr/bin/env bash
# release vX.Y.Z: make every module require its siblings at vX.Y.Z (and
# go.work point that version at the tree), run make release-check, commit,
# and tag every module: vX.Y.Z for the root, DIR/vX.Y.Z for the module in
# DIR (gormstore/vX.Y.Z, adapters/ginsession/vX.Y.Z, ...). It pushes
# nothing: it prints the push command. docs/releasing.md has the procedure.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:-}
if ! [[ $version =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
	echo "usage: scripts/release.sh vX.Y.Z   (a semantic version, such as v0.2.0 or v0.2.0-rc.1)" >&2
	exit 2
fi
if ! git diff --quiet || ! git diff --cached --quiet; then
	echo "release: commit or stash your changes first" >&2
	exit 1
fi

# The tool runs outside the workspace: go.work names another version than
# the go.mod files while they are being bumped.
modproxy() { GOWORK=off go run -C scripts/modproxy . "$@"; }

old=$(modproxy version)
tags=()
while IFS=$'\t' read -r dir _; do
	tag=$version
	[ "$dir" = . ] || tag=$dir/$version
	if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
		echo "release: tag $tag exists already" >&2
		exit 1
	fi
	tags+=("$tag")
done < <(modproxy modules)

if [ "$old" != "$version" ]; then
	echo "release: siblings required at $old, now at $version"
	modproxy bump "$version"
fi

make release-check

if ! git diff --quiet; then
	git commit -q -a -m "release $version: every module requires its siblings at $version"
fi
for tag in "${tags[@]}"; do
	git tag -a "$tag" -m "hybridsession $tag"
done

echo "release: tagged $(git rev-parse --short HEAD) with ${#tags[@]} tags: ${tags[*]}"
echo "Push the commit, then the tags:"
echo "  git push origin HEAD && git push origin ${tags[*]}"
