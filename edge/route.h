/* SPDX-License-Identifier: Apache-2.0 */
/* Account selection and account health for one edge. One router is shared
 * by every worker thread; all functions are thread-safe, never block on I/O
 * and take no global lock on the request path.
 *
 * Candidates of a request come from its group by binding mode (dedicated,
 * pool, hybrid: dedicated first, the pool only when no dedicated account is
 * usable). Usable = enabled, speaks the dialect, serves the model, not
 * cooling down (local cooldown or the hub's, whichever ends later), not
 * marked failing, and below max_concurrency. Order: the best priority tier
 * (LOWER number first) with one pick in front, then the rest of that tier,
 * then the lower tiers in priority order, so the caller can fail over.
 *
 * The pick without a session is nginx's smooth weighted round robin (weight
 * <= 0 counts as 1) over the usable accounts of the best tier; its running
 * weights live here per (group, account), survive snapshot swaps and are
 * guarded by one mutex per group, held only for the O(n) pick.
 *
 * With a session the pick is weighted rendezvous hashing, deterministic
 * across processes and hosts:
 *   hs = SipHash-2-4(key = bytes 0x00..0x0f, session bytes)
 *   x  = mix64(hs ^ mix64(account id)), mix64 = splitmix64's finaliser
 *   u  = ((x >> 11) + 0.5) / 2^53                      (in (0, 1))
 *   score = -weight / ln(u)      (ln computed here without libm)
 * The highest score wins (ties: lower id). The "home" of a session is the
 * winner among the eligible (enabled, dialect, model) accounts of the best
 * eligible tier. When home is usable and in the best usable tier it is the
 * pick; otherwise the best-scoring usable account of that tier is, and the
 * session becomes sticky to it: a bounded map (65536 entries, 4-way buckets,
 * least recently used entry replaced) from hash(session, group) to account
 * id (ids are never 0), with a TTL of 1 hour since last use. A sticky account that is usable
 * and in the best usable tier is preferred over home even after home
 * recovers ("moves, and stays moved"); priority still wins, so a recovered
 * better tier takes the session back to its home there. For a session the
 * rest of the first tier follows in descending score (a failover lands where
 * the session will move anyway); the round-robin state is not advanced.
 *
 * Health from reports (times are wall-clock unix milliseconds, the clock of
 * the hub's cooldown_until_ms):
 *   429        cooldown until now + retry_after_ms (30 s when <= 0, at most 1 h)
 *   529        cooldown of 1 s, no escalation
 *   5XX, CONNECT_FAIL, TIMEOUT
 *              cooldown 1 s, 2 s, 4 s ... at most 60 s for consecutive ones
 *   OK         resets the consecutive-failure count (a running cooldown stays)
 *   AUTH_FAIL  marks the account failing for 10 minutes. The mark is
 *              cleared early by a pruning snapshot in which the account is
 *              disabled (the hub took over) or carries a different
 *              credential (an operator fixed it). OK does not clear it.
 * Cooldowns only ever extend (the later end wins).
 *
 * Memory: per-account state (atomics) and per-group state are objects found
 * through open-addressing indexes of pointers. Lookups are lock-free; a new
 * id is inserted under a writer mutex, growing by a new index that replaces
 * the old one. edge_route_prune drops ids absent from the snapshot; freed
 * memory is reclaimed after a grace period in which every reader that could
 * still see it has left (two-parity reader counters, striped per thread),
 * so the hot path never waits for prune. */
#ifndef EDGE_ROUTE_H
#define EDGE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "dialect.h"
#include "snapshot.h"

struct edge_route;

/* Returns an owned, empty router (never fails; allocation aborts). */
struct edge_route *edge_route_new(void);
/* Frees the router; NULL is a no-op. No other call may be running. */
void edge_route_free(struct edge_route *r);

enum edge_route_outcome {
    EDGE_ROUTE_OK,
    EDGE_ROUTE_CONNECT_FAIL,
    EDGE_ROUTE_TIMEOUT,
    EDGE_ROUTE_5XX,
    EDGE_ROUTE_429,
    EDGE_ROUTE_529,
    EDGE_ROUTE_AUTH_FAIL, /* 401 / 403 */
};

struct edge_route_query {
    const struct edge_group *group; /* the key's group; NULL = no candidates */
    const char *model;              /* NUL-terminated; NULL = no model filter */
    enum edge_dialect dialect;
    const char *session; /* affinity key bytes; NULL or session_len 0 = none */
    size_t session_len;
    uint64_t now_ms; /* wall-clock unix ms */
};

#define EDGE_ROUTE_MAX_CANDIDATES 16

/* Writes up to `cap` (at most EDGE_ROUTE_MAX_CANDIDATES) usable accounts
 * for query q (borrowed) into out[] in failover order and returns how many;
 * 0 when none is usable. The pointers
 * are borrowed from the snapshot the caller holds a reference on (the one
 * q->group belongs to). Advances the group's round-robin state by one pick
 * (without a session) or may update the sticky session map (with one). Any
 * thread. */
size_t edge_route_candidates(struct edge_route *r, const struct edge_route_query *q,
                             const struct edge_account **out, size_t cap);

/* Takes one in-flight slot on account a: returns 0 when taken, -1 when the
 * account is at max_concurrency (nothing taken). Every 0 must be matched by
 * exactly one edge_route_release. In-flight is counted also without a
 * limit (for metrics). Any thread; lock-free. */
int edge_route_acquire(struct edge_route *r, const struct edge_account *a);
/* Returns the slot taken by a successful edge_route_acquire. Any thread. */
void edge_route_release(struct edge_route *r, const struct edge_account *a);

/* Records the outcome of one upstream attempt on account a at now_ms (see
 * the table above). retry_after_ms: what the provider asked for (429), <= 0
 * when it said nothing; ignored for other outcomes. Any thread. */
void edge_route_report(struct edge_route *r, const struct edge_account *a,
                       enum edge_route_outcome o, int64_t retry_after_ms, uint64_t now_ms);

/* Forgets the health and round-robin state of accounts and groups absent
 * from snapshot s (borrowed), and clears failing marks the snapshot
 * overrides (see above). Call after a new snapshot is swapped in; requests
 * still holding an older snapshot stay safe (their state is re-created on
 * demand). May wait a few microseconds for readers in other threads; never
 * call it from inside another edge_route_* call. Any thread. */
void edge_route_prune(struct edge_route *r, const struct edge_snapshot *s);

/* The session hash of the rendezvous formula above (SipHash-2-4, key
 * 00 01 .. 0f) of `len` bytes at `session` (borrowed). Pure; any thread. */
uint64_t edge_route_session_hash(const void *session, size_t len);

/* Health of one account, for metrics and tests. */
struct edge_route_account_state {
    uint64_t cooldown_until_ms; /* local cooldown end (not the hub's); 0 = never set */
    uint64_t failing_until_ms;  /* 0 = not marked */
    uint32_t in_flight;
    uint32_t consecutive_failures; /* 5xx / connect / timeout in a row */
};

/* Fills *out with the router's state of account `account_id`; returns 1
 * when it has state for it, 0 otherwise (*out zeroed). Any thread. */
int edge_route_account_state(struct edge_route *r, uint64_t account_id,
                             struct edge_route_account_state *out);

/* Router-wide figures for /metrics. */
struct edge_route_stats {
    size_t accounts;            /* accounts with health state */
    size_t groups;              /* groups with round-robin state */
    size_t rr_pairs;            /* (group, account) running weights */
    size_t cooling;             /* accounts whose local cooldown ends after now */
    size_t failing;             /* accounts marked failing at now */
    uint64_t in_flight;         /* sum of in-flight slots */
    size_t sticky_sessions;     /* live entries of the sticky session map */
    uint64_t cooldowns_started; /* counter: reports that set or extended a cooldown */
    uint64_t failing_marks;     /* counter: AUTH_FAIL reports */
};

/* Fills *out as of now_ms (wall-clock unix ms). O(accounts + groups +
 * sticky map); meant for a metrics scrape, not the request path. Any
 * thread. */
void edge_route_get_stats(struct edge_route *r, uint64_t now_ms, struct edge_route_stats *out);

#endif
