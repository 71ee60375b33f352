/* yamux core: header codec against every captured frame, Go's step sequence, the relayed
 * stream transcripts of stream.json, two sessions back to back, malformed input, keepalive,
 * limits and the stream table. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/yamux.h"
#include "vectors.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers: a growable byte buffer (one direction of the wire), an event log, a peer. */

typedef struct bytes {
    uint8_t *b;
    size_t len, cap;
} bytes;

static void bytes_put(bytes *w, const uint8_t *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->b = realloc(w->b, w->cap);
        cr_assert_not_null(w->b);
    }
    if (n)
        memcpy(w->b + w->len, p, n);
    w->len += n;
}

static void bytes_free(bytes *w)
{
    free(w->b);
    *w = (bytes){0};
}

typedef struct logged {
    dmsg_yamux_event_type type;
    uint32_t id;
    size_t off, len; /* DATA: slice of the log's data buffer */
    bool closed;
    uint32_t value;  /* WINDOW: send window; PING/PONG: id; GOAWAY: code */
    int reason;
} logged;

typedef struct evlog {
    logged *ev;
    size_t n, cap, next;
    size_t sealed; /* events before this index take no more merged data */
    bytes data;
} evlog;

static void log_free(evlog *log)
{
    free(log->ev);
    bytes_free(&log->data);
}

/* Consecutive DATA events of one stream merge, so logs compare equal however input was split. */
static void log_event(evlog *log, const dmsg_yamux_event *ev)
{
    if (ev->type == DMSG_YAMUX_EV_DATA && log->n > log->sealed) {
        logged *last = &log->ev[log->n - 1];
        if (last->type == DMSG_YAMUX_EV_DATA && last->id == ev->stream_id &&
            last->off + last->len == log->data.len) {
            bytes_put(&log->data, ev->data, ev->len);
            last->len += ev->len;
            return;
        }
    }
    if (log->n == log->cap) {
        log->cap = log->cap * 2 + 64;
        log->ev = realloc(log->ev, log->cap * sizeof *log->ev);
        cr_assert_not_null(log->ev);
    }
    logged *l = &log->ev[log->n++];
    *l = (logged){.type = ev->type, .id = ev->stream_id, .closed = ev->closed,
                  .reason = ev->reason};
    switch (ev->type) {
    case DMSG_YAMUX_EV_DATA:
        l->off = log->data.len;
        l->len = ev->len;
        bytes_put(&log->data, ev->data, ev->len);
        break;
    case DMSG_YAMUX_EV_WINDOW: l->value = ev->send_window; break;
    case DMSG_YAMUX_EV_PING:
    case DMSG_YAMUX_EV_PONG: l->value = ev->ping_id; break;
    case DMSG_YAMUX_EV_GOAWAY: l->value = ev->goaway_code; break;
    default: break;
    }
}

static bool logs_equal(const evlog *a, const evlog *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const logged *x = &a->ev[i], *y = &b->ev[i];
        if (x->type != y->type || x->id != y->id || x->len != y->len || x->closed != y->closed ||
            x->value != y->value || x->reason != y->reason)
            return false;
        if (x->len && memcmp(a->data.b + x->off, b->data.b + y->off, x->len) != 0)
            return false;
    }
    return true;
}

typedef struct peer {
    dmsg_yamux y;
    evlog log;
    bytes out;        /* every byte this side sent */
    size_t delivered; /* how much of out the other side has been fed */
    size_t step_mark; /* start of the current step's output (Go step replay) */
    bool auto_accept, auto_consume;
    uint64_t now;
} peer;

static peer *peer_new(dmsg_yamux_role role, const dmsg_yamux_config *cfg)
{
    peer *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    cr_assert_eq(dmsg_yamux_init(&p->y, role, cfg, 0), 0);
    return p;
}

static void peer_free(peer *p)
{
    dmsg_yamux_destroy(&p->y);
    bytes_free(&p->out);
    log_free(&p->log);
    free(p);
}

static void send_hdr(peer *p, const uint8_t frame[DMSG_YAMUX_HDR_LEN])
{
    bytes_put(&p->out, frame, DMSG_YAMUX_HDR_LEN);
}

static void on_event(peer *p, const dmsg_yamux_event *ev)
{
    log_event(&p->log, ev);
    if (ev->reply_len)
        bytes_put(&p->out, ev->reply, ev->reply_len);
    uint8_t frame[DMSG_YAMUX_HDR_LEN];
    if (ev->type == DMSG_YAMUX_EV_OPENED && p->auto_accept) {
        cr_assert_eq(dmsg_yamux_accept(&p->y, ev->stream_id, frame), 0);
        send_hdr(p, frame);
    }
    if (ev->type == DMSG_YAMUX_EV_DATA && p->auto_consume) {
        size_t flen;
        cr_assert_eq(dmsg_yamux_consume(&p->y, ev->stream_id, (uint32_t)ev->len, frame, &flen), 0);
        if (flen)
            send_hdr(p, frame);
    }
}

/* Feeds buf to p in chunks of at most chunk bytes; returns the first error or 0. */
static int feed_chunked(peer *p, const uint8_t *buf, size_t len, size_t chunk)
{
    size_t off = 0;
    do {
        size_t n = len - off < chunk ? len - off : chunk;
        const uint8_t *q = buf + off;
        size_t left = n;
        for (;;) {
            size_t used;
            dmsg_yamux_event ev;
            int r = dmsg_yamux_feed(&p->y, q, left, p->now, &used, &ev);
            cr_assert_leq(used, left);
            if (r < 0)
                return r;
            q += used;
            left -= used;
            if (ev.type == DMSG_YAMUX_EV_NONE) {
                cr_assert_eq(left, 0, "NONE must mean the chunk is consumed");
                break;
            }
            on_event(p, &ev);
        }
        off += n;
    } while (off < len);
    return 0;
}

static int feed(peer *p, const uint8_t *buf, size_t len)
{
    return feed_chunked(p, buf, len, len ? len : 1);
}

/* Delivers what from sent since the last delivery to to. */
static int pump(peer *from, peer *to)
{
    size_t n = from->out.len - from->delivered;
    const uint8_t *p = from->out.b + from->delivered;
    from->delivered = from->out.len;
    return n ? feed(to, p, n) : 0;
}

static const logged *next_event(peer *p)
{
    cr_assert_lt(p->log.next, p->log.n, "expected another event (have %zu)", p->log.n);
    return &p->log.ev[p->log.next++];
}

static void expect_event(peer *p, dmsg_yamux_event_type type, uint32_t id)
{
    const logged *e = next_event(p);
    cr_assert_eq(e->type, type, "event type %d, expected %d", e->type, type);
    cr_assert_eq(e->id, id, "stream %u, expected %u", e->id, id);
}

static void expect_no_event(peer *p)
{
    cr_assert_eq(p->log.next, p->log.n, "unexpected event type %d",
                 p->log.next < p->log.n ? (int)p->log.ev[p->log.next].type : -1);
}

static const uint8_t *event_data(peer *p, const logged *e)
{
    return p->log.data.b + e->off;
}

static void frame_of(uint8_t out[DMSG_YAMUX_HDR_LEN], uint8_t type, uint16_t flags, uint32_t id,
                     uint32_t len)
{
    dmsg_yamux_hdr h = {0, type, flags, id, len};
    dmsg_yamux_hdr_encode(&h, out);
}

static int feed_frame(peer *p, uint8_t type, uint16_t flags, uint32_t id, uint32_t len)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    frame_of(f, type, flags, id, len);
    return feed(p, f, sizeof f);
}

/* Sends up to n bytes of buf on stream id as the window allows; returns the bytes sent. */
static size_t send_data(peer *p, uint32_t id, const uint8_t *buf, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        uint8_t hdr[DMSG_YAMUX_HDR_LEN];
        uint32_t granted;
        int r = dmsg_yamux_data_frame(&p->y, id, n - sent, hdr, &granted);
        if (r == DMSG_EAGAIN)
            break;
        cr_assert_eq(r, 0, "data_frame: %s", dmsg_strerror(r));
        cr_assert_gt(granted, 0);
        send_hdr(p, hdr);
        bytes_put(&p->out, buf + sent, granted);
        sent += granted;
    }
    return sent;
}

/* The bytes of a captured frame: header, then the body (hex, or the documented 'A' filler). */
static void vector_frame_bytes(json_t *frame, bytes *out)
{
    uint8_t hdr[DMSG_YAMUX_HDR_LEN];
    vec_hex_exact(frame, "header", hdr, sizeof hdr);
    bytes_put(out, hdr, sizeof hdr);
    if (json_integer_value(json_object_get(frame, "type")) != DMSG_YAMUX_DATA)
        return;
    size_t len = (size_t)json_integer_value(json_object_get(frame, "length"));
    if (json_object_get(frame, "body")) {
        size_t n;
        uint8_t *body = vec_hex(frame, "body", &n);
        cr_assert_eq(n, len);
        bytes_put(out, body, n);
        free(body);
    } else {
        cr_assert_not_null(json_object_get(frame, "body_note"));
        uint8_t *fill = malloc(len);
        memset(fill, 'A', len);
        bytes_put(out, fill, len);
        free(fill);
    }
}

static void vector_list_bytes(json_t *list, bytes *out)
{
    size_t i;
    json_t *f;
    json_array_foreach(list, i, f) vector_frame_bytes(f, out);
}

static uint32_t jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    cr_assert(json_is_integer(v), "missing %s", key);
    return (uint32_t)json_integer_value(v);
}

/* ---------------------------------------------------------------------------------------------
 * Header codec */

static size_t check_frame_list(json_t *list)
{
    size_t i, n = 0;
    json_t *f;
    json_array_foreach(list, i, f) {
        uint8_t raw[DMSG_YAMUX_HDR_LEN], again[DMSG_YAMUX_HDR_LEN];
        vec_hex_exact(f, "header", raw, sizeof raw);
        dmsg_yamux_hdr h;
        cr_assert_eq(dmsg_yamux_hdr_decode(raw, sizeof raw, &h), 0);
        cr_assert_eq(h.version, jint(f, "version"));
        cr_assert_eq(h.type, jint(f, "type"));
        cr_assert_eq(h.flags, jint(f, "flags"));
        cr_assert_eq(h.stream_id, jint(f, "stream_id"));
        cr_assert_eq(h.length, jint(f, "length"));
        dmsg_yamux_hdr_encode(&h, again);
        cr_assert_arr_eq(again, raw, sizeof raw);
        n++;
    }
    return n;
}

Test(yamux_frame, every_captured_frame_round_trips)
{
    json_t *ym = vec_load("yamux.json"), *st = vec_load("stream.json");
    size_t n = check_frame_list(vec_get(ym, "constructed")), i;
    json_t *step;
    json_array_foreach(vec_get(ym, "steps"), i, step) {
        n += check_frame_list(json_object_get(step, "client_to_server"));
        n += check_frame_list(json_object_get(step, "server_to_client"));
    }
    const char *lists[] = {"wire_session_a.client_to_server_yamux",
                           "wire_session_a.server_to_client_yamux",
                           "wire_session_b.client_to_server_yamux",
                           "wire_session_b.server_to_client_yamux"};
    for (size_t k = 0; k < 4; k++)
        n += check_frame_list(vec_get(st, lists[k]));
    cr_assert_gt(n, 30);
    json_decref(ym);
    json_decref(st);
}

Test(yamux_frame, decode_rejects_short_version_type)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN] = {0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0};
    dmsg_yamux_hdr h;
    for (size_t n = 0; n < DMSG_YAMUX_HDR_LEN; n++)
        cr_assert_eq(dmsg_yamux_hdr_decode(f, n, &h), DMSG_ESHORT);
    f[0] = 1;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, sizeof f, &h), DMSG_EVERSION);
    f[0] = 0;
    f[1] = 4;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, sizeof f, &h), DMSG_ETYPE);
    f[1] = 0xff;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, sizeof f, &h), DMSG_ETYPE);
}

Test(yamux_config, defaults_are_go_default_config)
{
    json_t *ym = vec_load("yamux.json");
    json_t *c = vec_get(ym, "config");
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cr_assert_eq(cfg.accept_backlog, jint(c, "AcceptBacklog"));
    cr_assert_eq(cfg.keepalive_timeout_ms, jint(c, "ConnectionWriteTimeout_s") * 1000);
    cr_assert_eq(cfg.enable_keepalive, json_is_true(json_object_get(c, "EnableKeepAlive")));
    cr_assert_eq(cfg.keepalive_interval_ms, jint(c, "KeepAliveInterval_s") * 1000);
    cr_assert_eq(cfg.stream_window, jint(c, "MaxStreamWindowSize"));
    cr_assert_eq(cfg.stream_window, jint(c, "initialStreamWindow"));
    cr_assert_eq(cfg.stream_close_timeout_ms, jint(c, "StreamCloseTimeout_s") * 1000);
    cr_assert_eq(cfg.stream_open_timeout_ms, jint(c, "StreamOpenTimeout_s") * 1000);
    json_decref(ym);
}

Test(yamux_config, invalid_configs_rejected)
{
    dmsg_yamux y;
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cr_assert_eq(dmsg_yamux_init(&y, (dmsg_yamux_role)7, &cfg, 0), DMSG_EINVAL);
    cfg.max_streams = 0;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0), DMSG_EINVAL);
    dmsg_yamux_config_default(&cfg);
    cfg.max_send_window = cfg.stream_window - 1;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0), DMSG_EINVAL);
    dmsg_yamux_config_default(&cfg);
    cfg.keepalive_interval_ms = 0;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0), DMSG_EINVAL);
    cfg.enable_keepalive = false;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, &cfg, 0), 0);
    dmsg_yamux_destroy(&y);
}

/* ---------------------------------------------------------------------------------------------
 * Go's step sequence (yamux.json steps): each step's API calls must produce exactly the bytes
 * Go wrote, in both directions, and the peer must report the matching events. */

typedef struct go_replay {
    json_t *root;
    peer *c, *s;
    size_t step;
} go_replay;

static void step_begin(go_replay *g)
{
    g->c->log.sealed = g->c->log.n; /* each step's data is its own event */
    g->s->log.sealed = g->s->log.n;
    g->c->step_mark = g->c->out.len;
    g->s->step_mark = g->s->out.len;
}

static void step_expect_dir(go_replay *g, peer *p, const char *dir)
{
    char path[64];
    snprintf(path, sizeof path, "steps.%zu.%s", g->step, dir);
    json_t *list = vec_get(g->root, path);
    bytes want = {0};
    if (!json_is_null(list))
        vector_list_bytes(list, &want);
    size_t got = p->out.len - p->step_mark;
    cr_assert_eq(got, want.len, "step %zu %s: %zu bytes, Go wrote %zu", g->step, dir, got,
                 want.len);
    if (want.len)
        cr_assert_arr_eq(p->out.b + p->step_mark, want.b, want.len, "step %zu %s differs", g->step,
                         dir);
    bytes_free(&want);
}

static void step_end(go_replay *g)
{
    step_expect_dir(g, g->c, "client_to_server");
    step_expect_dir(g, g->s, "server_to_client");
    g->step++;
}

static void step_open(go_replay *g, peer *opener, peer *acceptor, uint32_t want_id)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    step_begin(g);
    cr_assert_eq(dmsg_yamux_open(&opener->y, NULL, &id, f), 0);
    cr_assert_eq(id, want_id);
    send_hdr(opener, f);
    cr_assert_eq(pump(opener, acceptor), 0);
    expect_event(acceptor, DMSG_YAMUX_EV_OPENED, id);
    step_end(g);
}

static void step_accept(go_replay *g, peer *acceptor, peer *opener, uint32_t id)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    step_begin(g);
    cr_assert_eq(dmsg_yamux_accept(&acceptor->y, id, f), 0);
    send_hdr(acceptor, f);
    cr_assert_eq(pump(acceptor, opener), 0);
    expect_event(opener, DMSG_YAMUX_EV_ACCEPTED, id);
    step_end(g);
}

/* The step's payload as Go wrote it. */
static bytes step_payload(go_replay *g, const char *dir)
{
    char path[64];
    snprintf(path, sizeof path, "steps.%zu.%s", g->step, dir);
    bytes all = {0}, body = {0};
    vector_list_bytes(vec_get(g->root, path), &all);
    bytes_put(&body, all.b + DMSG_YAMUX_HDR_LEN, all.len - DMSG_YAMUX_HDR_LEN);
    bytes_free(&all);
    return body;
}

/* w writes the step's payload; r consumes it and sends whatever credit that earns (Go's
 * captured bytes for the step say whether there must be any). */
static void step_write(go_replay *g, peer *w, peer *r, const char *dir, uint32_t id)
{
    bytes body = step_payload(g, dir);
    step_begin(g);
    cr_assert_eq(send_data(w, id, body.b, body.len), body.len);
    cr_assert_eq(pump(w, r), 0);
    const logged *e = next_event(r);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_DATA);
    cr_assert_eq(e->len, body.len);
    cr_assert_arr_eq(event_data(r, e), body.b, body.len);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    cr_assert_eq(dmsg_yamux_consume(&r->y, id, (uint32_t)body.len, f, &flen), 0);
    if (flen)
        send_hdr(r, f);
    bytes_free(&body);
    step_end(g);
}

static void step_close(go_replay *g, peer *closer, peer *other, uint32_t id, bool gone_after)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    dmsg_yamux_stream_info info;
    step_begin(g);
    cr_assert_eq(dmsg_yamux_close(&closer->y, id, f), 0);
    send_hdr(closer, f);
    cr_assert_eq(dmsg_yamux_stream_info_get(&closer->y, id, &info), gone_after ? DMSG_ESTREAM : 0);
    cr_assert_eq(pump(closer, other), 0);
    const logged *e = next_event(other);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_FIN);
    cr_assert_eq(e->closed, gone_after);
    step_end(g);
}

static void step_ping(go_replay *g, peer *pinger, peer *other, uint32_t want_id)
{
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    step_begin(g);
    cr_assert_eq(dmsg_yamux_ping(&pinger->y, pinger->now, f, &id), 0);
    cr_assert_eq(id, want_id);
    send_hdr(pinger, f);
    cr_assert_eq(pump(pinger, other), 0); /* the event handler sends the pong */
    const logged *e = next_event(other);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_PING);
    cr_assert_eq(e->value, want_id);
    cr_assert_eq(pump(other, pinger), 0);
    e = next_event(pinger);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_PONG);
    cr_assert_eq(e->value, want_id);
    step_end(g);
}

Test(yamux_go, step_sequence_reproduced)
{
    go_replay g = {.root = vec_load("yamux.json")};
    g.c = peer_new(DMSG_YAMUX_CLIENT, NULL);
    g.s = peer_new(DMSG_YAMUX_SERVER, NULL);
    cr_assert_eq(json_array_size(vec_get(g.root, "steps")), 16, "script covers 16 steps");
    uint32_t window = 262144;

    step_open(&g, g.c, g.s, 1);                                        /* 0 */
    step_accept(&g, g.s, g.c, 1);                                      /* 1 */
    step_write(&g, g.c, g.s, "client_to_server", 1);                   /* 2: 'hello', no credit */
    /* 3: 200000 bytes; consuming them (plus the 5 before) crosses half the window */
    {
        bytes body = {0};
        uint8_t *fill = malloc(200000);
        memset(fill, 'A', 200000);
        bytes_put(&body, fill, 200000);
        free(fill);
        step_begin(&g);
        cr_assert_eq(send_data(g.c, 1, body.b, body.len), body.len);
        cr_assert_eq(pump(g.c, g.s), 0);
        const logged *e = next_event(g.s);
        cr_assert_eq(e->type, DMSG_YAMUX_EV_DATA);
        cr_assert_eq(e->len, 200000);
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        size_t flen;
        dmsg_yamux_stream_info info;
        cr_assert_eq(dmsg_yamux_stream_info_get(&g.s->y, 1, &info), 0);
        cr_assert_eq(info.uncredited, 5, "'hello' was consumed in step 2, not yet credited");
        cr_assert_eq(dmsg_yamux_consume(&g.s->y, 1, 200000, f, &flen), 0);
        cr_assert_eq(flen, DMSG_YAMUX_HDR_LEN);
        send_hdr(g.s, f);
        cr_assert_eq(pump(g.s, g.c), 0);
        e = next_event(g.c);
        cr_assert_eq(e->type, DMSG_YAMUX_EV_WINDOW);
        cr_assert_eq(e->value, window, "credit restores the full window");
        bytes_free(&body);
        step_end(&g);
    }
    step_write(&g, g.s, g.c, "server_to_client", 1);                   /* 4: 'world' */
    step_close(&g, g.c, g.s, 1, false);                                /* 5 */
    step_close(&g, g.s, g.c, 1, true);                                 /* 6 */
    step_open(&g, g.s, g.c, 2);                                        /* 7 */
    step_accept(&g, g.c, g.s, 2);                                      /* 8 */
    step_ping(&g, g.c, g.s, 0);                                        /* 9 */
    step_ping(&g, g.s, g.c, 0);                                        /* 10 */
    step_ping(&g, g.c, g.s, 1);                                        /* 11 */
    {                                                                  /* 12: FIN both ways */
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        step_begin(&g);
        cr_assert_eq(dmsg_yamux_close(&g.c->y, 2, f), 0);
        send_hdr(g.c, f);
        cr_assert_eq(dmsg_yamux_close(&g.s->y, 2, f), 0);
        send_hdr(g.s, f);
        cr_assert_eq(pump(g.c, g.s), 0);
        cr_assert_eq(pump(g.s, g.c), 0);
        const logged *e = next_event(g.s);
        cr_assert(e->type == DMSG_YAMUX_EV_FIN && e->closed);
        e = next_event(g.c);
        cr_assert(e->type == DMSG_YAMUX_EV_FIN && e->closed);
        dmsg_yamux_stats st;
        dmsg_yamux_get_stats(&g.c->y, &st);
        cr_assert_eq(st.streams, 0);
        cr_assert_eq(st.table_slots, 0, "an idle session holds no table");
        dmsg_yamux_get_stats(&g.s->y, &st);
        cr_assert_eq(st.streams, 0);
        step_end(&g);
    }
    {                                                                  /* 13: client GoAway */
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        uint32_t id;
        step_begin(&g);
        cr_assert_eq(dmsg_yamux_goaway(&g.c->y, DMSG_YAMUX_GOAWAY_NORMAL, f), 0);
        send_hdr(g.c, f);
        cr_assert_eq(pump(g.c, g.s), 0);
        const logged *e = next_event(g.s);
        cr_assert_eq(e->type, DMSG_YAMUX_EV_GOAWAY);
        cr_assert_eq(e->value, 0);
        cr_assert_eq(dmsg_yamux_open(&g.s->y, NULL, &id, f), DMSG_EGOAWAY);
        step_end(&g);
    }
    {                          /* 14: a SYN injected after the client's GoAway is refused */
        bytes inj = {0};
        vector_list_bytes(vec_get(g.root, "steps.14.server_to_client"), &inj);
        step_begin(&g);
        bytes_put(&g.s->out, inj.b, inj.len);
        cr_assert_eq(pump(g.s, g.c), 0);
        const logged *e = next_event(g.c);
        cr_assert_eq(e->type, DMSG_YAMUX_EV_REFUSED);
        cr_assert_eq(e->id, 4);
        cr_assert_eq(e->reason, DMSG_EGOAWAY);
        bytes_free(&inj);
        step_end(&g);
    }
    step_begin(&g);                                                    /* 15: nothing on close */
    step_end(&g);
    expect_no_event(g.c);
    expect_no_event(g.s);
    peer_free(g.c);
    peer_free(g.s);
    json_decref(g.root);
}

/* ---------------------------------------------------------------------------------------------
 * The relayed stream of stream.json: both TCP connections, every frame. */

typedef struct transcript {
    json_t *opener_list, *acceptor_list;
    dmsg_yamux_role opener_role;
} transcript;

static transcript transcript_of(json_t *st, const char *session)
{
    char a[96], b[96];
    snprintf(a, sizeof a, "%s.client_to_server_yamux", session);
    snprintf(b, sizeof b, "%s.server_to_client_yamux", session);
    json_t *c2s = vec_get(st, a), *s2c = vec_get(st, b);
    cr_assert_not_null(c2s);
    cr_assert_not_null(s2c);
    bool client_opens = jint(json_array_get(c2s, 0), "flags") & DMSG_YAMUX_SYN;
    return (transcript){client_opens ? c2s : s2c, client_opens ? s2c : c2s,
                        client_opens ? DMSG_YAMUX_CLIENT : DMSG_YAMUX_SERVER};
}

/* Makes p produce the captured frame f through the API (the bytes land in p->out). */
static void produce_frame(peer *p, json_t *f)
{
    uint32_t type = jint(f, "type"), flags = jint(f, "flags"), id = jint(f, "stream_id");
    uint8_t hdr[DMSG_YAMUX_HDR_LEN];
    if (type == DMSG_YAMUX_DATA) {
        bytes raw = {0};
        vector_frame_bytes(f, &raw);
        cr_assert_eq(send_data(p, id, raw.b + DMSG_YAMUX_HDR_LEN, raw.len - DMSG_YAMUX_HDR_LEN),
                     raw.len - DMSG_YAMUX_HDR_LEN);
        bytes_free(&raw);
        return;
    }
    cr_assert_eq(type, DMSG_YAMUX_WINDOW_UPDATE);
    if (flags == DMSG_YAMUX_SYN) {
        uint32_t got;
        cr_assert_eq(dmsg_yamux_open(&p->y, NULL, &got, hdr), 0);
        cr_assert_eq(got, id);
    } else if (flags == DMSG_YAMUX_ACK) {
        cr_assert_eq(dmsg_yamux_accept(&p->y, id, hdr), 0);
    } else {
        cr_assert_eq(flags, DMSG_YAMUX_FIN);
        cr_assert_eq(dmsg_yamux_close(&p->y, id, hdr), 0);
    }
    send_hdr(p, hdr);
}

/* What a receiver must report for the captured frame f. */
static void expected_events(evlog *log, json_t *f, bool receiver_closed)
{
    uint32_t flags = jint(f, "flags"), id = jint(f, "stream_id");
    dmsg_yamux_event ev = {.stream_id = id};
    if (flags & DMSG_YAMUX_SYN) {
        ev.type = DMSG_YAMUX_EV_OPENED;
        log_event(log, &ev);
    }
    if (flags & DMSG_YAMUX_ACK) {
        ev.type = DMSG_YAMUX_EV_ACCEPTED;
        log_event(log, &ev);
    }
    if (jint(f, "type") == DMSG_YAMUX_DATA) {
        bytes raw = {0};
        vector_frame_bytes(f, &raw);
        ev.type = DMSG_YAMUX_EV_DATA;
        ev.data = raw.b + DMSG_YAMUX_HDR_LEN;
        ev.len = raw.len - DMSG_YAMUX_HDR_LEN;
        log_event(log, &ev);
        bytes_free(&raw);
    }
    if (flags & DMSG_YAMUX_FIN) {
        ev.type = DMSG_YAMUX_EV_FIN;
        ev.closed = receiver_closed;
        log_event(log, &ev);
    }
}

/* The conversation in its real order (the two lists alternate, §6.1 of the spec): each side's
 * API output equals the captured bytes, and each side reports the captured frames. */
static void replay_conversation(json_t *st, const char *session)
{
    transcript t = transcript_of(st, session);
    dmsg_yamux_role acceptor_role =
        t.opener_role == DMSG_YAMUX_CLIENT ? DMSG_YAMUX_SERVER : DMSG_YAMUX_CLIENT;
    peer *op = peer_new(t.opener_role, NULL), *ac = peer_new(acceptor_role, NULL);
    size_t n = json_array_size(t.opener_list);
    cr_assert_eq(n, json_array_size(t.acceptor_list));
    evlog *want_op = calloc(1, sizeof *want_op), *want_ac = calloc(1, sizeof *want_ac);
    bool op_closed = false, ac_closed = false;
    for (size_t i = 0; i < n; i++) {
        json_t *fo = json_array_get(t.opener_list, i), *fa = json_array_get(t.acceptor_list, i);
        struct {
            peer *from, *to;
            json_t *f;
            bool *from_closed, *to_closed;
            evlog *want;
        } turn[2] = {{op, ac, fo, &op_closed, &ac_closed, want_ac},
                     {ac, op, fa, &ac_closed, &op_closed, want_op}};
        for (size_t k = 0; k < 2; k++) {
            size_t mark = turn[k].from->out.len;
            produce_frame(turn[k].from, turn[k].f);
            bytes want = {0};
            vector_frame_bytes(turn[k].f, &want);
            cr_assert_eq(turn[k].from->out.len - mark, want.len);
            cr_assert_arr_eq(turn[k].from->out.b + mark, want.b, want.len, "%s frame %zu",
                             session, i);
            bytes_free(&want);
            if (jint(turn[k].f, "flags") & DMSG_YAMUX_FIN)
                *turn[k].from_closed = true;
            expected_events(turn[k].want, turn[k].f, *turn[k].to_closed);
            cr_assert_eq(pump(turn[k].from, turn[k].to), 0);
        }
    }
    cr_assert(logs_equal(&ac->log, want_ac), "%s: acceptor events differ", session);
    cr_assert(logs_equal(&op->log, want_op), "%s: opener events differ", session);
    dmsg_yamux_stats st_op, st_ac;
    dmsg_yamux_get_stats(&op->y, &st_op);
    dmsg_yamux_get_stats(&ac->y, &st_ac);
    cr_assert_eq(st_op.streams + st_ac.streams, 0, "both FINs seen: stream gone on both sides");
    log_free(want_op);
    log_free(want_ac);
    free(want_op);
    free(want_ac);
    peer_free(op);
    peer_free(ac);
}

Test(yamux_transcript, relayed_stream_both_sessions)
{
    json_t *st = vec_load("stream.json");
    replay_conversation(st, "wire_session_a");
    replay_conversation(st, "wire_session_b");
    json_decref(st);
}

/* One direction of a captured connection fed into a fresh receiver, split everywhere. The
 * receiver of the acceptor's frames first opens the stream itself (it is the opener). */
static peer *fresh_receiver(dmsg_yamux_role role, bool is_opener, uint32_t id)
{
    peer *p = peer_new(role, NULL);
    if (is_opener) {
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        uint32_t got;
        cr_assert_eq(dmsg_yamux_open(&p->y, NULL, &got, f), 0);
        cr_assert_eq(got, id);
    }
    return p;
}

static void split_everywhere(json_t *list, dmsg_yamux_role receiver_role, bool receiver_opened)
{
    bytes wire = {0};
    vector_list_bytes(list, &wire);
    uint32_t id = jint(json_array_get(list, 0), "stream_id");
    evlog *want = calloc(1, sizeof *want);
    size_t i;
    json_t *f;
    json_array_foreach(list, i, f) expected_events(want, f, false);

    peer *whole = fresh_receiver(receiver_role, receiver_opened, id);
    cr_assert_eq(feed(whole, wire.b, wire.len), 0);
    cr_assert(logs_equal(&whole->log, want));
    peer_free(whole);

    peer *bytewise = fresh_receiver(receiver_role, receiver_opened, id);
    cr_assert_eq(feed_chunked(bytewise, wire.b, wire.len, 1), 0);
    cr_assert(logs_equal(&bytewise->log, want));
    peer_free(bytewise);

    for (size_t cut = 1; cut < wire.len; cut++) {
        peer *p = fresh_receiver(receiver_role, receiver_opened, id);
        cr_assert_eq(feed(p, wire.b, cut), 0);
        cr_assert_eq(feed(p, wire.b + cut, wire.len - cut), 0);
        cr_assert(logs_equal(&p->log, want), "split at %zu", cut);
        peer_free(p);
    }
    log_free(want);
    free(want);
    bytes_free(&wire);
}

Test(yamux_transcript, split_at_every_byte)
{
    json_t *st = vec_load("stream.json");
    const char *sessions[] = {"wire_session_a", "wire_session_b"};
    for (size_t k = 0; k < 2; k++) {
        transcript t = transcript_of(st, sessions[k]);
        dmsg_yamux_role other =
            t.opener_role == DMSG_YAMUX_CLIENT ? DMSG_YAMUX_SERVER : DMSG_YAMUX_CLIENT;
        split_everywhere(t.opener_list, other, false);
        split_everywhere(t.acceptor_list, t.opener_role, true);
    }
    json_decref(st);
}

/* ---------------------------------------------------------------------------------------------
 * Two sessions back to back */

static void fill_pattern(uint8_t *b, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)(seed >> 16);
    }
}

Test(yamux_loopback, many_streams_both_directions_with_credit)
{
    enum { STREAMS = 6, SIZE = 700000 }; /* several windows per stream */
    peer *c = peer_new(DMSG_YAMUX_CLIENT, NULL), *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    c->auto_accept = s->auto_accept = true;
    c->auto_consume = s->auto_consume = true;
    uint8_t *payload[STREAMS];
    uint32_t ids[STREAMS];
    peer *writer[STREAMS];
    size_t sent[STREAMS] = {0};
    for (size_t i = 0; i < STREAMS; i++) {
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        writer[i] = i % 2 ? s : c;
        cr_assert_eq(dmsg_yamux_open(&writer[i]->y, &ids[i], &ids[i], f), 0);
        cr_assert_eq(ids[i] % 2, i % 2 ? 0u : 1u, "client odd, server even");
        send_hdr(writer[i], f);
        payload[i] = malloc(SIZE);
        fill_pattern(payload[i], SIZE, (uint32_t)i);
    }
    for (int rounds = 0; rounds < 100; rounds++) {
        bool all = true;
        for (size_t i = 0; i < STREAMS; i++) {
            sent[i] += send_data(writer[i], ids[i], payload[i] + sent[i], SIZE - sent[i]);
            all = all && sent[i] == SIZE;
        }
        cr_assert_eq(pump(c, s), 0);
        cr_assert_eq(pump(s, c), 0);
        if (all)
            break;
    }
    for (size_t i = 0; i < STREAMS; i++) {
        cr_assert_eq(sent[i], SIZE);
        uint8_t f[DMSG_YAMUX_HDR_LEN];
        cr_assert_eq(dmsg_yamux_close(&writer[i]->y, ids[i], f), 0);
        send_hdr(writer[i], f);
    }
    cr_assert_eq(pump(c, s), 0);
    cr_assert_eq(pump(s, c), 0);
    /* Reassemble what each side received per stream and compare. */
    for (size_t i = 0; i < STREAMS; i++) {
        peer *r = writer[i] == c ? s : c;
        uint8_t *got = malloc(SIZE);
        size_t n = 0;
        bool fin = false;
        for (size_t k = 0; k < r->log.n; k++) {
            const logged *e = &r->log.ev[k];
            if (e->id != ids[i])
                continue;
            if (e->type == DMSG_YAMUX_EV_DATA) {
                cr_assert_leq(n + e->len, SIZE);
                memcpy(got + n, r->log.data.b + e->off, e->len);
                n += e->len;
            }
            if (e->type == DMSG_YAMUX_EV_FIN) {
                cr_assert_eq(n, SIZE, "FIN after all the data");
                fin = true;
            }
        }
        cr_assert(fin);
        cr_assert_arr_eq(got, payload[i], SIZE);
        free(got);
        free(payload[i]);
    }
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&c->y, &st);
    cr_assert_eq(st.streams, STREAMS, "only one side closed each stream");
    cr_assert_eq(st.data_bytes_sent + st.data_bytes_received, (uint64_t)STREAMS * SIZE);
    peer_free(c);
    peer_free(s);
}

/* Both peers with one stream 1 opened by c and accepted by s. */
static void open_pair(peer **c, peer **s, const dmsg_yamux_config *ccfg,
                      const dmsg_yamux_config *scfg)
{
    *c = peer_new(DMSG_YAMUX_CLIENT, ccfg);
    *s = peer_new(DMSG_YAMUX_SERVER, scfg);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    cr_assert_eq(dmsg_yamux_open(&(*c)->y, NULL, &id, f), 0);
    send_hdr(*c, f);
    cr_assert_eq(pump(*c, *s), 0);
    expect_event(*s, DMSG_YAMUX_EV_OPENED, id);
    cr_assert_eq(dmsg_yamux_accept(&(*s)->y, id, f), 0);
    send_hdr(*s, f);
    cr_assert_eq(pump(*s, *c), 0);
    expect_event(*c, DMSG_YAMUX_EV_ACCEPTED, id);
}

Test(yamux_loopback, window_exhaustion_and_credit)
{
    peer *c, *s;
    open_pair(&c, &s, NULL, NULL);
    enum { W = 262144 };
    uint8_t *buf = calloc(1, W + 100);
    cr_assert_eq(send_data(c, 1, buf, W + 100), W, "no more than one window");
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t granted;
    cr_assert_eq(dmsg_yamux_data_frame(&c->y, 1, 1, f, &granted), DMSG_EAGAIN);
    cr_assert_eq(pump(c, s), 0);
    dmsg_yamux_stream_info info;
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), 0);
    cr_assert_eq(info.recv_window, 0);
    cr_assert_eq(info.buffered, W);
    size_t flen;
    cr_assert_eq(dmsg_yamux_consume(&s->y, 1, W / 2 - 1, f, &flen), 0);
    cr_assert_eq(flen, 0, "below half a window: no credit yet");
    cr_assert_eq(dmsg_yamux_consume(&s->y, 1, W, f, &flen), DMSG_EINVAL, "more than delivered");
    cr_assert_eq(dmsg_yamux_consume(&s->y, 1, 1, f, &flen), 0);
    cr_assert_eq(flen, DMSG_YAMUX_HDR_LEN);
    dmsg_yamux_hdr h;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, sizeof f, &h), 0);
    cr_assert_eq(h.type, DMSG_YAMUX_WINDOW_UPDATE);
    cr_assert_eq(h.length, W / 2);
    send_hdr(s, f);
    cr_assert_eq(pump(s, c), 0);
    const logged *e = next_event(c);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_WINDOW);
    cr_assert_eq(e->value, W / 2);
    cr_assert_eq(send_data(c, 1, buf, W), W / 2);
    cr_assert_eq(pump(c, s), 0);
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), 0);
    cr_assert_eq(info.recv_window + info.buffered + info.uncredited, W);
    free(buf);
    peer_free(c);
    peer_free(s);
}

Test(yamux_loopback, fin_both_ways_and_half_close)
{
    peer *c, *s;
    open_pair(&c, &s, NULL, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    cr_assert_eq(dmsg_yamux_close(&c->y, 1, f), 0);
    send_hdr(c, f);
    cr_assert_eq(dmsg_yamux_close(&c->y, 1, f), DMSG_ECLOSED, "never a second FIN");
    uint32_t granted;
    cr_assert_eq(dmsg_yamux_data_frame(&c->y, 1, 10, f, &granted), DMSG_ECLOSED);
    cr_assert_eq(pump(c, s), 0);
    const logged *e = next_event(s);
    cr_assert(e->type == DMSG_YAMUX_EV_FIN && !e->closed);
    dmsg_yamux_stream_info info;
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), 0);
    cr_assert_eq(info.state, DMSG_YAMUX_REMOTE_CLOSE);
    /* Half-closed by c: s may still send, and c still receives. */
    const uint8_t msg[] = "after fin";
    cr_assert_eq(send_data(s, 1, msg, sizeof msg), sizeof msg);
    cr_assert_eq(dmsg_yamux_close(&s->y, 1, f), 0);
    send_hdr(s, f);
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), DMSG_ESTREAM);
    cr_assert_eq(pump(s, c), 0);
    e = next_event(c);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_DATA);
    cr_assert_arr_eq(event_data(c, e), msg, sizeof msg);
    e = next_event(c);
    cr_assert(e->type == DMSG_YAMUX_EV_FIN && e->closed);
    cr_assert_eq(dmsg_yamux_close(&c->y, 1, f), DMSG_ESTREAM);
    peer_free(c);
    peer_free(s);
}

Test(yamux_loopback, data_and_fin_in_one_frame_report_data_first)
{
    peer *c, *s;
    open_pair(&c, &s, NULL, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    frame_of(f, DMSG_YAMUX_DATA, DMSG_YAMUX_FIN, 1, 3);
    bytes w = {0};
    bytes_put(&w, f, sizeof f);
    bytes_put(&w, (const uint8_t *)"abc", 3);
    cr_assert_eq(feed_chunked(s, w.b, w.len, 1), 0);
    const logged *e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_DATA);
    cr_assert_eq(e->len, 3);
    expect_event(s, DMSG_YAMUX_EV_FIN, 1);
    bytes_free(&w);
    peer_free(c);
    peer_free(s);
}

Test(yamux_loopback, reset_and_frames_after_it_are_drained)
{
    peer *c, *s;
    open_pair(&c, &s, NULL, NULL);
    const uint8_t msg[100] = {1};
    cr_assert_eq(send_data(s, 1, msg, sizeof msg), sizeof msg); /* in flight when c resets */
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    cr_assert_eq(dmsg_yamux_set_user(&c->y, 1, c), 0);
    cr_assert_eq(dmsg_yamux_reset(&c->y, 1, f), 0);
    send_hdr(c, f);
    cr_assert_eq(pump(s, c), 0);
    expect_no_event(c);
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&c->y, &st);
    cr_assert_eq(st.frames_unknown_stream, 1);
    cr_assert_eq(st.bytes_drained, sizeof msg);
    cr_assert_eq(st.resets_sent, 1);
    cr_assert_eq(dmsg_yamux_set_user(&s->y, 1, s), 0);
    cr_assert_eq(pump(c, s), 0);
    const logged *e = next_event(s);
    cr_assert(e->type == DMSG_YAMUX_EV_RESET && e->closed && e->id == 1);
    uint32_t granted;
    cr_assert_eq(dmsg_yamux_data_frame(&s->y, 1, 1, f, &granted), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_error(&c->y), 0);
    cr_assert_eq(dmsg_yamux_error(&s->y), 0);
    peer_free(c);
    peer_free(s);
}

Test(yamux_loopback, user_pointer_in_events)
{
    peer *c = peer_new(DMSG_YAMUX_CLIENT, NULL), *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    int tag_c, tag_s;
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    cr_assert_eq(dmsg_yamux_open(&c->y, &tag_c, &id, f), 0);
    send_hdr(c, f);
    size_t used;
    dmsg_yamux_event ev;
    cr_assert_eq(dmsg_yamux_feed(&s->y, c->out.b, c->out.len, 0, &used, &ev), 0);
    cr_assert_eq(ev.type, DMSG_YAMUX_EV_OPENED);
    cr_assert_null(ev.user);
    cr_assert_eq(dmsg_yamux_set_user(&s->y, id, &tag_s), 0);
    cr_assert_eq(dmsg_yamux_accept(&s->y, id, f), 0);
    cr_assert_eq(dmsg_yamux_feed(&c->y, f, sizeof f, 0, &used, &ev), 0);
    cr_assert_eq(ev.type, DMSG_YAMUX_EV_ACCEPTED);
    cr_assert_eq(ev.user, &tag_c);
    size_t cursor = 0;
    void *user;
    uint32_t got;
    cr_assert_eq(dmsg_yamux_next_stream(&s->y, &cursor, &got, &user), 0);
    cr_assert_eq(got, id);
    cr_assert_eq(user, &tag_s);
    cr_assert_eq(dmsg_yamux_next_stream(&s->y, &cursor, &got, &user), DMSG_ENOTFOUND);
    peer_free(c);
    peer_free(s);
}

Test(yamux_loopback, goaway_stops_new_streams_only)
{
    peer *c, *s;
    open_pair(&c, &s, NULL, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    cr_assert_eq(dmsg_yamux_goaway(&s->y, DMSG_YAMUX_GOAWAY_NORMAL, f), 0);
    send_hdr(s, f);
    cr_assert_eq(pump(s, c), 0);
    const logged *e = next_event(c);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_GOAWAY);
    cr_assert_eq(dmsg_yamux_open(&c->y, NULL, &id, f), DMSG_EGOAWAY);
    const uint8_t msg[] = "still works";
    cr_assert_eq(send_data(c, 1, msg, sizeof msg), sizeof msg);
    cr_assert_eq(pump(c, s), 0);
    e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_DATA);
    /* A SYN that reaches s after its GoAway is refused with RST. */
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 3, 0), 0);
    e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_REFUSED);
    cr_assert_eq(e->reason, DMSG_EGOAWAY);
    peer_free(c);
    peer_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Keepalive and ping */

Test(yamux_keepalive, ping_due_answered_and_timeout)
{
    dmsg_yamux y;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_SERVER, NULL, 1000), 0);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    cr_assert_eq(dmsg_yamux_next_timeout(&y), 31000);
    cr_assert_eq(dmsg_yamux_tick(&y, 30999, f, &flen), 0);
    cr_assert_eq(flen, 0);
    cr_assert_eq(dmsg_yamux_tick(&y, 31000, f, &flen), 0);
    cr_assert_eq(flen, DMSG_YAMUX_HDR_LEN);
    dmsg_yamux_hdr h;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, flen, &h), 0);
    cr_assert(h.type == DMSG_YAMUX_PING && h.flags == DMSG_YAMUX_SYN && h.length == 0);
    cr_assert_eq(dmsg_yamux_next_timeout(&y), 41000);
    uint32_t pid;
    cr_assert_eq(dmsg_yamux_ping(&y, 31001, f, &pid), DMSG_ESTATE, "one ping at a time");
    /* A pong for another id is ignored; the right one ends the wait. */
    uint8_t pong[DMSG_YAMUX_HDR_LEN];
    size_t used;
    dmsg_yamux_event ev;
    frame_of(pong, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, 7);
    cr_assert_eq(dmsg_yamux_feed(&y, pong, sizeof pong, 31020, &used, &ev), 0);
    cr_assert_eq(ev.type, DMSG_YAMUX_EV_NONE);
    frame_of(pong, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, 0);
    cr_assert_eq(dmsg_yamux_feed(&y, pong, sizeof pong, 31050, &used, &ev), 0);
    cr_assert_eq(ev.type, DMSG_YAMUX_EV_PONG);
    cr_assert_eq(ev.rtt_ms, 50);
    cr_assert_eq(dmsg_yamux_next_timeout(&y), 61000);
    cr_assert_eq(dmsg_yamux_tick(&y, 61000, f, &flen), 0);
    cr_assert_eq(dmsg_yamux_hdr_decode(f, flen, &h), 0);
    cr_assert_eq(h.length, 1, "ping ids count up");
    cr_assert_eq(dmsg_yamux_tick(&y, 70999, f, &flen), 0);
    cr_assert_eq(dmsg_yamux_tick(&y, 71000, f, &flen), DMSG_ETIMEOUT);
    cr_assert_eq(dmsg_yamux_feed(&y, pong, sizeof pong, 71001, &used, &ev), DMSG_ETIMEOUT,
                 "sticky");
    cr_assert_eq(dmsg_yamux_next_timeout(&y), UINT64_MAX);
    dmsg_yamux_destroy(&y);
}

Test(yamux_keepalive, disabled_means_no_deadline)
{
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.enable_keepalive = false;
    dmsg_yamux y;
    cr_assert_eq(dmsg_yamux_init(&y, DMSG_YAMUX_CLIENT, &cfg, 5), 0);
    cr_assert_eq(dmsg_yamux_next_timeout(&y), UINT64_MAX);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    cr_assert_eq(dmsg_yamux_tick(&y, 1000000, f, &flen), 0);
    cr_assert_eq(flen, 0);
    uint32_t pid;
    cr_assert_eq(dmsg_yamux_ping(&y, 10, f, &pid), 0);
    cr_assert_eq(dmsg_yamux_next_timeout(&y), 10010);
    dmsg_yamux_destroy(&y);
}

/* ---------------------------------------------------------------------------------------------
 * Malformed input: each violation has its code, and the error is sticky. */

static peer *server_with_stream1(const dmsg_yamux_config *cfg)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, cfg);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0), 0);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 1);
    return s;
}

static void expect_sticky(peer *p, int err)
{
    cr_assert_eq(dmsg_yamux_error(&p->y), err);
    cr_assert_eq(feed_frame(p, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, 1), err);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    cr_assert_eq(dmsg_yamux_open(&p->y, NULL, &id, f), err);
    cr_assert_eq(dmsg_yamux_goaway(&p->y, DMSG_YAMUX_GOAWAY_PROTO_ERROR, f), 0,
                 "GoAway(1) may still be sent");
    const uint8_t want[] = {0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    cr_assert_arr_eq(f, want, sizeof want);
}

Test(yamux_malformed, unknown_version)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    const uint8_t f[] = {1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(feed(s, f, sizeof f), DMSG_EVERSION);
    expect_sticky(s, DMSG_EVERSION);
    peer_free(s);
}

Test(yamux_malformed, unknown_type)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    cr_assert_eq(feed_frame(s, 4, 0, 0, 0), DMSG_ETYPE);
    expect_sticky(s, DMSG_ETYPE);
    peer_free(s);
}

Test(yamux_malformed, oversized_data_frame)
{
    peer *s = server_with_stream1(NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, 0, 9, 262145), DMSG_ETOOBIG, "even unknown ids");
    expect_sticky(s, DMSG_ETOOBIG);
    peer_free(s);
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.max_frame_len = 1000;
    s = server_with_stream1(&cfg);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, 0, 1, 1001), DMSG_ETOOBIG);
    peer_free(s);
}

Test(yamux_malformed, window_overrun)
{
    peer *s = server_with_stream1(NULL);
    uint8_t *body = calloc(1, 200000);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    frame_of(f, DMSG_YAMUX_DATA, 0, 1, 200000);
    cr_assert_eq(feed(s, f, sizeof f), 0);
    cr_assert_eq(feed(s, body, 200000), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, 0, 1, 262144 - 200000 + 1), DMSG_EWINDOW);
    expect_sticky(s, DMSG_EWINDOW);
    free(body);
    peer_free(s);
}

Test(yamux_malformed, window_update_overflow)
{
    peer *s = server_with_stream1(NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, 0, 1, UINT32_MAX - 262144), 0);
    const logged *e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_WINDOW);
    cr_assert_eq(e->value, UINT32_MAX);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, 0, 1, 1), DMSG_EWINDOW, "never wraps");
    expect_sticky(s, DMSG_EWINDOW);
    peer_free(s);

    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.max_send_window = 2 * 262144;
    s = server_with_stream1(&cfg);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, 0, 1, 262144), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, 0, 1, 1), DMSG_EWINDOW, "configured cap");
    peer_free(s);
}

Test(yamux_malformed, duplicate_syn)
{
    peer *s = server_with_stream1(NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, DMSG_YAMUX_SYN, 1, 0), DMSG_ESTREAM);
    expect_sticky(s, DMSG_ESTREAM);
    peer_free(s);
}

Test(yamux_malformed, syn_with_wrong_parity_or_zero)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 2, 0), DMSG_EPROTO);
    expect_sticky(s, DMSG_EPROTO);
    peer_free(s);
    s = peer_new(DMSG_YAMUX_SERVER, NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 0, 0), DMSG_EPROTO);
    peer_free(s);
    peer *c = peer_new(DMSG_YAMUX_CLIENT, NULL);
    cr_assert_eq(feed_frame(c, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0), DMSG_EPROTO);
    peer_free(c);
}

Test(yamux_malformed, second_fin)
{
    peer *s = server_with_stream1(NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0), 0);
    expect_event(s, DMSG_YAMUX_EV_FIN, 1);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, DMSG_YAMUX_FIN, 1, 0), DMSG_EPROTO);
    expect_sticky(s, DMSG_EPROTO);
    peer_free(s);
}

Test(yamux_malformed, fin_after_stream_is_gone_is_ignored)
{
    peer *s = server_with_stream1(NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    cr_assert_eq(dmsg_yamux_close(&s->y, 1, f), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0), 0);
    const logged *e = next_event(s);
    cr_assert(e->type == DMSG_YAMUX_EV_FIN && e->closed);
    /* As in Go: the stream was removed, so this is a frame for an unknown id. */
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0), 0);
    expect_no_event(s);
    peer_free(s);
}

Test(yamux_malformed, data_after_fin)
{
    peer *s = server_with_stream1(NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_FIN, 1, 0), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_DATA, 0, 1, 1), DMSG_EPROTO);
    peer_free(s);
}

Test(yamux_malformed, data_for_unknown_stream_is_drained)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN], body[100];
    memset(body, 0x5a, sizeof body);
    bytes w = {0};
    frame_of(f, DMSG_YAMUX_DATA, 0, 7, sizeof body);
    bytes_put(&w, f, sizeof f);
    bytes_put(&w, body, sizeof body);
    frame_of(f, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_ACK, 8, 5);
    bytes_put(&w, f, sizeof f);
    frame_of(f, DMSG_YAMUX_PING, DMSG_YAMUX_SYN, 0, 42);
    bytes_put(&w, f, sizeof f);
    cr_assert_eq(feed_chunked(s, w.b, w.len, 7), 0);
    const logged *e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_PING, "the frame after the drained data parses");
    cr_assert_eq(e->value, 42);
    expect_no_event(s);
    uint8_t pong[DMSG_YAMUX_HDR_LEN];
    frame_of(pong, DMSG_YAMUX_PING, DMSG_YAMUX_ACK, 0, 42);
    cr_assert_arr_eq(s->out.b, pong, sizeof pong);
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.frames_unknown_stream, 2);
    cr_assert_eq(st.bytes_drained, sizeof body);
    cr_assert_eq(st.data_bytes_received, 0);
    bytes_free(&w);
    peer_free(s);
}

Test(yamux_malformed, goaway_with_error_code_ends_session)
{
    for (uint32_t code = 1; code <= 3; code++) {
        peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
        cr_assert_eq(feed_frame(s, DMSG_YAMUX_GOAWAY, 0, 0, code), DMSG_EGOAWAY);
        dmsg_yamux_stats st;
        dmsg_yamux_get_stats(&s->y, &st);
        cr_assert_eq(st.peer_goaway_code, code);
        expect_sticky(s, DMSG_EGOAWAY);
        peer_free(s);
    }
}

Test(yamux_malformed, truncated_header_waits)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    frame_of(f, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0);
    cr_assert_eq(feed(s, f, 11), 0);
    expect_no_event(s);
    cr_assert_eq(feed(s, f + 11, 1), 0);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 1);
    peer_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Limits */

Test(yamux_limits, stream_cap_refuses_with_rst)
{
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.max_streams = 2;
    peer *s = peer_new(DMSG_YAMUX_SERVER, &cfg);
    s->auto_accept = true;
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 3, 0), 0);
    size_t mark = s->out.len;
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    frame_of(f, DMSG_YAMUX_DATA, DMSG_YAMUX_SYN, 5, 4);
    bytes w = {0};
    bytes_put(&w, f, sizeof f);
    bytes_put(&w, (const uint8_t *)"data", 4);
    cr_assert_eq(feed(s, w.b, w.len), 0, "not a session error");
    expect_event(s, DMSG_YAMUX_EV_OPENED, 1);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 3);
    const logged *e = next_event(s);
    cr_assert_eq(e->type, DMSG_YAMUX_EV_REFUSED);
    cr_assert_eq(e->id, 5);
    cr_assert_eq(e->reason, DMSG_ELIMIT);
    expect_no_event(s);
    uint8_t rst[DMSG_YAMUX_HDR_LEN];
    frame_of(rst, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_RST, 5, 0);
    cr_assert_eq(s->out.len - mark, sizeof rst);
    cr_assert_arr_eq(s->out.b + mark, rst, sizeof rst);
    uint32_t id;
    cr_assert_eq(dmsg_yamux_open(&s->y, NULL, &id, f), DMSG_ELIMIT);
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.syns_refused, 1);
    cr_assert_eq(st.frames_unknown_stream, 0, "counted as refused, not as unknown");
    cr_assert_eq(st.bytes_drained, 4);
    /* Room again once a stream is gone. */
    cr_assert_eq(dmsg_yamux_reset(&s->y, 1, f), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 7, 0), 0);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 7);
    bytes_free(&w);
    peer_free(s);
}

Test(yamux_limits, accept_backlog_refuses_with_rst)
{
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.accept_backlog = 1;
    peer *s = peer_new(DMSG_YAMUX_SERVER, &cfg);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 1, 0), 0);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 3, 0), 0);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 1);
    const logged *e = next_event(s);
    cr_assert(e->type == DMSG_YAMUX_EV_REFUSED && e->id == 3 && e->reason == DMSG_ELIMIT);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    cr_assert_eq(dmsg_yamux_accept(&s->y, 1, f), 0);
    cr_assert_eq(dmsg_yamux_accept(&s->y, 1, f), DMSG_ESTATE);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN, 5, 0), 0);
    expect_event(s, DMSG_YAMUX_EV_OPENED, 5);
    /* Our own un-ACKed opens are capped the same way. */
    uint32_t id;
    cr_assert_eq(dmsg_yamux_open(&s->y, NULL, &id, f), 0);
    cr_assert_eq(dmsg_yamux_open(&s->y, NULL, &id, f), DMSG_ELIMIT);
    peer_free(s);
}

Test(yamux_limits, thousands_of_streams_table_grows_and_shrinks)
{
    enum { N = 2048 };
    dmsg_yamux_config cfg;
    dmsg_yamux_config_default(&cfg);
    cfg.accept_backlog = N;
    peer *c = peer_new(DMSG_YAMUX_CLIENT, &cfg), *s = peer_new(DMSG_YAMUX_SERVER, &cfg);
    s->auto_accept = true;
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    uint32_t id;
    for (uint32_t i = 0; i < N; i++) {
        cr_assert_eq(dmsg_yamux_open(&c->y, NULL, &id, f), 0);
        cr_assert_eq(id, 2 * i + 1);
        send_hdr(c, f);
    }
    cr_assert_eq(dmsg_yamux_open(&c->y, NULL, &id, f), DMSG_ELIMIT);
    cr_assert_eq(pump(c, s), 0);
    cr_assert_eq(pump(s, c), 0);
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.streams, N);
    cr_assert_eq(st.pending_accept, 0);
    dmsg_yamux_get_stats(&c->y, &st);
    cr_assert_eq(st.awaiting_ack, 0);
    /* Remove every other stream (reset), check the table still finds the rest. */
    for (uint32_t i = 0; i < N; i += 2) {
        cr_assert_eq(dmsg_yamux_reset(&c->y, 2 * i + 1, f), 0);
        send_hdr(c, f);
    }
    cr_assert_eq(pump(c, s), 0);
    dmsg_yamux_stream_info info;
    for (uint32_t i = 0; i < N; i++) {
        int want = i % 2 ? 0 : DMSG_ESTREAM;
        cr_assert_eq(dmsg_yamux_stream_info_get(&c->y, 2 * i + 1, &info), want);
        cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 2 * i + 1, &info), want);
    }
    size_t cursor = 0, count = 0;
    while (dmsg_yamux_next_stream(&s->y, &cursor, &id, NULL) == 0) {
        cr_assert_eq(id % 4, 3);
        count++;
    }
    cr_assert_eq(count, N / 2);
    /* Close the rest both ways: everything is freed. */
    for (uint32_t i = 1; i < N; i += 2) {
        cr_assert_eq(dmsg_yamux_close(&c->y, 2 * i + 1, f), 0);
        send_hdr(c, f);
        cr_assert_eq(dmsg_yamux_close(&s->y, 2 * i + 1, f), 0);
        send_hdr(s, f);
    }
    cr_assert_eq(pump(c, s), 0);
    cr_assert_eq(pump(s, c), 0);
    dmsg_yamux_get_stats(&c->y, &st);
    cr_assert_eq(st.streams + st.table_slots, 0);
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.streams + st.table_slots, 0);
    peer_free(c);
    peer_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * API misuse */

Test(yamux_api, calls_on_unknown_or_wrong_state_streams)
{
    peer *s = server_with_stream1(NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN];
    size_t flen;
    uint32_t granted;
    cr_assert_eq(dmsg_yamux_accept(&s->y, 3, f), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_consume(&s->y, 3, 1, f, &flen), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_close(&s->y, 3, f), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_reset(&s->y, 3, f), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_set_user(&s->y, 3, NULL), DMSG_ESTREAM);
    cr_assert_eq(dmsg_yamux_data_frame(&s->y, 1, 0, f, &granted), DMSG_EINVAL);
    cr_assert_eq(dmsg_yamux_consume(&s->y, 1, 1, f, &flen), DMSG_EINVAL, "nothing delivered");
    dmsg_yamux_stream_info info;
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), 0);
    cr_assert_eq(info.state, DMSG_YAMUX_SYN_RECEIVED);
    cr_assert(!info.opened_locally);
    /* Writing on a stream not yet accepted accepts it (the frame carries ACK, as in Go). */
    cr_assert_eq(dmsg_yamux_data_frame(&s->y, 1, 10, f, &granted), 0);
    dmsg_yamux_hdr h;
    cr_assert_eq(dmsg_yamux_hdr_decode(f, sizeof f, &h), 0);
    cr_assert(h.type == DMSG_YAMUX_DATA && h.flags == DMSG_YAMUX_ACK && h.length == 10);
    cr_assert_eq(dmsg_yamux_accept(&s->y, 1, f), DMSG_ESTATE);
    cr_assert_eq(dmsg_yamux_stream_info_get(&s->y, 1, &info), 0);
    cr_assert_eq(info.state, DMSG_YAMUX_ESTABLISHED);
    cr_assert_eq(info.send_window, 262144 - 10);
    peer_free(s);
}

Test(yamux_api, syn_rst_in_one_frame_is_invisible)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    cr_assert_eq(feed_frame(s, DMSG_YAMUX_WINDOW_UPDATE, DMSG_YAMUX_SYN | DMSG_YAMUX_RST, 1, 0), 0);
    expect_no_event(s);
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.streams, 0);
    cr_assert_eq(st.pending_accept, 0);
    cr_assert_eq(st.resets_received, 1);
    peer_free(s);
}

Test(yamux_api, reset_from_event_handler_drains_rest_of_frame)
{
    peer *s = peer_new(DMSG_YAMUX_SERVER, NULL);
    uint8_t f[DMSG_YAMUX_HDR_LEN], body[50] = {0};
    bytes w = {0};
    frame_of(f, DMSG_YAMUX_DATA, DMSG_YAMUX_SYN | DMSG_YAMUX_FIN, 1, sizeof body);
    bytes_put(&w, f, sizeof f);
    bytes_put(&w, body, sizeof body);
    size_t off = 0, used;
    dmsg_yamux_event ev;
    int opened = 0, data = 0, fin = 0;
    /* Feed in two pieces; reset the stream on its first data event. */
    size_t cuts[] = {30, w.len};
    for (size_t k = 0; k < 2; k++) {
        while (dmsg_yamux_feed(&s->y, w.b + off, cuts[k] - off, 0, &used, &ev) == 0) {
            off += used;
            if (ev.type == DMSG_YAMUX_EV_NONE)
                break;
            opened += ev.type == DMSG_YAMUX_EV_OPENED;
            fin += ev.type == DMSG_YAMUX_EV_FIN;
            if (ev.type == DMSG_YAMUX_EV_DATA) {
                data++;
                cr_assert_eq(dmsg_yamux_reset(&s->y, 1, f), 0);
            }
        }
    }
    cr_assert_eq(off, w.len);
    cr_assert_eq(opened + data, 2);
    cr_assert_eq(fin, 0, "no FIN for a stream the caller reset");
    dmsg_yamux_stats st;
    dmsg_yamux_get_stats(&s->y, &st);
    cr_assert_eq(st.bytes_drained + st.data_bytes_received, sizeof body);
    cr_assert_eq(st.streams, 0);
    bytes_free(&w);
    peer_free(s);
}
