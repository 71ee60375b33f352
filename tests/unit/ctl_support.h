/* Helpers for the dmsgctl tests (test_ctl_*.c): fixture documents that follow
 * api/openapi.yaml (tests/fixtures/ctl, checked against the contract by check_fixtures.py),
 * captured output streams, and a struct ctl wired to them. */
#ifndef DMSG_TEST_CTL_SUPPORT_H
#define DMSG_TEST_CTL_SUPPORT_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsgctl.h"
#include "output.h"

#define CTL_UNUSED __attribute__((unused))

/* The whole fixture file (NUL-terminated, caller frees); aborts the test when missing. */
static CTL_UNUSED char *fixture(const char *name, size_t *len)
{
    char path[1024];
    FILE *f;
    char *buf;
    long n;

    snprintf(path, sizeof path, "%s/%s", DMSGCTL_FIXTURE_DIR, name);
    f = fopen(path, "rb");
    cr_assert_not_null(f, "fixture %s is missing", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len != NULL)
        *len = (size_t)n;
    return buf;
}

static CTL_UNUSED json_t *fixture_json(const char *name)
{
    char *text = fixture(name, NULL);
    json_t *doc = json_loads(text, 0, NULL);

    cr_assert_not_null(doc, "fixture %s is not JSON", name);
    free(text);
    return doc;
}

/* An in-memory FILE whose text can be read back. */
struct capture {
    FILE *f;
    char *buf;
    size_t len;
};

static CTL_UNUSED void cap_open(struct capture *c)
{
    memset(c, 0, sizeof *c);
    c->f = open_memstream(&c->buf, &c->len);
    cr_assert_not_null(c->f);
}

static CTL_UNUSED const char *cap_text(struct capture *c)
{
    fflush(c->f);
    return c->buf != NULL ? c->buf : "";
}

static CTL_UNUSED void cap_close(struct capture *c)
{
    fclose(c->f);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

/* A ctl printing in mode to out, messages to err (no connection: renderers only). */
static CTL_UNUSED void ctl_setup(struct ctl *ctl, enum output_mode mode, struct capture *out,
                                 struct capture *err)
{
    memset(ctl, 0, sizeof *ctl);
    cap_open(out);
    cap_open(err);
    ctl->args.mode = mode;
    ctl->args.timeout_ms = 2000;
    ctl->out = output_new(mode, out->f);
    ctl->err = err->f;
}

static CTL_UNUSED void ctl_teardown(struct ctl *ctl, struct capture *out, struct capture *err)
{
    output_free(ctl->out);
    cap_close(out);
    cap_close(err);
}

/* Splits text into lines (the array and the copy are freed by lines_free). */
struct lines {
    char **v;
    size_t n;
    char *copy;
};

static CTL_UNUSED void lines_split(struct lines *l, const char *text)
{
    char *p;

    memset(l, 0, sizeof *l);
    l->copy = strdup(text);
    l->v = calloc(strlen(text) + 1, sizeof *l->v);
    for (p = l->copy; *p != '\0';) {
        char *nl = strchr(p, '\n');
        l->v[l->n++] = p;
        if (nl == NULL)
            break;
        *nl = '\0';
        p = nl + 1;
    }
}

static CTL_UNUSED void lines_free(struct lines *l)
{
    free(l->v);
    free(l->copy);
}

/* The tab-separated fields of a plain line joined from JSON values in order: strings as
 * they are ("" and null as "(none)"), integers in decimal, booleans true/false. */
static CTL_UNUSED void plain_expect(char *out, size_t cap, json_t *const *values, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(out);
        const json_t *v = values[i];
        char field[512];
        if (v == NULL || json_is_null(v) ||
            (json_is_string(v) && json_string_length(v) == 0))
            snprintf(field, sizeof field, "(none)");
        else if (json_is_string(v))
            snprintf(field, sizeof field, "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(field, sizeof field, "%lld", (long long)json_integer_value(v));
        else if (json_is_boolean(v))
            snprintf(field, sizeof field, "%s", json_is_true(v) ? "true" : "false");
        else
            snprintf(field, sizeof field, "?");
        snprintf(out + used, cap - used, "%s%s", i > 0 ? "\t" : "", field);
    }
}

#endif
