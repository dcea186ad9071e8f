/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for gw_log: secret masking, level names, the level check before
 * formatting, and the shape of a written line (captured from stderr). */
#include "gw_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_log.h"

static void
test_mask_short_secret(void **state)
{
    char out[64];
    (void)state;

    gw_log_mask("abc", out, sizeof(out));
    assert_string_equal(out, "***");
    gw_log_mask("", out, sizeof(out));
    assert_string_equal(out, "***");
    gw_log_mask(NULL, out, sizeof(out));
    assert_string_equal(out, "***");
    /* 12 characters is still "short": showing 8 would reveal most of it. */
    gw_log_mask("123456789012", out, sizeof(out));
    assert_string_equal(out, "***");
}

static void
test_mask_long_secret_keeps_prefix(void **state)
{
    char out[64];
    const char *key = "sk-ant-api03-TOPSECRETTAILVALUE";
    (void)state;

    gw_log_mask("1234567890123", out, sizeof(out));
    assert_string_equal(out, "12345678...");
    gw_log_mask(key, out, sizeof(out));
    assert_string_equal(out, "sk-ant-a...");
    assert_null(strstr(out, "TOPSECRET"));
}

static void
test_mask_small_output(void **state)
{
    char out[8];
    char none[2] = {'x', 'y'};
    (void)state;

    memset(out, 'Z', sizeof(out));
    gw_log_mask("sk-ant-api03-TOPSECRET", out, 6);
    assert_string_equal(out, "sk-an");
    assert_int_equal(out[6], 'Z');
    /* out_size 0 must not write at all. */
    gw_log_mask("sk-ant-api03-TOPSECRET", none, 0);
    assert_int_equal(none[0], 'x');
    assert_int_equal(none[1], 'y');
}

static void
test_set_level(void **state)
{
    enum gw_log_level saved = gw_log_threshold;
    (void)state;

    assert_int_equal(gw_log_set_level("debug"), 0);
    assert_int_equal(gw_log_threshold, GW_LOG_DEBUG);
    assert_int_equal(gw_log_set_level("ERROR"), 0);
    assert_int_equal(gw_log_threshold, GW_LOG_ERROR);
    assert_int_equal(gw_log_set_level("Warn"), 0);
    assert_int_equal(gw_log_threshold, GW_LOG_WARN);
    assert_int_equal(gw_log_set_level("info"), 0);
    assert_int_equal(gw_log_threshold, GW_LOG_INFO);
    /* Unknown names fail and leave the threshold alone. */
    assert_int_equal(gw_log_set_level("verbose"), -1);
    assert_int_equal(gw_log_set_level(""), -1);
    assert_int_equal(gw_log_set_level("infos"), -1);
    assert_int_equal(gw_log_threshold, GW_LOG_INFO);
    gw_log_threshold = saved;
}

/* Runs fn with stderr redirected to a temporary file; returns what was
 * written (owned, NUL-terminated). */
static char *
capture_stderr(void (*fn)(void))
{
    FILE *tmp = tmpfile();
    int saved;
    long size;
    char *text;

    assert_non_null(tmp);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDERR_FILENO) >= 0);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    size = ftell(tmp);
    assert_true(size >= 0);
    rewind(tmp);
    text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, tmp), (size_t)size);
    fclose(tmp);
    return text;
}

static int evaluated;

static int
count_evaluation(void)
{
    evaluated++;
    return 42;
}

static void
emit_lines(void)
{
    gw_log_set_component("testcomp");
    gw_log_threshold = GW_LOG_INFO;
    gw_log(GW_LOG_INFO, "TEST-HELLO", "value=%d", 7);
    gw_log_req(GW_LOG_WARN, "TEST-REQ", "req-123", "status=%s", "slow");
    /* Below the threshold: nothing written, arguments not evaluated. */
    gw_log(GW_LOG_DEBUG, "TEST-HIDDEN", "n=%d", count_evaluation());
}

static void
test_line_format_and_threshold(void **state)
{
    char *text;
    char *second;
    (void)state;

    evaluated = 0;
    text = capture_stderr(emit_lines);
    assert_int_equal(evaluated, 0);
    assert_null(strstr(text, "TEST-HIDDEN"));
    /* Two lines, each ending in a newline. */
    second = strchr(text, '\n');
    assert_non_null(second);
    second++;
    assert_non_null(strchr(second, '\n'));
    assert_string_equal(strchr(second, '\n') + 1, "");
    /* ISO-8601 UTC timestamp with milliseconds first. */
    assert_int_equal(text[4], '-');
    assert_int_equal(text[10], 'T');
    assert_int_equal(text[23], 'Z');
    assert_non_null(strstr(text, " testcomp info TEST-HELLO value=7\n"));
    assert_non_null(strstr(second, " testcomp warn TEST-REQ req=req-123 status=slow\n"));
    free(text);
    gw_log_threshold = GW_LOG_INFO;
}

static void
emit_long_line(void)
{
    char big[5000];
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    gw_log(GW_LOG_ERROR, "TEST-LONG", "%s", big);
}

static void
test_long_line_truncated(void **state)
{
    char *text;
    size_t len;
    (void)state;

    text = capture_stderr(emit_long_line);
    len = strlen(text);
    /* One write of at most the line buffer, still newline-terminated. */
    assert_true(len <= 2048);
    assert_true(len > 1000);
    assert_int_equal(text[len - 1], '\n');
    assert_ptr_equal(strchr(text, '\n'), text + len - 1);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_short_secret),
        cmocka_unit_test(test_mask_long_secret_keeps_prefix),
        cmocka_unit_test(test_mask_small_output),
        cmocka_unit_test(test_set_level),
        cmocka_unit_test(test_line_format_and_threshold),
        cmocka_unit_test(test_long_line_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
