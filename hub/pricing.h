/* SPDX-License-Identifier: Apache-2.0 */
/* Exact cost of one metered request from the price list: the longest
 * model-prefix match, then integer arithmetic in micro-USD. An unpriced
 * model is reported as such (cost -1), never billed as zero. */
#ifndef HUB_PRICING_H
#define HUB_PRICING_H

#include <stddef.h>
#include <stdint.h>

#include "gw_err.h"
#include "gw_wire.h"
#include "store.h"

/* Computes the cost of rec in micro-USD into *cost_micros.
 *
 * Price choice: the entry of prices[0..n) whose model_prefix is the longest
 * prefix of rec->model (case-sensitive; the first of equal-length entries
 * wins). An entry with an empty model_prefix matches nothing: a catch-all
 * price has to be an explicit decision, not an empty row.
 *
 * Cost: sum(tokens_i * price_i) over input, output, cache_read,
 * cache_write_5m and cache_write_1h (prices are micro-USD per million
 * tokens), divided by 1,000,000 and rounded half up, computed exactly in
 * 128-bit integers. Token fields follow Anthropic's convention, which the
 * edge meter normalises every dialect to: input_tokens excludes cache reads
 * and writes, and output_tokens already includes reasoning tokens, so
 * reasoning_tokens is informational and never added again.
 *
 * Errors: GW_ENOTFOUND when no entry matches (*cost_micros = -1);
 * GW_EINVAL for a negative price, a result that does not fit in int64 or
 * NULL arguments (*cost_micros = -1 when it is writable). Borrows all
 * arguments; pure function, any thread. */
gw_err hub_pricing_cost(const struct hub_price *prices, size_t n, const struct gw_usage_record *rec,
                        int64_t *cost_micros) GW_WARN_UNUSED;

/* The entry hub_pricing_cost() would use for model, or NULL. Borrows. */
const struct hub_price *hub_pricing_match(const struct hub_price *prices, size_t n,
                                          const char *model);

#endif
