/* SPDX-License-Identifier: Apache-2.0 */
/* Account selection: priority tiers (lower number first) and nginx's smooth
 * weighted round robin within the first tier. The running weights of every
 * (group, account) pair sit in a small open-addressing table that survives
 * snapshot swaps, so a new configuration version does not reset the
 * rotation. */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"

struct route_slot {
    uint64_t group_id;
    uint64_t account_id;
    int64_t current; /* nginx's current_weight */
    int used;
};

struct edge_route {
    struct route_slot *slots;
    size_t cap; /* power of two */
    size_t used;
};

static size_t
route_hash(uint64_t group_id, uint64_t account_id)
{
    /* splitmix64 finaliser over both ids: ids are small and sequential. */
    uint64_t x = group_id * UINT64_C(0x9E3779B97F4A7C15) ^ account_id;

    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return (size_t)x;
}

static struct route_slot *
route_find_slot(struct route_slot *slots, size_t cap, uint64_t group_id, uint64_t account_id)
{
    size_t i = route_hash(group_id, account_id) & (cap - 1);

    while (slots[i].used && !(slots[i].group_id == group_id && slots[i].account_id == account_id))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static void
route_rehash(struct edge_route *r, size_t new_cap)
{
    struct route_slot *slots = gw_xcalloc(new_cap, sizeof(*slots));

    for (size_t i = 0; i < r->cap; i++) {
        if (!r->slots[i].used)
            continue;
        *route_find_slot(slots, new_cap, r->slots[i].group_id, r->slots[i].account_id) =
            r->slots[i];
    }
    free(r->slots);
    r->slots = slots;
    r->cap = new_cap;
}

/* The running weight of a pair, created at 0 on first use. */
static int64_t *
route_current(struct edge_route *r, uint64_t group_id, uint64_t account_id)
{
    struct route_slot *s;

    if ((r->used + 1) * 10 > r->cap * 7)
        route_rehash(r, r->cap * 2);
    s = route_find_slot(r->slots, r->cap, group_id, account_id);
    if (!s->used) {
        s->used = 1;
        s->group_id = group_id;
        s->account_id = account_id;
        s->current = 0;
        r->used++;
    }
    return &s->current;
}

struct edge_route *
edge_route_new(void)
{
    struct edge_route *r = gw_xcalloc(1, sizeof(*r));

    r->cap = 16;
    r->slots = gw_xcalloc(r->cap, sizeof(*r->slots));
    return r;
}

void
edge_route_free(struct edge_route *r)
{
    if (r == NULL)
        return;
    free(r->slots);
    free(r);
}

static int64_t
route_weight(const struct edge_account *a)
{
    return a->weight > 0 ? a->weight : 1;
}

size_t
edge_route_pick(struct edge_route *r, const struct edge_group *g, const struct edge_account **out,
                size_t cap)
{
    size_t first = SIZE_MAX, tier_end, n = 0, best = SIZE_MAX;
    int64_t total = 0, best_w = 0;
    int32_t tier;

    if (g == NULL || cap == 0)
        return 0;
    for (size_t i = 0; i < g->n_accounts; i++) {
        if (g->accounts[i]->enabled) {
            first = i;
            break;
        }
    }
    if (first == SIZE_MAX)
        return 0;
    /* Accounts are sorted by priority, so the first tier is a contiguous run
     * (disabled ones inside it are skipped). */
    tier = g->accounts[first]->priority;
    tier_end = first;
    while (tier_end < g->n_accounts && g->accounts[tier_end]->priority == tier)
        tier_end++;

    /* nginx smooth WRR: every candidate gains its weight, the largest
     * running weight wins (ties: lowest id, the sort order) and pays the
     * total back. */
    for (size_t i = first; i < tier_end; i++) {
        const struct edge_account *a = g->accounts[i];
        int64_t *cur;

        if (!a->enabled)
            continue;
        cur = route_current(r, g->id, a->id);
        *cur += route_weight(a);
        total += route_weight(a);
        if (best == SIZE_MAX || *cur > best_w) {
            best = i;
            best_w = *cur;
        }
    }
    *route_current(r, g->id, g->accounts[best]->id) -= total;

    out[n++] = g->accounts[best];
    for (size_t i = first; i < g->n_accounts && n < cap; i++) {
        if (i == best || !g->accounts[i]->enabled)
            continue;
        out[n++] = g->accounts[i];
    }
    return n;
}

void
edge_route_prune(struct edge_route *r, const struct edge_snapshot *s)
{
    size_t kept = 0;

    for (size_t i = 0; i < r->cap; i++) {
        struct route_slot *slot = &r->slots[i];
        const struct edge_group *g;
        int bound = 0;

        if (!slot->used)
            continue;
        g = edge_snapshot_group(s, slot->group_id);
        for (size_t j = 0; g != NULL && j < g->n_accounts; j++) {
            if (g->accounts[j]->id == slot->account_id) {
                bound = 1;
                break;
            }
        }
        if (bound)
            kept++;
        else
            slot->used = 0;
    }
    /* Linear probing has no tombstones here: rebuild to close the holes. */
    r->used = kept;
    route_rehash(r, r->cap);
}

size_t
edge_route_state_count(const struct edge_route *r)
{
    return r->used;
}
