/* The Server-Sent Events parser dmsgctl follows /v1/events with: the same events whatever the
 * chunking (split at every byte, byte by byte), every line ending, and the rules of the
 * HTML standard's "interpreting an event stream". */
#include <criterion/criterion.h>
#include <string.h>

#include "ctl_support.h"
#include "sse.h"

TestSuite(ctl_sse, .timeout = 20);

#define MAX_EVENTS 64

struct recorded {
    char type[64];
    char data[2048];
    char id[64];
};

struct recorder {
    struct recorded ev[MAX_EVENTS];
    size_t n;
    size_t stop_after; /* 0: never stop */
};

static int record(void *user, const struct sse_event *ev)
{
    struct recorder *r = user;

    cr_assert_lt(r->n, MAX_EVENTS);
    cr_assert_eq(strlen(ev->data), ev->data_len, "data_len matches the text");
    snprintf(r->ev[r->n].type, sizeof r->ev[r->n].type, "%s", ev->type);
    snprintf(r->ev[r->n].data, sizeof r->ev[r->n].data, "%s", ev->data);
    snprintf(r->ev[r->n].id, sizeof r->ev[r->n].id, "%s", ev->last_id);
    r->n++;
    return r->stop_after != 0 && r->n == r->stop_after ? 77 : 0;
}

/* Feeds text in the given chunks (cuts are positions, ascending); returns sse_feed's last
 * non-zero result or 0. */
static int feed_cut(struct recorder *r, const char *text, size_t len, const size_t *cuts,
                    size_t ncuts, size_t max)
{
    struct sse_parser p;
    size_t at = 0;
    int rc = 0;

    memset(r, 0, sizeof *r);
    sse_init(&p, max, record, r);
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        rc = sse_feed(&p, text + at, end - at);
        at = end;
    }
    sse_free(&p);
    return rc;
}

static int feed(struct recorder *r, const char *text)
{
    return feed_cut(r, text, strlen(text), NULL, 0, 65536);
}

static void expect_same(const struct recorder *a, const struct recorder *b, const char *how)
{
    cr_assert_eq(a->n, b->n, "%s: %zu events instead of %zu", how, b->n, a->n);
    for (size_t i = 0; i < a->n; i++) {
        cr_expect_str_eq(b->ev[i].type, a->ev[i].type, "%s: event %zu", how, i);
        cr_expect_str_eq(b->ev[i].data, a->ev[i].data, "%s: event %zu", how, i);
        cr_expect_str_eq(b->ev[i].id, a->ev[i].id, "%s: event %zu", how, i);
    }
}

Test(ctl_sse, the_fixture_stream)
{
    size_t len;
    char *text = fixture("events.sse", &len);
    struct recorder r;
    const char *types[] = {"session_up", "session_down", "stream_open", "stream_close",
                           "peer_link",  "route_setup"};

    cr_assert_eq(feed_cut(&r, text, len, NULL, 0, 65536), 0);
    cr_assert_eq(r.n, 6);
    for (size_t i = 0; i < r.n; i++) {
        char id[8], type_member[64];
        json_t *doc = json_loads(r.ev[i].data, 0, NULL);
        cr_expect_str_eq(r.ev[i].type, types[i]);
        snprintf(id, sizeof id, "%zu", i + 1);
        cr_expect_str_eq(r.ev[i].id, id);
        cr_assert(json_is_object(doc), "data is one JSON object: %s", r.ev[i].data);
        snprintf(type_member, sizeof type_member, "%s",
                 json_string_value(json_object_get(doc, "type")));
        cr_expect_str_eq(type_member, types[i], "the data's type repeats the event name");
        json_decref(doc);
    }
    free(text);
}

/* Converts LF line ends to CRLF or CR. */
static char *with_line_ends(const char *text, const char *eol)
{
    size_t n = 0;
    char *out = malloc(strlen(text) * 2 + 1);

    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            memcpy(out + n, eol, strlen(eol));
            n += strlen(eol);
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return out;
}

Test(ctl_sse, split_at_every_byte_and_every_line_ending)
{
    size_t len;
    char *lf = fixture("events.sse", &len);
    const char *eols[] = {"\n", "\r\n", "\r"};
    struct recorder whole, parts;

    cr_assert_eq(feed_cut(&whole, lf, len, NULL, 0, 65536), 0);
    for (size_t e = 0; e < 3; e++) {
        char *text = with_line_ends(lf, eols[e]);
        size_t tlen = strlen(text);
        char how[64];

        /* Two chunks, cut at every position (a CR at the end of one chunk and the LF at the
         * start of the next must stay one line end). */
        for (size_t cut = 0; cut <= tlen; cut++) {
            snprintf(how, sizeof how, "eol %zu, cut at %zu", e, cut);
            cr_assert_eq(feed_cut(&parts, text, tlen, &cut, 1, 65536), 0, "%s", how);
            expect_same(&whole, &parts, how);
        }
        /* One byte at a time. */
        {
            size_t *cuts = malloc(tlen * sizeof *cuts);
            for (size_t i = 0; i < tlen; i++)
                cuts[i] = i + 1;
            snprintf(how, sizeof how, "eol %zu, byte by byte", e);
            cr_assert_eq(feed_cut(&parts, text, tlen, cuts, tlen, 65536), 0);
            expect_same(&whole, &parts, how);
            free(cuts);
        }
        free(text);
    }
    free(lf);
}

Test(ctl_sse, field_rules)
{
    struct recorder r;

    /* Several data lines join with LF; one leading space is dropped, a second is kept. */
    cr_assert_eq(feed(&r, "data: a\ndata:  b\ndata:c\n\n"), 0);
    cr_assert_eq(r.n, 1);
    cr_expect_str_eq(r.ev[0].data, "a\n b\nc");
    cr_expect_str_eq(r.ev[0].type, "message", "no event field: message");

    /* Comments and unknown fields are ignored; a line without a colon is a field name. */
    cr_assert_eq(feed(&r, ": keepalive\nfoo: bar\nevent: x\ndata\n\n"), 0);
    cr_assert_eq(r.n, 1);
    cr_expect_str_eq(r.ev[0].type, "x");
    cr_expect_str_eq(r.ev[0].data, "", "`data' alone adds an empty line");

    /* An event with no data is not dispatched, and its type does not leak into the next. */
    cr_assert_eq(feed(&r, "event: lonely\n\ndata: d\n\n"), 0);
    cr_assert_eq(r.n, 1);
    cr_expect_str_eq(r.ev[0].type, "message");

    /* The id sticks to later events until changed; an id with NUL is ignored. */
    {
        const char text[] = "id: 5\ndata: a\n\ndata: b\n\nid: 6\0x\ndata: c\n\n";
        cr_assert_eq(feed_cut(&r, text, sizeof text - 1, NULL, 0, 65536), 0);
        cr_assert_eq(r.n, 3);
        cr_expect_str_eq(r.ev[0].id, "5");
        cr_expect_str_eq(r.ev[1].id, "5");
        cr_expect_str_eq(r.ev[2].id, "5");
    }

    /* An incomplete event at the end of the stream is not dispatched. */
    cr_assert_eq(feed(&r, "data: a\n\ndata: b\n"), 0);
    cr_expect_eq(r.n, 1);

    /* A leading BOM is skipped, even split across chunks; a lone EF is text. */
    {
        const char text[] = "\xef\xbb\xbf" "data: bom\n\n";
        size_t cuts[] = {1, 2};
        cr_assert_eq(feed_cut(&r, text, sizeof text - 1, cuts, 2, 65536), 0);
        cr_assert_eq(r.n, 1);
        cr_expect_str_eq(r.ev[0].data, "bom");
        cr_assert_eq(feed(&r, "\xef" "data: x\n\n"), 0);
        cr_expect_eq(r.n, 0, "`\\xefdata' is an unknown field");
    }
}

Test(ctl_sse, retry_field)
{
    struct sse_parser p;
    struct recorder r;

    memset(&r, 0, sizeof r);
    sse_init(&p, 1024, record, &r);
    cr_assert_eq(sse_feed(&p, "retry: 2000\n\n", 13), 0);
    cr_expect_eq(p.retry_ms, 2000);
    cr_assert_eq(sse_feed(&p, "retry: 2s\n\n", 11), 0);
    cr_expect_eq(p.retry_ms, 2000, "a retry that is not all digits is ignored");
    sse_free(&p);
}

Test(ctl_sse, limits_and_stopping)
{
    struct recorder r;
    char big[300];

    memset(big, 'x', sizeof big);
    memcpy(big, "data: ", 6);
    big[sizeof big - 1] = '\0';
    cr_expect_eq(feed_cut(&r, big, strlen(big), NULL, 0, 100), SSE_ETOOBIG,
                 "a line longer than the event limit");
    cr_expect_eq(feed_cut(&r, "data: 0123456789\ndata: 0123456789\n\n", 35, NULL, 0, 15),
                 SSE_ETOOBIG, "data lines adding up over the limit");
    cr_expect_eq(r.n, 0);

    /* The callback's non-zero value stops the feed and comes back. */
    memset(&r, 0, sizeof r);
    {
        struct sse_parser p;
        r.stop_after = 2;
        sse_init(&p, 1024, record, &r);
        cr_expect_eq(sse_feed(&p, "data: 1\n\ndata: 2\n\ndata: 3\n\n", 27), 77);
        cr_expect_eq(r.n, 2);
        sse_free(&p);
    }
}
