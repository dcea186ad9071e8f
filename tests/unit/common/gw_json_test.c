/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for gw_json: strict length-bounded parsing (also of buffers that are
 * not NUL-terminated), typed getters and their errors, the 2^53 integer
 * boundary, string escaping and compact serialisation. */
#include "gw_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gw_json.h"

/* Parses a copy of text placed in a buffer of exactly its length (no NUL),
 * so an over-read is caught by the sanitizer build. */
static cJSON *
parse_exact(const char *text, size_t len, const char **why)
{
    char *copy = malloc(len ? len : 1);
    cJSON *root;

    assert_non_null(copy);
    memcpy(copy, text, len);
    root = gw_json_parse(copy, len, why);
    free(copy);
    return root;
}

static cJSON *
parse_ok(const char *text)
{
    const char *why = "unset";
    cJSON *root = parse_exact(text, strlen(text), &why);
    if (root == NULL)
        fail_msg("parse of '%s' failed: %s", text, why ? why : "(null)");
    assert_null(why);
    return root;
}

static void
test_parse_strict(void **state)
{
    const char *good[] = {"{}",
                          "{\"a\":1}",
                          " {\"a\":[1,2,{\"b\":null}]} \n\t\r ",
                          "[]",
                          "1",
                          "\"s\"",
                          "true",
                          "null",
                          "-0.5e3",
                          "\xef\xbb\xbf{}"};
    const char *bad[] = {"",       " ",        "{",   "{} x",   "{}{}",      "1 2",
                         "[1,]",   "{\"a\":}", "nul", "{}\x01", "\"abc",     "{'a':1}",
                         "[1] //", "{} ,",     "tru", "0x10",   "{\"a\":1}}"};
    (void)state;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        cJSON_Delete(parse_ok(good[i]));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        cJSON *root = parse_exact(bad[i], strlen(bad[i]), &why);
        if (root != NULL)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(why);
    }
}

static void
test_parse_exact_length(void **state)
{
    const char *why = NULL;
    const char text[] = "{\"a\":1}garbage";
    const char nul_inside[] = "{\"a\":1}\0";
    cJSON *root;
    int64_t v = 0;
    (void)state;

    /* Only len bytes are considered: a prefix that is a whole document. */
    root = gw_json_parse(text, 7, &why);
    assert_non_null(root);
    GW_PASS(gw_json_get_int(root, "a", &v));
    assert_int_equal(v, 1);
    cJSON_Delete(root);
    /* ...and the whole buffer is not. */
    root = gw_json_parse(text, strlen(text), &why);
    assert_null(root);
    assert_string_equal(why, "unexpected data after the JSON value");
    /* An embedded NUL inside len is trailing garbage, not an end marker. */
    root = gw_json_parse(nul_inside, sizeof(nul_inside) - 1, &why);
    assert_null(root);
    /* Truncated documents in exact-size buffers. */
    assert_null(parse_exact("{\"a\":12", 7, &why));
    assert_null(parse_exact("\"abc", 4, &why));
    assert_null(parse_exact("[1,2", 4, &why));
    /* A number cut by len is the shorter number, not 12. */
    root = gw_json_parse("12", 1, &why);
    assert_non_null(root);
    assert_true(cJSON_IsNumber(root) && root->valuedouble == 1.0);
    cJSON_Delete(root);
    assert_null(gw_json_parse(NULL, 0, &why));
    assert_non_null(why);
    /* why may be NULL. */
    assert_null(gw_json_parse("{", 1, NULL));
}

static void
test_get_str_and_bool(void **state)
{
    cJSON *root = parse_ok("{\"s\":\"hi\",\"n\":1,\"t\":true,\"f\":false,\"z\":null,"
                           "\"o\":{},\"a\":[]}");
    const char *s = "untouched";
    int b = 7;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "a");
    (void)state;

    GW_PASS(gw_json_get_str(root, "s", &s));
    assert_string_equal(s, "hi");
    GW_FAIL(gw_json_get_str(root, "n", &s), GW_EINVAL);
    GW_FAIL(gw_json_get_str(root, "t", &s), GW_EINVAL);
    GW_FAIL(gw_json_get_str(root, "o", &s), GW_EINVAL);
    GW_FAIL(gw_json_get_str(root, "S", &s), GW_ENOTFOUND); /* case-sensitive */
    s = "untouched";
    GW_FAIL(gw_json_get_str(root, "missing", &s), GW_ENOTFOUND);
    GW_FAIL(gw_json_get_str(root, "z", &s), GW_ENOTFOUND); /* null is absent */
    assert_string_equal(s, "untouched");

    GW_PASS(gw_json_get_bool(root, "t", &b));
    assert_int_equal(b, 1);
    GW_PASS(gw_json_get_bool(root, "f", &b));
    assert_int_equal(b, 0);
    b = 7;
    GW_FAIL(gw_json_get_bool(root, "n", &b), GW_EINVAL);
    GW_FAIL(gw_json_get_bool(root, "s", &b), GW_EINVAL);
    GW_FAIL(gw_json_get_bool(root, "missing", &b), GW_ENOTFOUND);
    assert_int_equal(b, 7);

    /* Not an object. */
    GW_FAIL(gw_json_get_str(arr, "s", &s), GW_EINVAL);
    GW_FAIL(gw_json_get_bool(NULL, "t", &b), GW_EINVAL);
    cJSON_Delete(root);
}

static void
test_get_int(void **state)
{
    cJSON *root = parse_ok("{\"zero\":0,\"neg\":-42,\"big\":9007199254740991,"
                           "\"nbig\":-9007199254740991,\"over\":9007199254740992,"
                           "\"nover\":-9007199254740992,\"huge\":1e300,\"frac\":1.5,"
                           "\"exp\":1e3,\"fracexp\":1.25e1,\"s\":\"5\",\"b\":true,"
                           "\"i64max\":9223372036854775807,\"arr\":[1]}");
    int64_t v = 99;
    (void)state;

    GW_PASS(gw_json_get_int(root, "zero", &v));
    assert_int_equal(v, 0);
    GW_PASS(gw_json_get_int(root, "neg", &v));
    assert_int_equal(v, -42);
    GW_PASS(gw_json_get_int(root, "big", &v));
    assert_true(v == 9007199254740991LL);
    GW_PASS(gw_json_get_int(root, "nbig", &v));
    assert_true(v == -9007199254740991LL);
    GW_PASS(gw_json_get_int(root, "exp", &v));
    assert_int_equal(v, 1000);
    v = 99;
    /* Beyond 2^53 - 1 a double cannot tell neighbours apart. */
    GW_FAIL(gw_json_get_int(root, "over", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "nover", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "huge", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "i64max", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "frac", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "fracexp", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "s", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "b", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "arr", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "missing", &v), GW_ENOTFOUND);
    assert_int_equal(v, 99);
    cJSON_Delete(root);

    /* NaN and infinity cannot come from text; build them directly. */
    root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "nan", NAN);
    cJSON_AddNumberToObject(root, "inf", INFINITY);
    GW_FAIL(gw_json_get_int(root, "nan", &v), GW_EINVAL);
    GW_FAIL(gw_json_get_int(root, "inf", &v), GW_EINVAL);
    cJSON_Delete(root);
}

static void
test_add_int(void **state)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    struct gw_buf out = GW_BUF_INIT;
    int64_t v = 0;
    (void)state;

    GW_PASS(gw_json_add_int(root, "max", 9007199254740991LL));
    GW_PASS(gw_json_add_int(root, "min", -9007199254740991LL));
    GW_PASS(gw_json_add_int(root, "quadrillion", 1000000000000000LL));
    GW_PASS(gw_json_add_int(root, "small", -7));
    GW_FAIL(gw_json_add_int(root, "over", 9007199254740992LL), GW_EINVAL);
    GW_FAIL(gw_json_add_int(root, "under", -9007199254740992LL), GW_EINVAL);
    GW_FAIL(gw_json_add_int(root, "i64min", INT64_MIN), GW_EINVAL);
    GW_FAIL(gw_json_add_int(arr, "x", 1), GW_EINVAL);
    GW_FAIL(gw_json_add_int(NULL, "x", 1), GW_EINVAL);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "over"));

    /* Written exactly, never in exponent form. */
    gw_json_append(&out, root);
    assert_string_equal(out.data, "{\"max\":9007199254740991,\"min\":-9007199254740991,"
                                  "\"quadrillion\":1000000000000000,\"small\":-7}");
    /* And read back exactly. */
    cJSON *back = gw_json_parse(out.data, out.len, NULL);
    assert_non_null(back);
    GW_PASS(gw_json_get_int(back, "max", &v));
    assert_true(v == 9007199254740991LL);
    GW_PASS(gw_json_get_int(back, "quadrillion", &v));
    assert_true(v == 1000000000000000LL);
    cJSON_Delete(back);
    cJSON_Delete(root);
    cJSON_Delete(arr);
    gw_buf_fini(&out);
}

static void
test_append_string_escapes(void **state)
{
    struct gw_buf out = GW_BUF_INIT;
    const char in[] = "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f\0end";
    (void)state;

    gw_json_append_string(&out, in, sizeof(in) - 1);
    assert_string_equal(out.data, "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\x7f\\u0000end\"");
    /* The result parses back to the same bytes. */
    cJSON *v = gw_json_parse(out.data, out.len, NULL);
    assert_non_null(v);
    assert_true(cJSON_IsString(v));
    /* cJSON stops its C string at the decoded NUL; compare up to it. */
    assert_string_equal(v->valuestring, "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f");
    cJSON_Delete(v);

    gw_buf_reset(&out);
    gw_json_append_string(&out, "", 0);
    assert_string_equal(out.data, "\"\"");

    /* UTF-8 passes through unchanged (2-, 3- and 4-byte sequences). */
    gw_buf_reset(&out);
    gw_json_append_string(&out, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x9a\x97", 15);
    assert_string_equal(out.data, "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x9a\x97\"");
    v = gw_json_parse(out.data, out.len, NULL);
    assert_non_null(v);
    assert_string_equal(v->valuestring, "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x9a\x97");
    cJSON_Delete(v);

    /* Length-bounded: bytes after len are not read. */
    gw_buf_reset(&out);
    gw_json_append_string(&out, "abc\"def", 3);
    assert_string_equal(out.data, "\"abc\"");
    gw_buf_fini(&out);
}

static void
test_append_every_control_char(void **state)
{
    struct gw_buf out = GW_BUF_INIT;
    char in[32];
    (void)state;

    for (int i = 0; i < 32; i++)
        in[i] = (char)i;
    gw_json_append_string(&out, in, sizeof(in));
    /* No raw control character may remain in the output. */
    for (size_t i = 0; i < out.len; i++)
        assert_true((unsigned char)out.data[i] >= 0x20);
    cJSON *v = gw_json_parse(out.data, out.len, NULL);
    assert_non_null(v);
    assert_true(cJSON_IsString(v));
    cJSON_Delete(v);
    gw_buf_fini(&out);
}

static void
test_append_tree(void **state)
{
    const char *text = "{\"model\":\"claude\",\"n\":[1,-2,0.5,-0.25,1e-7,123.456],"
                       "\"ok\":true,\"no\":false,\"nil\":null,\"nested\":{\"k\\\"ey\":\"v\\n\"},"
                       "\"empty\":{},\"ea\":[]}";
    struct gw_buf out = GW_BUF_INIT;
    cJSON *root = parse_ok(text);
    cJSON *back;
    (void)state;

    gw_buf_append_str(&out, "data: ");
    gw_json_append(&out, root);
    assert_string_equal(out.data,
                        "data: {\"model\":\"claude\",\"n\":[1,-2,0.5,-0.25,1e-07,123.456],"
                        "\"ok\":true,\"no\":false,\"nil\":null,\"nested\":{\"k\\\"ey\":\"v\\n\"},"
                        "\"empty\":{},\"ea\":[]}");
    back = gw_json_parse(out.data + 6, out.len - 6, NULL);
    assert_non_null(back);
    assert_true(cJSON_Compare(root, back, 1));
    cJSON_Delete(back);
    cJSON_Delete(root);

    /* Doubles that need 17 digits still read back exactly. */
    root = cJSON_CreateNumber(0.1 + 0.2);
    gw_buf_reset(&out);
    gw_json_append(&out, root);
    assert_string_equal(out.data, "0.30000000000000004");
    cJSON_Delete(root);
    /* JSON has no NaN: written as null. */
    root = cJSON_CreateNumber(NAN);
    gw_buf_reset(&out);
    gw_json_append(&out, root);
    assert_string_equal(out.data, "null");
    cJSON_Delete(root);
    gw_buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_strict),
        cmocka_unit_test(test_parse_exact_length),
        cmocka_unit_test(test_get_str_and_bool),
        cmocka_unit_test(test_get_int),
        cmocka_unit_test(test_add_int),
        cmocka_unit_test(test_append_string_escapes),
        cmocka_unit_test(test_append_every_control_char),
        cmocka_unit_test(test_append_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
