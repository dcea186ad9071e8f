/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the incremental SSE parser: every split point, all line-end
 * styles, multi-line data, comments, field edge cases and the size limit. */
#include "gw_test.h"

#include <stdio.h>
#include <string.h>

#include "gw_buf.h"
#include "sse.h"

#define REC_MAX 64

struct rec {
    size_t n;
    char event[REC_MAX][64];
    struct gw_buf data[REC_MAX];
};

static void
rec_init(struct rec *r)
{
    memset(r, 0, sizeof(*r));
}

static void
rec_fini(struct rec *r)
{
    for (size_t i = 0; i < REC_MAX; i++)
        gw_buf_fini(&r->data[i]);
}

static void
rec_cb(void *arg, const char *event, size_t event_len, const char *data, size_t data_len)
{
    struct rec *r = arg;
    assert_true(r->n < REC_MAX);
    assert_true(event_len < sizeof(r->event[0]));
    /* the parser promises NUL-terminated views */
    assert_int_equal(event[event_len], '\0');
    assert_int_equal(data[data_len], '\0');
    memcpy(r->event[r->n], event, event_len);
    r->event[r->n][event_len] = '\0';
    gw_buf_append(&r->data[r->n], data, data_len);
    r->n++;
}

static const char *
rec_data(struct rec *r, size_t i)
{
    return r->data[i].data ? r->data[i].data : "";
}

/* A stream mixing LF, CRLF and CR endings, comments, multi-line data and a
 * field without a value. */
static const char mixed_stream[] = ": hello comment\n"
                                   "event: message_start\r\n"
                                   "data: {\"type\":\"message_start\"}\r\n"
                                   "\r\n"
                                   "event: ping\r"
                                   "data: a\r"
                                   "data:b\r"
                                   "data:  c\r"
                                   "\r"
                                   "id: 7\n"
                                   "retry: 100\n"
                                   "data\n"
                                   "\n"
                                   "event: no_data\n"
                                   "\n"
                                   ":comment only\n"
                                   "\n"
                                   "data: last\n"
                                   "event: final\n"
                                   "\n"
                                   "data: incomplete, never dispatched\n";

static void
check_mixed(struct rec *r)
{
    assert_int_equal(r->n, 4);
    assert_string_equal(r->event[0], "message_start");
    assert_string_equal(rec_data(r, 0), "{\"type\":\"message_start\"}");
    assert_string_equal(r->event[1], "ping");
    /* one leading space is stripped, a second one is kept */
    assert_string_equal(rec_data(r, 1), "a\nb\n c");
    assert_string_equal(r->event[2], "");
    assert_string_equal(rec_data(r, 2), "");
    assert_string_equal(r->event[3], "final");
    assert_string_equal(rec_data(r, 3), "last");
}

static void
test_whole(void **state)
{
    (void)state;
    struct edge_sse p;
    struct rec r;
    rec_init(&r);
    edge_sse_init(&p, 0);
    GW_PASS(edge_sse_feed(&p, mixed_stream, strlen(mixed_stream), rec_cb, &r));
    check_mixed(&r);
    edge_sse_fini(&p);
    rec_fini(&r);
}

static void
test_every_split(void **state)
{
    (void)state;
    size_t len = strlen(mixed_stream);
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += 7) {
            struct edge_sse p;
            struct rec r;
            rec_init(&r);
            edge_sse_init(&p, 4096);
            GW_PASS(edge_sse_feed(&p, mixed_stream, a, rec_cb, &r));
            GW_PASS(edge_sse_feed(&p, mixed_stream + a, b - a, rec_cb, &r));
            GW_PASS(edge_sse_feed(&p, mixed_stream + b, len - b, rec_cb, &r));
            check_mixed(&r);
            edge_sse_fini(&p);
            rec_fini(&r);
        }
    }
}

static void
test_byte_by_byte(void **state)
{
    (void)state;
    struct edge_sse p;
    struct rec r;
    rec_init(&r);
    edge_sse_init(&p, 4096);
    for (size_t i = 0; i < strlen(mixed_stream); i++)
        GW_PASS(edge_sse_feed(&p, mixed_stream + i, 1, rec_cb, &r));
    check_mixed(&r);
    edge_sse_fini(&p);
    rec_fini(&r);
}

static void
test_crlf_split_in_middle(void **state)
{
    (void)state;
    /* CR at the end of one feed, LF at the start of the next: one line end,
     * not two (two would dispatch an event too early). */
    struct edge_sse p;
    struct rec r;
    rec_init(&r);
    edge_sse_init(&p, 0);
    GW_PASS(edge_sse_feed(&p, "data: x\r", 8, rec_cb, &r));
    GW_PASS(edge_sse_feed(&p, "\ndata: y\r", 9, rec_cb, &r));
    assert_int_equal(r.n, 0);
    GW_PASS(edge_sse_feed(&p, "\n\r\n", 3, rec_cb, &r));
    assert_int_equal(r.n, 1);
    assert_string_equal(rec_data(&r, 0), "x\ny");
    edge_sse_fini(&p);
    rec_fini(&r);
}

static void
test_anthropic_sequence(void **state)
{
    (void)state;
    static const char s[] =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":"
        "{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
        "{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: ping\ndata: {\"type\": \"ping\"}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
        "{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},"
        "\"usage\":{\"output_tokens\":15}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    struct edge_sse p;
    struct rec r;
    rec_init(&r);
    edge_sse_init(&p, 0);
    GW_PASS(edge_sse_feed(&p, s, strlen(s), rec_cb, &r));
    assert_int_equal(r.n, 7);
    assert_string_equal(r.event[0], "message_start");
    assert_string_equal(r.event[2], "ping");
    assert_string_equal(r.event[5], "message_delta");
    assert_string_equal(r.event[6], "message_stop");
    assert_string_equal(rec_data(&r, 6), "{\"type\":\"message_stop\"}");
    edge_sse_fini(&p);
    rec_fini(&r);
}

static void
test_limit(void **state)
{
    (void)state;
    struct edge_sse p;
    struct rec r;
    char big[300];
    rec_init(&r);
    edge_sse_init(&p, 100);
    /* One small event first: delivered even though the same feed then
     * exceeds the limit. */
    memset(big, 'x', sizeof(big));
    struct gw_buf in = GW_BUF_INIT;
    gw_buf_append_str(&in, "data: ok\n\n");
    gw_buf_append_str(&in, "data: ");
    gw_buf_append(&in, big, 60);
    gw_buf_append_str(&in, "\ndata: ");
    gw_buf_append(&in, big, 60); /* 2 lines of 66 bytes: over 100 together */
    gw_buf_append_str(&in, "\n\n");
    GW_FAIL(edge_sse_feed(&p, in.data, in.len, rec_cb, &r), GW_EMSGSIZE);
    assert_int_equal(r.n, 1);
    assert_string_equal(rec_data(&r, 0), "ok");
    /* stopped for good */
    GW_FAIL(edge_sse_feed(&p, "data: y\n\n", 9, rec_cb, &r), GW_EMSGSIZE);
    assert_int_equal(r.n, 1);
    edge_sse_fini(&p);

    /* A single unterminated line over the limit, fed in small pieces. */
    edge_sse_init(&p, 100);
    gw_err rv = GW_OK;
    for (size_t i = 0; i < sizeof(big) && rv == GW_OK; i += 10)
        rv = edge_sse_feed(&p, big + i, 10, rec_cb, &r);
    GW_FAIL(rv, GW_EMSGSIZE);
    edge_sse_fini(&p);

    /* Exactly at the limit is fine; comments do not accumulate. */
    edge_sse_init(&p, 100);
    gw_buf_reset(&in);
    for (int i = 0; i < 50; i++)
        gw_buf_append_str(&in, ": keep-alive comment line\n");
    gw_buf_append_str(&in, "data: ");
    gw_buf_append(&in, big, 94); /* 100 bytes on the line */
    gw_buf_append_str(&in, "\n\n");
    size_t before = r.n;
    GW_PASS(edge_sse_feed(&p, in.data, in.len, rec_cb, &r));
    assert_int_equal(r.n, before + 1);
    assert_int_equal(r.data[before].len, 94);
    edge_sse_fini(&p);
    gw_buf_fini(&in);
    rec_fini(&r);
}

static void
test_reinit_after_fini(void **state)
{
    (void)state;
    struct edge_sse p;
    struct rec r;
    rec_init(&r);
    edge_sse_init(&p, 0);
    GW_PASS(edge_sse_feed(&p, "data: partial", 13, rec_cb, &r));
    edge_sse_fini(&p);
    edge_sse_init(&p, 0);
    GW_PASS(edge_sse_feed(&p, "data: fresh\n\n", 13, rec_cb, &r));
    assert_int_equal(r.n, 1);
    assert_string_equal(rec_data(&r, 0), "fresh");
    edge_sse_fini(&p);
    rec_fini(&r);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_crlf_split_in_middle),
        cmocka_unit_test(test_anthropic_sequence),
        cmocka_unit_test(test_limit),
        cmocka_unit_test(test_reinit_after_fini),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
