/* SPDX-License-Identifier: Apache-2.0 */
/* Gateway key generation and checking, the master secret file, and sealing
 * of provider credentials. Keys are built from CSPRNG bytes only; the hub
 * keeps nothing but their SHA-256 and a short display prefix. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Crockford's alphabet, lower case: no i, l, o, u. */
static const char keys_b32[] = "0123456789abcdefghjkmnpqrstvwxyz";

#define KEYS_ID_MAX_CHARS 13 /* ceil(64 / 5) */

void
hub_keys_base32_u64(uint64_t v, struct gw_buf *out)
{
    char tmp[KEYS_ID_MAX_CHARS];
    size_t n = 0;

    do {
        tmp[n++] = keys_b32[v & 31u];
        v >>= 5;
    } while (v != 0);
    while (n > 0)
        gw_buf_append(out, &tmp[--n], 1);
}

static int
keys_is_b32(char c)
{
    return c != '\0' && strchr(keys_b32, c) != NULL;
}

static int
keys_is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* 20 bits of SHA-256(text) as 4 base32 chars. */
static void
keys_check_chars(const char *text, size_t len, char out[HUB_KEY_CHECK_CHARS])
{
    uint8_t md[GW_SHA256_LEN];
    uint32_t bits;

    gw_sha256(text, len, md);
    bits = ((uint32_t)md[0] << 12) | ((uint32_t)md[1] << 4) | ((uint32_t)md[2] >> 4);
    for (int i = HUB_KEY_CHECK_CHARS - 1; i >= 0; i--) {
        out[i] = keys_b32[bits & 31u];
        bits >>= 5;
    }
}

gw_err
hub_keys_generate(uint64_t group_id, uint64_t user_id, char buf[HUB_KEY_MAX])
{
    uint8_t rnd[HUB_KEY_RANDOM_BYTES];
    struct gw_buf b = GW_BUF_INIT;
    char check[HUB_KEY_CHECK_CHARS];
    gw_err rv;

    rv = gw_random_bytes(rnd, sizeof(rnd));
    if (rv != GW_OK)
        goto out;
    gw_buf_append_str(&b, HUB_KEY_PREFIX);
    hub_keys_base32_u64(group_id, &b);
    gw_buf_append(&b, "_", 1);
    hub_keys_base32_u64(user_id, &b);
    gw_buf_append(&b, "_", 1);
    gw_base64url_encode(rnd, sizeof(rnd), &b);
    keys_check_chars(b.data, b.len, check);
    gw_buf_append(&b, check, sizeof(check));
    if (b.len >= HUB_KEY_MAX) {
        rv = GW_EINTERNAL;
        goto out;
    }
    memcpy(buf, b.data, b.len + 1);
out:
    memset(rnd, 0, sizeof(rnd));
    if (b.data != NULL)
        memset(b.data, 0, b.len);
    gw_buf_fini(&b);
    return rv;
}

/* Consumes 1..13 base32 chars and the '_' after them; returns the new
 * position or 0 on a format error. */
static size_t
keys_skip_id(const char *key, size_t len, size_t pos)
{
    size_t start = pos;

    while (pos < len && keys_is_b32(key[pos]))
        pos++;
    if (pos == start || pos - start > KEYS_ID_MAX_CHARS || pos >= len || key[pos] != '_')
        return 0;
    return pos + 1;
}

int
hub_keys_checksum_ok(const char *key, size_t len)
{
    const size_t plen = sizeof(HUB_KEY_PREFIX) - 1;
    char check[HUB_KEY_CHECK_CHARS];
    size_t pos;

    if (key == NULL || len >= HUB_KEY_MAX || len < plen || memcmp(key, HUB_KEY_PREFIX, plen) != 0)
        return 0;
    pos = keys_skip_id(key, len, plen);
    if (pos == 0)
        return 0;
    pos = keys_skip_id(key, len, pos);
    if (pos == 0)
        return 0;
    /* The random part may itself contain '_', so it is found by length. */
    if (len - pos != HUB_KEY_RANDOM_CHARS + HUB_KEY_CHECK_CHARS)
        return 0;
    for (size_t i = 0; i < HUB_KEY_RANDOM_CHARS; i++) {
        if (!keys_is_b64url(key[pos + i]))
            return 0;
    }
    for (size_t i = HUB_KEY_RANDOM_CHARS; i < HUB_KEY_RANDOM_CHARS + HUB_KEY_CHECK_CHARS; i++) {
        if (!keys_is_b32(key[pos + i]))
            return 0;
    }
    keys_check_chars(key, len - HUB_KEY_CHECK_CHARS, check);
    return gw_ct_equal(check, key + len - HUB_KEY_CHECK_CHARS, HUB_KEY_CHECK_CHARS);
}

void
hub_keys_display_prefix(const char *key, char out[HUB_KEY_DISPLAY_LEN + 1])
{
    size_t n = strnlen(key, HUB_KEY_DISPLAY_LEN);

    memcpy(out, key, n);
    out[n] = '\0';
}

/* Reads an existing master key file, refusing loose permissions and wrong
 * sizes before reading a byte. */
static gw_err
keys_master_read(int fd, const char *path, uint8_t out[HUB_MASTER_KEY_LEN], struct gw_buf *err)
{
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) != 0) {
        gw_buf_appendf(err, "master key %s: stat: %s", path, strerror(errno));
        return GW_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        gw_buf_appendf(err, "master key %s: not a regular file", path);
        return GW_EINVAL;
    }
    if ((st.st_mode & 077) != 0) {
        gw_buf_appendf(err,
                       "master key %s: mode %03o lets group or others access it; "
                       "run: chmod 600 %s",
                       path, (unsigned)(st.st_mode & 0777), path);
        return GW_EPERM;
    }
    if (st.st_size != HUB_MASTER_KEY_LEN) {
        gw_buf_appendf(err, "master key %s: size %lld, expected %d bytes", path,
                       (long long)st.st_size, HUB_MASTER_KEY_LEN);
        return GW_EINVAL;
    }
    while (got < HUB_MASTER_KEY_LEN) {
        ssize_t n = read(fd, out + got, HUB_MASTER_KEY_LEN - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            gw_buf_appendf(err, "master key %s: short read", path);
            return GW_EIO;
        }
        got += (size_t)n;
    }
    return GW_OK;
}

/* Writes a fresh key to a temporary file and links it into place, so a
 * crash never leaves a half-written key behind and two starting hubs never
 * overwrite each other's key. GW_EEXIST when the file appeared meanwhile. */
static gw_err
keys_master_create(const char *path, uint8_t out[HUB_MASTER_KEY_LEN], struct gw_buf *err)
{
    char tmp[4096];
    size_t done = 0;
    gw_err rv;
    int fd = -1;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        gw_buf_appendf(err, "master key %s: path too long", path);
        return GW_EINVAL;
    }
    rv = gw_random_bytes(out, HUB_MASTER_KEY_LEN);
    if (rv != GW_OK) {
        gw_buf_appendf(err, "master key %s: random generator failed", path);
        return rv;
    }
    (void)unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        gw_buf_appendf(err, "master key %s: create: %s", tmp, strerror(errno));
        return GW_EIO;
    }
    while (done < HUB_MASTER_KEY_LEN) {
        ssize_t w = write(fd, out + done, HUB_MASTER_KEY_LEN - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            gw_buf_appendf(err, "master key %s: write: %s", tmp, strerror(errno));
            rv = GW_EIO;
            goto out;
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0) {
        gw_buf_appendf(err, "master key %s: fsync: %s", tmp, strerror(errno));
        rv = GW_EIO;
        goto out;
    }
    if (link(tmp, path) != 0) {
        if (errno == EEXIST) {
            rv = GW_EEXIST;
        } else {
            gw_buf_appendf(err, "master key %s: %s", path, strerror(errno));
            rv = GW_EIO;
        }
        goto out;
    }
    rv = GW_OK;
out:
    if (fd >= 0)
        close(fd);
    (void)unlink(tmp);
    if (rv != GW_OK)
        memset(out, 0, HUB_MASTER_KEY_LEN);
    return rv;
}

gw_err
hub_keys_master_load(const char *path, uint8_t out[HUB_MASTER_KEY_LEN], int *created,
                     struct gw_buf *err)
{
    gw_err rv;
    int fd;

    if (created != NULL)
        *created = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        /* Symlinks are followed (mounted secrets are often links); fstat
         * checks the file they lead to. */
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            rv = keys_master_read(fd, path, out, err);
            close(fd);
            if (rv != GW_OK)
                memset(out, 0, HUB_MASTER_KEY_LEN);
            return rv;
        }
        if (errno != ENOENT) {
            gw_buf_appendf(err, "master key %s: open: %s", path, strerror(errno));
            return GW_EIO;
        }
        rv = keys_master_create(path, out, err);
        if (rv == GW_OK && created != NULL)
            *created = 1;
        if (rv != GW_EEXIST)
            return rv;
        /* Another process created it first: read theirs. */
    }
    gw_buf_appendf(err, "master key %s: could not be created or read", path);
    return GW_EIO;
}

gw_err
hub_keys_seal_credential(const uint8_t master[HUB_MASTER_KEY_LEN], const void *plain, size_t len,
                         struct gw_buf *out)
{
    return gw_aead_seal(master, HUB_CREDENTIAL_AAD, sizeof(HUB_CREDENTIAL_AAD) - 1, plain, len,
                        out);
}

gw_err
hub_keys_open_credential(const uint8_t master[HUB_MASTER_KEY_LEN], const void *sealed, size_t len,
                         struct gw_buf *out)
{
    return gw_aead_open(master, HUB_CREDENTIAL_AAD, sizeof(HUB_CREDENTIAL_AAD) - 1, sealed, len,
                        out);
}
