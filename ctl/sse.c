/* Server-Sent Events parser; see sse.h. */
#include "sse.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static const unsigned char bom[3] = {0xef, 0xbb, 0xbf};

void sse_init(struct sse_parser *p, size_t max_event_bytes, sse_event_fn on_event, void *user)
{
    memset(p, 0, sizeof *p);
    p->max_event_bytes = max_event_bytes;
    p->on_event = on_event;
    p->user = user;
    p->retry_ms = -1;
}

static void buf_free(struct sse_buf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

void sse_free(struct sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->type);
    buf_free(&p->data);
    buf_free(&p->id);
}

/* Appends and keeps the text NUL-terminated. false when it would exceed max. */
static bool buf_add(struct sse_buf *b, const char *s, size_t n, size_t max)
{
    if (b->len + n > max)
        return false;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 128 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return true;
}

static void buf_set(struct sse_buf *b, const char *s, size_t n)
{
    b->len = 0;
    buf_add(b, s, n, (size_t)-1);
}

static int dispatch(struct sse_parser *p)
{
    struct sse_event ev;
    int rc;

    if (p->data.len == 0) {
        p->type.len = 0;
        return 0;
    }
    p->data.len--; /* the LF after the last data line */
    p->data.s[p->data.len] = '\0';
    ev.type = p->type.len > 0 ? p->type.s : "message";
    ev.data = p->data.s;
    ev.data_len = p->data.len;
    ev.last_id = p->id.len > 0 ? p->id.s : "";
    rc = p->on_event(p->user, &ev);
    p->data.len = 0;
    p->type.len = 0;
    return rc;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

static int process_line(struct sse_parser *p)
{
    const char *line = p->line.s != NULL ? p->line.s : "";
    size_t len = p->line.len;
    const char *colon, *value;
    size_t name_len, value_len;
    int rc = 0;

    p->line.len = 0;
    if (len == 0)
        return dispatch(p);
    if (line[0] == ':')
        return 0;
    colon = memchr(line, ':', len);
    name_len = colon != NULL ? (size_t)(colon - line) : len;
    value = colon != NULL ? colon + 1 : line + len;
    value_len = (size_t)(line + len - value);
    if (value_len > 0 && value[0] == ' ') {
        value++;
        value_len--;
    }
    if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        if (value_len > p->max_event_bytes)
            return SSE_ETOOBIG;
        buf_set(&p->type, value, value_len);
    } else if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (!buf_add(&p->data, value, value_len, p->max_event_bytes) ||
            !buf_add(&p->data, "\n", 1, p->max_event_bytes + 1))
            rc = SSE_ETOOBIG;
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        if (memchr(value, '\0', value_len) == NULL) {
            if (value_len > p->max_event_bytes)
                return SSE_ETOOBIG;
            buf_set(&p->id, value, value_len);
        }
    } else if (name_len == 5 && memcmp(line, "retry", 5) == 0) {
        if (all_digits(value, value_len) && value_len < 10)
            p->retry_ms = strtol(value, NULL, 10);
    }
    return rc;
}

static int feed_byte(struct sse_parser *p, char c)
{
    if (p->after_cr) {
        p->after_cr = false;
        if (c == '\n')
            return 0;
    }
    if (c == '\r') {
        p->after_cr = true;
        return process_line(p);
    }
    if (c == '\n')
        return process_line(p);
    if (!buf_add(&p->line, &c, 1, p->max_event_bytes + 16))
        return SSE_ETOOBIG;
    return 0;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len)
{
    size_t i = 0;
    int rc;

    while (!p->started && i < len) {
        if ((unsigned char)buf[i] == bom[p->bom_seen]) {
            i++;
            if (++p->bom_seen == sizeof bom)
                p->started = true;
            continue;
        }
        /* Not a BOM after all: the bytes held back are ordinary text. */
        p->started = true;
        for (size_t k = 0; k < p->bom_seen; k++) {
            if ((rc = feed_byte(p, (char)bom[k])) != 0)
                return rc;
        }
    }
    for (; i < len; i++) {
        if ((rc = feed_byte(p, buf[i])) != 0)
            return rc;
    }
    return 0;
}
