/* SPDX-License-Identifier: Apache-2.0 */
/* API dialects: the three client-facing API families and which of them each
 * upstream account kind speaks. Shared by routing (an account serves a
 * request only in a dialect it speaks) and the request pipeline. */
#ifndef EDGE_DIALECT_H
#define EDGE_DIALECT_H

enum edge_dialect {
    EDGE_DIALECT_ANTHROPIC = 0, /* Messages API */
    EDGE_DIALECT_OPENAI = 1,    /* Chat Completions and Responses */
    EDGE_DIALECT_GEMINI = 2,    /* generateContent family */
    EDGE_DIALECT_COUNT
};

#define EDGE_DIALECT_BIT(d) (1u << (unsigned)(d))

/* "anthropic", "openai", "gemini" (the usage record's dialect field). */
const char *edge_dialect_name(enum edge_dialect d);

/* Bit mask of the dialects an account kind speaks: anthropic,
 * anthropic_compatible and claude_oauth speak Anthropic; openai_compatible
 * speaks OpenAI; gemini speaks Gemini; mock (the fake provider) speaks all
 * three. 0 for an unknown kind. */
unsigned edge_dialect_mask_of_kind(const char *kind);

#endif
