/* SPDX-License-Identifier: Apache-2.0 */
/* aicarpool-edge: reads the configuration (flags, AICARPOOL_* environment,
 * --config file), starts the edge and runs until SIGINT or SIGTERM, then
 * stops it cleanly (requests aborted, pending usage flushed to the hub). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "edge.h"
#include "edge_config.h"
#include "gw_log.h"

extern char **environ;

int
main(int argc, char **argv)
{
    struct edge_config cfg;
    struct gw_buf errors = GW_BUF_INIT;
    enum gw_cfg_action action = GW_CFG_RUN;
    struct edge *e = NULL;
    sigset_t set;
    int sig = 0, status = 1;
    gw_err rv;

    gw_log_set_component("edge");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("aicarpool-edge %s\n", EDGE_VERSION);
            return 0;
        }
    }
    memset(&cfg, 0, sizeof(cfg));
    rv = gw_config_load(edge_config_table, &cfg, argc, argv, environ, stdout, &errors, &action);
    if (rv != GW_OK) {
        fprintf(stderr, "aicarpool-edge: configuration error:\n%s", errors.data ? errors.data : "");
        status = 2;
        goto out;
    }
    if (action != GW_CFG_RUN) {
        status = 0;
        goto out;
    }
    if (gw_log_set_level(cfg.log_level) != 0) {
        fprintf(stderr, "aicarpool-edge: invalid log-level '%s' (error, warn, info, debug)\n",
                cfg.log_level);
        status = 2;
        goto out;
    }

    /* Block the stop signals in every thread (they inherit the mask) and
     * take them synchronously here; SIGPIPE is never useful to us. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    rv = edge_new(&cfg, &e);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-START", "invalid configuration: %s", gw_strerror(rv));
        goto out;
    }
    gw_buf_reset(&errors);
    rv = edge_start(e, &errors);
    if (rv != GW_OK) {
        gw_log(GW_LOG_ERROR, "EDGE-START", "cannot start: %s",
               errors.data ? errors.data : gw_strerror(rv));
        goto out;
    }
    if (sigwait(&set, &sig) != 0)
        sig = 0;
    gw_log(GW_LOG_INFO, "EDGE-STOP", "signal %d received, stopping", sig);
    edge_stop(e);
    status = 0;
out:
    edge_free(e);
    edge_config_free(&cfg);
    gw_buf_fini(&errors);
    return status;
}
