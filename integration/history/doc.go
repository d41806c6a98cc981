// Package history is hybridsession's randomized, seeded fault-history
// checker. Its tests play histories — several app servers (each its own
// core.Store, core.Manager, core.Reaper and scsstore.Store) sharing three
// real memcached processes and one real database, clients issuing random
// requests, faults drawn from the fault model of docs/consistency.md —
// record every acknowledged operation and every observation, and judge them
// against a reference model of the invariants I1–I7. The code is in the
// package's test files:
//
//   - cluster_test.go: the world. Three memcached processes (memcachedtest)
//     behind toxiproxy proxies (used as a library: cut = refused and reset,
//     blackhole = accepted and silent); two in the ring, the third joins and
//     leaves it. The database: SQLite in a file, or PostgreSQL/MariaDB behind
//     a proxy. Three app servers with clock offsets within ±40ms, each
//     durable tier wrapped so that a crash stops its writes.
//   - history_test.go: the recorder, the clients, the faults. Each client
//     has its own seeded random source and runs requests on random app
//     servers: login (SetSubject + RenewToken), Put (values unique per
//     request, so every observation names the request that wrote it),
//     durable Put (DurableKeys and MarkDurable), read-only loads, idle
//     probes, RenewToken, Destroy, DestroySubject, bursts of concurrent
//     writers on different keys, a writer racing a reader whose touch is due,
//     replays of old tokens, and scs requests (Find, Commit, Delete, and a
//     Commit racing a logout). Faults: memcached kill -9 and stop (restarted
//     empty), pause, flush_all, eviction of chosen sessions, cut and
//     blackhole; the spare node added to and removed from each app server at
//     different moments; database refused and hung; app server crashed
//     (queue lost) or restarted (Close); reaper passes whose archive hook
//     fails. Two scripted sequences target known interleavings: add a node
//     everywhere, log a user out everywhere, lose the new node's data; and a
//     database outage during a deploy followed by a memcached loss. After the
//     history every fault heals, every token is read from every app server,
//     memcached loses everything, and every token is read again.
//   - check_test.go: the model and the judgements (see the comments there
//     for each invariant's bound and slack).
//   - seeds_test.go: TestHistories; the fixed CI seeds and the soak.
//
// # Running
//
//	go test ./history                          # the CI seeds (about 80s)
//	HISTORY_SEED=20 go test ./history          # replay one seed (or 3,7,9)
//	HISTORY_TRACE=1 HISTORY_SEED=20 go test -v ./history   # and log the whole history, with what the app servers logged
//	make soak SEEDS=2000 PARALLEL=2            # from the repository root
//
// A seed fixes every random choice: the profile (seed mod 8), the database
// (among those whose DSNs are set), each client's requests and app servers,
// the faults and their durations. It does not fix the scheduling of
// goroutines or how long each request takes, so a replay repeats the
// history closely but not exactly; a timing-sensitive defect shows on most
// replays, not all. Profiles that inject database faults need PostgreSQL or
// MariaDB: on SQLite alone they run without them.
//
// # What it found on the code before the fixes of issue 9
//
// Before the fixes, the CI seeds found every defect of the issue that the
// checker reaches (the seed set runs on SQLite, PostgreSQL and MariaDB, as
// CI sets both DSNs):
//
//	seed  profile   db        invariant            defect
//	1     idle      sqlite    I3 idle              a: an idle session is restored from its row after memcached drops it at its TTL;
//	                                               b: a row postponed by the reaper (archive hook failed) serves a dead session
//	9     idle      postgres  I3 idle              a, b
//	2     subject   sqlite    I2                   c: DestroySubject after AddServer writes the tombstone on the new owner only;
//	                                               the new node loses it and a miss moves the old owner's live copy back
//	26    subject   sqlite    I2                   c
//	3     dbonly    sqlite    I4, I2, I3           d: without memcached, concurrent requests undo each other's changes
//	                                               (each database read starts a new version epoch); h: an scs Commit
//	                                               that read before a logout re-inserts the session; a: rows outlive IdleTimeout
//	16    mixed     mysql     I4                   d: with a node's breaker open, a reader's touch reverts a writer's change
//	20    durable   postgres  I5                   e: durable writes acknowledged during a database outage are dropped by
//	                                               Close (which returns nil) and lost when memcached loses them
//	5     hang      postgres  I7 liveness          f: a hung database blocks logins for as long as it hangs (7s)
//	6     longsubj  postgres  I7, I1               g: a 281-byte subject cut inside a UTF-8 character: 503 "memcached
//	                                               unavailable" while the database is up; sessions never reach the row
//	7     rolling   sqlite    I2, I4, I5           i: ring changes rolled across app servers: a logout during the
//	                                               disagreement is undone, acknowledged (durable) changes are lost
//	31    rolling   sqlite    I2, I4, I5           i
//	0     mixed     sqlite    I3 idle              a (with every kind of fault)
//
// The timing-sensitive findings (c, h, i) show on most runs of their seeds,
// not all; each profile's other seeds (seed + 8k) find the same defects. A
// sweep of seeds 0–47 (48 histories, 18,879 operations, 380 faults, 5
// minutes) found a and b in all 6 idle seeds, c in all 6 subject seeds, d
// in all 6 dbonly seeds (and mixed seed 16), e in 4 of 6 durable seeds, f
// in all 6 hang seeds, g in all 3 longsubj seeds on PostgreSQL (MariaDB
// stores the bytes), h in 3 of 6 dbonly seeds, i in 5 of 6 rolling seeds.
//
// Beyond the list, the checker also reported:
//
//   - I1: a session restored from its row (after a real cache loss, within
//     the allowed overshoot) is not synced again: the restore records the
//     read as activity in memcached, so the Manager's touch is skipped, and
//     the row keeps its old expires_at. A second cache loss within
//     IdleTimeout of the restore logs the user out (seeds 6, 14, 15, 18, 42,
//     after the final flush).
//   - I4/I6: memcached's clock ticks once a second, so an item stored with
//     a relative expiration of n seconds may vanish up to a second early.
//     The next read restores the row, up to SyncInterval stale, although
//     the session is alive and nothing failed (seeds 25 and 33, at 2.9s
//     idle; data read within TouchInterval of expiry is no longer judged,
//     so only earlier vanishings are reported now).
//
// # After the fixes
//
// With the fixes of issue 9 (docs/consistency.md names the mechanism behind
// each), the CI seeds report no violation. Three more fixes came from the
// checker itself, each with its seed: rows written around memcached expire
// exactly (seeds 1 and 9: a key written through while its node was paused,
// then purged, was restored past IdleTimeout); a restore from a row about to
// expire moves the row ahead at once, and memcached TTLs carry a second for
// memcached's clock (the two findings above); and for RingChangeWindow after
// a ring change a hit on a key that changed owner is checked against the row
// (seed 31: a DestroySubject on an app server that had not added the node
// yet, while another served the session from the new node). The soak found
// one more (seed 1081): a restore from a row about to expire
// moved the row ahead in the background, and a second cache loss 40 ms later
// logged the user out; the restore now writes the row before answering.
// Seed 1081 then showed the same on SQLite by another path: a read served
// from the row while the node was paused (I3's overshoot) touched the
// session in memcached once the node answered, and the row expired under
// it; a read from the row while memcached is unreachable now moves a row
// about to expire ahead too.
// And seed 1407: a RemoveServer rolled across app servers, a DestroySubject
// on one that had applied it, and a read 41 ms later on one that had not,
// from the node being removed; a Delete now also clears the key on its
// owner before the last ring change, for RingChangeWindow. The model was
// corrected once: without memcached, concurrent writers of one session are
// last-writer-wins, as docs/consistency.md states (seed 3).
//
// The PostgreSQL soak (seeds 2000–2149) found seed 2110, two races around a
// node restart: an app server whose breaker closed late purged the key it
// had written around the node after another app server, back sooner, had
// written a newer change there (memcached only) — a purge now removes only
// copies staler than what was written around the node; and a restore could
// refill memcached with a row read just before a write around the node,
// after that write's purge — a restore now reads the row again once its
// refill lands. On CI (both DSNs set) seed 2110 plays on MariaDB; the
// regression tests TestPurgeKeepsNewerCopy and
// TestRefillDoesNotHideWriteAround reproduce both races deterministically.
// The next soak (seeds 3000–3299, 5000–5099) found the first of those fixes
// too narrow (seeds 3176, 3257, 3273, 5081, I1): a touch written around a
// paused node keeps the session's version, so the node's copy, idle since,
// survived the purge and read as expired — the purge now compares activity
// at equal versions (TestPurgeRemovesSameVersionIdleCopy). The soak after
// that (seeds 6000–10199) found three more: seeds 6010 and 8010 (I1), where
// the checker itself had stopped reaping for the last 3 s of a history
// while I1 assumes a pass at least every SyncInterval — the reaper now runs
// until the final reads, at most SyncInterval apart; seed 10126 (I4), where
// the checker judged changes lost to a cut node against writes made during
// the cut, which branch from the row — it now judges them against the
// newest change before the fault (the code before this session fails it
// too); and seed 10175 (I1, also failing before this session): a node added
// and removed one app server at a time left, on the key's old owner, a copy
// written by an app server still on the old ring; served again after the
// removal, idle since, it read as expired (TestRemovedNodeDeadCopyCheckedAgainstRow).
// Seed 34089 (I1) showed the same shape without a ring change: an app
// server that could not reach a paused node served a session from its row
// (I3's overshoot) while another, reaching the node, read the node's copy,
// idle since, before the first one's purge. A dead copy is now always
// checked against the row (TestDeadCopyCheckedAgainstRow), which covers
// both. Seed 32024 (I4, once in five replays) was the checker's: four
// concurrent writers of one session 150 ms after a cut node answered again,
// one of them on an app server whose breaker had not closed yet — so it
// wrote around the node, and concurrent writers are last-writer-wins then
// (I6 holds while memcached is up). A node now counts as unreachable to an
// app server until its first probe after the fault could have closed the
// breaker. Seed 44072 (I3, once in five replays): a pass postponed an
// expired row with its deadline column at the pass's own now, and an app
// server whose clock ran a few milliseconds behind read it alive moments
// later, after memcached lost the dead envelope; the column now goes back
// to when the row expired (TestPostponedRowDeadToSlowerClock).
// Seed 42320 (I5, once in eight replays) found two gaps around a node
// added, paused and removed one app server at a time. An app server that
// wrote a durable change around the added node left the key's previous
// owner holding the copy from before; another app server, whose breaker
// for the added node never opened, missed there and moved that copy over,
// then renewed the token from it. A moved copy is now checked against the
// row (TestPriorOwnerCopyCheckedAgainstRow). And an app server that
// removed a node before its breaker closed dropped the node's dirty keys,
// so app servers still on the old ring read the stale copies; its probe
// now purges a removed node for RingChangeWindow
// (TestRemovedNodeDirtyKeysPurged). Seed 60009 (I1, once in six): an scs
// session committed around a paused node, and another app server read the
// node's copy, past scs's previous expiry but within scsstore's Grace, so
// the core Store took it for alive and never checked the row; scsstore's
// entries now end at scs's expiry in the Store's idle timeout, which makes
// such a copy dead, and a dead copy is checked against the row
// (scsstore's TestFindChecksCopyPastExpiryAgainstRow). A review then found
// that a row written around an unreachable node fell behind the writes
// after the node answered (TestRowWrittenAroundNodeOutlivesLaterChanges);
// the first fix, giving such rows SyncInterval of slack, let idle sessions
// come back from them once the purge had emptied memcached (seeds 90048
// and 96065, I3), and was replaced: the row expires exactly and its entry
// counts as never synced, so the first write after the node answers
// reaches the row. Seeds 90108, 92294 and 92295 (I7) were the checker's:
// connections opened in a history's first second took longer than
// DBTimeout on a loaded machine, so a few are now opened beforehand.
// Seeds 92093 and 112301 (I4, I5; the hang profile): a RenewToken while the
// database hung tombstoned the old token in memcached, failed on the row's
// tombstone, and left the client with a token memcached called destroyed
// and its row called live; the row's tombstone is now held by the
// background writer like a durable write (TestDeleteHeldUntilDatabaseReturns).
// Seed 400080 (I2) then found that hold's window: a RenewToken during a
// database outage held the old token's tombstone; once the database
// answered, the writer's next retry was up to 5s away, and an app server
// whose breaker for the tombstone's node was still open read the old
// token's row, live, and served it. The retries are now at most 1s apart
// (core's TestRetryBackoffIsCapped), and the checker allows that window,
// which docs/consistency.md states under I2. The same soak found two more
// judgements of the checker's too strict: seed 300136 (I2) was I5's double
// fault for a tombstone (the destroying app server restarted with it still
// queued, then memcached lost its copy), and seed 200145 (I3) was a row
// that stood in for a node 34 ms after it answered again, before the
// reader's breaker had closed; both are allowed by docs/consistency.md.
// Seed 900198 (I2) was the checker's too: a logout 99 ms after a node
// came back, on an app server whose breaker for it was still open, is the
// documented exception (another app server read the node's copy before the
// purge); the checker now gives the destroying app server the breaker's
// recovery time, as it does for writers. Seed 600017 (I1, once in three
// replays) was the library's: an app server that could not reach the node
// served a session from its row 6 ms before the row expired, and its write
// ahead lost to a reaper that had just postponed the row as expired; the
// read was recorded nowhere, and the next request found the session gone.
// Such a read now serves what the row holds after the lost write
// (TestReadAroundNodeLosesToPostponedRow). Seed 900116 (I7) was the
// harness's: the database proxy, cut and restored, could not listen on its
// port again — an outgoing connection had taken it from the ephemeral range;
// proxies and memcached processes now listen below that range
// (memcachedtest.FreePort). Seed 1400268 (I7) then showed another test
// process taking such a port while the proxy was cut; FreePort now also
// reserves each port across processes with a file lock. Seed 2400001 (I5,
// on the final code of that pass; 0 of 4 replays) is the case
// docs/consistency.md lists as not covered under I5: an app server's login
// timed out on a paused node and went around it, the add it had sent was
// applied when the node resumed, the same app server wrote a durable change
// through to the database, and another app server, whose breaker had never
// opened, read the node's older copy before the first one's probe purged
// it and renewed the token from it. The next pass closed that case with
// the fork rule (docs/consistency.md, I4): database writes are conditional
// on the row they were built on, and a write refused by a row written
// around its node replaces the forked copy with the row
// (integration/TestForkedCopyLosesToRow). A change built on such a copy may
// be lost to the row; the checker allows that (forked), with cases just
// outside it in TestCheckerJudges. Seed 60200080 (I2, in the 2,000-history
// soak of that code) was the library's: during a rolling AddServer an app
// server that had not applied it yet renewed a token on the key's previous
// owner, and an app server that had served the old token's live copy from
// the new owner while the database refused, unable to check it against
// the row; a hit on a key that changed owner now loses to a tombstone on
// its previous owner when the row cannot be read
// (integration/TestLaggardLogoutHoldsWhileDatabaseFails). Seed 70200079
// (I5, the rolling profile, same soak): an app server that had applied an
// AddServer wrote a durable change through the key's new owner, and one
// that had not renewed the token from the older copy on the previous
// owner. A first fix counted writes through a moved key's new owner as
// written around the previous owner (forks); the next soak then reported
// two violations in the rolling profile, which had had none (seeds
// 82000023, I3, and 82300047, I4, where a ring change undone soon after
// may make the older copy the new owner's), and the fix was withdrawn:
// docs/consistency.md lists durable changes made while a ring change rolls
// out as not covered by I5, and the checker allows their loss
// (duringRollout). Seed 100100064 (I5, in the soak of the next pass) was
// the checker's: a RenewToken while the database refused, whose app server
// then restarted with the old token's tombstone queued; after memcached
// lost everything the old token was served, as I5's double fault allows,
// and the checker judged what it showed against a durable change made
// since under the new token. A destroyed token served within I2's
// exceptions now has only I2 and I3 judged, not its data.
//
// # Settings the judgements assume
//
// StoreConfig.DBTimeout is 1s and the liveness bound 6s: a request-path
// database call must be bounded by DBTimeout or by a default below 5s.
// scsstore keeps a session SyncInterval past scs's expiry.
package history
