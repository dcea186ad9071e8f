/* SPDX-License-Identifier: Apache-2.0 */
/* Line-oriented logger to stderr. Each line is formatted into a stack buffer
 * and written with one write(2), so concurrent threads never interleave. */
#include "gw_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum gw_log_level gw_log_threshold = GW_LOG_INFO;
static const char *log_component = "aicarpool";

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int
gw_log_set_level(const char *name)
{
    for (int i = 0; i <= GW_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            gw_log_threshold = (enum gw_log_level)i;
            return 0;
        }
    }
    return -1;
}

void
gw_log_set_component(const char *component)
{
    log_component = component;
}

void
gw_log_write(enum gw_log_level level, const char *msgid, const char *reqid, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int rc;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    rc = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s %s%s%s ", ts.tv_nsec / 1000000L,
                  log_component, level_names[level <= GW_LOG_DEBUG ? level : GW_LOG_DEBUG], msgid,
                  reqid ? " req=" : "", reqid ? reqid : "");
    if (rc > 0)
        n += (size_t)rc < sizeof(line) - n ? (size_t)rc : sizeof(line) - n - 1;

    va_list ap;
    va_start(ap, fmt);
    rc = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (rc > 0)
        n += (size_t)rc < sizeof(line) - n ? (size_t)rc : sizeof(line) - n - 1;
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void
gw_log_mask(const char *secret, char *out, size_t out_size)
{
    size_t len = secret ? strlen(secret) : 0;

    if (out_size == 0)
        return;
    if (len <= 12) {
        snprintf(out, out_size, "***");
        return;
    }
    snprintf(out, out_size, "%.8s...", secret);
}
