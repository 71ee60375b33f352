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

/* A renderer of one daemon document (render_* in dmsgctl.h). */
typedef int ctl_render_fn(struct ctl *ctl, const char *body, size_t len);

/* Sends method path (json_body: NULL or a request document) and renders the answer with
 * render; an exit status. */
int ctl_call_and_render(struct ctl *ctl, const char *method, const char *path,
                        const char *json_body, ctl_render_fn *render);
/* GET prefix/<the command's PK> and render the answer with render; an exit status. */
int ctl_get_pk_and_render(struct ctl *ctl, const char *prefix, ctl_render_fn *render);
/* DELETE prefix/<the command's PK>; an exit status (the answer has no body worth showing). */
int ctl_delete_pk(struct ctl *ctl, const char *prefix);

/* A document holding one array of items shown as a table, one row per item. */
struct ctl_list {
    const char *what;            /* names the document in messages: "peer ls" */
    const char *array_key;       /* "peers" */
    const char *table_name;      /* the view's table: "peers" */
    const struct column *cols;
    size_t ncols;
    const char *empty;           /* shown when there is no item */
    const char *total_noun;      /* "%zu of %lld <total_noun> shown" when the document's
                                  * "total" exceeds the items; NULL: no total to compare */
    void (*row)(struct view_table *t, const json_t *item);  /* starts its row */
};
/* Renders body as l describes; an exit status (CTL_EXIT_REFUSED for an off-API document). */
int ctl_render_list(struct ctl *ctl, const char *body, size_t len, const struct ctl_list *l);

/* A cell from an optional JSON member (empty when absent or of another type). */
void json_int_cell(struct view_table *t, const json_t *obj, const char *key);
void json_duration_cell(struct view_table *t, const json_t *obj, const char *key);
void json_bytes_cell(struct view_table *t, const json_t *obj, const char *key);
void json_bool_cell(struct view_table *t, const json_t *obj, const char *key);

/* ctl_get_paged, then the joined body rendered with render; an exit status. */
int ctl_get_paged_and_render(struct ctl *ctl, const struct ctl_paging *pg,
                             ctl_render_fn *render);

/* The columns and the row of one stream (streams.c), shared with `session show'. */
extern const struct column stream_cols[];
extern const size_t stream_ncols;
void stream_row(struct view_table *t, const json_t *stream);

/* Now as RFC 3339 UTC ("2026-04-09T12:00:00Z"), for lines of live feeds. */
void ctl_now_rfc3339(char *out, size_t cap);

#endif
