/* SPDX-License-Identifier: Apache-2.0 */
/* The sealed snapshot file (round trip, wrong secret, damaged, missing,
 * size limit) and building a new snapshot from a base plus Deltas (upsert,
 * removal, bindings, version checks). */
#include "gw_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gw_buf.h"
#include "gw_crypto.h"
#include "snapshot.h"
#include "snapshot_file.h"

static void
fill_key(struct gw_wire_key *k, uint64_t id, const char *raw, uint64_t group)
{
    memset(k, 0, sizeof(*k));
    k->id = id;
    gw_sha256(raw, strlen(raw), k->key_hash);
    k->group_id = group;
    k->enabled = 1;
}

/* Version 4: keys 1 ("k-one") and 2 ("k-two") in group 1, account 9 bound. */
static void
make_base(struct gw_msg *m)
{
    struct gw_wire_snapshot *w = &m->u.snapshot;

    memset(m, 0, sizeof(*m));
    m->type = GW_MSG_SNAPSHOT;
    w->version = 4;
    w->n_keys = 2;
    w->keys = gw_xcalloc(2, sizeof(*w->keys));
    fill_key(&w->keys[0], 1, "k-one", 1);
    fill_key(&w->keys[1], 2, "k-two", 1);
    w->n_groups = 1;
    w->groups = gw_xcalloc(1, sizeof(*w->groups));
    w->groups[0].id = 1;
    w->groups[0].name = gw_xstrdup("g1");
    w->n_accounts = 1;
    w->accounts = gw_xcalloc(1, sizeof(*w->accounts));
    w->accounts[0].id = 9;
    w->accounts[0].name = gw_xstrdup("acct");
    w->accounts[0].kind = gw_xstrdup("anthropic");
    w->accounts[0].base_url = gw_xstrdup("http://127.0.0.1:9");
    w->accounts[0].credential = (uint8_t *)gw_xstrdup("sk-secret-cred");
    w->accounts[0].credential_len = strlen("sk-secret-cred");
    w->accounts[0].enabled = 1;
    w->n_bindings = 1;
    w->bindings = gw_xcalloc(1, sizeof(*w->bindings));
    w->bindings[0].group_id = 1;
    w->bindings[0].account_id = 9;
}

static int
has_key(const struct edge_snapshot *s, const char *raw)
{
    const struct edge_key *k = NULL;

    return edge_snapshot_lookup(s, raw, strlen(raw), 0, &k) == EDGE_KEY_OK;
}

static void
test_file_round_trip_and_refusals(void **state)
{
    char dir[] = "/tmp/gw-snapfile-XXXXXX", path[300], tmp[320];
    uint8_t key[GW_AES_KEY_LEN], other[GW_AES_KEY_LEN];
    struct gw_msg base, back;
    struct edge_snapshot *s = NULL;
    struct stat st;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/snapshot.bin", dir);
    edge_snapshot_file_key("enrol-secret-A", key);
    edge_snapshot_file_key("enrol-secret-B", other);
    assert_memory_not_equal(key, other, sizeof(key));

    GW_FAIL(edge_snapshot_file_read(path, key, 1 << 20, &back), GW_ENOTFOUND);
    make_base(&base);
    GW_PASS(edge_snapshot_file_write(path, key, &base));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(stat(tmp, &st), 0); /* renamed away */

    /* The credential is not readable in the file. */
    {
        char buf[8192];
        ssize_t n;

        fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf));
        close(fd);
        assert_true(n > 0);
        assert_null(memmem(buf, (size_t)n, "sk-secret-cred", 14));
    }

    GW_PASS(edge_snapshot_file_read(path, key, 1 << 20, &back));
    assert_int_equal(back.type, GW_MSG_SNAPSHOT);
    assert_int_equal(back.u.snapshot.version, 4);
    GW_PASS(edge_snapshot_build(&back.u.snapshot, &s));
    assert_true(has_key(s, "k-one"));
    assert_true(has_key(s, "k-two"));
    assert_string_equal(edge_snapshot_account(s, 9)->credential, "sk-secret-cred");
    edge_snapshot_unref(s);
    gw_msg_fini(&back);

    /* Wrong secret, size limit. */
    GW_FAIL(edge_snapshot_file_read(path, other, 1 << 20, &back), GW_EAUTH);
    GW_FAIL(edge_snapshot_file_read(path, key, 16, &back), GW_EMSGSIZE);

    /* One flipped byte anywhere: refused. */
    {
        char c;

        fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        assert_int_equal(pread(fd, &c, 1, 40), 1);
        c ^= 1;
        assert_int_equal(pwrite(fd, &c, 1, 40), 1);
        close(fd);
    }
    GW_FAIL(edge_snapshot_file_read(path, key, 1 << 20, &back), GW_EAUTH);
    /* Garbage and an empty file. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    close(fd);
    GW_FAIL(edge_snapshot_file_read(path, key, 1 << 20, &back), GW_EAUTH);

    /* Only snapshot messages are written. */
    {
        struct gw_msg other_msg;

        memset(&other_msg, 0, sizeof(other_msg));
        other_msg.type = GW_MSG_HEARTBEAT_ACK;
        GW_FAIL(edge_snapshot_file_write(path, key, &other_msg), GW_EINVAL);
    }
    gw_msg_fini(&base);
    unlink(path);
    rmdir(dir);
}

static void
test_apply_deltas(void **state)
{
    struct gw_msg base, dm;
    struct gw_wire_deltas *d = &dm.u.deltas;
    struct edge_snapshot *s = NULL;

    (void)state;
    make_base(&base);
    memset(&dm, 0, sizeof(dm));
    dm.type = GW_MSG_DELTAS;
    d->from_version = 4;
    d->to_version = 7;
    d->n_changes = 5;
    d->changes = gw_xcalloc(5, sizeof(*d->changes));
    /* v5: key 2 removed; v6: key 3 added, key 1 disabled; v7: a second
     * account and its binding. */
    d->changes[0].version = 5;
    d->changes[0].kind = GW_CHANGE_KEY_REMOVED;
    d->changes[0].u.removed_id = 2;
    d->changes[1].version = 6;
    d->changes[1].kind = GW_CHANGE_KEY;
    fill_key(&d->changes[1].u.key, 3, "k-three", 1);
    d->changes[1].u.key.n_allowed_models = 1;
    d->changes[1].u.key.allowed_models = gw_xcalloc(1, sizeof(char *));
    d->changes[1].u.key.allowed_models[0] = gw_xstrdup("claude-x");
    d->changes[2].version = 6;
    d->changes[2].kind = GW_CHANGE_KEY;
    fill_key(&d->changes[2].u.key, 1, "k-one", 1);
    d->changes[2].u.key.enabled = 0;
    d->changes[3].version = 7;
    d->changes[3].kind = GW_CHANGE_ACCOUNT;
    d->changes[3].u.account.id = 10;
    d->changes[3].u.account.kind = gw_xstrdup("openai");
    d->changes[3].u.account.base_url = gw_xstrdup("http://127.0.0.1:10");
    d->changes[3].u.account.enabled = 1;
    d->changes[4].version = 7;
    d->changes[4].kind = GW_CHANGE_BINDING;
    d->changes[4].u.binding.group_id = 1;
    d->changes[4].u.binding.account_id = 10;

    /* Wrong base version: untouched. */
    base.u.snapshot.version = 3;
    GW_FAIL(edge_snapshot_apply_deltas(&base.u.snapshot, d), GW_EINVAL);
    assert_int_equal(base.u.snapshot.n_keys, 2);
    base.u.snapshot.version = 4;
    GW_PASS(edge_snapshot_apply_deltas(&base.u.snapshot, d));
    gw_msg_fini(&dm); /* safe: the contents moved */
    assert_int_equal(base.u.snapshot.version, 7);
    GW_PASS(edge_snapshot_build(&base.u.snapshot, &s));
    assert_int_equal(edge_snapshot_version(s), 7);
    assert_false(has_key(s, "k-two"));
    assert_true(has_key(s, "k-three"));
    {
        const struct edge_key *k = NULL;
        assert_int_equal(edge_snapshot_lookup(s, "k-one", 5, 0, &k), EDGE_KEY_DISABLED);
    }
    assert_int_equal(edge_snapshot_group(s, 1)->n_accounts, 2);
    edge_snapshot_unref(s);

    /* v8: binding and account removed again; snapshot_required refused. */
    memset(&dm, 0, sizeof(dm));
    dm.type = GW_MSG_DELTAS;
    d->from_version = 7;
    d->to_version = 8;
    d->n_changes = 2;
    d->changes = gw_xcalloc(2, sizeof(*d->changes));
    d->changes[0].kind = GW_CHANGE_BINDING_REMOVED;
    d->changes[0].u.binding.group_id = 1;
    d->changes[0].u.binding.account_id = 10;
    d->changes[1].kind = GW_CHANGE_ACCOUNT_REMOVED;
    d->changes[1].u.removed_id = 10;
    d->snapshot_required = 1;
    GW_FAIL(edge_snapshot_apply_deltas(&base.u.snapshot, d), GW_EINVAL);
    d->snapshot_required = 0;
    GW_PASS(edge_snapshot_apply_deltas(&base.u.snapshot, d));
    gw_msg_fini(&dm);
    GW_PASS(edge_snapshot_build(&base.u.snapshot, &s));
    assert_int_equal(edge_snapshot_group(s, 1)->n_accounts, 1);
    assert_null(edge_snapshot_account(s, 10));
    edge_snapshot_unref(s);
    gw_msg_fini(&base);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_round_trip_and_refusals),
        cmocka_unit_test(test_apply_deltas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
