/* Listener, admission and session table; see server.h. */
#include "server.h"

#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/rng.h"
#include "ip_rate.h"
#include "keymap.h"
#include "netaddr.h"

enum ss_state { SS_PENDING, SS_ESTABLISHED };

/* Addresses with no connection left whose handshake bucket is still refilling. Forgetting one
 * early only hands that address a fresh burst, so past this many the oldest goes first. */
#define IP_LINGER_MAX 4096u

/* Admission counts of one client address. */
struct ip_entry {
    uint8_t key[17];                 /* family length byte + address */
    uint8_t key_len;
    uint32_t pending;
    uint32_t established;
    struct ip_rate_bucket bucket;    /* charged only under load */
    bool lingering;                  /* unused, kept for its bucket: on the linger list */
    struct ip_entry *linger_prev, *linger_next;
};

struct server_session {
    struct server *srv;
    dmsg_session *session;
    struct ip_entry *ip;
    enum ss_state state;
    bool in_table;
    dmsg_pk pk;
    uint64_t last_eviction_ms;       /* when this key last replaced a session (0: never) */
    struct relay_session rs;
    struct server_session *prev, *next;
};

struct server {
    uv_loop_t *loop;
    const dmsg_identity *identity;
    struct server_limits lim;
    struct relay *relay;
    struct server_hooks hooks;
    const struct dmsgd_log *log;

    uv_tcp_t listener;
    bool listener_open;              /* initialised and not yet closed */
    bool listener_closing;
    uint16_t port;
    bool draining;
    bool closing_sessions;
    void (*on_done)(void *arg);
    void *on_done_arg;
    bool freeing;

    struct keymap by_pk;             /* pk -> established server_session */
    struct keymap by_ip;             /* ip key -> ip_entry */
    struct ip_entry *linger_head, *linger_tail; /* oldest first */
    uint32_t n_lingering;
    struct ip_rate_load load;
    struct server_session *sessions; /* every session, pending or established */
    uint32_t n_pending, n_established;
    uint64_t counters[SERVER_COUNTER_COUNT];
    uint64_t handshake_failures[SERVER_HS_COUNT];
};

static const char *const counter_names[SERVER_COUNTER_COUNT] = {
    [SERVER_ACCEPTED] = "accepted",
    [SERVER_REJECTED_FULL] = "rejected_full",
    [SERVER_REJECTED_PENDING] = "rejected_pending",
    [SERVER_REJECTED_IP] = "rejected_ip",
    [SERVER_REJECTED_DRAINING] = "rejected_draining",
    [SERVER_REJECTED_RATE] = "rejected_rate",
    [SERVER_ACCEPT_ERRORS] = "accept_errors",
    [SERVER_HANDSHAKES_OK] = "handshakes_ok",
    [SERVER_HANDSHAKES_FAILED] = "handshakes_failed",
    [SERVER_EVICTED] = "evicted",
    [SERVER_EVICTIONS_REFUSED] = "evictions_refused",
    [SERVER_SESSIONS_CLOSED] = "sessions_closed",
};

const char *server_counter_name(enum server_counter c)
{
    return (unsigned)c < SERVER_COUNTER_COUNT ? counter_names[c] : "unknown";
}

static void maybe_free(struct server *srv);

/* ---------------------------------------------------------------------------------------------
 * Per-address accounting */

static size_t ip_key_of(const struct sockaddr_storage *sa, uint8_t key[17])
{
    size_t n = netaddr_ip_bytes(sa, key + 1);

    key[0] = (uint8_t)n;
    return n + 1;
}

static void linger_append(struct server *srv, struct ip_entry *e)
{
    e->lingering = true;
    e->linger_next = NULL;
    e->linger_prev = srv->linger_tail;
    if (srv->linger_tail != NULL)
        srv->linger_tail->linger_next = e;
    else
        srv->linger_head = e;
    srv->linger_tail = e;
    srv->n_lingering++;
}

static void linger_unlink(struct server *srv, struct ip_entry *e)
{
    if (!e->lingering)
        return;
    if (e->linger_prev != NULL)
        e->linger_prev->linger_next = e->linger_next;
    else
        srv->linger_head = e->linger_next;
    if (e->linger_next != NULL)
        e->linger_next->linger_prev = e->linger_prev;
    else
        srv->linger_tail = e->linger_prev;
    e->linger_prev = e->linger_next = NULL;
    e->lingering = false;
    srv->n_lingering--;
}

static void ip_free(struct server *srv, struct ip_entry *e)
{
    linger_unlink(srv, e);
    keymap_remove_if(&srv->by_ip, e->key, e->key_len, e);
    free(e);
}

/* Frees lingering entries whose buckets refilled. The list is in release order, which is close
 * to refill order (a bucket refills at most 250 ms after its last charge), so stopping at the
 * first one still refilling keeps this O(1) per call at the price of a short overstay. */
static void linger_sweep(struct server *srv, uint64_t now)
{
    while (srv->linger_head != NULL &&
           (srv->n_lingering > IP_LINGER_MAX ||
            ip_rate_bucket_full(&srv->linger_head->bucket, now)))
        ip_free(srv, srv->linger_head);
}

static struct ip_entry *ip_acquire(struct server *srv, const struct sockaddr_storage *sa,
                                   uint64_t now)
{
    uint8_t key[17];
    size_t key_len = ip_key_of(sa, key);
    struct ip_entry *e = keymap_get(&srv->by_ip, key, key_len);

    if (e != NULL) {
        linger_unlink(srv, e);
        return e;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, key_len);
    e->key_len = (uint8_t)key_len;
    ip_rate_bucket_init(&e->bucket, now);
    if (keymap_put(&srv->by_ip, e->key, e->key_len, e) != 0) {
        free(e);
        return NULL;
    }
    return e;
}

/* An address without connections is forgotten, unless forgetting it would refill its bucket
 * early: a client that opens and drops handshakes must not get a new burst each time. */
static void ip_release_if_unused(struct server *srv, struct ip_entry *e)
{
    uint64_t now = uv_now(srv->loop);

    if (e != NULL && e->pending == 0 && e->established == 0) {
        if (ip_rate_bucket_full(&e->bucket, now))
            ip_free(srv, e);
        else
            linger_append(srv, e);
    }
    linger_sweep(srv, now);
}

/* ---------------------------------------------------------------------------------------------
 * Load (threats.md N7): pending handshakes are fed on every change, so a dip is never missed. */

static bool load_update(struct server *srv)
{
    return ip_rate_load_update(&srv->load, srv->n_pending, srv->lim.max_pending_handshakes,
                               uv_now(srv->loop));
}

static void pending_add(struct server *srv, struct ip_entry *ip)
{
    srv->n_pending++;
    ip->pending++;
    load_update(srv);
}

static void pending_sub(struct server *srv, struct ip_entry *ip)
{
    srv->n_pending--;
    ip->pending--;
    load_update(srv);
}

/* ---------------------------------------------------------------------------------------------
 * Session list */

static void list_add(struct server *srv, struct server_session *ss)
{
    ss->prev = NULL;
    ss->next = srv->sessions;
    if (srv->sessions != NULL)
        srv->sessions->prev = ss;
    srv->sessions = ss;
}

static void list_remove(struct server *srv, struct server_session *ss)
{
    if (ss->prev != NULL)
        ss->prev->next = ss->next;
    else
        srv->sessions = ss->next;
    if (ss->next != NULL)
        ss->next->prev = ss->prev;
    ss->prev = ss->next = NULL;
}

static void notify_changed(struct server *srv)
{
    if (srv->hooks.on_sessions_changed != NULL)
        srv->hooks.on_sessions_changed(srv->hooks.ctx, srv->n_established);
}

/* ---------------------------------------------------------------------------------------------
 * Session callbacks */

static void pk_hex_of(const dmsg_pk *pk, char out[DMSG_PK_HEX_LEN + 1])
{
    dmsg_pk_to_hex(pk, out);
}

/* Replaces the established session of the same key, if any. Non-zero: refuse the newcomer. */
static int evict_older(struct server *srv, struct server_session *ss, uint64_t now)
{
    struct server_session *old = keymap_get(&srv->by_pk, ss->pk.b, DMSG_PK_LEN);
    char hex[DMSG_PK_HEX_LEN + 1];

    if (old == NULL)
        return 0;
    pk_hex_of(&ss->pk, hex);
    if (old->last_eviction_ms != 0 && now - old->last_eviction_ms < srv->lim.eviction_interval_ms) {
        srv->counters[SERVER_EVICTIONS_REFUSED]++;
        log_warn(srv->log, "session refused: key replaced its session too recently",
                 "remote_pk=%s interval_ms=%u", hex, srv->lim.eviction_interval_ms);
        return DMSG_ELIMIT;
    }
    keymap_remove_if(&srv->by_pk, old->pk.b, DMSG_PK_LEN, old);
    old->in_table = false;
    srv->counters[SERVER_EVICTED]++;
    ss->last_eviction_ms = now;
    log_info(srv->log, "session replaced by a newer one", "remote_pk=%s", hex);
    dmsg_session_close(old->session, DMSG_EEXIST);
    return 0;
}

static int on_session_ready(dmsg_session *s, void *ctx)
{
    struct server_session *ss = ctx;
    struct server *srv = ss->srv;
    char hex[DMSG_PK_HEX_LEN + 1];
    char addr[64];
    int rc;

    pending_sub(srv, ss->ip);
    ss->pk = *dmsg_session_remote_pk(s);
    if (srv->draining || srv->closing_sessions) {
        srv->counters[SERVER_REJECTED_DRAINING]++;
        ss->state = SS_ESTABLISHED; /* counted as closed below, never entered the table */
        ss->ip->established++;
        srv->n_established++;
        return DMSG_EGOAWAY;
    }
    ss->state = SS_ESTABLISHED;
    ss->ip->established++;
    srv->n_established++;
    srv->counters[SERVER_HANDSHAKES_OK]++;
    rc = evict_older(srv, ss, uv_now(srv->loop));
    if (rc == 0)
        rc = keymap_put(&srv->by_pk, ss->pk.b, DMSG_PK_LEN, ss);
    if (rc != 0)
        return rc;
    ss->in_table = true;
    pk_hex_of(&ss->pk, hex);
    netaddr_format(dmsg_session_remote_addr(s), addr, sizeof addr);
    log_info(srv->log, "session started", "remote_pk=%s remote_addr=%s sessions=%u", hex, addr,
             srv->n_established);
    if (srv->hooks.on_session_up != NULL)
        srv->hooks.on_session_up(srv->hooks.ctx, s, &ss->rs);
    notify_changed(srv);
    return 0;
}

static void on_session_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    struct server_session *ss = ctx;

    if (!ss->in_table) {
        /* Evicted or refused sessions serve nothing new. */
        dmsg_stream_reset(st);
        return;
    }
    relay_accept_stream(ss->srv->relay, s, &ss->rs, st);
}

static void on_session_close(dmsg_session *s, int err, void *ctx)
{
    struct server_session *ss = ctx;
    struct server *srv = ss->srv;

    (void)s;
    if (ss->state == SS_PENDING) {
        pending_sub(srv, ss->ip);
        srv->counters[SERVER_HANDSHAKES_FAILED]++;
        srv->handshake_failures[err == DMSG_ETIMEOUT                      ? SERVER_HS_TIMEOUT
                                : err == DMSG_ECLOSED || err == DMSG_EIO ? SERVER_HS_CLOSED
                                                                         : SERVER_HS_INVALID]++;
        if (log_enabled(srv->log, LOG_LEVEL_DEBUG)) {
            char addr[64];
            netaddr_format(dmsg_session_remote_addr(s), addr, sizeof addr);
            log_debug(srv->log, "handshake failed", "remote_addr=%s err=\"%s\"", addr,
                      dmsg_strerror(err));
        }
    } else {
        bool was_listed = ss->in_table;
        char hex[DMSG_PK_HEX_LEN + 1];

        srv->n_established--;
        ss->ip->established--;
        srv->counters[SERVER_SESSIONS_CLOSED]++;
        if (was_listed) {
            keymap_remove_if(&srv->by_pk, ss->pk.b, DMSG_PK_LEN, ss);
            ss->in_table = false;
        }
        pk_hex_of(&ss->pk, hex);
        log_info(srv->log, "session stopped", "remote_pk=%s err=\"%s\" sessions=%u", hex,
                 err == 0 ? "none" : dmsg_strerror(err), srv->n_established);
        if (srv->hooks.on_session_closed != NULL && was_listed)
            srv->hooks.on_session_closed(srv->hooks.ctx, s, &ss->rs, err);
        if (srv->hooks.on_session_down != NULL && was_listed)
            srv->hooks.on_session_down(srv->hooks.ctx, s);
        if (was_listed)
            notify_changed(srv);
    }
    ip_release_if_unused(srv, ss->ip);
    list_remove(srv, ss);
    free(ss);
    /* Last use of srv here: on_idle may well close and free the server. */
    if (srv->sessions == NULL && srv->closing_sessions && srv->hooks.on_idle != NULL)
        srv->hooks.on_idle(srv->hooks.ctx);
}

static const dmsg_session_callbacks session_callbacks = {
    .on_ready = on_session_ready,
    .on_stream = on_session_stream,
    .on_close = on_session_close,
};

/* ---------------------------------------------------------------------------------------------
 * Admission */

static void on_rejected_closed(uv_handle_t *h)
{
    free(h);
}

/* Which cap, if any, refuses a connection from ip (all checked before any handshake work). */
static int admission(const struct server *srv, const struct ip_entry *ip)
{
    if (srv->draining || srv->closing_sessions)
        return SERVER_REJECTED_DRAINING;
    if (srv->n_established + srv->n_pending >= srv->lim.max_sessions)
        return SERVER_REJECTED_FULL;
    if (srv->n_pending >= srv->lim.max_pending_handshakes)
        return SERVER_REJECTED_PENDING;
    if (ip != NULL && (ip->pending >= srv->lim.max_pending_per_ip ||
                       ip->pending + ip->established >= srv->lim.max_sessions_per_ip))
        return SERVER_REJECTED_IP;
    return -1;
}

/* Charges a connection that passed every cap to its address, under load only (threats.md N7):
 * last, so that a connection refused for another reason costs its address nothing. */
static bool rate_allows(struct server *srv, struct ip_entry *ip)
{
    return !load_update(srv) || ip_rate_bucket_take(&ip->bucket, uv_now(srv->loop));
}

static void reject(struct server *srv, uv_tcp_t *tcp, int why, const struct sockaddr_storage *sa)
{
    char addr[64];

    srv->counters[why]++;
    netaddr_format(sa, addr, sizeof addr);
    log_debug(srv->log, "connection refused", "remote_addr=%s reason=%s", addr,
              server_counter_name((enum server_counter)why));
    uv_close((uv_handle_t *)tcp, on_rejected_closed);
}

static void start_session(struct server *srv, uv_tcp_t *tcp, struct ip_entry *ip)
{
    struct server_session *ss = calloc(1, sizeof *ss);
    int rc;

    if (ss == NULL) {
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        ip_release_if_unused(srv, ip);
        uv_close((uv_handle_t *)tcp, on_rejected_closed);
        return;
    }
    ss->srv = srv;
    ss->ip = ip;
    ss->state = SS_PENDING;
    pending_add(srv, ip);
    list_add(srv, ss);
    uv_tcp_nodelay(tcp, 1);
    rc = dmsg_session_accept(srv->loop, tcp, srv->identity, &srv->lim.session, &session_callbacks,
                             ss, &ss->session);
    if (rc != 0) {
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        log_warn(srv->log, "cannot start a session", "err=\"%s\"", dmsg_strerror(rc));
        pending_sub(srv, ip);
        list_remove(srv, ss);
        free(ss);
        ip_release_if_unused(srv, ip);
        /* The session layer owns the handle only once it started closing it. */
        if (!uv_is_closing((uv_handle_t *)tcp))
            uv_close((uv_handle_t *)tcp, on_rejected_closed);
        return;
    }
    srv->counters[SERVER_ACCEPTED]++;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *srv = listener->data;
    struct sockaddr_storage sa;
    int sa_len = sizeof sa;
    struct ip_entry *ip;
    uv_tcp_t *tcp;
    int why;

    if (status < 0) {
        /* libuv already sheds the connection on EMFILE (its reserve-fd trick); keep going. */
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        log_warn(srv->log, "accept failed", "err=\"%s\"", uv_strerror(status));
        return;
    }
    tcp = calloc(1, sizeof *tcp);
    if (tcp == NULL || uv_tcp_init(srv->loop, tcp) != 0) {
        free(tcp);
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        return;
    }
    if (uv_accept(listener, (uv_stream_t *)tcp) != 0) {
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        uv_close((uv_handle_t *)tcp, on_rejected_closed);
        return;
    }
    memset(&sa, 0, sizeof sa);
    uv_tcp_getpeername(tcp, (struct sockaddr *)&sa, &sa_len);
    why = admission(srv, NULL);
    if (why >= 0) {
        reject(srv, tcp, why, &sa);
        return;
    }
    ip = ip_acquire(srv, &sa, uv_now(srv->loop));
    if (ip == NULL) {
        srv->counters[SERVER_ACCEPT_ERRORS]++;
        uv_close((uv_handle_t *)tcp, on_rejected_closed);
        return;
    }
    why = admission(srv, ip);
    if (why < 0 && !rate_allows(srv, ip))
        why = SERVER_REJECTED_RATE;
    if (why >= 0) {
        ip_release_if_unused(srv, ip);
        reject(srv, tcp, why, &sa);
        return;
    }
    start_session(srv, tcp, ip);
}

/* ---------------------------------------------------------------------------------------------
 * Public functions */

int server_init(uv_loop_t *loop, const dmsg_identity *identity, const struct server_limits *lim,
                struct relay *relay, const struct server_hooks *hooks,
                const struct dmsgd_log *log, struct server **out)
{
    struct server *srv = calloc(1, sizeof *srv);
    dmsg_rng rng = dmsg_rng_system();

    *out = NULL;
    if (srv == NULL)
        return DMSG_ENOMEM;
    srv->loop = loop;
    srv->identity = identity;
    srv->lim = *lim;
    srv->relay = relay;
    if (hooks != NULL)
        srv->hooks = *hooks;
    srv->log = log;
    ip_rate_load_init(&srv->load, uv_now(loop));
    if (keymap_init(&srv->by_pk, &rng) != 0 || keymap_init(&srv->by_ip, &rng) != 0) {
        keymap_free(&srv->by_pk);
        free(srv);
        return DMSG_ENOMEM;
    }
    *out = srv;
    return 0;
}

static int uv_to_dmsg(int uverr)
{
    switch (uverr) {
    case UV_EADDRINUSE: return DMSG_EEXIST;
    case UV_EACCES:
    case UV_EPERM: return DMSG_EPERM;
    case UV_EINVAL:
    case UV_EADDRNOTAVAIL: return DMSG_EINVAL;
    default: return DMSG_EIO;
    }
}

int server_listen(struct server *srv, const char *address, char *err, size_t err_cap)
{
    struct sockaddr_storage sa;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    int rc;

    if (srv->listener_open || srv->listener_closing)
        return DMSG_ESTATE;
    if (netaddr_listen_sockaddr(address, &sa) != 0) {
        snprintf(err, err_cap, "local_address \"%s\": not a numeric host:port", address);
        return DMSG_EINVAL;
    }
    rc = uv_tcp_init(srv->loop, &srv->listener);
    if (rc != 0) {
        snprintf(err, err_cap, "listener: %s", uv_strerror(rc));
        return DMSG_EIO;
    }
    srv->listener.data = srv;
    srv->listener_open = true;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
    if (rc != 0) {
        snprintf(err, err_cap, "cannot listen on %s: %s", address, uv_strerror(rc));
        return uv_to_dmsg(rc);
    }
    memset(&bound, 0, sizeof bound);
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len) == 0) {
        if (bound.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
        else if (bound.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    return 0;
}

uint16_t server_port(const struct server *srv)
{
    return srv->port;
}

void server_set_limits(struct server *srv, const struct server_limits *lim)
{
    srv->lim = *lim;
}

dmsg_session *server_find_session(const struct server *srv, const dmsg_pk *pk)
{
    struct server_session *ss = keymap_get(&srv->by_pk, pk->b, DMSG_PK_LEN);

    return ss != NULL ? ss->session : NULL;
}

size_t server_session_count(const struct server *srv)
{
    return srv->by_pk.count;
}

void server_foreach_session(const struct server *srv,
                            void (*fn)(dmsg_session *s, struct relay_session *rs, void *arg),
                            void *arg)
{
    for (struct server_session *ss = srv->sessions; ss != NULL; ss = ss->next) {
        if (ss->in_table)
            fn(ss->session, &ss->rs, arg);
    }
}

static void on_listener_closed(uv_handle_t *h)
{
    struct server *srv = h->data;

    srv->listener_closing = false;
    maybe_free(srv);
}

static void close_listener(struct server *srv)
{
    if (!srv->listener_open)
        return;
    srv->listener_open = false;
    srv->listener_closing = true;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}

void server_drain(struct server *srv)
{
    srv->draining = true;
    close_listener(srv);
    for (struct server_session *ss = srv->sessions; ss != NULL; ss = ss->next) {
        if (ss->state == SS_ESTABLISHED && ss->in_table)
            dmsg_session_goaway(ss->session);
    }
}

size_t server_stream_count(const struct server *srv)
{
    size_t n = 0;

    for (struct server_session *ss = srv->sessions; ss != NULL; ss = ss->next) {
        dmsg_session_stats st;
        if (ss->state != SS_ESTABLISHED)
            continue;
        dmsg_session_get_stats(ss->session, &st);
        n += st.streams;
    }
    return n;
}

void server_close_sessions(struct server *srv)
{
    struct server_session *ss, *next;

    srv->closing_sessions = true;
    if (srv->sessions == NULL) {
        if (srv->hooks.on_idle != NULL)
            srv->hooks.on_idle(srv->hooks.ctx);
        return;
    }
    /* on_close runs from the loop later, so the list stays valid while we walk it. */
    for (ss = srv->sessions; ss != NULL; ss = next) {
        next = ss->next;
        dmsg_session_close(ss->session, 0);
    }
}

int server_kick(struct server *srv, const dmsg_pk *pk)
{
    struct server_session *ss = keymap_get(&srv->by_pk, pk->b, DMSG_PK_LEN);

    if (ss == NULL)
        return DMSG_ENOTFOUND;
    dmsg_session_close(ss->session, DMSG_EPERM);
    return 0;
}

void server_get_stats(const struct server *srv, struct server_stats *out)
{
    memcpy(out->counters, srv->counters, sizeof out->counters);
    memcpy(out->handshake_failures, srv->handshake_failures, sizeof out->handshake_failures);
    out->established = srv->n_established;
    out->pending = srv->n_pending;
}

static void maybe_free(struct server *srv)
{
    void (*on_done)(void *arg);
    void *arg;

    if (!srv->freeing || srv->listener_closing || srv->sessions != NULL)
        return;
    on_done = srv->on_done;
    arg = srv->on_done_arg;
    while (srv->linger_head != NULL)
        ip_free(srv, srv->linger_head);
    keymap_free(&srv->by_pk);
    keymap_free(&srv->by_ip);
    free(srv);
    if (on_done != NULL)
        on_done(arg);
}

int server_close(struct server *srv, void (*on_done)(void *arg), void *arg)
{
    if (srv->sessions != NULL)
        return DMSG_ESTATE;
    srv->freeing = true;
    srv->on_done = on_done;
    srv->on_done_arg = arg;
    close_listener(srv);
    maybe_free(srv);
    return 0;
}
