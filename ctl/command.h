/* Helpers shared by the noun files (peer.c, sessions.c, …). */
#ifndef DMSGCTL_COMMAND_H
#define DMSGCTL_COMMAND_H

#include <jansson.h>

#include "dmsgctl.h"
#include "util.h"

/* Reports on ctl->err that a document lacks a member the API promises; CTL_EXIT_REFUSED. */
int ctl_bad_document(struct ctl *ctl, const char *what, const char *member);

/* "/v1/peers" + "/" + pk, freshly allocated. */
char *ctl_path_pk(const char *prefix, const char *pk);
/* Appends ?name=value or &name=value, the value percent-encoded. */
void ctl_query(struct strbuf *path, const char *name, const char *value);

/* A listing that dmsgd pages (api/openapi.yaml): GET path?limit=…&<cursor_param>=<cursor>. */
struct ctl_paging {
    const char *path;          /* with its filter query, if any */
    const char *array_key;     /* "sessions" */
    const char *cursor_param;  /* "after" */
    const char *next_key;      /* "next": null on the last page */
    long long want;            /* items wanted in all; 0: every one */
};

/* Follows the pages and returns the body to render (caller frees): the daemon's body
 * unchanged when one page holds everything, else the pages joined into one document of the
 * same shape (the items concatenated, the last page's cursor). An exit status. */
int ctl_get_paged(struct ctl *ctl, const struct ctl_paging *pg, char **body, size_t *len);

/* The columns and the row of one stream (streams.c), shared with `session show'. */
extern const struct column stream_cols[];
extern const size_t stream_ncols;
void stream_row(struct view_table *t, const json_t *stream);

/* Now as RFC 3339 UTC ("2026-04-09T12:00:00Z"), for lines of live feeds. */
void ctl_now_rfc3339(char *out, size_t cap);

#endif
