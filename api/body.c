/* Strict JSON request bodies; see body.h. */
#include "body.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int body_fail(struct api_body_error *err, enum api_problem p, const char *field,
                     const char *detail)
{
    err->problem = p;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    snprintf(err->detail, sizeof err->detail, "%s", detail);
    return -1;
}

bool api_is_json_content_type(const char *ct)
{
    static const char want[] = "application/json";
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return false;
    ct += sizeof want - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

static const char *type_name(enum api_field_type t)
{
    switch (t) {
    case API_FIELD_STRING: return "a string";
    case API_FIELD_BOOL: return "true or false";
    case API_FIELD_INTEGER: return "an integer";
    }
    return "?";
}

static bool type_matches(const json_t *v, enum api_field_type t)
{
    switch (t) {
    case API_FIELD_STRING: return json_is_string(v);
    case API_FIELD_BOOL: return json_is_boolean(v);
    case API_FIELD_INTEGER: return json_is_integer(v);
    }
    return false;
}

static const struct api_field *find_field(const struct api_field *fields, size_t n,
                                          const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0)
            return &fields[i];
    return NULL;
}

/* Member names are client bytes: cut them to something printable for the detail. */
static void printable_name(const char *name, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; name[i] && j + 1 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[j] = '\0';
}

static int check_members(json_t *obj, const struct api_field *fields, size_t n,
                         struct api_body_error *err)
{
    const char *name;
    json_t *v;
    char shown[64];
    json_object_foreach(obj, name, v) {
        const struct api_field *f = find_field(fields, n, name);
        printable_name(name, shown, sizeof shown);
        char detail[200];
        if (!f) {
            snprintf(detail, sizeof detail,
                     "member \"%s\" is not defined for this request; remove it", shown);
            return body_fail(err, API_P_UNKNOWN_FIELD, shown, detail);
        }
        if (!type_matches(v, f->type)) {
            snprintf(detail, sizeof detail, "member \"%s\" must be %s", f->name,
                     type_name(f->type));
            return body_fail(err, API_P_INVALID_FIELD, f->name, detail);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (fields[i].required && !json_object_get(obj, fields[i].name)) {
            char detail[200];
            snprintf(detail, sizeof detail, "member \"%s\" is required", fields[i].name);
            return body_fail(err, API_P_MISSING_FIELD, fields[i].name, detail);
        }
    }
    return 0;
}

int api_body_parse(const char *content_type, const char *body, size_t len,
                   const struct api_field *fields, size_t n_fields, json_t **out,
                   struct api_body_error *err)
{
    memset(err, 0, sizeof *err);
    *out = NULL;
    if (!api_is_json_content_type(content_type))
        return body_fail(err, API_P_UNSUPPORTED_MEDIA_TYPE, NULL,
                         "send the body as Content-Type: application/json");
    if (len == 0)
        return body_fail(err, API_P_MALFORMED_JSON, NULL,
                         "the body is empty; send one JSON object");
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char detail[220];
        snprintf(detail, sizeof detail, "not valid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        return body_fail(err, API_P_MALFORMED_JSON, NULL, detail);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return body_fail(err, API_P_MALFORMED_JSON, NULL, "the body must be one JSON object");
    }
    if (check_members(root, fields, n_fields, err) != 0) {
        json_decref(root);
        return -1;
    }
    *out = root;
    return 0;
}
