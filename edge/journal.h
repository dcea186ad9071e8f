/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's usage journal (DATA/usage.journal): every usage record is
 * appended before its request completes, and every batch boundary ("batch
 * seq N = the next n records") before the batch is sent, so a restarted
 * edge resends exactly what it had not got acknowledged, with the same seq
 * and content, and the hub applies each batch once. Frames carry a length
 * and a CRC32, so a torn tail left by a crash is detected and cut off.
 *
 * Threading: the journal has no lock of its own; the caller serialises
 * every call (the hub link calls it under its queue mutex). Appends only
 * write(2) into the page cache; fsync happens in edge_journal_sync() (or in
 * append itself with EDGE_JOURNAL_FSYNC_ALWAYS). */
#ifndef EDGE_JOURNAL_H
#define EDGE_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gw_err.h"
#include "gw_wire.h"

enum edge_journal_fsync {
    EDGE_JOURNAL_FSYNC_BATCH = 0, /* fsync before a batch is sent and every ~100 ms */
    EDGE_JOURNAL_FSYNC_ALWAYS,    /* fsync after every record (in the appending thread) */
    EDGE_JOURNAL_FSYNC_NONE,      /* leave it to the kernel */
};

/* Parses "always" / "batch" / "none"; GW_EINVAL otherwise. */
gw_err edge_journal_fsync_parse(const char *s, enum edge_journal_fsync *out) GW_WARN_UNUSED;

/* What a journal held when it was opened: records not acknowledged by the
 * hub, oldest first. The first batch_n of them form the batch journaled
 * with seq batch_seq and not acknowledged (batch_n == 0: none). */
struct edge_journal_replay {
    struct gw_usage_record *records; /* owned (free()) */
    size_t n_records;
    uint64_t batch_seq;
    size_t batch_n;
    uint64_t last_acked_seq; /* highest seq acknowledged in the file, 0 = none */
    size_t torn_bytes;       /* bytes of a damaged tail that were cut off */
};

struct edge_journal;

/* Opens (creating when absent) DIR/usage.journal, replays it into *replay
 * (owned by the caller) and cuts a torn tail off. A file of another format
 * is renamed aside (usage.journal.bad) and a new one started. max_bytes caps
 * the file size. GW_EIO when the directory or file cannot be used. Blocking
 * (disk): call at start-up. */
gw_err edge_journal_open(const char *dir, enum edge_journal_fsync mode, uint64_t max_bytes,
                         struct edge_journal **out,
                         struct edge_journal_replay *replay) GW_WARN_UNUSED;

/* Appends one record. GW_EQUOTA when the file reached max_bytes (the record
 * is not journaled; the caller keeps it in memory only and logs), GW_EIO on
 * a write error. */
gw_err edge_journal_append(struct edge_journal *j,
                           const struct gw_usage_record *rec) GW_WARN_UNUSED;

/* Journals that the next n unacknowledged records go out as batch seq
 * (also for a renumbered resend of the same records). GW_EIO on error. The
 * caller then calls edge_journal_sync() before sending (mode batch). */
gw_err edge_journal_batch(struct edge_journal *j, uint64_t seq, size_t n) GW_WARN_UNUSED;

/* Journals the hub's acknowledgement of batch seq: its records are done.
 * When nothing else is pending (pending == 0) the file is cut back to its
 * header; when it grew past a few MiB the `pending` records still waiting
 * (given as up to two arrays, oldest first, e.g. the two halves of a ring)
 * are rewritten to a new file that replaces it (tmp + fsync + rename).
 * GW_EIO on error (the journal stays usable: at worst acknowledged batches
 * are resent after a restart and dropped by the hub as duplicates). */
gw_err edge_journal_ack(struct edge_journal *j, uint64_t seq, const struct gw_usage_record *a,
                        size_t na, const struct gw_usage_record *b, size_t nb) GW_WARN_UNUSED;

/* fsync when something was written since the last sync (modes batch and
 * always); a no-op in mode none. GW_EIO on error. */
gw_err edge_journal_sync(struct edge_journal *j) GW_WARN_UNUSED;

/* 1 when records were appended since the last sync. */
int edge_journal_dirty(const struct edge_journal *j);

/* Current file size in bytes. */
uint64_t edge_journal_size(const struct edge_journal *j);

/* Syncs (unless mode none) and closes. NULL is a no-op. */
void edge_journal_close(struct edge_journal *j);

/* Frees the replay's records. */
void edge_journal_replay_fini(struct edge_journal_replay *r);

#endif
