/* Outbound peer links: resolve, connect under our own key, announce, serve the peer's streams,
 * back off and redial; see mesh.h. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "mesh_internal.h"
#include "netaddr.h"
#include "server.h"

static void on_timer_closed(uv_handle_t *h)
{
    struct mesh_peer *p = h->data;

    p->timer_closed = true;
    mesh_reap(p->mesh);
}

bool mesh_link_released(const struct mesh_peer *p)
{
    return p->timer_closed && !p->resolving && p->link == NULL;
}

dmsg_session *mesh_peer_session(const struct mesh_peer *p)
{
    const struct mesh *m = p->mesh;

    if (p->removed)
        return NULL;
    if (p->link != NULL && p->link_ready && dmsg_session_get_state(p->link) == DMSG_SESSION_OPEN)
        return p->link;
    return m->server != NULL ? server_find_session(m->server, &p->pk) : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * State and backoff */

static void set_state(struct mesh_peer *p, enum mesh_link_state state, const char *error)
{
    enum mesh_link_state prev = p->state;

    p->state = state;
    p->since_ms = mesh_now_ms();
    if (state != MESH_LINK_DOWN)
        p->next_attempt_ms = 0;
    mesh_emit(p->mesh, MESH_EVENT_LINK_STATE, p, prev, error);
}

static void note_error(struct mesh_peer *p, int err, const char *what)
{
    p->last_error = err != 0 ? err : DMSG_ECLOSED;
    snprintf(p->last_error_text, sizeof p->last_error_text, "%s: %s", what,
             dmsg_strerror(p->last_error));
    p->last_error_ms = mesh_now_ms();
}

/* base scaled by a uniform factor in [1 - jitter, 1 + jitter]: peers that failed together do
 * not redial together. */
static uint64_t jittered(const struct mesh *m, uint64_t base)
{
    uint32_t r = 0;
    double f;

    dmsg_rng_fill(&m->identity->rng, (uint8_t *)&r, sizeof r);
    f = 1.0 - m->opt.backoff_jitter + 2.0 * m->opt.backoff_jitter * ((double)r / 4294967295.0);
    return (uint64_t)((double)base * f);
}

static void on_redial_timer(uv_timer_t *t)
{
    struct mesh_peer *p = t->data;

    if (!p->removed && !p->mesh->closing && p->link == NULL && !p->resolving)
        mesh_link_start(p);
}

/* The link failed or ended: wait, then dial again. A link that lived long enough counts as
 * healthy: its successor waits the base delay; otherwise every failure grows the wait. */
static void schedule_redial(struct mesh_peer *p, bool healthy)
{
    struct mesh *m = p->mesh;
    uint64_t wait;

    if (p->removed || m->closing)
        return;
    if (healthy || p->backoff_ms == 0)
        p->backoff_ms = m->opt.backoff_initial_ms;
    wait = p->redial_now ? 0 : jittered(m, p->backoff_ms);
    p->redial_now = false;
    if (!healthy) {
        double next = (double)p->backoff_ms * m->opt.backoff_factor;
        p->backoff_ms = next > m->opt.backoff_max_ms ? m->opt.backoff_max_ms : (uint64_t)next;
    }
    p->next_attempt_ms = mesh_now_ms() + (int64_t)wait;
    uv_timer_start(&p->timer, on_redial_timer, wait, 0);
    set_state(p, MESH_LINK_DOWN, p->last_error_text[0] ? p->last_error_text : NULL);
}

/* A try that never came up. */
static void attempt_failed(struct mesh_peer *p, int err, const char *what)
{
    char quoted[MESH_ERROR_MAX + 8];

    p->attempts++;
    note_error(p, err, what);
    /* The first failure is news to the operator; the retries that follow are not. */
    log_event(p->mesh->log, p->attempts == 1 ? LOG_LEVEL_WARN : LOG_LEVEL_DEBUG,
              "peer link attempt failed", "peer=%s address=%s error=%s attempts=%u", p->pk_hex,
              p->address, log_quote(p->last_error_text, quoted, sizeof quoted), p->attempts);
    schedule_redial(p, false);
}

/* ---------------------------------------------------------------------------------------------
 * Our PeerAnnounce */


static void announce_done(struct mesh_peer *p, enum mesh_announce_state outcome)
{
    dmsg_stream *st = p->ann_stream;

    p->announce = outcome;
    p->ann_stream = NULL;
    if (p->link != NULL && p->state == MESH_LINK_UP)
        uv_timer_stop(&p->timer);
    if (st != NULL) {
        dmsg_stream_orphan(st);
        if (outcome == MESH_ANNOUNCE_ACCEPTED || outcome == MESH_ANNOUNCE_REFUSED)
            dmsg_stream_close(st);
        else
            dmsg_stream_reset(st);
    }
    if (outcome == MESH_ANNOUNCE_REFUSED)
        log_warn(p->mesh->log, "peer refused our peer announcement", "peer=%s address=%s",
                 p->pk_hex, p->address);
    else
        log_debug(p->mesh->log, "peer announcement", "peer=%s outcome=%s", p->pk_hex,
                  mesh_announce_state_name(outcome));
}

static void on_announce_answer(struct mesh_peer *p)
{
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    bool accepted = false;

    if (dmsg_session_open_object(p->link, p->ann_frame, p->ann_frame_len, &obj, &obj_len) != 0 ||
        mesh_announce_check_answer(obj, obj_len, p->ann_obj, p->ann_len, &p->pk, &accepted) != 0) {
        announce_done(p, MESH_ANNOUNCE_UNANSWERED);
        return;
    }
    announce_done(p, accepted ? MESH_ANNOUNCE_ACCEPTED : MESH_ANNOUNCE_REFUSED);
}

static void on_ann_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    struct mesh_peer *p = ctx;
    size_t used = 0, take;

    dmsg_stream_consume(st, len);
    while (p->ann_prefix_have < 2 && used < len)
        p->ann_prefix[p->ann_prefix_have++] = data[used++];
    if (p->ann_prefix_have < 2)
        return;
    if (p->ann_frame_len == 0) {
        p->ann_frame_len = ((size_t)p->ann_prefix[0] << 8) | p->ann_prefix[1];
        if (p->ann_frame_len == 0 || p->ann_frame_len > sizeof p->ann_frame) {
            announce_done(p, MESH_ANNOUNCE_UNANSWERED);
            return;
        }
    }
    take = p->ann_frame_len - p->ann_frame_have;
    if (take > len - used)
        take = len - used;
    memcpy(p->ann_frame + p->ann_frame_have, data + used, take);
    p->ann_frame_have += take;
    if (p->ann_frame_have == p->ann_frame_len)
        on_announce_answer(p);
}

static void on_ann_fin(dmsg_stream *st, void *ctx)
{
    struct mesh_peer *p = ctx;

    (void)st;
    announce_done(p, MESH_ANNOUNCE_UNANSWERED);
}

static void on_ann_close(dmsg_stream *st, int err, void *ctx)
{
    struct mesh_peer *p = ctx;

    (void)err;
    if (p->ann_stream == st) {
        p->ann_stream = NULL;
        p->announce = MESH_ANNOUNCE_UNANSWERED;
    }
}

static const dmsg_stream_callbacks ann_callbacks = {
    .on_data = on_ann_data,
    .on_fin = on_ann_fin,
    .on_writable = NULL,
    .on_close = on_ann_close,
};

static void on_announce_timeout(uv_timer_t *t)
{
    struct mesh_peer *p = t->data;

    if (p->ann_stream != NULL)
        announce_done(p, MESH_ANNOUNCE_UNANSWERED);
}

/* What newer reference servers expect first on a peer link they did not dial; harmless to
 * dmsgd peers, which answer it too. */
static void send_announce(struct mesh_peer *p)
{
    struct mesh *m = p->mesh;
    uint8_t sealed[MESH_ANNOUNCE_MAX + DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_OVERHEAD];
    size_t sealed_len = 0;
    dmsg_stream *st = NULL;
    int64_t now_ns = mesh_now_ms() * 1000000;

    if (p->announce_skip) {
        p->announce = MESH_ANNOUNCE_SKIPPED;
        return;
    }
    p->ann_prefix_have = 0;
    p->ann_frame_len = p->ann_frame_have = 0;
    if (mesh_announce_make(&m->identity->pk, &m->identity->sk, now_ns, p->ann_obj,
                           sizeof p->ann_obj, &p->ann_len) != 0 ||
        dmsg_session_open_stream(p->link, &ann_callbacks, p, &st) != 0) {
        p->announce = MESH_ANNOUNCE_UNANSWERED;
        return;
    }
    if (dmsg_session_seal_object(p->link, p->ann_obj, p->ann_len, sealed, sizeof sealed,
                                 &sealed_len) != 0 ||
        dmsg_stream_write(st, sealed, sealed_len, NULL, NULL) != 0) {
        dmsg_stream_orphan(st);
        dmsg_stream_reset(st);
        p->announce = MESH_ANNOUNCE_UNANSWERED;
        return;
    }
    p->ann_stream = st;
    p->announce = MESH_ANNOUNCE_PENDING;
    uv_timer_start(&p->timer, on_announce_timeout, m->opt.announce_timeout_ms, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Session callbacks */

static int on_link_ready(dmsg_session *s, void *ctx)
{
    struct mesh_peer *p = ctx;
    struct mesh *m = p->mesh;

    if (p->removed || m->closing)
        return DMSG_ECLOSED;
    p->link_ready = true;
    p->up_at_ms = uv_now(m->loop);
    netaddr_format(dmsg_session_remote_addr(s), p->remote_address, sizeof p->remote_address);
    if (p->ever_up)
        p->reconnects++;
    p->ever_up = true;
    p->attempts = 0;
    memset(&p->link_rs, 0, sizeof p->link_rs);
    p->link_rs.is_peer = true;
    /* Destinations nobody had may sit behind this peer. */
    mesh_cache_clear(&m->misses);
    log_info(m->log, "peer link up", "peer=%s address=%s remote=%s", p->pk_hex, p->address,
             p->remote_address);
    set_state(p, MESH_LINK_UP, NULL);
    send_announce(p);
    return 0;
}

static void on_link_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    struct mesh_peer *p = ctx;

    /* The reverse path: the peer forwards one of its clients' requests down our link. Left
     * without callbacks, a stream is reset. */
    if (p->removed || p->mesh->closing || p->mesh->relay == NULL)
        return;
    relay_accept_stream(p->mesh->relay, s, &p->link_rs, st);
}

static void on_link_close(dmsg_session *s, int err, void *ctx)
{
    struct mesh_peer *p = ctx;
    struct mesh *m = p->mesh;
    dmsg_session_stats st;
    bool was_up = p->link_ready;
    bool healthy;
    char what[CONFIG_ADDR_MAX + 32];

    dmsg_session_get_stats(s, &st);
    p->bytes_in_past += st.bytes_in;
    p->bytes_out_past += st.bytes_out;
    p->link = NULL;
    p->link_ready = false;
    p->remote_address[0] = '\0';
    if (p->announce == MESH_ANNOUNCE_PENDING) {
        /* Some reference versions drop a session whose first object they cannot parse. */
        p->announce = MESH_ANNOUNCE_UNANSWERED;
        p->announce_skip = true;
    }
    p->ann_stream = NULL;
    if (p->removed || m->closing) {
        mesh_reap(m);
        return;
    }
    uv_timer_stop(&p->timer);
    if (!was_up) {
        snprintf(what, sizeof what, "connect %s", p->address);
        attempt_failed(p, err != 0 ? err : DMSG_ECLOSED, what);
        return;
    }
    healthy = uv_now(m->loop) - p->up_at_ms >= m->opt.healthy_after_ms;
    note_error(p, err, "link closed");
    log_info(m->log, "peer link down", "peer=%s address=%s error=\"%s\"", p->pk_hex, p->address,
             dmsg_strerror(p->last_error));
    mesh_cache_remove_value(&m->routes, &p->pk);
    schedule_redial(p, healthy);
}

static const dmsg_session_callbacks link_callbacks = {
    .on_ready = on_link_ready,
    .on_stream = on_link_stream,
    .on_close = on_link_close,
};

/* ---------------------------------------------------------------------------------------------
 * Dialing */

static void connect_to(struct mesh_peer *p, const struct sockaddr *sa)
{
    struct mesh *m = p->mesh;
    char what[CONFIG_ADDR_MAX + 32];
    int rc;

    p->link_ready = false;
    p->announce = MESH_ANNOUNCE_NONE;
    rc = dmsg_session_connect(m->loop, sa, m->identity, &p->pk, &m->opt.session, &link_callbacks,
                              p, &p->link);
    if (rc != 0) {
        p->link = NULL;
        snprintf(what, sizeof what, "connect %s", p->address);
        attempt_failed(p, rc, what);
    }
}

/* IPv4 first: a "localhost" peer listens on 127.0.0.1 more often than on ::1. */
static const struct addrinfo *pick_address(const struct addrinfo *res)
{
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next)
        if (a->ai_family == AF_INET)
            return a;
    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next)
        if (a->ai_family == AF_INET6)
            return a;
    return NULL;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct mesh_peer *p = req->data;
    const struct addrinfo *a = NULL;
    char what[CONFIG_ADDR_MAX + 32];

    p->resolving = false;
    if (p->removed || p->mesh->closing) {
        uv_freeaddrinfo(res);
        mesh_reap(p->mesh);
        return;
    }
    if (status == UV_EAI_CANCELED && p->redial_now) {
        /* mesh_link_restart: the address changed while it was being resolved. */
        p->redial_now = false;
        mesh_link_start(p);
        return;
    }
    if (status == 0)
        a = pick_address(res);
    if (a == NULL) {
        snprintf(what, sizeof what, "resolve %s (%s)", p->address,
                 status != 0 ? uv_strerror(status) : "no address");
        uv_freeaddrinfo(res);
        attempt_failed(p, DMSG_EIO, what);
        return;
    }
    connect_to(p, a->ai_addr);
    uv_freeaddrinfo(res);
}

void mesh_link_start(struct mesh_peer *p)
{
    struct mesh *m = p->mesh;
    struct addrinfo hints;
    char host[CONFIG_ADDR_MAX + 1], port_text[8];
    uint16_t port = 0;
    char what[CONFIG_ADDR_MAX + 32];

    if (p->removed || m->closing || p->link != NULL || p->resolving)
        return;
    uv_timer_stop(&p->timer);
    set_state(p, MESH_LINK_CONNECTING, NULL);
    if (netaddr_split(p->address, host, sizeof host, &port) != 0 || host[0] == '\0' ||
        port == 0) {
        snprintf(what, sizeof what, "address %s", p->address);
        attempt_failed(p, DMSG_EINVAL, what);
        return;
    }
    snprintf(port_text, sizeof port_text, "%u", (unsigned)port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    p->resolver.data = p;
    if (uv_getaddrinfo(m->loop, &p->resolver, on_resolved, host, port_text, &hints) != 0) {
        snprintf(what, sizeof what, "resolve %s", p->address);
        attempt_failed(p, DMSG_EIO, what);
        return;
    }
    p->resolving = true;
}

void mesh_link_close(struct mesh_peer *p, int err)
{
    if (p->resolving)
        uv_cancel((uv_req_t *)&p->resolver);
    if (p->link != NULL)
        dmsg_session_close(p->link, err);
}

void mesh_link_restart(struct mesh_peer *p)
{
    p->redial_now = true;
    p->backoff_ms = 0;
    if (p->link != NULL || p->resolving) {
        mesh_link_close(p, 0); /* on_link_close / on_resolved redial at once */
        return;
    }
    mesh_link_start(p);
}

void mesh_link_release(struct mesh_peer *p)
{
    p->removed = true;
    mesh_link_close(p, 0);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
}

int mesh_link_init(struct mesh_peer *p)
{
    if (uv_timer_init(p->mesh->loop, &p->timer) != 0)
        return DMSG_EIO;
    p->timer.data = p;
    return 0;
}
