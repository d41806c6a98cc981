#!/usr/bin/env bash
# Prints the path of a memcached binary, installing memcached first with the
# system package manager when it is missing and that can be done without a
# prompt: apt-get as root or with password-less sudo, or Homebrew. Exits 1,
# with the install command on stderr, when there is no way to get one.
# Used by `make test`, `make bench` and `make demo`.
set -euo pipefail

find_memcached() {
	command -v memcached 2>/dev/null || { [ -x /usr/bin/memcached ] && echo /usr/bin/memcached; } || true
}

bin=$(find_memcached)
if [ -z "$bin" ]; then
	echo "memcached is not installed; trying the system package manager" >&2
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached >/dev/null || true
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then
		sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached >/dev/null || true
	elif command -v brew >/dev/null; then
		brew install memcached >&2 || true
	fi
	bin=$(find_memcached)
fi
if [ -z "$bin" ]; then
	echo "memcached could not be installed here. Install it: apt-get install memcached (Debian/Ubuntu) or brew install memcached (macOS)." >&2
	exit 1
fi
echo "$bin"
