/* Go net/rpc over gob, sans I/O: input buffering, header/body pairing, method lookup with Go's
 * error texts, and call/reply encoding (gob-and-rpc.md A.10). */
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/rpc.h"

/* ---- schemas ---- */

static const dmsg_gob_field request_fields[] = {
    {"ServiceMethod", offsetof(dmsg_rpc_request, service_method), &dmsg_gob_type_string, 0},
    {"Seq", offsetof(dmsg_rpc_request, seq), &dmsg_gob_type_uint64, 0},
};
const dmsg_gob_type dmsg_gob_rpc_request = {
    .kind = DMSG_GOB_STRUCT, .name = "Request", .size = sizeof(dmsg_rpc_request),
    .fields = request_fields, .nfields = 2};

static const dmsg_gob_field response_fields[] = {
    {"ServiceMethod", offsetof(dmsg_rpc_response, service_method), &dmsg_gob_type_string, 0},
    {"Seq", offsetof(dmsg_rpc_response, seq), &dmsg_gob_type_uint64, 0},
    {"Error", offsetof(dmsg_rpc_response, error), &dmsg_gob_type_string, 0},
};
const dmsg_gob_type dmsg_gob_rpc_response = {
    .kind = DMSG_GOB_STRUCT, .name = "Response", .size = sizeof(dmsg_rpc_response),
    .fields = response_fields, .nfields = 3};

const dmsg_gob_type dmsg_gob_rpc_empty = {.kind = DMSG_GOB_STRUCT, .name = "", .size = 1};

dmsg_gob_bytes dmsg_rpc_str(const char *s)
{
    return (dmsg_gob_bytes){(const uint8_t *)s, s ? strlen(s) : 0};
}

/* ---- setup ---- */

static bool method_fits(const dmsg_rpc_method *m)
{
    return m && m->name && m->arg && m->reply && m->arg->size <= DMSG_RPC_MAX_BODY &&
           m->reply->size <= DMSG_RPC_MAX_BODY;
}

int dmsg_rpc_init(dmsg_rpc_conn *conn, const dmsg_rpc_config *cfg)
{
    if (!conn || !cfg || !cfg->inbuf || cfg->inbuf_cap == 0)
        return DMSG_EINVAL;
    if (cfg->role != DMSG_RPC_CLIENT && cfg->role != DMSG_RPC_SERVER)
        return DMSG_EINVAL;
    if (cfg->role == DMSG_RPC_SERVER && (!cfg->methods || cfg->nmethods == 0))
        return DMSG_EINVAL;
    for (size_t i = 0; cfg->role == DMSG_RPC_SERVER && i < cfg->nmethods; i++)
        if (!method_fits(cfg->methods[i]))
            return DMSG_EINVAL;
    memset(conn, 0, sizeof *conn);
    conn->role = cfg->role;
    conn->methods = cfg->methods;
    conn->nmethods = cfg->nmethods;
    conn->in = cfg->inbuf;
    conn->in_cap = cfg->inbuf_cap;
    dmsg_gob_decoder_init(&conn->dec, cfg->inbuf_cap, cfg->arena, cfg->arena_cap);
    dmsg_gob_registry *reg = cfg->registry;
    if (!reg) {
        dmsg_gob_registry_init(&conn->own_registry);
        reg = &conn->own_registry;
    }
    dmsg_gob_encoder_init(&conn->enc, reg);
    return 0;
}

/* ---- input ---- */

/* Bytes before this offset have been handed out in events and may be dropped. */
static size_t keep_from(const dmsg_rpc_conn *conn)
{
    return conn->have_header ? conn->hdr_start : conn->in_pos;
}

static void compact(dmsg_rpc_conn *conn)
{
    size_t drop = keep_from(conn);
    if (drop == 0)
        return;
    memmove(conn->in, conn->in + drop, conn->in_len - drop);
    conn->in_len -= drop;
    conn->in_pos -= drop;
    if (conn->have_header)
        conn->hdr_start -= drop;
}

int dmsg_rpc_feed(dmsg_rpc_conn *conn, const uint8_t *in, size_t len, size_t *taken)
{
    if (!conn || !taken || (!in && len))
        return DMSG_EINVAL;
    *taken = 0;
    if (conn->broken)
        return conn->broken;
    compact(conn);
    size_t n = conn->in_cap - conn->in_len;
    if (n > len)
        n = len;
    if (n)
        memcpy(conn->in + conn->in_len, in, n);
    conn->in_len += n;
    *taken = n;
    return 0;
}

bool dmsg_rpc_has_partial_input(const dmsg_rpc_conn *conn)
{
    return conn->have_header || conn->in_len > conn->in_pos;
}

static int fail(dmsg_rpc_conn *conn, int rc)
{
    conn->broken = rc;
    conn->have_header = false;
    return rc;
}

/* A value did not decode for lack of bytes: more may come, unless the buffer is already full of
 * bytes that are still needed. */
static int need_more(dmsg_rpc_conn *conn)
{
    if (conn->in_len == conn->in_cap && keep_from(conn) == 0)
        return fail(conn, DMSG_ETOOBIG);
    return DMSG_EAGAIN;
}

static size_t rel(const dmsg_rpc_conn *conn, dmsg_gob_bytes s)
{
    return s.len ? (size_t)(s.ptr - (conn->in + conn->hdr_start)) : 0;
}

static dmsg_gob_bytes view(const dmsg_rpc_conn *conn, size_t off, size_t len)
{
    return (dmsg_gob_bytes){len ? conn->in + conn->hdr_start + off : NULL, len};
}

static int read_header(dmsg_rpc_conn *conn)
{
    dmsg_rpc_response hdr; /* a Request header fills its first two fields alike */
    _Static_assert(offsetof(dmsg_rpc_request, seq) == offsetof(dmsg_rpc_response, seq),
                   "request and response headers share a prefix");
    const dmsg_gob_type *t =
        conn->role == DMSG_RPC_SERVER ? &dmsg_gob_rpc_request : &dmsg_gob_rpc_response;
    size_t consumed;
    memset(&hdr, 0, sizeof hdr);
    int rc = dmsg_gob_decode(&conn->dec, conn->in + conn->in_pos, conn->in_len - conn->in_pos, t,
                             &hdr, &consumed);
    if (rc == DMSG_EAGAIN)
        return need_more(conn);
    if (rc)
        return fail(conn, rc);
    conn->hdr_start = conn->in_pos;
    conn->in_pos += consumed;
    conn->have_header = true;
    conn->method_rel = rel(conn, hdr.service_method);
    conn->method_len = hdr.service_method.len;
    conn->error_rel = rel(conn, hdr.error);
    conn->error_len = hdr.error.len;
    conn->hdr_seq = hdr.seq;
    return 0;
}

static bool bytes_eq(const uint8_t *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* Go splits at the last dot: "A.B.C" is method C of service "A.B". */
static const dmsg_rpc_method *find_method(const dmsg_rpc_conn *conn, dmsg_gob_bytes name,
                                          dmsg_rpc_reject *why)
{
    const uint8_t *dot = NULL;
    for (size_t i = 0; i < name.len; i++)
        if (name.ptr[i] == '.')
            dot = name.ptr + i;
    if (!dot) {
        *why = DMSG_RPC_REJECT_ILL_FORMED;
        return NULL;
    }
    size_t service_len = (size_t)(dot - name.ptr);
    bool service_known = false;
    for (size_t i = 0; i < conn->nmethods; i++) {
        const char *full = conn->methods[i]->name;
        if (bytes_eq(name.ptr, name.len, full, strlen(full))) {
            *why = DMSG_RPC_REJECT_NONE;
            return conn->methods[i];
        }
        const char *their_dot = strrchr(full, '.');
        if (their_dot && bytes_eq(name.ptr, service_len, full, (size_t)(their_dot - full)))
            service_known = true;
    }
    *why = service_known ? DMSG_RPC_REJECT_NO_METHOD : DMSG_RPC_REJECT_NO_SERVICE;
    return NULL;
}

static int find_pending(const dmsg_rpc_conn *conn, uint64_t seq)
{
    for (size_t i = 0; i < conn->npending; i++)
        if (conn->pending[i].seq == seq)
            return (int)i;
    return -1;
}

static void drop_pending(dmsg_rpc_conn *conn, size_t i)
{
    conn->pending[i] = conn->pending[--conn->npending];
}

/* The schema the body after the current header is read with; NULL reads and discards it. */
static const dmsg_gob_type *body_type(const dmsg_rpc_conn *conn, const dmsg_rpc_method **method,
                                      dmsg_rpc_reject *why, int *pending)
{
    dmsg_gob_bytes name = view(conn, conn->method_rel, conn->method_len);
    *why = DMSG_RPC_REJECT_NONE;
    *pending = -1;
    if (conn->role == DMSG_RPC_SERVER) {
        *method = find_method(conn, name, why);
        return *method ? (*method)->arg : NULL;
    }
    *pending = find_pending(conn, conn->hdr_seq);
    *method = *pending >= 0 ? conn->pending[*pending].method : NULL;
    /* after an error the body is the empty struct, which net/rpc reads as nil */
    return *method && conn->error_len == 0 ? (*method)->reply : NULL;
}

static void fill_event(const dmsg_rpc_conn *conn, dmsg_rpc_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->service_method = view(conn, conn->method_rel, conn->method_len);
    ev->error = view(conn, conn->error_rel, conn->error_len);
    ev->seq = conn->hdr_seq;
}

/* Reads the body of the current header; 1 = an event is ready, 0 = a reply nobody waits for
 * was dropped, <0 = error (DMSG_EAGAIN included). */
static int read_body(dmsg_rpc_conn *conn, dmsg_rpc_event *ev)
{
    const dmsg_rpc_method *method;
    dmsg_rpc_reject why;
    int pending;
    const dmsg_gob_type *t = body_type(conn, &method, &why, &pending);
    size_t consumed;
    int rc = dmsg_gob_decode(&conn->dec, conn->in + conn->in_pos, conn->in_len - conn->in_pos, t,
                             t ? (void *)conn->body.bytes : NULL, &consumed);
    if (rc == DMSG_EAGAIN)
        return need_more(conn);
    if (rc && !(conn->role == DMSG_RPC_SERVER && method))
        return fail(conn, rc);
    fill_event(conn, ev);
    conn->have_header = false;
    if (rc) {
        /* Go answers an undecodable argument with the gob error; our decoder state is unknown
         * after it, so the stream ends once the answer is sent */
        conn->broken = DMSG_EPROTO;
        ev->kind = DMSG_RPC_EV_REJECT;
        ev->reject = DMSG_RPC_REJECT_BAD_ARG;
        ev->arg_error = rc;
        ev->method = method;
        return 1;
    }
    conn->in_pos += consumed;
    if (conn->role == DMSG_RPC_SERVER) {
        ev->kind = method ? DMSG_RPC_EV_CALL : DMSG_RPC_EV_REJECT;
        ev->reject = why;
        ev->method = method;
        ev->body = method ? conn->body.bytes : NULL;
        return 1;
    }
    if (pending < 0)
        return 0; /* as Go's client: a reply to no pending call is read and dropped */
    drop_pending(conn, (size_t)pending);
    ev->kind = DMSG_RPC_EV_REPLY;
    ev->method = method;
    ev->body = t ? conn->body.bytes : NULL;
    return 1;
}

int dmsg_rpc_poll(dmsg_rpc_conn *conn, dmsg_rpc_event *ev)
{
    if (!conn || !ev)
        return DMSG_EINVAL;
    for (;;) {
        if (conn->broken)
            return conn->broken;
        if (!conn->have_header) {
            int rc = read_header(conn);
            if (rc)
                return rc;
        }
        int rc = read_body(conn, ev);
        if (rc < 0)
            return rc;
        if (rc == 1)
            return 0;
    }
}

/* ---- Go's texts ---- */

int dmsg_rpc_reject_text(const dmsg_rpc_event *ev, char *out, size_t cap, size_t *len)
{
    if (!ev || !out || ev->kind != DMSG_RPC_EV_REJECT)
        return DMSG_EINVAL;
    const char *prefix;
    switch (ev->reject) {
    case DMSG_RPC_REJECT_ILL_FORMED: prefix = "rpc: service/method request ill-formed: "; break;
    case DMSG_RPC_REJECT_NO_SERVICE: prefix = "rpc: can't find service "; break;
    case DMSG_RPC_REJECT_NO_METHOD: prefix = "rpc: can't find method "; break;
    case DMSG_RPC_REJECT_BAD_ARG: prefix = "gob: "; break;
    default: return DMSG_EINVAL;
    }
    dmsg_gob_bytes tail = ev->reject == DMSG_RPC_REJECT_BAD_ARG
                              ? dmsg_rpc_str(dmsg_strerror(ev->arg_error))
                              : ev->service_method;
    size_t plen = strlen(prefix);
    if (cap == 0 || cap - 1 < plen || cap - 1 - plen < tail.len)
        return DMSG_ETOOBIG;
    memcpy(out, prefix, plen);
    if (tail.len)
        memcpy(out + plen, tail.ptr, tail.len);
    out[plen + tail.len] = '\0';
    if (len)
        *len = plen + tail.len;
    return 0;
}

/* ---- output ---- */

/* A header and its body as one unit: on failure the encoder forgets both, so that the call can
 * be repeated (with a larger buffer) and no definition is ever sent twice or never. */
static int encode_pair(dmsg_rpc_conn *conn, const dmsg_gob_type *hdr_type, const void *hdr,
                       const dmsg_gob_type *body_type, const void *body, uint8_t *out, size_t cap,
                       size_t *out_len)
{
    if (!out_len || (!out && cap) || !body_type || !body)
        return DMSG_EINVAL;
    dmsg_gob_encoder saved = conn->enc;
    size_t n1 = 0, n2 = 0;
    int rc = dmsg_gob_encode(&conn->enc, hdr_type, hdr, out, cap, &n1);
    if (rc == 0)
        rc = dmsg_gob_encode(&conn->enc, body_type, body, out + n1, cap - n1, &n2);
    if (rc) {
        conn->enc = saved;
        return rc;
    }
    *out_len = n1 + n2;
    return 0;
}

int dmsg_rpc_call(dmsg_rpc_conn *conn, const dmsg_rpc_method *method, const void *arg,
                  uint8_t *out, size_t cap, size_t *out_len, uint64_t *seq)
{
    if (!conn || !method_fits(method) || !arg)
        return DMSG_EINVAL;
    if (conn->role != DMSG_RPC_CLIENT)
        return DMSG_ESTATE;
    if (conn->npending == DMSG_RPC_MAX_PENDING)
        return DMSG_ELIMIT;
    dmsg_rpc_request hdr = {dmsg_rpc_str(method->name), conn->next_seq};
    int rc = encode_pair(conn, &dmsg_gob_rpc_request, &hdr, method->arg, arg, out, cap, out_len);
    if (rc)
        return rc;
    conn->pending[conn->npending++] = (dmsg_rpc_pending){conn->next_seq, method};
    if (seq)
        *seq = conn->next_seq;
    conn->next_seq++;
    return 0;
}

int dmsg_rpc_cancel(dmsg_rpc_conn *conn, uint64_t seq)
{
    int i = conn ? find_pending(conn, seq) : -1;
    if (i < 0)
        return DMSG_ENOTFOUND;
    drop_pending(conn, (size_t)i);
    return 0;
}

size_t dmsg_rpc_pending_count(const dmsg_rpc_conn *conn)
{
    return conn->npending;
}

int dmsg_rpc_reply(dmsg_rpc_conn *conn, dmsg_gob_bytes service_method, uint64_t seq,
                   const dmsg_gob_type *reply_type, const void *reply, uint8_t *out, size_t cap,
                   size_t *out_len)
{
    if (!conn)
        return DMSG_EINVAL;
    if (conn->role != DMSG_RPC_SERVER)
        return DMSG_ESTATE;
    dmsg_rpc_response hdr = {service_method, seq, {NULL, 0}};
    return encode_pair(conn, &dmsg_gob_rpc_response, &hdr, reply_type, reply, out, cap, out_len);
}

int dmsg_rpc_reply_error(dmsg_rpc_conn *conn, dmsg_gob_bytes service_method, uint64_t seq,
                         dmsg_gob_bytes error, uint8_t *out, size_t cap, size_t *out_len)
{
    if (!conn || error.len == 0 || !error.ptr)
        return DMSG_EINVAL;
    if (conn->role != DMSG_RPC_SERVER)
        return DMSG_ESTATE;
    static const uint8_t nothing = 0;
    dmsg_rpc_response hdr = {service_method, seq, error};
    return encode_pair(conn, &dmsg_gob_rpc_response, &hdr, &dmsg_gob_rpc_empty, &nothing, out,
                       cap, out_len);
}
