# hybridsession — the two commands a newcomer needs:
#   make demo   start the cluster sample (gin + echo + fiber + net/http behind one load balancer)
#   make test   run every module's tests against real memcached processes
#
# PostgreSQL and MariaDB/MySQL tests run when HYBRIDSESSION_POSTGRES_DSN and
# HYBRIDSESSION_MYSQL_DSN are set (.ci/run sets them); SQLite always runs.

GO        ?= go
PKGS      := github.com/hybridsession/hybridsession/...
TESTFLAGS ?= -race -count=1 -timeout 10m

.PHONY: test demo bench vet fmt fuzz soak release-check check-sizes check-memcached

test: check-memcached
	$(GO) test $(TESTFLAGS) $(PKGS)

demo:
	./scripts/demo.sh

bench:
	./scripts/bench.sh

vet:
	$(GO) vet $(PKGS)

fmt:
	gofmt -l -w .

# A short run of every fuzz target of every package that has one (FUZZTIME
# per target). Corpora, hostile inputs included, live in testdata/fuzz.
FUZZTIME ?= 20s
FUZZPKGS ?= ./core ./core/internal/envelope ./scsstore
fuzz:
	@for p in $(FUZZPKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
			echo "fuzzing $$p $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p || exit 1; \
		done; \
	done

# More randomized fault histories than go test's fixed seeds (see
# integration/history): SEEDS histories from FIRST, PARALLEL at a time.
# Set the database DSNs to include PostgreSQL and MariaDB; DB=postgres (or
# sqlite, mysql) plays every history on that one. The last lines give the
# totals: histories, operations, faults injected, violations.
SEEDS    ?= 200
FIRST    ?= 1000
PARALLEL ?= 2
soak: check-memcached
	cd integration && HISTORY_SEEDS=$(SEEDS) HISTORY_FIRST=$(FIRST) HISTORY_PARALLEL=$(PARALLEL) HISTORY_DB=$(DB) \
		$(GO) test -count=1 -v -timeout 0 -parallel $(PARALLEL) -run '^TestHistories$$' ./history

# The release as users will get it (docs/releasing.md): every module served
# at the release version from a local module proxy, and an app per adapter
# and database fetched from it, built and run outside the repository.
# PostgreSQL and MySQL apps run when their DSNs are set. VERSION=vX.Y.Z
# tries another version than the one the go.mod files require.
release-check: check-memcached
	./scripts/release-check.sh

# No tracked file over 1 MiB: module zips are downloaded whole by every user.
MAXFILE ?= 1048576
check-sizes:
	@big=$$(git ls-files -s | sed 's/^[0-7]* \([0-9a-f]*\) [0-3]	/\1 /' | \
		git cat-file --batch-check='%(objectsize) %(rest)' | awk -v max=$(MAXFILE) '$$1 > max'); \
	if [ -n "$$big" ]; then echo "tracked files over $(MAXFILE) bytes:"; echo "$$big"; exit 1; fi

# The tests start their own memcached processes: install memcached when it
# is missing (apt-get as root or with password-less sudo, or Homebrew).
check-memcached:
	@./scripts/ensure-memcached.sh >/dev/null
