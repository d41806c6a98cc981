package integration

import (
	"context"
	"testing"
	"time"

	"github.com/hybridsession/hybridsession/core"
)

// The devices page on real memcached and each database, with two app
// servers and memcached ahead of the rows (SyncInterval an hour): listing
// sees activity and destruction that only memcached knows yet, leaves out a
// session memcached let expire while its row still looks alive, and
// revocation by id works from any app server.
func TestDevicesPageMemcachedAheadOfRows(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		st := newStack(t, b)
		slow := func(c *core.StoreConfig) { c.SyncInterval = time.Hour }
		a, bm := st.manager(t, slow, nil), st.manager(t, slow, nil)
		ctx := context.Background()
		subject := "ada-" + st.table // other tests share the databases
		login := func(m *core.Manager, ua string, remember bool) *core.Session {
			s := load(t, m, "")
			s.SetSubject(subject)
			s.SetDeviceInfo(map[string]string{"ua": ua})
			if remember {
				s.RememberMe(30 * 24 * time.Hour)
				s.SetIdleTimeout(7 * 24 * time.Hour)
			}
			if err := m.Save(ctx, s); err != nil {
				t.Fatal(err)
			}
			st.clock.Advance(time.Second)
			return s
		}
		laptop := login(a, "laptop", true)
		phone := login(bm, "phone", false)
		tablet := login(a, "tablet", false)

		// The laptop works on the other app server: memcached only.
		st.clock.Advance(5 * time.Minute)
		put(t, bm, laptop.Token(), "page", 3)
		active := st.clock.Now()
		if _, row, _ := st.row(t, laptop.Token()); !row.ActiveAt.Before(active) {
			t.Fatal("the row is not behind memcached: the test proves nothing")
		}
		// The phone logs out; the tablet goes idle past its 30 minutes while
		// its row (last sync + idle + SyncInterval) still looks alive.
		if err := load(t, a, phone.Token()).Destroy(ctx); err != nil {
			t.Fatal(err)
		}
		st.clock.Advance(40 * time.Minute)
		if !st.liveRow(t, tablet.Token()) {
			t.Fatal("the tablet's row expired already: the test proves nothing")
		}

		list, err := bm.Sessions(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != laptop.ID() {
			t.Fatalf("Sessions = %+v, want only the laptop", list)
		}
		got := list[0]
		if !got.LastActive.Equal(active) || !got.Persistent || got.Info["ua"] != "laptop" ||
			got.IdleExpiry.Sub(active) != 7*24*time.Hour {
			t.Fatalf("laptop %+v, want LastActive %v from memcached, persistent, 7-day idle expiry", got, active)
		}

		// A second login, then revoke it from the other app server by id.
		desk := login(bm, "desktop", false)
		if ok, err := a.RevokeSession(ctx, subject, desk.ID()); !ok || err != nil {
			t.Fatalf("RevokeSession = %v, %v", ok, err)
		}
		if !load(t, bm, desk.Token()).IsNew() {
			t.Fatal("the revoked session still loads")
		}
		other := login(a, "other", false)
		if n, err := bm.DestroyOtherSessions(ctx, load(t, bm, laptop.Token())); n != 1 || err != nil {
			t.Fatalf("DestroyOtherSessions = %d, %v", n, err)
		}
		if !load(t, a, other.Token()).IsNew() || load(t, a, laptop.Token()).IsNew() {
			t.Fatal("DestroyOtherSessions ended the wrong sessions")
		}
	})
}
