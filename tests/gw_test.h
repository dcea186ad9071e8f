/* SPDX-License-Identifier: Apache-2.0 */
/* cmocka helpers: GW_PASS(expr) asserts GW_OK and GW_FAIL(expr, GW_Exxx)
 * asserts one specific error, both printing gw_strerror() on failure. */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the includes above first. */
#include <cmocka.h>

#include "gw_err.h"

#define GW_PASS(expr)                                                                        \
    do {                                                                                     \
        gw_err gw_pass_rv_ = (expr);                                                         \
        if (gw_pass_rv_ != GW_OK)                                                            \
            fail_msg("%s failed: %s (%s)", #expr, gw_strerror(gw_pass_rv_),                  \
                     gw_err_name(gw_pass_rv_));                                              \
    } while (0)

#define GW_FAIL(expr, want)                                                                  \
    do {                                                                                     \
        gw_err gw_fail_rv_ = (expr);                                                         \
        if (gw_fail_rv_ != (want))                                                           \
            fail_msg("%s: want %s, got %s (%s)", #expr, gw_err_name(want),                   \
                     gw_err_name(gw_fail_rv_), gw_strerror(gw_fail_rv_));                    \
    } while (0)

#endif
