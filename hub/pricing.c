/* SPDX-License-Identifier: Apache-2.0 */
/* Cost computation: longest-prefix price lookup and exact integer
 * arithmetic. Money never passes through floating point. */
#include "pricing.h"

#include <string.h>

#define PRICING_PER_TOKENS 1000000u

const struct hub_price *
hub_pricing_match(const struct hub_price *prices, size_t n, const char *model)
{
    const struct hub_price *best = NULL;
    size_t best_len = 0;
    size_t i;

    if (prices == NULL || model == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        const char *prefix = prices[i].model_prefix;
        size_t len = strnlen(prefix, sizeof(prices[i].model_prefix));
        if (len == 0 || len <= best_len)
            continue;
        if (strncmp(model, prefix, len) == 0) {
            best = &prices[i];
            best_len = len;
        }
    }
    return best;
}

/* Adds tokens * price to *acc; 0 on overflow or a negative price. Each
 * product is below 2^127 (u64 * i63), so only the sum needs a check. */
static int
pricing_add(unsigned __int128 *acc, uint64_t tokens, int64_t price)
{
    unsigned __int128 term;

    if (price < 0)
        return 0;
    term = (unsigned __int128)tokens * (uint64_t)price;
    return !__builtin_add_overflow(*acc, term, acc);
}

gw_err
hub_pricing_cost(const struct hub_price *prices, size_t n, const struct gw_usage_record *rec,
                 int64_t *cost_micros)
{
    const struct hub_price *p;
    unsigned __int128 sum = 0, cost;

    if (cost_micros == NULL)
        return GW_EINVAL;
    *cost_micros = -1;
    if (rec == NULL || (prices == NULL && n > 0))
        return GW_EINVAL;

    p = hub_pricing_match(prices, n, rec->model);
    if (p == NULL)
        return GW_ENOTFOUND;

    if (!pricing_add(&sum, rec->input_tokens, p->input) ||
        !pricing_add(&sum, rec->output_tokens, p->output) ||
        !pricing_add(&sum, rec->cache_read_tokens, p->cache_read) ||
        !pricing_add(&sum, rec->cache_write_5m_tokens, p->cache_write_5m) ||
        !pricing_add(&sum, rec->cache_write_1h_tokens, p->cache_write_1h))
        return GW_EINVAL;

    /* Round half up on the remainder, so nothing can overflow here. */
    cost = sum / PRICING_PER_TOKENS;
    if (sum % PRICING_PER_TOKENS >= PRICING_PER_TOKENS / 2)
        cost += 1;
    if (cost > (unsigned __int128)INT64_MAX)
        return GW_EINVAL;
    *cost_micros = (int64_t)cost;
    return GW_OK;
}
