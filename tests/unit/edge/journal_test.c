/* SPDX-License-Identifier: Apache-2.0 */
/* Usage journal on a real file in a temporary directory: append and
 * replay, a torn tail cut off, the unacknowledged batch replayed with its
 * seq, truncation and compaction on ack, a file of another format moved
 * aside, the size cap, and a crash (a child process that _exit()s without
 * closing) followed by a reopen. */
#include "gw_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal.h"

static char dir[256];
static char path[300];

static void
make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/gw-journal-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/usage.journal", dir);
}

static void
remove_dir(void)
{
    char p[320];

    unlink(path);
    snprintf(p, sizeof(p), "%s.tmp", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s.bad", path);
    unlink(p);
    rmdir(dir);
}

static void
rec(struct gw_usage_record *r, int i)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->request_id, sizeof(r->request_id), "req-%d", i);
    r->key_id = 7;
    r->input_tokens = 1000 + (uint64_t)i;
}

static off_t
file_size(void)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void
append_n(struct edge_journal *j, int from, int to)
{
    struct gw_usage_record r;

    for (int i = from; i < to; i++) {
        rec(&r, i);
        GW_PASS(edge_journal_append(j, &r));
    }
}

static void
test_append_replay_torn_tail(void **state)
{
    struct edge_journal *j;
    struct edge_journal_replay r;
    off_t full;

    (void)state;
    make_dir();
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 0);
    append_n(j, 0, 5);
    assert_true(edge_journal_dirty(j));
    GW_PASS(edge_journal_sync(j));
    assert_false(edge_journal_dirty(j));
    edge_journal_close(j);

    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 5);
    assert_int_equal(r.batch_n, 0);
    assert_int_equal(r.torn_bytes, 0);
    assert_string_equal(r.records[0].request_id, "req-0");
    assert_string_equal(r.records[4].request_id, "req-4");
    assert_int_equal(r.records[4].input_tokens, 1004);
    edge_journal_replay_fini(&r);
    edge_journal_close(j);

    /* Tear the last frame: cut 10 bytes off. */
    full = file_size();
    assert_int_equal(truncate(path, full - 10), 0);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 4);
    assert_true(r.torn_bytes > 0);
    edge_journal_replay_fini(&r);
    /* The cut file takes new frames after the good prefix. */
    append_n(j, 10, 11);
    edge_journal_close(j);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 5);
    assert_int_equal(r.torn_bytes, 0);
    assert_string_equal(r.records[4].request_id, "req-10");
    edge_journal_replay_fini(&r);
    edge_journal_close(j);

    /* A flipped byte inside the second record: everything from it is dropped. */
    {
        int fd = open(path, O_RDWR);
        char c;

        assert_true(fd >= 0);
        off_t at = 16 + 1 * (9 + (off_t)sizeof(struct gw_usage_record)) + 20;
        assert_int_equal(pread(fd, &c, 1, at), 1);
        c ^= 0x5a;
        assert_int_equal(pwrite(fd, &c, 1, at), 1);
        close(fd);
    }
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 1);
    assert_true(r.torn_bytes > 0);
    edge_journal_replay_fini(&r);
    edge_journal_close(j);
    remove_dir();
}

static void
test_batch_ack_truncate(void **state)
{
    struct edge_journal *j;
    struct edge_journal_replay r;
    struct gw_usage_record rest[2];

    (void)state;
    make_dir();
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_ALWAYS, 1 << 20, &j, &r));
    append_n(j, 0, 3);
    GW_PASS(edge_journal_batch(j, 41, 2));
    append_n(j, 3, 5);
    edge_journal_close(j);

    /* Batch 41 = the two oldest records, same seq; three more wait. */
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_ALWAYS, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 5);
    assert_int_equal(r.batch_seq, 41);
    assert_int_equal(r.batch_n, 2);
    assert_string_equal(r.records[0].request_id, "req-0");
    assert_string_equal(r.records[1].request_id, "req-1");
    edge_journal_replay_fini(&r);

    /* Ack 41, then batch 42 = the next two, ack with records pending:
     * the file keeps the rest. */
    rec(&rest[0], 4);
    GW_PASS(edge_journal_ack(j, 41, NULL, 0, NULL, 0));
    /* ... that truncated (nothing was passed as pending): the three other
     * records are gone from the file, so pass them properly next time. */
    assert_int_equal(file_size(), 16);
    append_n(j, 2, 5);
    GW_PASS(edge_journal_batch(j, 42, 2));
    GW_PASS(edge_journal_ack(j, 42, rest, 1, NULL, 0));
    edge_journal_close(j);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_ALWAYS, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 1);
    assert_int_equal(r.batch_n, 0);
    assert_int_equal(r.last_acked_seq, 42);
    assert_string_equal(r.records[0].request_id, "req-4");
    edge_journal_replay_fini(&r);

    /* An ack for another seq does not retire anything. */
    GW_PASS(edge_journal_batch(j, 43, 1));
    GW_PASS(edge_journal_ack(j, 99, rest, 1, NULL, 0));
    edge_journal_close(j);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_ALWAYS, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 1);
    assert_int_equal(r.batch_seq, 43);
    assert_int_equal(r.batch_n, 1);
    edge_journal_replay_fini(&r);
    edge_journal_close(j);
    remove_dir();
}

static void
test_compaction_rewrites_tail(void **state)
{
    struct edge_journal *j;
    struct edge_journal_replay r;
    struct gw_usage_record pend[3];
    const int n = 40000; /* ~9.5 MB: beyond the compaction threshold */

    (void)state;
    make_dir();
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_NONE, 1u << 30, &j, &r));
    append_n(j, 0, n);
    GW_PASS(edge_journal_batch(j, 1, (size_t)n - 3));
    for (int i = 0; i < 3; i++)
        rec(&pend[i], n - 3 + i);
    /* The three pending ones given as two runs, like a wrapped ring. */
    GW_PASS(edge_journal_ack(j, 1, pend, 1, pend + 1, 2));
    assert_true(file_size() < 4096);
    append_n(j, n, n + 1);
    edge_journal_close(j);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_NONE, 1u << 30, &j, &r));
    assert_int_equal(r.n_records, 4);
    assert_string_equal(r.records[0].request_id, "req-39997");
    assert_string_equal(r.records[2].request_id, "req-39999");
    assert_string_equal(r.records[3].request_id, "req-40000");
    edge_journal_replay_fini(&r);
    edge_journal_close(j);
    remove_dir();
}

static void
test_cap_and_foreign_file(void **state)
{
    struct edge_journal *j;
    struct edge_journal_replay r;
    struct gw_usage_record x;
    char bad[320];
    struct stat st;
    int fd;

    (void)state;
    make_dir();
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a journal at all", 20), 20);
    close(fd);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_BATCH, 2000, &j, &r));
    assert_int_equal(r.n_records, 0);
    snprintf(bad, sizeof(bad), "%s.bad", path);
    assert_int_equal(stat(bad, &st), 0);
    assert_int_equal(st.st_size, 20);
    /* 2000 bytes hold the header and a few records, then the cap refuses. */
    rec(&x, 1);
    size_t ok = 0;
    gw_err rv = GW_OK;
    for (int i = 0; i < 100 && rv == GW_OK; i++) {
        rv = edge_journal_append(j, &x);
        if (rv == GW_OK)
            ok++;
    }
    assert_int_equal(rv, GW_EQUOTA);
    assert_true(ok >= 1 && ok < 100);
    assert_true(edge_journal_size(j) <= 2000);
    edge_journal_close(j);
    GW_FAIL(edge_journal_fsync_parse("sometimes", &(enum edge_journal_fsync){0}), GW_EINVAL);
    remove_dir();
}

static void
test_crash_and_reopen(void **state)
{
    struct edge_journal *j;
    struct edge_journal_replay r;
    pid_t pid;
    int status = 0;

    (void)state;
    make_dir();
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct edge_journal *cj;
        struct edge_journal_replay cr;

        if (edge_journal_open(dir, EDGE_JOURNAL_FSYNC_NONE, 1 << 20, &cj, &cr) != GW_OK)
            _exit(3);
        for (int i = 0; i < 6; i++) {
            struct gw_usage_record x;

            rec(&x, i);
            if (edge_journal_append(cj, &x) != GW_OK)
                _exit(4);
        }
        if (edge_journal_batch(cj, 7, 4) != GW_OK)
            _exit(5);
        /* Crash: no close, no ack, no compaction. */
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    GW_PASS(edge_journal_open(dir, EDGE_JOURNAL_FSYNC_NONE, 1 << 20, &j, &r));
    assert_int_equal(r.n_records, 6);
    assert_int_equal(r.batch_seq, 7);
    assert_int_equal(r.batch_n, 4);
    assert_string_equal(r.records[3].request_id, "req-3");
    edge_journal_replay_fini(&r);
    edge_journal_close(j);
    remove_dir();
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_replay_torn_tail),
        cmocka_unit_test(test_batch_ack_truncate),
        cmocka_unit_test(test_compaction_rewrites_tail),
        cmocka_unit_test(test_cap_and_foreign_file),
        cmocka_unit_test(test_crash_and_reopen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
