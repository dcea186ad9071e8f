/* SPDX-License-Identifier: Apache-2.0 */
/* The edge's on-disk copy of its last configuration snapshot, so a remote
 * edge restarted while the hub is away can serve with what it last had.
 * The file holds the wire encoding of the Snapshot message sealed with
 * AES-256-GCM under a key derived from the enrolment secret: it carries
 * upstream credentials and must be useless without the secret. */
#ifndef EDGE_SNAPSHOT_FILE_H
#define EDGE_SNAPSHOT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "gw_crypto.h"
#include "gw_err.h"
#include "gw_wire.h"

/* Derives the file key from the enrolment secret (NUL-terminated,
 * borrowed): gw_derive_key(secret, "edge-snapshot"). Any thread. */
void edge_snapshot_file_key(const char *secret, uint8_t key[GW_AES_KEY_LEN]);

/* Writes the snapshot message `msg` (borrowed; type GW_MSG_SNAPSHOT) to
 * `path` atomically: sealed into path.tmp, fsync, rename over path, fsync of
 * the directory. A crash leaves either the old or the new file. GW_EINVAL
 * for another message type, GW_EIO when a file operation fails (logged).
 * Blocking (disk): call off the event loop. */
gw_err edge_snapshot_file_write(const char *path, const uint8_t key[GW_AES_KEY_LEN],
                                const struct gw_msg *msg) GW_WARN_UNUSED;

/* Reads `path`, opens the seal and decodes it into *out (owned by the
 * caller on GW_OK: gw_msg_fini; type GW_MSG_SNAPSHOT). GW_ENOTFOUND when
 * the file does not exist, GW_EMSGSIZE when it is larger than max_len,
 * GW_EAUTH when the key is wrong or the file was altered or torn,
 * GW_EPROTO when the content is not a snapshot, GW_EIO on read errors.
 * Blocking (disk). */
gw_err edge_snapshot_file_read(const char *path, const uint8_t key[GW_AES_KEY_LEN], size_t max_len,
                               struct gw_msg *out) GW_WARN_UNUSED;

#endif
