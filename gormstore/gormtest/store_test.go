package gormtest_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/hybridsession/hybridsession/core/durable"
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
		mustWrite(t, s, rec)
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
		if _, found, err := s.Load(ctx, rec.Key); err != nil || !found {
			t.Fatalf("Load = %v, %v", found, err)
		}
	})
}

// mustWrite writes each of recs on the version before its own, and fails
// t unless all apply.
func mustWrite(t testing.TB, s *gormstore.Store, recs ...durable.Record) {
	t.Helper()
	batch := make([]durable.Write, len(recs))
	for i, r := range recs {
		batch[i] = durable.Write{Record: r, Base: r.Version - 1}
	}
	applied, err := s.Write(context.Background(), batch)
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range applied {
		if !ok {
			t.Fatalf("Write(%q, version %d): applied = false", recs[i].Key, recs[i].Version)
		}
	}
}

func testRecord(name string, version uint64, expiresAt time.Time) durable.Record {
	return durable.Record{
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
		rec := testRecord("corrupt", 1, now.Add(time.Hour))
		rec.Payload = []byte{0xde, 0xad, 0, 0xbe, 0xef, 0xff, 0xfe}
		mustWrite(t, s, rec)
		got, found, err := s.Load(ctx, rec.Key)
		if err != nil || !found || string(got.Payload) != string(rec.Payload) {
			t.Fatalf("Load = %x, %v, %v; want %x", got.Payload, found, err, rec.Payload)
		}
		// Garbage written behind the Store's back, e.g. by a broken tool.
		garbage := []byte("not an envelope \x00\x01\x02 at all")
		if err := db.Table(table).Where("subject = ?", "user").Update("payload", garbage).Error; err != nil {
			t.Fatal(err)
		}
		got, found, err = s.Load(ctx, rec.Key)
		if err != nil || !found || string(got.Payload) != string(garbage) {
			t.Fatalf("Load of a garbage row = %q, %v, %v; want %q", got.Payload, found, err, garbage)
		}
		var judged []byte
		n, err := s.Reap(ctx, now.Add(2*time.Hour), 10, func(_ context.Context, b []durable.Record) ([]durable.Verdict, error) {
			judged = b[0].Payload
			return make([]durable.Verdict, len(b)), nil
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
		mustWrite(t, s, rec)
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
		if _, found, err := s2.Load(ctx, rec.Key); err != nil || !found {
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
	applied, err := s.Write(t.Context(), []durable.Write{{Record: testRecord("x", 1, time.Now().Add(time.Hour))}})
	if err == nil || !strings.HasPrefix(err.Error(), "gormstore: ") || applied != nil {
		t.Fatalf("Write to a missing table = %v, %v; want a gormstore error", applied, err)
	}
}

func TestInvalidArguments(t *testing.T) {
	db := openSQLite(t)
	s, table := newStore(t, db)
	ctx := t.Context()
	now := time.Now()
	if _, err := s.List(ctx, "", "", 0); !errors.Is(err, gormstore.ErrInvalidLimit) {
		t.Errorf("List(limit 0) error = %v, want ErrInvalidLimit", err)
	}
	if _, err := s.Reap(ctx, now, -1, nil); !errors.Is(err, gormstore.ErrInvalidLimit) {
		t.Errorf("Reap(limit -1) error = %v, want ErrInvalidLimit", err)
	}
	ok := durable.Write{Record: testRecord("ok", 1, now.Add(time.Hour))}
	bad := map[string]func(w *durable.Write){
		"empty key":           func(w *durable.Write) { w.Key = "" },
		"65-byte key":         func(w *durable.Write) { w.Key = strings.Repeat("k", 65) },
		"256-byte subject":    func(w *durable.Write) { w.Subject = strings.Repeat("s", 256) },
		"version > int64":     func(w *durable.Write) { w.Version, w.Base = math.MaxInt64+1, math.MaxInt64 },
		"version 0":           func(w *durable.Write) { w.Version = 0 },
		"version not base+1":  func(w *durable.Write) { w.Base = 2 },
		"version with base 0": func(w *durable.Write) { w.Version = 5 },
	}
	other := durable.Write{Record: testRecord("other", 1, now.Add(time.Hour))}
	for name, mutate := range bad {
		w := ok
		mutate(&w)
		// The valid write of the batch is not written either.
		if applied, err := s.Write(ctx, []durable.Write{other, w}); !errors.Is(err, gormstore.ErrInvalidRecord) || applied != nil {
			t.Errorf("Write(%s) = %v, %v; want ErrInvalidRecord", name, applied, err)
		}
		if _, found, _ := s.Load(ctx, other.Key); found {
			t.Fatalf("Write(%s) wrote the valid write of its batch", name)
		}
	}
	if applied, err := s.Write(ctx, []durable.Write{ok, other, ok}); !errors.Is(err, gormstore.ErrInvalidRecord) || applied != nil {
		t.Errorf("Write of a key twice = %v, %v; want ErrInvalidRecord", applied, err)
	}

	// The limits themselves are fine.
	top := ok
	top.Key, top.Subject = strings.Repeat("k", 64), strings.Repeat("s", 255)
	mustWrite(t, s, top.Record)
	if err := db.Table(table).Where("1 = 1").Update("version", int64(math.MaxInt64-1)).Error; err != nil {
		t.Fatal(err)
	}
	top.Version = math.MaxInt64
	mustWrite(t, s, top.Record)
	if got, found, err := s.Load(ctx, top.Key); err != nil || !found || got.Version != math.MaxInt64 {
		t.Fatalf("Load at the limits = %d, %v, %v", got.Version, found, err)
	}
}

// TestBadVerdicts checks the verdicts Reap refuses, with the error each
// wraps, and that none of them changes a row.
func TestBadVerdicts(t *testing.T) {
	s, _ := newStore(t, openSQLite(t))
	ctx := t.Context()
	now := time.Now()
	expired := testRecord("expired", 1, now.Add(-time.Minute))
	mustWrite(t, s, expired)
	keep := func(mutate func(r *durable.Record)) durable.Judge {
		return func(_ context.Context, b []durable.Record) ([]durable.Verdict, error) {
			r := b[0]
			r.Version++
			mutate(&r)
			return []durable.Verdict{{Action: durable.Keep, Record: r}}, nil
		}
	}
	verdicts := func(v ...durable.Verdict) durable.Judge {
		return func(context.Context, []durable.Record) ([]durable.Verdict, error) { return v, nil }
	}
	for name, c := range map[string]struct {
		judge durable.Judge
		want  error
	}{
		"kept record the table cannot hold":  {keep(func(r *durable.Record) { r.Subject = strings.Repeat("s", 256) }), gormstore.ErrInvalidRecord},
		"kept record under another key":      {keep(func(r *durable.Record) { r.Key = durabletest.Key("another") }), gormstore.ErrBadVerdicts},
		"kept record at the claimed version": {keep(func(r *durable.Record) { r.Version-- }), gormstore.ErrBadVerdicts},
		"unknown action":                     {verdicts(durable.Verdict{Action: durable.Leave + 1}), gormstore.ErrBadVerdicts},
		"verdict too many":                   {verdicts(durable.Verdict{}, durable.Verdict{}), gormstore.ErrBadVerdicts},
	} {
		if n, err := s.Reap(ctx, now, 10, c.judge); !errors.Is(err, c.want) || n != 0 {
			t.Errorf("Reap with a %s = %d, %v; want 0 and %v", name, n, err, c.want)
		}
		if got, found, _ := s.Load(ctx, expired.Key); !found || got.Version != expired.Version {
			t.Fatalf("Reap with a %s changed the row", name)
		}
	}
}

// TestReapStatementsPerBatch checks that a Reap batch costs the same number
// of statements whatever its size, up to the chunk size.
func TestReapStatementsPerBatch(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		log := &sqlLog{}
		s, _ := newStore(t, db.Session(&gorm.Session{Logger: log}))
		ctx := t.Context()
		now := time.Now()
		counts := map[int]int{}
		for _, size := range []int{10, 500} {
			insertExpired(t, s, fmt.Sprint("expired-", size, "-"), size, now)
			log.reset()
			n, err := s.Reap(ctx, now, size, func(_ context.Context, b []durable.Record) ([]durable.Verdict, error) {
				v := make([]durable.Verdict, len(b))
				for i := range 2 { // a few survivors
					r := b[i]
					r.Version++
					r.ExpiresAt = now.Add(time.Hour)
					v[i] = durable.Verdict{Action: durable.Keep, Record: r}
				}
				return v, nil
			})
			if err != nil || n != size {
				t.Fatalf("Reap = %d, %v; want %d", n, err, size)
			}
			counts[size] = len(log.statements())
			t.Logf("batch of %d: %d statements besides BEGIN and COMMIT: %q", size, counts[size], firstWords(log.statements()))
		}
		if counts[10] != counts[500] {
			t.Errorf("statements per batch grow with the batch: %v", counts)
		}
	})
}

// TestWriteStatementsPerBatch checks that a Write batch of inserts and
// updates costs the same number of statements whatever its size, up to the
// chunk size, and one more per chunk past it.
func TestWriteStatementsPerBatch(t *testing.T) {
	eachDatabase(t, func(t *testing.T, db *gorm.DB) {
		log := &sqlLog{}
		s, _ := newStore(t, db.Session(&gorm.Session{Logger: log}))
		counts := map[int]int{}
		for _, size := range []int{10, 500, 1200} {
			insertExpired(t, s, fmt.Sprint("write-", size, "-"), size/2, time.Now())
			batch := make([]durable.Write, size)
			for i := range batch {
				r := testRecord(fmt.Sprint("write-", size, "-", i), 1, time.Now().Add(time.Hour))
				if i < size/2 {
					r.Version = 2
				}
				batch[i] = durable.Write{Record: r, Base: r.Version - 1}
			}
			log.reset()
			applied, err := s.Write(t.Context(), batch)
			if err != nil || !slices.Equal(applied, slices.Repeat([]bool{true}, size)) {
				t.Fatalf("Write of %d rows = %v, %v", size, applied, err)
			}
			counts[size] = len(log.statements())
			t.Logf("batch of %d: %d statements besides BEGIN and COMMIT: %q", size, counts[size], firstWords(log.statements()))
		}
		if counts[10] != counts[500] {
			t.Errorf("statements per batch grow with the batch: %v", counts)
		}
		if counts[1200] > 3*counts[10] {
			t.Errorf("statements per batch grow faster than one per chunk: %v", counts)
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

// insertExpired inserts n expired rows named prefix0 ... prefix(n-1), in
// one batch.
func insertExpired(t testing.TB, s *gormstore.Store, prefix string, n int, now time.Time) {
	t.Helper()
	recs := make([]durable.Record, n)
	for i := range recs {
		recs[i] = testRecord(fmt.Sprint(prefix, i), 1, now.Add(-time.Duration(n-i)*time.Millisecond))
	}
	mustWrite(t, s, recs...)
}

// openShared opens a Store on the SQLite file at path with its own
// *gorm.DB and pool of three connections, as another process would.
func openShared(t *testing.T, path string) *gormstore.Store {
	t.Helper()
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
	return s
}

// TestSQLiteReapersAcrossHandles runs reapers on two independent *gorm.DB
// handles of one SQLite file, as two processes would: SQLite's write lock,
// not anything in this process, must keep them from judging a row twice.
func TestSQLiteReapersAcrossHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	stores := []*gormstore.Store{openShared(t, path), openShared(t, path)}
	const rows = 200
	now := time.Now()
	insertExpired(t, stores[0], "expired-", rows, now)

	var mu sync.Mutex
	seen := map[string]int{}
	judge := func(_ context.Context, b []durable.Record) ([]durable.Verdict, error) {
		mu.Lock()
		for _, r := range b {
			seen[r.Key]++
		}
		mu.Unlock()
		time.Sleep(3 * time.Millisecond)
		return make([]durable.Verdict, len(b)), nil
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
		if applied, err := s.Write(t.Context(), []durable.Write{{Record: rec}}); err != nil || !applied[0] {
			t.Errorf("Open(%q): Write = %v, %v", dsn, applied, err)
		}
		t.Logf("Open(%q): dialect %s", dsn, db.Dialector.Name())
	}
}
