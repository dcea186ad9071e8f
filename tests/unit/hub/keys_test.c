/* SPDX-License-Identifier: Apache-2.0 */
/* Gateway key format and checksum, the master key file (creation, reuse,
 * refusal of loose permissions and wrong sizes) and credential sealing. */
#include "gw_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "keys.h"

static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz";

/* The checksum as the format describes it, computed independently. */
static void
spec_check(const char *text, size_t len, char out[5])
{
    uint8_t md[GW_SHA256_LEN];
    uint32_t bits;

    gw_sha256(text, len, md);
    bits = ((uint32_t)md[0] << 12) | ((uint32_t)md[1] << 4) | ((uint32_t)md[2] >> 4);
    for (int i = 3; i >= 0; i--) {
        out[i] = b32[bits & 31u];
        bits >>= 5;
    }
    out[4] = '\0';
}

static void
test_base32(void **state)
{
    struct {
        uint64_t v;
        const char *want;
    } cases[] = {
        {0, "0"}, {1, "1"}, {31, "z"}, {32, "10"}, {1024, "100"}, {UINT64_MAX, "fzzzzzzzzzzzz"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gw_buf b = GW_BUF_INIT;
        hub_keys_base32_u64(cases[i].v, &b);
        assert_string_equal(b.data, cases[i].want);
        gw_buf_fini(&b);
    }
}

static void
test_format(void **state)
{
    char key[HUB_KEY_MAX];
    char check[5];
    struct gw_buf rnd = GW_BUF_INIT;
    const char *p;
    size_t len;

    (void)state;
    GW_PASS(hub_keys_generate(12345, 7, key));
    len = strlen(key);
    /* 12345 = 0b1100_00001_11001 -> "c1s" in Crockford base32. */
    assert_memory_equal(key, "aicp_c1s_7_", 11);
    p = key + 11;
    assert_int_equal(strlen(p), HUB_KEY_RANDOM_CHARS + HUB_KEY_CHECK_CHARS);
    /* The random part decodes to 16 bytes: 128 bits. */
    GW_PASS(gw_base64url_decode(p, HUB_KEY_RANDOM_CHARS, &rnd));
    assert_int_equal(rnd.len, 16);
    assert_true(HUB_KEY_RANDOM_BYTES * 8 >= 128);
    gw_buf_fini(&rnd);
    spec_check(key, len - 4, check);
    assert_string_equal(key + len - 4, check);
    assert_int_equal(hub_keys_checksum_ok(key, len), 1);

    GW_PASS(hub_keys_generate(UINT64_MAX, UINT64_MAX, key));
    assert_true(strlen(key) < HUB_KEY_MAX);
    assert_int_equal(hub_keys_checksum_ok(key, strlen(key)), 1);
    GW_PASS(hub_keys_generate(0, 0, key));
    assert_memory_equal(key, "aicp_0_0_", 9);
    assert_int_equal(hub_keys_checksum_ok(key, strlen(key)), 1);
}

static void
test_display_prefix(void **state)
{
    char key[HUB_KEY_MAX];
    char prefix[HUB_KEY_DISPLAY_LEN + 1];

    (void)state;
    GW_PASS(hub_keys_generate(5, 0, key));
    hub_keys_display_prefix(key, prefix);
    assert_int_equal(strlen(prefix), 16);
    assert_memory_equal(prefix, key, 16);
    hub_keys_display_prefix("aicp_1", prefix);
    assert_string_equal(prefix, "aicp_1");
}

/* A fixed key, so the single-character mutations below are deterministic. */
static void
fixed_key(char out[HUB_KEY_MAX])
{
    char check[5];
    const char *body = "aicp_2a_0_Qx7-Zk_0Lw9mNbVc3Rt5Ue";

    spec_check(body, strlen(body), check);
    snprintf(out, HUB_KEY_MAX, "%s%s", body, check);
}

static void
test_checksum_detects_changes(void **state)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char key[HUB_KEY_MAX], m[HUB_KEY_MAX];
    size_t len;
    int tried = 0;

    (void)state;
    fixed_key(key);
    len = strlen(key);
    assert_int_equal(len, 5 + 2 + 1 + 1 + 1 + 22 + 4);
    assert_int_equal(hub_keys_checksum_ok(key, len), 1);
    /* Every substitution of every character is refused, whether it breaks
     * the format or only the checksum. */
    for (size_t i = 0; i < len; i++) {
        for (const char *c = alphabet; *c != '\0'; c++) {
            if (*c == key[i])
                continue;
            memcpy(m, key, len + 1);
            m[i] = *c;
            if (hub_keys_checksum_ok(m, len))
                fail_msg("mutation at %zu to '%c' accepted: %s", i, *c, m);
            tried++;
        }
    }
    assert_true(tried > 1000);
    /* Swapping two neighbouring characters is caught too. */
    memcpy(m, key, len + 1);
    m[12] = key[13];
    m[13] = key[12];
    assert_int_equal(hub_keys_checksum_ok(m, len), 0);
}

static void
test_checksum_rejects_malformed(void **state)
{
    char key[HUB_KEY_MAX], m[HUB_KEY_MAX + 8];
    size_t len;

    (void)state;
    fixed_key(key);
    len = strlen(key);
    assert_int_equal(hub_keys_checksum_ok(key, len - 1), 0);
    assert_int_equal(hub_keys_checksum_ok(key, 0), 0);
    assert_int_equal(hub_keys_checksum_ok(NULL, 10), 0);
    snprintf(m, sizeof(m), "%sx", key);
    assert_int_equal(hub_keys_checksum_ok(m, len + 1), 0);
    snprintf(m, sizeof(m), "AICP%s", key + 4);
    assert_int_equal(hub_keys_checksum_ok(m, len), 0);
    {
        const char *bad = "aicp__0_AAAAAAAAAAAAAAAAAAAAAA0000";
        assert_int_equal(hub_keys_checksum_ok(bad, strlen(bad)), 0);
    }
    assert_int_equal(hub_keys_checksum_ok("sk-ant-api03-abcdef", 19), 0);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static void
test_uniqueness(void **state)
{
    enum { N = 2000 };
    char(*keys)[HUB_KEY_MAX] = calloc(N, HUB_KEY_MAX);

    (void)state;
    assert_non_null(keys);
    for (int i = 0; i < N; i++)
        GW_PASS(hub_keys_generate(1, 1, keys[i]));
    qsort(keys, N, HUB_KEY_MAX, cmp_str);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(keys[i - 1], keys[i]);
    free(keys);
}

static void
tmp_dir(char *out, size_t size)
{
    snprintf(out, size, "/tmp/aicp-keys-test-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void
write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void
test_master_key_file(void **state)
{
    char dir[64], path[128], other[128];
    uint8_t k1[HUB_MASTER_KEY_LEN], k2[HUB_MASTER_KEY_LEN], zero[HUB_MASTER_KEY_LEN];
    struct gw_buf err = GW_BUF_INIT;
    struct stat st;
    int created = -1;

    (void)state;
    memset(zero, 0, sizeof(zero));
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/master.key", dir);

    GW_PASS(hub_keys_master_load(path, k1, &created, &err));
    assert_int_equal(created, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, HUB_MASTER_KEY_LEN);
    assert_memory_not_equal(k1, zero, sizeof(k1));

    GW_PASS(hub_keys_master_load(path, k2, &created, &err));
    assert_int_equal(created, 0);
    assert_memory_equal(k1, k2, sizeof(k1));

    /* Group- or world-accessible: refused, and the message names the fix. */
    assert_int_equal(chmod(path, 0640), 0);
    GW_FAIL(hub_keys_master_load(path, k2, &created, &err), GW_EPERM);
    assert_non_null(strstr(err.data, "chmod 600"));
    assert_int_equal(chmod(path, 0604), 0);
    GW_FAIL(hub_keys_master_load(path, k2, &created, &err), GW_EPERM);
    assert_int_equal(chmod(path, 0600), 0);

    /* Wrong sizes. */
    snprintf(other, sizeof(other), "%s/short.key", dir);
    write_file(other, k1, 31, 0600);
    err.len = 0;
    GW_FAIL(hub_keys_master_load(other, k2, &created, &err), GW_EINVAL);
    assert_non_null(strstr(err.data, "size 31"));
    write_file(other, zero, 0, 0600);
    GW_FAIL(hub_keys_master_load(other, k2, &created, &err), GW_EINVAL);
    unlink(other);

    /* A directory in the way. */
    snprintf(other, sizeof(other), "%s/sub", dir);
    assert_int_equal(mkdir(other, 0700), 0);
    GW_FAIL(hub_keys_master_load(other, k2, &created, &err), GW_EINVAL);
    rmdir(other);

    /* A missing parent directory is an I/O error, not a crash. */
    snprintf(other, sizeof(other), "%s/missing/master.key", dir);
    GW_FAIL(hub_keys_master_load(other, k2, &created, &err), GW_EIO);

    unlink(path);
    rmdir(dir);
    gw_buf_fini(&err);
}

static void
test_seal_credential(void **state)
{
    static const char secret[] = "sk-ant-api03-very-secret-value";
    uint8_t master[HUB_MASTER_KEY_LEN], other[HUB_MASTER_KEY_LEN];
    struct gw_buf sealed = GW_BUF_INIT, plain = GW_BUF_INIT;

    (void)state;
    GW_PASS(gw_random_bytes(master, sizeof(master)));
    GW_PASS(gw_random_bytes(other, sizeof(other)));
    GW_PASS(hub_keys_seal_credential(master, secret, strlen(secret), &sealed));
    assert_int_equal(sealed.len, GW_AES_NONCE_LEN + strlen(secret) + GW_AES_TAG_LEN);
    assert_null(memmem(sealed.data, sealed.len, "very-secret", 11));
    GW_PASS(hub_keys_open_credential(master, sealed.data, sealed.len, &plain));
    assert_int_equal(plain.len, strlen(secret));
    assert_memory_equal(plain.data, secret, plain.len);

    gw_buf_reset(&plain);
    GW_FAIL(hub_keys_open_credential(other, sealed.data, sealed.len, &plain), GW_EAUTH);
    /* The aad binds the purpose: a plain gw_aead_seal without it does not
     * open as a credential. */
    gw_buf_reset(&sealed);
    GW_PASS(gw_aead_seal(master, NULL, 0, secret, strlen(secret), &sealed));
    GW_FAIL(hub_keys_open_credential(master, sealed.data, sealed.len, &plain), GW_EAUTH);
    gw_buf_fini(&sealed);
    gw_buf_fini(&plain);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_display_prefix),
        cmocka_unit_test(test_checksum_detects_changes),
        cmocka_unit_test(test_checksum_rejects_malformed),
        cmocka_unit_test(test_uniqueness),
        cmocka_unit_test(test_master_key_file),
        cmocka_unit_test(test_seal_credential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
