/* /v1/sessions: established sessions (filtered, paged by key), one session with its streams,
 * and the kick. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "dmsgd_own.h"
#include "mesh.h"
#include "netaddr.h"
#include "relay.h"
#include "server.h"
#include "validate.h"

/* Keys stay binary while filtering and sorting (their hex sorts the same way): only the page
 * shown is formatted. */
struct session_row {
    dmsg_pk pk;
    dmsg_session *s;
    bool peer;
};

struct session_filter {
    int kind;                          /* -1 any, 0 client, 1 peer */
    char pk_prefix[DMSG_PK_HEX_LEN + 1];
    const char *remote;
    uint64_t min_streams;
    bool has_after;
    dmsg_pk after;
};

struct session_rows {
    struct session_row *rows;
    size_t n, cap;
    const struct session_filter *f;
    size_t total;                      /* matching the filters, before the cursor */
    bool failed;
};

static json_t *session_json(const struct admin *a, const struct session_row *row)
{
    dmsg_session_stats st;
    char addr[80], hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&row->pk, hex);
    dmsg_session_get_stats(row->s, &st);
    netaddr_format(dmsg_session_remote_addr(row->s), addr, sizeof addr);
    uint64_t now = uv_now(a->loop);
    uint64_t last = st.last_rx_ms > st.started_ms ? st.last_rx_ms : st.started_ms;
    return json_pack("{s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I}", "public_key", hex,
                     "kind", row->peer ? "peer" : "client", "remote_address", addr,
                     "established_at", api_json_time(api_wall_of_loop_ms(a, st.started_ms)),
                     "age_seconds", (json_int_t)((now - st.started_ms) / 1000), "idle_seconds",
                     (json_int_t)(now > last ? (now - last) / 1000 : 0), "streams",
                     (json_int_t)st.streams, "rx_bytes", (json_int_t)st.bytes_in, "tx_bytes",
                     (json_int_t)st.bytes_out, "out_queued_bytes", (json_int_t)st.write_queued);
}

/* Whether the key's hex form starts with prefix (lowercase hex), nibble by nibble. */
static bool has_hex_prefix(const dmsg_pk *pk, const char *prefix)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; prefix[i]; i++) {
        uint8_t byte = pk->b[i / 2];
        if (digits[i % 2 ? byte & 0x0f : byte >> 4] != prefix[i])
            return false;
    }
    return true;
}

static bool matches(const struct session_filter *f, const struct session_row *row)
{
    if (f->kind >= 0 && (int)row->peer != f->kind)
        return false;
    if (f->pk_prefix[0] && !has_hex_prefix(&row->pk, f->pk_prefix))
        return false;
    if (f->remote) {
        char addr[80];
        netaddr_format(dmsg_session_remote_addr(row->s), addr, sizeof addr);
        if (strncmp(addr, f->remote, strlen(f->remote)) != 0)
            return false;
    }
    if (f->min_streams) {
        dmsg_session_stats st;
        dmsg_session_get_stats(row->s, &st);
        if (st.streams < f->min_streams)
            return false;
    }
    return true;
}

static void collect_row(dmsg_session *s, struct relay_session *rs, void *arg)
{
    struct session_rows *rows = arg;
    struct session_row row;
    if (rows->failed)
        return;
    row.pk = *dmsg_session_remote_pk(s);
    row.s = s;
    row.peer = rs->is_peer;
    if (!matches(rows->f, &row))
        return;
    rows->total++;
    if (rows->f->has_after && memcmp(row.pk.b, rows->f->after.b, DMSG_PK_LEN) <= 0)
        return;
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? rows->cap * 2 : 256;
        struct session_row *grown = realloc(rows->rows, cap * sizeof *grown);
        if (!grown) {
            rows->failed = true;
            return;
        }
        rows->rows = grown;
        rows->cap = cap;
    }
    rows->rows[rows->n++] = row;
}

static int by_key(const void *a, const void *b)
{
    return memcmp(((const struct session_row *)a)->pk.b, ((const struct session_row *)b)->pk.b,
                  DMSG_PK_LEN);
}

/* Reads the query into f; 0, or -1 after answering 400. */
static int parse_filter(struct api_req *r, struct session_filter *f, uint64_t *limit)
{
    const char *v;
    memset(f, 0, sizeof *f);
    f->kind = -1;
    *limit = API_LIMIT_DEFAULT;
    if ((v = dmsg_httpd_request_query(r->http, "limit")) &&
        api_parse_uint(v, 1, API_LIMIT_MAX, limit) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "limit must be 1..1000");
        return -1;
    }
    if ((v = dmsg_httpd_request_query(r->http, "after"))) {
        if (api_parse_public_key(v, &f->after, NULL, NULL, 0) != 0) {
            api_problem(r, API_P_INVALID_PUBLIC_KEY, 400, NULL,
                        "after must be a 66-character hex public key (the previous page's"
                        " next)");
            return -1;
        }
        f->has_after = true;
    }
    if ((v = dmsg_httpd_request_query(r->http, "kind"))) {
        if (strcmp(v, "client") != 0 && strcmp(v, "peer") != 0) {
            api_problem(r, API_P_INVALID_QUERY, 0, NULL, "kind must be client or peer");
            return -1;
        }
        f->kind = strcmp(v, "peer") == 0;
    }
    if ((v = dmsg_httpd_request_query(r->http, "pk")) && api_parse_hex_prefix(v, f->pk_prefix)) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "pk must be 1..66 hex characters");
        return -1;
    }
    if ((v = dmsg_httpd_request_query(r->http, "remote"))) {
        if (strlen(v) < 1 || strlen(v) > 64) {
            api_problem(r, API_P_INVALID_QUERY, 0, NULL, "remote must be 1..64 characters");
            return -1;
        }
        f->remote = v;
    }
    if ((v = dmsg_httpd_request_query(r->http, "min_streams")) &&
        api_parse_uint(v, 0, UINT32_MAX, &f->min_streams) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "min_streams must be a number >= 0");
        return -1;
    }
    return 0;
}

void api_list_sessions(struct api_req *r)
{
    struct session_filter f;
    uint64_t limit;
    if (parse_filter(r, &f, &limit) != 0)
        return;
    struct session_rows rows = {.f = &f};
    if (r->d->server)
        server_foreach_session(r->d->server, collect_row, &rows);
    if (rows.failed) {
        free(rows.rows);
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "out of memory listing sessions");
        return;
    }
    if (rows.n > 1)
        qsort(rows.rows, rows.n, sizeof *rows.rows, by_key);
    size_t shown = rows.n < limit ? rows.n : (size_t)limit;
    json_t *list = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(list, session_json(r->a, &rows.rows[i]));
    json_t *next = json_null();
    if (rows.n > shown) {
        char hex[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&rows.rows[shown - 1].pk, hex);
        next = json_string(hex);
    }
    free(rows.rows);
    api_reply_json(r, 200, json_pack("{s:o,s:I,s:o}", "sessions", list, "total",
                                     (json_int_t)rows.total, "next", next));
}

/* ---- one session ---- */

struct find_session {
    struct session_row row;
};

/* 0 with fs filled, or -1 after answering 400/404. */
static int find_path_session(struct api_req *r, dmsg_pk *pk, struct find_session *fs)
{
    char why[96], hex[DMSG_PK_HEX_LEN + 1];
    if (api_parse_public_key(r->param, pk, hex, why, sizeof why) != 0) {
        api_problem(r, API_P_INVALID_PUBLIC_KEY, 400, NULL, "%s in the path", why);
        return -1;
    }
    memset(fs, 0, sizeof *fs);
    fs->row.s = r->d->server ? server_find_session(r->d->server, pk) : NULL;
    fs->row.pk = *pk;
    fs->row.peer = fs->row.s && r->d->mesh && mesh_session_is_peer(r->d->mesh, fs->row.s);
    if (!fs->row.s) {
        api_problem(r, API_P_SESSION_NOT_FOUND, 0, NULL,
                    "%s has no established session on this server", hex);
        return -1;
    }
    return 0;
}

struct session_streams {
    const dmsg_session *s;
    struct relay_link_info *links;
    size_t n, cap;
};

static void collect_link(const struct relay_link_info *l, void *arg)
{
    struct session_streams *ss = arg;
    if (l->ingress != ss->s && l->egress != ss->s)
        return;
    if (ss->n == ss->cap) {
        size_t cap = ss->cap ? ss->cap * 2 : 64;
        struct relay_link_info *grown = realloc(ss->links, cap * sizeof *grown);
        if (!grown)
            return;
        ss->links = grown;
        ss->cap = cap;
    }
    ss->links[ss->n++] = *l;
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const struct relay_link_info *)a)->id, y = ((const struct relay_link_info *)b)->id;
    return x < y ? -1 : x > y;
}

void api_get_session(struct api_req *r)
{
    dmsg_pk pk;
    struct find_session fs;
    if (find_path_session(r, &pk, &fs) != 0)
        return;
    struct session_streams ss = {.s = fs.row.s};
    if (r->d->relay)
        relay_foreach_link(r->d->relay, collect_link, &ss);
    dmsgd_own_foreach_stream(r->d, collect_link, &ss);
    if (ss.n > 1)
        qsort(ss.links, ss.n, sizeof *ss.links, by_id);
    json_t *streams = json_array();
    for (size_t i = 0; i < ss.n; i++)
        json_array_append_new(streams, api_stream_json(r->a, &ss.links[i]));
    free(ss.links);
    api_reply_json(r, 200, json_pack("{s:o,s:o}", "session", session_json(r->a, &fs.row),
                                     "streams", streams));
}

void api_kick_session(struct api_req *r)
{
    dmsg_pk pk;
    struct find_session fs;
    if (find_path_session(r, &pk, &fs) != 0)
        return;
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&pk, hex);
    if (server_kick(r->d->server, &pk) != 0) {
        api_problem(r, API_P_SESSION_NOT_FOUND, 0, NULL, "%s has no established session", hex);
        return;
    }
    log_info(&r->d->log, "admin: session kicked", "remote_pk=%s", hex);
    api_reply_json(r, 204, NULL);
}
