/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for gw_crypto against published vectors (FIPS 180-2 SHA-256, RFC 4231
 * HMAC, RFC 4648 base64, RFC 5869 HKDF, RFC 7914 scrypt, GCM spec AES-256)
 * plus round trips, tamper detection and rejection of malformed input. */
#include "gw_test.h"

#include <stdlib.h>
#include <string.h>

#include "gw_crypto.h"

static void
hex_of(const uint8_t *d, size_t n, char *out)
{
    gw_hex_encode(d, n, out);
}

static void
test_sha256_vectors(void **state)
{
    uint8_t md[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];
    const char *two_block = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char *million = malloc(1000000);
    (void)state;

    gw_sha256("", 0, md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    gw_sha256(NULL, 0, md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    gw_sha256("abc", 3, md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    gw_sha256(two_block, strlen(two_block), md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_non_null(million);
    memset(million, 'a', 1000000);
    gw_sha256(million, 1000000, md);
    hex_of(md, sizeof(md), hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

static void
test_hmac_vectors(void **state)
{
    uint8_t mac[GW_SHA256_LEN];
    char hex[2 * GW_SHA256_LEN + 1];
    uint8_t key1[20], key6[131];
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    (void)state;

    /* RFC 4231 test case 1 */
    memset(key1, 0x0b, sizeof(key1));
    gw_hmac_sha256(key1, sizeof(key1), "Hi There", 8, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* test case 2 */
    gw_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* test case 6: key longer than the block size */
    memset(key6, 0xaa, sizeof(key6));
    gw_hmac_sha256(key6, sizeof(key6), d6, strlen(d6), mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* Empty key and message are legal HMAC inputs. */
    gw_hmac_sha256("", 0, "", 0, mac);
    hex_of(mac, sizeof(mac), hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void
test_random_and_ct_equal(void **state)
{
    uint8_t a[32], b[32];
    (void)state;

    GW_PASS(gw_random_bytes(a, sizeof(a)));
    GW_PASS(gw_random_bytes(b, sizeof(b)));
    GW_PASS(gw_random_bytes(NULL, 0));
    assert_false(gw_ct_equal(a, b, sizeof(a)));
    memcpy(b, a, sizeof(a));
    assert_true(gw_ct_equal(a, b, sizeof(a)));
    b[31] ^= 1;
    assert_false(gw_ct_equal(a, b, sizeof(a)));
    assert_true(gw_ct_equal(a, b, 31));
    assert_true(gw_ct_equal(a, b, 0));
}

static void
test_hex(void **state)
{
    const uint8_t data[] = {0x00, 0x01, 0xab, 0xff, 0x7f};
    char hex[2 * sizeof(data) + 1];
    uint8_t out[8];
    size_t n = 0;
    (void)state;

    gw_hex_encode(data, sizeof(data), hex);
    assert_string_equal(hex, "0001abff7f");
    GW_PASS(gw_hex_decode("0001ABff7f", 10, out, sizeof(out), &n));
    assert_int_equal(n, sizeof(data));
    assert_memory_equal(out, data, sizeof(data));
    GW_PASS(gw_hex_decode("", 0, out, 0, &n));
    assert_int_equal(n, 0);
    gw_hex_encode(data, 0, hex);
    assert_string_equal(hex, "");
    GW_FAIL(gw_hex_decode("abc", 3, out, sizeof(out), &n), GW_EINVAL); /* odd */
    GW_FAIL(gw_hex_decode("zz", 2, out, sizeof(out), &n), GW_EINVAL);  /* not hex */
    GW_FAIL(gw_hex_decode("0g", 2, out, sizeof(out), &n), GW_EINVAL);
    GW_FAIL(gw_hex_decode("0102", 4, out, 1, &n), GW_EINVAL); /* too small */
}

static void
test_base64url_vectors(void **state)
{
    static const struct {
        const char *plain, *enc;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    const uint8_t urlsafe[] = {0xfb, 0xff};
    struct gw_buf b = GW_BUF_INIT;
    (void)state;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        gw_buf_reset(&b);
        gw_base64url_encode(v[i].plain, strlen(v[i].plain), &b);
        assert_string_equal(b.data, v[i].enc);
        gw_buf_reset(&b);
        GW_PASS(gw_base64url_decode(v[i].enc, strlen(v[i].enc), &b));
        assert_int_equal(b.len, strlen(v[i].plain));
        assert_memory_equal(b.data, v[i].plain, b.len);
    }
    /* The url-safe alphabet: '-' and '_' instead of '+' and '/'. */
    gw_buf_reset(&b);
    gw_base64url_encode(urlsafe, sizeof(urlsafe), &b);
    assert_string_equal(b.data, "-_8");
    /* Appends after existing content. */
    gw_buf_reset(&b);
    gw_buf_append_str(&b, "x.");
    gw_base64url_encode("foo", 3, &b);
    assert_string_equal(b.data, "x.Zm9v");
    gw_buf_fini(&b);
}

static void
test_base64url_round_trip(void **state)
{
    uint8_t data[300];
    struct gw_buf enc = GW_BUF_INIT, dec = GW_BUF_INIT;
    (void)state;

    GW_PASS(gw_random_bytes(data, sizeof(data)));
    for (size_t n = 0; n <= sizeof(data); n += (n < 20 ? 1 : 37)) {
        gw_buf_reset(&enc);
        gw_buf_reset(&dec);
        gw_base64url_encode(data, n, &enc);
        assert_int_equal(enc.len, (n * 4 + 2) / 3);
        assert_null(strpbrk(enc.data, "+/="));
        GW_PASS(gw_base64url_decode(enc.data, enc.len, &dec));
        assert_int_equal(dec.len, n);
        if (n)
            assert_memory_equal(dec.data, data, n);
    }
    gw_buf_fini(&enc);
    gw_buf_fini(&dec);
}

static void
test_base64url_bad_input(void **state)
{
    const char *bad[] = {
        "Z",     /* a single leftover character cannot encode a byte */
        "Zm9v+", /* standard alphabet */
        "Zm9v/A", "Zm 9v",     "Zm9v\n", "Zg=",         /* wrong padding count */
        "Zg===",  "=Zg",       "Z=g=",   "Zm8==", "Zh", /* non-zero trailing bits */
        "Zm9",    "Zm9vYmE=x",
    };
    struct gw_buf b = GW_BUF_INIT;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_buf_reset(&b);
        gw_buf_append_str(&b, "keep");
        if (gw_base64url_decode(bad[i], strlen(bad[i]), &b) != GW_EINVAL)
            fail_msg("accepted bad base64url '%s'", bad[i]);
        /* A failed decode leaves the buffer as it was. */
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "keep");
    }
    /* Padding is optional but accepted when correct. */
    gw_buf_reset(&b);
    GW_PASS(gw_base64url_decode("Zg==", 4, &b));
    assert_string_equal(b.data, "f");
    gw_buf_reset(&b);
    GW_PASS(gw_base64url_decode("Zm8=", 4, &b));
    assert_string_equal(b.data, "fo");
    /* Length-bounded: bytes after len are not read. */
    gw_buf_reset(&b);
    GW_PASS(gw_base64url_decode("Zm9v!!!", 4, &b));
    assert_string_equal(b.data, "foo");
    gw_buf_fini(&b);
}

static void
test_aead_known_answer(void **state)
{
    /* GCM specification (McGrew & Viega) test cases 13 and 14: AES-256,
     * zero key, zero IV. */
    uint8_t key[GW_AES_KEY_LEN] = {0};
    uint8_t sealed13[12 + 16], sealed14[12 + 16 + 16];
    size_t n;
    struct gw_buf out = GW_BUF_INIT;
    const uint8_t zeros[16] = {0};
    (void)state;

    memset(sealed13, 0, 12);
    GW_PASS(gw_hex_decode("530f8afbc74536b9a963b4f1c4cb738b", 32, sealed13 + 12, 16, &n));
    GW_PASS(gw_aead_open(key, NULL, 0, sealed13, sizeof(sealed13), &out));
    assert_int_equal(out.len, 0);

    memset(sealed14, 0, 12);
    GW_PASS(gw_hex_decode("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919", 64,
                          sealed14 + 12, 32, &n));
    GW_PASS(gw_aead_open(key, NULL, 0, sealed14, sizeof(sealed14), &out));
    assert_int_equal(out.len, 16);
    assert_memory_equal(out.data, zeros, 16);
    gw_buf_fini(&out);
}

static void
test_aead_round_trip_and_tamper(void **state)
{
    uint8_t key[GW_AES_KEY_LEN], key2[GW_AES_KEY_LEN];
    const char *msg = "provider credential: sk-ant-0123456789";
    const char *aad = "account:42";
    struct gw_buf sealed = GW_BUF_INIT, sealed2 = GW_BUF_INIT, out = GW_BUF_INIT;
    size_t mlen = strlen(msg);
    (void)state;

    GW_PASS(gw_random_bytes(key, sizeof(key)));
    memcpy(key2, key, sizeof(key));
    key2[0] ^= 0x80;

    GW_PASS(gw_aead_seal(key, aad, strlen(aad), msg, mlen, &sealed));
    assert_int_equal(sealed.len, GW_AES_NONCE_LEN + mlen + GW_AES_TAG_LEN);
    assert_null(memmem(sealed.data, sealed.len, "sk-ant", 6));
    /* Fresh nonce each time: same input, different output. */
    GW_PASS(gw_aead_seal(key, aad, strlen(aad), msg, mlen, &sealed2));
    assert_memory_not_equal(sealed.data, sealed2.data, sealed.len);

    gw_buf_append_str(&out, "pre:");
    GW_PASS(gw_aead_open(key, aad, strlen(aad), sealed.data, sealed.len, &out));
    assert_int_equal(out.len, 4 + mlen);
    assert_string_equal(out.data, "pre:provider credential: sk-ant-0123456789");

    /* Flip one bit in every byte position in turn: nonce, ciphertext, tag. */
    for (size_t i = 0; i < sealed.len; i++) {
        sealed.data[i] ^= 0x01;
        gw_buf_reset(&out);
        gw_buf_append_str(&out, "keep");
        GW_FAIL(gw_aead_open(key, aad, strlen(aad), sealed.data, sealed.len, &out), GW_EAUTH);
        assert_int_equal(out.len, 4);
        assert_string_equal(out.data, "keep");
        sealed.data[i] ^= 0x01;
    }
    /* The unauthenticated plaintext was wiped from the spare capacity. */
    assert_null(memmem(out.data, out.cap, "sk-ant", 6));

    gw_buf_reset(&out);
    GW_FAIL(gw_aead_open(key2, aad, strlen(aad), sealed.data, sealed.len, &out), GW_EAUTH);
    GW_FAIL(gw_aead_open(key, "account:43", 10, sealed.data, sealed.len, &out), GW_EAUTH);
    GW_FAIL(gw_aead_open(key, NULL, 0, sealed.data, sealed.len, &out), GW_EAUTH);
    GW_FAIL(gw_aead_open(key, aad, strlen(aad), sealed.data, sealed.len - 1, &out), GW_EAUTH);
    GW_FAIL(gw_aead_open(key, aad, strlen(aad), sealed.data, 27, &out), GW_EINVAL);
    GW_FAIL(gw_aead_open(key, aad, strlen(aad), NULL, 0, &out), GW_EINVAL);
    assert_int_equal(out.len, 0);

    /* Empty plaintext and no AAD. */
    gw_buf_reset(&sealed);
    GW_PASS(gw_aead_seal(key, NULL, 0, "", 0, &sealed));
    assert_int_equal(sealed.len, GW_AES_NONCE_LEN + GW_AES_TAG_LEN);
    GW_PASS(gw_aead_open(key, NULL, 0, sealed.data, sealed.len, &out));
    assert_int_equal(out.len, 0);
    GW_FAIL(gw_aead_open(key, "x", 1, sealed.data, sealed.len, &out), GW_EAUTH);

    gw_buf_fini(&sealed);
    gw_buf_fini(&sealed2);
    gw_buf_fini(&out);
}

static void
test_derive_key(void **state)
{
    uint8_t ikm[22];
    uint8_t k1[GW_AES_KEY_LEN], k2[GW_AES_KEY_LEN], k3[GW_AES_KEY_LEN];
    char hex[2 * GW_AES_KEY_LEN + 1];
    (void)state;

    /* RFC 5869 test case 3 (no salt, empty info): first 32 bytes of OKM. */
    memset(ikm, 0x0b, sizeof(ikm));
    gw_derive_key(ikm, sizeof(ikm), "", k1);
    hex_of(k1, sizeof(k1), hex);
    assert_string_equal(hex, "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d");

    gw_derive_key("master secret", 13, "snapshot-encryption", k1);
    gw_derive_key("master secret", 13, "credential-encryption", k2);
    gw_derive_key("master secret", 13, "snapshot-encryption", k3);
    assert_memory_not_equal(k1, k2, sizeof(k1));
    assert_memory_equal(k1, k3, sizeof(k1));
    gw_derive_key("master secreT", 13, "snapshot-encryption", k3);
    assert_memory_not_equal(k1, k3, sizeof(k1));
}

static void
test_password_hash_verify(void **state)
{
    struct gw_buf h = GW_BUF_INIT, h2 = GW_BUF_INIT;
    const char *salt, *hash;
    (void)state;

    GW_PASS(gw_password_hash("correct horse battery staple", &h));
    assert_true(strncmp(h.data, "scrypt$15$8$1$", 14) == 0);
    salt = h.data + 14;
    hash = strchr(salt, '$');
    assert_non_null(hash);
    assert_int_equal(hash - salt, 22);      /* 16 bytes */
    assert_int_equal(strlen(hash + 1), 43); /* 32 bytes */
    GW_PASS(gw_password_verify("correct horse battery staple", h.data));
    GW_FAIL(gw_password_verify("correct horse battery stapl", h.data), GW_EAUTH);
    GW_FAIL(gw_password_verify("", h.data), GW_EAUTH);
    /* Random salt: the same password hashes differently, both verify. */
    GW_PASS(gw_password_hash("correct horse battery staple", &h2));
    assert_string_not_equal(h.data, h2.data);
    GW_PASS(gw_password_verify("correct horse battery staple", h2.data));
    gw_buf_fini(&h);
    gw_buf_fini(&h2);
}

static void
test_password_known_answer(void **state)
{
    /* RFC 7914 section 12, third vector: P="pleaseletmein",
     * S="SodiumChloride", N=16384, r=8, p=1, dkLen=64. */
    const char *stored = "scrypt$14$8$1$U29kaXVtQ2hsb3JpZGU$"
                         "cCO9yzr9c0hGHAbNgf046_2o-7qQT44-qbVD9lRdofLVQylVYT8Pz2LUlwUkKpr55h6F3A1lH"
                         "kDfzwF7RVdYhw";
    (void)state;

    GW_PASS(gw_password_verify("pleaseletmein", stored));
    GW_FAIL(gw_password_verify("pleaseletmeIn", stored), GW_EAUTH);
}

#define SALT16 "AAAAAAAAAAAAAAAAAAAAAA"
#define HASH32 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static void
test_password_malformed(void **state)
{
    const char *bad[] = {
        "",
        "scrypt",
        "scrypt$15$8$1",
        "scrypt$15$8$1$" SALT16,
        "bcrypt$15$8$1$" SALT16 "$" HASH32,
        "SCRYPT$15$8$1$" SALT16 "$" HASH32,
        "scrypt$15$8$1$" SALT16 "$" HASH32 "$",
        "scrypt$15$8$1$" SALT16 "$" HASH32 "$extra",
        "scrypt$x$8$1$" SALT16 "$" HASH32,
        "scrypt$015$8$1$" SALT16 "$" HASH32, /* leading zero */
        "scrypt$-15$8$1$" SALT16 "$" HASH32,
        "scrypt$+15$8$1$" SALT16 "$" HASH32,
        "scrypt$ 15$8$1$" SALT16 "$" HASH32,
        "scrypt$15$8$$" SALT16 "$" HASH32,
        "scrypt$15$8$1$" SALT16 "$" HASH32 "!", /* not base64url */
        "scrypt$15$8$1$" SALT16 "$" HASH32 " ",
        "scrypt$15$8$1$$" HASH32,                                /* empty salt */
        "scrypt$15$8$1$" SALT16 "$",                             /* empty hash */
        "scrypt$15$8$1$AAAA$" HASH32,                            /* salt of 3 bytes */
        "scrypt$15$8$1$" SALT16 "$AAAA",                         /* hash of 3 bytes */
        "scrypt$15$8$1$" SALT16 SALT16 SALT16 SALT16 "$" HASH32, /* salt of 64+ bytes */
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gw_password_verify("pw", bad[i]) != GW_EINVAL)
            fail_msg("accepted malformed hash '%s'", bad[i]);
    }
    GW_FAIL(gw_password_verify(NULL, "scrypt$15$8$1$" SALT16 "$" HASH32), GW_EINVAL);
    GW_FAIL(gw_password_verify("pw", NULL), GW_EINVAL);
}

static void
test_password_absurd_parameters(void **state)
{
    /* Each would cost a lot of memory or CPU, or is below a sane floor. */
    const char *bad[] = {
        "scrypt$30$8$1$" SALT16 "$" HASH32,  /* N = 2^30 */
        "scrypt$21$1$1$" SALT16 "$" HASH32,  /* log2 N above 20 */
        "scrypt$20$8$1$" SALT16 "$" HASH32,  /* 1 GiB */
        "scrypt$17$16$1$" SALT16 "$" HASH32, /* 256 MiB */
        "scrypt$15$17$1$" SALT16 "$" HASH32, /* r above 16 */
        "scrypt$15$8$5$" SALT16 "$" HASH32,  /* p above 4 */
        "scrypt$15$8$99$" SALT16 "$" HASH32, "scrypt$15$8$999$" SALT16 "$" HASH32,
        "scrypt$15$0$1$" SALT16 "$" HASH32,  "scrypt$15$8$0$" SALT16 "$" HASH32,
        "scrypt$9$8$1$" SALT16 "$" HASH32, /* too weak */
        "scrypt$0$8$1$" SALT16 "$" HASH32,
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (gw_password_verify("pw", bad[i]) != GW_EINVAL)
            fail_msg("accepted parameters in '%s'", bad[i]);
    }
    /* Within bounds but wrong: a cheap valid string runs and mismatches. */
    GW_FAIL(gw_password_verify("pw", "scrypt$10$1$1$" SALT16 "$" HASH32), GW_EAUTH);
    /* The upper memory bound itself (128 MiB) is accepted. */
    GW_FAIL(gw_password_verify("pw", "scrypt$17$8$1$" SALT16 "$" HASH32), GW_EAUTH);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_hmac_vectors),
        cmocka_unit_test(test_random_and_ct_equal),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64url_vectors),
        cmocka_unit_test(test_base64url_round_trip),
        cmocka_unit_test(test_base64url_bad_input),
        cmocka_unit_test(test_aead_known_answer),
        cmocka_unit_test(test_aead_round_trip_and_tamper),
        cmocka_unit_test(test_derive_key),
        cmocka_unit_test(test_password_hash_verify),
        cmocka_unit_test(test_password_known_answer),
        cmocka_unit_test(test_password_malformed),
        cmocka_unit_test(test_password_absurd_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
