/* accept_discovered_peers (off by default): what newer reference servers always do, peering
 * with every server the discovery lists (upstream-mesh.md §1). The first poll waits 10 s, as
 * upstream's does, so that our own entry is registered first; then one every
 * discovery_interval_ms. Discovered peers are stored (source "discovered") and kept while the
 * option stays on, also after they leave the discovery. */
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"
#include "mesh_internal.h"

#define FIRST_POLL_MS 10000

static void on_disc_timer(uv_timer_t *t);

static void add_discovered(struct mesh *m, const dmsg_entry *e)
{
    struct store_peer sp;
    char hex[DMSG_PK_HEX_LEN + 1];
    int64_t now = mesh_now_ms();

    if (!e->has_server || e->server.address[0] == '\0' || dmsg_pk_is_null(&e->static_pk) ||
        dmsg_pk_equal(&e->static_pk, &m->identity->pk) || mesh_find_peer(m, &e->static_pk) ||
        m->n_peers >= MESH_MAX_PEERS || strlen(e->server.address) > CONFIG_ADDR_MAX)
        return;
    dmsg_pk_to_hex(&e->static_pk, hex);
    memset(&sp, 0, sizeof sp);
    sp.public_key = hex;
    sp.address = e->server.address;
    sp.source = STORE_PEER_DISCOVERED;
    sp.added_at = now / 1000;
    if (store_peer_add(m->store, &sp) != 0) {
        log_warn(m->log, "discovered peer not stored", "peer=%s address=%s", hex,
                 e->server.address);
        return;
    }
    if (mesh_peer_insert(m, &e->static_pk, e->server.address, STORE_PEER_DISCOVERED, now, NULL,
                         NULL) == 0)
        log_info(m->log, "peer discovered", "peer=%s address=%s", hex, e->server.address);
}

static void on_all_servers(void *ctx, const dmsg_disc_reply *reply, dmsg_entry_iter *entries)
{
    struct mesh *m = ctx;
    dmsg_entry e;

    m->disc_req = NULL;
    if (reply->err != 0) {
        log_debug(m->log, "discovery poll for peers failed", "error=\"%s\"",
                  dmsg_strerror(reply->err));
    } else {
        while (!m->closing && m->accept_discovered && dmsg_entry_iter_next(entries, &e) == 1)
            add_discovered(m, &e);
    }
    if (m->disc_timer_open && m->accept_discovered && !m->closing)
        uv_timer_start(&m->disc_timer, on_disc_timer, m->opt.discovery_interval_ms, 0);
}

static void on_disc_timer(uv_timer_t *t)
{
    struct mesh *m = t->data;
    int err = 0;

    if (m->closing || !m->accept_discovered || m->disc_req != NULL)
        return;
    m->disc_req = dmsg_disc_all_servers(&m->disc, on_all_servers, m, &err);
    if (m->disc_req == NULL)
        uv_timer_start(&m->disc_timer, on_disc_timer, m->opt.discovery_interval_ms, 0);
}

int mesh_discovered_start(struct mesh *m)
{
    int rc;

    if (m->closing)
        return DMSG_ESTATE;
    if (!m->http_open) {
        rc = dmsg_http_init(&m->http, m->loop);
        if (rc != 0)
            return rc;
        m->http.data = m;
        m->http_open = true;
        rc = dmsg_disc_client_init(&m->disc, &m->http, m->discovery_url);
        if (rc != 0) {
            log_warn(m->log, "accept_discovered_peers: bad discovery URL", "url=%s",
                     m->discovery_url);
            return rc;
        }
    }
    if (!m->disc_timer_open) {
        if (uv_timer_init(m->loop, &m->disc_timer) != 0)
            return DMSG_EIO;
        m->disc_timer.data = m;
        m->disc_timer_open = true;
    }
    uv_timer_start(&m->disc_timer, on_disc_timer, FIRST_POLL_MS, 0);
    return 0;
}

static void on_http_closed(dmsg_http *http)
{
    struct mesh *m = http->data;

    m->http_open = false;
    mesh_reap(m);
}

static void on_disc_timer_closed(uv_handle_t *h)
{
    struct mesh *m = h->data;

    m->disc_timer_open = false;
    mesh_reap(m);
}

void mesh_discovered_stop(struct mesh *m)
{
    if (m->disc_req != NULL) {
        dmsg_disc_cancel(m->disc_req);
        m->disc_req = NULL;
    }
    if (m->disc_timer_open)
        uv_timer_stop(&m->disc_timer);
    if (!m->closing)
        return;
    /* Handles go only with the mesh: the option may come back on at the next reload. */
    if (m->disc_timer_open && !uv_is_closing((uv_handle_t *)&m->disc_timer))
        uv_close((uv_handle_t *)&m->disc_timer, on_disc_timer_closed);
    if (m->http_open && !m->http.closing)
        dmsg_http_close(&m->http, on_http_closed);
}

bool mesh_discovered_closed(const struct mesh *m)
{
    return !m->disc_timer_open && !m->http_open;
}
