/* The live event feed, GET /v1/events: Server-Sent Events for session up/down, stream
 * open/close, peer link changes and route setups. No history is kept: a subscriber sees what
 * happens after it subscribed. A subscriber more than API_EVENT_BUFFER_BYTES behind is cut off
 * (its stream ends) rather than let the daemon buffer without bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dmsg/error.h"
#include "dmsgd.h"
#include "mesh.h"
#include "netaddr.h"
#include "relay.h"
#include "validate.h"

struct api_sub {
    struct admin *a;
    struct dmsg_httpd_stream *stream;
    unsigned types;                   /* bit per enum api_event_type */
    bool ending;
    struct api_sub *prev, *next;
};

static const char *const event_names[API_EV_COUNT] = {
    [API_EV_SESSION_UP] = "session_up",
    [API_EV_SESSION_DOWN] = "session_down",
    [API_EV_STREAM_OPEN] = "stream_open",
    [API_EV_STREAM_CLOSE] = "stream_close",
    [API_EV_PEER_LINK] = "peer_link",
    [API_EV_ROUTE_SETUP] = "route_setup",
};

const char *api_event_name(enum api_event_type t)
{
    return (unsigned)t < API_EV_COUNT ? event_names[t] : "unknown";
}

static void sub_unlink(struct api_sub *s)
{
    struct admin *a = s->a;
    if (s->prev)
        s->prev->next = s->next;
    else
        a->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    a->n_subs--;
}

static void on_stream_closed(void *user, struct dmsg_httpd_stream *stream)
{
    struct api_sub *s = user;
    (void)stream;
    sub_unlink(s);
    free(s);
}

static void sub_end(struct api_sub *s)
{
    if (s->ending)
        return;
    s->ending = true;
    dmsg_httpd_stream_end(s->stream);
}

void api_publish(struct admin *a, enum api_event_type type, json_t *data)
{
    if (!data)
        return;
    uint64_t id = ++a->event_seq;
    if (!a->subs) {
        json_decref(data);
        return;
    }
    json_t *typed = json_object();
    json_object_set_new(typed, "type", json_string(api_event_name(type)));
    json_object_set_new(typed, "at", api_json_time(api_now_ms()));
    json_object_update(typed, data);
    json_decref(data);
    char *line = json_dumps(typed, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(typed);
    if (!line)
        return;
    size_t cap = strlen(line) + 96;
    char *text = malloc(cap);
    if (!text) {
        free(line);
        return;
    }
    int n = snprintf(text, cap, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)id,
                     api_event_name(type), line);
    free(line);
    for (struct api_sub *s = a->subs, *next; s; s = next) {
        next = s->next;
        if (s->ending || !(s->types & (1u << type)))
            continue;
        if (dmsg_httpd_stream_push(s->stream, text, (size_t)n) != 0)
            sub_end(s); /* too far behind (or gone): it reconnects and re-reads state */
    }
    free(text);
}

void api_events_close_all(struct admin *a)
{
    for (struct api_sub *s = a->subs; s; s = s->next)
        sub_end(s);
}

/* "session_up,peer_link" -> bits; -1 for an unknown name. */
static int parse_types(const char *text, unsigned *bits)
{
    *bits = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        bool found = false;
        for (int t = 0; t < API_EV_COUNT; t++) {
            if (strlen(event_names[t]) == len && strncmp(event_names[t], p, len) == 0) {
                *bits |= 1u << t;
                found = true;
            }
        }
        if (!found)
            return -1;
        p += len;
        if (*p == ',' && *++p == '\0')
            return -1;
    }
    return *bits ? 0 : -1;
}

void api_follow_events(struct api_req *r)
{
    struct admin *a = r->a;
    unsigned types = (1u << API_EV_COUNT) - 1;
    const char *q = dmsg_httpd_request_query(r->http, "types");
    if (q && parse_types(q, &types) != 0) {
        api_problem(r, API_P_INVALID_QUERY, 0, NULL,
                    "types must be a comma-separated list of session_up, session_down,"
                    " stream_open, stream_close, peer_link, route_setup");
        return;
    }
    if (a->n_subs >= API_MAX_SUBSCRIBERS) {
        api_problem(r, API_P_TOO_MANY_SUBSCRIBERS, 0, NULL, "%d event streams are open"
                    " already; close one or retry later", API_MAX_SUBSCRIBERS);
        return;
    }
    struct api_sub *s = calloc(1, sizeof *s);
    if (!s) {
        api_problem(r, API_P_INTERNAL_ERROR, 0, NULL, "out of memory");
        return;
    }
    s->a = a;
    s->types = types;
    struct dmsg_httpd_header h = {"X-Accel-Buffering", "no"};
    api_count_status(a, 200);
    int rc = dmsg_httpd_stream_start(r->http, 200, NULL, &h, 1, on_stream_closed, s, &s->stream);
    r->http = NULL;
    if (rc != 0) {
        free(s);
        return;
    }
    s->next = a->subs;
    if (a->subs)
        a->subs->prev = s;
    a->subs = s;
    a->n_subs++;
    static const char hello[] = "retry: 2000\n\n";
    dmsg_httpd_stream_push(s->stream, hello, sizeof hello - 1);
}

/* ---- the producers ---- */

static json_t *pk_json(const dmsg_pk *pk)
{
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(pk, hex);
    return json_string(hex);
}

static json_t *stream_end_json(const dmsg_pk *pk, uint16_t port)
{
    return json_pack("{s:o,s:i}", "public_key", pk_json(pk), "port", (json_int_t)port);
}

static void remote_text(const dmsg_session *s, char *out, size_t cap);

void admin_session_up(struct admin *a, dmsg_session *s, const struct relay_session *rs)
{
    if (!a || a->closing)
        return;
    char addr[80];
    remote_text(s, addr, sizeof addr);
    api_publish(a, API_EV_SESSION_UP,
                json_pack("{s:o,s:s,s:s}", "public_key", pk_json(dmsg_session_remote_pk(s)),
                          "kind", rs && rs->is_peer ? "peer" : "client", "remote_address",
                          addr));
}

static const char *session_down_reason(int err)
{
    switch (err) {
    case 0: return "shutdown";
    case DMSG_ECLOSED: return "closed";
    case DMSG_EEXIST: return "replaced";
    case DMSG_EPERM: return "kicked";
    case DMSG_ETIMEOUT: return "timeout";
    case DMSG_EGLITCH: return "glitches";
    default: return "error";
    }
}

void admin_session_down(struct admin *a, dmsg_session *s, const struct relay_session *rs,
                        int err)
{
    if (!a || a->closing)
        return;
    dmsg_session_stats st;
    dmsg_session_get_stats(s, &st);
    uint64_t now = uv_now(a->loop);
    json_int_t secs = now > st.started_ms ? (json_int_t)((now - st.started_ms) / 1000) : 0;
    api_publish(a, API_EV_SESSION_DOWN,
                json_pack("{s:o,s:s,s:s,s:I}", "public_key",
                          pk_json(dmsg_session_remote_pk(s)), "kind",
                          rs && rs->is_peer ? "peer" : "client", "reason",
                          session_down_reason(err), "duration_seconds", secs));
}

void admin_stream_open(struct admin *a, const struct relay_link_info *l)
{
    if (!a || a->closing || !a->subs)
        return;
    json_t *j = json_pack("{s:I,s:o,s:o,s:s,s:o}", "id", (json_int_t)l->id, "initiator",
                          stream_end_json(&l->src_pk, l->src_port), "responder",
                          stream_end_json(&l->dst_pk, l->dst_port), "path",
                          relay_path_name(l->path), "via_peer",
                          l->has_via_peer ? pk_json(&l->via_peer) : json_null());
    api_publish(a, API_EV_STREAM_OPEN, j);
}

void admin_stream_close(struct admin *a, const struct relay_link_info *l, const char *reason)
{
    if (!a || a->closing || !a->subs)
        return;
    uint64_t now = uv_now(a->loop);
    json_int_t ms = now > l->opened_ms ? (json_int_t)(now - l->opened_ms) : 0;
    api_publish(a, API_EV_STREAM_CLOSE,
                json_pack("{s:I,s:s,s:I,s:I,s:I}", "id", (json_int_t)l->id, "reason", reason,
                          "bytes_forward", (json_int_t)l->bytes_forward, "bytes_reverse",
                          (json_int_t)l->bytes_reverse, "duration_ms", ms));
}

void admin_route_setup_event(struct admin *a, uint64_t id, const dmsg_pk *requester,
                             const dmsg_pk *source, const dmsg_pk *destination,
                             const char *state, const char *error, int64_t duration_ms)
{
    if (!a || a->closing)
        return;
    api_publish(a, API_EV_ROUTE_SETUP,
                json_pack("{s:I,s:o,s:o,s:o,s:s,s:s,s:o}", "id", (json_int_t)id, "requester",
                          pk_json(requester), "source", pk_json(source), "destination",
                          pk_json(destination), "state", state, "error", error ? error : "",
                          "duration_ms",
                          duration_ms >= 0 ? json_integer(duration_ms) : json_null()));
}

void admin_on_mesh_event(void *user, const struct mesh_event *ev);

void admin_on_mesh_event(void *user, const struct mesh_event *ev)
{
    struct admin *a = user;
    if (a->closing || ev->type == MESH_EVENT_INBOUND)
        return;
    if (ev->type == MESH_EVENT_LINK_STATE && ev->state == ev->previous_state)
        return; /* a redial that stays "connecting" is no change for the feed */
    const char *state = ev->type == MESH_EVENT_PEER_REMOVED ? "removed"
                                                             : mesh_link_state_name(ev->state);
    api_publish(a, API_EV_PEER_LINK,
                json_pack("{s:s,s:s,s:s,s:s,s:o}", "public_key", ev->peer->public_key_hex,
                          "address", ev->peer->address, "state", state, "previous_state",
                          mesh_link_state_name(ev->previous_state), "error",
                          api_json_str_or_null(ev->error)));
}

static void remote_text(const dmsg_session *s, char *out, size_t cap)
{
    netaddr_format(dmsg_session_remote_addr(s), out, cap);
}
