/* SPDX-License-Identifier: Apache-2.0 */
/* Tables generated from GW_ERR_MAP and the mappings of foreign error codes. */
#include "gw_err.h"

#include <errno.h>
#include <nng/nng.h>
#include <uv.h>

struct err_info {
    const char *name;
    const char *text;
    int status;
    const char *anthropic_type;
    const char *openai_type;
};

static const struct err_info err_table[] = {
#define GW_ERR_ROW(name, text, status, atype, otype) {#name, text, status, atype, otype},
    GW_ERR_MAP(GW_ERR_ROW)
#undef GW_ERR_ROW
};

static const struct err_info *
err_lookup(gw_err err)
{
    if ((unsigned)err >= GW_ERR_COUNT)
        return &err_table[GW_EINTERNAL];
    return &err_table[err];
}

const char *
gw_strerror(gw_err err)
{
    return err_lookup(err)->text;
}

const char *
gw_err_name(gw_err err)
{
    return err_lookup(err)->name;
}

int
gw_err_http_status(gw_err err)
{
    return err_lookup(err)->status;
}

const char *
gw_err_anthropic_type(gw_err err)
{
    return err_lookup(err)->anthropic_type;
}

const char *
gw_err_openai_type(gw_err err)
{
    return err_lookup(err)->openai_type;
}

gw_err
gw_err_from_uv(int uv_status)
{
    switch (uv_status) {
    case 0:
        return GW_OK;
    case UV_ENOMEM:
        return GW_ENOMEM;
    case UV_ETIMEDOUT:
        return GW_ETIMEDOUT;
    case UV_EOF:
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_ECANCELED:
        return GW_ECLOSED;
    case UV_EINVAL:
    case UV_EADDRINUSE:
    case UV_EADDRNOTAVAIL:
        return GW_EINVAL;
    default:
        return GW_EIO;
    }
}

gw_err
gw_err_from_nng(int nng_rv)
{
    switch (nng_rv) {
    case 0:
        return GW_OK;
    case NNG_ENOMEM:
        return GW_ENOMEM;
    case NNG_ETIMEDOUT:
        return GW_ETIMEDOUT;
    case NNG_ECLOSED:
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
    case NNG_ECONNREFUSED:
        return GW_ECLOSED;
    case NNG_EMSGSIZE:
        return GW_EMSGSIZE;
    case NNG_EINVAL:
    case NNG_EADDRINVAL:
        return GW_EINVAL;
    case NNG_EPROTO:
        return GW_EPROTO;
    case NNG_ENOTSUP:
        return GW_ENOTSUP;
    case NNG_EPERM:
        return GW_EPERM;
    default:
        return GW_EIO;
    }
}

gw_err
gw_err_from_errno(int errnum)
{
    switch (errnum) {
    case 0:
        return GW_OK;
    case ENOMEM:
        return GW_ENOMEM;
    case ETIMEDOUT:
        return GW_ETIMEDOUT;
    case EINVAL:
        return GW_EINVAL;
    case ENOENT:
        return GW_ENOTFOUND;
    case EEXIST:
        return GW_EEXIST;
    case EACCES:
    case EPERM:
        return GW_EPERM;
    case EMSGSIZE:
    case E2BIG:
        return GW_EMSGSIZE;
    default:
        return GW_EIO;
    }
}
