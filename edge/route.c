/* SPDX-License-Identifier: Apache-2.0 */
/* Account selection and account health, shared by every worker thread:
 * lock-free per-account atomics behind an index that readers walk without
 * locks, per-group round-robin state under a per-group mutex, a striped
 * sticky-session map, and a small grace-period scheme so pruning can free
 * state while other threads may still be reading it. */
#include "route.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"

#define ROUTE_429_DEFAULT_MS 30000
#define ROUTE_429_MAX_MS 3600000
#define ROUTE_529_MS 1000
#define ROUTE_BACKOFF_BASE_MS 1000
#define ROUTE_BACKOFF_MAX_MS 60000
#define ROUTE_FAILING_MS 600000

#define ROUTE_STICKY_WAYS 4
#define ROUTE_STICKY_BUCKETS 16384 /* x 4 ways = 65536 sessions */
#define ROUTE_STICKY_STRIPES 256
#define ROUTE_STICKY_TTL_MS 3600000

#define ROUTE_READER_SLOTS 16
#define ROUTE_CACHE_LINE 64

/* Health of one account. Only atomics: every worker reads and writes it. */
struct route_acct {
    uint64_t id; /* first member: the index reads it through a uint64_t * */
    _Atomic uint64_t cooldown_until;
    _Atomic uint64_t failing_until;
    _Atomic uint64_t failing_cred; /* credential fingerprint of the failing mark */
    _Atomic uint32_t in_flight;
    _Atomic uint32_t consecutive;
};

struct route_rr {
    uint64_t account_id;
    int64_t current; /* nginx's current_weight */
};

/* Round-robin state of one group, keyed by account id (sorted). */
struct route_group {
    uint64_t id; /* first member, as in route_acct */
    pthread_mutex_t mu;
    struct route_rr *rr;
    size_t n_rr;
    size_t cap_rr;
};

/* Open-addressing index of objects whose first member is their uint64_t id.
 * Slots go from NULL to a pointer once; a removal builds a new index. */
struct route_index {
    size_t mask;
    size_t used;
    _Atomic(void *) slots[];
};

enum route_retired_kind { ROUTE_RETIRED_INDEX, ROUTE_RETIRED_ACCT, ROUTE_RETIRED_GROUP };

struct route_retired {
    struct route_retired *next;
    enum route_retired_kind kind;
    void *p;
};

/* One reader counter pair per slot, each on its own cache line. */
struct route_reader {
    atomic_long n[2];
    char pad[ROUTE_CACHE_LINE - 2 * sizeof(atomic_long)];
};

struct route_sticky_entry {
    uint64_t key; /* 0 = empty */
    uint64_t account_id;
    uint64_t last_ms;
};

struct edge_route {
    _Atomic(struct route_index *) accts;
    _Atomic(struct route_index *) groups;
    /* Writers: inserts of new ids, prune, retirement. Never held by a
     * reader except for the first sight of an id. */
    pthread_mutex_t mu;
    struct route_retired *retired;
    /* Serialises grace periods; taken without r->mu, since a reader may
     * wait for r->mu while a grace period waits for that reader. */
    pthread_mutex_t sync_mu;
    struct route_reader *readers; /* ROUTE_READER_SLOTS, cache-line aligned */
    atomic_uint epoch;
    struct route_sticky_entry *sticky; /* BUCKETS * WAYS */
    pthread_mutex_t sticky_mu[ROUTE_STICKY_STRIPES];
    atomic_uint_fast64_t cooldowns_started;
    atomic_uint_fast64_t failing_marks;
};

/* ---- hashing ---------------------------------------------------------- */

static uint64_t
route_mix64(uint64_t x)
{
    /* splitmix64's finaliser: a bijection with full avalanche. */
    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return x;
}

static uint64_t
route_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void
route_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = route_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = route_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = route_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = route_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = route_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = route_rotl(v[2], 32);
}

static uint64_t
route_load_le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* SipHash-2-4 with the fixed key 00 01 .. 0f (the reference key), so every
 * edge computes the same value for the same bytes. */
static uint64_t
route_siphash(const void *data, size_t len)
{
    static const uint8_t key[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const uint8_t *p = data;
    uint64_t k0 = route_load_le64(key), k1 = route_load_le64(key + 8);
    uint64_t v[4] = {k0 ^ UINT64_C(0x736f6d6570736575), k1 ^ UINT64_C(0x646f72616e646f6d),
                     k0 ^ UINT64_C(0x6c7967656e657261), k1 ^ UINT64_C(0x7465646279746573)};
    uint64_t b = (uint64_t)len << 56, m;
    size_t full = len & ~(size_t)7;

    for (size_t i = 0; i < full; i += 8) {
        m = route_load_le64(p + i);
        v[3] ^= m;
        route_sipround(v);
        route_sipround(v);
        v[0] ^= m;
    }
    for (size_t i = full; i < len; i++)
        b |= (uint64_t)p[i] << (8 * (i - full));
    v[3] ^= b;
    route_sipround(v);
    route_sipround(v);
    v[0] ^= b;
    v[2] ^= 0xff;
    for (int i = 0; i < 4; i++)
        route_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

uint64_t
edge_route_session_hash(const void *session, size_t len)
{
    return route_siphash(session, len);
}

/* Natural logarithm of x in (0, 1] with basic IEEE operations only: the same
 * bits on every host for the same input (no libm version differences). */
static double
route_ln(double x)
{
    static const double ln2 = 0.69314718055994530942;
    uint64_t bits;
    double m, s, s2, sum;
    int e;

    memcpy(&bits, &x, sizeof(bits));
    e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & UINT64_C(0x000FFFFFFFFFFFFF)) | UINT64_C(0x3FF0000000000000);
    memcpy(&m, &bits, sizeof(m));
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e++;
    }
    /* ln(m) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m-1)/(m+1),
     * |s| <= 0.172: the terms up to s^21 leave a relative error below 1e-18.
     * Horner form; the coefficients are constants folded at compile time. */
    s = (m - 1.0) / (m + 1.0);
    s2 = s * s;
    sum = 1.0 / 21.0;
    sum = sum * s2 + 1.0 / 19.0;
    sum = sum * s2 + 1.0 / 17.0;
    sum = sum * s2 + 1.0 / 15.0;
    sum = sum * s2 + 1.0 / 13.0;
    sum = sum * s2 + 1.0 / 11.0;
    sum = sum * s2 + 1.0 / 9.0;
    sum = sum * s2 + 1.0 / 7.0;
    sum = sum * s2 + 1.0 / 5.0;
    sum = sum * s2 + 1.0 / 3.0;
    sum = sum * s2 + 1.0;
    sum *= s;
    return 2.0 * sum + (double)e * ln2;
}

static int32_t
route_weight(const struct edge_account *a)
{
    return a->weight > 0 ? a->weight : 1;
}

/* Weighted rendezvous score of account a for session hash hs. */
static double
route_score(uint64_t hs, const struct edge_account *a)
{
    uint64_t x = route_mix64(hs ^ route_mix64(a->id));
    double u = ((double)(x >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */

    return -(double)route_weight(a) / route_ln(u);
}

/* Does (score sa, account a) rank before (sb, b)? Ties: lower id. */
static int
route_score_before(double sa, const struct edge_account *a, double sb, const struct edge_account *b)
{
    if (sa != sb)
        return sa > sb;
    return a->id < b->id;
}

static uint64_t
route_cred_fp(const struct edge_account *a)
{
    return route_siphash(a->credential ? a->credential : "", a->credential_len);
}

/* ---- reader sections and reclamation ---------------------------------- */

static atomic_uint route_next_slot;
static _Thread_local unsigned route_tls_slot; /* slot + 1; 0 = unassigned */

struct route_section {
    struct route_reader *rd;
    unsigned parity;
};

static struct route_section
route_enter(struct edge_route *r)
{
    struct route_section sec;

    if (route_tls_slot == 0)
        route_tls_slot = atomic_fetch_add(&route_next_slot, 1) % ROUTE_READER_SLOTS + 1;
    sec.rd = &r->readers[route_tls_slot - 1];
    /* Announce on the parity of the epoch seen, then confirm the epoch did
     * not flip meanwhile: a writer that flipped either sees this count or
     * this reader retries on the new parity (all seq_cst). */
    for (;;) {
        unsigned e = atomic_load(&r->epoch);

        atomic_fetch_add(&sec.rd->n[e & 1], 1);
        if (atomic_load(&r->epoch) == e) {
            sec.parity = e & 1;
            return sec;
        }
        atomic_fetch_sub(&sec.rd->n[e & 1], 1);
    }
}

static void
route_leave(struct route_section sec)
{
    atomic_fetch_sub_explicit(&sec.rd->n[sec.parity], 1, memory_order_release);
}

/* Waits until every reader that entered before this call has left. Holds
 * r->sync_mu, NOT r->mu; must not run inside a reader section. */
static void
route_synchronize(struct edge_route *r)
{
    unsigned e = atomic_load(&r->epoch);

    atomic_store(&r->epoch, e + 1);
    for (size_t i = 0; i < ROUTE_READER_SLOTS; i++) {
        while (atomic_load(&r->readers[i].n[e & 1]) != 0)
            sched_yield();
    }
}

static void
route_group_destroy(struct route_group *g)
{
    pthread_mutex_destroy(&g->mu);
    free(g->rr);
    free(g);
}

static void
route_retire(struct edge_route *r, enum route_retired_kind kind, void *p)
{
    struct route_retired *t = gw_xmalloc(sizeof(*t));

    t->kind = kind;
    t->p = p;
    t->next = r->retired;
    r->retired = t;
}

static void
route_free_retired(struct route_retired *t)
{
    while (t != NULL) {
        struct route_retired *next = t->next;

        if (t->kind == ROUTE_RETIRED_GROUP)
            route_group_destroy(t->p);
        else
            free(t->p);
        free(t);
        t = next;
    }
}

/* ---- index ------------------------------------------------------------ */

static struct route_index *
route_index_new(size_t cap)
{
    struct route_index *idx = gw_xcalloc(1, sizeof(*idx) + cap * sizeof(idx->slots[0]));

    idx->mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&idx->slots[i], NULL);
    return idx;
}

static void *
route_index_find(struct route_index *idx, uint64_t id)
{
    size_t i = (size_t)route_mix64(id) & idx->mask;

    /* At most half full: an empty slot always ends the probe. */
    for (;;) {
        void *p = atomic_load_explicit(&idx->slots[i], memory_order_acquire);

        if (p == NULL)
            return NULL;
        if (*(const uint64_t *)p == id)
            return p;
        i = (i + 1) & idx->mask;
    }
}

/* Writer (r->mu held) puts p into idx, which has room. */
static void
route_index_put(struct route_index *idx, void *p)
{
    size_t i = (size_t)route_mix64(*(const uint64_t *)p) & idx->mask;

    while (atomic_load_explicit(&idx->slots[i], memory_order_relaxed) != NULL)
        i = (i + 1) & idx->mask;
    atomic_store_explicit(&idx->slots[i], p, memory_order_release);
    idx->used++;
}

/* Writer: adds p to *where, growing into a new index when more than half
 * full; the old one is retired (readers may still walk it). */
static void
route_index_add(struct edge_route *r, _Atomic(struct route_index *) *where, void *p)
{
    struct route_index *idx = atomic_load_explicit(where, memory_order_relaxed);

    if ((idx->used + 1) * 2 > idx->mask + 1) {
        struct route_index *bigger = route_index_new((idx->mask + 1) * 2);

        for (size_t i = 0; i <= idx->mask; i++) {
            void *q = atomic_load_explicit(&idx->slots[i], memory_order_relaxed);
            if (q != NULL)
                route_index_put(bigger, q);
        }
        atomic_store_explicit(where, bigger, memory_order_release);
        route_retire(r, ROUTE_RETIRED_INDEX, idx);
        idx = bigger;
    }
    route_index_put(idx, p);
}

static struct route_acct *
route_acct_find(struct edge_route *r, uint64_t id)
{
    return route_index_find(atomic_load_explicit(&r->accts, memory_order_acquire), id);
}

/* Finds or creates the state of account id; inside a reader section. */
static struct route_acct *
route_acct_get(struct edge_route *r, uint64_t id)
{
    struct route_acct *st = route_acct_find(r, id);

    if (st != NULL)
        return st;
    pthread_mutex_lock(&r->mu);
    st = route_acct_find(r, id);
    if (st == NULL) {
        st = gw_xcalloc(1, sizeof(*st));
        st->id = id;
        atomic_init(&st->cooldown_until, 0);
        atomic_init(&st->failing_until, 0);
        atomic_init(&st->failing_cred, 0);
        atomic_init(&st->in_flight, 0);
        atomic_init(&st->consecutive, 0);
        route_index_add(r, &r->accts, st);
    }
    pthread_mutex_unlock(&r->mu);
    return st;
}

static struct route_group *
route_group_get(struct edge_route *r, uint64_t id)
{
    struct route_group *g =
        route_index_find(atomic_load_explicit(&r->groups, memory_order_acquire), id);

    if (g != NULL)
        return g;
    pthread_mutex_lock(&r->mu);
    g = route_index_find(atomic_load_explicit(&r->groups, memory_order_relaxed), id);
    if (g == NULL) {
        g = gw_xcalloc(1, sizeof(*g));
        g->id = id;
        pthread_mutex_init(&g->mu, NULL);
        route_index_add(r, &r->groups, g);
    }
    pthread_mutex_unlock(&r->mu);
    return g;
}

/* The running weight of (g, account_id), created at 0; g->mu held. The
 * pointer is valid until the next call. */
static int64_t *
route_rr_current(struct route_group *g, uint64_t account_id)
{
    size_t lo = 0, hi = g->n_rr;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (g->rr[mid].account_id == account_id)
            return &g->rr[mid].current;
        if (g->rr[mid].account_id < account_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (g->n_rr == g->cap_rr) {
        g->cap_rr = g->cap_rr ? g->cap_rr * 2 : 8;
        g->rr = gw_xrealloc(g->rr, g->cap_rr * sizeof(*g->rr));
    }
    memmove(&g->rr[lo + 1], &g->rr[lo], (g->n_rr - lo) * sizeof(*g->rr));
    g->rr[lo].account_id = account_id;
    g->rr[lo].current = 0;
    g->n_rr++;
    return &g->rr[lo].current;
}

/* ---- sticky sessions ---------------------------------------------------- */

static pthread_mutex_t *
route_sticky_lock(struct edge_route *r, uint64_t key, struct route_sticky_entry **bucket)
{
    size_t b = (size_t)(key % ROUTE_STICKY_BUCKETS);

    *bucket = &r->sticky[b * ROUTE_STICKY_WAYS];
    return &r->sticky_mu[b % ROUTE_STICKY_STRIPES];
}

static int
route_sticky_live(const struct route_sticky_entry *e, uint64_t now_ms)
{
    return e->key != 0 && e->last_ms + ROUTE_STICKY_TTL_MS > now_ms;
}

/* Account id the session is sticky to (refreshing its age), 0 = none. */
static uint64_t
route_sticky_get(struct edge_route *r, uint64_t key, uint64_t now_ms)
{
    struct route_sticky_entry *b;
    pthread_mutex_t *mu = route_sticky_lock(r, key, &b);
    uint64_t id = 0;

    pthread_mutex_lock(mu);
    for (size_t i = 0; i < ROUTE_STICKY_WAYS; i++) {
        if (b[i].key != key)
            continue;
        if (route_sticky_live(&b[i], now_ms)) {
            id = b[i].account_id;
            if (now_ms > b[i].last_ms)
                b[i].last_ms = now_ms;
        } else {
            b[i].key = 0;
        }
        break;
    }
    pthread_mutex_unlock(mu);
    return id;
}

/* Sets (account_id != 0) or deletes (0) the entry of key. */
static void
route_sticky_set(struct edge_route *r, uint64_t key, uint64_t account_id, uint64_t now_ms)
{
    struct route_sticky_entry *b, *victim = NULL;
    pthread_mutex_t *mu = route_sticky_lock(r, key, &b);

    pthread_mutex_lock(mu);
    for (size_t i = 0; i < ROUTE_STICKY_WAYS; i++) {
        if (b[i].key == key) {
            victim = &b[i];
            break;
        }
    }
    if (victim == NULL && account_id != 0) {
        /* An empty or expired way, else the least recently used one. */
        for (size_t i = 0; i < ROUTE_STICKY_WAYS; i++) {
            if (!route_sticky_live(&b[i], now_ms)) {
                victim = &b[i];
                break;
            }
            if (victim == NULL || b[i].last_ms < victim->last_ms)
                victim = &b[i];
        }
    }
    if (victim != NULL) {
        victim->key = account_id != 0 ? key : 0;
        victim->account_id = account_id;
        victim->last_ms = now_ms;
    }
    pthread_mutex_unlock(mu);
}

/* ---- lifecycle ---------------------------------------------------------- */

struct edge_route *
edge_route_new(void)
{
    struct edge_route *r = gw_xcalloc(1, sizeof(*r));

    atomic_init(&r->accts, route_index_new(64));
    atomic_init(&r->groups, route_index_new(16));
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->sync_mu, NULL);
    r->readers = aligned_alloc(ROUTE_CACHE_LINE, ROUTE_READER_SLOTS * sizeof(*r->readers));
    if (r->readers == NULL) {
        fputs("aicarpool: out of memory\n", stderr);
        abort();
    }
    for (size_t i = 0; i < ROUTE_READER_SLOTS; i++) {
        atomic_init(&r->readers[i].n[0], 0);
        atomic_init(&r->readers[i].n[1], 0);
    }
    atomic_init(&r->epoch, 0);
    /* Large and zeroed: calloc maps it lazily, so idle memory stays low. */
    r->sticky = gw_xcalloc((size_t)ROUTE_STICKY_BUCKETS * ROUTE_STICKY_WAYS, sizeof(*r->sticky));
    for (size_t i = 0; i < ROUTE_STICKY_STRIPES; i++)
        pthread_mutex_init(&r->sticky_mu[i], NULL);
    atomic_init(&r->cooldowns_started, 0);
    atomic_init(&r->failing_marks, 0);
    return r;
}

void
edge_route_free(struct edge_route *r)
{
    struct route_index *idx;

    if (r == NULL)
        return;
    idx = atomic_load(&r->accts);
    for (size_t i = 0; i <= idx->mask; i++)
        free(atomic_load(&idx->slots[i]));
    free(idx);
    idx = atomic_load(&r->groups);
    for (size_t i = 0; i <= idx->mask; i++) {
        struct route_group *g = atomic_load(&idx->slots[i]);
        if (g != NULL)
            route_group_destroy(g);
    }
    free(idx);
    route_free_retired(r->retired);
    for (size_t i = 0; i < ROUTE_STICKY_STRIPES; i++)
        pthread_mutex_destroy(&r->sticky_mu[i]);
    free(r->sticky);
    free(r->readers);
    pthread_mutex_destroy(&r->sync_mu);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- candidates ----------------------------------------------------------- */

enum route_fit {
    ROUTE_INELIGIBLE, /* disabled, wrong dialect or model: never for this request */
    ROUTE_BUSY,       /* eligible but cooling, failing or full right now */
    ROUTE_USABLE,
};

static int
route_serves_model(const struct edge_account *a, const char *model)
{
    if (model == NULL || a->n_models == 0)
        return 1;
    for (size_t i = 0; i < a->n_models; i++) {
        const char *m = a->models[i];
        size_t len = strlen(m);

        if (len > 0 && m[len - 1] == '*') {
            if (strncmp(model, m, len - 1) == 0)
                return 1;
        } else if (strcmp(model, m) == 0) {
            return 1;
        }
    }
    return 0;
}

static enum route_fit
route_fit(struct edge_route *r, const struct edge_account *a, const struct edge_route_query *q)
{
    const struct route_acct *st;

    if (!a->enabled || (a->dialects & EDGE_DIALECT_BIT(q->dialect)) == 0 ||
        !route_serves_model(a, q->model))
        return ROUTE_INELIGIBLE;
    if (a->cooldown_until_ms > 0 && (uint64_t)a->cooldown_until_ms > q->now_ms)
        return ROUTE_BUSY;
    st = route_acct_find(r, a->id);
    if (st == NULL)
        return ROUTE_USABLE;
    if (atomic_load_explicit(&st->cooldown_until, memory_order_relaxed) > q->now_ms ||
        atomic_load_explicit(&st->failing_until, memory_order_relaxed) > q->now_ms)
        return ROUTE_BUSY;
    if (a->max_concurrency > 0 &&
        atomic_load_explicit(&st->in_flight, memory_order_relaxed) >= a->max_concurrency)
        return ROUTE_BUSY;
    return ROUTE_USABLE;
}

/* nginx smooth weighted round robin over the usable accounts of
 * list[lo, hi): every one gains its weight, the largest running weight wins
 * (ties: the earlier, i.e. lower id) and pays the total back. */
static const struct edge_account *
route_swrr(struct edge_route *r, const struct edge_route_query *q,
           const struct edge_account *const *list, size_t lo, size_t hi)
{
    struct route_group *g = route_group_get(r, q->group->id);
    const struct edge_account *best = NULL;
    int64_t best_w = 0, total = 0;

    pthread_mutex_lock(&g->mu);
    for (size_t i = lo; i < hi; i++) {
        const struct edge_account *a = list[i];
        int64_t *cur;

        if (route_fit(r, a, q) != ROUTE_USABLE)
            continue;
        cur = route_rr_current(g, a->id);
        *cur += route_weight(a);
        total += route_weight(a);
        if (best == NULL || *cur > best_w) {
            best = a;
            best_w = *cur;
        }
    }
    if (best != NULL)
        *route_rr_current(g, best->id) -= total;
    pthread_mutex_unlock(&g->mu);
    return best;
}

/* Appends the usable accounts of list[lo, hi) other than `skip` to out. */
static size_t
route_append(struct edge_route *r, const struct edge_route_query *q,
             const struct edge_account *const *list, size_t lo, size_t hi,
             const struct edge_account *skip, const struct edge_account **out, size_t n, size_t cap)
{
    for (size_t i = lo; i < hi && n < cap; i++) {
        if (list[i] != skip && route_fit(r, list[i], q) == ROUTE_USABLE)
            out[n++] = list[i];
    }
    return n;
}

/* Keeps the best `cap` (score, account) pairs in top[], best first. */
static void
route_top_insert(const struct edge_account **top, double *top_s, size_t *n_top, size_t cap,
                 const struct edge_account *a, double s)
{
    size_t j = *n_top < cap ? *n_top : cap;

    while (j > 0 && route_score_before(s, a, top_s[j - 1], top[j - 1])) {
        if (j < cap) {
            top[j] = top[j - 1];
            top_s[j] = top_s[j - 1];
        }
        j--;
    }
    if (j < cap) {
        top[j] = a;
        top_s[j] = s;
        if (*n_top < cap)
            (*n_top)++;
    }
}

/* Session pick over the best usable tier list[lo, hi); writes the first
 * tier in affinity order into out and returns how many. */
static size_t
route_session_tier(struct edge_route *r, const struct edge_route_query *q,
                   const struct edge_account *const *list, size_t n_list, size_t lo, size_t hi,
                   const struct edge_account **out, size_t cap)
{
    uint64_t hs = edge_route_session_hash(q->session, q->session_len);
    uint64_t key = (hs ^ route_mix64(q->group->id)) | 1; /* 0 marks an empty way */
    const struct edge_account *home = NULL, *first = NULL;
    const struct edge_account *top[EDGE_ROUTE_MAX_CANDIDATES];
    double top_s[EDGE_ROUTE_MAX_CANDIDATES], home_s = 0.0;
    size_t n_top = 0, n = 0, fe = SIZE_MAX;
    uint64_t sticky_id;

    /* Home: the winner over the eligible accounts of the best eligible
     * tier, whatever their health. That tier is usually the usable one
     * [lo, hi) too (lo is eligible, so fe <= lo): one pass scores both. */
    for (size_t i = 0; i < n_list; i++) {
        const struct edge_account *a = list[i];
        enum route_fit fit;
        double s;

        if (fe != SIZE_MAX && a->priority != list[fe]->priority)
            break;
        fit = route_fit(r, a, q);
        if (fit == ROUTE_INELIGIBLE)
            continue;
        if (fe == SIZE_MAX)
            fe = i;
        s = route_score(hs, a);
        if (home == NULL || route_score_before(s, a, home_s, home)) {
            home = a;
            home_s = s;
        }
        if (fit == ROUTE_USABLE && i >= lo && i < hi)
            route_top_insert(top, top_s, &n_top, cap, a, s);
    }
    /* The whole home tier is busy: rank the lower usable tier. */
    if (list[fe]->priority != list[lo]->priority) {
        for (size_t i = lo; i < hi; i++) {
            if (route_fit(r, list[i], q) == ROUTE_USABLE)
                route_top_insert(top, top_s, &n_top, cap, list[i], route_score(hs, list[i]));
        }
    }

    sticky_id = route_sticky_get(r, key, q->now_ms);
    for (size_t i = lo; sticky_id != 0 && i < hi; i++) {
        if (list[i]->id == sticky_id && route_fit(r, list[i], q) == ROUTE_USABLE) {
            first = list[i];
            break;
        }
    }
    if (first == NULL) {
        int home_usable = 0;

        for (size_t i = lo; home != NULL && i < hi; i++) {
            if (list[i] == home) {
                home_usable = route_fit(r, home, q) == ROUTE_USABLE;
                break;
            }
        }
        if (home_usable) {
            first = home;
            if (sticky_id != 0)
                route_sticky_set(r, key, 0, q->now_ms);
        } else if (n_top > 0) {
            /* The session moves; remember where, so it stays there. */
            first = top[0];
            route_sticky_set(r, key, first->id, q->now_ms);
        }
    }
    if (first == NULL)
        return 0;
    out[n++] = first;
    for (size_t i = 0; i < n_top && n < cap; i++) {
        if (top[i] != first)
            out[n++] = top[i];
    }
    return n;
}

static size_t
route_candidates(struct edge_route *r, const struct edge_route_query *q,
                 const struct edge_account **out, size_t cap)
{
    const struct edge_group *g = q->group;
    const struct edge_account *const *list = g->accounts;
    size_t n_list = g->n_accounts, lo = SIZE_MAX, hi, n = 0;

    if (g->mode == EDGE_GROUP_POOL) {
        list = g->pool_accounts;
        n_list = g->n_pool_accounts;
    }
    for (size_t i = 0; i < n_list; i++) {
        if (route_fit(r, list[i], q) == ROUTE_USABLE) {
            lo = i;
            break;
        }
    }
    if (lo == SIZE_MAX && g->mode == EDGE_GROUP_HYBRID) {
        list = g->pool_accounts;
        n_list = g->n_pool_accounts;
        for (size_t i = 0; i < n_list; i++) {
            if (route_fit(r, list[i], q) == ROUTE_USABLE) {
                lo = i;
                break;
            }
        }
    }
    if (lo == SIZE_MAX)
        return 0;
    /* Lists are sorted by priority: the best usable tier is one run. */
    hi = lo;
    while (hi < n_list && list[hi]->priority == list[lo]->priority)
        hi++;

    if (q->session != NULL && q->session_len > 0) {
        n = route_session_tier(r, q, list, n_list, lo, hi, out, cap);
    } else {
        const struct edge_account *pick = route_swrr(r, q, list, lo, hi);

        if (pick != NULL) {
            out[n++] = pick;
            n = route_append(r, q, list, lo, hi, pick, out, n, cap);
        }
    }
    if (n == 0) /* the tier went away under us: plain order of the rest */
        return route_append(r, q, list, lo, n_list, NULL, out, 0, cap);
    return route_append(r, q, list, hi, n_list, NULL, out, n, cap);
}

size_t
edge_route_candidates(struct edge_route *r, const struct edge_route_query *q,
                      const struct edge_account **out, size_t cap)
{
    struct route_section sec;
    size_t n;

    if (q == NULL || q->group == NULL || cap == 0)
        return 0;
    if (cap > EDGE_ROUTE_MAX_CANDIDATES)
        cap = EDGE_ROUTE_MAX_CANDIDATES;
    sec = route_enter(r);
    n = route_candidates(r, q, out, cap);
    route_leave(sec);
    return n;
}

/* ---- health ------------------------------------------------------------- */

int
edge_route_acquire(struct edge_route *r, const struct edge_account *a)
{
    struct route_section sec = route_enter(r);
    struct route_acct *st = route_acct_get(r, a->id);
    uint32_t cur = atomic_load_explicit(&st->in_flight, memory_order_relaxed);
    int rv = 0;

    do {
        if (a->max_concurrency > 0 && cur >= a->max_concurrency) {
            rv = -1;
            break;
        }
    } while (!atomic_compare_exchange_weak_explicit(&st->in_flight, &cur, cur + 1,
                                                    memory_order_acq_rel, memory_order_relaxed));
    route_leave(sec);
    return rv;
}

void
edge_route_release(struct edge_route *r, const struct edge_account *a)
{
    struct route_section sec = route_enter(r);
    struct route_acct *st = route_acct_find(r, a->id);

    /* No state: pruned while in flight (the account left the snapshot). A
     * state re-created since then must not wrap below zero. */
    if (st != NULL) {
        uint32_t cur = atomic_load_explicit(&st->in_flight, memory_order_relaxed);

        while (cur > 0 &&
               !atomic_compare_exchange_weak_explicit(&st->in_flight, &cur, cur - 1,
                                                      memory_order_acq_rel, memory_order_relaxed))
            ;
    }
    route_leave(sec);
}

/* Moves the cooldown end to `until` unless it already ends later. */
static void
route_extend(struct edge_route *r, _Atomic uint64_t *end, uint64_t until)
{
    uint64_t cur = atomic_load_explicit(end, memory_order_relaxed);

    while (cur < until) {
        if (atomic_compare_exchange_weak_explicit(end, &cur, until, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_add_explicit(&r->cooldowns_started, 1, memory_order_relaxed);
            return;
        }
    }
}

void
edge_route_report(struct edge_route *r, const struct edge_account *a, enum edge_route_outcome o,
                  int64_t retry_after_ms, uint64_t now_ms)
{
    struct route_section sec = route_enter(r);
    struct route_acct *st = route_acct_get(r, a->id);
    uint64_t d;
    uint32_t n;

    switch (o) {
    case EDGE_ROUTE_OK:
        atomic_store_explicit(&st->consecutive, 0, memory_order_relaxed);
        break;
    case EDGE_ROUTE_429:
        d = retry_after_ms > 0 ? (uint64_t)retry_after_ms : ROUTE_429_DEFAULT_MS;
        route_extend(r, &st->cooldown_until,
                     now_ms + (d < ROUTE_429_MAX_MS ? d : ROUTE_429_MAX_MS));
        break;
    case EDGE_ROUTE_529:
        route_extend(r, &st->cooldown_until, now_ms + ROUTE_529_MS);
        break;
    case EDGE_ROUTE_5XX:
    case EDGE_ROUTE_CONNECT_FAIL:
    case EDGE_ROUTE_TIMEOUT:
        n = atomic_fetch_add_explicit(&st->consecutive, 1, memory_order_relaxed);
        d = n < 6 ? (uint64_t)ROUTE_BACKOFF_BASE_MS << n : ROUTE_BACKOFF_MAX_MS;
        route_extend(r, &st->cooldown_until,
                     now_ms + (d < ROUTE_BACKOFF_MAX_MS ? d : ROUTE_BACKOFF_MAX_MS));
        break;
    case EDGE_ROUTE_AUTH_FAIL:
        atomic_store_explicit(&st->failing_cred, route_cred_fp(a), memory_order_relaxed);
        {
            uint64_t until = now_ms + ROUTE_FAILING_MS;
            uint64_t cur = atomic_load_explicit(&st->failing_until, memory_order_relaxed);

            while (cur < until &&
                   !atomic_compare_exchange_weak_explicit(
                       &st->failing_until, &cur, until, memory_order_relaxed, memory_order_relaxed))
                ;
        }
        atomic_fetch_add_explicit(&r->failing_marks, 1, memory_order_relaxed);
        break;
    }
    route_leave(sec);
}

/* ---- prune ------------------------------------------------------------------ */

static int
route_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Drops running weights of accounts no longer bound to sg; g->mu held. */
static void
route_prune_rr(struct route_group *g, const struct edge_group *sg)
{
    size_t n_ids = sg->n_accounts + sg->n_pool_accounts, kept = 0;
    uint64_t *ids = gw_xmalloc((n_ids ? n_ids : 1) * sizeof(*ids));

    for (size_t i = 0; i < sg->n_accounts; i++)
        ids[i] = sg->accounts[i]->id;
    for (size_t i = 0; i < sg->n_pool_accounts; i++)
        ids[sg->n_accounts + i] = sg->pool_accounts[i]->id;
    qsort(ids, n_ids, sizeof(*ids), route_cmp_u64);
    for (size_t i = 0; i < g->n_rr; i++) {
        if (bsearch(&g->rr[i].account_id, ids, n_ids, sizeof(*ids), route_cmp_u64) != NULL)
            g->rr[kept++] = g->rr[i];
    }
    g->n_rr = kept;
    free(ids);
}

/* Rebuilds *where with the objects `keep` accepts, retiring the others
 * and the old index. r->mu held. */
static void
route_prune_index(struct edge_route *r, _Atomic(struct route_index *) *where,
                  enum route_retired_kind kind, const struct edge_snapshot *s)
{
    struct route_index *old = atomic_load_explicit(where, memory_order_relaxed), *fresh;
    size_t kept = 0, cap = 16;

    for (size_t i = 0; i <= old->mask; i++) {
        void *p = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        uint64_t id;

        if (p == NULL)
            continue;
        id = *(const uint64_t *)p;
        if (kind == ROUTE_RETIRED_ACCT ? edge_snapshot_account(s, id) != NULL
                                       : edge_snapshot_group(s, id) != NULL)
            kept++;
    }
    while (cap < kept * 2 + 2)
        cap <<= 1;
    fresh = route_index_new(cap);
    for (size_t i = 0; i <= old->mask; i++) {
        void *p = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        const struct edge_account *a;
        const struct edge_group *sg;

        if (p == NULL)
            continue;
        if (kind == ROUTE_RETIRED_ACCT) {
            struct route_acct *st = p;

            a = edge_snapshot_account(s, st->id);
            if (a == NULL) {
                route_retire(r, kind, p);
                continue;
            }
            /* The snapshot overrides a failing mark when the hub disabled
             * the account or the credential changed. */
            uint64_t fu = atomic_load(&st->failing_until);
            if (fu != 0 && (!a->enabled || atomic_load(&st->failing_cred) != route_cred_fp(a)))
                atomic_compare_exchange_strong(&st->failing_until, &fu, 0);
        } else {
            struct route_group *g = p;

            sg = edge_snapshot_group(s, g->id);
            if (sg == NULL) {
                route_retire(r, kind, p);
                continue;
            }
            pthread_mutex_lock(&g->mu);
            route_prune_rr(g, sg);
            pthread_mutex_unlock(&g->mu);
        }
        route_index_put(fresh, p);
    }
    atomic_store(where, fresh);
    route_retire(r, ROUTE_RETIRED_INDEX, old);
}

void
edge_route_prune(struct edge_route *r, const struct edge_snapshot *s)
{
    struct route_retired *done;

    pthread_mutex_lock(&r->mu);
    route_prune_index(r, &r->accts, ROUTE_RETIRED_ACCT, s);
    route_prune_index(r, &r->groups, ROUTE_RETIRED_GROUP, s);
    done = r->retired;
    r->retired = NULL;
    pthread_mutex_unlock(&r->mu);
    /* Everything in `done` is unreachable for readers entering from now on;
     * wait out the ones already inside, then free. */
    pthread_mutex_lock(&r->sync_mu);
    route_synchronize(r);
    pthread_mutex_unlock(&r->sync_mu);
    route_free_retired(done);
}

/* ---- stats -------------------------------------------------------------------- */

int
edge_route_account_state(struct edge_route *r, uint64_t account_id,
                         struct edge_route_account_state *out)
{
    struct route_section sec = route_enter(r);
    const struct route_acct *st = route_acct_find(r, account_id);

    memset(out, 0, sizeof(*out));
    if (st != NULL) {
        out->cooldown_until_ms = atomic_load(&st->cooldown_until);
        out->failing_until_ms = atomic_load(&st->failing_until);
        out->in_flight = atomic_load(&st->in_flight);
        out->consecutive_failures = atomic_load(&st->consecutive);
    }
    route_leave(sec);
    return st != NULL;
}

void
edge_route_get_stats(struct edge_route *r, uint64_t now_ms, struct edge_route_stats *out)
{
    struct route_section sec = route_enter(r);
    struct route_index *idx;

    memset(out, 0, sizeof(*out));
    idx = atomic_load_explicit(&r->accts, memory_order_acquire);
    for (size_t i = 0; i <= idx->mask; i++) {
        const struct route_acct *st = atomic_load_explicit(&idx->slots[i], memory_order_acquire);

        if (st == NULL)
            continue;
        out->accounts++;
        if (atomic_load(&st->cooldown_until) > now_ms)
            out->cooling++;
        if (atomic_load(&st->failing_until) > now_ms)
            out->failing++;
        out->in_flight += atomic_load(&st->in_flight);
    }
    idx = atomic_load_explicit(&r->groups, memory_order_acquire);
    for (size_t i = 0; i <= idx->mask; i++) {
        struct route_group *g = atomic_load_explicit(&idx->slots[i], memory_order_acquire);

        if (g == NULL)
            continue;
        out->groups++;
        pthread_mutex_lock(&g->mu);
        out->rr_pairs += g->n_rr;
        pthread_mutex_unlock(&g->mu);
    }
    route_leave(sec);
    for (size_t b = 0; b < ROUTE_STICKY_BUCKETS; b++) {
        pthread_mutex_t *mu = &r->sticky_mu[b % ROUTE_STICKY_STRIPES];

        pthread_mutex_lock(mu);
        for (size_t w = 0; w < ROUTE_STICKY_WAYS; w++) {
            if (route_sticky_live(&r->sticky[b * ROUTE_STICKY_WAYS + w], now_ms))
                out->sticky_sessions++;
        }
        pthread_mutex_unlock(mu);
    }
    out->cooldowns_started = atomic_load(&r->cooldowns_started);
    out->failing_marks = atomic_load(&r->failing_marks);
}
