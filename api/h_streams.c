/* GET /v1/streams: the streams the server relays and those its own services hold (path
 * "service"), filtered and paged by id; both kinds draw ids from the relay's sequence. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dmsgd.h"
#include "dmsgd_own.h"
#include "relay.h"
#include "validate.h"

static json_t *end_json(const dmsg_pk *pk, uint16_t port)
{
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(pk, hex);
    return json_pack("{s:s,s:i}", "public_key", hex, "port", (int)port);
}

json_t *api_stream_json(const struct admin *a, const struct relay_link_info *l)
{
    static const char *const states[] = {"pending", "relaying", "closing"};
    char via[DMSG_PK_HEX_LEN + 1];
    uint64_t now = uv_now(a->loop);
    if (l->has_via_peer)
        dmsg_pk_to_hex(&l->via_peer, via);
    return json_pack("{s:I,s:o,s:o,s:s,s:o,s:s,s:o,s:I,s:I,s:I,s:I}", "id", (json_int_t)l->id,
                     "initiator", end_json(&l->src_pk, l->src_port), "responder",
                     end_json(&l->dst_pk, l->dst_port), "path", relay_path_name(l->path),
                     "via_peer", l->has_via_peer ? json_string(via) : json_null(), "state",
                     states[l->phase], "opened_at",
                     api_json_time(api_wall_of_loop_ms(a, l->opened_ms)), "age_seconds",
                     (json_int_t)(now > l->opened_ms ? (now - l->opened_ms) / 1000 : 0),
                     "idle_seconds",
                     (json_int_t)(now > l->last_active_ms ? (now - l->last_active_ms) / 1000 : 0),
                     "bytes_forward", (json_int_t)l->bytes_forward, "bytes_reverse",
                     (json_int_t)l->bytes_reverse);
}

struct stream_filter {
    uint64_t after;
    bool has_pk;
    dmsg_pk pk;
    int path;                          /* -1 any, else enum relay_path */
};

struct stream_rows {
    const struct stream_filter *f;
    struct relay_link_info *rows;
    size_t n, cap, total;
    bool failed;
};

static void collect(const struct relay_link_info *l, void *arg)
{
    struct stream_rows *sr = arg;
    const struct stream_filter *f = sr->f;
    if (sr->failed)
        return;
    if (f->has_pk && !dmsg_pk_equal(&l->src_pk, &f->pk) && !dmsg_pk_equal(&l->dst_pk, &f->pk))
        return;
    if (f->path >= 0 && (int)l->path != f->path)
        return;
    sr->total++;
    if (l->id <= f->after)
        return;
    if (sr->n == sr->cap) {
        size_t cap = sr->cap ? sr->cap * 2 : 256;
        struct relay_link_info *grown = realloc(sr->rows, cap * sizeof *grown);
        if (!grown) {
            sr->failed = true;
            return;
        }
        sr->rows = grown;
        sr->cap = cap;
    }
    sr->rows[sr->n++] = *l;
}

static int by_id(const void *a, const void *b)
{
    uint64_t x = ((const struct relay_link_info *)a)->id, y = ((const struct relay_link_info *)b)->id;
    return x < y ? -1 : x > y;
}

static int parse_filter(struct api_req *r, struct stream_filter *f, uint64_t *limit)
{
    const char *v;
    memset(f, 0, sizeof *f);
    f->path = -1;
    *limit = API_LIMIT_DEFAULT;
    if ((v = dmsg_httpd_request_query(r->http, "limit")) &&
        api_parse_uint(v, 1, API_LIMIT_MAX, limit) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "limit must be 1..1000");
        return -1;
    }
    if ((v = dmsg_httpd_request_query(r->http, "after")) &&
        api_parse_uint(v, 0, UINT64_MAX / 2, &f->after) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL, "after must be a stream id (>= 0)");
        return -1;
    }
    if ((v = dmsg_httpd_request_query(r->http, "pk"))) {
        if (api_parse_public_key(v, &f->pk, NULL, NULL, 0) != 0) {
            api_problem(r, API_P_INVALID_PUBLIC_KEY, 400, NULL,
                        "pk must be a 66-character hex public key");
            return -1;
        }
        f->has_pk = true;
    }
    if ((v = dmsg_httpd_request_query(r->http, "path"))) {
        for (int p = RELAY_PATH_LOCAL; p < RELAY_PATH_COUNT; p++)
            if (strcmp(v, relay_path_name((enum relay_path)p)) == 0)
                f->path = p;
        if (f->path < 0) {
            api_problem(r, API_P_INVALID_QUERY, 0, NULL, "path must be local, mesh or service");
            return -1;
        }
    }
    return 0;
}

void api_list_streams(struct api_req *r)
{
    struct stream_filter f;
    uint64_t limit;
    if (parse_filter(r, &f, &limit) != 0)
        return;
    struct stream_rows sr = {.f = &f};
    if (r->d->relay)
        relay_foreach_link(r->d->relay, collect, &sr);
    dmsgd_own_foreach_stream(r->d, collect, &sr);
    if (sr.failed) {
        free(sr.rows);
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "out of memory listing streams");
        return;
    }
    if (sr.n > 1)
        qsort(sr.rows, sr.n, sizeof *sr.rows, by_id);
    size_t shown = sr.n < limit ? sr.n : (size_t)limit;
    json_t *list = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(list, api_stream_json(r->a, &sr.rows[i]));
    json_t *next = sr.n > shown ? json_integer((json_int_t)sr.rows[shown - 1].id) : json_null();
    free(sr.rows);
    api_reply_json(r, 200, json_pack("{s:o,s:I,s:o}", "streams", list, "total",
                                     (json_int_t)sr.total, "next", next));
}
