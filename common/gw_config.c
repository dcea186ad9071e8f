/* SPDX-License-Identifier: Apache-2.0 */
/* The configuration table engine: one pass per source (defaults, file,
 * environment, command line, in rising precedence) writes typed fields
 * through the table's offsets. Every problem is collected, never just the
 * first, so an operator fixes a broken config in one round. */
#include "gw_config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gw_log.h"

#define CFG_ENV_PREFIX "AICARPOOL_"
/* Values echoed in error messages are cut so a pasted blob stays one line. */
#define CFG_ECHO_MAX 64

/* Where a value came from, for error messages. */
struct cfg_origin {
    const char *file; /* non-NULL for config-file lines */
    size_t line;
    const char *env; /* non-NULL for environment variables */
};

/* Per-load state shared by the passes. */
struct cfg_load {
    const struct gw_cfg_entry *table;
    void *obj;
    struct gw_buf *errors;
    unsigned char *given; /* per entry: set by file, env or argv */
    int nerrors;
};

static void cfg_errorf(struct gw_buf *errors, int *nerrors, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
cfg_errorf(struct gw_buf *errors, int *nerrors, const char *fmt, ...)
{
    va_list ap;

    if (nerrors)
        (*nerrors)++;
    if (errors == NULL)
        return;
    va_start(ap, fmt);
    gw_buf_vappendf(errors, fmt, ap);
    va_end(ap);
    gw_buf_append(errors, "\n", 1);
}

static size_t
cfg_count(const struct gw_cfg_entry *table)
{
    size_t n = 0;
    while (table[n].key)
        n++;
    return n;
}

static const struct gw_cfg_entry *
cfg_find(const struct gw_cfg_entry *table, const char *key, size_t key_len)
{
    for (const struct gw_cfg_entry *e = table; e->key; e++) {
        if (strlen(e->key) == key_len && memcmp(e->key, key, key_len) == 0)
            return e;
    }
    return NULL;
}

/* "edge-listen" -> "AICARPOOL_EDGE_LISTEN" */
static void
cfg_env_name(const char *key, char *out, size_t out_size)
{
    size_t n = 0;
    size_t plen = strlen(CFG_ENV_PREFIX);

    if (out_size == 0)
        return;
    if (plen >= out_size)
        plen = out_size - 1;
    memcpy(out, CFG_ENV_PREFIX, plen);
    n = plen;
    for (const char *p = key; *p && n + 1 < out_size; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const char *
cfg_type_name(enum gw_cfg_type type)
{
    switch (type) {
    case GW_CFG_STR:
        return "string";
    case GW_CFG_INT:
        return "integer";
    case GW_CFG_BOOL:
        return "boolean";
    }
    return "?";
}

/* Describes the origin of a value as the prefix of an error line. */
static void
cfg_origin_prefix(const struct cfg_origin *o, const struct gw_cfg_entry *e, char *out,
                  size_t out_size)
{
    if (o && o->file)
        snprintf(out, out_size, "%s:%zu: %s", o->file, o->line, e->key);
    else if (o && o->env)
        snprintf(out, out_size, "%s", o->env);
    else
        snprintf(out, out_size, "--%s", e->key);
}

/* Config secrets are passwords as often as API keys: unlike gw_log_mask(),
 * show none of their characters. */
static void
cfg_mask_secret(char *out, size_t out_size)
{
    snprintf(out, out_size, "********");
}

/* The text of a rejected value as it may appear in an error line: secrets
 * are masked, long values shortened. */
static void
cfg_echo(const struct gw_cfg_entry *e, const char *value, char *out, size_t out_size)
{
    if (e->flags & GW_CFG_F_SECRET)
        cfg_mask_secret(out, out_size);
    else
        snprintf(out, out_size, "%.*s%s", CFG_ECHO_MAX, value,
                 strlen(value) > CFG_ECHO_MAX ? "..." : "");
}

static int
cfg_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* Strict base-10 int64: no leading blanks, no trailing characters, no
 * overflow. Returns 0 or -1 (syntax) or -2 (overflow). */
static int
cfg_parse_int(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (*s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end == s || *end != '\0')
        return -1;
    if (errno == ERANGE)
        return -2;
    if (errno != 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Parses `value` for entry e and stores it into obj. On failure appends one
 * error line and leaves the field untouched. */
static gw_err
cfg_apply(const struct gw_cfg_entry *e, void *obj, const char *value,
          const struct cfg_origin *origin, struct gw_buf *errors, int *nerrors)
{
    char *field = (char *)obj + e->offset;
    char where[512];
    char echo[CFG_ECHO_MAX + 8];

    switch (e->type) {
    case GW_CFG_STR: {
        char **sp = (char **)(void *)field;
        free(*sp);
        *sp = gw_xstrdup(value);
        return GW_OK;
    }
    case GW_CFG_INT: {
        int64_t v = 0;
        int rc = cfg_parse_int(value, &v);
        if (rc != 0) {
            cfg_origin_prefix(origin, e, where, sizeof(where));
            cfg_echo(e, value, echo, sizeof(echo));
            cfg_errorf(errors, nerrors, "%s: invalid integer '%s'%s", where, echo,
                       rc == -2 ? " (overflow)" : "");
            return GW_EINVAL;
        }
        if (v < e->min || v > e->max) {
            cfg_origin_prefix(origin, e, where, sizeof(where));
            cfg_echo(e, value, echo, sizeof(echo));
            cfg_errorf(errors, nerrors, "%s: %s is out of range [%" PRId64 ", %" PRId64 "]", where,
                       echo, e->min, e->max);
            return GW_EINVAL;
        }
        *(int64_t *)(void *)field = v;
        return GW_OK;
    }
    case GW_CFG_BOOL: {
        int b = 0;
        if (cfg_parse_bool(value, &b) != 0) {
            cfg_origin_prefix(origin, e, where, sizeof(where));
            cfg_echo(e, value, echo, sizeof(echo));
            cfg_errorf(errors, nerrors,
                       "%s: invalid boolean '%s' (use true/false, yes/no, on/off, 1/0)", where,
                       echo);
            return GW_EINVAL;
        }
        *(int *)(void *)field = b;
        return GW_OK;
    }
    }
    cfg_errorf(errors, nerrors, "%s: unknown type in configuration table", e->key);
    return GW_EINTERNAL;
}

/* Pass 0: every field gets its default, or zero/NULL without one. A default
 * that does not parse is a bug in the table and is reported like any error. */
static void
cfg_load_defaults(struct cfg_load *ld)
{
    for (const struct gw_cfg_entry *e = ld->table; e->key; e++) {
        char *field = (char *)ld->obj + e->offset;
        switch (e->type) {
        case GW_CFG_STR:
            *(char **)(void *)field = NULL;
            break;
        case GW_CFG_INT:
            *(int64_t *)(void *)field = 0;
            break;
        case GW_CFG_BOOL:
            *(int *)(void *)field = 0;
            break;
        }
    }
    for (const struct gw_cfg_entry *e = ld->table; e->key; e++) {
        if (e->def == NULL)
            continue;
        struct gw_buf tmp = GW_BUF_INIT;
        gw_err rv = cfg_apply(e, ld->obj, e->def, NULL, &tmp, NULL);
        if (rv != GW_OK)
            cfg_errorf(ld->errors, &ld->nerrors, "internal: bad default for %s: %s", e->key,
                       tmp.data ? tmp.data : "");
        gw_buf_fini(&tmp);
    }
}

static char *
cfg_trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    *end = '\0';
    return s;
}

/* Pass 1: "key = value" lines. Blank lines and lines starting with '#' are
 * skipped; '#' inside a value is part of the value (secrets may contain it).
 * A value wrapped in double quotes loses the quotes, so leading or trailing
 * blanks can be expressed. Keys may use '_' for '-'. */
static void
cfg_load_file(struct cfg_load *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    size_t lineno = 0;

    if (f == NULL) {
        cfg_errorf(ld->errors, &ld->nerrors, "%s: cannot open config file: %s", path,
                   strerror(errno));
        return;
    }
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = cfg_trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            cfg_errorf(ld->errors, &ld->nerrors, "%s:%zu: expected 'key = value'", path, lineno);
            continue;
        }
        *eq = '\0';
        char *key = cfg_trim(s);
        char *value = cfg_trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
            value[vlen - 1] = '\0';
            value++;
        }
        for (char *p = key; *p; p++) {
            if (*p == '_')
                *p = '-';
        }
        if (*key == '\0') {
            cfg_errorf(ld->errors, &ld->nerrors, "%s:%zu: missing key before '='", path, lineno);
            continue;
        }
        const struct gw_cfg_entry *e = cfg_find(ld->table, key, strlen(key));
        if (e == NULL) {
            cfg_errorf(ld->errors, &ld->nerrors, "%s:%zu: unknown key '%.*s'", path, lineno,
                       CFG_ECHO_MAX, key);
            continue;
        }
        struct cfg_origin origin = {path, lineno, NULL};
        if (cfg_apply(e, ld->obj, value, &origin, ld->errors, &ld->nerrors) == GW_OK)
            ld->given[e - ld->table] = 1;
    }
    if (ferror(f))
        cfg_errorf(ld->errors, &ld->nerrors, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
}

/* Pass 2: AICARPOOL_* variables that name a table key. Other AICARPOOL_*
 * variables are ignored: the hub and an edge may share one environment. */
static void
cfg_load_env(struct cfg_load *ld, char **envp)
{
    char name[256];
    size_t plen = strlen(CFG_ENV_PREFIX);

    if (envp == NULL)
        return;
    for (char **ep = envp; *ep; ep++) {
        const char *kv = *ep;
        if (strncmp(kv, CFG_ENV_PREFIX, plen) != 0)
            continue;
        const char *eq = strchr(kv, '=');
        if (eq == NULL)
            continue;
        for (const struct gw_cfg_entry *e = ld->table; e->key; e++) {
            cfg_env_name(e->key, name, sizeof(name));
            if (strlen(name) != (size_t)(eq - kv) || memcmp(name, kv, (size_t)(eq - kv)) != 0)
                continue;
            struct cfg_origin origin = {NULL, 0, name};
            if (cfg_apply(e, ld->obj, eq + 1, &origin, ld->errors, &ld->nerrors) == GW_OK)
                ld->given[e - ld->table] = 1;
            break;
        }
    }
}

/* Built-in options that are not table keys. */
struct cfg_builtin {
    const char *config_file;
    int help;
    int print;
    int check;
};

/* Pass 3 (and the pre-scan for the built-ins): walks argv. With `apply` 0
 * only the built-ins are recorded and nothing is reported; with `apply` 1
 * table keys are set and every syntax problem is reported. */
static void
cfg_load_argv(struct cfg_load *ld, int argc, char **argv, struct cfg_builtin *bi, int apply)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];

        if (arg == NULL)
            break;
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (strcmp(arg, "-h") == 0) {
                bi->help = 1;
                continue;
            }
            if (!apply)
                continue;
            cfg_errorf(ld->errors, &ld->nerrors, "unexpected argument '%.*s'", CFG_ECHO_MAX, arg);
            continue;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const char *inline_value = eq ? eq + 1 : NULL;

        /* Built-ins first; they never collide with keys in a sane table. */
        if (name_len == 4 && memcmp(name, "help", 4) == 0 && !eq) {
            bi->help = 1;
            continue;
        }
        if (name_len == 12 && memcmp(name, "print-config", 12) == 0 && !eq) {
            bi->print = 1;
            continue;
        }
        if (name_len == 12 && memcmp(name, "check-config", 12) == 0 && !eq) {
            bi->check = 1;
            continue;
        }
        if (name_len == 6 && memcmp(name, "config", 6) == 0) {
            const char *file = inline_value;
            if (file == NULL && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                file = argv[++i];
            if (file == NULL || *file == '\0') {
                if (apply)
                    cfg_errorf(ld->errors, &ld->nerrors, "missing value for --config");
                continue;
            }
            if (!apply)
                bi->config_file = file;
            continue;
        }

        const struct gw_cfg_entry *e = cfg_find(ld->table, name, name_len);
        int negated = 0;
        if (e == NULL && name_len > 3 && memcmp(name, "no-", 3) == 0) {
            e = cfg_find(ld->table, name + 3, name_len - 3);
            if (e && e->type == GW_CFG_BOOL)
                negated = 1;
            else
                e = NULL;
        }
        if (e == NULL) {
            if (apply)
                cfg_errorf(ld->errors, &ld->nerrors, "unknown option --%.*s",
                           (int)(name_len > CFG_ECHO_MAX ? CFG_ECHO_MAX : name_len), name);
            continue;
        }

        const char *value = inline_value;
        if (negated) {
            if (value) {
                if (apply)
                    cfg_errorf(ld->errors, &ld->nerrors, "--no-%s takes no value", e->key);
                continue;
            }
            value = "false";
        } else if (value == NULL && e->type == GW_CFG_BOOL) {
            value = "true";
        } else if (value == NULL) {
            /* A following "--flag" means the value was forgotten; values
             * starting with "--" can still be given as --key=--value. */
            if (i + 1 < argc && argv[i + 1] && strncmp(argv[i + 1], "--", 2) != 0) {
                value = argv[++i];
            } else {
                if (apply)
                    cfg_errorf(ld->errors, &ld->nerrors, "missing value for --%s", e->key);
                continue;
            }
        }
        if (!apply)
            continue;
        if (cfg_apply(e, ld->obj, value, NULL, ld->errors, &ld->nerrors) == GW_OK)
            ld->given[e - ld->table] = 1;
    }
}

static void
cfg_print_help(const struct gw_cfg_entry *table, const char *prog, FILE *out)
{
    char env[256];
    char def[64];

    fprintf(out, "Usage: %s [options]\n\n", prog);
    fprintf(out, "Every option can also be set in the environment (name shown) or in the\n"
                 "file given with --config (lines \"key = value\"). Precedence:\n"
                 "default < config file < environment < command line.\n\n");
    fprintf(out, "  --config FILE\n      Read \"key = value\" lines from FILE.\n");
    fprintf(out, "  --print-config\n      Print the effective configuration (secrets masked) "
                 "and exit.\n");
    fprintf(out, "  --check-config\n      Validate the configuration and exit.\n");
    fprintf(out, "  --help\n      Show this help and exit.\n\n");
    for (const struct gw_cfg_entry *e = table; e->key; e++) {
        cfg_env_name(e->key, env, sizeof(env));
        if (e->flags & GW_CFG_F_REQUIRED)
            snprintf(def, sizeof(def), "none, required");
        else if (e->def == NULL)
            snprintf(def, sizeof(def), "%s",
                     e->type == GW_CFG_INT    ? "0"
                     : e->type == GW_CFG_BOOL ? "false"
                                              : "unset");
        else if (e->flags & GW_CFG_F_SECRET)
            cfg_mask_secret(def, sizeof(def));
        else
            snprintf(def, sizeof(def), "%s", e->def);
        switch (e->type) {
        case GW_CFG_BOOL:
            fprintf(out, "  --%s, --no-%s\n", e->key, e->key);
            break;
        case GW_CFG_INT:
            fprintf(out, "  --%s N\n", e->key);
            break;
        case GW_CFG_STR:
            fprintf(out, "  --%s VALUE\n", e->key);
            break;
        }
        fprintf(out, "      %s\n      [%s", e->help ? e->help : "", cfg_type_name(e->type));
        if (e->type == GW_CFG_INT)
            fprintf(out, " %" PRId64 "..%" PRId64, e->min, e->max);
        fprintf(out, ", default: %s, env: %s%s%s]\n", def, env,
                (e->flags & GW_CFG_F_SECRET) ? ", secret" : "",
                (e->flags & GW_CFG_F_RELOADABLE) ? ", reloadable" : "");
    }
}

/* Every table field is initialised here (not freed first): obj is expected
 * to be fresh. On failure obj still holds only NULL or owned strings, so
 * gw_config_free() is always the right cleanup. */
gw_err
gw_config_load(const struct gw_cfg_entry *table, void *obj, int argc, char **argv, char **envp,
               FILE *out, struct gw_buf *errors, enum gw_cfg_action *action)
{
    struct cfg_load ld = {table, obj, errors, NULL, 0};
    struct cfg_builtin bi = {NULL, 0, 0, 0};
    size_t n = cfg_count(table);

    if (action)
        *action = GW_CFG_RUN;
    ld.given = gw_xcalloc(n ? n : 1, 1);

    cfg_load_argv(&ld, argc, argv, &bi, 0);
    if (bi.help) {
        const char *prog = argc > 0 && argv[0] ? argv[0] : "aicarpool";
        const char *slash = strrchr(prog, '/');
        /* Fields still get their defaults so gw_config_free() is safe. */
        cfg_load_defaults(&ld);
        cfg_print_help(table, slash ? slash + 1 : prog, out ? out : stdout);
        free(ld.given);
        if (action)
            *action = GW_CFG_PRINTED;
        return GW_OK;
    }

    cfg_load_defaults(&ld);
    if (bi.config_file)
        cfg_load_file(&ld, bi.config_file);
    cfg_load_env(&ld, envp);
    cfg_load_argv(&ld, argc, argv, &bi, 1);

    for (size_t i = 0; i < n; i++) {
        const struct gw_cfg_entry *e = &table[i];
        if (!(e->flags & GW_CFG_F_REQUIRED) || ld.given[i])
            continue;
        char env[256];
        cfg_env_name(e->key, env, sizeof(env));
        cfg_errorf(errors, &ld.nerrors, "missing required option --%s (or %s)", e->key, env);
    }
    free(ld.given);

    if (ld.nerrors > 0)
        return GW_EINVAL;
    if (bi.print) {
        gw_config_print(table, obj, out ? out : stdout);
        if (action)
            *action = GW_CFG_PRINTED;
    } else if (bi.check) {
        if (action)
            *action = GW_CFG_CHECKED;
    }
    return GW_OK;
}

gw_err
gw_config_set(const struct gw_cfg_entry *table, void *obj, const char *key, const char *value,
              struct gw_buf *errors)
{
    const struct gw_cfg_entry *e;

    if (key == NULL || value == NULL) {
        cfg_errorf(errors, NULL, "missing key or value");
        return GW_EINVAL;
    }
    e = cfg_find(table, key, strlen(key));
    if (e == NULL) {
        cfg_errorf(errors, NULL, "unknown key '%.*s'", CFG_ECHO_MAX, key);
        return GW_ENOTFOUND;
    }
    return cfg_apply(e, obj, value, NULL, errors, NULL);
}

void
gw_config_print(const struct gw_cfg_entry *table, const void *obj, FILE *out)
{
    char masked[64];

    for (const struct gw_cfg_entry *e = table; e->key; e++) {
        const char *field = (const char *)obj + e->offset;
        switch (e->type) {
        case GW_CFG_STR: {
            const char *s = *(char *const *)(const void *)field;
            if (s == NULL) {
                fprintf(out, "%s = (unset)\n", e->key);
            } else if (e->flags & GW_CFG_F_SECRET) {
                cfg_mask_secret(masked, sizeof(masked));
                fprintf(out, "%s = %s\n", e->key, masked);
            } else {
                fprintf(out, "%s = %s\n", e->key, s);
            }
            break;
        }
        case GW_CFG_INT:
            if (e->flags & GW_CFG_F_SECRET)
                fprintf(out, "%s = ********\n", e->key);
            else
                fprintf(out, "%s = %" PRId64 "\n", e->key, *(const int64_t *)(const void *)field);
            break;
        case GW_CFG_BOOL:
            if (e->flags & GW_CFG_F_SECRET)
                fprintf(out, "%s = ********\n", e->key);
            else
                fprintf(out, "%s = %s\n", e->key,
                        *(const int *)(const void *)field ? "true" : "false");
            break;
        }
    }
}

/* Writes s for a Markdown table cell: '|' escaped, newlines flattened. */
static void
cfg_md_cell(const char *s, FILE *out)
{
    for (const char *p = s; *p; p++) {
        if (*p == '|')
            fputs("\\|", out);
        else if (*p == '\n' || *p == '\r')
            fputc(' ', out);
        else
            fputc(*p, out);
    }
}

void
gw_config_write_reference(const struct gw_cfg_entry *table, const char *title, FILE *out)
{
    char env[256];

    if (title)
        fprintf(out, "# %s\n\n", title);
    fprintf(out, "Each key can be given as a command-line flag (`--key VALUE` or `--key=VALUE`; "
                 "booleans also `--key` / `--no-key`), as an environment variable, or as a "
                 "`key = value` line in the file named by `--config FILE`. Precedence: default "
                 "< config file < environment < command line.\n\n");
    fprintf(out, "| Key | Environment | Type | Default | Bounds | Flags | Description |\n");
    fprintf(out, "| --- | --- | --- | --- | --- | --- | --- |\n");
    for (const struct gw_cfg_entry *e = table; e->key; e++) {
        cfg_env_name(e->key, env, sizeof(env));
        fprintf(out, "| `%s` | `%s` | %s | ", e->key, env, cfg_type_name(e->type));
        if (e->flags & GW_CFG_F_REQUIRED) {
            fputs("*required*", out);
        } else if (e->def == NULL) {
            fputs(e->type == GW_CFG_INT    ? "`0`"
                  : e->type == GW_CFG_BOOL ? "`false`"
                                           : "*none*",
                  out);
        } else if (e->flags & GW_CFG_F_SECRET) {
            fputs("*secret*", out);
        } else {
            fputs("`", out);
            cfg_md_cell(e->def, out);
            fputs("`", out);
        }
        fputs(" | ", out);
        if (e->type == GW_CFG_INT)
            fprintf(out, "%" PRId64 " .. %" PRId64, e->min, e->max);
        fputs(" | ", out);
        const char *sep = "";
        if (e->flags & GW_CFG_F_REQUIRED) {
            fprintf(out, "%srequired", sep);
            sep = ", ";
        }
        if (e->flags & GW_CFG_F_SECRET) {
            fprintf(out, "%ssecret", sep);
            sep = ", ";
        }
        if (e->flags & GW_CFG_F_RELOADABLE)
            fprintf(out, "%sreloadable", sep);
        fputs(" | ", out);
        cfg_md_cell(e->help ? e->help : "", out);
        fputs(" |\n", out);
    }
}

void
gw_config_free(const struct gw_cfg_entry *table, void *obj)
{
    for (const struct gw_cfg_entry *e = table; e->key; e++) {
        if (e->type != GW_CFG_STR)
            continue;
        char **sp = (char **)(void *)((char *)obj + e->offset);
        free(*sp);
        *sp = NULL;
    }
}
