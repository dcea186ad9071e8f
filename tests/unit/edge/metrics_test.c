/* SPDX-License-Identifier: Apache-2.0 */
/* edge/metrics: exact sums over shards written by their own threads while
 * another thread scrapes, the bounded label sets (statuses by class,
 * accounts capped with "other"), the histogram's cumulative buckets, and a
 * line-by-line check of the Prometheus text format 0.0.4. */
#include "metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_test.h"

/* Value of the series whose name+labels are exactly `series`; -1 if absent. */
static long long
series_value(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtoll(p + n + 1, NULL, 10);
        p = eol != NULL ? eol + 1 : NULL;
    }
    return -1;
}

/* Sum of every series of a family whose labels contain `must` (may be ""). */
static long long
family_sum(const char *text, const char *family, const char *must)
{
    size_t n = strlen(family);
    const char *p = text;
    long long sum = 0;

    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (strncmp(p, family, n) == 0 && (p[n] == '{' || p[n] == ' ')) {
            const char *sp = memchr(p, ' ', len);
            char line[512];
            snprintf(line, sizeof(line), "%.*s", (int)len, p);
            if (sp != NULL && strstr(line, must) != NULL)
                sum += strtoll(sp + 1, NULL, 10);
        }
        p = eol != NULL ? eol + 1 : NULL;
    }
    return sum;
}

static int
is_name_char(char c, int first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Checks the exposition format: HELP and TYPE before a family's samples,
 * sample lines "name{k="v",...} number", no duplicate series. */
static void
check_format(const char *text)
{
    const char *p = text;
    char typed[64][96];
    size_t n_typed = 0;
    char **seen = NULL;
    size_t n_seen = 0;

    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = (size_t)(eol - p);
        char line[1024];
        assert_non_null(eol);
        assert_true(len < sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol + 1;
        if (strncmp(line, "# HELP ", 7) == 0)
            continue;
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[96], type[32];
            assert_int_equal(sscanf(line + 7, "%95s %31s", name, type), 2);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            assert_true(n_typed < 64);
            snprintf(typed[n_typed++], sizeof(typed[0]), "%s", name);
            continue;
        }
        assert_true(line[0] != '#');
        {
            size_t i = 0, j;
            char name[96];
            int found = 0;
            char *end;
            while (is_name_char(line[i], i == 0))
                i++;
            assert_true(i > 0 && i < sizeof(name));
            memcpy(name, line, i);
            name[i] = '\0';
            if (line[i] == '{') {
                i++;
                while (line[i] != '}') {
                    j = i;
                    while (is_name_char(line[i], i == j))
                        i++;
                    assert_true(i > j);
                    assert_int_equal(line[i], '=');
                    assert_int_equal(line[i + 1], '"');
                    i += 2;
                    while (line[i] != '"') {
                        assert_true(line[i] != '\0' && line[i] != '\\' && line[i] != '\n');
                        i++;
                    }
                    i++;
                    if (line[i] == ',')
                        i++;
                    else
                        assert_int_equal(line[i], '}');
                }
                i++;
            }
            assert_int_equal(line[i], ' ');
            (void)strtod(line + i + 1, &end);
            assert_true(end > line + i + 1 && *end == '\0');
            /* The family was typed before its first sample. */
            for (size_t k = 0; k < n_typed && !found; k++) {
                size_t tl = strlen(typed[k]);
                found = strcmp(name, typed[k]) == 0 ||
                        (strncmp(name, typed[k], tl) == 0 &&
                         (strcmp(name + tl, "_bucket") == 0 || strcmp(name + tl, "_sum") == 0 ||
                          strcmp(name + tl, "_count") == 0));
            }
            if (!found)
                fail_msg("sample before TYPE: %s", line);
            /* No series twice. */
            {
                char *series = gw_xstrndup(line, i);
                for (size_t k = 0; k < n_seen; k++) {
                    if (strcmp(seen[k], series) == 0)
                        fail_msg("duplicate series %s", series);
                }
                seen = gw_xrealloc(seen, (n_seen + 1) * sizeof(*seen));
                seen[n_seen++] = series;
            }
        }
    }
    for (size_t k = 0; k < n_seen; k++)
        free(seen[k]);
    free(seen);
}

static void
test_sums_labels_histogram(void **state)
{
    struct edge_metrics *m = edge_metrics_new(3);
    struct edge_metrics_shard *s0 = edge_metrics_shard(m, 0);
    struct edge_metrics_shard *s1 = edge_metrics_shard(m, 1);
    struct edge_metrics_tokens t = {100, 7, 3, 5};
    struct edge_metrics_gauges g = {.snapshot_version = 42,
                                    .usage_queue_depth = 3,
                                    .usage_records_dropped = 1,
                                    .cooldowns_active = 2,
                                    .failing_accounts = 1,
                                    .upstream_in_flight = 4,
                                    .in_flight_requests = 5,
                                    .workers = 3};
    struct gw_buf out = GW_BUF_INIT;
    const char *x;

    (void)state;
    assert_int_equal(edge_metrics_shard_count(m), 3);
    assert_null(edge_metrics_shard(m, 3));
    /* The same account on two shards is one series. */
    edge_metrics_request(s0, EDGE_DIALECT_ANTHROPIC, 200, 7, 3000, &t);     /* <= 5 ms */
    edge_metrics_request(s1, EDGE_DIALECT_ANTHROPIC, 200, 7, 7000, &t);     /* <= 10 ms */
    edge_metrics_request(s1, EDGE_DIALECT_ANTHROPIC, 200, 7, 10000, NULL);  /* le is inclusive */
    edge_metrics_request(s0, EDGE_DIALECT_OPENAI, 429, 9, 1500000, NULL);   /* <= 2.5 s */
    edge_metrics_request(s0, EDGE_DIALECT_GEMINI, 418, 9, 200000000, NULL); /* > 120 s */
    edge_metrics_request(s1, EDGE_METRICS_DIALECT_NONE, 404, 0, 100, NULL);
    edge_metrics_request(s1, 99, 42, 0, 100, NULL); /* nonsense dialect and status */
    edge_metrics_error(s0, EDGE_DIALECT_ANTHROPIC, GW_EAUTH);
    edge_metrics_error(s1, EDGE_DIALECT_ANTHROPIC, GW_EAUTH);
    edge_metrics_error(s1, EDGE_DIALECT_OPENAI, GW_ENOACCOUNT);
    edge_metrics_error(s1, EDGE_DIALECT_OPENAI, (gw_err)1000); /* out of range: internal */
    edge_metrics_upstream_attempt(s0, 7, EDGE_ROUTE_OK);
    edge_metrics_upstream_attempt(s1, 7, EDGE_ROUTE_OK);
    edge_metrics_upstream_attempt(s1, 9, EDGE_ROUTE_429);
    edge_metrics_upstream_attempt(s1, 9, EDGE_ROUTE_CONNECT_FAIL);
    atomic_fetch_add(edge_metrics_conn_gauge(s0), 2);
    atomic_fetch_add(edge_metrics_conn_gauge(s1), 1);

    edge_metrics_render(m, &g, &out);
    x = out.data;
    check_format(x);
    assert_int_equal(series_value(x, "aicarpool_edge_requests_total{dialect=\"anthropic\","
                                     "status=\"200\",account=\"7\"}"),
                     3);
    assert_int_equal(series_value(x, "aicarpool_edge_requests_total{dialect=\"openai\","
                                     "status=\"429\",account=\"9\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_requests_total{dialect=\"gemini\","
                                     "status=\"4xx\",account=\"9\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_requests_total{dialect=\"none\","
                                     "status=\"404\",account=\"none\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_requests_total{dialect=\"none\","
                                     "status=\"other\",account=\"none\"}"),
                     1);
    assert_int_equal(family_sum(x, "aicarpool_edge_requests_total", ""), 7);
    assert_int_equal(
        series_value(x, "aicarpool_edge_errors_total{dialect=\"anthropic\",reason=\"auth\"}"), 2);
    assert_int_equal(
        series_value(x, "aicarpool_edge_errors_total{dialect=\"openai\",reason=\"noaccount\"}"), 1);
    assert_int_equal(
        series_value(x, "aicarpool_edge_errors_total{dialect=\"openai\",reason=\"internal\"}"), 1);
    /* Histogram: cumulative, +Inf == count. */
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"anthropic\",le=\"0.005\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"anthropic\",le=\"0.01\"}"),
                     3);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"anthropic\",le=\"120\"}"),
                     3);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"anthropic\",le=\"+Inf\"}"),
                     3);
    assert_int_equal(
        series_value(x, "aicarpool_edge_request_duration_seconds_count{dialect=\"anthropic\"}"), 3);
    assert_non_null(
        strstr(x, "aicarpool_edge_request_duration_seconds_sum{dialect=\"anthropic\"} 0.020000\n"));
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"openai\",le=\"1\"}"),
                     0);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"openai\",le=\"2.5\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"gemini\",le=\"120\"}"),
                     0);
    assert_int_equal(series_value(x, "aicarpool_edge_request_duration_seconds_bucket{dialect="
                                     "\"gemini\",le=\"+Inf\"}"),
                     1);
    assert_non_null(
        strstr(x, "aicarpool_edge_request_duration_seconds_sum{dialect=\"gemini\"} 200.000000\n"));
    assert_int_equal(series_value(x, "aicarpool_edge_tokens_total{dialect=\"anthropic\","
                                     "kind=\"input\"}"),
                     200);
    assert_int_equal(series_value(x, "aicarpool_edge_tokens_total{dialect=\"anthropic\","
                                     "kind=\"output\"}"),
                     14);
    assert_int_equal(series_value(x, "aicarpool_edge_tokens_total{dialect=\"anthropic\","
                                     "kind=\"cache_read\"}"),
                     6);
    assert_int_equal(series_value(x, "aicarpool_edge_tokens_total{dialect=\"anthropic\","
                                     "kind=\"cache_write\"}"),
                     10);
    assert_int_equal(
        series_value(x, "aicarpool_edge_upstream_attempts_total{account=\"7\",outcome=\"ok\"}"), 2);
    assert_int_equal(
        series_value(x, "aicarpool_edge_upstream_attempts_total{account=\"9\",outcome=\"429\"}"),
        1);
    assert_int_equal(series_value(x, "aicarpool_edge_upstream_attempts_total{account=\"9\","
                                     "outcome=\"connect_fail\"}"),
                     1);
    assert_int_equal(series_value(x, "aicarpool_edge_open_connections"), 3);
    assert_int_equal(series_value(x, "aicarpool_edge_snapshot_version"), 42);
    assert_int_equal(series_value(x, "aicarpool_edge_usage_queue_depth"), 3);
    assert_int_equal(series_value(x, "aicarpool_edge_usage_records_dropped_total"), 1);
    assert_int_equal(series_value(x, "aicarpool_edge_cooldowns_active"), 2);
    assert_int_equal(series_value(x, "aicarpool_edge_failing_accounts"), 1);
    assert_int_equal(series_value(x, "aicarpool_edge_upstream_in_flight"), 4);
    assert_int_equal(series_value(x, "aicarpool_edge_in_flight_requests"), 5);
    assert_int_equal(series_value(x, "aicarpool_edge_workers"), 3);
    assert_non_null(strstr(x, "# TYPE aicarpool_edge_request_duration_seconds histogram\n"));
    assert_non_null(strstr(x, "# TYPE aicarpool_edge_requests_total counter\n"));

    /* Without gauges: only the connection gauge. */
    gw_buf_reset(&out);
    edge_metrics_render(m, NULL, &out);
    check_format(out.data);
    assert_int_equal(series_value(out.data, "aicarpool_edge_open_connections"), 3);
    assert_int_equal(series_value(out.data, "aicarpool_edge_snapshot_version"), -1);
    gw_buf_fini(&out);
    edge_metrics_free(m);
    edge_metrics_free(NULL);
}

static void
test_account_cap(void **state)
{
    struct edge_metrics *m = edge_metrics_new(2);
    struct edge_metrics_shard *s0 = edge_metrics_shard(m, 0);
    struct edge_metrics_shard *s1 = edge_metrics_shard(m, 1);
    struct gw_buf out = GW_BUF_INIT;
    char series[160];
    uint64_t id;
    size_t own = 0;

    (void)state;
    /* 200 accounts, each twice: once on each shard, in different orders. */
    for (id = 1; id <= 200; id++)
        edge_metrics_request(s0, EDGE_DIALECT_ANTHROPIC, 200, id * 1000, 1000, NULL);
    for (id = 200; id >= 1; id--)
        edge_metrics_request(s1, EDGE_DIALECT_ANTHROPIC, 200, id * 1000, 1000, NULL);
    edge_metrics_render(m, NULL, &out);
    check_format(out.data);
    for (id = 1; id <= 200; id++) {
        long long v;
        snprintf(series, sizeof(series),
                 "aicarpool_edge_requests_total{dialect=\"anthropic\",status=\"200\","
                 "account=\"%llu\"}",
                 (unsigned long long)(id * 1000));
        v = series_value(out.data, series);
        if (v >= 0) {
            assert_int_equal(v, 2);
            own++;
        }
    }
    assert_int_equal(own, EDGE_METRICS_MAX_ACCOUNTS);
    /* The first ones seen got the slots. */
    assert_int_equal(series_value(out.data, "aicarpool_edge_requests_total{dialect=\"anthropic\","
                                            "status=\"200\",account=\"1000\"}"),
                     2);
    assert_int_equal(series_value(out.data, "aicarpool_edge_requests_total{dialect=\"anthropic\","
                                            "status=\"200\",account=\"other\"}"),
                     2 * (200 - EDGE_METRICS_MAX_ACCOUNTS));
    assert_int_equal(family_sum(out.data, "aicarpool_edge_requests_total", ""), 400);
    gw_buf_fini(&out);
    edge_metrics_free(m);
}

#define WRITERS 4
#define PER_WRITER 200000

struct writer {
    struct edge_metrics_shard *shard;
    int index;
};

static atomic_int writers_done;

static void *
writer_main(void *arg)
{
    struct writer *w = arg;
    struct edge_metrics_tokens t = {1, 2, 0, 0};

    for (int i = 0; i < PER_WRITER; i++) {
        uint64_t account = (uint64_t)(i % 5) + 1;
        edge_metrics_request(w->shard, (unsigned)(i % 3), i % 7 == 0 ? 502 : 200, account,
                             (uint64_t)(i % 1000) * 100, &t);
        edge_metrics_upstream_attempt(w->shard, account, EDGE_ROUTE_OK);
        if (i % 7 == 0)
            edge_metrics_error(w->shard, (unsigned)(i % 3), GW_EUPSTREAM);
    }
    atomic_fetch_add(&writers_done, 1);
    return NULL;
}

/* Workers record on their own shards while the main thread scrapes: every
 * scrape is well-formed and never exceeds the final totals; the last one
 * (after the writers joined) is exact. */
static void
test_concurrent_scrape(void **state)
{
    struct edge_metrics *m = edge_metrics_new(WRITERS);
    struct writer w[WRITERS];
    pthread_t th[WRITERS];
    struct gw_buf out = GW_BUF_INIT;
    long long total = (long long)WRITERS * PER_WRITER;
    int scrapes = 0;

    (void)state;
    atomic_store(&writers_done, 0);
    for (int i = 0; i < WRITERS; i++) {
        w[i].shard = edge_metrics_shard(m, (size_t)i);
        w[i].index = i;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    while (atomic_load(&writers_done) < WRITERS || scrapes == 0) {
        long long seen;
        gw_buf_reset(&out);
        edge_metrics_render(m, NULL, &out);
        check_format(out.data);
        seen = family_sum(out.data, "aicarpool_edge_requests_total", "");
        assert_true(seen >= 0 && seen <= total);
        scrapes++;
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    gw_buf_reset(&out);
    edge_metrics_render(m, NULL, &out);
    check_format(out.data);
    assert_int_equal(family_sum(out.data, "aicarpool_edge_requests_total", ""), total);
    assert_int_equal(family_sum(out.data, "aicarpool_edge_upstream_attempts_total", ""), total);
    assert_int_equal(family_sum(out.data, "aicarpool_edge_request_duration_seconds_count", ""),
                     total);
    assert_int_equal(family_sum(out.data, "aicarpool_edge_tokens_total", "kind=\"output\""),
                     2 * total);
    {
        long long errs = 0, s502 = 0;
        errs = family_sum(out.data, "aicarpool_edge_errors_total", "reason=\"upstream\"");
        s502 = family_sum(out.data, "aicarpool_edge_requests_total", "status=\"502\"");
        assert_int_equal(errs, (long long)WRITERS * ((PER_WRITER + 6) / 7));
        assert_int_equal(s502, errs);
    }
    /* Five accounts, each its own series, nothing in "other". */
    assert_int_equal(family_sum(out.data, "aicarpool_edge_requests_total", "account=\"other\""), 0);
    assert_int_equal(family_sum(out.data, "aicarpool_edge_requests_total", "account=\"3\""),
                     total / 5);
    gw_buf_fini(&out);
    edge_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums_labels_histogram),
        cmocka_unit_test(test_account_cap),
        cmocka_unit_test(test_concurrent_scrape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
