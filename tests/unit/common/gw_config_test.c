/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the configuration engine over a small table with string, int,
 * bool, secret and required entries: precedence, flag forms, collection of
 * every error at once, file:line reporting, masking, help and reference. */
#include "gw_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_config.h"

struct tcfg {
    char *name;
    int64_t port;
    int verbose;
    char *api_token;
    char *region;
    int64_t max_workers;
    int use_tls;
    int64_t pin;
};

static const struct gw_cfg_entry ttable[] = {
    {"name", GW_CFG_STR, "edge-1", 0, 0, 0, offsetof(struct tcfg, name), "Display name"},
    {"port", GW_CFG_INT, "8080", 1, 65535, 0, offsetof(struct tcfg, port), "TCP port | listen"},
    {"verbose", GW_CFG_BOOL, "false", 0, 0, GW_CFG_F_RELOADABLE, offsetof(struct tcfg, verbose),
     "Chatty logs"},
    {"api-token", GW_CFG_STR, NULL, 0, 0, GW_CFG_F_SECRET, offsetof(struct tcfg, api_token),
     "Token for the hub"},
    {"region", GW_CFG_STR, NULL, 0, 0, GW_CFG_F_REQUIRED, offsetof(struct tcfg, region),
     "Region this edge serves"},
    {"max-workers", GW_CFG_INT, "4", 1, 64, GW_CFG_F_RELOADABLE, offsetof(struct tcfg, max_workers),
     "Worker threads"},
    {"use-tls", GW_CFG_BOOL, "true", 0, 0, 0, offsetof(struct tcfg, use_tls), "Serve TLS"},
    {"pin", GW_CFG_INT, "0", 0, 999999999, GW_CFG_F_SECRET, offsetof(struct tcfg, pin),
     "Secret number"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL},
};

static const char *const no_env[] = {NULL};

/* Copies a NULL-terminated list of literals into a mutable argv/envp, as
 * main() would receive it. */
static char **
dupv(const char *const *src, int *count)
{
    int n = 0;
    char **v;

    while (src[n])
        n++;
    v = calloc((size_t)n + 1, sizeof(*v));
    assert_non_null(v);
    for (int i = 0; i < n; i++)
        v[i] = strdup(src[i]);
    if (count)
        *count = n;
    return v;
}

static void
freev(char **v)
{
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* Loads argv/env with output captured into *out_text (owned, may be NULL)
 * and errors appended to errs. */
static gw_err
load(struct tcfg *c, const char *const *args, const char *const *envs, struct gw_buf *errs,
     char **out_text, enum gw_cfg_action *action)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = open_memstream(&text, &text_len);
    int argc = 0;
    char **argv = dupv(args, &argc);
    char **envp = dupv(envs, NULL);
    gw_err rv;

    assert_non_null(out);
    memset(c, 0xa5, sizeof(*c)); /* load must initialise every field */
    rv = gw_config_load(ttable, c, argc, argv, envp, out, errs, action);
    fclose(out);
    freev(argv);
    freev(envp);
    if (out_text)
        *out_text = text;
    else
        free(text);
    return rv;
}

static int
count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* Writes text to a fresh temporary file; returns its owned path. */
static char *
write_temp(const char *text)
{
    char *path = strdup("/tmp/gw_config_test_XXXXXX");
    int fd;
    FILE *f;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void
test_defaults(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action = GW_CFG_PRINTED;
    const char *argv[] = {"prog", "--region", "eu", NULL};
    (void)state;

    GW_PASS(load(&c, argv, no_env, &errs, NULL, &action));
    assert_int_equal(action, GW_CFG_RUN);
    assert_null(errs.data);
    assert_string_equal(c.name, "edge-1");
    assert_int_equal(c.port, 8080);
    assert_int_equal(c.verbose, 0);
    assert_null(c.api_token);
    assert_string_equal(c.region, "eu");
    assert_int_equal(c.max_workers, 4);
    assert_int_equal(c.use_tls, 1);
    gw_config_free(ttable, &c);
    assert_null(c.name);
    assert_null(c.region);
    gw_buf_fini(&errs);
}

static void
test_precedence(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char *path = write_temp("# layered config\n"
                            "\n"
                            "name = from-file\n"
                            "port = 1000\n"
                            "max-workers = 10\n"
                            "region = file-region\n");
    char config_eq[512];
    const char *env[] = {"PATH=/bin", "AICARPOOL_PORT=2000", "AICARPOOL_MAX_WORKERS=20",
                         "AICARPOOL_UNRELATED=1", NULL};
    const char *argv[] = {"prog", "--config", path, "--max-workers", "30", NULL};
    const char *argv2[] = {"prog", config_eq, NULL};
    (void)state;

    GW_PASS(load(&c, argv, env, &errs, NULL, &action));
    assert_null(errs.data);
    assert_string_equal(c.name, "from-file"); /* file over default */
    assert_int_equal(c.port, 2000);           /* env over file */
    assert_int_equal(c.max_workers, 30);      /* argv over env */
    assert_string_equal(c.region, "file-region");
    assert_int_equal(c.use_tls, 1); /* untouched default */
    gw_config_free(ttable, &c);

    /* Without the flag, env wins over the file; --config=FILE form. */
    snprintf(config_eq, sizeof(config_eq), "--config=%s", path);
    GW_PASS(load(&c, argv2, env, &errs, NULL, &action));
    assert_int_equal(c.max_workers, 20);
    assert_int_equal(c.port, 2000);
    gw_config_free(ttable, &c);

    /* Without env, the file wins over the defaults. */
    GW_PASS(load(&c, argv2, no_env, &errs, NULL, &action));
    assert_int_equal(c.max_workers, 10);
    assert_int_equal(c.port, 1000);
    gw_config_free(ttable, &c);

    unlink(path);
    free(path);
    gw_buf_fini(&errs);
}

static void
test_flag_forms(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *argv[] = {"prog",         "--region=us east",
                          "--port=81",    "--verbose",
                          "--no-use-tls", "--name",
                          "n1",           "--name",
                          "n2",           "--api-token",
                          "tok",          "--pin",
                          "-5",           NULL};
    const char *argv2[] = {"prog",
                           "--region",
                           "x",
                           "--verbose=off",
                           "--use-tls=YES",
                           "--api-token=--starts-with-dashes",
                           "--pin=0",
                           NULL};
    (void)state;

    GW_FAIL(load(&c, argv, no_env, &errs, NULL, &action), GW_EINVAL);
    /* Only the negative pin is wrong (below min 0); secrets are not echoed. */
    assert_string_equal(errs.data, "--pin: ******** is out of range [0, 999999999]\n");
    assert_string_equal(c.region, "us east");
    assert_int_equal(c.port, 81);
    assert_int_equal(c.verbose, 1);
    assert_int_equal(c.use_tls, 0);
    assert_string_equal(c.name, "n2"); /* last one wins, earlier string freed */
    assert_string_equal(c.api_token, "tok");
    gw_config_free(ttable, &c);
    gw_buf_reset(&errs);

    GW_PASS(load(&c, argv2, no_env, &errs, NULL, &action));
    assert_string_equal(errs.data, "");
    assert_int_equal(c.verbose, 0);
    assert_int_equal(c.use_tls, 1);
    assert_string_equal(c.api_token, "--starts-with-dashes");
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_negative_zero_port_rejected(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *argv[] = {"prog", "--region", "x", "--port", "-0", NULL};
    (void)state;

    GW_FAIL(load(&c, argv, no_env, &errs, NULL, &action), GW_EINVAL);
    assert_non_null(strstr(errs.data, "--port: -0 is out of range [1, 65535]"));
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_env_forms(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *env[] = {"AICARPOOL_REGION=ap",
                         "AICARPOOL_VERBOSE=yes",
                         "AICARPOOL_API_TOKEN=s3cr3t",
                         "AICARPOOL_USE_TLS=0",
                         "AICARPOOL_NAME=",
                         "AICARPOOL_BROKEN",
                         "aicarpool_port=1",
                         NULL};
    const char *argv[] = {"prog", NULL};
    (void)state;

    GW_PASS(load(&c, argv, env, &errs, NULL, &action));
    assert_null(errs.data);
    assert_string_equal(c.region, "ap"); /* required satisfied by env */
    assert_int_equal(c.verbose, 1);
    assert_string_equal(c.api_token, "s3cr3t");
    assert_int_equal(c.use_tls, 0);
    assert_string_equal(c.name, "");
    assert_int_equal(c.port, 8080); /* lower-case name is not ours */
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static int
has_line(const char *errors, const char *needle)
{
    return errors && strstr(errors, needle) != NULL;
}

static void
test_all_errors_collected(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *env[] = {"AICARPOOL_PORT=12x", NULL};
    const char *argv[] = {"prog",
                          "--bogus",
                          "--max-workers",
                          "999",
                          "--verbose=maybe",
                          "stray",
                          "--no-port",
                          "--use-tls=",
                          "--pin",
                          "9223372036854775808",
                          "--no-verbose=1",
                          "--name",
                          NULL};
    (void)state;

    GW_FAIL(load(&c, argv, env, &errs, NULL, &action), GW_EINVAL);
    assert_non_null(errs.data);
    const char *e = errs.data;
    assert_true(has_line(e, "unknown option --bogus\n"));
    assert_true(has_line(e, "--max-workers: 999 is out of range [1, 64]\n"));
    assert_true(has_line(e, "--verbose: invalid boolean 'maybe'"));
    assert_true(has_line(e, "unexpected argument 'stray'\n"));
    assert_true(has_line(e, "unknown option --no-port\n")); /* --no- only for booleans */
    assert_true(has_line(e, "--use-tls: invalid boolean ''"));
    assert_true(has_line(e, "--pin: invalid integer"));
    assert_true(has_line(e, "--no-verbose takes no value\n"));
    assert_true(has_line(e, "missing value for --name\n"));
    assert_true(has_line(e, "AICARPOOL_PORT: invalid integer '12x'\n"));
    assert_true(has_line(e, "missing required option --region (or AICARPOOL_REGION)\n"));
    assert_int_equal(count_lines(e), 11);
    /* A failed value leaves the previous layer's value. */
    assert_int_equal(c.max_workers, 4);
    assert_int_equal(c.port, 8080);
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_integer_validation(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    const char *bad[] = {"", " 5", "5 ", "0x10", "1e3", "80.0", "+", "--1", "99999999999999999999"};
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&c, 0, sizeof(c));
        c.port = 7;
        gw_buf_reset(&errs);
        GW_FAIL(gw_config_set(ttable, &c, "port", bad[i], &errs), GW_EINVAL);
        assert_int_equal(c.port, 7);
        assert_true(has_line(errs.data, "invalid integer"));
        assert_int_equal(count_lines(errs.data), 1);
    }
    GW_PASS(gw_config_set(ttable, &c, "port", "+443", &errs));
    assert_int_equal(c.port, 443);
    GW_PASS(gw_config_set(ttable, &c, "port", "65535", &errs));
    assert_int_equal(c.port, 65535);
    GW_FAIL(gw_config_set(ttable, &c, "port", "65536", &errs), GW_EINVAL);
    GW_FAIL(gw_config_set(ttable, &c, "port", "0", &errs), GW_EINVAL);
    assert_int_equal(c.port, 65535);
    gw_buf_fini(&errs);
}

static void
test_set(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    (void)state;

    memset(&c, 0, sizeof(c));
    GW_PASS(gw_config_set(ttable, &c, "name", "first", &errs));
    GW_PASS(gw_config_set(ttable, &c, "name", "second", &errs)); /* old value freed */
    assert_string_equal(c.name, "second");
    GW_PASS(gw_config_set(ttable, &c, "verbose", "on", &errs));
    assert_int_equal(c.verbose, 1);
    GW_FAIL(gw_config_set(ttable, &c, "verbose", "2", &errs), GW_EINVAL);
    assert_int_equal(c.verbose, 1);
    GW_FAIL(gw_config_set(ttable, &c, "nope", "1", &errs), GW_ENOTFOUND);
    assert_true(has_line(errs.data, "unknown key 'nope'\n"));
    GW_FAIL(gw_config_set(ttable, &c, "name", NULL, NULL), GW_EINVAL);
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_file_errors_have_line_numbers(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char want[512];
    char *path = write_temp("# comment = not a setting\n"    /* 1 */
                            "   \n"                          /* 2 */
                            "name = \"  spaced  \"\n"        /* 3 */
                            "this line has no equals sign\n" /* 4 */
                            "port = notanumber\n"            /* 5 */
                            "unknown-key = 1\n"              /* 6 */
                            "max_workers = 8\r\n"            /* 7: '_' and CRLF ok */
                            " = value\n"                     /* 8 */
                            "api-token = abc#def\n"          /* 9: '#' kept */
                            "region = r1\n");                /* 10 */
    const char *argv[] = {"prog", "--config", path, NULL};
    (void)state;

    GW_FAIL(load(&c, argv, no_env, &errs, NULL, &action), GW_EINVAL);
    snprintf(want, sizeof(want), "%s:4: expected 'key = value'\n", path);
    assert_true(has_line(errs.data, want));
    snprintf(want, sizeof(want), "%s:5: port: invalid integer 'notanumber'\n", path);
    assert_true(has_line(errs.data, want));
    snprintf(want, sizeof(want), "%s:6: unknown key 'unknown-key'\n", path);
    assert_true(has_line(errs.data, want));
    snprintf(want, sizeof(want), "%s:8: missing key", path);
    assert_true(has_line(errs.data, want));
    assert_int_equal(count_lines(errs.data), 4);
    /* The good lines still took effect. */
    assert_string_equal(c.name, "  spaced  ");
    assert_int_equal(c.max_workers, 8);
    assert_string_equal(c.api_token, "abc#def");
    assert_string_equal(c.region, "r1");
    gw_config_free(ttable, &c);
    unlink(path);
    free(path);
    gw_buf_fini(&errs);
}

static void
test_missing_file(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *argv[] = {"prog", "--region", "x", "--config", "/nonexistent/gw.conf", NULL};
    const char *argv2[] = {"prog", "--region", "x", "--config", NULL};
    (void)state;

    GW_FAIL(load(&c, argv, no_env, &errs, NULL, &action), GW_EINVAL);
    assert_true(has_line(errs.data, "/nonexistent/gw.conf: cannot open config file"));
    gw_config_free(ttable, &c);
    gw_buf_reset(&errs);
    GW_FAIL(load(&c, argv2, no_env, &errs, NULL, &action), GW_EINVAL);
    assert_true(has_line(errs.data, "missing value for --config\n"));
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_print_config_masks_secrets(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char *text = NULL;
    const char *argv[] = {"prog",  "--print-config", "--region",
                          "eu",    "--api-token",    "sk-supersecret-tail-0123456789",
                          "--pin", "4242",           NULL};
    const char *argv2[] = {"prog",        "--print-config", "--region", "eu",
                           "--api-token", "short",          NULL};
    const char *argv3[] = {"prog", "--print-config", NULL};
    (void)state;

    GW_PASS(load(&c, argv, no_env, &errs, &text, &action));
    assert_int_equal(action, GW_CFG_PRINTED);
    assert_non_null(strstr(text, "name = edge-1\n"));
    assert_non_null(strstr(text, "port = 8080\n"));
    assert_non_null(strstr(text, "verbose = false\n"));
    assert_non_null(strstr(text, "use-tls = true\n"));
    assert_non_null(strstr(text, "region = eu\n"));
    assert_non_null(strstr(text, "api-token = ********\n"));
    assert_null(strstr(text, "sk-super"));
    assert_non_null(strstr(text, "pin = ********\n"));
    assert_null(strstr(text, "4242"));
    assert_int_equal(count_lines(text), 8);
    free(text);
    gw_config_free(ttable, &c);

    GW_PASS(load(&c, argv2, no_env, &errs, &text, &action));
    assert_non_null(strstr(text, "api-token = ********\n"));
    assert_null(strstr(text, "short"));
    free(text);
    gw_config_free(ttable, &c);

    /* Unset strings print as (unset); errors still win over printing. */
    const char *env[] = {"AICARPOOL_REGION=eu", NULL};
    GW_PASS(load(&c, argv3, env, &errs, &text, &action));
    assert_non_null(strstr(text, "api-token = (unset)\n"));
    free(text);
    gw_config_free(ttable, &c);
    GW_FAIL(load(&c, argv3, no_env, &errs, &text, &action), GW_EINVAL);
    assert_string_equal(text, "");
    free(text);
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_secret_not_echoed_in_errors(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    const char *argv[] = {"prog", "--region", "x", "--pin", "hunter2-very-secret-pin", NULL};
    (void)state;

    GW_FAIL(load(&c, argv, no_env, &errs, NULL, &action), GW_EINVAL);
    assert_true(has_line(errs.data, "--pin: invalid integer '********'"));
    assert_null(strstr(errs.data, "hunter2"));
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_check_config(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char *text = NULL;
    const char *argv[] = {"prog", "--check-config", "--region", "x", NULL};
    const char *argv2[] = {"prog", "--check-config", "--region", "x", "--port", "0", NULL};
    (void)state;

    GW_PASS(load(&c, argv, no_env, &errs, &text, &action));
    assert_int_equal(action, GW_CFG_CHECKED);
    assert_string_equal(text, "");
    free(text);
    gw_config_free(ttable, &c);
    GW_FAIL(load(&c, argv2, no_env, &errs, NULL, &action), GW_EINVAL);
    assert_int_equal(action, GW_CFG_RUN);
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_help(void **state)
{
    struct tcfg c;
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char *text = NULL;
    /* Help works even when the rest of the command line is wrong. */
    const char *argv[] = {"/usr/bin/aicarpool-edge", "--port", "bad", "--help", NULL};
    const char *argv2[] = {"prog", "-h", NULL};
    (void)state;

    GW_PASS(load(&c, argv, no_env, &errs, &text, &action));
    assert_int_equal(action, GW_CFG_PRINTED);
    assert_null(errs.data);
    assert_non_null(strstr(text, "Usage: aicarpool-edge [options]"));
    for (const struct gw_cfg_entry *e = ttable; e->key; e++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "  --%s", e->key);
        assert_non_null(strstr(text, flag));
        assert_non_null(strstr(text, e->help));
    }
    assert_non_null(strstr(text, "--verbose, --no-verbose"));
    assert_non_null(strstr(text, "[integer 1..65535, default: 8080, env: AICARPOOL_PORT]"));
    assert_non_null(strstr(text, "env: AICARPOOL_MAX_WORKERS, reloadable]"));
    assert_non_null(strstr(text, "[string, default: none, required, env: AICARPOOL_REGION]"));
    assert_non_null(strstr(text, "[boolean, default: true, env: AICARPOOL_USE_TLS]"));
    assert_non_null(strstr(text, "env: AICARPOOL_API_TOKEN, secret]"));
    assert_non_null(strstr(text, "--print-config"));
    assert_non_null(strstr(text, "--check-config"));
    assert_non_null(strstr(text, "--config FILE"));
    free(text);
    gw_config_free(ttable, &c);

    GW_PASS(load(&c, argv2, no_env, &errs, &text, &action));
    assert_int_equal(action, GW_CFG_PRINTED);
    assert_non_null(strstr(text, "Usage: prog"));
    free(text);
    gw_config_free(ttable, &c);
    gw_buf_fini(&errs);
}

static void
test_reference(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    (void)state;

    gw_config_write_reference(ttable, "Edge configuration", out);
    fclose(out);
    assert_true(strncmp(text, "# Edge configuration\n", 21) == 0);
    assert_non_null(strstr(text, "| Key | Environment | Type | Default | Bounds |"));
    for (const struct gw_cfg_entry *e = ttable; e->key; e++) {
        char cell[64];
        snprintf(cell, sizeof(cell), "| `%s` |", e->key);
        assert_non_null(strstr(text, cell));
    }
    assert_non_null(strstr(text, "| `port` | `AICARPOOL_PORT` | integer | `8080` | 1 .. 65535 |"));
    assert_non_null(strstr(text, "TCP port \\| listen |")); /* '|' escaped in cells */
    assert_non_null(strstr(text, "| `region` | `AICARPOOL_REGION` | string | *required* |"));
    assert_non_null(strstr(text, "| `max-workers` | `AICARPOOL_MAX_WORKERS` |"));
    assert_non_null(strstr(text, "reloadable"));
    assert_non_null(strstr(text, "secret"));
    free(text);
}

static void
test_bad_default_reported(void **state)
{
    struct bad {
        int64_t n;
    } b;
    static const struct gw_cfg_entry table[] = {
        {"n", GW_CFG_INT, "100", 1, 10, 0, offsetof(struct bad, n), "bounded"},
        {NULL, 0, NULL, 0, 0, 0, 0, NULL},
    };
    /* The full int64 range works when the table asks for it. */
    static const struct gw_cfg_entry wide[] = {
        {"n", GW_CFG_INT, "-9223372036854775808", INT64_MIN, INT64_MAX, 0, offsetof(struct bad, n),
         "wide"},
        {NULL, 0, NULL, 0, 0, 0, 0, NULL},
    };
    const char *args[] = {"prog", NULL};
    struct gw_buf errs = GW_BUF_INIT;
    enum gw_cfg_action action;
    char **argv = dupv(args, NULL);
    char **envp = dupv(no_env, NULL);
    (void)state;

    GW_FAIL(gw_config_load(table, &b, 1, argv, envp, stdout, &errs, &action), GW_EINVAL);
    assert_true(has_line(errs.data, "internal: bad default for n"));
    GW_PASS(gw_config_load(wide, &b, 1, argv, envp, stdout, NULL, &action));
    assert_true(b.n == INT64_MIN);
    freev(argv);
    freev(envp);
    gw_buf_fini(&errs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_negative_zero_port_rejected),
        cmocka_unit_test(test_env_forms),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_integer_validation),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_file_errors_have_line_numbers),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_print_config_masks_secrets),
        cmocka_unit_test(test_secret_not_echoed_in_errors),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_bad_default_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
