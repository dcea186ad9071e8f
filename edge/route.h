/* SPDX-License-Identifier: Apache-2.0 */
/* Account selection for one request. Candidates are the group's enabled
 * accounts. Priority: a LOWER number is preferred (priority 0 before 10).
 * Within the best priority tier the pick is nginx's smooth weighted round
 * robin (weight <= 0 counts as 1), whose running state lives here, outside
 * the immutable snapshot, keyed by (group id, account id). The answer is an
 * ordered candidate list: the pick first, then the rest of its tier, then
 * the lower tiers in priority order, so a caller can fail over.
 *
 * Threading: a router belongs to one loop thread; no locking. */
#ifndef EDGE_ROUTE_H
#define EDGE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot.h"

struct edge_route;

/* Returns an owned, empty router (never fails; allocation aborts). */
struct edge_route *edge_route_new(void);
/* Frees the router; NULL is a no-op. */
void edge_route_free(struct edge_route *r);

/* Orders up to `cap` candidates of group `g` (borrowed, from a snapshot the
 * caller holds) into out[] and returns how many were written; 0 when the
 * group has no enabled account. Advances the round-robin state of the first
 * tier by one pick. The pointers are borrowed from the snapshot. */
size_t edge_route_pick(struct edge_route *r, const struct edge_group *g,
                       const struct edge_account **out, size_t cap);

/* Drops the state of accounts and groups that are not in snapshot `s`
 * (borrowed), so the state does not grow with account churn. Call after a
 * new snapshot is swapped in. */
void edge_route_prune(struct edge_route *r, const struct edge_snapshot *s);

/* Number of (group, account) pairs with round-robin state (for tests). */
size_t edge_route_state_count(const struct edge_route *r);

#endif
