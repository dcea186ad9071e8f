/* SPDX-License-Identifier: Apache-2.0 */
/* Usage journal file: an 16-byte header ("AICPJRN1", the record size, 0)
 * then frames of  len(u32 LE) | crc32(u32 LE, over type and body) | type(u8)
 * | body. Types: 1 = usage record (the struct bytes: the file is private to
 * this build, the header's record size refuses another layout), 2 = batch
 * (seq u64, n u64), 3 = ack (seq u64). Batches are taken oldest-first, so a
 * batch entry only needs its size: its records are the oldest ones not yet
 * acknowledged. Replay stops at the first frame that is short or fails its
 * CRC and cuts the file there. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "gw_buf.h"
#include "gw_log.h"

#define JOURNAL_MAGIC "AICPJRN1"
#define JOURNAL_HEADER_LEN 16
#define JOURNAL_FRAME_HEAD 9 /* len + crc + type */
#define JOURNAL_T_RECORD 1
#define JOURNAL_T_BATCH 2
#define JOURNAL_T_ACK 3
#define JOURNAL_COMPACT_BYTES (8u << 20) /* rewrite the pending tail beyond this */
#define JOURNAL_BODY_MAX 4096

struct edge_journal {
    char *path, *tmp_path;
    int fd;
    enum edge_journal_fsync mode;
    uint64_t max_bytes;
    uint64_t size;
    int dirty;
    int full_logged;
};

/* ------------------------------------------------------------ crc32 (IEEE) */

static uint32_t journal_crc_table[256];
static uv_once_t journal_crc_once = UV_ONCE_INIT;

static void
journal_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;

        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        journal_crc_table[i] = c;
    }
}

static uint32_t
journal_crc32(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;

    uv_once(&journal_crc_once, journal_crc_init);
    for (size_t i = 0; i < len; i++)
        c = journal_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void
journal_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
journal_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
journal_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
journal_get64(const uint8_t *p)
{
    return (uint64_t)journal_get32(p) | (uint64_t)journal_get32(p + 4) << 32;
}

gw_err
edge_journal_fsync_parse(const char *s, enum edge_journal_fsync *out)
{
    if (s == NULL || strcmp(s, "batch") == 0)
        *out = EDGE_JOURNAL_FSYNC_BATCH;
    else if (strcmp(s, "always") == 0)
        *out = EDGE_JOURNAL_FSYNC_ALWAYS;
    else if (strcmp(s, "none") == 0)
        *out = EDGE_JOURNAL_FSYNC_NONE;
    else
        return GW_EINVAL;
    return GW_OK;
}

/* ------------------------------------------------------------ writing */

static gw_err
journal_write_all(int fd, const void *data, size_t len)
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

/* Encodes one frame into buf (JOURNAL_FRAME_HEAD + len bytes). */
static size_t
journal_frame(uint8_t *buf, uint8_t type, const void *body, size_t len)
{
    buf[8] = type;
    memcpy(buf + JOURNAL_FRAME_HEAD, body, len);
    journal_put32(buf, (uint32_t)(len + 1));
    journal_put32(buf + 4, journal_crc32(buf + 8, len + 1));
    return JOURNAL_FRAME_HEAD + len;
}

static void
journal_header(uint8_t hdr[JOURNAL_HEADER_LEN])
{
    memset(hdr, 0, JOURNAL_HEADER_LEN);
    memcpy(hdr, JOURNAL_MAGIC, 8);
    journal_put32(hdr + 8, (uint32_t)sizeof(struct gw_usage_record));
}

static gw_err
journal_put(struct edge_journal *j, uint8_t type, const void *body, size_t len)
{
    uint8_t buf[JOURNAL_FRAME_HEAD + JOURNAL_BODY_MAX];
    size_t n = journal_frame(buf, type, body, len);
    gw_err rv;

    rv = journal_write_all(j->fd, buf, n);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "write to %s failed: %s", j->path, strerror(errno));
        /* Cut a partial frame so later frames stay readable. */
        if (ftruncate(j->fd, (off_t)j->size) != 0)
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "cannot truncate %s: %s", j->path,
                   strerror(errno));
        return rv;
    }
    j->size += n;
    j->dirty = 1;
    if (j->mode == EDGE_JOURNAL_FSYNC_ALWAYS)
        return edge_journal_sync(j);
    return GW_OK;
}

gw_err
edge_journal_append(struct edge_journal *j, const struct gw_usage_record *rec)
{
    if (j->size + JOURNAL_FRAME_HEAD + sizeof(*rec) > j->max_bytes) {
        if (!j->full_logged)
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL-FULL",
                   "usage journal %s reached its cap of %" PRIu64
                   " bytes: new usage is kept in memory only until the hub acknowledges batches",
                   j->path, j->max_bytes);
        j->full_logged = 1;
        return GW_EQUOTA;
    }
    return journal_put(j, JOURNAL_T_RECORD, rec, sizeof(*rec));
}

gw_err
edge_journal_batch(struct edge_journal *j, uint64_t seq, size_t n)
{
    uint8_t body[16];

    journal_put64(body, seq);
    journal_put64(body + 8, n);
    return journal_put(j, JOURNAL_T_BATCH, body, sizeof(body));
}

gw_err
edge_journal_sync(struct edge_journal *j)
{
    if (!j->dirty || j->mode == EDGE_JOURNAL_FSYNC_NONE)
        return GW_OK;
    if (fdatasync(j->fd) != 0) {
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "fsync of %s failed: %s", j->path, strerror(errno));
        return GW_EIO;
    }
    j->dirty = 0;
    return GW_OK;
}

int
edge_journal_dirty(const struct edge_journal *j)
{
    return j->dirty;
}

uint64_t
edge_journal_size(const struct edge_journal *j)
{
    return j->size;
}

/* Writes a fresh file holding the records given and swaps it in. */
static gw_err
journal_rewrite(struct edge_journal *j, const struct gw_usage_record *a, size_t na,
                const struct gw_usage_record *b, size_t nb)
{
    uint8_t hdr[JOURNAL_HEADER_LEN];
    struct gw_buf out = GW_BUF_INIT;
    gw_err rv;
    int fd;

    journal_header(hdr);
    gw_buf_append(&out, hdr, sizeof(hdr));
    for (size_t i = 0; i < na + nb; i++) {
        uint8_t buf[JOURNAL_FRAME_HEAD + sizeof(struct gw_usage_record)];
        const struct gw_usage_record *r = i < na ? &a[i] : &b[i - na];

        gw_buf_append(&out, buf, journal_frame(buf, JOURNAL_T_RECORD, r, sizeof(*r)));
    }
    fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = GW_EIO;
        goto out;
    }
    rv = journal_write_all(fd, out.data, out.len);
    if (rv == GW_OK && j->mode != EDGE_JOURNAL_FSYNC_NONE && fdatasync(fd) != 0)
        rv = GW_EIO;
    if (rv == GW_OK && rename(j->tmp_path, j->path) != 0)
        rv = GW_EIO;
    if (rv != GW_OK) {
        close(fd);
        (void)unlink(j->tmp_path);
        goto out;
    }
    close(j->fd);
    /* The new file's descriptor is write-only; appends need O_APPEND. */
    close(fd);
    j->fd = open(j->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (j->fd < 0) {
        rv = GW_EIO;
        goto out;
    }
    j->size = out.len;
    j->dirty = 0;
    j->full_logged = 0;
out:
    if (rv != GW_OK)
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "cannot compact %s: %s", j->path, strerror(errno));
    gw_buf_fini(&out);
    return rv;
}

gw_err
edge_journal_ack(struct edge_journal *j, uint64_t seq, const struct gw_usage_record *a, size_t na,
                 const struct gw_usage_record *b, size_t nb)
{
    uint8_t body[8];
    gw_err rv;

    journal_put64(body, seq);
    rv = journal_put(j, JOURNAL_T_ACK, body, sizeof(body));
    if (rv != GW_OK)
        return rv;
    if (na + nb == 0) {
        /* Nothing pending: back to the bare header. A crash before this
         * reaches the disk leaves the ack frame, which replays the same. */
        if (ftruncate(j->fd, JOURNAL_HEADER_LEN) != 0) {
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "cannot truncate %s: %s", j->path,
                   strerror(errno));
            return GW_EIO;
        }
        j->size = JOURNAL_HEADER_LEN;
        j->full_logged = 0;
        return GW_OK;
    }
    if (j->size > JOURNAL_COMPACT_BYTES)
        return journal_rewrite(j, a, na, b, nb);
    return GW_OK;
}

/* ------------------------------------------------------------ opening and replay */

static gw_err
journal_read_file(int fd, struct gw_buf *out)
{
    for (;;) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return GW_EIO;
        if (n == 0)
            return GW_OK;
        gw_buf_append(out, chunk, (size_t)n);
    }
}

/* Replays data; returns the length of the valid prefix. */
static size_t
journal_replay(const uint8_t *data, size_t len, struct edge_journal_replay *r)
{
    size_t off = JOURNAL_HEADER_LEN, cap = 0, done = 0;
    struct gw_usage_record *recs = NULL;
    size_t n = 0;

    r->batch_n = 0;
    while (off + JOURNAL_FRAME_HEAD <= len) {
        uint32_t flen = journal_get32(data + off);
        uint32_t crc = journal_get32(data + off + 4);
        const uint8_t *body;

        if (flen < 1 || flen > JOURNAL_BODY_MAX + 1 || off + 8 + flen > len)
            break;
        if (journal_crc32(data + off + 8, flen) != crc)
            break;
        body = data + off + JOURNAL_FRAME_HEAD;
        switch (data[off + 8]) {
        case JOURNAL_T_RECORD:
            if (flen - 1 != sizeof(struct gw_usage_record))
                goto stop;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                recs = gw_xrealloc(recs, cap * sizeof(*recs));
            }
            memcpy(&recs[n++], body, sizeof(*recs));
            break;
        case JOURNAL_T_BATCH:
            if (flen - 1 != 16)
                goto stop;
            r->batch_seq = journal_get64(body);
            r->batch_n = (size_t)journal_get64(body + 8);
            break;
        case JOURNAL_T_ACK:
            if (flen - 1 != 8)
                goto stop;
            if (r->batch_n > 0 && journal_get64(body) == r->batch_seq) {
                done += r->batch_n;
                r->last_acked_seq = r->batch_seq;
                r->batch_n = 0;
            }
            break;
        default:
            goto stop;
        }
        off += 8 + flen;
    }
stop:
    if (done > n)
        done = n;
    if (r->batch_n > n - done)
        r->batch_n = n - done;
    r->n_records = n - done;
    r->records = NULL;
    if (r->n_records > 0) {
        r->records = gw_xmalloc(r->n_records * sizeof(*recs));
        memcpy(r->records, recs + done, r->n_records * sizeof(*recs));
    }
    if (r->batch_n == 0)
        r->batch_seq = 0;
    free(recs);
    return off;
}

gw_err
edge_journal_open(const char *dir, enum edge_journal_fsync mode, uint64_t max_bytes,
                  struct edge_journal **out, struct edge_journal_replay *replay)
{
    struct edge_journal *j;
    struct gw_buf path = GW_BUF_INIT, data = GW_BUF_INIT;
    uint8_t hdr[JOURNAL_HEADER_LEN];
    gw_err rv = GW_OK;
    size_t valid;
    int fd;

    *out = NULL;
    memset(replay, 0, sizeof(*replay));
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "cannot create %s: %s", dir, strerror(errno));
        return GW_EIO;
    }
    j = gw_xcalloc(1, sizeof(*j));
    gw_buf_appendf(&path, "%s/usage.journal", dir);
    j->path = gw_xstrdup(path.data);
    gw_buf_appendf(&path, ".tmp");
    j->tmp_path = gw_buf_steal(&path, NULL);
    j->mode = mode;
    j->max_bytes = max_bytes > 0 ? max_bytes : UINT64_MAX;
    j->fd = -1;
    journal_header(hdr);

    fd = open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = GW_EIO;
        goto fail;
    }
    rv = journal_read_file(fd, &data);
    if (rv != GW_OK)
        goto fail;
    if (data.len >= JOURNAL_HEADER_LEN && memcmp(data.data, hdr, JOURNAL_HEADER_LEN) != 0) {
        struct gw_buf bad = GW_BUF_INIT;

        gw_buf_appendf(&bad, "%s.bad", j->path);
        gw_log(GW_LOG_ERROR, "EDGE-JOURNAL",
               "%s has another format or record layout: moved to %s, starting empty", j->path,
               bad.data);
        if (rename(j->path, bad.data) != 0)
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "rename failed: %s", strerror(errno));
        gw_buf_fini(&bad);
        close(fd);
        fd = open(j->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            rv = GW_EIO;
            goto fail;
        }
        gw_buf_reset(&data);
    }
    if (data.len < JOURNAL_HEADER_LEN) {
        /* New (or torn before its header was complete). */
        if (ftruncate(fd, 0) != 0 || journal_write_all(fd, hdr, sizeof(hdr)) != GW_OK ||
            fsync(fd) != 0) {
            rv = GW_EIO;
            goto fail;
        }
        valid = JOURNAL_HEADER_LEN;
    } else {
        valid = journal_replay((const uint8_t *)data.data, data.len, replay);
        if (valid < data.len) {
            replay->torn_bytes = data.len - valid;
            gw_log(GW_LOG_WARN, "EDGE-JOURNAL", "%s: %zu byte(s) of a torn or damaged tail dropped",
                   j->path, replay->torn_bytes);
            if (ftruncate(fd, (off_t)valid) != 0 || fsync(fd) != 0) {
                rv = GW_EIO;
                goto fail;
            }
        }
    }
    close(fd);
    j->fd = open(j->path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (j->fd < 0) {
        rv = GW_EIO;
        goto fail;
    }
    j->size = valid;
    if (replay->n_records > 0)
        gw_log(GW_LOG_INFO, "EDGE-JOURNAL",
               "%s: %zu unacknowledged usage record(s) replayed (batch seq %" PRIu64
               " of %zu in flight)",
               j->path, replay->n_records, replay->batch_seq, replay->batch_n);
    gw_buf_fini(&data);
    *out = j;
    return GW_OK;
fail:
    gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "cannot open %s: %s", j->path, strerror(errno));
    if (fd >= 0)
        close(fd);
    gw_buf_fini(&data);
    edge_journal_replay_fini(replay);
    free(j->path);
    free(j->tmp_path);
    free(j);
    return rv != GW_OK ? rv : GW_EIO;
}

void
edge_journal_close(struct edge_journal *j)
{
    if (j == NULL)
        return;
    if (j->fd >= 0) {
        if (edge_journal_sync(j) != GW_OK)
            gw_log(GW_LOG_ERROR, "EDGE-JOURNAL", "%s closed without a final fsync", j->path);
        close(j->fd);
    }
    free(j->path);
    free(j->tmp_path);
    free(j);
}

void
edge_journal_replay_fini(struct edge_journal_replay *r)
{
    free(r->records);
    memset(r, 0, sizeof(*r));
}
