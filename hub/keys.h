/* SPDX-License-Identifier: Apache-2.0 */
/* Key material of the hub: gateway keys (generation, format and checksum
 * check), the master secret file, and sealing of provider credentials with
 * the master key before they reach the store. */
#ifndef HUB_KEYS_H
#define HUB_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "gw_err.h"

/* Gateway key: "aicp_<group>_<user>_<random><check>". <group> and <user> are
 * the numeric ids in lower-case Crockford base32 (1..13 chars, no padding),
 * <random> is 22 base64url chars (16 CSPRNG bytes = 128 bits), <check> is 4
 * base32 chars (20 bits of SHA-256 over everything before it). */
#define HUB_KEY_PREFIX "aicp_"
#define HUB_KEY_RANDOM_BYTES 16
#define HUB_KEY_RANDOM_CHARS 22
#define HUB_KEY_CHECK_CHARS 4
#define HUB_KEY_MAX 64         /* buffer size for a key, NUL included */
#define HUB_KEY_DISPLAY_LEN 16 /* chars kept as the displayable prefix */

#define HUB_MASTER_KEY_LEN 32
/* Associated data binding a sealed provider credential to its purpose. */
#define HUB_CREDENTIAL_AAD "account-credential"

/* Writes a new gateway key for (group_id, user_id) into buf (NUL-terminated,
 * at most HUB_KEY_MAX bytes). GW_EIO when the CSPRNG fails. Any thread. */
gw_err hub_keys_generate(uint64_t group_id, uint64_t user_id, char buf[HUB_KEY_MAX]) GW_WARN_UNUSED;

/* 1 when key[0..len) has the gateway key format and its checksum matches,
 * else 0. Cheap: lets a caller refuse typos before any lookup. Any thread. */
int hub_keys_checksum_ok(const char *key, size_t len);

/* The displayable prefix: the first HUB_KEY_DISPLAY_LEN chars of key
 * (fewer if the key is shorter), NUL-terminated in out. */
void hub_keys_display_prefix(const char *key, char out[HUB_KEY_DISPLAY_LEN + 1]);

/* Appends the lower-case Crockford base32 form of v ("0" for 0, no padding)
 * to out. */
void hub_keys_base32_u64(uint64_t v, struct gw_buf *out);

/* Loads the master secret from path, or creates it (HUB_MASTER_KEY_LEN
 * CSPRNG bytes, mode 0600, written atomically) when the file does not exist;
 * *created tells which (may be NULL). Refuses (GW_EPERM) a file that group or
 * others may access and (GW_EINVAL) one that is not a regular file of
 * exactly HUB_MASTER_KEY_LEN bytes; GW_EIO on I/O errors. A reason naming
 * the path (never the key) is appended to err. Blocking; any thread. */
gw_err hub_keys_master_load(const char *path, uint8_t out[HUB_MASTER_KEY_LEN], int *created,
                            struct gw_buf *err) GW_WARN_UNUSED;

/* Seals a provider credential with the master key (AES-256-GCM, aad
 * HUB_CREDENTIAL_AAD), appending nonce|ciphertext|tag to out. Open reverses
 * it; GW_EAUTH when the sealed bytes were altered or another key sealed them.
 * Any thread. */
gw_err hub_keys_seal_credential(const uint8_t master[HUB_MASTER_KEY_LEN], const void *plain,
                                size_t len, struct gw_buf *out) GW_WARN_UNUSED;
gw_err hub_keys_open_credential(const uint8_t master[HUB_MASTER_KEY_LEN], const void *sealed,
                                size_t len, struct gw_buf *out) GW_WARN_UNUSED;

#endif
