/* SPDX-License-Identifier: Apache-2.0 */
/* Dialect names and the kind -> dialect table. */
#include "dialect.h"

#include <stddef.h>
#include <string.h>

static const char *const dialect_names[EDGE_DIALECT_COUNT] = {"anthropic", "openai", "gemini"};

static const struct {
    const char *kind;
    unsigned mask;
} kind_dialects[] = {
    {"anthropic", EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC)},
    {"anthropic_compatible", EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC)},
    {"claude_oauth", EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC)},
    {"openai_compatible", EDGE_DIALECT_BIT(EDGE_DIALECT_OPENAI)},
    {"gemini", EDGE_DIALECT_BIT(EDGE_DIALECT_GEMINI)},
    {"mock", EDGE_DIALECT_BIT(EDGE_DIALECT_ANTHROPIC) | EDGE_DIALECT_BIT(EDGE_DIALECT_OPENAI) |
                 EDGE_DIALECT_BIT(EDGE_DIALECT_GEMINI)},
};

const char *
edge_dialect_name(enum edge_dialect d)
{
    if ((unsigned)d >= EDGE_DIALECT_COUNT)
        return "unknown";
    return dialect_names[d];
}

unsigned
edge_dialect_mask_of_kind(const char *kind)
{
    if (kind == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(kind_dialects) / sizeof(kind_dialects[0]); i++) {
        if (strcmp(kind_dialects[i].kind, kind) == 0)
            return kind_dialects[i].mask;
    }
    return 0;
}
