/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for gw_buf: appends keep the buffer NUL-terminated, appendf grows
 * past the initial capacity, consume/reset/steal keep their contracts, and
 * the string-view comparisons respect lengths. */
#include "gw_test.h"

#include <stdlib.h>
#include <string.h>

#include "gw_buf.h"

static void
test_append(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    (void)state;

    assert_null(b.data);
    gw_buf_append(&b, "hello", 5);
    assert_int_equal(b.len, 5);
    assert_true(b.cap > b.len);
    assert_string_equal(b.data, "hello");
    gw_buf_append_str(&b, ", world");
    assert_string_equal(b.data, "hello, world");
    assert_int_equal(b.len, 12);
    /* Binary data with a NUL inside is kept by length. */
    gw_buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 15);
    assert_memory_equal(b.data + 12, "a\0b", 3);
    assert_int_equal(b.data[15], '\0');
    gw_buf_fini(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void
test_empty_append_allocates(void **state)
{
    struct gw_buf b;
    (void)state;

    gw_buf_init(&b);
    gw_buf_append(&b, NULL, 0);
    assert_non_null(b.data);
    assert_string_equal(b.data, "");
    assert_int_equal(b.len, 0);
    gw_buf_fini(&b);
}

static void
test_appendf_growth(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    char big[3000];
    (void)state;

    gw_buf_appendf(&b, "%d-%s", 42, "x");
    assert_string_equal(b.data, "42-x");
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    /* Far beyond the first allocation: must grow, not truncate. */
    gw_buf_appendf(&b, "[%s]", big);
    assert_int_equal(b.len, 4 + 2 + sizeof(big) - 1);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[4], '[');
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(strlen(b.data), b.len);
    for (int i = 0; i < 1000; i++)
        gw_buf_appendf(&b, "%04d", i);
    assert_int_equal(b.len, 4 + 2 + sizeof(big) - 1 + 4000);
    assert_memory_equal(b.data + b.len - 8, "09980999", 8);
    gw_buf_fini(&b);
}

static void
test_reserve_keeps_content(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    (void)state;

    gw_buf_append_str(&b, "abc");
    gw_buf_reserve(&b, 10000);
    assert_true(b.cap >= 3 + 10000 + 1);
    assert_int_equal(b.len, 3);
    assert_string_equal(b.data, "abc");
    gw_buf_fini(&b);
}

static void
test_consume(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    (void)state;

    gw_buf_consume(&b, 5); /* empty buffer: no effect, no crash */
    assert_int_equal(b.len, 0);
    gw_buf_append_str(&b, "0123456789");
    gw_buf_consume(&b, 0);
    assert_string_equal(b.data, "0123456789");
    gw_buf_consume(&b, 4);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.data, "456789");
    gw_buf_consume(&b, 6);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    gw_buf_append_str(&b, "xy");
    gw_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    gw_buf_append_str(&b, "again");
    assert_string_equal(b.data, "again");
    gw_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    gw_buf_fini(&b);
}

static void
test_steal(void **state)
{
    struct gw_buf b = GW_BUF_INIT;
    size_t len = 99;
    char *p;
    (void)state;

    /* Never NULL, also for a buffer that never allocated. */
    p = gw_buf_steal(&b, &len);
    assert_non_null(p);
    assert_string_equal(p, "");
    assert_int_equal(len, 0);
    free(p);

    gw_buf_append_str(&b, "owned text");
    p = gw_buf_steal(&b, &len);
    assert_string_equal(p, "owned text");
    assert_int_equal(len, 10);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    /* The buffer is reusable after a steal. */
    gw_buf_append_str(&b, "next");
    assert_string_equal(b.data, "next");
    free(p);
    p = gw_buf_steal(&b, NULL);
    assert_string_equal(p, "next");
    free(p);
}

static void
test_str_eq(void **state)
{
    struct gw_str s = {"Content-Type: x", 12};
    struct gw_str empty = {"", 0};
    (void)state;

    assert_true(gw_str_eq(s, "Content-Type"));
    assert_false(gw_str_eq(s, "content-type"));
    assert_false(gw_str_eq(s, "Content-Typ"));
    assert_false(gw_str_eq(s, "Content-Type:"));
    assert_true(gw_str_case_eq(s, "content-type"));
    assert_true(gw_str_case_eq(s, "CONTENT-TYPE"));
    assert_false(gw_str_case_eq(s, "content-types"));
    assert_false(gw_str_case_eq(s, "content"));
    assert_true(gw_str_eq(empty, ""));
    assert_false(gw_str_eq(empty, "a"));
    assert_true(gw_str_case_eq(empty, ""));
}

static void
test_xstr(void **state)
{
    char *a = gw_xstrdup("abc");
    char *b = gw_xstrndup("abcdef", 3);
    char *c = gw_xstrndup("a\0bc", 4);
    char *z = gw_xmalloc(0);
    int *v = gw_xcalloc(4, sizeof(int));
    (void)state;

    assert_string_equal(a, "abc");
    assert_string_equal(b, "abc");
    assert_memory_equal(c, "a\0bc\0", 5);
    assert_non_null(z);
    for (int i = 0; i < 4; i++)
        assert_int_equal(v[i], 0);
    v = gw_xrealloc(v, 64 * sizeof(int));
    assert_int_equal(v[3], 0);
    free(a);
    free(b);
    free(c);
    free(z);
    free(v);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append),         cmocka_unit_test(test_empty_append_allocates),
        cmocka_unit_test(test_appendf_growth), cmocka_unit_test(test_reserve_keeps_content),
        cmocka_unit_test(test_consume),        cmocka_unit_test(test_steal),
        cmocka_unit_test(test_str_eq),         cmocka_unit_test(test_xstr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
