/* rpc: Go net/rpc over gob against setup_rpc.json: every scenario replayed party by party with
 * every byte compared, the canonical fresh-process streams, input split at every byte, and
 * malformed input. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "dmsg/routing.h"
#include "dmsg/rpc.h"
#include "route_json.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(rpc, .init = setup);

static json_t *field(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    cr_assert(v, "missing %s", k);
    return v;
}

static const char *str_of(json_t *o, const char *k)
{
    return json_string_value(field(o, k));
}

/* ---- methods and bodies ---- */

/* What the unknown_method scenario's visor calls: DialRouteGroup's types under another name. */
static const dmsg_rpc_method no_such_method = {
    "SetupRPCGateway.NoSuchMethod", &dmsg_gob_bidi_route, &dmsg_gob_edge_rules};

static const dmsg_rpc_method *method_named(const char *name)
{
    for (size_t i = 0; i < DMSG_SETUP_NODE_NMETHODS; i++)
        if (strcmp(dmsg_setup_node_methods[i]->name, name) == 0)
            return dmsg_setup_node_methods[i];
    for (size_t i = 0; i < DMSG_VISOR_NMETHODS; i++)
        if (strcmp(dmsg_visor_methods[i]->name, name) == 0)
            return dmsg_visor_methods[i];
    cr_assert_str_eq(name, no_such_method.name);
    return &no_such_method;
}

typedef union body_value {
    dmsg_bidi_route route;
    dmsg_edge_rules edge;
    uint8_t count;
    dmsg_gob_slice slice;
    bool ok;
    char empty;
} body_value;

typedef struct body_store {
    rj_route_store route;
    uint32_t ids[16];
    dmsg_gob_bytes rules[8];
    uint8_t bytes[8][256];
} body_store;

/* A decoded message body of the vectors as the C value our schemas describe. */
static void body_from_json(const dmsg_gob_type *t, json_t *b, body_value *v, body_store *s)
{
    memset(v, 0, sizeof *v);
    if (t == &dmsg_gob_bidi_route) {
        rj_route_body(b, &v->route, &s->route);
    } else if (t == &dmsg_gob_edge_rules) {
        rj_hex(field(b, "Desc"), v->edge.desc, DMSG_ROUTE_DESC_LEN);
        v->edge.forward = rj_bytes(field(b, "Forward"), s->bytes[0], sizeof s->bytes[0]);
        v->edge.reverse = rj_bytes(field(b, "Reverse"), s->bytes[1], sizeof s->bytes[1]);
    } else if (t == &dmsg_gob_type_uint8) {
        v->count = (uint8_t)json_integer_value(b);
    } else if (t == &dmsg_gob_type_bool) {
        cr_assert(json_is_boolean(b));
        v->ok = json_is_true(b);
    } else if (t == &dmsg_gob_route_ids || t == &dmsg_gob_rules) {
        size_t i, n = json_array_size(b);
        json_t *e;
        cr_assert(n <= 8);
        json_array_foreach(b, i, e) {
            if (t == &dmsg_gob_route_ids)
                s->ids[i] = (uint32_t)json_integer_value(e);
            else
                s->rules[i] = rj_bytes(e, s->bytes[i], sizeof s->bytes[i]);
        }
        v->slice = (dmsg_gob_slice){t == &dmsg_gob_route_ids ? (void *)s->ids : (void *)s->rules,
                                    n};
    } else {
        cr_assert_fail("no JSON form for this type");
    }
}

static void assert_body(const dmsg_gob_type *t, const void *got, json_t *b)
{
    cr_assert(got, "no body");
    if (t == &dmsg_gob_bidi_route) {
        body_value want;
        static body_store st;
        body_from_json(t, b, &want, &st);
        rj_assert_route_eq(got, &want.route);
    } else if (t == &dmsg_gob_edge_rules) {
        const dmsg_edge_rules *e = got;
        rj_assert_desc(e->desc, field(b, "Desc"), "EdgeRules.Desc");
        rj_assert_view_hex(e->forward, field(b, "Forward"), "EdgeRules.Forward");
        rj_assert_view_hex(e->reverse, field(b, "Reverse"), "EdgeRules.Reverse");
    } else if (t == &dmsg_gob_type_uint8) {
        cr_assert_eq(*(const uint8_t *)got, json_integer_value(b));
    } else if (t == &dmsg_gob_type_bool) {
        cr_assert_eq(*(const bool *)got, json_is_true(b));
    } else {
        const dmsg_gob_slice *s = got;
        cr_assert_eq(s->len, json_array_size(b));
        for (size_t i = 0; i < s->len; i++) {
            if (t == &dmsg_gob_route_ids)
                cr_assert_eq(((const uint32_t *)s->items)[i],
                             json_integer_value(json_array_get(b, i)));
            else
                rj_assert_view_hex(((const dmsg_gob_bytes *)s->items)[i], json_array_get(b, i),
                                   "Rule");
        }
    }
}

static void assert_view_str(dmsg_gob_bytes v, const char *want, const char *what)
{
    cr_assert_eq(v.len, strlen(want), "%s length", what);
    cr_assert(v.len == 0 || memcmp(v.ptr, want, v.len) == 0, "%s: want %s", what, want);
}

static void assert_bytes(const uint8_t *got, size_t n, const uint8_t *want, size_t wn,
                         const char *what)
{
    char *g = vec_to_hex(got, n), *w = vec_to_hex(want, wn);
    cr_assert_str_eq(g, w, "%s", what);
    free(g);
    free(w);
}

/* ---- endpoints ---- */

typedef struct endpoint {
    dmsg_rpc_conn conn;
    uint8_t in[4096];
    uint8_t arena[8192];
} endpoint;

static bool serves_setup(int port)
{
    return port == DMSG_SETUP_NODE_PORT;
}

static void endpoint_init(endpoint *e, dmsg_rpc_role role, int port, dmsg_gob_registry *reg)
{
    dmsg_rpc_config cfg = {
        .role = role,
        .methods = serves_setup(port) ? dmsg_setup_node_methods : dmsg_visor_methods,
        .nmethods = serves_setup(port) ? DMSG_SETUP_NODE_NMETHODS : DMSG_VISOR_NMETHODS,
        .inbuf = e->in, .inbuf_cap = sizeof e->in, .arena = e->arena,
        .arena_cap = sizeof e->arena, .registry = reg};
    cr_assert_eq(dmsg_rpc_init(&e->conn, &cfg), 0);
}

static bool port_serves(int port, const dmsg_rpc_method *m)
{
    const dmsg_rpc_method *const *t = serves_setup(port) ? dmsg_setup_node_methods
                                                         : dmsg_visor_methods;
    size_t n = serves_setup(port) ? DMSG_SETUP_NODE_NMETHODS : DMSG_VISOR_NMETHODS;
    for (size_t i = 0; i < n; i++)
        if (t[i] == m)
            return true;
    return false;
}

/* The response message answering seq, for the error text a reject must produce. */
static json_t *response_for(json_t *responses, uint64_t seq)
{
    size_t i;
    json_t *m;
    json_array_foreach(responses, i, m)
        if ((uint64_t)json_integer_value(field(m, "seq")) == seq)
            return m;
    return NULL;
}

/* One event against its message of the vectors. */
static void check_event(const dmsg_rpc_event *ev, json_t *m, bool to_server, int port,
                        json_t *responses)
{
    const char *name = str_of(m, "service_method");
    assert_view_str(ev->service_method, name, "ServiceMethod");
    cr_assert_eq(ev->seq, (uint64_t)json_integer_value(field(m, "seq")));
    const dmsg_rpc_method *method = method_named(name);
    json_t *err = json_object_get(m, "error");
    if (to_server) {
        if (port_serves(port, method)) {
            cr_assert_eq(ev->kind, DMSG_RPC_EV_CALL);
            cr_assert_eq(ev->method, method);
            assert_body(method->arg, ev->body, field(m, "body"));
            return;
        }
        cr_assert_eq(ev->kind, DMSG_RPC_EV_REJECT);
        cr_assert_eq(ev->reject, DMSG_RPC_REJECT_NO_METHOD);
        cr_assert_null(ev->body);
        json_t *resp = responses ? response_for(responses, ev->seq) : NULL;
        if (resp) {
            char text[512];
            cr_assert_eq(dmsg_rpc_reject_text(ev, text, sizeof text, NULL), 0);
            cr_assert_str_eq(text, str_of(resp, "error"));
        }
        return;
    }
    cr_assert_eq(ev->kind, DMSG_RPC_EV_REPLY);
    cr_assert_eq(ev->method, method);
    assert_view_str(ev->error, err ? json_string_value(err) : "", "Error");
    if (err)
        cr_assert_null(ev->body);
    else
        assert_body(method->reply, ev->body, field(m, "body"));
}

/* Feeds bytes in pieces of step (0 = all at once), polling after each; every event is checked
 * against messages[*next]. */
static void feed_and_check(endpoint *e, const uint8_t *p, size_t n, size_t step, json_t *messages,
                           size_t *next, bool to_server, int port, json_t *responses)
{
    size_t off = 0;
    do {
        size_t piece = step && n - off > step ? step : n - off, taken;
        cr_assert_eq(dmsg_rpc_feed(&e->conn, p + off, piece, &taken), 0);
        cr_assert_eq(taken, piece, "input buffer full");
        off += piece;
        dmsg_rpc_event ev;
        int rc;
        while ((rc = dmsg_rpc_poll(&e->conn, &ev)) == 0) {
            cr_assert_lt(*next, json_array_size(messages), "more events than messages");
            check_event(&ev, json_array_get(messages, (*next)++), to_server, port, responses);
        }
        cr_assert_eq(rc, DMSG_EAGAIN, "poll: %s", dmsg_strerror(rc));
    } while (off < n);
}

/* ---- scenarios: every party replayed, every byte compared ---- */

typedef struct party {
    const char *name;
    dmsg_gob_registry reg;
} party;

typedef struct link {
    json_t *c;
    int port;
    endpoint client, server;
    uint8_t *want[2];
    size_t want_len[2], produced[2], written[2], checked[2];
} link;

#define MAX_LINKS 4
#define MAX_PARTIES 4

static dmsg_gob_registry *registry_of(party *parties, size_t *nparties, const char *name)
{
    for (size_t i = 0; i < *nparties; i++)
        if (strcmp(parties[i].name, name) == 0)
            return &parties[i].reg;
    cr_assert_lt(*nparties, MAX_PARTIES);
    parties[*nparties].name = name;
    dmsg_gob_registry_init(&parties[*nparties].reg);
    return &parties[(*nparties)++].reg;
}

/* One write of the scenario: the encoding party produces the call or reply, the bytes must be
 * the ones Go wrote, and the other party must read them back as the vectors say. */
static void replay_write(link *l, int dir, size_t bytes)
{
    const char *key = dir ? "response_stream_messages" : "request_stream_messages";
    json_t *messages = field(l->c, key), *m = json_array_get(messages, l->written[dir]++);
    cr_assert(m, "%s: a write without a message", str_of(l->c, "label"));
    const dmsg_rpc_method *method = method_named(str_of(m, "service_method"));
    static uint8_t out[4096];
    static body_value v;
    static body_store st;
    size_t n;
    if (dir == 0) {
        uint64_t seq;
        body_from_json(method->arg, field(m, "body"), &v, &st);
        cr_assert_eq(dmsg_rpc_call(&l->client.conn, method, &v, out, sizeof out, &n, &seq), 0);
        cr_assert_eq(seq, (uint64_t)json_integer_value(field(m, "seq")));
    } else {
        json_t *err = json_object_get(m, "error");
        dmsg_gob_bytes name = dmsg_rpc_str(str_of(m, "service_method"));
        uint64_t seq = (uint64_t)json_integer_value(field(m, "seq"));
        if (err) {
            cr_assert_eq(dmsg_rpc_reply_error(&l->server.conn, name, seq,
                                              dmsg_rpc_str(json_string_value(err)), out,
                                              sizeof out, &n),
                         0);
        } else {
            body_from_json(method->reply, field(m, "body"), &v, &st);
            cr_assert_eq(dmsg_rpc_reply(&l->server.conn, name, seq, method->reply, &v, out,
                                        sizeof out, &n),
                         0);
        }
    }
    cr_assert_eq(n, bytes, "%s: write size", str_of(l->c, "label"));
    cr_assert_leq(l->produced[dir] + n, l->want_len[dir]);
    assert_bytes(out, n, l->want[dir] + l->produced[dir], n, str_of(m, "service_method"));
    size_t mlen;
    uint8_t *mhex = vec_hex(m, "hex", &mlen);
    assert_bytes(out, n, mhex, mlen, "the message's own bytes");
    free(mhex);
    l->produced[dir] += n;
    endpoint *reader = dir ? &l->client : &l->server;
    feed_and_check(reader, out, n, 7, messages, &l->checked[dir], dir == 0, l->port,
                   field(l->c, "response_stream_messages"));
}

typedef struct write_ref {
    int seq;
    size_t link;
    int dir;
    size_t bytes;
} write_ref;

static int by_seq(const void *a, const void *b)
{
    return ((const write_ref *)a)->seq - ((const write_ref *)b)->seq;
}

Test(rpc, scenarios_replayed_by_every_party_byte_for_byte)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, total_writes = 0;
    json_t *sc;
    json_array_foreach(field(root, "scenarios"), i, sc) {
        static party parties[MAX_PARTIES];
        static link links[MAX_LINKS];
        write_ref writes[32];
        size_t nparties = 0, nlinks = 0, nwrites = 0, j, k;
        json_t *c, *w;
        json_array_foreach(field(sc, "connections"), j, c) {
            cr_assert_lt(nlinks, MAX_LINKS);
            link *l = &links[nlinks];
            memset(l, 0, sizeof *l);
            l->c = c;
            l->port = (int)json_integer_value(field(c, "dmsg_port"));
            endpoint_init(&l->client, DMSG_RPC_CLIENT, l->port,
                          registry_of(parties, &nparties, str_of(c, "rpc_client")));
            endpoint_init(&l->server, DMSG_RPC_SERVER, l->port,
                          registry_of(parties, &nparties, str_of(c, "rpc_server")));
            l->want[0] = vec_hex(c, "request_stream_hex", &l->want_len[0]);
            l->want[1] = vec_hex(c, "response_stream_hex", &l->want_len[1]);
            json_array_foreach(field(c, "chunk_order"), k, w) {
                cr_assert_lt(nwrites, 32);
                writes[nwrites++] = (write_ref){(int)json_integer_value(field(w, "seq")), nlinks,
                                                strcmp(str_of(w, "dir"), "s2c") == 0,
                                                (size_t)json_integer_value(field(w, "bytes"))};
            }
            nlinks++;
        }
        /* Go assigns type ids per process in first-use order, so replay in the global order */
        qsort(writes, nwrites, sizeof writes[0], by_seq);
        for (k = 0; k < nwrites; k++)
            replay_write(&links[writes[k].link], writes[k].dir, writes[k].bytes);
        total_writes += nwrites;
        for (j = 0; j < nlinks; j++) {
            link *l = &links[j];
            for (int dir = 0; dir < 2; dir++) {
                cr_assert_eq(l->produced[dir], l->want_len[dir], "%s: stream length",
                             str_of(l->c, "label"));
                cr_assert_eq(l->checked[dir], l->written[dir]);
                free(l->want[dir]);
            }
            cr_assert(!dmsg_rpc_has_partial_input(&l->server.conn));
            cr_assert(!dmsg_rpc_has_partial_input(&l->client.conn));
            cr_assert_eq(dmsg_rpc_pending_count(&l->client.conn),
                         l->written[0] - l->written[1], "calls left without a reply");
        }
    }
    cr_assert_eq(i, 7);
    cr_assert_gt(total_writes, 30);
    json_decref(root);
}

/* ---- canonical fresh-process streams ---- */

static bool is_client_stream(json_t *s)
{
    return strncmp(str_of(s, "direction"), "rpc client", 10) == 0;
}

static int port_of_stream(json_t *s)
{
    const char *m = str_of(json_array_get(field(s, "messages"), 0), "service_method");
    return strncmp(m, "SetupRPCGateway.", 16) == 0 ? DMSG_SETUP_NODE_PORT : DMSG_VISOR_SETUP_PORT;
}

/* A client conn with the calls of messages pending, as if it had sent them. */
static void client_with_calls(endpoint *e, json_t *requests, int port)
{
    endpoint_init(e, DMSG_RPC_CLIENT, port, NULL);
    size_t i;
    json_t *m;
    json_array_foreach(requests, i, m) {
        static uint8_t scratch[4096];
        static body_value v;
        static body_store st;
        const dmsg_rpc_method *method = method_named(str_of(m, "service_method"));
        size_t n;
        json_t *body = json_object_get(m, "body");
        if (body && !json_is_null(body))
            body_from_json(method->arg, body, &v, &st);
        else
            memset(&v, 0, sizeof v); /* a made-up argument: only the reply is under test */
        cr_assert_eq(dmsg_rpc_call(&e->conn, method, &v, scratch, sizeof scratch, &n, NULL), 0);
    }
}

/* The calls a server stream answers, for a client to wait for. */
static json_t *calls_answered(json_t *responses)
{
    json_t *calls = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(responses, i, m)
        json_array_append_new(calls, json_pack("{s:s,s:I}", "service_method",
                                               str_of(m, "service_method"), "seq",
                                               json_integer_value(field(m, "seq"))));
    return calls;
}

Test(rpc, canonical_streams_are_reproduced_byte_for_byte)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, streams = 0;
    json_t *s;
    json_array_foreach(field(root, "canonical_fresh_process_streams"), i, s) {
        const char *name = str_of(s, "name");
        bool client = is_client_stream(s);
        int port = port_of_stream(s);
        static endpoint writer, reader;
        endpoint_init(&writer, client ? DMSG_RPC_CLIENT : DMSG_RPC_SERVER, port, NULL);
        json_t *messages = field(s, "messages");
        static uint8_t stream[4096];
        size_t total = 0, j;
        json_t *m;
        json_array_foreach(messages, j, m) {
            const dmsg_rpc_method *method = method_named(str_of(m, "service_method"));
            uint64_t seq = (uint64_t)json_integer_value(field(m, "seq"));
            static body_value v;
            static body_store st;
            size_t n;
            json_t *err = json_object_get(m, "error");
            if (client) {
                uint64_t got_seq;
                body_from_json(method->arg, field(m, "body"), &v, &st);
                cr_assert_eq(dmsg_rpc_call(&writer.conn, method, &v, stream + total,
                                           sizeof stream - total, &n, &got_seq), 0);
                cr_assert_eq(got_seq, seq);
            } else if (err) {
                cr_assert_eq(dmsg_rpc_reply_error(&writer.conn, dmsg_rpc_str(method->name), seq,
                                                  dmsg_rpc_str(json_string_value(err)),
                                                  stream + total, sizeof stream - total, &n), 0);
            } else {
                body_from_json(method->reply, field(m, "body"), &v, &st);
                cr_assert_eq(dmsg_rpc_reply(&writer.conn, dmsg_rpc_str(method->name), seq,
                                            method->reply, &v, stream + total,
                                            sizeof stream - total, &n), 0);
            }
            json_t *call = json_array_get(field(s, "per_call_hex"), j);
            size_t want_len = strlen(json_string_value(call)) / 2;
            static uint8_t wbuf[4096];
            cr_assert_eq(vec_hex_decode(json_string_value(call), wbuf, sizeof wbuf),
                         (long)want_len);
            assert_bytes(stream + total, n, wbuf, want_len, name);
            total += n;
        }
        size_t want_len;
        uint8_t *want = vec_hex(s, "stream_hex", &want_len);
        assert_bytes(stream, total, want, want_len, name);
        /* and the other side reads it back */
        size_t next = 0;
        json_t *calls = client ? NULL : calls_answered(messages);
        if (client)
            endpoint_init(&reader, DMSG_RPC_SERVER, port, NULL);
        else
            client_with_calls(&reader, calls, port);
        feed_and_check(&reader, want, want_len, 0, messages, &next, client, port, NULL);
        cr_assert_eq(next, json_array_size(messages));
        json_decref(calls);
        free(want);
        streams++;
    }
    cr_assert_eq(streams, 11);
    json_decref(root);
}

/* ---- input split anywhere ---- */

typedef struct stream_case {
    uint8_t *bytes;
    size_t len;
    json_t *messages, *requests, *responses;
    bool to_server;
    int port;
} stream_case;

static void reader_for(endpoint *e, const stream_case *c)
{
    if (c->to_server)
        endpoint_init(e, DMSG_RPC_SERVER, c->port, NULL);
    else
        client_with_calls(e, c->requests, c->port);
}

/* Every split point k: bytes [0,k) then [k,n); and one byte at a time. */
static void check_all_splits(const stream_case *c, const char *what)
{
    static endpoint e;
    for (size_t k = 0; k <= c->len; k++) {
        size_t next = 0;
        reader_for(&e, c);
        feed_and_check(&e, c->bytes, k, 0, c->messages, &next, c->to_server, c->port,
                       c->responses);
        feed_and_check(&e, c->bytes + k, c->len - k, 0, c->messages, &next, c->to_server,
                       c->port, c->responses);
        cr_assert_eq(next, json_array_size(c->messages), "%s split at %zu", what, k);
        cr_assert(!dmsg_rpc_has_partial_input(&e.conn));
    }
    size_t next = 0;
    reader_for(&e, c);
    feed_and_check(&e, c->bytes, c->len, 1, c->messages, &next, c->to_server, c->port,
                   c->responses);
    cr_assert_eq(next, json_array_size(c->messages), "%s byte by byte", what);
}

Test(rpc, every_stream_parses_when_split_at_every_byte)
{
    json_t *root = vec_load("setup_rpc.json");
    size_t i, j, streams = 0, connections = 0;
    json_t *sc, *c;
    json_array_foreach(field(root, "scenarios"), i, sc) {
        connections += json_array_size(field(sc, "connections"));
        json_array_foreach(field(sc, "connections"), j, c) {
            for (int dir = 0; dir < 2; dir++) {
                stream_case sc_case = {
                    .messages = field(c, dir ? "response_stream_messages"
                                             : "request_stream_messages"),
                    .requests = field(c, "request_stream_messages"),
                    .responses = field(c, "response_stream_messages"),
                    .to_server = dir == 0,
                    .port = (int)json_integer_value(field(c, "dmsg_port"))};
                sc_case.bytes = vec_hex(c, dir ? "response_stream_hex" : "request_stream_hex",
                                        &sc_case.len);
                check_all_splits(&sc_case, str_of(c, "label"));
                free(sc_case.bytes);
                streams++;
            }
        }
    }
    cr_assert_eq(streams, 2 * connections);
    cr_assert_gt(streams, 20);
    json_decref(root);
}

/* ---- malformed input ---- */

static endpoint srv;

static void server_init(void)
{
    endpoint_init(&srv, DMSG_RPC_SERVER, DMSG_SETUP_NODE_PORT, NULL);
}

static int feed_all(endpoint *e, const uint8_t *p, size_t n)
{
    size_t taken;
    int rc = dmsg_rpc_feed(&e->conn, p, n, &taken);
    if (rc == 0)
        cr_assert_eq(taken, n);
    return rc;
}

static int poll_once(endpoint *e, dmsg_rpc_event *ev)
{
    return dmsg_rpc_poll(&e->conn, ev);
}

/* The canonical DialRouteGroup request of the direct route (607 bytes). */
static uint8_t *dial_request(size_t *n)
{
    json_t *root = vec_load("setup_rpc.json");
    uint8_t *b = vec_hex(json_array_get(field(root, "canonical_fresh_process_streams"), 0),
                         "stream_hex", n);
    cr_assert_str_eq(str_of(json_array_get(field(root, "canonical_fresh_process_streams"), 0),
                            "name"),
                     "client_setup_client_dial_direct");
    json_decref(root);
    return b;
}

/* A call as our client would send it, with any method name and argument type. */
static size_t encode_call(const dmsg_rpc_method *m, const void *arg, uint8_t *out, size_t cap)
{
    static endpoint cli;
    endpoint_init(&cli, DMSG_RPC_CLIENT, DMSG_SETUP_NODE_PORT, NULL);
    size_t n;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, m, arg, out, cap, &n, NULL), 0);
    return n;
}

static void expect_dead(endpoint *e, int rc)
{
    dmsg_rpc_event ev;
    size_t taken;
    cr_assert_eq(poll_once(e, &ev), rc);
    cr_assert_eq(poll_once(e, &ev), rc, "the error repeats");
    cr_assert_eq(dmsg_rpc_feed(&e->conn, (const uint8_t *)"x", 1, &taken), rc);
    cr_assert_eq(taken, 0);
}

Test(rpc, garbage_ends_the_stream)
{
    static const struct {
        const char *hex;
        int rc;
    } cases[] = {
        {"00", DMSG_EGOB},                     /* a message of length zero */
        {"f7ffffffffffffffffff", DMSG_EGOB},   /* a length of more than 8 bytes */
        {"03ff8c00", DMSG_EGOB},               /* value of type 70, never defined */
        {"080c000568656c6c6f", DMSG_EGOBTYPE}, /* a string where the header struct belongs */
        {"fe1001", DMSG_ETOOBIG},              /* 4097 bytes: more than the input buffer */
        {"f8ffffffffffffffff", DMSG_ETOOBIG},  /* 2^64-1 bytes */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[64];
        long n = vec_hex_decode(cases[i].hex, b, sizeof b);
        cr_assert_gt(n, 0);
        server_init();
        cr_assert_eq(feed_all(&srv, b, (size_t)n), 0);
        dmsg_rpc_event ev;
        int rc = poll_once(&srv, &ev);
        cr_assert_eq(rc, cases[i].rc, "%s: got %d (%s)", cases[i].hex, rc, dmsg_strerror(rc));
        expect_dead(&srv, cases[i].rc);
    }
}

Test(rpc, truncated_calls_wait_for_more_and_never_yield_an_event)
{
    size_t n;
    uint8_t *req = dial_request(&n);
    for (size_t k = 1; k < n; k++) {
        server_init();
        cr_assert_eq(feed_all(&srv, req, k), 0);
        dmsg_rpc_event ev;
        cr_assert_eq(poll_once(&srv, &ev), DMSG_EAGAIN, "cut at %zu", k);
        cr_assert(dmsg_rpc_has_partial_input(&srv.conn));
    }
    server_init();
    cr_assert(!dmsg_rpc_has_partial_input(&srv.conn));
    free(req);
}

Test(rpc, a_call_larger_than_the_input_buffer_is_refused)
{
    size_t n;
    uint8_t *req = dial_request(&n);
    static uint8_t small[300];
    dmsg_rpc_config cfg = {.role = DMSG_RPC_SERVER, .methods = dmsg_setup_node_methods,
                           .nmethods = DMSG_SETUP_NODE_NMETHODS, .inbuf = small,
                           .inbuf_cap = sizeof small, .arena = srv.arena,
                           .arena_cap = sizeof srv.arena};
    cr_assert_eq(dmsg_rpc_init(&srv.conn, &cfg), 0);
    size_t off = 0, taken;
    dmsg_rpc_event ev;
    int rc;
    /* the header fits; the body's messages do not */
    do {
        cr_assert_eq(dmsg_rpc_feed(&srv.conn, req + off, n - off, &taken), 0);
        off += taken;
    } while ((rc = dmsg_rpc_poll(&srv.conn, &ev)) == DMSG_EAGAIN && taken);
    cr_assert_eq(rc, DMSG_ETOOBIG);
    expect_dead(&srv, DMSG_ETOOBIG);
    free(req);
}

Test(rpc, oversized_strings_are_refused)
{
    /* a Request whose ServiceMethod claims more bytes than its message holds */
    size_t n;
    uint8_t *req = dial_request(&n);
    /* message 2 starts at 48: 2e ff82 01 1e "SetupRPCGateway.DialRouteGroup" 00 */
    cr_assert_eq(req[48 + 4], 0x1e);
    req[48 + 4] = 0x7f;
    server_init();
    cr_assert_eq(feed_all(&srv, req, n), 0);
    expect_dead(&srv, DMSG_EGOB);
    free(req);
}

Test(rpc, unknown_type_ids_are_refused)
{
    size_t n;
    uint8_t *req = dial_request(&n);
    /* the header value names type 65 (ff 82); make it 66, which is defined later */
    cr_assert_eq(req[49], 0xff);
    cr_assert_eq(req[50], 0x82);
    req[50] = 0x84;
    server_init();
    cr_assert_eq(feed_all(&srv, req, n), 0);
    expect_dead(&srv, DMSG_EGOB);
    free(req);
}

Test(rpc, too_many_type_definitions_are_refused)
{
    /* 33 definitions of empty structs before any value */
    uint8_t b[33 * 12];
    size_t n = 0;
    for (int id = 100; id < 133; id++) {
        uint8_t def[] = {0x0a, 0xff, 0, 0x03, 0x01, 0x02, 0xff, 0, 0x00, 0x00, 0x00};
        def[2] = (uint8_t)(2 * id - 1);
        def[7] = (uint8_t)(2 * id);
        memcpy(b + n, def, sizeof def);
        n += sizeof def;
    }
    server_init();
    /* 32 are waited on: a value may follow */
    cr_assert_eq(feed_all(&srv, b, n - 11), 0);
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(&srv, &ev), DMSG_EAGAIN);
    cr_assert_eq(feed_all(&srv, b + n - 11, 11), 0);
    expect_dead(&srv, DMSG_ELIMIT);
}

Test(rpc, a_header_of_the_wrong_type_ends_the_stream_unanswered)
{
    /* a bool where the Request struct should be */
    uint8_t b[] = {0x03, 0x02, 0x00, 0x01};
    server_init();
    cr_assert_eq(feed_all(&srv, b, sizeof b), 0);
    expect_dead(&srv, DMSG_EGOBTYPE);
}

static void expect_reject(endpoint *e, dmsg_rpc_reject why, uint64_t seq, const char *text)
{
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(e, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_REJECT);
    cr_assert_eq(ev.reject, why);
    cr_assert_eq(ev.seq, seq);
    cr_assert_null(ev.body);
    char out[256];
    size_t len;
    cr_assert_eq(dmsg_rpc_reject_text(&ev, out, sizeof out, &len), 0);
    cr_assert_str_eq(out, text);
    cr_assert_eq(len, strlen(text));
    cr_assert_eq(dmsg_rpc_reject_text(&ev, out, len, NULL), DMSG_ETOOBIG);
}

Test(rpc, unknown_services_and_methods_get_gos_texts_and_the_stream_goes_on)
{
    static const struct {
        const char *name;
        dmsg_rpc_reject why;
        const char *text;
    } cases[] = {
        {"NoDot", DMSG_RPC_REJECT_ILL_FORMED, "rpc: service/method request ill-formed: NoDot"},
        {"", DMSG_RPC_REJECT_ILL_FORMED, "rpc: service/method request ill-formed: "},
        {"RPCGateway.ReserveIDs", DMSG_RPC_REJECT_NO_SERVICE,
         "rpc: can't find service RPCGateway.ReserveIDs"},
        {"SetupRPCGateway.DialRouteGroup.X", DMSG_RPC_REJECT_NO_SERVICE,
         "rpc: can't find service SetupRPCGateway.DialRouteGroup.X"},
        {"SetupRPCGateway.", DMSG_RPC_REJECT_NO_METHOD, "rpc: can't find method SetupRPCGateway."},
        {"SetupRPCGateway.dialRouteGroup", DMSG_RPC_REJECT_NO_METHOD,
         "rpc: can't find method SetupRPCGateway.dialRouteGroup"},
    };
    size_t dn;
    uint8_t *dial = dial_request(&dn);
    server_init();
    static uint8_t buf[2048];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* any argument type: it is read and discarded, like Go's ReadRequestBody(nil) */
        dmsg_rpc_method m = {cases[i].name, &dmsg_gob_type_bool, &dmsg_gob_type_bool};
        bool arg = true;
        static endpoint cli;
        endpoint_init(&cli, DMSG_RPC_CLIENT, DMSG_SETUP_NODE_PORT, NULL);
        size_t n;
        cr_assert_eq(dmsg_rpc_call(&cli.conn, &m, &arg, buf, sizeof buf, &n, NULL), 0);
        /* a fresh client per call: a new stream needs a fresh server too */
        server_init();
        cr_assert_eq(feed_all(&srv, buf, n), 0);
        expect_reject(&srv, cases[i].why, 0, cases[i].text);
        /* then the same stream serves a real call */
        cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group,
                                   &(dmsg_bidi_route){0}, buf, sizeof buf, &n, NULL), 0);
        cr_assert_eq(feed_all(&srv, buf, n), 0);
        dmsg_rpc_event ev;
        cr_assert_eq(poll_once(&srv, &ev), 0);
        cr_assert_eq(ev.kind, DMSG_RPC_EV_CALL);
        cr_assert_eq(ev.seq, 1);
        cr_assert_eq(ev.method, &dmsg_setup_dial_route_group);
    }
    free(dial);
}

Test(rpc, an_argument_of_the_wrong_type_is_answered_then_the_stream_ends)
{
    /* DialRouteGroup with a uint8 where a BidirectionalRoute belongs */
    dmsg_rpc_method wrong = {dmsg_setup_dial_route_group.name, &dmsg_gob_type_uint8,
                             &dmsg_gob_edge_rules};
    uint8_t arg = 2, buf[256];
    size_t n = encode_call(&wrong, &arg, buf, sizeof buf);
    server_init();
    cr_assert_eq(feed_all(&srv, buf, n), 0);
    expect_reject(&srv, DMSG_RPC_REJECT_BAD_ARG, 0, "gob: incompatible gob type");
    expect_dead(&srv, DMSG_EPROTO);
}

Test(rpc, a_route_with_an_invalid_key_is_answered_then_the_stream_ends)
{
    size_t n;
    uint8_t *req = dial_request(&n);
    /* the first hop's From key: 02 followed by 32 x ff is not a curve point */
    json_t *root = vec_load("setup_rpc.json");
    uint8_t a[DMSG_PK_LEN];
    rj_hex(field(field(field(root, "keys"), "A"), "public_key"), a, DMSG_PK_LEN);
    json_decref(root);
    size_t at = 0;
    for (size_t k = 0; k + DMSG_PK_LEN <= n; k++)
        if (req[k] == DMSG_PK_LEN && memcmp(req + k + 1, a, DMSG_PK_LEN) == 0) {
            at = k + 1;
            break;
        }
    cr_assert_gt(at, 0);
    req[at] = 0x02;
    memset(req + at + 1, 0xff, DMSG_PK_LEN - 1);
    server_init();
    cr_assert_eq(feed_all(&srv, req, n), 0);
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(&srv, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_REJECT);
    cr_assert_eq(ev.reject, DMSG_RPC_REJECT_BAD_ARG);
    cr_assert_eq(ev.arg_error, DMSG_EKEY);
    assert_view_str(ev.service_method, dmsg_setup_dial_route_group.name, "ServiceMethod");
    expect_dead(&srv, DMSG_EPROTO);
    free(req);
}

Test(rpc, more_hops_than_the_arena_holds_are_refused)
{
    static dmsg_route_hop hops[40];
    json_t *root = vec_load("setup_rpc.json");
    dmsg_bidi_route route;
    rj_route_store st;
    rj_route(field(json_array_get(field(root, "scenarios"), 0), "route"), &route, &st);
    json_decref(root);
    for (size_t k = 0; k < 40; k++)
        hops[k] = st.hops[0][0];
    route.forward = (dmsg_gob_slice){hops, 40};
    static uint8_t buf[8192];
    size_t n = encode_call(&dmsg_setup_dial_route_group, &route, buf, sizeof buf);
    static uint8_t in[8192], arena[DMSG_ROUTE_ARENA_SIZE(20)];
    dmsg_rpc_config cfg = {.role = DMSG_RPC_SERVER, .methods = dmsg_setup_node_methods,
                           .nmethods = DMSG_SETUP_NODE_NMETHODS, .inbuf = in, .inbuf_cap = sizeof in,
                           .arena = arena, .arena_cap = sizeof arena};
    cr_assert_eq(dmsg_rpc_init(&srv.conn, &cfg), 0);
    cr_assert_eq(feed_all(&srv, buf, n), 0);
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(&srv, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_REJECT);
    cr_assert_eq(ev.arg_error, DMSG_ELIMIT);
    /* 20 hops each way fit the arena sized for 20 */
    route.forward.len = 20;
    route.reverse = (dmsg_gob_slice){hops, 20};
    n = encode_call(&dmsg_setup_dial_route_group, &route, buf, sizeof buf);
    cr_assert_eq(dmsg_rpc_init(&srv.conn, &cfg), 0);
    cr_assert_eq(feed_all(&srv, buf, n), 0);
    cr_assert_eq(poll_once(&srv, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_CALL);
    cr_assert_eq(((const dmsg_bidi_route *)ev.body)->reverse.len, 20);
}

/* ---- client side ---- */

static endpoint cli, peer;

static void pair_init(void)
{
    endpoint_init(&cli, DMSG_RPC_CLIENT, DMSG_VISOR_SETUP_PORT, NULL);
    endpoint_init(&peer, DMSG_RPC_SERVER, DMSG_VISOR_SETUP_PORT, NULL);
}

static void reply_ids(uint64_t seq, const uint32_t *ids, size_t n, uint8_t *out, size_t *len)
{
    dmsg_gob_slice s = {(void *)ids, n};
    cr_assert_eq(dmsg_rpc_reply(&peer.conn, dmsg_rpc_str(dmsg_visor_reserve_ids.name), seq,
                                &dmsg_gob_route_ids, &s, out, 1024, len), 0);
}

Test(rpc, replies_are_matched_by_seq_and_strays_are_dropped)
{
    pair_init();
    uint8_t out[1024], r[1024];
    size_t n, rn;
    uint8_t two = 2;
    uint64_t s0, s1;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, &s0),
                 0);
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, &s1),
                 0);
    cr_assert_eq(s0, 0);
    cr_assert_eq(s1, 1);
    cr_assert_eq(dmsg_rpc_pending_count(&cli.conn), 2);
    uint32_t a[2] = {5, 6}, b[2] = {7, 8};
    /* out of order, with a reply to a call never made in between */
    reply_ids(1, b, 2, r, &rn);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    reply_ids(9, a, 2, r, &rn);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    reply_ids(0, a, 2, r, &rn);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(&cli, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_REPLY);
    cr_assert_eq(ev.seq, 1);
    cr_assert_eq(((const uint32_t *)((const dmsg_gob_slice *)ev.body)->items)[0], 7);
    cr_assert_eq(poll_once(&cli, &ev), 0);
    cr_assert_eq(ev.seq, 0);
    cr_assert_eq(((const uint32_t *)((const dmsg_gob_slice *)ev.body)->items)[1], 6);
    cr_assert_eq(poll_once(&cli, &ev), DMSG_EAGAIN);
    cr_assert_eq(dmsg_rpc_pending_count(&cli.conn), 0);
    /* a cancelled call's reply is dropped too */
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, &s0),
                 0);
    cr_assert_eq(dmsg_rpc_cancel(&cli.conn, s0), 0);
    cr_assert_eq(dmsg_rpc_cancel(&cli.conn, s0), DMSG_ENOTFOUND);
    reply_ids(s0, a, 2, r, &rn);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    cr_assert_eq(poll_once(&cli, &ev), DMSG_EAGAIN);
    cr_assert(!dmsg_rpc_has_partial_input(&cli.conn));
}

Test(rpc, an_error_reply_reaches_the_caller_verbatim)
{
    pair_init();
    uint8_t out[1024], r[1024];
    size_t n, rn;
    uint8_t two = 2;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, NULL),
                 0);
    const char *text = "failure code 4 (no available routeIDs)";
    cr_assert_eq(dmsg_rpc_reply_error(&peer.conn, dmsg_rpc_str(dmsg_visor_reserve_ids.name), 0,
                                      dmsg_rpc_str(text), r, sizeof r, &rn), 0);
    cr_assert_eq(dmsg_rpc_reply_error(&peer.conn, dmsg_rpc_str("x"), 0, dmsg_rpc_str(""), r,
                                      sizeof r, &n), DMSG_EINVAL);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    dmsg_rpc_event ev;
    cr_assert_eq(poll_once(&cli, &ev), 0);
    cr_assert_eq(ev.kind, DMSG_RPC_EV_REPLY);
    assert_view_str(ev.error, text, "Error");
    cr_assert_null(ev.body);
    cr_assert_eq(ev.method, &dmsg_visor_reserve_ids);
}

Test(rpc, a_reply_of_the_wrong_type_ends_the_stream)
{
    pair_init();
    uint8_t out[1024], r[1024];
    size_t n, rn;
    uint8_t two = 2;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, NULL),
                 0);
    bool yes = true;
    cr_assert_eq(dmsg_rpc_reply(&peer.conn, dmsg_rpc_str(dmsg_visor_reserve_ids.name), 0,
                                &dmsg_gob_type_bool, &yes, r, sizeof r, &rn), 0);
    cr_assert_eq(feed_all(&cli, r, rn), 0);
    expect_dead(&cli, DMSG_EGOBTYPE);
}

Test(rpc, pending_calls_are_capped)
{
    pair_init();
    uint8_t out[1024];
    size_t n;
    uint8_t two = 2;
    for (int i = 0; i < DMSG_RPC_MAX_PENDING; i++)
        cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n,
                                   NULL), 0);
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n, NULL),
                 DMSG_ELIMIT);
}

Test(rpc, roles_are_enforced)
{
    pair_init();
    uint8_t out[1024];
    size_t n;
    uint8_t two = 2;
    bool yes = true;
    cr_assert_eq(dmsg_rpc_call(&peer.conn, &dmsg_visor_reserve_ids, &two, out, sizeof out, &n,
                               NULL), DMSG_ESTATE);
    cr_assert_eq(dmsg_rpc_reply(&cli.conn, dmsg_rpc_str("a.b"), 0, &dmsg_gob_type_bool, &yes, out,
                                sizeof out, &n), DMSG_ESTATE);
    dmsg_rpc_config cfg = {.role = DMSG_RPC_SERVER, .inbuf = out, .inbuf_cap = sizeof out};
    cr_assert_eq(dmsg_rpc_init(&peer.conn, &cfg), DMSG_EINVAL, "a server needs methods");
    static const dmsg_gob_type huge = {.kind = DMSG_GOB_STRUCT, .name = "H",
                                       .size = DMSG_RPC_MAX_BODY + 1};
    static const dmsg_rpc_method too_big = {"S.M", &huge, &dmsg_gob_type_bool};
    const dmsg_rpc_method *const table[] = {&too_big};
    cfg.methods = table;
    cfg.nmethods = 1;
    cr_assert_eq(dmsg_rpc_init(&peer.conn, &cfg), DMSG_EINVAL, "bodies must fit the conn");
    cfg.role = (dmsg_rpc_role)0;
    cr_assert_eq(dmsg_rpc_init(&peer.conn, &cfg), DMSG_EINVAL);
}

Test(rpc, a_short_output_buffer_changes_nothing)
{
    json_t *root = vec_load("setup_rpc.json");
    json_t *s = json_array_get(field(root, "canonical_fresh_process_streams"), 0);
    size_t want_len;
    uint8_t *want = vec_hex(s, "stream_hex", &want_len);
    static body_value v;
    static body_store st;
    body_from_json(&dmsg_gob_bidi_route, field(json_array_get(field(s, "messages"), 0), "body"),
                   &v, &st);
    endpoint_init(&cli, DMSG_RPC_CLIENT, DMSG_SETUP_NODE_PORT, NULL);
    static uint8_t out[1024];
    size_t n;
    /* too small for the header, then too small for the body: no Seq used, no type sent */
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group, &v, out, 10, &n, NULL),
                 DMSG_ETOOBIG);
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group, &v, out, want_len - 1, &n,
                               NULL), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_rpc_pending_count(&cli.conn), 0);
    uint64_t seq;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group, &v, out, sizeof out, &n,
                               &seq), 0);
    cr_assert_eq(seq, 0);
    assert_bytes(out, n, want, want_len, "after failed attempts");
    free(want);
    json_decref(root);
}

Test(rpc, a_full_input_buffer_takes_nothing_until_polled)
{
    size_t n;
    uint8_t *req = dial_request(&n);
    static uint8_t in[700];
    dmsg_rpc_config cfg = {.role = DMSG_RPC_SERVER, .methods = dmsg_setup_node_methods,
                           .nmethods = DMSG_SETUP_NODE_NMETHODS, .inbuf = in,
                           .inbuf_cap = sizeof in, .arena = srv.arena,
                           .arena_cap = sizeof srv.arena};
    cr_assert_eq(dmsg_rpc_init(&srv.conn, &cfg), 0);
    /* a second call after the first: they do not both fit, so the buffer is reused */
    static uint8_t two[2 * 607];
    cr_assert_eq(n, 607);
    memcpy(two, req, n);
    uint8_t call2[600];
    endpoint_init(&cli, DMSG_RPC_CLIENT, DMSG_SETUP_NODE_PORT, NULL);
    size_t c1, c2;
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group, &(dmsg_bidi_route){0},
                               call2, sizeof call2, &c1, NULL), 0);
    cr_assert_eq(dmsg_rpc_call(&cli.conn, &dmsg_setup_dial_route_group, &(dmsg_bidi_route){0},
                               call2, sizeof call2, &c2, NULL), 0);
    /* the second call of that client has no definitions: append it after the canonical one */
    memcpy(two + n, call2, c2);
    size_t total = n + c2, off = 0, taken, events = 0;
    dmsg_rpc_event ev;
    while (off < total) {
        cr_assert_eq(dmsg_rpc_feed(&srv.conn, two + off, total - off, &taken), 0);
        off += taken;
        int rc;
        while ((rc = dmsg_rpc_poll(&srv.conn, &ev)) == 0) {
            cr_assert_eq(ev.kind, DMSG_RPC_EV_CALL);
            cr_assert_eq(ev.seq, events == 0 ? 0u : 1u);
            events++;
        }
        cr_assert_eq(rc, DMSG_EAGAIN);
    }
    cr_assert_eq(events, 2);
    free(req);
}
