package bench

import "testing"

// TestWriteThroughTargets checks what the serial request benchmarks
// compare: a write-through target writes each change to the database on
// the request path, and the default target none there, its background
// writer — its passes run between requests in virtual time — bringing the
// row up to date once per SyncInterval (2m) of clicks, its memcached round
// trips off the request path.
func TestWriteThroughTargets(t *testing.T) {
	e := newEnv(t)
	const clicks = 48 // 4 minutes at a click every 5 s
	for _, tc := range []struct {
		name                    string
		writes, writesOnThePath int64
	}{
		{"hybrid-gin-wt", clicks, clicks},
		{"hybrid-gin", 2, 0}, // at 2 and 4 minutes
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer e.closeTarget()
			tgt := builders[tc.name](e, targetTB{TB: t, e: e})
			tgt.writer.serial(true)
			c := tgt.newClient()
			cookie := tgt.newSession(t, c)
			tgt.flush()
			r0 := tgt.read()
			for range clicks {
				tgt.tick(clickInterval)
				if _, _, st := c.do("/modify", cookie, false); st != 200 {
					t.Fatalf("/modify: status %d", st)
				}
				if tgt.writer.due() {
					tgt.writer.pass()
				}
			}
			tgt.flush()
			r := tgt.read()
			d := r.sql.sub(r0.sql)
			if d.writes != tc.writes || d.onPathWrites != tc.writesOnThePath {
				t.Errorf("%d clicks: %d SQL writes, %d on the request path; want %d, %d on the path",
					clicks, d.writes, d.onPathWrites, tc.writes, tc.writesOnThePath)
			}
			// A get and a compare-and-swap per click on the request path;
			// per background sync off it, a GetMulti of the copies, and a
			// confirmation: a GetMulti that reads them afresh and a
			// compare-and-swap.
			path, all := r.pathTrips-r0.pathTrips, r.trips-r0.trips
			if want := 3 * (tc.writes - tc.writesOnThePath); path != 2*clicks || all-path != want {
				t.Errorf("%d clicks: %d memcached round trips on the request path, %d off it; want %d, %d",
					clicks, path, all-path, 2*clicks, want)
			}
		})
	}
}
