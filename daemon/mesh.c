/* The mesh: the peer table, trust, forwarding order, the admin interface and its events; see
 * mesh.h. Links live in mesh_link.c. */
#include "mesh.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dmsg/error.h"
#include "mesh_internal.h"
#include "netaddr.h"
#include "server.h"

static const char *const link_state_names[] = {
    [MESH_LINK_CONNECTING] = "connecting",
    [MESH_LINK_UP] = "up",
    [MESH_LINK_DOWN] = "down",
};

static const char *const announce_state_names[] = {
    [MESH_ANNOUNCE_NONE] = "none",
    [MESH_ANNOUNCE_PENDING] = "pending",
    [MESH_ANNOUNCE_ACCEPTED] = "accepted",
    [MESH_ANNOUNCE_REFUSED] = "refused",
    [MESH_ANNOUNCE_UNANSWERED] = "unanswered",
    [MESH_ANNOUNCE_SKIPPED] = "skipped",
};

const char *mesh_link_state_name(enum mesh_link_state s)
{
    return (unsigned)s <= MESH_LINK_DOWN ? link_state_names[s] : "unknown";
}

const char *mesh_announce_state_name(enum mesh_announce_state s)
{
    return (unsigned)s <= MESH_ANNOUNCE_SKIPPED ? announce_state_names[s] : "unknown";
}

void mesh_options_default(struct mesh_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->peer_timeout_ms = 5000;
    opt->backoff_initial_ms = 5000;
    opt->backoff_max_ms = 60000;
    opt->backoff_factor = 1.5;
    opt->backoff_jitter = 0.2;
    opt->healthy_after_ms = 30000;
    opt->announce_timeout_ms = 5000;
    opt->max_peers_per_request = 8;
    opt->route_cache_max = 4096;
    opt->route_cache_ttl_ms = 300000;
    opt->miss_cache_max = 4096;
    opt->miss_cache_ttl_ms = 3000;
    opt->discovery_interval_ms = 60000;
    dmsg_session_config_default(&opt->session);
}

int64_t mesh_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t cap,
                                                          const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || cap == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * The table */

struct mesh_peer *mesh_find_peer(const struct mesh *m, const dmsg_pk *pk)
{
    for (struct mesh_peer *p = m->peers; p != NULL; p = p->next)
        if (dmsg_pk_equal(&p->pk, pk))
            return p;
    return NULL;
}

bool mesh_is_peer(const struct mesh *m, const dmsg_pk *pk)
{
    return m != NULL && mesh_find_peer(m, pk) != NULL;
}

bool mesh_session_is_peer(const struct mesh *m, const dmsg_session *s)
{
    return m != NULL && dmsg_session_get_state(s) != DMSG_SESSION_CONNECTING &&
           dmsg_session_get_state(s) != DMSG_SESSION_HANDSHAKE &&
           mesh_is_peer(m, dmsg_session_remote_pk(s));
}

size_t mesh_peer_count(const struct mesh *m)
{
    return m->n_peers;
}

size_t mesh_peers_up(const struct mesh *m)
{
    size_t n = 0;

    for (const struct mesh_peer *p = m->peers; p != NULL; p = p->next)
        if (p->state == MESH_LINK_UP)
            n++;
    return n;
}

static int pk_cmp(const dmsg_pk *a, const dmsg_pk *b)
{
    return memcmp(a->b, b->b, sizeof a->b);
}

static void table_insert(struct mesh *m, struct mesh_peer *p)
{
    struct mesh_peer **at = &m->peers;

    while (*at != NULL && pk_cmp(&(*at)->pk, &p->pk) < 0)
        at = &(*at)->next;
    p->next = *at;
    *at = p;
    m->n_peers++;
}

static void table_unlink(struct mesh *m, struct mesh_peer *p)
{
    for (struct mesh_peer **at = &m->peers; *at != NULL; at = &(*at)->next) {
        if (*at == p) {
            *at = p->next;
            m->n_peers--;
            break;
        }
    }
    p->next = m->graveyard;
    m->graveyard = p;
}

static void finish_close(struct mesh *m)
{
    void (*on_done)(void *arg) = m->on_done;
    void *arg = m->on_done_arg;

    mesh_cache_free(&m->routes);
    mesh_cache_free(&m->misses);
    free(m);
    if (on_done != NULL)
        on_done(arg);
}

void mesh_reap(struct mesh *m)
{
    struct mesh_peer **at = &m->graveyard;

    while (*at != NULL) {
        struct mesh_peer *p = *at;
        if (mesh_link_released(p)) {
            *at = p->next;
            free(p);
        } else {
            at = &p->next;
        }
    }
    if (m->closing && m->peers == NULL && m->graveyard == NULL && mesh_discovered_closed(m))
        finish_close(m);
}

/* ---------------------------------------------------------------------------------------------
 * Events */

void mesh_peer_info_fill(const struct mesh_peer *p, struct mesh_peer_info *out)
{
    const struct mesh *m = p->mesh;
    dmsg_session *inbound = m->server != NULL && !p->removed
                                ? server_find_session(m->server, &p->pk) : NULL;
    dmsg_session_stats st;

    memset(out, 0, sizeof *out);
    out->public_key = p->pk;
    memcpy(out->public_key_hex, p->pk_hex, sizeof out->public_key_hex);
    snprintf(out->address, sizeof out->address, "%s", p->address);
    out->source = p->source;
    out->added_at_ms = p->added_at_ms;
    snprintf(out->note, sizeof out->note, "%s", p->note);
    out->state = p->state;
    out->since_ms = p->since_ms;
    if (p->state == MESH_LINK_UP)
        snprintf(out->remote_address, sizeof out->remote_address, "%s", p->remote_address);
    out->last_error = p->last_error;
    snprintf(out->last_error_text, sizeof out->last_error_text, "%s", p->last_error_text);
    out->last_error_ms = p->last_error_ms;
    out->attempts = p->attempts;
    out->reconnects = p->reconnects;
    out->next_attempt_ms = p->state == MESH_LINK_DOWN ? p->next_attempt_ms : 0;
    out->announce = p->announce;
    out->inbound = inbound != NULL;
    out->inbound_since_ms = inbound != NULL ? p->inbound_since_ms : 0;
    out->streams_forwarded = p->fwd_ok;
    out->forward_misses = p->fwd_miss;
    out->bytes_in = p->bytes_in_past;
    out->bytes_out = p->bytes_out_past;
    if (p->link != NULL && p->link_ready) {
        dmsg_session_get_stats(p->link, &st);
        out->streams += st.streams;
        out->bytes_in += st.bytes_in;
        out->bytes_out += st.bytes_out;
    }
    if (inbound != NULL) {
        dmsg_session_get_stats(inbound, &st);
        out->streams += st.streams;
    }
}

void mesh_emit(struct mesh *m, enum mesh_event_type type, const struct mesh_peer *p,
               enum mesh_link_state previous, const char *error)
{
    struct mesh_peer_info info;
    struct mesh_event ev;

    if (m->n_subs == 0 || m->closing)
        return;
    mesh_peer_info_fill(p, &info);
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.at_ms = mesh_now_ms();
    ev.peer = &info;
    ev.state = p->state;
    ev.previous_state = previous;
    ev.error = error;
    /* A subscriber may unsubscribe itself: walk a copy. */
    struct mesh_subscriber subs[MESH_MAX_SUBSCRIBERS];
    size_t n = m->n_subs;
    memcpy(subs, m->subs, n * sizeof subs[0]);
    for (size_t i = 0; i < n; i++)
        subs[i].fn(subs[i].user, &ev);
}

int mesh_subscribe(struct mesh *m, mesh_event_fn fn, void *user)
{
    for (size_t i = 0; i < m->n_subs; i++)
        if (m->subs[i].fn == fn && m->subs[i].user == user)
            return DMSG_EEXIST;
    if (m->n_subs >= MESH_MAX_SUBSCRIBERS)
        return DMSG_ELIMIT;
    m->subs[m->n_subs].fn = fn;
    m->subs[m->n_subs].user = user;
    m->n_subs++;
    return 0;
}

void mesh_unsubscribe(struct mesh *m, mesh_event_fn fn, void *user)
{
    for (size_t i = 0; i < m->n_subs; i++) {
        if (m->subs[i].fn == fn && m->subs[i].user == user) {
            memmove(&m->subs[i], &m->subs[i + 1], (m->n_subs - i - 1) * sizeof m->subs[0]);
            m->n_subs--;
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Peers in and out */

int mesh_peer_insert(struct mesh *m, const dmsg_pk *pk, const char *address,
                     enum store_peer_source source, int64_t added_at_ms, const char *note,
                     struct mesh_peer **out)
{
    struct mesh_peer *p = calloc(1, sizeof *p);

    if (p == NULL)
        return DMSG_ENOMEM;
    p->mesh = m;
    p->pk = *pk;
    dmsg_pk_to_hex(pk, p->pk_hex);
    snprintf(p->address, sizeof p->address, "%s", address);
    p->source = source;
    p->added_at_ms = added_at_ms;
    snprintf(p->note, sizeof p->note, "%s", note != NULL ? note : "");
    p->state = MESH_LINK_CONNECTING;
    p->since_ms = mesh_now_ms();
    if (mesh_link_init(p) != 0) {
        free(p);
        return DMSG_EIO;
    }
    table_insert(m, p);
    mesh_cache_clear(&m->misses);
    if (out != NULL)
        *out = p;
    mesh_emit(m, MESH_EVENT_PEER_ADDED, p, p->state, NULL);
    /* Trust by configuration: a session the key already holds becomes a peer session. */
    if (m->server != NULL && server_find_session(m->server, pk) != NULL)
        mesh_session_up(m, server_find_session(m->server, pk), NULL);
    if (m->started)
        mesh_link_start(p);
    return 0;
}

struct demote_ctx {
    const dmsg_pk *pk;
    dmsg_session *found;
};

static void demote_one(dmsg_session *s, struct relay_session *rs, void *arg)
{
    struct demote_ctx *dc = arg;

    if (dmsg_pk_equal(dmsg_session_remote_pk(s), dc->pk)) {
        rs->is_peer = false;
        dc->found = s;
    }
}

static void promote_one(dmsg_session *s, struct relay_session *rs, void *arg)
{
    struct demote_ctx *dc = arg;

    if (dmsg_pk_equal(dmsg_session_remote_pk(s), dc->pk)) {
        rs->is_peer = true;
        dc->found = s;
    }
}

/* Takes p off the table: its sessions lose their trust at once and close with their streams. */
static void peer_drop(struct mesh *m, struct mesh_peer *p)
{
    struct demote_ctx dc = {.pk = &p->pk, .found = NULL};

    p->link_rs.is_peer = false;
    if (m->server != NULL) {
        server_foreach_session(m->server, demote_one, &dc);
        if (dc.found != NULL)
            dmsg_session_close(dc.found, 0);
    }
    mesh_cache_remove_value(&m->routes, &p->pk);
    mesh_emit(m, MESH_EVENT_PEER_REMOVED, p, p->state, NULL);
    table_unlink(m, p);
    mesh_link_release(p);
    log_info(m->log, "peer removed", "peer=%s address=%s source=%s", p->pk_hex, p->address,
             store_peer_source_name(p->source));
}

/* ---------------------------------------------------------------------------------------------
 * Checks of operator input */

static bool note_ok(const char *note)
{
    if (note == NULL)
        return true;
    if (strlen(note) > MESH_NOTE_MAX)
        return false;
    for (const unsigned char *c = (const unsigned char *)note; *c; c++)
        if (*c < 0x20 || *c == 0x7f)
            return false;
    return true;
}

static bool address_ok(const char *address)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port = 0;

    return address != NULL && strlen(address) >= 3 && strlen(address) <= CONFIG_ADDR_MAX &&
           netaddr_split(address, host, sizeof host, &port) == 0 && host[0] != '\0' &&
           port != 0;
}

static int store_failed(struct mesh *m, char *err, size_t cap, const char *what)
{
    const struct store_error *se = store_last_error(m->store);

    set_err(err, cap, "%s: %s", what, se->message);
    log_error(m->log, "mesh store failure", "what=\"%s\" error=\"%s\"", what, se->message);
    return DMSG_EIO;
}

/* ---------------------------------------------------------------------------------------------
 * The admin interface */

int mesh_peer_add(struct mesh *m, const dmsg_pk *pk, const char *address, const char *note,
                  struct mesh_peer_info *out, char *err, size_t err_cap)
{
    struct store_peer sp;
    struct mesh_peer *p, *existing;
    char hex[DMSG_PK_HEX_LEN + 1];
    int64_t now = mesh_now_ms();
    int rc;

    if (m->closing) {
        set_err(err, err_cap, "the daemon is stopping");
        return DMSG_ESTATE;
    }
    dmsg_pk_to_hex(pk, hex);
    if (dmsg_pk_is_null(pk) || dmsg_pk_validate(pk) != 0) {
        set_err(err, err_cap, "public key %s is not a valid key", hex);
        return DMSG_EINVAL;
    }
    if (dmsg_pk_equal(pk, &m->identity->pk)) {
        set_err(err, err_cap, "%s is this server's own key", hex);
        return DMSG_EPERM;
    }
    if (!address_ok(address)) {
        set_err(err, err_cap, "address \"%s\" is not host:port", address ? address : "");
        return DMSG_EINVAL;
    }
    if (!note_ok(note)) {
        set_err(err, err_cap, "note is longer than 256 bytes or holds control characters");
        return DMSG_EINVAL;
    }
    existing = mesh_find_peer(m, pk);
    if (existing != NULL) {
        set_err(err, err_cap, "%s is already a peer (source %s, address %s)", hex,
                store_peer_source_name(existing->source), existing->address);
        return DMSG_EEXIST;
    }
    if (m->n_peers >= MESH_MAX_PEERS) {
        set_err(err, err_cap, "the peer table is full (%d peers)", MESH_MAX_PEERS);
        return DMSG_ELIMIT;
    }
    memset(&sp, 0, sizeof sp);
    sp.public_key = hex;
    sp.address = address;
    sp.source = STORE_PEER_ADMIN;
    sp.added_at = now / 1000;
    sp.note = note;
    rc = store_peer_add(m->store, &sp);
    if (rc == DMSG_EEXIST) {
        set_err(err, err_cap, "%s is already a peer in the store", hex);
        return rc;
    }
    if (rc == DMSG_EINVAL) {
        set_err(err, err_cap, "the store refused peer %s at \"%s\"", hex, address);
        return rc;
    }
    if (rc != 0)
        return store_failed(m, err, err_cap, "storing the peer");
    rc = mesh_peer_insert(m, pk, address, STORE_PEER_ADMIN, now, note, &p);
    if (rc != 0) {
        store_peer_remove(m->store, hex);
        set_err(err, err_cap, "cannot start the link to %s: %s", hex, dmsg_strerror(rc));
        return rc;
    }
    log_info(m->log, "peer added", "peer=%s address=%s source=admin", hex, address);
    if (out != NULL)
        mesh_peer_info_fill(p, out);
    return 0;
}

int mesh_peer_remove(struct mesh *m, const dmsg_pk *pk, char *err, size_t err_cap)
{
    struct mesh_peer *p = mesh_find_peer(m, pk);
    char hex[DMSG_PK_HEX_LEN + 1];
    int rc;

    dmsg_pk_to_hex(pk, hex);
    if (p == NULL) {
        set_err(err, err_cap, "%s is not a peer", hex);
        return DMSG_ENOTFOUND;
    }
    if (p->source == STORE_PEER_CONFIG) {
        set_err(err, err_cap, "%s comes from the config file (address %s): remove it from "
                "\"peers\" there and reload or restart", hex, p->address);
        return DMSG_EPERM;
    }
    rc = store_peer_remove(m->store, hex);
    if (rc != 0 && rc != DMSG_ENOTFOUND)
        return store_failed(m, err, err_cap, "removing the peer");
    peer_drop(m, p);
    return 0;
}

int mesh_peer_get(const struct mesh *m, const dmsg_pk *pk, struct mesh_peer_info *out)
{
    const struct mesh_peer *p = mesh_find_peer(m, pk);

    if (p == NULL)
        return DMSG_ENOTFOUND;
    mesh_peer_info_fill(p, out);
    return 0;
}

int mesh_peer_list(const struct mesh *m, mesh_visit_fn visit, void *user)
{
    struct mesh_peer_info info;
    int rc;

    for (const struct mesh_peer *p = m->peers; p != NULL; p = p->next) {
        mesh_peer_info_fill(p, &info);
        rc = visit(user, &info);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void mesh_get_stats(const struct mesh *m, struct mesh_stats *out)
{
    *out = m->stats;
    out->peers = (uint32_t)m->n_peers;
    out->peers_up = (uint32_t)mesh_peers_up(m);
    out->inbound_peer_sessions = 0;
    for (const struct mesh_peer *p = m->peers; p != NULL; p = p->next)
        if (m->server != NULL && server_find_session(m->server, &p->pk) != NULL)
            out->inbound_peer_sessions++;
}

/* ---------------------------------------------------------------------------------------------
 * Hooks */

void mesh_session_up(struct mesh *m, dmsg_session *s, struct relay_session *rs)
{
    struct mesh_peer *p = mesh_find_peer(m, dmsg_session_remote_pk(s));

    if (p == NULL)
        return;
    if (rs != NULL) {
        rs->is_peer = true;
    } else if (m->server != NULL) {
        /* A peer added while its session was up: find the session's relay state. */
        struct demote_ctx dc = {.pk = &p->pk, .found = NULL};
        server_foreach_session(m->server, promote_one, &dc);
    }
    p->inbound_since_ms = mesh_now_ms();
    mesh_cache_clear(&m->misses);
    log_info(m->log, "peer session up", "peer=%s", p->pk_hex);
    mesh_emit(m, MESH_EVENT_INBOUND, p, p->state, NULL);
}

void mesh_session_down(struct mesh *m, dmsg_session *s)
{
    struct mesh_peer *p = mesh_find_peer(m, dmsg_session_remote_pk(s));

    if (p == NULL)
        return;
    mesh_cache_remove_value(&m->routes, &p->pk);
    mesh_emit(m, MESH_EVENT_INBOUND, p, p->state, NULL);
}

int mesh_answer_announce(struct mesh *m, dmsg_session *s, struct relay_session *rs,
                         const uint8_t *obj, size_t obj_len, uint8_t *out, size_t cap,
                         size_t *out_len)
{
    const dmsg_pk *pk = dmsg_session_remote_pk(s);
    struct mesh_peer *p;
    char hex[DMSG_PK_HEX_LEN + 1];
    bool accepted;

    if (mesh_announce_parse(obj, obj_len, pk, NULL) != 0)
        return 0;
    p = mesh_find_peer(m, pk);
    accepted = p != NULL && !m->closing;
    if (accepted) {
        rs->is_peer = true; /* already so by configuration; the announce is idempotent */
        m->stats.announces_accepted++;
    } else {
        m->stats.announces_refused++;
        dmsg_pk_to_hex(pk, hex);
        log_info(m->log, "peer announcement refused: not a configured peer", "remote_pk=%s",
                 hex);
    }
    return mesh_announce_answer(obj, obj_len, accepted, &m->identity->sk, out, cap, out_len) == 0
               ? 1 : 0;
}

/* Usable peers, in key order, other than skip and the ingress key. */
static struct mesh_peer *nth_usable(struct mesh *m, size_t n, const struct mesh_peer *skip,
                                    const dmsg_pk *ingress_pk, bool *any)
{
    *any = false;
    for (struct mesh_peer *p = m->peers; p != NULL; p = p->next) {
        if (ingress_pk != NULL && dmsg_pk_equal(&p->pk, ingress_pk))
            continue;
        if (mesh_peer_session(p) == NULL)
            continue;
        *any = true;
        if (p == skip)
            continue;
        if (n-- == 0)
            return p;
    }
    return NULL;
}

int mesh_next_hop(struct mesh *m, const dmsg_pk *dst, dmsg_session *ingress, unsigned attempt,
                  dmsg_session **hop, uint32_t *timeout_ms)
{
    uint64_t now = uv_now(m->loop);
    const dmsg_pk *ingress_pk = ingress != NULL ? dmsg_session_remote_pk(ingress) : NULL;
    const struct mesh_cache_entry *route;
    struct mesh_peer *cached = NULL, *p;
    bool any = false;

    *hop = NULL;
    if (m->closing || m->n_peers == 0)
        return DMSG_ENOTFOUND;
    route = mesh_cache_get(&m->routes, dst, now);
    if (route != NULL)
        cached = mesh_find_peer(m, &route->value);
    if (attempt == 0) {
        /* Attempt 0 is the remembered peer (or nothing); the others follow in key order. */
        if (mesh_cache_get(&m->misses, dst, now) != NULL) {
            m->stats.miss_cache_hits++;
            return DMSG_ENOTFOUND;
        }
        if (cached != NULL && mesh_peer_session(cached) != NULL &&
            (ingress_pk == NULL || !dmsg_pk_equal(&cached->pk, ingress_pk))) {
            m->stats.route_cache_hits++;
            m->stats.forwards_tried++;
            *hop = mesh_peer_session(cached);
            *timeout_ms = m->opt.peer_timeout_ms;
        }
        return 0;
    }
    if (attempt <= m->opt.max_peers_per_request) {
        p = nth_usable(m, attempt - 1, cached, ingress_pk, &any);
        if (p != NULL) {
            m->stats.forwards_tried++;
            *hop = mesh_peer_session(p);
            *timeout_ms = m->opt.peer_timeout_ms;
            return 0;
        }
    } else {
        nth_usable(m, 0, NULL, ingress_pk, &any);
    }
    /* The search is over and failed. Only a search that asked somebody is remembered. */
    m->stats.forwards_missed++;
    mesh_cache_remove(&m->routes, dst);
    if (any)
        mesh_cache_put(&m->misses, dst, NULL, now);
    return DMSG_ENOTFOUND;
}

void mesh_hop_result(struct mesh *m, const dmsg_pk *dst, dmsg_session *hop, int result)
{
    struct mesh_peer *p = NULL;

    for (struct mesh_peer *q = m->peers; q != NULL; q = q->next) {
        if (q->link == hop || dmsg_pk_equal(&q->pk, dmsg_session_remote_pk(hop))) {
            p = q;
            break;
        }
    }
    if (p == NULL)
        return;
    if (result == 0) {
        p->fwd_ok++;
        m->stats.forwards_delivered++;
        mesh_cache_put(&m->routes, dst, &p->pk, uv_now(m->loop));
        mesh_cache_remove(&m->misses, dst);
    } else {
        p->fwd_miss++;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle */

int mesh_init(uv_loop_t *loop, const dmsg_identity *identity, struct store *store,
              const struct mesh_options *opt, const struct dmsgd_log *log, struct mesh **out)
{
    struct mesh *m = calloc(1, sizeof *m);
    int rc;

    *out = NULL;
    if (m == NULL)
        return DMSG_ENOMEM;
    m->loop = loop;
    m->identity = identity;
    m->store = store;
    if (opt != NULL)
        m->opt = *opt;
    else
        mesh_options_default(&m->opt);
    m->log = log;
    rc = mesh_cache_init(&m->routes, m->opt.route_cache_max, m->opt.route_cache_ttl_ms);
    if (rc == 0)
        rc = mesh_cache_init(&m->misses, m->opt.miss_cache_max, m->opt.miss_cache_ttl_ms);
    if (rc != 0) {
        mesh_cache_free(&m->routes);
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void mesh_attach(struct mesh *m, struct server *server, struct relay *relay)
{
    m->server = server;
    m->relay = relay;
}

/* Mirrors one config peer into the store; a runtime row of the same key gives way. */
static int mirror_config_peer(struct mesh *m, const struct config_peer *cp, int64_t now)
{
    struct store_peer sp;
    char hex[DMSG_PK_HEX_LEN + 1];
    int rc;

    dmsg_pk_to_hex(&cp->public_key, hex);
    memset(&sp, 0, sizeof sp);
    sp.public_key = hex;
    sp.address = cp->address;
    sp.source = STORE_PEER_CONFIG;
    sp.added_at = now / 1000;
    rc = store_peer_add(m->store, &sp);
    if (rc == DMSG_EEXIST) {
        log_info(m->log, "peer now comes from the config file", "peer=%s", hex);
        rc = store_peer_remove(m->store, hex);
        if (rc == 0)
            rc = store_peer_add(m->store, &sp);
    }
    return rc;
}

struct load_ctx {
    struct mesh *m;
    int rc;
};

static int load_one(void *user, const struct store_peer *sp)
{
    struct load_ctx *lc = user;
    dmsg_pk pk;

    if (dmsg_pk_from_hex(&pk, sp->public_key, strlen(sp->public_key)) != 0 ||
        mesh_find_peer(lc->m, &pk) != NULL || lc->m->n_peers >= MESH_MAX_PEERS) {
        log_warn(lc->m->log, "stored peer skipped", "peer=%s", sp->public_key);
        return 0;
    }
    lc->rc = mesh_peer_insert(lc->m, &pk, sp->address, sp->source, sp->added_at * 1000,
                              sp->note, NULL);
    return lc->rc;
}

int mesh_start(struct mesh *m, const struct config_peer *peers, size_t n_peers,
               bool accept_discovered, const char *discovery_url, char *err, size_t err_cap)
{
    int64_t now = mesh_now_ms();
    struct load_ctx lc = {.m = m, .rc = 0};
    int rc;

    rc = store_peer_remove_source(m->store, STORE_PEER_CONFIG, NULL);
    for (size_t i = 0; rc == 0 && i < n_peers; i++)
        rc = mirror_config_peer(m, &peers[i], now);
    if (rc == 0 && !accept_discovered)
        rc = store_peer_remove_source(m->store, STORE_PEER_DISCOVERED, NULL);
    if (rc != 0)
        return store_failed(m, err, err_cap, "mirroring the config file's peers");
    rc = store_peer_list(m->store, NULL, load_one, &lc);
    if (rc != 0) {
        if (lc.rc != 0) {
            set_err(err, err_cap, "loading the peers: %s", dmsg_strerror(rc));
            return rc;
        }
        return store_failed(m, err, err_cap, "loading the peers");
    }
    m->started = true;
    for (struct mesh_peer *p = m->peers; p != NULL; p = p->next)
        mesh_link_start(p);
    m->accept_discovered = accept_discovered;
    snprintf(m->discovery_url, sizeof m->discovery_url, "%s",
             discovery_url != NULL ? discovery_url : "");
    if (accept_discovered && m->discovery_url[0] != '\0')
        mesh_discovered_start(m);
    log_info(m->log, "mesh started", "peers=%zu accept_discovered_peers=%s", m->n_peers,
             accept_discovered ? "on" : "off");
    return 0;
}

static const struct config_peer *find_config_peer(const struct config_peer *peers, size_t n,
                                                  const dmsg_pk *pk)
{
    for (size_t i = 0; i < n; i++)
        if (dmsg_pk_equal(&peers[i].public_key, pk))
            return &peers[i];
    return NULL;
}

int mesh_reload(struct mesh *m, const struct config_peer *peers, size_t n_peers,
                bool accept_discovered)
{
    int64_t now = mesh_now_ms();
    struct mesh_peer *p, *next;
    char hex[DMSG_PK_HEX_LEN + 1];
    int first = 0, rc;

    if (m->closing)
        return DMSG_ESTATE;
    /* Gone from the file, or discovered ones no longer wanted. */
    for (p = m->peers; p != NULL; p = next) {
        next = p->next;
        bool gone = p->source == STORE_PEER_CONFIG &&
                    find_config_peer(peers, n_peers, &p->pk) == NULL;
        bool unwanted = p->source == STORE_PEER_DISCOVERED && !accept_discovered;
        if (!gone && !unwanted)
            continue;
        rc = store_peer_remove(m->store, p->pk_hex);
        if (rc != 0 && rc != DMSG_ENOTFOUND && first == 0)
            first = store_failed(m, NULL, 0, "removing a peer on reload");
        peer_drop(m, p);
    }
    /* New or changed in the file. */
    for (size_t i = 0; i < n_peers; i++) {
        const struct config_peer *cp = &peers[i];
        p = mesh_find_peer(m, &cp->public_key);
        if (p != NULL && p->source == STORE_PEER_CONFIG && strcmp(p->address, cp->address) == 0)
            continue;
        if (dmsg_pk_equal(&cp->public_key, &m->identity->pk))
            continue;
        rc = mirror_config_peer(m, cp, now);
        if (rc != 0) {
            if (first == 0)
                first = store_failed(m, NULL, 0, "mirroring a config peer on reload");
            continue;
        }
        if (p == NULL) {
            if (m->n_peers >= MESH_MAX_PEERS)
                continue;
            rc = mesh_peer_insert(m, &cp->public_key, cp->address, STORE_PEER_CONFIG, now, NULL,
                                  NULL);
            if (rc != 0 && first == 0)
                first = rc;
            continue;
        }
        dmsg_pk_to_hex(&cp->public_key, hex);
        p->source = STORE_PEER_CONFIG;
        if (strcmp(p->address, cp->address) != 0) {
            log_info(m->log, "peer address changed", "peer=%s address=%s", hex, cp->address);
            snprintf(p->address, sizeof p->address, "%s", cp->address);
            mesh_link_restart(p);
        }
    }
    if (accept_discovered != m->accept_discovered) {
        m->accept_discovered = accept_discovered;
        if (accept_discovered && m->discovery_url[0] != '\0')
            mesh_discovered_start(m);
        else
            mesh_discovered_stop(m);
    }
    return first;
}

void mesh_close(struct mesh *m, void (*on_done)(void *arg), void *arg)
{
    if (m->closing)
        return;
    m->closing = true;
    m->on_done = on_done;
    m->on_done_arg = arg;
    mesh_discovered_stop(m);
    while (m->peers != NULL) {
        struct mesh_peer *p = m->peers;
        table_unlink(m, p);
        mesh_link_release(p);
    }
    mesh_reap(m);
}
