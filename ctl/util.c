/* See util.h. */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

static _Noreturn void out_of_memory(void)
{
    fputs("dmsgctl: out of memory\n", stderr);
    exit(1);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n != 0 ? n : 1);

    if (p == NULL)
        out_of_memory();
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n != 0 ? n : 1, size != 0 ? size : 1);

    if (p == NULL)
        out_of_memory();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n != 0 ? n : 1);

    if (q == NULL)
        out_of_memory();
    return q;
}

char *xstrdup(const char *s)
{
    char *p = strdup(s);

    if (p == NULL)
        out_of_memory();
    return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    char *s;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        fatal_bug("bad format %s", fmt);
    s = xmalloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    return s;
}

void fatal_bug(const char *fmt, ...)
{
    va_list ap;

    fputs("dmsgctl: internal error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (please report this bug)\n", stderr);
    abort();
}

/* ---- buffers ---- */

void sb_append(struct strbuf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 256 : b->cap;
        while (cap < b->len + len + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    if (len > 0)
        memcpy(b->s + b->len, data, len);
    b->len += len;
    b->s[b->len] = '\0';
}

void sb_printf(struct strbuf *b, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = xvasprintf(fmt, ap);
    va_end(ap);
    sb_append(b, s, strlen(s));
    free(s);
}

void sb_query_escape(struct strbuf *b, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            sb_append(b, p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_append(b, esc, 3);
        }
    }
}

void sb_free(struct strbuf *b)
{
    free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}

bool copy_text(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src);
    bool fits = len < cap;

    if (cap == 0)
        return false;
    if (!fits)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return fits;
}

/* ---- operator input ---- */

bool check_public_key(const char *text, char out[DMSG_PK_HEX_LEN + 1], char *why, size_t cap)
{
    size_t len = strlen(text);
    dmsg_pk pk;

    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)text[i])) {
            snprintf(why, cap,
                     "`%s' is not a public key: character %zu (`%c') is not a hex digit; a key "
                     "is 66 hex characters such as 02c2a5f1…",
                     text, i + 1, isprint((unsigned char)text[i]) ? text[i] : '?');
            return false;
        }
    }
    if (len != DMSG_PK_HEX_LEN) {
        snprintf(why, cap,
                 "`%s' is not a public key: it has %zu hex characters, a key has exactly 66",
                 text, len);
        return false;
    }
    if (dmsg_pk_from_hex(&pk, text, len) != 0 || dmsg_pk_validate(&pk) != 0) {
        snprintf(why, cap,
                 "`%s' is not a public key: not a point on the secp256k1 curve (a compressed "
                 "key starts with 02 or 03); check that it was copied whole",
                 text);
        return false;
    }
    dmsg_pk_to_hex(&pk, out);
    return true;
}

static bool host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.';
}

bool check_peer_address(const char *text, char *why, size_t cap)
{
    size_t len = strlen(text);
    const char *colon;
    long long port;

    if (len < 3 || len > 261) {
        snprintf(why, cap, "`%s' is not HOST:PORT: it must be 3 to 261 characters long", text);
        return false;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || close == text + 1) {
            snprintf(why, cap,
                     "`%s' is not HOST:PORT: an IPv6 host goes in brackets, then the port: "
                     "[2001:db8::1]:8081",
                     text);
            return false;
        }
        for (const char *c = text + 1; c < close; c++) {
            if (!isxdigit((unsigned char)*c) && *c != ':' && *c != '.') {
                snprintf(why, cap, "`%s' is not HOST:PORT: `%.*s' is not an IPv6 address", text,
                         (int)(close - text - 1), text + 1);
                return false;
            }
        }
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (colon == NULL) {
            snprintf(why, cap, "`%s' is not HOST:PORT: the port is missing (e.g. %s:8081)", text,
                     text);
            return false;
        }
        if (memchr(text, ':', (size_t)(colon - text)) != NULL) {
            snprintf(why, cap,
                     "`%s' is not HOST:PORT: put an IPv6 host in brackets, e.g. [2001:db8::1]:8081",
                     text);
            return false;
        }
        if (colon == text) {
            snprintf(why, cap, "`%s' is not HOST:PORT: the host is missing", text);
            return false;
        }
        for (const char *c = text; c < colon; c++) {
            if (!host_char(*c)) {
                snprintf(why, cap,
                         "`%s' is not HOST:PORT: `%c' cannot appear in a host name (letters, "
                         "digits, `-' and `.' only)",
                         text, isprint((unsigned char)*c) ? *c : '?');
                return false;
            }
        }
    }
    if (!parse_integer(colon + 1, 1, 65535, &port)) {
        snprintf(why, cap, "`%s' is not HOST:PORT: the port `%s' must be a number from 1 to 65535",
                 text, colon + 1);
        return false;
    }
    return true;
}

bool check_note(const char *text, char *why, size_t cap)
{
    size_t chars = 0;

    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            snprintf(why, cap, "the note may not contain control characters (tabs, line breaks)");
            return false;
        }
        chars += (*p & 0xc0) != 0x80;
    }
    if (chars > 256) {
        snprintf(why, cap, "the note has %zu characters; at most 256 are kept", chars);
        return false;
    }
    {
        json_t *probe = json_string(text); /* NULL unless valid UTF-8 */
        if (probe == NULL) {
            snprintf(why, cap, "the note is not valid UTF-8 text");
            return false;
        }
        json_decref(probe);
    }
    return true;
}

bool parse_integer(const char *text, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (text[0] == '\0' || !(isdigit((unsigned char)text[0]) || text[0] == '-'))
        return false;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool parse_seconds(const char *text, double min, double max, double *out)
{
    char *end;
    double v;

    if (text[0] == '\0' || !(isdigit((unsigned char)text[0]) || text[0] == '.'))
        return false;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool parse_api_duration(const char *text, long long *seconds)
{
    size_t digits = strspn(text, "0123456789");
    long long n, unit = 1;
    char *end;

    if (digits == 0 || digits > 9 || text[0] == '0')
        return false;
    switch (text[digits]) {
    case '\0': case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return false;
    }
    if (text[digits] != '\0' && text[digits + 1] != '\0')
        return false;
    n = strtoll(text, &end, 10);
    if (n * unit > 366LL * 86400)
        return false;
    *seconds = n * unit;
    return true;
}

/* ---- JSON ---- */

const char *jstr(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

bool jint(const json_t *obj, const char *key, long long *out)
{
    json_t *v = json_object_get(obj, key);

    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        *out = (long long)json_real_value(v);
        return true;
    }
    return false;
}

bool jbool(const json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);

    if (!json_is_boolean(v))
        return false;
    *out = json_is_true(v);
    return true;
}

json_t *jobj(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_object(v) ? v : NULL;
}

json_t *jarr(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);

    return json_is_array(v) ? v : NULL;
}
