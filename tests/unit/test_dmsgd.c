/* The daemon's lifecycle (daemon/dmsgd.c): start on loopback ports with a state directory of
 * its own, register in the embedded discovery, serve a session, and drain and stop cleanly
 * with every handle closed. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dmsg/error.h"
#include "dmsg/session.h"
#include "dmsgd.h"
#include "keyfile.h"
#include "server.h"

static char state_dir[64];

static void setup(void)
{
    cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
    snprintf(state_dir, sizeof state_dir, "/tmp/dmsgd-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(state_dir));
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    nftw(state_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
}

TestSuite(dmsgd, .init = setup, .fini = teardown, .timeout = 60);

static void test_config(struct dmsgd_config *cfg)
{
    config_defaults(cfg);
    snprintf(cfg->local_address, sizeof cfg->local_address, "127.0.0.1:0");
    snprintf(cfg->embedded_discovery_address, sizeof cfg->embedded_discovery_address,
             "127.0.0.1:0");
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s", state_dir);
    cfg->log_level = LOG_LEVEL_ERROR;
    cfg->limits.shutdown_grace_ms = 300;
}

struct client {
    dmsg_identity id;
    dmsg_session *s;
    bool ready, closed;
};

static int on_ready(dmsg_session *s, void *ctx)
{
    struct client *c = ctx;

    (void)s;
    c->ready = true;
    return 0;
}

static void on_close(dmsg_session *s, int err, void *ctx)
{
    struct client *c = ctx;

    (void)s;
    (void)err;
    c->closed = true;
}

static const dmsg_session_callbacks client_cb = {on_ready, NULL, on_close};

static void run_until_ready(struct dmsgd *d, struct client *c)
{
    for (int i = 0; i < 500 && !c->ready && !c->closed; i++)
        uv_run(&d->loop, UV_RUN_NOWAIT), usleep(2000);
}

Test(dmsgd, starts_serves_and_stops_cleanly)
{
    static struct dmsgd d;
    struct dmsgd_config cfg;
    struct client c;
    dmsg_session_config scfg;
    struct sockaddr_in addr;
    char err[512] = "";

    test_config(&cfg);
    cr_assert_eq(dmsgd_init(&d, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert_eq(dmsgd_start(&d, err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.phase, DMSGD_RUNNING);
    cr_assert_not_null(d.discovery, "no discovery configured: the embedded one serves");
    cr_assert(d.registration_active);

    memset(&c, 0, sizeof c);
    cr_assert_eq(dmsg_keypair_generate(&c.id.pk, &c.id.sk, &d.identity.rng), 0);
    c.id.rng = dmsg_rng_system();
    dmsg_session_config_default(&scfg);
    uv_ip4_addr("127.0.0.1", server_port(d.server), &addr);
    cr_assert_eq(dmsg_session_connect(&d.loop, (const struct sockaddr *)&addr, &c.id,
                                      &d.identity.pk, &scfg, &client_cb, &c, &c.s), 0);
    run_until_ready(&d, &c);
    cr_assert(c.ready);
    for (int i = 0; i < 100 && server_session_count(d.server) == 0; i++)
        uv_run(&d.loop, UV_RUN_NOWAIT), usleep(1000);
    cr_assert_eq(server_session_count(d.server), 1);

    dmsgd_stop(&d);
    cr_assert_eq(dmsgd_run(&d), 0);
    cr_assert(c.closed, "the drain closes every session");
    cr_assert_eq(d.phase, DMSGD_STOPPED);
    cr_assert_null(d.server);
    cr_assert_null(d.relay);
    cr_assert_null(d.discovery);
    cr_assert_not(d.registration_active);
    dmsgd_free(&d);
}

Test(dmsgd, keys_are_kept_in_the_state_directory_across_restarts)
{
    static struct dmsgd d1, d2;
    struct dmsgd_config cfg;
    char err[512] = "";
    char path[128];
    struct stat st;

    test_config(&cfg);
    cr_assert_eq(dmsgd_init(&d1, &cfg, "", err, sizeof err), 0, "%s", err);
    dmsgd_free(&d1);
    snprintf(path, sizeof path, "%s/%s", state_dir, KEYFILE_NAME);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(dmsgd_init(&d2, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert(dmsg_pk_equal(&d1.identity.pk, &d2.identity.pk));
    cr_assert_str_eq(d1.public_key_hex, d2.public_key_hex);
    dmsgd_free(&d2);
}

Test(dmsgd, one_daemon_per_state_directory)
{
    static struct dmsgd d1, d2;
    struct dmsgd_config cfg;
    char err[512] = "";

    test_config(&cfg);
    cr_assert_eq(dmsgd_init(&d1, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert_eq(dmsgd_init(&d2, &cfg, "", err, sizeof err), DMSG_EEXIST);
    cr_assert(strstr(err, state_dir) != NULL, "%s", err);
    dmsgd_free(&d1);
    cr_assert_eq(dmsgd_init(&d2, &cfg, "", err, sizeof err), 0, "released at exit: %s", err);
    dmsgd_free(&d2);
}

Test(dmsgd, a_busy_port_is_reported)
{
    static struct dmsgd d1, d2;
    struct dmsgd_config cfg;
    char err[512] = "";
    char sub[128];

    test_config(&cfg);
    cr_assert_eq(dmsgd_init(&d1, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert_eq(dmsgd_start(&d1, err, sizeof err), 0, "%s", err);
    snprintf(sub, sizeof sub, "%s/second", state_dir);
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s", sub);
    snprintf(cfg.local_address, sizeof cfg.local_address, "127.0.0.1:%u",
             (unsigned)server_port(d1.server));
    cr_assert_eq(dmsgd_init(&d2, &cfg, "", err, sizeof err), 0, "%s", err);
    cr_assert_eq(dmsgd_start(&d2, err, sizeof err), DMSG_EEXIST);
    cr_assert(strstr(err, cfg.local_address) != NULL, "%s", err);
    dmsgd_free(&d2);
    dmsgd_stop(&d1);
    cr_assert_eq(dmsgd_run(&d1), 0);
    dmsgd_free(&d1);
}

Test(dmsgd, limits_map_onto_the_services)
{
    struct dmsgd_config cfg;
    struct server_limits sl;
    struct relay_limits rl;

    config_defaults(&cfg);
    cfg.limits.handshake_timeout_ms = 1234;
    cfg.limits.max_streams_per_session = 77;
    cfg.limits.keepalive_interval_ms = 4321;
    cfg.limits.accept_proxy_header = true;
    cfg.limits.response_timeout_ms = 999;
    cfg.limits.stream_requests_burst = 555;
    dmsgd_server_limits(&cfg, 42, &sl);
    cr_assert_eq(sl.max_sessions, 42);
    cr_assert_eq(sl.session.handshake_timeout_ms, 1234);
    cr_assert_eq(sl.session.yamux.max_streams, 77);
    cr_assert_eq(sl.session.yamux.keepalive_interval_ms, 4321);
    cr_assert(sl.session.accept_proxy_header);
    cr_assert_eq(sl.max_pending_handshakes, cfg.limits.max_pending_handshakes);
    dmsgd_relay_limits(&cfg, &rl);
    cr_assert_eq(rl.response_timeout_ms, 999);
    cr_assert_eq(rl.requests_burst, 555);
    cr_assert_eq(rl.max_object_bytes, cfg.limits.max_object_bytes);
}
