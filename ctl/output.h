/* Everything dmsgctl prints on stdout goes through here.
 *
 * A command describes what it shows as a view: records (one object), tables (rows of typed
 * cells), a graph, or human-only messages, plus the daemon's body it was built from (raw).
 * The output mode decides how the view becomes text, so commands never look at the mode:
 *
 *   human  aligned tables with headers, records as "label: value", sizes and durations in
 *          human units, keys in long tables shortened; a raw body marked as text (metrics)
 *          is printed unchanged instead of the sections
 *   plain  no headers, one record per line, fields tab-separated in the documented column
 *          order, raw values (integers, RFC 3339 times, full keys), "(none)" for null; with
 *          several data sections, each line starts with the section's name
 *   json   the daemon's JSON body byte for byte when the view has one, else the sections as
 *          JSON (a record is an object, a table an array of objects keyed by column key)
 *
 * A graph section (mesh --dot) is Graphviz DOT in every mode. Writing is checked: once a
 * write fails, output_failed() stays true and main() exits with CTL_EXIT_OUTPUT. */
#ifndef DMSGCTL_OUTPUT_H
#define DMSGCTL_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum output_mode { OUTPUT_HUMAN = 0, OUTPUT_PLAIN, OUTPUT_JSON };

/* Column flags. */
#define COL_RIGHT 0x1u   /* right-aligned in human tables (numbers) */
#define COL_KV 0x2u      /* in streamed human lines, printed as header=value */

struct column {
    const char *key;     /* JSON member name when the view is rendered as JSON */
    const char *header;  /* human header and record label */
    unsigned flags;
};

struct view;
struct view_table;

struct view *view_new(void);
void view_free(struct view *v);

/* The body the view was built from (copied). JSON bodies are what --json prints; a text body
 * (Prometheus) is what human mode prints. */
enum raw_kind { RAW_JSON, RAW_TEXT };
void view_set_raw(struct view *v, const char *body, size_t len, enum raw_kind kind);

/* A table with the given columns (the array must outlive the view). name: the section name
 * used by plain mode when several sections are shown and as the JSON key then; empty_text:
 * what human mode prints instead of an empty table (NULL: only the header). */
struct view_table *view_add_table(struct view *v, const char *name, const struct column *cols,
                                  size_t ncols, const char *empty_text);
/* A record: a table of exactly one row, shown vertically in human mode; title (may be NULL)
 * is printed above it in human mode. */
struct view_table *view_add_record(struct view *v, const char *name, const struct column *cols,
                                   size_t ncols, const char *title);
/* A line for people: human mode only (printf format). */
void view_message(struct view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Cells are appended to the current row, left to right; table_row() starts a row (a record
 * has its row already). Every cell function accepts the value absent (NULL / has=false),
 * shown as "-" (human), "(none)" (plain), null (JSON). */
void table_row(struct view_table *t);
void cell_str(struct view_table *t, const char *s);
void cell_int(struct view_table *t, bool has, long long n);
void cell_num(struct view_table *t, bool has, double x);        /* %g */
void cell_bool(struct view_table *t, bool has, bool b);         /* yes/no; true/false */
void cell_bytes(struct view_table *t, bool has, long long n);   /* 1.5 MiB; 1572864 */
void cell_duration(struct view_table *t, bool has, long long seconds); /* 3h12m; 11520 */
void cell_time(struct view_table *t, const char *rfc3339);      /* 2026-04-09 12:00:00Z; as given */
/* A public key: human tables show "02c2a5f1…e5f4" where compact is true, else in full. */
void cell_pk(struct view_table *t, const char *pk, bool compact);
/* A cell whose human text differs from its plain/JSON text (a string). */
void cell_pair(struct view_table *t, const char *human, const char *plain);

/* A directed graph, rendered as Graphviz DOT. Attributes are DOT attribute lists without the
 * brackets (e.g. "color=darkgreen"); labels are escaped here. */
struct view_graph;
struct view_graph *view_add_graph(struct view *v, const char *name);
void graph_node(struct view_graph *g, const char *id, const char *label, const char *attrs);
void graph_edge(struct view_graph *g, const char *from, const char *to, const char *label,
                const char *attrs);

struct output;
struct output *output_new(enum output_mode mode, FILE *out);
void output_free(struct output *o);
enum output_mode output_mode(const struct output *o);

/* Prints a whole view. 0, or -1 once writing failed. */
int output_emit(struct output *o, const struct view *v);
/* Prints every row of every table of v as one line each, then flushes (live feeds: build a
 * fresh view per batch): human "v1  v2  label=v3 …" (COL_KV columns as header=value; messages
 * too), plain tab-separated, json the raw body compacted to one line (without raw, each row
 * as a compact object). 0 or -1. */
int output_stream(struct output *o, const struct view *v);
bool output_failed(const struct output *o);
int output_error(const struct output *o); /* errno of the failed write */

/* Human formats, shared with messages on stderr. */
void format_bytes(char *out, size_t cap, long long n);
void format_duration(char *out, size_t cap, long long seconds);

#endif
