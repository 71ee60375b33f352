/* The one place where dmsgctl formats its stdout; see output.h. */
#include "output.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

enum cell_json { CJ_NULL, CJ_STRING, CJ_INT, CJ_REAL, CJ_BOOL };

struct cell {
    char *human;
    char *plain;
    enum cell_json json;
    long long ival;
    double dval;
    bool bval;
    bool empty_string; /* "" in JSON although plain shows "(none)" */
};

struct row {
    struct cell *cells;
    size_t n;
};

struct view_table {
    const char *name;
    const struct column *cols;
    size_t ncols;
    char *empty_text;
    char *title;
    bool record;
    struct row *rows;
    size_t nrows, cap;
};

struct graph_item {
    char *a, *b, *label, *attrs; /* node: a = id; edge: a -> b */
};

struct view_graph {
    const char *name;
    struct graph_item *nodes, *edges;
    size_t nnodes, nedges;
};

enum section_kind { SEC_TABLE, SEC_MESSAGE, SEC_GRAPH };

struct section {
    enum section_kind kind;
    struct view_table *table;
    struct view_graph *graph;
    char *message;
};

struct view {
    struct section *sections;
    size_t n;
    char *raw;
    size_t raw_len;
    bool has_raw;
    enum raw_kind raw_kind;
};

struct output {
    enum output_mode mode;
    FILE *out;
    bool failed;
    int error;           /* errno of the failed write */
};

/* ---- building views -------------------------------------------------------------------- */

struct view *view_new(void)
{
    return xcalloc(1, sizeof(struct view));
}

static void free_table(struct view_table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->rows[r].n; c++) {
            free(t->rows[r].cells[c].human);
            free(t->rows[r].cells[c].plain);
        }
        free(t->rows[r].cells);
    }
    free(t->rows);
    free(t->empty_text);
    free(t->title);
    free(t);
}

static void free_items(struct graph_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(items[i].a);
        free(items[i].b);
        free(items[i].label);
        free(items[i].attrs);
    }
    free(items);
}

void view_free(struct view *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++) {
        struct section *s = &v->sections[i];
        if (s->table != NULL)
            free_table(s->table);
        if (s->graph != NULL) {
            free_items(s->graph->nodes, s->graph->nnodes);
            free_items(s->graph->edges, s->graph->nedges);
            free(s->graph);
        }
        free(s->message);
    }
    free(v->sections);
    free(v->raw);
    free(v);
}

void view_set_raw(struct view *v, const char *body, size_t len, enum raw_kind kind)
{
    free(v->raw);
    v->raw = xmalloc(len + 1);
    memcpy(v->raw, body, len);
    v->raw[len] = '\0';
    v->raw_len = len;
    v->raw_kind = kind;
    v->has_raw = true;
}

static struct section *add_section(struct view *v, enum section_kind kind)
{
    v->sections = xrealloc(v->sections, (v->n + 1) * sizeof *v->sections);
    memset(&v->sections[v->n], 0, sizeof v->sections[v->n]);
    v->sections[v->n].kind = kind;
    return &v->sections[v->n++];
}

struct view_table *view_add_table(struct view *v, const char *name, const struct column *cols,
                                  size_t ncols, const char *empty_text)
{
    struct section *s = add_section(v, SEC_TABLE);
    struct view_table *t = xcalloc(1, sizeof *t);

    t->name = name;
    t->cols = cols;
    t->ncols = ncols;
    t->empty_text = empty_text != NULL ? xstrdup(empty_text) : NULL;
    s->table = t;
    return t;
}

struct view_table *view_add_record(struct view *v, const char *name, const struct column *cols,
                                   size_t ncols, const char *title)
{
    struct view_table *t = view_add_table(v, name, cols, ncols, NULL);

    t->record = true;
    t->title = title != NULL ? xstrdup(title) : NULL;
    table_row(t);
    return t;
}

void view_message(struct view *v, const char *fmt, ...)
{
    struct section *s = add_section(v, SEC_MESSAGE);
    va_list ap;

    va_start(ap, fmt);
    s->message = xvasprintf(fmt, ap);
    va_end(ap);
}

void table_row(struct view_table *t)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap == 0 ? 8 : t->cap * 2;
        t->rows = xrealloc(t->rows, t->cap * sizeof *t->rows);
    }
    t->rows[t->nrows].cells = xcalloc(t->ncols, sizeof(struct cell));
    t->rows[t->nrows].n = 0;
    t->nrows++;
}

/* Text for one line of one cell: tabs and line breaks would break the plain format and the
 * table alignment, so every control character becomes a space. */
static char *clean_text(const char *s)
{
    char *out = xstrdup(s);

    for (char *p = out; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    return out;
}

static struct cell *next_cell(struct view_table *t)
{
    struct row *r;

    if (t->nrows == 0)
        table_row(t);
    r = &t->rows[t->nrows - 1];
    if (r->n >= t->ncols)
        fatal_bug("table %s: more cells than columns", t->name);
    return &r->cells[r->n++];
}

static struct cell *set_cell(struct view_table *t, const char *human, const char *plain,
                             enum cell_json json)
{
    struct cell *c = next_cell(t);

    c->human = clean_text(human);
    c->plain = clean_text(plain);
    c->json = json;
    return c;
}

static void set_null(struct view_table *t)
{
    set_cell(t, "-", "(none)", CJ_NULL);
}

void cell_str(struct view_table *t, const char *s)
{
    if (s == NULL) {
        set_null(t);
        return;
    }
    if (s[0] == '\0')
        set_cell(t, "-", "(none)", CJ_STRING)->empty_string = true;
    else
        set_cell(t, s, s, CJ_STRING);
}

void cell_pair(struct view_table *t, const char *human, const char *plain)
{
    if (plain == NULL) {
        set_null(t);
        return;
    }
    set_cell(t, human, plain, CJ_STRING);
}

void cell_int(struct view_table *t, bool has, long long n)
{
    char buf[32];

    if (!has) {
        set_null(t);
        return;
    }
    snprintf(buf, sizeof buf, "%lld", n);
    set_cell(t, buf, buf, CJ_INT)->ival = n;
}

void cell_num(struct view_table *t, bool has, double x)
{
    char buf[64];

    if (!has) {
        set_null(t);
        return;
    }
    snprintf(buf, sizeof buf, "%.15g", x);
    {
        char human[64];
        /* Counts stay whole numbers for people too; fractions get 6 significant digits. */
        if (x > -1e15 && x < 1e15 && x == (double)(long long)x)
            snprintf(human, sizeof human, "%lld", (long long)x);
        else
            snprintf(human, sizeof human, "%.6g", x);
        set_cell(t, human, buf, CJ_REAL)->dval = x;
    }
}

void cell_bool(struct view_table *t, bool has, bool b)
{
    if (!has) {
        set_null(t);
        return;
    }
    set_cell(t, b ? "yes" : "no", b ? "true" : "false", CJ_BOOL)->bval = b;
}

void cell_bytes(struct view_table *t, bool has, long long n)
{
    char human[32], plain[32];

    if (!has) {
        set_null(t);
        return;
    }
    format_bytes(human, sizeof human, n);
    snprintf(plain, sizeof plain, "%lld", n);
    set_cell(t, human, plain, CJ_INT)->ival = n;
}

void cell_duration(struct view_table *t, bool has, long long seconds)
{
    char human[32], plain[32];

    if (!has) {
        set_null(t);
        return;
    }
    format_duration(human, sizeof human, seconds);
    snprintf(plain, sizeof plain, "%lld", seconds);
    set_cell(t, human, plain, CJ_INT)->ival = seconds;
}

void cell_time(struct view_table *t, const char *rfc3339)
{
    char human[64];
    size_t len;
    const char *frac;

    if (rfc3339 == NULL) {
        set_null(t);
        return;
    }
    /* 2026-04-09T12:00:00.250Z -> 2026-04-09 12:00:00Z: people rarely need the fraction. */
    snprintf(human, sizeof human, "%s", rfc3339);
    if (strlen(human) > 10 && human[10] == 'T')
        human[10] = ' ';
    frac = strchr(human, '.');
    if (frac != NULL) {
        len = strspn(frac + 1, "0123456789");
        memmove((char *)frac, frac + 1 + len, strlen(frac + 1 + len) + 1);
    }
    set_cell(t, human, rfc3339, CJ_STRING);
}

void cell_pk(struct view_table *t, const char *pk, bool compact)
{
    char human[32];

    if (pk == NULL) {
        set_null(t);
        return;
    }
    if (!compact || strlen(pk) <= 14) {
        cell_str(t, pk);
        return;
    }
    snprintf(human, sizeof human, "%.8s\u2026%s", pk, pk + strlen(pk) - 4);
    set_cell(t, human, pk, CJ_STRING);
}

/* ---- graphs -------------------------------------------------------------------------------- */

struct view_graph *view_add_graph(struct view *v, const char *name)
{
    struct section *s = add_section(v, SEC_GRAPH);

    s->graph = xcalloc(1, sizeof *s->graph);
    s->graph->name = name;
    return s->graph;
}

static void add_item(struct graph_item **items, size_t *n, const char *a, const char *b,
                     const char *label, const char *attrs)
{
    struct graph_item *it;

    *items = xrealloc(*items, (*n + 1) * sizeof **items);
    it = &(*items)[(*n)++];
    it->a = xstrdup(a);
    it->b = b != NULL ? xstrdup(b) : NULL;
    it->label = label != NULL ? xstrdup(label) : NULL;
    it->attrs = attrs != NULL ? xstrdup(attrs) : NULL;
}

void graph_node(struct view_graph *g, const char *id, const char *label, const char *attrs)
{
    add_item(&g->nodes, &g->nnodes, id, NULL, label, attrs);
}

void graph_edge(struct view_graph *g, const char *from, const char *to, const char *label,
                const char *attrs)
{
    add_item(&g->edges, &g->nedges, from, to, label, attrs);
}

/* ---- writing -------------------------------------------------------------------------------- */

struct output *output_new(enum output_mode mode, FILE *out)
{
    struct output *o = xcalloc(1, sizeof *o);

    o->mode = mode;
    o->out = out;
    return o;
}

void output_free(struct output *o)
{
    free(o);
}

enum output_mode output_mode(const struct output *o)
{
    return o->mode;
}

bool output_failed(const struct output *o)
{
    return o->failed;
}

int output_error(const struct output *o)
{
    return o->error;
}

static void put(struct output *o, const char *s, size_t len)
{
    if (o->failed || len == 0)
        return;
    if (fwrite(s, 1, len, o->out) != len) {
        o->failed = true;
        o->error = errno;
    }
}

static void puts_(struct output *o, const char *s)
{
    put(o, s, strlen(s));
}

static void printf_(struct output *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void printf_(struct output *o, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    puts_(o, s);
    free(s);
}

static int finish(struct output *o)
{
    if (!o->failed && (fflush(o->out) != 0 || ferror(o->out))) {
        o->failed = true;
        o->error = errno;
    }
    return o->failed ? -1 : 0;
}

/* Display width: code points, which is right for the ASCII and the ellipsis used here. */
static size_t width(const char *s)
{
    size_t w = 0;

    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    }
    return w;
}

static void pad(struct output *o, size_t n)
{
    static const char spaces[] = "                                ";

    while (n > 0) {
        size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
        put(o, spaces, k);
        n -= k;
    }
}

/* -- human -- */

static void human_record(struct output *o, const struct view_table *t)
{
    size_t label_w = 0;
    const struct row *r = &t->rows[0];

    if (t->title != NULL)
        printf_(o, "%s\n", t->title);
    for (size_t c = 0; c < t->ncols; c++) {
        size_t w = width(t->cols[c].header) + 1;
        if (w > label_w)
            label_w = w;
    }
    for (size_t c = 0; c < t->ncols && c < r->n; c++) {
        printf_(o, "%s:", t->cols[c].header);
        pad(o, label_w - width(t->cols[c].header) - 1 + 2);
        printf_(o, "%s\n", r->cells[c].human);
    }
}

static void human_table(struct output *o, const struct view_table *t)
{
    size_t *w = xcalloc(t->ncols, sizeof *w);

    if (t->title != NULL)
        printf_(o, "%s\n", t->title);
    if (t->nrows == 0 && t->empty_text != NULL) {
        printf_(o, "%s\n", t->empty_text);
        free(w);
        return;
    }
    for (size_t c = 0; c < t->ncols; c++)
        w[c] = width(t->cols[c].header);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->rows[r].n; c++) {
            size_t cw = width(t->rows[r].cells[c].human);
            if (cw > w[c])
                w[c] = cw;
        }
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *text = r == 0 ? t->cols[c].header
                               : c < t->rows[r - 1].n ? t->rows[r - 1].cells[c].human
                                                      : "";
            size_t gap = w[c] - width(text);
            bool last = c + 1 == t->ncols;
            if (c > 0)
                puts_(o, "  ");
            if (t->cols[c].flags & COL_RIGHT)
                pad(o, gap);
            puts_(o, text);
            if (!(t->cols[c].flags & COL_RIGHT) && !last)
                pad(o, gap);
        }
        puts_(o, "\n");
    }
    free(w);
}

/* DOT quoted string: backslash and quote escaped, line breaks as \n. */
static void dot_string(struct output *o, const char *s)
{
    puts_(o, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            char esc[2] = {'\\', *s};
            put(o, esc, 2);
        } else if (*s == '\n') {
            puts_(o, "\\n");
        } else if ((unsigned char)*s >= 0x20 && *s != 0x7f) {
            put(o, s, 1);
        }
    }
    puts_(o, "\"");
}

static void dot_graph(struct output *o, const struct view_graph *g)
{
    puts_(o, "digraph ");
    dot_string(o, g->name);
    puts_(o, " {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
    for (size_t i = 0; i < g->nnodes; i++) {
        puts_(o, "  ");
        dot_string(o, g->nodes[i].a);
        puts_(o, " [label=");
        dot_string(o, g->nodes[i].label != NULL ? g->nodes[i].label : g->nodes[i].a);
        if (g->nodes[i].attrs != NULL)
            printf_(o, ", %s", g->nodes[i].attrs);
        puts_(o, "];\n");
    }
    for (size_t i = 0; i < g->nedges; i++) {
        puts_(o, "  ");
        dot_string(o, g->edges[i].a);
        puts_(o, " -> ");
        dot_string(o, g->edges[i].b);
        puts_(o, " [");
        if (g->edges[i].label != NULL) {
            puts_(o, "label=");
            dot_string(o, g->edges[i].label);
            if (g->edges[i].attrs != NULL)
                puts_(o, ", ");
        }
        if (g->edges[i].attrs != NULL)
            puts_(o, g->edges[i].attrs);
        puts_(o, "];\n");
    }
    puts_(o, "}\n");
}

static void human_view(struct output *o, const struct view *v)
{
    bool block_before = false;

    if (v->has_raw && v->raw_kind == RAW_TEXT) {
        put(o, v->raw, v->raw_len);
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct section *s = &v->sections[i];
        if (s->kind == SEC_MESSAGE) {
            printf_(o, "%s\n", s->message);
            continue;
        }
        if (block_before)
            puts_(o, "\n");
        if (s->kind == SEC_GRAPH)
            dot_graph(o, s->graph);
        else if (s->table->record)
            human_record(o, s->table);
        else
            human_table(o, s->table);
        block_before = true;
    }
}

/* -- plain -- */

static size_t data_sections(const struct view *v)
{
    size_t n = 0;

    for (size_t i = 0; i < v->n; i++)
        n += v->sections[i].kind == SEC_TABLE;
    return n;
}

static void plain_row(struct output *o, const char *prefix, const struct row *r)
{
    if (prefix != NULL)
        printf_(o, "%s\t", prefix);
    for (size_t c = 0; c < r->n; c++) {
        if (c > 0)
            puts_(o, "\t");
        puts_(o, r->cells[c].plain);
    }
    puts_(o, "\n");
}

static void plain_view(struct output *o, const struct view *v)
{
    bool prefixed = data_sections(v) > 1;

    for (size_t i = 0; i < v->n; i++) {
        const struct section *s = &v->sections[i];
        if (s->kind == SEC_GRAPH)
            dot_graph(o, s->graph);
        if (s->kind != SEC_TABLE)
            continue;
        for (size_t r = 0; r < s->table->nrows; r++)
            plain_row(o, prefixed ? s->table->name : NULL, &s->table->rows[r]);
    }
}

/* -- json -- */

static json_t *cell_json(const struct cell *c)
{
    switch (c->json) {
    case CJ_STRING: return json_string(c->empty_string ? "" : c->plain);
    case CJ_INT: return json_integer(c->ival);
    case CJ_REAL: return json_real(c->dval);
    case CJ_BOOL: return json_boolean(c->bval);
    case CJ_NULL: break;
    }
    return json_null();
}

static json_t *row_json(const struct view_table *t, const struct row *r)
{
    json_t *obj = json_object();

    for (size_t c = 0; c < r->n; c++)
        json_object_set_new(obj, t->cols[c].key, cell_json(&r->cells[c]));
    return obj;
}

static json_t *table_json(const struct view_table *t)
{
    json_t *arr;

    if (t->record)
        return row_json(t, &t->rows[0]);
    arr = json_array();
    for (size_t r = 0; r < t->nrows; r++)
        json_array_append_new(arr, row_json(t, &t->rows[r]));
    return arr;
}

static void json_dump_to(struct output *o, json_t *doc, size_t flags)
{
    char *text = json_dumps(doc, flags | JSON_ENCODE_ANY);

    if (text == NULL)
        fatal_bug("cannot encode JSON");
    puts_(o, text);
    puts_(o, "\n");
    free(text);
}

static void json_view(struct output *o, const struct view *v)
{
    json_t *doc = NULL;

    if (v->has_raw && v->raw_kind == RAW_JSON) {
        put(o, v->raw, v->raw_len);
        if (v->raw_len > 0 && v->raw[v->raw_len - 1] != '\n')
            puts_(o, "\n");
        return;
    }
    if (data_sections(v) == 1) {
        for (size_t i = 0; i < v->n; i++) {
            if (v->sections[i].kind == SEC_TABLE)
                doc = table_json(v->sections[i].table);
        }
    } else {
        doc = json_object();
        for (size_t i = 0; i < v->n; i++) {
            if (v->sections[i].kind == SEC_TABLE)
                json_object_set_new(doc, v->sections[i].table->name,
                                    table_json(v->sections[i].table));
        }
    }
    for (size_t i = 0; i < v->n; i++) {
        if (v->sections[i].kind == SEC_GRAPH)
            dot_graph(o, v->sections[i].graph);
    }
    if (doc != NULL && (data_sections(v) > 0))
        json_dump_to(o, doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
}

int output_emit(struct output *o, const struct view *v)
{
    switch (o->mode) {
    case OUTPUT_HUMAN: human_view(o, v); break;
    case OUTPUT_PLAIN: plain_view(o, v); break;
    case OUTPUT_JSON: json_view(o, v); break;
    }
    return finish(o);
}

/* -- streamed lines -- */

static void human_line(struct output *o, const struct view_table *t, const struct row *r)
{
    for (size_t c = 0; c < r->n; c++) {
        if (c > 0)
            puts_(o, "  ");
        if (t->cols[c].flags & COL_KV)
            printf_(o, "%s=", t->cols[c].header);
        puts_(o, r->cells[c].human);
    }
    puts_(o, "\n");
}

static void json_line(struct output *o, const struct view *v)
{
    json_t *doc;
    json_error_t jerr;

    if (memchr(v->raw, '\n', v->raw_len) == NULL) {
        put(o, v->raw, v->raw_len);
        puts_(o, "\n");
        return;
    }
    doc = json_loadb(v->raw, v->raw_len, JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        /* Not ours to fix: pass it on as one line. */
        for (size_t i = 0; i < v->raw_len; i++)
            put(o, v->raw[i] == '\n' ? " " : &v->raw[i], 1);
        puts_(o, "\n");
        return;
    }
    json_dump_to(o, doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(doc);
}

int output_stream(struct output *o, const struct view *v)
{
    if (o->mode == OUTPUT_JSON && v->has_raw && v->raw_kind == RAW_JSON) {
        json_line(o, v);
        return finish(o);
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct section *s = &v->sections[i];
        if (s->kind == SEC_MESSAGE && o->mode == OUTPUT_HUMAN)
            printf_(o, "%s\n", s->message);
        if (s->kind != SEC_TABLE)
            continue;
        for (size_t r = 0; r < s->table->nrows; r++) {
            const struct row *row = &s->table->rows[r];
            switch (o->mode) {
            case OUTPUT_HUMAN: human_line(o, s->table, row); break;
            case OUTPUT_PLAIN: plain_row(o, NULL, row); break;
            case OUTPUT_JSON: {
                json_t *obj = row_json(s->table, row);
                json_dump_to(o, obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(obj);
                break;
            }
            }
        }
    }
    return finish(o);
}

/* ---- human units ---------------------------------------------------------------------------- */

void format_bytes(char *out, size_t cap, long long n)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double x = (double)n;
    size_t u = 0;

    if (n < 1024) {
        snprintf(out, cap, "%lld B", n);
        return;
    }
    x /= 1024.0;
    while (x >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        x /= 1024.0;
        u++;
    }
    snprintf(out, cap, "%.1f %s", x, units[u]);
}

void format_duration(char *out, size_t cap, long long s)
{
    if (s < 0)
        snprintf(out, cap, "-");
    else if (s < 60)
        snprintf(out, cap, "%llds", s);
    else if (s < 3600)
        snprintf(out, cap, "%lldm%llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(out, cap, "%lldh%lldm", s / 3600, (s % 3600) / 60);
    else
        snprintf(out, cap, "%lldd%lldh", s / 86400, (s % 86400) / 3600);
}
