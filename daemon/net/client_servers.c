/* Sessions to DMSG servers: address resolution, connect, the XK handshake (session.h), and
 * redials with capped exponential backoff and jitter. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"
#include "dmsg/error.h"

typedef struct resolve_req {
    uv_getaddrinfo_t req;
    dmsg_client *client;
    client_session *cs; /* NULL once abandoned (the session was dropped or the client closes) */
} resolve_req;

client_session *servers_find(dmsg_client *c, const dmsg_pk *pk)
{
    for (client_session *cs = c->sessions; cs; cs = cs->next)
        if (dmsg_pk_equal(&cs->pk, pk))
            return cs;
    return NULL;
}

client_session *servers_add(dmsg_client *c, const dmsg_pk *pk, const char *address,
                            cs_origin origin, int *err)
{
    if (c->n_sessions >= c->cfg.max_sessions) {
        *err = DMSG_ELIMIT;
        return NULL;
    }
    client_session *cs = calloc(1, sizeof *cs);
    if (!cs) {
        *err = DMSG_ENOMEM;
        return NULL;
    }
    cs->client = c;
    cs->pk = *pk;
    if (address)
        snprintf(cs->address, sizeof cs->address, "%s", address);
    cs->origin = origin;
    cs->state = CS_IDLE;
    cs->next = c->sessions;
    c->sessions = cs;
    c->n_sessions++;
    return cs;
}

static void unlink_session(dmsg_client *c, client_session *cs)
{
    for (client_session **pp = &c->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == cs) {
            *pp = cs->next;
            c->n_sessions--;
            break;
        }
    }
    if (cs->resolve) {
        cs->resolve->cs = NULL;
        uv_cancel((uv_req_t *)&cs->resolve->req);
    }
    if (cs->lookup)
        dmsg_disc_cancel(cs->lookup);
    free(cs);
}

/* Drops a server for good: at once when no session object exists, else when it is gone. */
static void drop_session(dmsg_client *c, client_session *cs)
{
    cs->removing = true;
    if (cs->s)
        dmsg_session_close(cs->s, 0);
    else
        unlink_session(c, cs);
}

size_t servers_up(const dmsg_client *c, dmsg_pk *out, size_t cap)
{
    size_t n = 0;
    for (const client_session *cs = c->sessions; cs; cs = cs->next) {
        if (cs->state != CS_UP)
            continue;
        if (n < cap)
            out[n] = cs->pk;
        n++;
    }
    return n;
}

/* Sessions that count towards min_sessions: all but those a dial opened. */
size_t servers_count_wanted(const dmsg_client *c)
{
    size_t n = 0;
    for (const client_session *cs = c->sessions; cs; cs = cs->next)
        if (cs->origin != CS_DIAL && !cs->removing)
            n++;
    return n;
}

/* A picked server that keeps failing is given up and another one picked; a dial stops waiting
 * for a server that failed this often in a row. */
#define FAILURES_MAX 3

/* A session is on its way up, or will be retried soon: a dial may wait for it. (Under load a
 * server may refuse some handshakes; the redial a second later usually works.) */
bool servers_any_pending(const dmsg_client *c)
{
    for (const client_session *cs = c->sessions; cs; cs = cs->next) {
        if (cs->removing)
            continue;
        if (cs->state == CS_RESOLVING || cs->state == CS_CONNECTING || cs->state == CS_IDLE)
            return true;
        if (cs->state == CS_BACKOFF && cs->failures < FAILURES_MAX)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Failure and backoff */

static void schedule_retry(dmsg_client *c, client_session *cs)
{
    uint32_t min = c->cfg.reconnect_min_ms, max = c->cfg.reconnect_max_ms;
    if (cs->backoff_ms == 0)
        cs->backoff_ms = min;
    else
        cs->backoff_ms = cs->backoff_ms > max / 2 ? max : cs->backoff_ms * 2;
    cs->state = CS_BACKOFF;
    cs->retry_at = client_now(c) + client_jitter(c, cs->backoff_ms);
    client_arm(c, cs->retry_at);
}

static void after_failure(dmsg_client *c, client_session *cs, int err, bool was_up)
{
    cs->last_err = err;
    cs->failures = was_up ? 1 : cs->failures + 1;
    if (c->closing || cs->removing) {
        unlink_session(c, cs);
        return;
    }
    switch (cs->origin) {
    case CS_FIXED:
    case CS_ADDED:
        schedule_retry(c, cs);
        break;
    case CS_PICKED:
        if (cs->failures >= FAILURES_MAX) {
            disc_server_failed(c, &cs->pk);
            unlink_session(c, cs);
            disc_want_pick(c, 0);
        } else {
            schedule_retry(c, cs);
        }
        break;
    case CS_DIAL:
        unlink_session(c, cs);
        break;
    }
}

/* Resolution or lookup failed before any session object existed. */
static void start_failed(dmsg_client *c, client_session *cs, int err)
{
    dmsg_pk pk = cs->pk;
    after_failure(c, cs, err, false);
    client_event(c, DMSG_CLIENT_SESSION_FAILED, &pk, err);
    dials_sessions_changed(c);
}

/* ---------------------------------------------------------------------------------------------
 * Session callbacks */

static int on_session_ready(dmsg_session *s, void *ctx)
{
    client_session *cs = ctx;
    dmsg_client *c = cs->client;
    (void)s;
    if (c->closing || cs->removing)
        return DMSG_ECLOSED;
    cs->state = CS_UP;
    cs->failures = 0;
    cs->backoff_ms = 0;
    cs->last_err = 0;
    client_event(c, DMSG_CLIENT_SESSION_UP, &cs->pk, 0);
    disc_sessions_changed(c);
    dials_sessions_changed(c);
    return 0;
}

static void on_session_stream(dmsg_session *s, dmsg_stream *st, void *ctx)
{
    client_session *cs = ctx;
    conn_accept_stream(cs->client, s, st, &cs->pk);
}

static void on_session_close(dmsg_session *s, int err, void *ctx)
{
    client_session *cs = ctx;
    dmsg_client *c = cs->client;
    (void)s;
    bool was_up = cs->state == CS_UP;
    dmsg_pk pk = cs->pk;
    cs->s = NULL;
    cs->state = CS_IDLE;
    if (err == 0 && !was_up)
        err = DMSG_ECLOSED;
    after_failure(c, cs, err, was_up);
    if (!c->closing) {
        client_event(c, was_up ? DMSG_CLIENT_SESSION_DOWN : DMSG_CLIENT_SESSION_FAILED, &pk,
                     err);
        if (was_up)
            disc_sessions_changed(c);
        dials_sessions_changed(c);
    }
    client_maybe_finish_close(c);
}

static const dmsg_session_callbacks session_callbacks = {
    .on_ready = on_session_ready,
    .on_stream = on_session_stream,
    .on_close = on_session_close,
};

static void connect_to(dmsg_client *c, client_session *cs, const struct sockaddr *addr)
{
    cs->state = CS_CONNECTING;
    int err = dmsg_session_connect(c->loop, addr, &c->id, &cs->pk, &c->cfg.session,
                                   &session_callbacks, cs, &cs->s);
    if (err < 0) {
        cs->s = NULL;
        start_failed(c, cs, err);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Address resolution */

/* Splits "host:port" / "[v6]:port" into host (without brackets) and port text. */
static int split_host_port(const char *address, char *host, size_t host_cap, const char **port)
{
    const char *colon = strrchr(address, ':');
    if (!colon || !colon[1])
        return DMSG_EINVAL;
    const char *h = address;
    size_t hlen = (size_t)(colon - address);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= host_cap)
        return DMSG_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = colon + 1;
    return 0;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *rr = (resolve_req *)req;
    dmsg_client *c = rr->client;
    client_session *cs = rr->cs;
    c->pending_closes--;
    if (cs) {
        cs->resolve = NULL;
        if (status < 0 || !res)
            start_failed(c, cs, DMSG_EIO);
        else
            connect_to(c, cs, res->ai_addr);
    }
    uv_freeaddrinfo(res);
    free(rr);
    client_maybe_finish_close(c);
}

static void resolve_and_connect(dmsg_client *c, client_session *cs)
{
    char host[DMSG_CLIENT_ADDRESS_MAX + 1];
    const char *port_text;
    if (split_host_port(cs->address, host, sizeof host, &port_text) < 0) {
        start_failed(c, cs, DMSG_EINVAL);
        return;
    }
    int port = atoi(port_text);
    struct sockaddr_storage ss;
    if (port > 0 && port < 65536 &&
        (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0 ||
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0)) {
        connect_to(c, cs, (const struct sockaddr *)&ss);
        return;
    }
    resolve_req *rr = calloc(1, sizeof *rr);
    if (!rr) {
        start_failed(c, cs, DMSG_ENOMEM);
        return;
    }
    rr->client = c;
    rr->cs = cs;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    cs->state = CS_RESOLVING;
    if (uv_getaddrinfo(c->loop, &rr->req, on_resolved, host, port_text, &hints) < 0) {
        free(rr);
        start_failed(c, cs, DMSG_EIO);
        return;
    }
    cs->resolve = rr;
    c->pending_closes++;
}

void servers_start(dmsg_client *c, client_session *cs)
{
    if (c->closing || cs->s || cs->resolve || cs->lookup)
        return;
    if (cs->address[0]) {
        resolve_and_connect(c, cs);
        return;
    }
    cs->state = CS_RESOLVING;
    int err = disc_lookup_server(c, cs);
    if (err < 0)
        start_failed(c, cs, err);
}

/* The discovery told us a server's address (or why not). */
void servers_address_found(client_session *cs, const char *address, int err)
{
    dmsg_client *c = cs->client;
    cs->lookup = NULL;
    if (err == 0 && strlen(address) > DMSG_CLIENT_ADDRESS_MAX)
        err = DMSG_ETOOBIG;
    if (err < 0) {
        start_failed(c, cs, err);
        return;
    }
    snprintf(cs->address, sizeof cs->address, "%s", address);
    resolve_and_connect(c, cs);
}

void servers_tick(dmsg_client *c, uint64_t now, uint64_t *next_due)
{
    client_session *cs = c->sessions;
    while (cs) {
        client_session *next = cs->next; /* a failed start may free cs */
        if (cs->state == CS_BACKOFF) {
            if (cs->retry_at <= now)
                servers_start(c, cs);
            else if (cs->retry_at < *next_due)
                *next_due = cs->retry_at;
        }
        cs = next;
    }
}

void servers_close_all(dmsg_client *c)
{
    client_session *cs = c->sessions;
    while (cs) {
        client_session *next = cs->next;
        drop_session(c, cs);
        cs = next;
    }
}
