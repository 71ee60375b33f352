/* What the noun files share: reading dmsgd's documents, printing views, following pages. */
#include "command.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "util.h"

json_t *ctl_parse_body(struct ctl *ctl, const char *body, size_t len, const char *what)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body != NULL ? body : "", len, 0, &jerr);

    if (!json_is_object(doc)) {
        fprintf(ctl->err,
                "dmsgctl: dmsgd's answer for %s is not the JSON object the API describes (%s) "
                "— dmsgctl and dmsgd may be of different versions: compare `dmsgctl --version` "
                "with the version `dmsgctl info` shows\n",
                what, doc == NULL ? jerr.text : "not an object");
        json_decref(doc);
        return NULL;
    }
    return doc;
}

int ctl_bad_document(struct ctl *ctl, const char *what, const char *member)
{
    fprintf(ctl->err,
            "dmsgctl: dmsgd's answer for %s lacks `%s' or has it of another type — dmsgctl "
            "and dmsgd may be of different versions: compare `dmsgctl --version` with "
            "`dmsgctl info`\n",
            what, member);
    return CTL_EXIT_REFUSED;
}

int ctl_emit(struct ctl *ctl, struct view *v)
{
    int rc = output_emit(ctl->out, v);

    view_free(v);
    return rc == 0 ? CTL_EXIT_OK : CTL_EXIT_OUTPUT;
}

int ctl_call_and_render(struct ctl *ctl, const char *method, const char *path,
                        const char *json_body, ctl_render_fn *render)
{
    struct http_response resp;
    int rc = http_call(ctl, method, path, json_body, &resp);

    if (rc != CTL_EXIT_OK)
        return rc;
    rc = render(ctl, resp.body.s, resp.body.len);
    http_response_free(&resp);
    return rc;
}

int ctl_get_pk_and_render(struct ctl *ctl, const char *prefix, ctl_render_fn *render)
{
    char *path = ctl_path_pk(prefix, ctl->args.pk);
    int rc = ctl_call_and_render(ctl, "GET", path, NULL, render);

    free(path);
    return rc;
}

int ctl_delete_pk(struct ctl *ctl, const char *prefix)
{
    struct http_response resp;
    char *path = ctl_path_pk(prefix, ctl->args.pk);
    int rc = http_call(ctl, "DELETE", path, NULL, &resp);

    free(path);
    if (rc != CTL_EXIT_OK)
        return rc;
    http_response_free(&resp);
    return CTL_EXIT_OK;
}

int ctl_render_list(struct ctl *ctl, const char *body, size_t len, const struct ctl_list *l)
{
    json_t *doc = ctl_parse_body(ctl, body, len, l->what);
    json_t *list, *item;
    struct view *v;
    struct view_table *t;
    long long total;
    size_t i;

    if (doc == NULL)
        return CTL_EXIT_REFUSED;
    if ((list = jarr(doc, l->array_key)) == NULL) {
        json_decref(doc);
        return ctl_bad_document(ctl, l->what, l->array_key);
    }
    v = view_new();
    view_set_raw(v, body, len, RAW_JSON);
    t = view_add_table(v, l->table_name, l->cols, l->ncols, l->empty);
    json_array_foreach(list, i, item)
        l->row(t, item);
    if (l->total_noun != NULL && jint(doc, "total", &total) &&
        (size_t)total > json_array_size(list))
        view_message(v, "%zu of %lld %s shown", json_array_size(list), total, l->total_noun);
    json_decref(doc);
    return ctl_emit(ctl, v);
}

void json_int_cell(struct view_table *t, const json_t *obj, const char *key)
{
    long long n;
    bool has = jint(obj, key, &n);

    cell_int(t, has, n);
}

void json_duration_cell(struct view_table *t, const json_t *obj, const char *key)
{
    long long n;
    bool has = jint(obj, key, &n);

    cell_duration(t, has, n);
}

void json_bytes_cell(struct view_table *t, const json_t *obj, const char *key)
{
    long long n;
    bool has = jint(obj, key, &n);

    cell_bytes(t, has, n);
}

void json_bool_cell(struct view_table *t, const json_t *obj, const char *key)
{
    bool b = false; /* read (not used) even when absent: keeps the load defined */
    bool has = jbool(obj, key, &b);

    cell_bool(t, has, b);
}

char *ctl_path_pk(const char *prefix, const char *pk)
{
    return xasprintf("%s/%s", prefix, pk);
}

/* Appends "&name=value" (or "?name=value" first) to a path being built. */
void ctl_query(struct strbuf *path, const char *name, const char *value)
{
    sb_printf(path, "%c%s=", strchr(path->s, '?') != NULL ? '&' : '?', name);
    sb_query_escape(path, value);
}

int ctl_get_paged(struct ctl *ctl, const struct ctl_paging *pg, char **body, size_t *len)
{
    json_t *joined = NULL, *items = NULL;
    char cursor[128] = "";
    long long remaining = pg->want > 0 ? pg->want : -1;
    size_t pages = 0;
    int rc = CTL_EXIT_OK;

    *body = NULL;
    *len = 0;
    for (;;) {
        struct strbuf path = {0};
        struct http_response resp;
        long long page = remaining > 0 && remaining < 1000 ? remaining : 1000;
        json_t *doc, *arr, *next;
        char num[32];

        sb_printf(&path, "%s", pg->path);
        snprintf(num, sizeof num, "%lld", page);
        ctl_query(&path, "limit", num);
        if (cursor[0] != '\0')
            ctl_query(&path, pg->cursor_param, cursor);
        rc = http_call(ctl, "GET", path.s, NULL, &resp);
        sb_free(&path);
        if (rc != CTL_EXIT_OK)
            break;
        doc = ctl_parse_body(ctl, resp.body.s, resp.body.len, pg->path);
        if (doc == NULL) {
            http_response_free(&resp);
            rc = CTL_EXIT_REFUSED;
            break;
        }
        if (pages == 0 && (json_is_null(json_object_get(doc, pg->next_key)) ||
                           remaining == page)) {
            /* One page is all there is: hand it on unchanged. */
            json_decref(doc);
            *body = resp.body.s;
            *len = resp.body.len;
            resp.body.s = NULL;
            http_response_free(&resp);
            return CTL_EXIT_OK;
        }
        http_response_free(&resp);
        arr = jarr(doc, pg->array_key);
        next = json_object_get(doc, pg->next_key);
        if (arr == NULL || next == NULL) {
            rc = ctl_bad_document(ctl, pg->path, arr == NULL ? pg->array_key : pg->next_key);
            json_decref(doc);
            break;
        }
        if (joined == NULL) {
            joined = doc;
            items = arr;
        } else {
            json_array_extend(items, arr);
            json_object_set(joined, pg->next_key, next);
            json_decref(doc);
        }
        pages++;
        if (remaining > 0)
            remaining -= (long long)json_array_size(arr);
        if (json_is_null(next) || remaining == 0 || json_array_size(arr) == 0)
            break;
        if (json_is_string(next))
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        else if (json_is_integer(next))
            snprintf(cursor, sizeof cursor, "%lld", (long long)json_integer_value(next));
        else {
            rc = ctl_bad_document(ctl, pg->path, pg->next_key);
            break;
        }
    }
    if (rc == CTL_EXIT_OK && joined != NULL) {
        *body = json_dumps(joined, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (*body == NULL)
            fatal_bug("cannot encode the joined pages");
        *len = strlen(*body);
    }
    json_decref(joined);
    return rc;
}

int ctl_get_paged_and_render(struct ctl *ctl, const struct ctl_paging *pg,
                             ctl_render_fn *render)
{
    char *body;
    size_t len;
    int rc = ctl_get_paged(ctl, pg, &body, &len);

    if (rc != CTL_EXIT_OK)
        return rc;
    rc = render(ctl, body, len);
    free(body);
    return rc;
}

void ctl_now_rfc3339(char *out, size_t cap)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
