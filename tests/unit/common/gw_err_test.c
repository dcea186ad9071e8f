/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for gw_err: every error has its text, name, HTTP status and dialect
 * types; out-of-range values stay safe; foreign codes map as documented. */
#include "gw_test.h"

#include <errno.h>
#include <nng/nng.h>
#include <string.h>
#include <uv.h>

static void
test_every_error_described(void **state)
{
    (void)state;
    for (int i = 0; i < GW_ERR_COUNT; i++) {
        gw_err e = (gw_err)i;
        assert_non_null(gw_strerror(e));
        assert_true(strlen(gw_strerror(e)) > 0);
        assert_non_null(gw_err_name(e));
        assert_true(strlen(gw_err_name(e)) > 0);
        assert_in_range(gw_err_http_status(e), 200, 599);
        assert_non_null(gw_err_anthropic_type(e));
        assert_true(strlen(gw_err_anthropic_type(e)) > 0);
        assert_non_null(gw_err_openai_type(e));
        assert_true(strlen(gw_err_openai_type(e)) > 0);
        /* Only success maps to a 2xx status. */
        if (e == GW_OK)
            assert_int_equal(gw_err_http_status(e), 200);
        else
            assert_true(gw_err_http_status(e) >= 400);
        /* Names are unique, so logs and the wire can be grepped. */
        for (int j = 0; j < i; j++)
            assert_string_not_equal(gw_err_name(e), gw_err_name((gw_err)j));
    }
}

static void
test_known_rows(void **state)
{
    (void)state;
    assert_int_equal(GW_OK, 0);
    assert_string_equal(gw_err_name(GW_OK), "OK");
    assert_string_equal(gw_err_name(GW_ETIMEDOUT), "ETIMEDOUT");
    assert_string_equal(gw_strerror(GW_ETIMEDOUT), "timed out");
    assert_int_equal(gw_err_http_status(GW_ETIMEDOUT), 504);
    assert_int_equal(gw_err_http_status(GW_EAUTH), 401);
    assert_int_equal(gw_err_http_status(GW_EPERM), 403);
    assert_int_equal(gw_err_http_status(GW_ENOTFOUND), 404);
    assert_int_equal(gw_err_http_status(GW_EMSGSIZE), 413);
    assert_int_equal(gw_err_http_status(GW_EQUOTA), 429);
    assert_int_equal(gw_err_http_status(GW_EUPSTREAM), 502);
    assert_int_equal(gw_err_http_status(GW_ENOACCOUNT), 503);
    assert_string_equal(gw_err_anthropic_type(GW_EQUOTA), "rate_limit_error");
    assert_string_equal(gw_err_openai_type(GW_EQUOTA), "rate_limit_exceeded");
    assert_string_equal(gw_err_anthropic_type(GW_EAUTH), "authentication_error");
    assert_string_equal(gw_err_openai_type(GW_EAUTH), "invalid_api_key");
    assert_string_equal(gw_err_anthropic_type(GW_EINVAL), "invalid_request_error");
}

static void
test_out_of_range_is_safe(void **state)
{
    const gw_err bad[] = {GW_ERR_COUNT, (gw_err)(GW_ERR_COUNT + 1), (gw_err)1000, (gw_err)-1};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* Unknown values read as an internal error, never NULL. */
        assert_string_equal(gw_strerror(bad[i]), gw_strerror(GW_EINTERNAL));
        assert_string_equal(gw_err_name(bad[i]), "EINTERNAL");
        assert_int_equal(gw_err_http_status(bad[i]), 500);
        assert_non_null(gw_err_anthropic_type(bad[i]));
        assert_non_null(gw_err_openai_type(bad[i]));
    }
}

static void
test_from_errno(void **state)
{
    (void)state;
    assert_int_equal(gw_err_from_errno(0), GW_OK);
    assert_int_equal(gw_err_from_errno(ENOMEM), GW_ENOMEM);
    assert_int_equal(gw_err_from_errno(ETIMEDOUT), GW_ETIMEDOUT);
    assert_int_equal(gw_err_from_errno(EINVAL), GW_EINVAL);
    assert_int_equal(gw_err_from_errno(ENOENT), GW_ENOTFOUND);
    assert_int_equal(gw_err_from_errno(EEXIST), GW_EEXIST);
    assert_int_equal(gw_err_from_errno(EACCES), GW_EPERM);
    assert_int_equal(gw_err_from_errno(EPERM), GW_EPERM);
    assert_int_equal(gw_err_from_errno(EMSGSIZE), GW_EMSGSIZE);
    assert_int_equal(gw_err_from_errno(E2BIG), GW_EMSGSIZE);
    assert_int_equal(gw_err_from_errno(EBADF), GW_EIO);
    assert_int_equal(gw_err_from_errno(-12345), GW_EIO);
}

static void
test_from_uv(void **state)
{
    (void)state;
    assert_int_equal(gw_err_from_uv(0), GW_OK);
    assert_int_equal(gw_err_from_uv(UV_ENOMEM), GW_ENOMEM);
    assert_int_equal(gw_err_from_uv(UV_ETIMEDOUT), GW_ETIMEDOUT);
    assert_int_equal(gw_err_from_uv(UV_EOF), GW_ECLOSED);
    assert_int_equal(gw_err_from_uv(UV_ECONNRESET), GW_ECLOSED);
    assert_int_equal(gw_err_from_uv(UV_EPIPE), GW_ECLOSED);
    assert_int_equal(gw_err_from_uv(UV_ECANCELED), GW_ECLOSED);
    assert_int_equal(gw_err_from_uv(UV_EINVAL), GW_EINVAL);
    assert_int_equal(gw_err_from_uv(UV_EADDRINUSE), GW_EINVAL);
    assert_int_equal(gw_err_from_uv(UV_EADDRNOTAVAIL), GW_EINVAL);
    assert_int_equal(gw_err_from_uv(UV_EBADF), GW_EIO);
}

static void
test_from_nng(void **state)
{
    (void)state;
    assert_int_equal(gw_err_from_nng(0), GW_OK);
    assert_int_equal(gw_err_from_nng(NNG_ENOMEM), GW_ENOMEM);
    assert_int_equal(gw_err_from_nng(NNG_ETIMEDOUT), GW_ETIMEDOUT);
    assert_int_equal(gw_err_from_nng(NNG_ECLOSED), GW_ECLOSED);
    assert_int_equal(gw_err_from_nng(NNG_ECONNRESET), GW_ECLOSED);
    assert_int_equal(gw_err_from_nng(NNG_ECONNSHUT), GW_ECLOSED);
    assert_int_equal(gw_err_from_nng(NNG_ECONNREFUSED), GW_ECLOSED);
    assert_int_equal(gw_err_from_nng(NNG_EMSGSIZE), GW_EMSGSIZE);
    assert_int_equal(gw_err_from_nng(NNG_EINVAL), GW_EINVAL);
    assert_int_equal(gw_err_from_nng(NNG_EADDRINVAL), GW_EINVAL);
    assert_int_equal(gw_err_from_nng(NNG_EPROTO), GW_EPROTO);
    assert_int_equal(gw_err_from_nng(NNG_ENOTSUP), GW_ENOTSUP);
    assert_int_equal(gw_err_from_nng(NNG_EPERM), GW_EPERM);
    assert_int_equal(gw_err_from_nng(NNG_EBUSY), GW_EIO);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_error_described),
        cmocka_unit_test(test_known_rows),
        cmocka_unit_test(test_out_of_range_is_safe),
        cmocka_unit_test(test_from_errno),
        cmocka_unit_test(test_from_uv),
        cmocka_unit_test(test_from_nng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
