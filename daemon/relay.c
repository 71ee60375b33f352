/* Request routing and data pumping; see relay.h.
 *
 * One link per stream a peer opens: side a is that stream (the dialer's), side b the stream we
 * open towards the destination. A link ends once both streams have run their on_close and its
 * timer is closed; write callbacks always run before their stream's on_close (session.h), so no
 * callback can reach a freed link. */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/noise.h"
#include "dmsg/wire.h"
#include "netaddr.h"

#define OBJECT_FRAME_OVERHEAD (DMSG_NOISE_LEN_PREFIX + DMSG_NOISE_OVERHEAD) /* 2 + 8 + 16 */
#define MIN_OBJECT_BODY (DMSG_NOISE_OVERHEAD + DMSG_SIGNED_OBJECT_MIN)
#define SCRATCH_CAP (DMSG_NOISE_LEN_PREFIX + 65535)
#define OWN_RESPONSE_CAP 2048 /* our own signed responses: ReqHash, a flag, an IP text */
#define FAILURE_LINGER_MS 5000

enum link_state {
    LINK_READING,  /* waiting for the first object (or the ping marker) from the dialer */
    LINK_AWAITING, /* request forwarded; waiting for the destination's response */
    LINK_RELAYING, /* pumping bytes both ways */
    LINK_ENDING    /* closed or failed: waiting for both streams to go */
};

struct relay_link;

struct relay_side {
    struct relay_link *link;
    dmsg_stream *st;     /* NULL before open and after its on_close */
    bool fin_sent;       /* we asked for FIN (at most one per stream) */
    bool reset_sent;
};

/* Bytes read ahead of the object being waited for; held, not consumed, until forwarded. */
struct held {
    uint8_t *buf;
    size_t len, cap;
};

struct relay_link {
    struct relay *relay;
    struct relay_side a, b;
    enum link_state state;
    dmsg_session *ingress;         /* valid while a.st is */
    struct relay_session *rs;      /* the ingress session's counters; NULL once released */
    bool counted_pending, counted_active;
    uv_timer_t timer;
    bool timer_closed;

    /* The object being read: 2-byte length, then the body (request from a, response from b). */
    uint8_t len_prefix[2];
    size_t prefix_have;
    uint8_t *frame;                /* body of the frame being read */
    size_t frame_len, frame_have;

    uint8_t *req_obj;              /* the request SignedObject (kept for the response check) */
    size_t req_obj_len;
    dmsg_stream_request req;       /* views into req_obj */
    struct held early_a;           /* dialer bytes after the request */
    struct held early_b;           /* destination bytes after the response */

    bool via_resolver;             /* b was opened on a session the resolver named */
    dmsg_session *hop;
    unsigned attempt;

    /* What the admin API lists and the metrics count. */
    uint64_t id;
    enum relay_path path;          /* NONE until the request is forwarded */
    bool has_via_peer;
    dmsg_pk via_peer;
    uint64_t opened_ms, last_active_ms;
    uint64_t bytes_fwd, bytes_rev; /* a to b, b to a */
    bool counted_relaying;         /* in paths.relaying[path] */

    struct relay_link *prev, *next;
};

struct relay {
    uv_loop_t *loop;
    const dmsg_identity *identity;
    struct relay_limits lim;
    struct relay_hooks hooks;
    const struct dmsgd_log *log;
    struct relay_link *links;
    uint32_t n_links;
    uint64_t counters[RELAY_COUNTER_COUNT];
    uint64_t bytes_forwarded;
    uint64_t next_link_id;
    struct relay_path_stats paths;
    uint8_t *scratch;              /* sealing buffer, one frame */
    bool closing;
    void (*on_done)(void *arg);
    void *on_done_arg;
};

static const char *const counter_names[RELAY_COUNTER_COUNT] = {
    [RELAY_STREAMS_ACCEPTED] = "streams_accepted",
    [RELAY_PINGS] = "pings",
    [RELAY_ESTABLISHED] = "established",
    [RELAY_IPINFO] = "ipinfo",
    [RELAY_OWN_SERVICE] = "own_service",
    [RELAY_OWN_REFUSED] = "own_refused",
    [RELAY_FAIL_RATE] = "fail_rate",
    [RELAY_FAIL_PENDING] = "fail_pending",
    [RELAY_FAIL_REQUEST_TIMEOUT] = "fail_request_timeout",
    [RELAY_FAIL_OBJECT_SIZE] = "fail_object_size",
    [RELAY_FAIL_DECRYPT] = "fail_decrypt",
    [RELAY_FAIL_INVALID_REQUEST] = "fail_invalid_request",
    [RELAY_FAIL_SIGNATURE] = "fail_signature",
    [RELAY_FAIL_FIELDS] = "fail_fields",
    [RELAY_FAIL_SOURCE_KEY] = "fail_source_key",
    [RELAY_FAIL_NO_DESTINATION] = "fail_no_destination",
    [RELAY_FAIL_OPEN_STREAM] = "fail_open_stream",
    [RELAY_FAIL_RESPONSE_TIMEOUT] = "fail_response_timeout",
    [RELAY_FAIL_DESTINATION_CLOSED] = "fail_destination_closed",
    [RELAY_FAIL_RESPONSE_INVALID] = "fail_response_invalid",
    [RELAY_FAIL_REFUSED] = "fail_refused",
    [RELAY_FAIL_DIALER_GONE] = "fail_dialer_gone",
    [RELAY_FAIL_EARLY_BYTES] = "fail_early_bytes",
    [RELAY_FAIL_INTERNAL] = "fail_internal",
    [RELAY_CLOSED_FIN] = "closed_fin",
    [RELAY_CLOSED_RESET] = "closed_reset",
    [RELAY_PEER_ANNOUNCES] = "peer_announces",
};

const char *relay_counter_name(enum relay_counter c)
{
    return (unsigned)c < RELAY_COUNTER_COUNT ? counter_names[c] : "unknown";
}

const char *relay_path_name(enum relay_path p)
{
    static const char *const names[RELAY_PATH_COUNT] = {"none", "local", "mesh", "service"};
    return (unsigned)p < RELAY_PATH_COUNT ? names[p] : "none";
}

void relay_limits_default(struct relay_limits *lim)
{
    lim->request_timeout_ms = 10000;
    lim->response_timeout_ms = 10000;
    lim->max_object_bytes = 65535;
    lim->max_early_bytes = 65536;
    lim->max_pending_requests = 256;
    lim->requests_per_second = 100;
    lim->requests_burst = 300;
    lim->linger_ms = 10000;
}

static void link_fail(struct relay_link *l, enum relay_counter why);
static void maybe_free_link(struct relay_link *l);
static void try_next_hop(struct relay_link *l);
static void hop_failed(struct relay_link *l, enum relay_counter why, int err);

/* ---------------------------------------------------------------------------------------------
 * Small helpers */

static void count(struct relay *r, enum relay_counter c)
{
    r->counters[c]++;
}

static bool side_alive(const struct relay_side *s)
{
    return s->st != NULL;
}

/* FIN once; also the way to end a stream whose peer may have abandoned it. */
static void side_fin(struct relay_side *s)
{
    if (s->st == NULL || s->fin_sent || s->reset_sent)
        return;
    s->fin_sent = true;
    dmsg_stream_close(s->st);
}

static void side_reset(struct relay_side *s)
{
    if (s->st == NULL || s->reset_sent)
        return;
    s->reset_sent = true;
    dmsg_stream_reset(s->st);
}

static struct relay_side *other_side(struct relay_side *s)
{
    return s == &s->link->a ? &s->link->b : &s->link->a;
}

static void held_free(struct held *h)
{
    free(h->buf);
    memset(h, 0, sizeof *h);
}

/* Appends to a held buffer of at most limit bytes; DMSG_ELIMIT beyond. */
static int held_append(struct held *h, const uint8_t *data, size_t len, size_t limit)
{
    if (len == 0)
        return 0;
    if (h->len + len > limit)
        return DMSG_ELIMIT;
    if (h->len + len > h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 4096;
        uint8_t *buf;
        while (cap < h->len + len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        buf = realloc(h->buf, cap);
        if (buf == NULL)
            return DMSG_ENOMEM;
        h->buf = buf;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, data, len);
    h->len += len;
    return 0;
}

static void release_pending(struct relay_link *l)
{
    if (l->counted_pending && l->rs != NULL)
        l->rs->pending--;
    l->counted_pending = false;
}

static void release_active(struct relay_link *l)
{
    if (l->counted_active && l->rs != NULL)
        l->rs->active--;
    l->counted_active = false;
}

static void reset_frame(struct relay_link *l)
{
    free(l->frame);
    l->frame = NULL;
    l->frame_len = l->frame_have = 0;
    l->prefix_have = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Timer */

static void on_timer_closed(uv_handle_t *h)
{
    struct relay_link *l = h->data;

    l->timer_closed = true;
    maybe_free_link(l);
}

static void on_link_timer(uv_timer_t *t);

static void arm_timer(struct relay_link *l, uint64_t ms)
{
    uv_timer_start(&l->timer, on_link_timer, ms, 0);
}

static void link_info(const struct relay_link *l, struct relay_link_info *out)
{
    memset(out, 0, sizeof *out);
    out->id = l->id;
    out->src_pk = l->req.src.pk;
    out->dst_pk = l->req.dst.pk;
    out->src_port = l->req.src.port;
    out->dst_port = l->req.dst.port;
    out->path = l->path;
    out->has_via_peer = l->has_via_peer;
    out->via_peer = l->via_peer;
    out->phase = l->state == LINK_RELAYING  ? RELAY_LINK_RELAYING
                 : l->state == LINK_ENDING ? RELAY_LINK_CLOSING
                                           : RELAY_LINK_PENDING;
    out->opened_ms = l->opened_ms;
    out->last_active_ms = l->last_active_ms;
    out->bytes_forward = l->bytes_fwd;
    out->bytes_reverse = l->bytes_rev;
    out->ingress = l->a.st != NULL ? l->ingress : NULL;
    out->egress = l->b.st != NULL ? l->hop : NULL;
}

/* A relaying link stops relaying: counted, and reported with why. */
static void leave_relaying(struct relay_link *l, const char *reason)
{
    struct relay *r = l->relay;

    if (!l->counted_relaying)
        return;
    l->counted_relaying = false;
    r->paths.relaying[l->path]--;
    if (r->hooks.on_stream_close != NULL) {
        struct relay_link_info info;
        link_info(l, &info);
        info.phase = RELAY_LINK_CLOSING;
        r->hooks.on_stream_close(r->hooks.ctx, &info, reason);
    }
}

/* Once a link is ending, its streams get linger_ms to go before they are reset. */
static void start_linger(struct relay_link *l, uint64_t ms)
{
    leave_relaying(l, "reset");
    l->state = LINK_ENDING;
    reset_frame(l);
    release_pending(l);
    release_active(l);
    if (!side_alive(&l->a) && !side_alive(&l->b)) {
        maybe_free_link(l);
        return;
    }
    arm_timer(l, ms);
}

static void on_link_timer(uv_timer_t *t)
{
    struct relay_link *l = t->data;

    switch (l->state) {
    case LINK_READING:
        link_fail(l, RELAY_FAIL_REQUEST_TIMEOUT);
        break;
    case LINK_AWAITING:
        hop_failed(l, RELAY_FAIL_RESPONSE_TIMEOUT, DMSG_ETIMEOUT);
        break;
    case LINK_RELAYING:
        break;
    case LINK_ENDING:
        /* Peers that never FIN back (failed Go dialers never do) are reset. */
        side_reset(&l->a);
        side_reset(&l->b);
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Link lifetime */

static void maybe_free_link(struct relay_link *l)
{
    struct relay *r = l->relay;

    if (side_alive(&l->a) || side_alive(&l->b))
        return;
    if (!l->timer_closed) {
        if (!uv_is_closing((uv_handle_t *)&l->timer))
            uv_close((uv_handle_t *)&l->timer, on_timer_closed);
        return;
    }
    release_pending(l);
    release_active(l);
    if (l->prev != NULL)
        l->prev->next = l->next;
    else
        r->links = l->next;
    if (l->next != NULL)
        l->next->prev = l->prev;
    r->n_links--;
    reset_frame(l);
    free(l->req_obj);
    held_free(&l->early_a);
    held_free(&l->early_b);
    free(l);
    if (r->closing && r->n_links == 0) {
        void (*on_done)(void *arg) = r->on_done;
        void *arg = r->on_done_arg;
        free(r->scratch);
        free(r);
        if (on_done != NULL)
            on_done(arg);
    }
}

/* Abuse by a dialer's session (threats.md DROP+g). A peer's session is exempt: it carries the
 * requests of another server's clients, each already held to a client's budget there, so one
 * abusive client must not cost every client of that server its mesh link. */
static void session_glitch(dmsg_session *s, const struct relay_session *rs,
                           dmsg_glitch_kind kind)
{
    if (s != NULL && rs != NULL && !rs->is_peer)
        dmsg_session_glitch(s, kind);
}

static void glitch(const struct relay_link *l, dmsg_glitch_kind kind)
{
    session_glitch(l->ingress, l->rs, kind);
}

/* Failures only a broken or hostile dialer causes; honest clients meet the others (an unknown
 * destination, a refusal, a timeout, a bad timestamp from a skewed clock). */
static bool is_abuse(enum relay_counter why)
{
    return why == RELAY_FAIL_DECRYPT || why == RELAY_FAIL_OBJECT_SIZE ||
           why == RELAY_FAIL_INVALID_REQUEST || why == RELAY_FAIL_SIGNATURE ||
           why == RELAY_FAIL_SOURCE_KEY;
}

/* Every establishment failure: the dialer's stream is closed at once (FIN), as is the stream
 * towards the destination; both are reset if they linger. */
static void link_fail(struct relay_link *l, enum relay_counter why)
{
    struct relay *r = l->relay;

    if (l->state == LINK_ENDING)
        return;
    count(r, why);
    r->paths.failed[l->path][why]++;
    if (log_enabled(r->log, LOG_LEVEL_DEBUG)) {
        char src[DMSG_PK_HEX_LEN + 1] = "", dst[DMSG_PK_HEX_LEN + 1] = "";
        if (l->req_obj != NULL) {
            dmsg_pk_to_hex(&l->req.src.pk, src);
            dmsg_pk_to_hex(&l->req.dst.pk, dst);
        }
        log_debug(r->log, "stream refused", "reason=%s src=%s:%u dst=%s:%u",
                  relay_counter_name(why), src[0] ? src : "-", (unsigned)l->req.src.port,
                  dst[0] ? dst : "-", (unsigned)l->req.dst.port);
    }
    if (is_abuse(why))
        glitch(l, DMSG_GLITCH_BAD_REQUEST);
    side_fin(&l->a);
    side_fin(&l->b);
    start_linger(l, r->lim.linger_ms < FAILURE_LINGER_MS ? r->lim.linger_ms : FAILURE_LINGER_MS);
}

/* Why a stream's on_close ended its link, in the event feed's words. */
static const char *close_reason_of(int err)
{
    switch (err) {
    case 0: return "fin";
    case DMSG_ERESET: return "reset";
    case DMSG_ETIMEOUT: return "timeout";
    default: return "session_lost";
    }
}

/* A relayed stream ended on one side: close both (at most one FIN each). */
static void link_end(struct relay_link *l, bool reset, const char *reason)
{
    struct relay *r = l->relay;

    if (l->state == LINK_ENDING)
        return;
    leave_relaying(l, reason);
    count(r, reset ? RELAY_CLOSED_RESET : RELAY_CLOSED_FIN);
    if (reset) {
        side_reset(&l->a);
        side_reset(&l->b);
    } else {
        side_fin(&l->a);
        side_fin(&l->b);
    }
    start_linger(l, r->lim.linger_ms);
}

/* ---------------------------------------------------------------------------------------------
 * Writing objects */

/* Seals obj with the session of st's keys and queues it on st. */
static int write_object(struct relay *r, dmsg_stream *st, const uint8_t *obj, size_t len)
{
    size_t framed = 0;
    int rc;

    rc = dmsg_session_seal_object(dmsg_stream_session(st), obj, len, r->scratch, SCRATCH_CAP,
                                  &framed);
    if (rc == 0)
        rc = dmsg_stream_write(st, r->scratch, framed, NULL, NULL);
    return rc;
}

/* A response signed by us (requests to our own key): the IPinfo answer or a refusal. */
static int answer_as_ourselves(struct relay_link *l, bool accepted, uint16_t code,
                               const char *ip_text)
{
    struct relay *r = l->relay;
    dmsg_stream_response resp;
    uint8_t out[OWN_RESPONSE_CAP];
    size_t out_len = 0;
    int rc;

    memset(&resp, 0, sizeof resp);
    dmsg_signed_object_hash(resp.req_hash, l->req_obj, l->req_obj_len);
    resp.accepted = accepted;
    resp.err_code = accepted ? 0 : code;
    if (ip_text != NULL) {
        resp.ip.ptr = (const uint8_t *)ip_text;
        resp.ip.len = strlen(ip_text);
    }
    rc = dmsg_stream_response_make(&resp, &r->identity->sk, out, sizeof out, &out_len);
    if (rc == 0)
        rc = write_object(r, l->a.st, out, out_len);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Reading one object across data callbacks */

enum frame_result { FRAME_MORE, FRAME_DONE, FRAME_BAD_SIZE, FRAME_NOMEM };

/* Takes bytes for the object being read; *used tells how many of data it took. */
static enum frame_result frame_feed(struct relay_link *l, const uint8_t *data, size_t len,
                                    size_t *used)
{
    size_t take;

    *used = 0;
    while (l->prefix_have < 2 && *used < len)
        l->len_prefix[l->prefix_have++] = data[(*used)++];
    if (l->prefix_have < 2)
        return FRAME_MORE;
    if (l->frame == NULL) {
        size_t body = ((size_t)l->len_prefix[0] << 8) | l->len_prefix[1];
        if (body < MIN_OBJECT_BODY || body > l->relay->lim.max_object_bytes)
            return FRAME_BAD_SIZE;
        l->frame = malloc(body);
        if (l->frame == NULL)
            return FRAME_NOMEM;
        l->frame_len = body;
        l->frame_have = 0;
    }
    take = l->frame_len - l->frame_have;
    if (take > len - *used)
        take = len - *used;
    memcpy(l->frame + l->frame_have, data + *used, take);
    l->frame_have += take;
    *used += take;
    return l->frame_have == l->frame_len ? FRAME_DONE : FRAME_MORE;
}

/* ---------------------------------------------------------------------------------------------
 * Relaying data */

static void on_written(dmsg_stream *st, size_t len, int err, void *arg)
{
    struct relay_side *from = arg;

    (void)st;
    (void)err;
    /* Only now does the window credit go back to the sender: one window in flight at most. */
    if (from->st != NULL)
        dmsg_stream_consume(from->st, len);
}

/* Forwards bytes received on from to the other side (to be consumed when written). */
static void pump(struct relay_side *from, const uint8_t *data, size_t len)
{
    struct relay_side *to = other_side(from);
    struct relay_link *l = from->link;
    int rc;

    if (len == 0)
        return;
    if (to->st == NULL || to->fin_sent || to->reset_sent) {
        dmsg_stream_consume(from->st, len); /* the other way is gone: drop, keep credit */
        return;
    }
    rc = dmsg_stream_write(to->st, data, len, on_written, from);
    if (rc != 0) {
        dmsg_stream_consume(from->st, len);
        if (rc != DMSG_ECLOSED)
            link_end(l, true, "reset");
        return;
    }
    l->relay->bytes_forwarded += len;
    l->relay->paths.bytes[l->path] += len;
    if (from == &l->a)
        l->bytes_fwd += len;
    else
        l->bytes_rev += len;
    l->last_active_ms = uv_now(l->relay->loop);
}

/* ---------------------------------------------------------------------------------------------
 * The destination's response */

static void become_relaying(struct relay_link *l)
{
    struct relay *r = l->relay;
    struct held early_a = l->early_a, early_b = l->early_b;

    uv_timer_stop(&l->timer);
    l->state = LINK_RELAYING;
    release_pending(l);
    if (l->rs != NULL) {
        l->rs->active++;
        l->counted_active = true;
    }
    count(r, RELAY_ESTABLISHED);
    r->paths.opened[l->path]++;
    r->paths.relaying[l->path]++;
    l->counted_relaying = true;
    l->last_active_ms = uv_now(r->loop);
    if (r->hooks.on_stream_open != NULL) {
        struct relay_link_info info;
        link_info(l, &info);
        r->hooks.on_stream_open(r->hooks.ctx, &info);
    }
    if (l->via_resolver && r->hooks.hop_result != NULL)
        r->hooks.hop_result(r->hooks.ctx, &l->req.dst.pk, l->hop, 0);
    if (log_enabled(r->log, LOG_LEVEL_DEBUG)) {
        char src[DMSG_PK_HEX_LEN + 1], dst[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&l->req.src.pk, src);
        dmsg_pk_to_hex(&l->req.dst.pk, dst);
        log_debug(r->log, "serving stream", "src=%s:%u dst=%s:%u", src, (unsigned)l->req.src.port,
                  dst, (unsigned)l->req.dst.port);
    }
    /* Bytes either side sent ahead of the handshake go first; they are consumed when written. */
    memset(&l->early_a, 0, sizeof l->early_a);
    memset(&l->early_b, 0, sizeof l->early_b);
    if (early_a.len > 0 && side_alive(&l->a))
        pump(&l->a, early_a.buf, early_a.len);
    if (early_b.len > 0 && side_alive(&l->b) && l->state == LINK_RELAYING)
        pump(&l->b, early_b.buf, early_b.len);
    held_free(&early_a);
    held_free(&early_b);
}


static void abandon_b(struct relay_link *l)
{
    dmsg_stream *st = l->b.st;

    held_free(&l->early_b);
    reset_frame(l);
    if (st == NULL)
        return;
    l->b.st = NULL;
    /* Whatever still arrives is dropped, so side b can carry the next hop's stream at once. */
    dmsg_stream_orphan(st);
    dmsg_stream_reset(st);
}

/* The try towards the current hop failed: for a local destination that ends the link; for a
 * hop the resolver named, the next hop is tried. */
static void hop_failed(struct relay_link *l, enum relay_counter why, int err)
{
    struct relay *r = l->relay;

    if (!l->via_resolver) {
        link_fail(l, why);
        return;
    }
    if (r->hooks.hop_result != NULL)
        r->hooks.hop_result(r->hooks.ctx, &l->req.dst.pk, l->hop, err);
    uv_timer_stop(&l->timer);
    abandon_b(l);
    try_next_hop(l);
}

static void handle_response(struct relay_link *l)
{
    struct relay *r = l->relay;
    dmsg_stream_response resp;
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    uint16_t code = 0;
    int rc;

    rc = dmsg_session_open_object(dmsg_stream_session(l->b.st), l->frame, l->frame_len, &obj,
                                  &obj_len);
    if (rc == 0)
        rc = dmsg_stream_response_parse(&resp, obj, obj_len, &code);
    if (rc == 0)
        rc = dmsg_stream_response_verify(&resp, &l->req, &code);
    if (rc != 0) {
        bool refused = rc == DMSG_EWIRE && code != DMSG_WIRE_RESP_INVALID_SIG &&
                       code != DMSG_WIRE_RESP_INVALID_HASH &&
                       code != DMSG_WIRE_SIGNED_OBJECT_INVALID;
        if (!refused) {
            hop_failed(l, RELAY_FAIL_RESPONSE_INVALID, DMSG_EWIRE);
            return;
        }
        /* A refusal signed by the destination itself is final: the dialer gets it verbatim and
         * fails at once with the reason (the reference drops it and leaves the dialer to time
         * out). Both streams then end. */
        if (l->via_resolver && r->hooks.hop_result != NULL)
            r->hooks.hop_result(r->hooks.ctx, &l->req.dst.pk, l->hop, 0);
        (void)write_object(r, l->a.st, resp.raw, resp.raw_len);
        link_fail(l, RELAY_FAIL_REFUSED);
        return;
    }
    /* Forward the destination's SignedObject byte-identical, re-sealed for the dialer's hop. */
    rc = write_object(r, l->a.st, resp.raw, resp.raw_len);
    if (rc != 0) {
        link_fail(l, rc == DMSG_ECLOSED ? RELAY_FAIL_DIALER_GONE : RELAY_FAIL_INTERNAL);
        return;
    }
    reset_frame(l);
    become_relaying(l);
}

/* ---------------------------------------------------------------------------------------------
 * Stream callbacks: side b (towards the destination) */

static void on_b_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    struct relay_side *b = ctx;
    struct relay_link *l = b->link;
    enum frame_result fr;
    size_t used;

    switch (l->state) {
    case LINK_RELAYING:
        pump(b, data, len);
        return;
    case LINK_AWAITING:
        break;
    default:
        dmsg_stream_consume(st, len);
        return;
    }
    fr = frame_feed(l, data, len, &used);
    dmsg_stream_consume(st, used); /* the response itself is copied */
    if (fr == FRAME_BAD_SIZE || fr == FRAME_NOMEM) {
        hop_failed(l, fr == FRAME_NOMEM ? RELAY_FAIL_INTERNAL : RELAY_FAIL_RESPONSE_INVALID,
                   DMSG_EPROTO);
        return;
    }
    if (fr == FRAME_MORE)
        return;
    /* Bytes after the response belong to the data phase: held until forwarded. */
    if (held_append(&l->early_b, data + used, len - used, l->relay->lim.max_early_bytes) != 0) {
        dmsg_stream_consume(st, len - used);
        link_fail(l, RELAY_FAIL_EARLY_BYTES);
        return;
    }
    handle_response(l);
}

static void on_b_fin(dmsg_stream *st, void *ctx)
{
    struct relay_side *b = ctx;
    struct relay_link *l = b->link;

    (void)st;
    if (l->state == LINK_AWAITING)
        hop_failed(l, RELAY_FAIL_DESTINATION_CLOSED, DMSG_ECLOSED);
    else if (l->state == LINK_RELAYING)
        link_end(l, false, "fin");
}

static void on_b_close(dmsg_stream *st, int err, void *ctx)
{
    struct relay_side *b = ctx;
    struct relay_link *l = b->link;
    bool peer_reset = err == DMSG_ERESET;

    (void)st;
    b->st = NULL;
    if (l->state == LINK_AWAITING) {
        hop_failed(l, RELAY_FAIL_DESTINATION_CLOSED, err != 0 ? err : DMSG_ECLOSED);
    } else if (l->state == LINK_RELAYING) {
        link_end(l, peer_reset, close_reason_of(err));
    }
    maybe_free_link(l);
}

static const dmsg_stream_callbacks b_callbacks = {
    .on_data = on_b_data,
    .on_fin = on_b_fin,
    .on_writable = NULL, /* writes are paced by the sender's window, not by polling */
    .on_close = on_b_close,
};

/* ---------------------------------------------------------------------------------------------
 * Forwarding the request */

/* Opens the stream to session hop and sends the request there. */
static int forward_to(struct relay_link *l, dmsg_session *hop, uint32_t timeout_ms)
{
    struct relay *r = l->relay;
    dmsg_stream *st = NULL;
    int rc;

    rc = dmsg_session_open_stream(hop, &b_callbacks, &l->b, &st);
    if (rc != 0)
        return rc;
    l->b.st = st;
    l->b.fin_sent = l->b.reset_sent = false;
    l->hop = hop;
    /* A mesh path: through a peer the resolver named, or a request a peer brought to us. */
    l->has_via_peer = l->via_resolver || (l->rs != NULL && l->rs->is_peer);
    l->path = l->has_via_peer ? RELAY_PATH_MESH : RELAY_PATH_LOCAL;
    if (l->has_via_peer)
        l->via_peer = *dmsg_session_remote_pk(l->via_resolver ? hop : l->ingress);
    rc = write_object(r, st, l->req.raw, l->req.raw_len);
    if (rc != 0) {
        abandon_b(l);
        return rc;
    }
    reset_frame(l);
    l->state = LINK_AWAITING;
    arm_timer(l, timeout_ms);
    return 0;
}

static void try_next_hop(struct relay_link *l)
{
    struct relay *r = l->relay;

    l->via_resolver = true;
    for (;;) {
        dmsg_session *hop = NULL;
        uint32_t timeout_ms = r->lim.response_timeout_ms;

        if (r->hooks.next_hop == NULL ||
            r->hooks.next_hop(r->hooks.ctx, &l->req.dst.pk, l->ingress, l->attempt++, &hop,
                              &timeout_ms) != 0) {
            link_fail(l, RELAY_FAIL_NO_DESTINATION);
            return;
        }
        if (hop == NULL || hop == l->ingress)
            continue;
        if (forward_to(l, hop, timeout_ms) == 0)
            return;
        if (r->hooks.hop_result != NULL)
            r->hooks.hop_result(r->hooks.ctx, &l->req.dst.pk, hop, DMSG_ECLOSED);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Requests to our own key */

static void answer_ipinfo(struct relay_link *l)
{
    uint8_t ip[16];
    char text[DMSG_IP_TEXT_MAX];
    size_t ip_len = netaddr_ip_bytes(dmsg_session_remote_addr(l->ingress), ip);

    if (ip_len == 0 || dmsg_ip_to_text(text, ip, ip_len) < 0) {
        link_fail(l, RELAY_FAIL_INTERNAL);
        return;
    }
    if (answer_as_ourselves(l, true, 0, text) != 0) {
        link_fail(l, RELAY_FAIL_INTERNAL);
        return;
    }
    count(l->relay, RELAY_IPINFO);
    side_fin(&l->a);
    start_linger(l, l->relay->lim.linger_ms);
}

/* The link lets go of the dialer's stream: the in-process service owns it now. */
static void detach_dialer(struct relay_link *l)
{
    uv_timer_stop(&l->timer);
    l->a.st = NULL;
    l->state = LINK_ENDING;
    release_pending(l);
    maybe_free_link(l);
}

static void serve_own_key(struct relay_link *l)
{
    struct relay *r = l->relay;
    uint16_t code = DMSG_WIRE_REQ_NO_LISTENER;

    if (r->hooks.own_service != NULL) {
        struct relay_own_request req = {
            .link_id = l->id,
            .session = l->ingress,
            .stream = l->a.st,
            .raw = l->req.raw,
            .raw_len = l->req.raw_len,
            .src_pk = l->req.src.pk,
            .dst_pk = l->req.dst.pk,
            .src_port = l->req.src.port,
            .dst_port = l->req.dst.port,
            .noise_msg = l->req.noise_msg.ptr,
            .noise_msg_len = l->req.noise_msg.len,
            .early = l->early_a.buf,
            .early_len = l->early_a.len,
        };
        code = r->hooks.own_service(r->hooks.ctx, &req);
        if (code == 0) {
            count(r, RELAY_OWN_SERVICE);
            r->paths.opened[RELAY_PATH_SERVICE]++;
            detach_dialer(l);
            return;
        }
    }
    /* Refused with a response signed by us, so the dialer fails at once with the code. */
    if (answer_as_ourselves(l, false, code, NULL) != 0) {
        link_fail(l, RELAY_FAIL_INTERNAL);
        return;
    }
    count(r, RELAY_OWN_REFUSED);
    r->paths.failed[RELAY_PATH_SERVICE][RELAY_OWN_REFUSED]++;
    /* Held early bytes are dropped with the link; give their credit back now. */
    if (l->early_a.len > 0)
        dmsg_stream_consume(l->a.st, l->early_a.len);
    held_free(&l->early_a);
    side_fin(&l->a);
    start_linger(l, l->relay->lim.linger_ms);
}

/* ---------------------------------------------------------------------------------------------
 * The request */

/* A newer reference server's PeerAnnounce: the hook signs the answer, we send it and close. */
static bool answer_peer_announce(struct relay_link *l)
{
    struct relay *r = l->relay;
    uint8_t out[OWN_RESPONSE_CAP];
    size_t out_len = 0;

    if (r->hooks.peer_announce == NULL || l->rs == NULL ||
        r->hooks.peer_announce(r->hooks.ctx, l->ingress, l->rs, l->req_obj, l->req_obj_len, out,
                               sizeof out, &out_len) != 1)
        return false;
    count(r, RELAY_PEER_ANNOUNCES);
    if (write_object(r, l->a.st, out, out_len) != 0) {
        link_fail(l, RELAY_FAIL_INTERNAL);
        return true;
    }
    if (l->early_a.len > 0)
        dmsg_stream_consume(l->a.st, l->early_a.len);
    held_free(&l->early_a);
    side_fin(&l->a);
    start_linger(l, r->lim.linger_ms);
    return true;
}

static enum relay_counter counter_of_request_error(int rc, uint16_t code)
{
    if (rc != DMSG_EWIRE)
        return RELAY_FAIL_INVALID_REQUEST; /* gob errors: the reference has no code either */
    switch (code) {
    case DMSG_WIRE_REQ_INVALID_SIG: return RELAY_FAIL_SIGNATURE;
    case DMSG_WIRE_REQ_INVALID_SRC_PK: return RELAY_FAIL_SOURCE_KEY;
    case DMSG_WIRE_REQ_INVALID_TIMESTAMP:
    case DMSG_WIRE_REQ_INVALID_DST_PK:
    case DMSG_WIRE_REQ_INVALID_SRC_PORT:
    case DMSG_WIRE_REQ_INVALID_DST_PORT: return RELAY_FAIL_FIELDS;
    default: return RELAY_FAIL_INVALID_REQUEST;
    }
}

static void handle_request(struct relay_link *l)
{
    struct relay *r = l->relay;
    const dmsg_pk *session_pk = dmsg_session_remote_pk(l->ingress);
    bool from_peer = l->rs != NULL && l->rs->is_peer;
    uint8_t *obj = NULL;
    size_t obj_len = 0;
    uint16_t code = 0;
    dmsg_session *local;
    int rc;

    rc = dmsg_session_open_object(l->ingress, l->frame, l->frame_len, &obj, &obj_len);
    if (rc != 0) {
        link_fail(l, RELAY_FAIL_DECRYPT);
        return;
    }
    /* Keep the object (the response is checked against its hash); the frame buffer is it. */
    l->req_obj = l->frame;
    l->frame = NULL;
    memmove(l->req_obj, obj, obj_len);
    l->req_obj_len = obj_len;
    rc = dmsg_stream_request_parse(&l->req, l->req_obj, l->req_obj_len, &code);
    if (rc == 0)
        rc = dmsg_stream_request_verify(&l->req, from_peer ? NULL : session_pk, NULL, &code);
    if (rc != 0) {
        /* Only an object that is no valid request may be a PeerAnnounce: no cost otherwise. */
        if (answer_peer_announce(l))
            return;
        link_fail(l, counter_of_request_error(rc, code));
        return;
    }
    if (dmsg_pk_equal(&l->req.dst.pk, &r->identity->pk)) {
        if (l->req.ip_info) {
            /* Upstream refuses a relayed IPinfo (302): only a client asks for its own IP. */
            if (!dmsg_pk_equal(&l->req.src.pk, session_pk))
                link_fail(l, RELAY_FAIL_SOURCE_KEY);
            else
                answer_ipinfo(l);
        } else {
            serve_own_key(l);
        }
        return;
    }
    local = r->hooks.find_local(r->hooks.ctx, &l->req.dst.pk);
    if (local != NULL) {
        rc = forward_to(l, local, r->lim.response_timeout_ms);
        if (rc != 0)
            link_fail(l, RELAY_FAIL_OPEN_STREAM);
        return;
    }
    if (from_peer) {
        link_fail(l, RELAY_FAIL_NO_DESTINATION); /* one hop at most */
        return;
    }
    try_next_hop(l);
}

/* ---------------------------------------------------------------------------------------------
 * Stream callbacks: side a (the dialer's stream) */

static void ping_reply(struct relay_link *l, size_t rest)
{
    static const uint8_t marker[2] = {0, 0};

    count(l->relay, RELAY_PINGS);
    if (rest > 0)
        dmsg_stream_consume(l->a.st, rest);
    if (dmsg_stream_write(l->a.st, marker, sizeof marker, NULL, NULL) != 0) {
        side_reset(&l->a);
    } else {
        side_fin(&l->a);
    }
    start_linger(l, l->relay->lim.linger_ms);
}

static void read_request(struct relay_link *l, const uint8_t *data, size_t len)
{
    enum frame_result fr;
    size_t used = 0;

    fr = frame_feed(l, data, len, &used);
    dmsg_stream_consume(l->a.st, used); /* the request itself is copied */
    if (l->frame == NULL && l->prefix_have == 2 && l->len_prefix[0] == 0 &&
        l->len_prefix[1] == 0) {
        /* A zero length is no object: it is the newer clients' ping marker. */
        ping_reply(l, len - used);
        return;
    }
    if (fr == FRAME_BAD_SIZE || fr == FRAME_NOMEM) {
        if (len > used)
            dmsg_stream_consume(l->a.st, len - used);
        link_fail(l, fr == FRAME_NOMEM ? RELAY_FAIL_INTERNAL : RELAY_FAIL_OBJECT_SIZE);
        return;
    }
    if (fr == FRAME_MORE)
        return;
    uv_timer_stop(&l->timer);
    if (held_append(&l->early_a, data + used, len - used, l->relay->lim.max_early_bytes) != 0) {
        dmsg_stream_consume(l->a.st, len - used);
        link_fail(l, RELAY_FAIL_EARLY_BYTES);
        return;
    }
    handle_request(l);
}

static void on_a_data(dmsg_stream *st, const uint8_t *data, size_t len, void *ctx)
{
    struct relay_side *a = ctx;
    struct relay_link *l = a->link;

    switch (l->state) {
    case LINK_READING:
        read_request(l, data, len);
        break;
    case LINK_AWAITING:
        /* Honest dialers wait for the response; hold a little, refuse a flood (R12). */
        if (held_append(&l->early_a, data, len, l->relay->lim.max_early_bytes) != 0) {
            dmsg_stream_consume(st, len);
            link_fail(l, RELAY_FAIL_EARLY_BYTES);
        }
        break;
    case LINK_RELAYING:
        pump(a, data, len);
        break;
    case LINK_ENDING:
        dmsg_stream_consume(st, len);
        break;
    }
}

static void on_a_fin(dmsg_stream *st, void *ctx)
{
    struct relay_side *a = ctx;
    struct relay_link *l = a->link;

    (void)st;
    if (l->state == LINK_READING || l->state == LINK_AWAITING)
        link_fail(l, RELAY_FAIL_DIALER_GONE);
    else if (l->state == LINK_RELAYING)
        link_end(l, false, "fin");
}

static void on_a_close(dmsg_stream *st, int err, void *ctx)
{
    struct relay_side *a = ctx;
    struct relay_link *l = a->link;

    (void)st;
    a->st = NULL;
    if (l->state == LINK_READING && err == DMSG_ERESET)
        glitch(l, DMSG_GLITCH_EARLY_RESET); /* Rapid Reset: SYN, RST, no request read */
    if (l->state == LINK_READING || l->state == LINK_AWAITING)
        link_fail(l, RELAY_FAIL_DIALER_GONE);
    else if (l->state == LINK_RELAYING)
        link_end(l, err == DMSG_ERESET, close_reason_of(err));
    /* The ingress session's counters must not outlive its streams. */
    release_pending(l);
    release_active(l);
    l->rs = NULL;
    l->ingress = NULL;
    maybe_free_link(l);
}

static const dmsg_stream_callbacks a_callbacks = {
    .on_data = on_a_data,
    .on_fin = on_a_fin,
    .on_writable = NULL, /* writes are paced by the sender's window, not by polling */
    .on_close = on_a_close,
};

/* ---------------------------------------------------------------------------------------------
 * Admission of a new stream */

/* A mesh peer's session carries the requests of all that server's clients, each already held
 * to a client's budget there: it gets this many clients' worth (threats.md M4, own budget). */
#define PEER_BUDGET_FACTOR 16

/* Token bucket per session: requests_per_second, depth requests_burst. */
static bool take_token(struct relay *r, struct relay_session *rs)
{
    uint64_t now = uv_now(r->loop);
    double factor = rs->is_peer ? PEER_BUDGET_FACTOR : 1;
    double burst = r->lim.requests_burst * factor;

    if (!rs->tokens_init) {
        rs->tokens = burst;
        rs->tokens_at_ms = now;
        rs->tokens_init = true;
    }
    rs->tokens += (double)(now - rs->tokens_at_ms) * r->lim.requests_per_second * factor /
                  1000.0;
    rs->tokens_at_ms = now;
    if (rs->tokens > burst)
        rs->tokens = burst;
    if (rs->tokens < 1.0)
        return false;
    rs->tokens -= 1.0;
    return true;
}

/* A refusal at the session's caps is cheap, but a dialer that keeps pushing past them is
 * flooding (threats.md Y3). */
static void refuse_over_cap(struct relay *r, dmsg_session *s, const struct relay_session *rs,
                            dmsg_stream *st, enum relay_counter why)
{
    count(r, why);
    r->paths.failed[RELAY_PATH_NONE][why]++;
    dmsg_stream_reset(st);
    session_glitch(s, rs, DMSG_GLITCH_OVER_CAP);
}

void relay_accept_stream(struct relay *r, dmsg_session *s, struct relay_session *rs,
                         dmsg_stream *st)
{
    struct relay_link *l;

    count(r, RELAY_STREAMS_ACCEPTED);
    if (r->closing) {
        dmsg_stream_reset(st);
        return;
    }
    if (!take_token(r, rs)) {
        refuse_over_cap(r, s, rs, st, RELAY_FAIL_RATE);
        return;
    }
    if (rs->pending >= r->lim.max_pending_requests * (rs->is_peer ? PEER_BUDGET_FACTOR : 1)) {
        refuse_over_cap(r, s, rs, st, RELAY_FAIL_PENDING);
        return;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        count(r, RELAY_FAIL_INTERNAL);
        dmsg_stream_reset(st);
        return;
    }
    l->relay = r;
    l->a.link = l->b.link = l;
    l->a.st = st;
    l->ingress = s;
    l->rs = rs;
    l->state = LINK_READING;
    l->id = ++r->next_link_id;
    l->opened_ms = l->last_active_ms = uv_now(r->loop);
    rs->pending++;
    l->counted_pending = true;
    uv_timer_init(r->loop, &l->timer);
    l->timer.data = l;
    l->next = r->links;
    if (r->links != NULL)
        r->links->prev = l;
    r->links = l;
    r->n_links++;
    dmsg_stream_set_callbacks(st, &a_callbacks, &l->a);
    arm_timer(l, r->lim.request_timeout_ms);
}

/* ---------------------------------------------------------------------------------------------
 * The relay object */

int relay_init(uv_loop_t *loop, const dmsg_identity *identity, const struct relay_limits *lim,
               const struct relay_hooks *hooks, const struct dmsgd_log *log, struct relay **out)
{
    struct relay *r;

    *out = NULL;
    if (hooks == NULL || hooks->find_local == NULL)
        return DMSG_EINVAL;
    r = calloc(1, sizeof *r);
    if (r == NULL)
        return DMSG_ENOMEM;
    r->scratch = malloc(SCRATCH_CAP);
    if (r->scratch == NULL) {
        free(r);
        return DMSG_ENOMEM;
    }
    r->loop = loop;
    r->identity = identity;
    r->lim = *lim;
    r->hooks = *hooks;
    r->log = log;
    *out = r;
    return 0;
}

void relay_set_limits(struct relay *r, const struct relay_limits *lim)
{
    r->lim = *lim;
}

void relay_get_stats(const struct relay *r, struct relay_stats *out)
{
    memcpy(out->counters, r->counters, sizeof out->counters);
    out->bytes_forwarded = r->bytes_forwarded;
    out->links = r->n_links;
}

uint64_t relay_next_link_id(struct relay *r)
{
    return ++r->next_link_id;
}

void relay_get_path_stats(const struct relay *r, struct relay_path_stats *out)
{
    *out = r->paths;
}

void relay_foreach_link(const struct relay *r,
                        void (*fn)(const struct relay_link_info *info, void *arg), void *arg)
{
    struct relay_link_info info;

    for (const struct relay_link *l = r->links; l != NULL; l = l->next) {
        if (l->path == RELAY_PATH_NONE)
            continue; /* not forwarded (reading, refused, served by us) */
        link_info(l, &info);
        fn(&info, arg);
    }
}

void relay_close(struct relay *r, void (*on_done)(void *arg), void *arg)
{
    r->closing = true;
    r->on_done = on_done;
    r->on_done_arg = arg;
    if (r->n_links == 0) {
        free(r->scratch);
        free(r);
        if (on_done != NULL)
            on_done(arg);
    }
}
