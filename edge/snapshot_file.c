/* SPDX-License-Identifier: Apache-2.0 */
/* Sealed snapshot file: "AICPSNP1" | nonce | ciphertext | tag, the magic
 * being the AEAD's associated data so a file of another kind (or version
 * of this format) never opens. Written through a temporary file and a
 * rename so a crash never leaves a half-written copy in place. */
#include "snapshot_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_log.h"

#define SNAPFILE_MAGIC "AICPSNP1"
#define SNAPFILE_MAGIC_LEN 8

void
edge_snapshot_file_key(const char *secret, uint8_t key[GW_AES_KEY_LEN])
{
    gw_derive_key(secret, strlen(secret), "edge-snapshot", key);
}

static gw_err
snapfile_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return GW_EIO;
        p += n;
        len -= (size_t)n;
    }
    return GW_OK;
}

/* fsync of the directory holding path, so the rename itself is durable. */
static void
snapfile_sync_dir(const char *path)
{
    char *copy = gw_xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

gw_err
edge_snapshot_file_write(const char *path, const uint8_t key[GW_AES_KEY_LEN],
                         const struct gw_msg *msg)
{
    struct gw_buf plain = GW_BUF_INIT, sealed = GW_BUF_INIT, tmp = GW_BUF_INIT;
    int fd = -1;
    gw_err rv;

    if (msg->type != GW_MSG_SNAPSHOT)
        return GW_EINVAL;
    rv = gw_wire_encode(msg, &plain);
    if (rv != GW_OK)
        goto out;
    gw_buf_append(&sealed, SNAPFILE_MAGIC, SNAPFILE_MAGIC_LEN);
    rv = gw_aead_seal(key, SNAPFILE_MAGIC, SNAPFILE_MAGIC_LEN, plain.data, plain.len, &sealed);
    if (rv != GW_OK)
        goto out;
    gw_buf_appendf(&tmp, "%s.tmp", path);
    fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT-FILE", "cannot create %s: %s", tmp.data,
               strerror(errno));
        rv = GW_EIO;
        goto out;
    }
    rv = snapfile_write_all(fd, sealed.data, sealed.len);
    if (rv == GW_OK && fsync(fd) != 0)
        rv = GW_EIO;
    if (close(fd) != 0 && rv == GW_OK)
        rv = GW_EIO;
    fd = -1;
    if (rv == GW_OK && rename(tmp.data, path) != 0)
        rv = GW_EIO;
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-SNAPSHOT-FILE", "cannot write %s: %s", path, strerror(errno));
        (void)unlink(tmp.data);
        goto out;
    }
    snapfile_sync_dir(path);
out:
    if (plain.data)
        explicit_bzero(plain.data, plain.len);
    gw_buf_fini(&plain);
    gw_buf_fini(&sealed);
    gw_buf_fini(&tmp);
    return rv;
}

gw_err
edge_snapshot_file_read(const char *path, const uint8_t key[GW_AES_KEY_LEN], size_t max_len,
                        struct gw_msg *out)
{
    struct gw_buf raw = GW_BUF_INIT, plain = GW_BUF_INIT;
    struct stat st;
    int fd;
    gw_err rv = GW_OK;

    memset(out, 0, sizeof(*out));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? GW_ENOTFOUND : GW_EIO;
    if (fstat(fd, &st) != 0) {
        rv = GW_EIO;
        goto out;
    }
    if ((uint64_t)st.st_size > (uint64_t)max_len + SNAPFILE_MAGIC_LEN + 64) {
        rv = GW_EMSGSIZE;
        goto out;
    }
    gw_buf_reserve(&raw, (size_t)st.st_size + 1);
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rv = GW_EIO;
            goto out;
        }
        if (n == 0)
            break;
        if (raw.len + (size_t)n > max_len + SNAPFILE_MAGIC_LEN + 64) {
            rv = GW_EMSGSIZE;
            goto out;
        }
        gw_buf_append(&raw, chunk, (size_t)n);
    }
    if (raw.len < SNAPFILE_MAGIC_LEN || memcmp(raw.data, SNAPFILE_MAGIC, SNAPFILE_MAGIC_LEN) != 0) {
        rv = GW_EAUTH;
        goto out;
    }
    rv = gw_aead_open(key, SNAPFILE_MAGIC, SNAPFILE_MAGIC_LEN, raw.data + SNAPFILE_MAGIC_LEN,
                      raw.len - SNAPFILE_MAGIC_LEN, &plain);
    if (rv != GW_OK) {
        rv = GW_EAUTH;
        goto out;
    }
    rv = gw_wire_decode(plain.data, plain.len, max_len, out);
    if (rv != GW_OK)
        goto out;
    if (out->type != GW_MSG_SNAPSHOT || out->u.snapshot.unchanged) {
        gw_msg_fini(out);
        rv = GW_EPROTO;
    }
out:
    close(fd);
    if (plain.data)
        explicit_bzero(plain.data, plain.len);
    gw_buf_fini(&plain);
    gw_buf_fini(&raw);
    return rv;
}
