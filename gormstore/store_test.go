package gormstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/hybridsession/hybridsession/core"
	"github.com/hybridsession/hybridsession/core/durabletest"
	"github.com/hybridsession/hybridsession/gormstore"
	"github.com/hybridsession/hybridsession/gormstore/gormtest"
	"github.com/hybridsession/hybridsession/gormstore/sqlite"
)

func TestNewConfig(t *testing.T) {
	db := openSQLite(t)
	valid := []string{"", "sessions", "_x", "A1_b2", strings.Repeat("a", 63)}
	for _, name := range valid {
		s, err := gormstore.New(db, gormstore.Config{TableName: name})
		if err != nil || s == nil {
			t.Errorf("New(TableName %q) = %v, %v; want a Store", name, s, err)
		}
	}
	if !db.Migrator().HasTable(gormstore.DefaultTableName) {
		t.Errorf("a zero Config did not create table %q", gormstore.DefaultTableName)
	}
	invalid := []string{
		"1abc", "a-b", "a b", "a.b", "x;DROP TABLE y", `a"b`, "a`b", "a'b", "ünï",
		strings.Repeat("a", 64), " a", "a\n",
	}
	for _, name := range invalid {
		s, err := gormstore.New(db, gormstore.Config{TableName: name})
		if !errors.Is(err, gormstore.ErrInvalidConfig) || s != nil {
			t.Errorf("New(TableName %q) = %v, %v; want ErrInvalidConfig", name, s, err)
		}
	}
	if _, err := gormstore.New(nil, gormstore.Config{}); !errors.Is(err, gormstore.ErrInvalidConfig) {
		t.Errorf("New(nil) error = %v, want ErrInvalidConfig", err)
	}
}

func TestNewDoesNotCloseDB(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		s, _ := newStore(t, db)
		ctx := t.Context()
		rec := testRecord("open", 1, time.Now().Add(time.Hour))
		if _, err := s.Save(ctx, rec); err != nil {
			t.Fatal(err)
		}
		// A second Store on the same table, then drop both.
		if _, err := gormstore.New(db, gormstore.Config{TableName: tableName(t), SkipMigration: true}); err != nil {
			t.Fatal(err)
		}
		sqlDB, err := db.DB()
		if err != nil {
			t.Fatal(err)
		}
		if err := sqlDB.PingContext(ctx); err != nil {
			t.Fatalf("the *gorm.DB no longer works after New and use: %v", err)
		}
		if _, found, err := s.Load(ctx, rec.Key, time.Now()); err != nil || !found {
			t.Fatalf("Load = %v, %v", found, err)
		}
	})
}

func testRecord(name string, version uint64, expiresAt time.Time) core.Record {
	return core.Record{
		Key:       durabletest.Key(name),
		Payload:   []byte("payload " + name),
		Version:   version,
		ExpiresAt: expiresAt.Truncate(time.Millisecond),
		Deadline:  expiresAt.Add(time.Hour).Truncate(time.Millisecond),
		Subject:   "user",
	}
}

// TestCorruptPayload checks that the durable tier returns whatever bytes the
// row holds: deciding that they are not an envelope is core's job.
func TestCorruptPayload(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		s, table := newStore(t, db)
		ctx := t.Context()
		now := time.Now()
		rec := testRecord("corrupt", 3, now.Add(time.Hour))
		rec.Payload = []byte{0xde, 0xad, 0, 0xbe, 0xef, 0xff, 0xfe}
		if _, err := s.Save(ctx, rec); err != nil {
			t.Fatal(err)
		}
		got, found, err := s.Load(ctx, rec.Key, now)
		if err != nil || !found || string(got.Payload) != string(rec.Payload) {
			t.Fatalf("Load = %x, %v, %v; want %x", got.Payload, found, err, rec.Payload)
		}
		// Garbage written behind the Store's back, e.g. by a broken tool.
		garbage := []byte("not an envelope \x00\x01\x02 at all")
		if err := db.Table(table).Where("subject = ?", "user").Update("payload", garbage).Error; err != nil {
			t.Fatal(err)
		}
		got, found, err = s.Load(ctx, rec.Key, now)
		if err != nil || !found || string(got.Payload) != string(garbage) {
			t.Fatalf("Load of a garbage row = %q, %v, %v; want %q", got.Payload, found, err, garbage)
		}
		var judged []byte
		n, err := s.Reap(ctx, now.Add(2*time.Hour), 10, func(_ context.Context, b []core.Record) ([]core.Verdict, error) {
			judged = b[0].Payload
			return make([]core.Verdict, len(b)), nil
		})
		if err != nil || n != 1 || string(judged) != string(garbage) {
			t.Fatalf("Reap = %d, %v, judged %q; want the garbage row handed to the judge", n, err, judged)
		}
	})
}

// sqlLog records the SQL GORM runs.
type sqlLog struct {
	mu   sync.Mutex
	stmt []string
}

func (l *sqlLog) LogMode(logger.LogLevel) logger.Interface { return l }
func (l *sqlLog) Info(context.Context, string, ...any)     {}
func (l *sqlLog) Warn(context.Context, string, ...any)     {}
func (l *sqlLog) Error(context.Context, string, ...any)    {}
func (l *sqlLog) statements() []string                     { l.mu.Lock(); defer l.mu.Unlock(); return l.stmt }
func (l *sqlLog) reset()                                   { l.mu.Lock(); defer l.mu.Unlock(); l.stmt = nil }
func (l *sqlLog) Trace(_ context.Context, _ time.Time, fc func() (string, int64), _ error) {
	sql, _ := fc()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stmt = append(l.stmt, sql)
}

func TestMigrationIdempotent(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		s, table := newStore(t, db)
		ctx := t.Context()
		now := time.Now()
		rec := testRecord("migrate", 1, now.Add(time.Hour))
		if _, err := s.Save(ctx, rec); err != nil {
			t.Fatal(err)
		}
		log := &sqlLog{}
		logged := db.Session(&gorm.Session{Logger: log})
		s2, err := gormstore.New(logged, gormstore.Config{TableName: table})
		if err != nil {
			t.Fatalf("second New on the same table: %v", err)
		}
		if len(log.statements()) == 0 {
			t.Fatal("the SQL log of the second New is empty")
		}
		for _, stmt := range log.statements() {
			upper := strings.ToUpper(strings.TrimSpace(stmt))
			if strings.HasPrefix(upper, "ALTER") || strings.HasPrefix(upper, "CREATE") || strings.HasPrefix(upper, "DROP") {
				t.Errorf("second New changed the schema: %s", stmt)
			}
		}
		if _, found, err := s2.Load(ctx, rec.Key, now); err != nil || !found {
			t.Fatalf("Load after the second New = %v, %v; want the row kept", found, err)
		}
		idx := db.Migrator()
		for _, col := range []string{"expires_at", "subject"} {
			if !idx.HasIndex(table, "idx_"+table+"_"+col) {
				t.Errorf("no index on %s", col)
			}
		}
	})
}

func TestSkipMigration(t *testing.T) {
	db := openSQLite(t)
	s, err := gormstore.New(db, gormstore.Config{TableName: "not_created", SkipMigration: true})
	if err != nil {
		t.Fatal(err)
	}
	if db.Migrator().HasTable("not_created") {
		t.Fatal("New created the table despite SkipMigration")
	}
	_, err = s.Save(t.Context(), testRecord("x", 1, time.Now().Add(time.Hour)))
	if err == nil || !strings.HasPrefix(err.Error(), "gormstore: ") {
		t.Fatalf("Save to a missing table: err = %v, want a gormstore error", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	s, _ := newStore(t, openSQLite(t))
	ctx := t.Context()
	now := time.Now()
	if _, err := s.List(ctx, now, "", 0); !errors.Is(err, gormstore.ErrInvalidLimit) {
		t.Errorf("List(limit 0) error = %v, want ErrInvalidLimit", err)
	}
	if _, err := s.Reap(ctx, now, -1, nil); !errors.Is(err, gormstore.ErrInvalidLimit) {
		t.Errorf("Reap(limit -1) error = %v, want ErrInvalidLimit", err)
	}
	ok := testRecord("ok", 1, now.Add(time.Hour))
	bad := map[string]func(r *core.Record){
		"empty key":        func(r *core.Record) { r.Key = "" },
		"65-byte key":      func(r *core.Record) { r.Key = strings.Repeat("k", 65) },
		"256-byte subject": func(r *core.Record) { r.Subject = strings.Repeat("s", 256) },
		"version > int64":  func(r *core.Record) { r.Version = math.MaxInt64 + 1 },
	}
	for name, mutate := range bad {
		r := ok
		mutate(&r)
		if applied, err := s.Save(ctx, r); !errors.Is(err, gormstore.ErrInvalidRecord) || applied {
			t.Errorf("Save(%s) = %v, %v; want ErrInvalidRecord", name, applied, err)
		}
	}
	// The limits themselves are fine.
	r := ok
	r.Key, r.Subject, r.Version = strings.Repeat("k", 64), strings.Repeat("s", 255), math.MaxInt64
	if applied, err := s.Save(ctx, r); err != nil || !applied {
		t.Fatalf("Save at the limits = %v, %v", applied, err)
	}
	if got, found, err := s.Load(ctx, r.Key, now); err != nil || !found || got.Version != math.MaxInt64 {
		t.Fatalf("Load at the limits = %d, %v, %v", got.Version, found, err)
	}

	// A kept verdict the table cannot hold aborts the batch.
	expired := testRecord("expired", 1, now.Add(-time.Minute))
	if _, err := s.Save(ctx, expired); err != nil {
		t.Fatal(err)
	}
	_, err := s.Reap(ctx, now, 10, func(_ context.Context, b []core.Record) ([]core.Verdict, error) {
		r := b[0]
		r.Subject = strings.Repeat("s", 256)
		return []core.Verdict{{Keep: true, Record: r}}, nil
	})
	if !errors.Is(err, gormstore.ErrInvalidRecord) {
		t.Errorf("Reap keeping an invalid record: err = %v, want ErrInvalidRecord", err)
	}
	_, err = s.Reap(ctx, now, 10, func(_ context.Context, b []core.Record) ([]core.Verdict, error) {
		r := b[0]
		r.Key = durabletest.Key("another")
		return []core.Verdict{{Keep: true, Record: r}}, nil
	})
	if !errors.Is(err, gormstore.ErrBadVerdicts) {
		t.Errorf("Reap keeping a record under another key: err = %v, want ErrBadVerdicts", err)
	}
	if _, found, _ := s.Load(ctx, expired.Key, now.Add(-time.Hour)); !found {
		t.Error("a failed Reap changed the row")
	}
}

// TestSaveMySQLRowCounts runs Save's decisions with each way the driver may
// count affected rows: the default, clientFoundRows=true, and a connection
// New cannot inspect (so it reads back on every ambiguous count).
func TestSaveMySQLRowCounts(t *testing.T) {
	dsn := gormtest.ServerDSN(t, mysqlEnv)
	base, err := gormtest.Open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, base) })
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	found, err := gormtest.Open(dsn + sep + "clientFoundRows=true")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeDB(t, found) })
	sqlDB, err := base.DB()
	if err != nil {
		t.Fatal(err)
	}
	opaque, err := gorm.Open(mysql.New(mysql.Config{Conn: sqlDB}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	for name, db := range map[string]*gorm.DB{"default": base, "clientFoundRows": found, "opaque connection": opaque} {
		t.Run(name, func(t *testing.T) {
			s, _ := newStore(t, db)
			ctx := t.Context()
			e := time.Now().Add(time.Hour)
			steps := []struct {
				version uint64
				expires time.Time
				applied bool
				// The Base check, a payload tag and a key suffix: zero for
				// the plain steps.
				base, from, to uint64
				tag, key       string
			}{
				{version: 5, expires: e, applied: true},                    // insert
				{version: 5, expires: e, applied: true},                    // identical retry
				{version: 4, expires: e.Add(time.Minute), applied: false},  // older version
				{version: 5, expires: e.Add(-time.Second), applied: false}, // equal version, earlier expiry
				{version: 5, expires: e.Add(time.Second), applied: true},   // equal version, later expiry
				{version: 6, expires: e, applied: true},                    // newer version, earlier expiry
				{version: 6, expires: e, applied: true},                    // identical retry
				// A row of version 6 that the record was not built on.
				{version: 8, expires: e, base: 5, tag: "a", applied: false},
				{version: 8, expires: e, base: 4, from: 7, to: 8, tag: "b", applied: false},
				// The same version and expiry: the version rule alone would take it.
				{version: 6, expires: e, base: 5, tag: "c", applied: false},
				{version: 6, expires: e, base: 5, from: 7, to: 9, tag: "c", applied: false},
				// Built on it: at most Base, or within the unsynced range.
				{version: 7, expires: e, base: 6, tag: "d", applied: true},
				{version: 7, expires: e, base: 6, from: 7, to: 7, tag: "d", applied: true}, // identical retry, built on its own change
				{version: 7, expires: e, base: 6, tag: "d", applied: false},                // identical retry, not built on its own change
				{version: 9, expires: e, base: 2, from: 7, to: 8, tag: "e", applied: true},
				// A missing row, whatever Base says.
				{version: 3, expires: e, base: 1, tag: "f", key: "-new", applied: true},
			}
			for i, st := range steps {
				if i == 1 {
					// Later saves of the row must not share its created_at
					// millisecond, which tells Save's read back an insert.
					time.Sleep(2 * time.Millisecond)
				}
				r := testRecord("counts"+st.key, st.version, st.expires)
				r.Payload = append(r.Payload, st.tag...)
				r.Base, r.UnsyncedFrom, r.UnsyncedTo = st.base, st.from, st.to
				applied, err := s.Save(ctx, r)
				if err != nil || applied != st.applied {
					t.Fatalf("step %d: Save(version %d, Base %d, unsynced %d..%d) = %v, %v; want %v",
						i, st.version, st.base, st.from, st.to, applied, err, st.applied)
				}
				if !applied {
					continue
				}
				got, found, err := s.Load(ctx, r.Key, time.Now())
				if err != nil || !found || got.Version != r.Version || !bytes.Equal(got.Payload, r.Payload) {
					t.Fatalf("step %d: Load = %+v, %v, %v; want version %d, payload %q", i, got, found, err, r.Version, r.Payload)
				}
			}
		})
	}
}

// TestReapStatementsPerBatch checks that a Reap batch costs the same number
// of statements whatever its size.
func TestReapStatementsPerBatch(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		log := &sqlLog{}
		s, _ := newStore(t, db.Session(&gorm.Session{Logger: log}))
		ctx := t.Context()
		now := time.Now()
		counts := map[int]int{}
		for _, size := range []int{10, 500} {
			insertExpired(t, s, size, now)
			log.reset()
			n, err := s.Reap(ctx, now, size, func(_ context.Context, b []core.Record) ([]core.Verdict, error) {
				v := make([]core.Verdict, len(b))
				for i := range 2 { // a few survivors
					r := b[i]
					r.Version++
					r.ExpiresAt = now.Add(time.Hour)
					v[i] = core.Verdict{Keep: true, Record: r}
				}
				return v, nil
			})
			if err != nil || n != size {
				t.Fatalf("Reap = %d, %v; want %d", n, err, size)
			}
			counts[size] = len(log.statements())
			t.Logf("batch of %d: %d statements besides BEGIN and COMMIT: %q", size, counts[size], firstWords(log.statements()))
			if err := s.Delete(ctx, keysOf(size)...); err != nil {
				t.Fatal(err)
			}
		}
		if counts[10] != counts[500] {
			t.Errorf("statements per batch grow with the batch: %v", counts)
		}
	})
}

func firstWords(stmts []string) []string {
	out := make([]string, len(stmts))
	for i, s := range stmts {
		out[i] = strings.Join(strings.Fields(s)[:2], " ")
	}
	return out
}

func keysOf(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = durabletest.Key(fmt.Sprint("expired-", i))
	}
	return keys
}

// insertExpired saves n expired rows named expired-0 ... expired-(n-1).
func insertExpired(t testing.TB, s *gormstore.Store, n int, now time.Time) {
	t.Helper()
	for i := range n {
		r := testRecord(fmt.Sprint("expired-", i), 1, now.Add(-time.Duration(n-i)*time.Millisecond))
		if _, err := s.Save(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSQLiteReapersAcrossHandles runs reapers on two independent *gorm.DB
// handles of one SQLite file, as two processes would: SQLite's write lock,
// not anything in this process, must keep them from judging a row twice.
func TestSQLiteReapersAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	var stores []*gormstore.Store
	for range 2 {
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeDB(t, db) })
		sqlDB, _ := db.DB()
		sqlDB.SetMaxOpenConns(3)
		s, err := gormstore.New(db, gormstore.Config{})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	const rows = 200
	now := time.Now()
	insertExpired(t, stores[0], rows, now)

	var mu sync.Mutex
	seen := map[string]int{}
	judge := func(_ context.Context, b []core.Record) ([]core.Verdict, error) {
		mu.Lock()
		for _, r := range b {
			seen[r.Key]++
		}
		mu.Unlock()
		time.Sleep(3 * time.Millisecond)
		return make([]core.Verdict, len(b)), nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := stores[i%2].Reap(context.Background(), now, 15, judge)
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != rows {
		t.Errorf("%d rows judged, want %d", len(seen), rows)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("row %s judged %d times", k, c)
		}
	}
}

// TestOpenForms opens each DSN form Open documents.
func TestOpenForms(t *testing.T) {
	dir := t.TempDir()
	forms := []string{
		filepath.Join(dir, "plain.db"),
		"sqlite:" + filepath.Join(dir, "prefixed.db"),
		"sqlite://" + filepath.Join(dir, "url.db"),
		"file:" + filepath.Join(dir, "uri.db") + "?cache=private",
	}
	if dsn := os.Getenv(postgresEnv); dsn != "" {
		forms = append(forms, dsn, "postgresql://"+strings.TrimPrefix(dsn, "postgres://"))
	}
	if dsn := os.Getenv(mysqlEnv); strings.Contains(dsn, "@tcp(") {
		cfg, err := gomysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		u := url.URL{Scheme: "mysql", User: url.UserPassword(cfg.User, cfg.Passwd), Host: cfg.Addr, Path: "/" + cfg.DBName,
			RawQuery: "parseTime=true"}
		forms = append(forms, dsn, u.String())
	}
	for _, dsn := range forms {
		db, err := gormtest.Open(dsn)
		if err != nil {
			t.Errorf("Open(%q): %v", dsn, err)
			continue
		}
		t.Cleanup(func() { closeDB(t, db) })
		s, _ := newStore(t, db)
		rec := testRecord("open", 1, time.Now().Add(time.Hour))
		if applied, err := s.Save(t.Context(), rec); err != nil || !applied {
			t.Errorf("Open(%q): Save = %v, %v", dsn, applied, err)
		}
		t.Logf("Open(%q): dialect %s", dsn, db.Dialector.Name())
	}
}
