/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration table engine. Each program declares one table of
 * entries (key, type, default, bounds, flags, field offset, help); this
 * module derives everything else from it: command-line flags (--key VALUE,
 * --key=VALUE, and --flag for booleans), AICARPOOL_* environment variables
 * (key upper-cased, '-' -> '_'), an optional config file (--config FILE,
 * lines "key = value", '#' comments), --print-config (secrets masked),
 * --check-config and --help, and the Markdown reference for docs/.
 * Precedence: default < file < environment < command line. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_buf.h"
#include "gw_err.h"

enum gw_cfg_type {
    GW_CFG_STR,  /* char * field, owned by the config object, may be NULL */
    GW_CFG_INT,  /* int64_t field, bounded by [min, max] */
    GW_CFG_BOOL, /* int field, 0 or 1; "true/false/1/0/yes/no/on/off" */
};

enum gw_cfg_flags {
    GW_CFG_F_SECRET = 1 << 0,     /* masked by --print-config, never logged */
    GW_CFG_F_RELOADABLE = 1 << 1, /* may change without a restart */
    GW_CFG_F_REQUIRED = 1 << 2,   /* no default; must be given */
};

struct gw_cfg_entry {
    const char *key;  /* "edge-listen"; flag --edge-listen, env AICARPOOL_EDGE_LISTEN */
    enum gw_cfg_type type;
    const char *def;  /* default as text, NULL for none */
    int64_t min, max; /* bounds for GW_CFG_INT */
    unsigned flags;
    size_t offset;    /* offsetof(struct your_config, field) */
    const char *help;
};

/* What the caller should do after parsing. */
enum gw_cfg_action {
    GW_CFG_RUN = 0,     /* start the program */
    GW_CFG_PRINTED = 1, /* --help or --print-config printed; exit 0 */
    GW_CFG_CHECKED = 2, /* --check-config passed; exit 0 */
};

/* Fills `obj` from defaults, the optional file, the environment (`envp`, a
 * NULL-terminated "K=V" array; pass `environ`) and argv. Collects every
 * problem (unknown flag, bad number, out of bounds, missing required value,
 * file:line for file errors) into `errors`, one per line, and returns
 * GW_EINVAL when there was any; GW_OK otherwise with *action set. --help,
 * --print-config output goes to `out`. Strings in obj are owned by obj and
 * released by gw_config_free(). `table` ends with an entry whose key is NULL. */
gw_err gw_config_load(const struct gw_cfg_entry *table, void *obj, int argc, char **argv,
                      char **envp, FILE *out, struct gw_buf *errors,
                      enum gw_cfg_action *action) GW_WARN_UNUSED;

/* Sets one key from text as a command-line value would; for pushed config. */
gw_err gw_config_set(const struct gw_cfg_entry *table, void *obj, const char *key,
                     const char *value, struct gw_buf *errors) GW_WARN_UNUSED;

/* Writes "key = value" lines, secrets masked. */
void gw_config_print(const struct gw_cfg_entry *table, const void *obj, FILE *out);

/* Writes the Markdown reference table (key, env, type, default, bounds, help). */
void gw_config_write_reference(const struct gw_cfg_entry *table, const char *title, FILE *out);

/* Frees the string fields of obj. */
void gw_config_free(const struct gw_cfg_entry *table, void *obj);

#endif
