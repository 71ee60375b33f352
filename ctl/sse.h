/* An incremental parser of Server-Sent Events (HTML Living Standard, "Interpreting an event
 * stream"), fed with whatever chunks the transport delivers.
 *
 * Lines end with CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the
 * next are one line end). A leading BOM is skipped. "event", "data", "id" and "retry" fields
 * are understood, a single space after the colon is dropped, comments (":…") and unknown
 * fields are ignored, data lines are joined with LF, a blank line dispatches the event when it
 * has data. An event whose text grows over the limit is an error. Pure: no I/O. */
#ifndef DMSGCTL_SSE_H
#define DMSGCTL_SSE_H

#include <stdbool.h>
#include <stddef.h>

struct sse_event {
    const char *type;       /* "message" when no event field was given */
    const char *data;       /* without the final LF; NUL-terminated, but may hold NULs */
    size_t data_len;
    const char *last_id;    /* the last id seen on the stream ("" when none) */
};

/* Returns 0 to go on; anything else stops sse_feed, which returns it. */
typedef int (*sse_event_fn)(void *user, const struct sse_event *ev);

#define SSE_ETOOBIG (-1)    /* an event's type, data or id exceeded max_event_bytes */

struct sse_buf {
    char *s;
    size_t len, cap;
};

struct sse_parser {
    size_t max_event_bytes;
    sse_event_fn on_event;
    void *user;
    struct sse_buf line, type, data, id;
    bool started;            /* past the optional BOM */
    size_t bom_seen;         /* BOM bytes matched so far */
    bool after_cr;           /* the previous byte was a CR that ended a line */
    long retry_ms;           /* the last valid retry field, -1 when none */
};

void sse_init(struct sse_parser *p, size_t max_event_bytes, sse_event_fn on_event, void *user);
/* 0, SSE_ETOOBIG, or the callback's non-zero value. */
int sse_feed(struct sse_parser *p, const char *buf, size_t len);
void sse_free(struct sse_parser *p);

#endif
