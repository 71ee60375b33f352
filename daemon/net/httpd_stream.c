/* Streamed responses (Server-Sent Events) of the HTTP server; see include/dmsg/httpd.h.
 *
 * A stream is an MHD response whose content reader copies out what the loop pushed. With
 * nothing queued the reader parks (suspends) the connection; the next push resumes it. */
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "httpd_internal.h"

static int queue_append(struct byte_queue *q, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (q->off > 0 && q->off == q->len)
        q->off = q->len = 0;
    if (q->len + len > q->cap) {
        if (q->off > 0) { /* reclaim the sent prefix before growing */
            memmove(q->data, q->data + q->off, q->len - q->off);
            q->len -= q->off;
            q->off = 0;
        }
        if (q->len + len > q->cap) {
            size_t cap = q->cap ? q->cap : STREAM_CHUNK;
            while (cap < q->len + len)
                cap *= 2;
            char *grown = realloc(q->data, cap);
            if (!grown)
                return DMSG_ENOMEM;
            q->data = grown;
            q->cap = cap;
        }
    }
    memcpy(q->data + q->len, data, len);
    q->len += len;
    return 0;
}

static size_t queue_pending(const struct byte_queue *q)
{
    return q->len - q->off;
}

void httpd_stream_closed(struct dmsg_httpd_stream *s)
{
    if (s->closed)
        return;
    s->closed = true;
    s->ending = true;
    LIST_REMOVE(s->httpd->streams, s);
    if (!s->httpd->streams)
        uv_timer_stop(&s->httpd->keepalive_timer);
    if (s->on_closed)
        s->on_closed(s->user, s);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct dmsg_httpd_stream *s = cls;
    (void)pos;
    size_t pending = queue_pending(&s->queue);
    if (pending > 0) {
        size_t n = pending < max ? pending : max;
        memcpy(buf, s->queue.data + s->queue.off, n);
        s->queue.off += n;
        return (ssize_t)n;
    }
    if (s->ending || !s->conn)
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* Nothing to send: park the connection until the next push. */
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    return 0;
}

static void stream_free(void *cls)
{
    struct dmsg_httpd_stream *s = cls;
    if (s->req)
        s->req->stream = NULL;
    httpd_stream_closed(s);
    free(s->queue.data);
    free(s);
}

static void wake_stream(struct dmsg_httpd_stream *s)
{
    if (!s->suspended || !s->conn)
        return;
    s->suspended = false;
    MHD_resume_connection(s->conn);
    httpd_kick(s->httpd);
}

static void on_keepalive(uv_timer_t *timer)
{
    struct dmsg_httpd *h = timer->data;
    static const char comment[] = ": keepalive\n\n";
    for (struct dmsg_httpd_stream *s = h->streams, *next; s; s = next) {
        next = s->next;
        if (!s->active_since_tick && !s->ending)
            dmsg_httpd_stream_push(s, comment, sizeof comment - 1);
        s->active_since_tick = false;
    }
}

/* Adds the stream's headers; false when MHD refuses one. */
static bool add_stream_headers(struct MHD_Response *r, const char *content_type,
                               const struct dmsg_httpd_header *headers, size_t header_count)
{
    bool ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                      content_type ? content_type : "text/event-stream")
              == MHD_YES;
    if (ok && !content_type)
        ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") == MHD_YES;
    for (size_t i = 0; ok && i < header_count; i++)
        ok = headers[i].name && headers[i].value &&
             MHD_add_response_header(r, headers[i].name, headers[i].value) == MHD_YES;
    return ok;
}

int dmsg_httpd_stream_start(struct dmsg_httpd_request *req, unsigned status,
                            const char *content_type, const struct dmsg_httpd_header *headers,
                            size_t header_count, dmsg_httpd_stream_closed_fn on_closed,
                            void *user, struct dmsg_httpd_stream **out)
{
    if (!req || !out)
        return DMSG_EINVAL;
    int err = httpd_check_answerable(req, status);
    if (err)
        return err;
    struct dmsg_httpd_stream *s = calloc(1, sizeof *s);
    if (!s)
        return DMSG_ENOMEM;
    struct dmsg_httpd *h = req->httpd;
    s->httpd = h;
    s->conn = req->conn;
    s->req = req;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_CHUNK,
                                                               stream_reader, s, stream_free);
    if (!r) {
        free(s);
        return DMSG_ENOMEM;
    }
    /* From here the response owns s: dropping its last reference runs stream_free. The stream
     * is listed (the list holds exactly the streams not yet closed) but has no callback until
     * the start has succeeded, so a failed start reports only through its return value. */
    LIST_PUSH(h->streams, s);
    req->stream = s;
    if (!add_stream_headers(r, content_type, headers, header_count)) {
        MHD_destroy_response(r);
        return DMSG_EINVAL;
    }
    err = httpd_deliver(req, status, r);
    if (err)
        return err;
    s->on_closed = on_closed;
    s->user = user;
    if (!uv_is_active((uv_handle_t *)&h->keepalive_timer))
        uv_timer_start(&h->keepalive_timer, on_keepalive, h->cfg.stream_keepalive_ms,
                       h->cfg.stream_keepalive_ms);
    *out = s;
    return 0;
}

int dmsg_httpd_stream_push(struct dmsg_httpd_stream *s, const void *data, size_t len)
{
    if (!s || (!data && len))
        return DMSG_EINVAL;
    if (s->ending || s->closed)
        return DMSG_ECLOSED;
    if (len > s->httpd->cfg.max_stream_buffer - queue_pending(&s->queue))
        return DMSG_ELIMIT;
    int err = queue_append(&s->queue, data, len);
    if (err)
        return err;
    s->active_since_tick = true;
    wake_stream(s);
    return 0;
}

/* Appends "prefix: <line>\n" for each line of text into q. */
static int append_field_lines(struct byte_queue *q, const char *prefix, const char *text)
{
    int err = 0;
    do {
        size_t n = strcspn(text, "\r\n");
        err = queue_append(q, prefix, strlen(prefix));
        if (!err)
            err = queue_append(q, text, n);
        if (!err)
            err = queue_append(q, "\n", 1);
        text += n;
        if (*text == '\r' && text[1] == '\n')
            text++;
        if (*text)
            text++;
        else
            break;
    } while (!err);
    return err;
}

int dmsg_httpd_stream_event(struct dmsg_httpd_stream *s, const char *event, const char *data)
{
    if (!s || !data || (event && event[strcspn(event, "\r\n")] != '\0'))
        return DMSG_EINVAL;
    struct byte_queue ev = {0};
    int err = 0;
    if (event)
        err = append_field_lines(&ev, "event: ", event);
    if (!err)
        err = append_field_lines(&ev, "data: ", data);
    if (!err)
        err = queue_append(&ev, "\n", 1);
    if (!err)
        err = dmsg_httpd_stream_push(s, ev.data, ev.len);
    free(ev.data);
    return err;
}

int dmsg_httpd_stream_end(struct dmsg_httpd_stream *s)
{
    if (!s)
        return DMSG_EINVAL;
    if (s->ending || s->closed)
        return DMSG_ECLOSED;
    s->ending = true;
    wake_stream(s);
    return 0;
}
