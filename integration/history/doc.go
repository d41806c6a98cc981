// Package history is hybridsession's randomized, seeded fault-history
// checker. Its tests play histories — several app servers (each its own
// core.Store and core.Manager) sharing three real memcached processes and
// one real database, clients issuing random requests, faults drawn from the
// fault model of docs/consistency.md — record every acknowledged operation
// and every observation, and judge them against a reference model of the
// invariants I1–I7. The code is in the package's test files.
package history
