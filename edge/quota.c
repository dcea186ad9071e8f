/* SPDX-License-Identifier: Apache-2.0 */
/* Per-key local limits: concurrency counter, and sliding two-window
 * estimates of requests and tokens per minute. State per key id sits in
 * striped open-addressing tables; every access holds its stripe's mutex
 * for a few dozen instructions, so worker threads on different keys rarely
 * meet. */
#include "quota.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"

#define QUOTA_STRIPES 64
#define QUOTA_WINDOW_MS UINT64_C(60000)
#define QUOTA_UNKNOWN_MS 1000
/* Counts saturate here (about 10^12) so the scaled sums stay far from 2^64. */
#define QUOTA_COUNT_MAX (UINT64_C(1) << 40)

struct quota_state {
    uint64_t id;
    uint8_t key_hash[GW_SHA256_LEN]; /* to find the key in a new snapshot */
    int used;
    uint64_t win; /* index of the current window (now_ms / 60000) */
    uint64_t req_cur, req_prev;
    uint64_t tok_cur, tok_prev;
    uint64_t tok_reserved; /* est_tokens of admitted, unsettled requests */
    uint32_t in_flight;
};

struct quota_stripe {
    pthread_mutex_t mu;
    struct quota_state *slots; /* cap entries, power of two; NULL when cap 0 */
    size_t cap;
    size_t used;
    char pad[64]; /* keeps neighbouring stripes' mutexes off one cache line */
};

struct edge_quota {
    struct quota_stripe stripes[QUOTA_STRIPES];
};

static uint64_t
quota_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return x;
}

static struct quota_stripe *
quota_stripe_of(struct edge_quota *q, uint64_t id)
{
    return &q->stripes[quota_mix(id) % QUOTA_STRIPES];
}

static struct quota_state *
quota_probe(struct quota_state *slots, size_t cap, uint64_t id)
{
    size_t i = (size_t)(quota_mix(id) / QUOTA_STRIPES) & (cap - 1);

    while (slots[i].used && slots[i].id != id)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static void
quota_rehash(struct quota_stripe *st, size_t new_cap)
{
    struct quota_state *slots = gw_xcalloc(new_cap, sizeof(*slots));

    for (size_t i = 0; i < st->cap; i++) {
        if (st->slots[i].used)
            *quota_probe(slots, new_cap, st->slots[i].id) = st->slots[i];
    }
    free(st->slots);
    st->slots = slots;
    st->cap = new_cap;
}

/* State of key k in its stripe (mutex held); created when `create`. */
static struct quota_state *
quota_find(struct quota_stripe *st, const struct edge_key *k, int create)
{
    struct quota_state *s;

    if (st->cap == 0) {
        if (!create)
            return NULL;
        quota_rehash(st, 8);
    }
    s = quota_probe(st->slots, st->cap, k->id);
    if (s->used)
        return s;
    if (!create)
        return NULL;
    if ((st->used + 1) * 2 > st->cap) {
        quota_rehash(st, st->cap * 2);
        s = quota_probe(st->slots, st->cap, k->id);
    }
    memset(s, 0, sizeof(*s));
    s->used = 1;
    s->id = k->id;
    memcpy(s->key_hash, k->key_hash, GW_SHA256_LEN);
    st->used++;
    return s;
}

/* Moves the windows forward to now_ms and returns the ms elapsed in the
 * current one. A now_ms before the current window (another thread's
 * slightly older clock) counts as its start. */
static uint64_t
quota_roll(struct quota_state *s, uint64_t now_ms)
{
    uint64_t w = now_ms / QUOTA_WINDOW_MS;

    if (w > s->win) {
        if (w == s->win + 1) {
            s->req_prev = s->req_cur;
            s->tok_prev = s->tok_cur;
        } else {
            s->req_prev = 0;
            s->tok_prev = 0;
        }
        s->req_cur = 0;
        s->tok_cur = 0;
        s->win = w;
    }
    return w < s->win ? 0 : now_ms - w * QUOTA_WINDOW_MS;
}

static uint64_t
quota_sat_add(uint64_t a, uint64_t b)
{
    return a + b > QUOTA_COUNT_MAX || a + b < a ? QUOTA_COUNT_MAX : a + b;
}

/* Does `need` fit under `limit` at `e` ms into the current window, with
 * `extra` (reservations) held on top of the window counts? */
static int
quota_fits(uint64_t prev, uint64_t cur, uint64_t extra, uint64_t e, uint64_t need, uint64_t limit)
{
    const uint64_t W = QUOTA_WINDOW_MS;
    uint64_t base = prev * (W - e) + (cur + extra) * W;

    if (base == 0)
        return 1; /* alone: also an oversize request runs */
    return need <= limit && base + need * W <= limit * W;
}

/* Exact ms until quota_fits holds if nothing else changes (see quota.h). */
static int64_t
quota_retry_ms(uint64_t prev, uint64_t cur, uint64_t extra, uint64_t e, uint64_t need,
               uint64_t limit)
{
    const uint64_t W = QUOTA_WINDOW_MS;
    uint64_t need2 = need + extra, t;

    if (need2 > limit) {
        /* The windows alone cannot make room: either an oversize request
         * waiting to be alone, or reservations that only settles free. */
        uint64_t clear = cur > 0 ? 2 * W - e : prev > 0 ? W - e : 0;

        if (extra == 0)
            return (int64_t)clear;
        return (int64_t)(need > limit && clear > QUOTA_UNKNOWN_MS ? clear : QUOTA_UNKNOWN_MS);
    }
    /* Within the current window: prev * (W - e - t) <= (limit - cur - need2) * W. */
    if (cur + need2 <= limit && prev > 0) {
        uint64_t room = (limit - cur - need2) * W / prev;

        t = W - e > room ? W - e - room : 0;
        if (t < W - e)
            return (int64_t)t;
    }
    /* In the next window, at e2 ms into it: cur * (W - e2) <= (limit - need2) * W. */
    if (cur == 0)
        return (int64_t)(W - e);
    {
        uint64_t room = (limit - need2) * W / cur;

        t = W - e + (W > room ? W - room : 0);
    }
    return (int64_t)t;
}

struct edge_quota *
edge_quota_new(void)
{
    struct edge_quota *q = gw_xcalloc(1, sizeof(*q));

    for (size_t i = 0; i < QUOTA_STRIPES; i++)
        pthread_mutex_init(&q->stripes[i].mu, NULL);
    return q;
}

void
edge_quota_free(struct edge_quota *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        pthread_mutex_destroy(&q->stripes[i].mu);
        free(q->stripes[i].slots);
    }
    free(q);
}

static int
quota_limited(const struct edge_key *k)
{
    return k->rpm_limit != 0 || k->tpm_limit != 0 || k->concurrency_limit != 0;
}

struct edge_quota_verdict
edge_quota_admit(struct edge_quota *q, const struct edge_key *k, uint64_t est_tokens,
                 uint64_t now_ms)
{
    struct edge_quota_verdict v = {GW_OK, NULL, 0};
    struct quota_stripe *st;
    struct quota_state *s;
    uint64_t e, need = est_tokens < QUOTA_COUNT_MAX ? est_tokens : QUOTA_COUNT_MAX;

    if (!quota_limited(k))
        return v;
    st = quota_stripe_of(q, k->id);
    pthread_mutex_lock(&st->mu);
    s = quota_find(st, k, 1);
    e = quota_roll(s, now_ms);
    if (k->concurrency_limit != 0 && s->in_flight >= k->concurrency_limit) {
        v.limit = "concurrent requests";
        v.retry_after_ms = QUOTA_UNKNOWN_MS;
    } else if (k->rpm_limit != 0 && !quota_fits(s->req_prev, s->req_cur, 0, e, 1, k->rpm_limit)) {
        v.limit = "requests per minute";
        v.retry_after_ms = quota_retry_ms(s->req_prev, s->req_cur, 0, e, 1, k->rpm_limit);
    } else if (k->tpm_limit != 0 &&
               !quota_fits(s->tok_prev, s->tok_cur, s->tok_reserved, e, need, k->tpm_limit)) {
        v.limit = "tokens per minute";
        v.retry_after_ms =
            quota_retry_ms(s->tok_prev, s->tok_cur, s->tok_reserved, e, need, k->tpm_limit);
    } else {
        s->in_flight++;
        s->req_cur = quota_sat_add(s->req_cur, 1);
        s->tok_reserved = quota_sat_add(s->tok_reserved, need);
    }
    pthread_mutex_unlock(&st->mu);
    if (v.limit != NULL)
        v.err = GW_EQUOTA;
    return v;
}

void
edge_quota_settle(struct edge_quota *q, const struct edge_key *k, uint64_t est_tokens,
                  uint64_t actual_tokens, uint64_t now_ms)
{
    struct quota_stripe *st;
    struct quota_state *s;
    uint64_t est = est_tokens < QUOTA_COUNT_MAX ? est_tokens : QUOTA_COUNT_MAX;

    if (!quota_limited(k))
        return;
    st = quota_stripe_of(q, k->id);
    pthread_mutex_lock(&st->mu);
    s = quota_find(st, k, 0);
    if (s != NULL) {
        quota_roll(s, now_ms);
        if (s->in_flight > 0)
            s->in_flight--;
        s->tok_reserved = s->tok_reserved > est ? s->tok_reserved - est : 0;
        s->tok_cur = quota_sat_add(s->tok_cur, actual_tokens < QUOTA_COUNT_MAX ? actual_tokens
                                                                               : QUOTA_COUNT_MAX);
    }
    pthread_mutex_unlock(&st->mu);
}

void
edge_quota_prune(struct edge_quota *q, const struct edge_snapshot *s)
{
    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        struct quota_stripe *st = &q->stripes[i];

        pthread_mutex_lock(&st->mu);
        for (size_t j = 0; j < st->cap; j++) {
            struct quota_state *x = &st->slots[j];
            const struct edge_key *k;

            if (!x->used)
                continue;
            k = edge_snapshot_find_hash(s, x->key_hash);
            if (k == NULL || k->id != x->id) {
                x->used = 0;
                st->used--;
            }
        }
        /* Linear probing without tombstones: rebuild to close the holes,
         * shrinking when mostly empty. */
        if (st->cap > 0) {
            size_t cap = 8;

            while (cap < st->used * 2 + 2)
                cap <<= 1;
            if (st->used == 0) {
                free(st->slots);
                st->slots = NULL;
                st->cap = 0;
            } else {
                quota_rehash(st, cap);
            }
        }
        pthread_mutex_unlock(&st->mu);
    }
}

size_t
edge_quota_key_count(struct edge_quota *q)
{
    size_t n = 0;

    for (size_t i = 0; i < QUOTA_STRIPES; i++) {
        pthread_mutex_lock(&q->stripes[i].mu);
        n += q->stripes[i].used;
        pthread_mutex_unlock(&q->stripes[i].mu);
    }
    return n;
}

uint32_t
edge_quota_in_flight(struct edge_quota *q, uint64_t key_id)
{
    struct quota_stripe *st = quota_stripe_of(q, key_id);
    struct edge_key probe;
    const struct quota_state *s;
    uint32_t n = 0;

    memset(&probe, 0, sizeof(probe));
    probe.id = key_id;
    pthread_mutex_lock(&st->mu);
    s = quota_find(st, &probe, 0);
    if (s != NULL)
        n = s->in_flight;
    pthread_mutex_unlock(&st->mu);
    return n;
}
