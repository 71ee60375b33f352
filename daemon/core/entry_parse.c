/* Discovery entries from JSON, decoded the way the reference's json-iterator decoder does
 * (see entry.h for the rules and the limits added here). */
#include <string.h>

#include "dmsg/entry.h"
#include "dmsg/error.h"

typedef struct reader {
    const char *p;
    const char *end;
    int depth;
} reader;

static void skip_ws(reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* The next significant byte, or 0 at the end of input. */
static char peek(reader *r)
{
    skip_ws(r);
    return r->p < r->end ? *r->p : '\0';
}

static int expect(reader *r, char c)
{
    if (peek(r) != c)
        return DMSG_EPROTO;
    r->p++;
    return 0;
}

static int literal(reader *r, const char *word)
{
    size_t n = strlen(word);
    skip_ws(r);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return DMSG_EPROTO;
    r->p += n;
    return 0;
}

/* Consumes `null` when it is next. */
static bool take_null(reader *r)
{
    return peek(r) == 'n' && literal(r, "null") == 0;
}

/* After an element: ',' (more follow) or the closing bracket (*closed). */
static int separator(reader *r, char close, bool *closed)
{
    char c = peek(r);
    if (c != ',' && c != close)
        return DMSG_EPROTO;
    r->p++;
    *closed = c == close;
    return 0;
}

static int enter(reader *r)
{
    return ++r->depth > DMSG_ENTRY_DEPTH_MAX ? DMSG_EDEPTH : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Strings */

/* Decoded string output: bytes past cap are counted, not stored. */
typedef struct text_out {
    char *buf;
    size_t cap; /* usable bytes, excluding the NUL */
    size_t len;
} text_out;

static void emit(text_out *t, const char *bytes, size_t n)
{
    if (t->buf && t->len <= t->cap && n <= t->cap - t->len)
        memcpy(t->buf + t->len, bytes, n);
    t->len += n;
}

static void emit_rune(text_out *t, uint32_t cp)
{
    char b[4];
    size_t n;
    if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 0xfffd; /* what Go's appendRune writes for a lone surrogate */
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | cp >> 6);
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | cp >> 12);
        b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | cp >> 18);
        b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
        b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    emit(t, b, n);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_u4(reader *r, uint32_t *cp)
{
    if (r->end - r->p < 4)
        return DMSG_EPROTO;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(r->p[i]);
        if (d < 0)
            return DMSG_EPROTO;
        v = v << 4 | (uint32_t)d;
    }
    r->p += 4;
    *cp = v;
    return 0;
}

static bool is_surrogate(uint32_t cp) { return cp >= 0xd800 && cp <= 0xdfff; }

/* The escape after a backslash (r->p is past the backslash). */
static int read_escape(reader *r, text_out *t);

/* \uXXXX, with json-iterator's surrogate handling: a surrogate combines only with an
 * immediately following \uXXXX that completes a pair; otherwise each half becomes U+FFFD. */
static int read_unicode_escape(reader *r, text_out *t)
{
    uint32_t cp;
    int rc = read_u4(r, &cp);
    if (rc < 0)
        return rc;
    if (!is_surrogate(cp)) {
        if (cp == 0)
            return DMSG_EPROTO; /* NUL cannot live in a C string */
        emit_rune(t, cp);
        return 0;
    }
    if (r->p >= r->end || *r->p != '\\') {
        emit_rune(t, 0xfffd);
        return 0;
    }
    r->p++;
    if (r->p >= r->end || *r->p != 'u') {
        emit_rune(t, 0xfffd);
        return read_escape(r, t);
    }
    r->p++;
    uint32_t low;
    if ((rc = read_u4(r, &low)) < 0)
        return rc;
    if (cp <= 0xdbff && low >= 0xdc00 && low <= 0xdfff) {
        emit_rune(t, 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00));
        return 0;
    }
    if (low == 0)
        return DMSG_EPROTO;
    emit_rune(t, 0xfffd);
    emit_rune(t, low);
    return 0;
}

static int read_escape(reader *r, text_out *t)
{
    if (r->p >= r->end)
        return DMSG_EPROTO;
    char c = *r->p++;
    switch (c) {
    case '"': case '\\': case '/': emit(t, &c, 1); return 0;
    case 'b': emit(t, "\b", 1); return 0;
    case 'f': emit(t, "\f", 1); return 0;
    case 'n': emit(t, "\n", 1); return 0;
    case 'r': emit(t, "\r", 1); return 0;
    case 't': emit(t, "\t", 1); return 0;
    case 'u': return read_unicode_escape(r, t);
    default: return DMSG_EPROTO;
    }
}

/* Length of the well-formed UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
    size_t n;
    uint32_t min, cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2, min = 0x80, cp = p[0] & 0x1fu;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3, min = 0x800, cp = p[0] & 0x0fu;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4, min = 0x10000, cp = p[0] & 0x07u;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || is_surrogate(cp))
        return 0;
    return n;
}

/* A JSON string at the reader. Decoded into t (t->buf may be NULL to skip). */
static int read_string(reader *r, text_out *t)
{
    int rc = expect(r, '"');
    if (rc < 0)
        return rc;
    while (r->p < r->end) {
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            r->p++;
            return 0;
        }
        if (c == '\\') {
            r->p++;
            if ((rc = read_escape(r, t)) < 0)
                return rc;
        } else if (c < 0x20) {
            return DMSG_EPROTO;
        } else if (c < 0x80) {
            emit(t, r->p++, 1);
        } else {
            size_t n = utf8_sequence((const unsigned char *)r->p, (const unsigned char *)r->end);
            if (n == 0)
                return DMSG_EPROTO;
            emit(t, r->p, n);
            r->p += n;
        }
    }
    return DMSG_EPROTO;
}

/* A string into a fixed text member; `null` gives "" (json-iterator's ReadString). */
static int read_text(reader *r, char field[DMSG_ENTRY_TEXT_MAX + 1])
{
    if (take_null(r)) {
        field[0] = '\0';
        return 0;
    }
    char tmp[DMSG_ENTRY_TEXT_MAX + 1];
    text_out t = {tmp, DMSG_ENTRY_TEXT_MAX, 0};
    int rc = read_string(r, &t);
    if (rc < 0)
        return rc;
    if (t.len > DMSG_ENTRY_TEXT_MAX)
        return DMSG_ETOOBIG;
    memcpy(field, tmp, t.len);
    field[t.len] = '\0';
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Numbers: JSON integers only (no fraction, no exponent), within the Go type's range.
 * `null` leaves the value unchanged, as json-iterator's integer decoders do. */

static int read_digits(reader *r, uint64_t limit, uint64_t *out)
{
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return DMSG_EPROTO;
    uint64_t v = 0;
    if (*r->p == '0') {
        r->p++;
    } else {
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
            unsigned d = (unsigned)(*r->p - '0');
            if (v > (limit - d) / 10)
                return DMSG_EPROTO;
            v = v * 10 + d;
            r->p++;
        }
    }
    if (r->p < r->end && (*r->p == '.' || *r->p == 'e' || *r->p == 'E' ||
                          (*r->p >= '0' && *r->p <= '9')))
        return DMSG_EPROTO;
    *out = v;
    return 0;
}

static int read_u64(reader *r, uint64_t *out)
{
    if (take_null(r))
        return 0;
    skip_ws(r);
    return read_digits(r, UINT64_MAX, out);
}

static int read_i64(reader *r, int64_t *out)
{
    if (take_null(r))
        return 0;
    skip_ws(r);
    bool negative = r->p < r->end && *r->p == '-';
    if (negative)
        r->p++;
    uint64_t mag;
    int rc = read_digits(r, negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, &mag);
    if (rc < 0)
        return rc;
    if (!negative)
        *out = (int64_t)mag;
    else if (mag == (uint64_t)INT64_MAX + 1)
        *out = INT64_MIN;
    else
        *out = -(int64_t)mag;
    return 0;
}

static int read_bool(reader *r, bool *out)
{
    if (take_null(r))
        return 0;
    char c = peek(r);
    if (c == 't' && literal(r, "true") == 0) {
        *out = true;
        return 0;
    }
    if (c == 'f' && literal(r, "false") == 0) {
        *out = false;
        return 0;
    }
    return DMSG_EPROTO;
}

/* ---------------------------------------------------------------------------------------------
 * Any value, skipped (members the struct does not know). */

static int skip_value(reader *r);

static int skip_number(reader *r)
{
    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p >= r->end || *r->p < '0' || *r->p > '9')
        return DMSG_EPROTO;
    const char *start;
    if (*r->p == '0')
        r->p++;
    else
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        start = r->p;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
        if (r->p == start)
            return DMSG_EPROTO;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        start = r->p;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
            r->p++;
        if (r->p == start)
            return DMSG_EPROTO;
    }
    return 0;
}

static int skip_container(reader *r, char close, bool keyed)
{
    int rc = enter(r);
    if (rc < 0)
        return rc;
    r->p++; /* the opening bracket */
    if (peek(r) == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        if (keyed) {
            text_out none = {NULL, 0, 0};
            if ((rc = read_string(r, &none)) < 0 || (rc = expect(r, ':')) < 0)
                return rc;
        }
        bool closed;
        if ((rc = skip_value(r)) < 0 || (rc = separator(r, close, &closed)) < 0)
            return rc;
        if (closed)
            break;
    }
    r->depth--;
    return 0;
}

static int skip_value(reader *r)
{
    text_out none = {NULL, 0, 0};
    switch (peek(r)) {
    case '"': return read_string(r, &none);
    case '{': return skip_container(r, '}', true);
    case '[': return skip_container(r, ']', false);
    case 't': return literal(r, "true");
    case 'f': return literal(r, "false");
    case 'n': return literal(r, "null");
    default: return skip_number(r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Objects */

#define KEY_MAX 32 /* longer than any member name we know */

/* Calls member(r, name, ctx) for each member, name decoded and ASCII-lowercased ("" when it is
 * too long to be one we know). The object must be next; `null` is no object. *seen says which. */
typedef int (*member_fn)(reader *r, const char *name, void *ctx);

static int read_object(reader *r, member_fn member, void *ctx, bool *seen)
{
    *seen = false;
    if (take_null(r))
        return 0;
    int rc = expect(r, '{');
    if (rc < 0)
        return rc;
    *seen = true;
    if ((rc = enter(r)) < 0)
        return rc;
    if (peek(r) == '}') {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        char name[KEY_MAX + 1];
        text_out t = {name, KEY_MAX, 0};
        if ((rc = read_string(r, &t)) < 0 || (rc = expect(r, ':')) < 0)
            return rc;
        size_t n = t.len <= KEY_MAX ? t.len : 0;
        name[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (name[i] >= 'A' && name[i] <= 'Z')
                name[i] = (char)(name[i] - 'A' + 'a');
        bool closed;
        if ((rc = member(r, name, ctx)) < 0 || (rc = separator(r, '}', &closed)) < 0)
            return rc;
        if (closed)
            break;
    }
    r->depth--;
    return 0;
}

int dmsg_entry_pk_parse(dmsg_pk *pk, const char *text, size_t len)
{
    size_t zeros = 0;
    while (zeros < len && text[zeros] == '0')
        zeros++;
    if (zeros == len) {
        memset(pk, 0, sizeof *pk);
        return 0;
    }
    int rc = dmsg_pk_from_hex(pk, text, len);
    if (rc < 0)
        return DMSG_EHEX;
    return dmsg_pk_validate(pk);
}

/* A key member: decoded as text (`null` is ""), then as dmsg_entry_pk_parse reads it. */
static int read_pk(reader *r, dmsg_pk *pk)
{
    char text[DMSG_ENTRY_TEXT_MAX + 1];
    int rc = read_text(r, text);
    if (rc == DMSG_ETOOBIG)
        return DMSG_EHEX; /* no key is that long */
    if (rc < 0)
        return rc;
    return dmsg_entry_pk_parse(pk, text, strlen(text));
}

static int read_delegated(reader *r, dmsg_entry_client *c)
{
    if (take_null(r)) {
        c->n_delegated = 0;
        c->delegated_null = true;
        return 0;
    }
    int rc = expect(r, '[');
    if (rc < 0)
        return rc;
    if ((rc = enter(r)) < 0)
        return rc;
    c->n_delegated = 0;
    c->delegated_null = false;
    if (peek(r) == ']') {
        r->p++;
        r->depth--;
        return 0;
    }
    for (;;) {
        if (c->n_delegated == DMSG_ENTRY_DELEGATED_MAX)
            return DMSG_ETOOBIG;
        if ((rc = read_pk(r, &c->delegated[c->n_delegated])) < 0)
            return rc;
        c->n_delegated++;
        bool closed;
        if ((rc = separator(r, ']', &closed)) < 0)
            return rc;
        if (closed)
            break;
    }
    r->depth--;
    return 0;
}

static int client_member(reader *r, const char *name, void *ctx)
{
    dmsg_entry_client *c = ctx;
    if (strcmp(name, "delegated_servers") == 0)
        return read_delegated(r, c);
    return skip_value(r);
}

static int server_member(reader *r, const char *name, void *ctx)
{
    dmsg_entry_server *s = ctx;
    static const struct {
        const char *name;
        size_t offset;
    } texts[] = {
        {"address", offsetof(dmsg_entry_server, address)},
        {"address_v6", offsetof(dmsg_entry_server, address_v6)},
        {"address_udp", offsetof(dmsg_entry_server, address_udp)},
        {"address_udp_v6", offsetof(dmsg_entry_server, address_udp_v6)},
        {"address_ws", offsetof(dmsg_entry_server, address_ws)},
        {"servertype", offsetof(dmsg_entry_server, server_type)},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (strcmp(name, texts[i].name) == 0)
            return read_text(r, (char *)s + texts[i].offset);
    if (strcmp(name, "availablesessions") == 0)
        return read_i64(r, &s->available_sessions);
    if (strcmp(name, "dht_bootstrap") == 0)
        return read_bool(r, &s->dht_bootstrap);
    return skip_value(r);
}

/* A pointer member in Go: `null` makes it nil, an object fills the existing part (a duplicate
 * member merges into the first, as json-iterator does) or a fresh one. */
static int read_client(reader *r, dmsg_entry *e)
{
    if (!e->has_client) {
        memset(&e->client, 0, sizeof e->client);
        e->client.delegated_null = true; /* a fresh Go Client has a nil list */
    }
    bool seen;
    int rc = read_object(r, client_member, &e->client, &seen);
    e->has_client = seen;
    return rc;
}

static int read_server(reader *r, dmsg_entry *e)
{
    if (!e->has_server)
        memset(&e->server, 0, sizeof e->server);
    bool seen;
    int rc = read_object(r, server_member, &e->server, &seen);
    e->has_server = seen;
    return rc;
}

static int entry_member(reader *r, const char *name, void *ctx)
{
    dmsg_entry *e = ctx;
    if (strcmp(name, "version") == 0)
        return read_text(r, e->version);
    if (strcmp(name, "sequence") == 0)
        return read_u64(r, &e->sequence);
    if (strcmp(name, "timestamp") == 0)
        return read_i64(r, &e->timestamp);
    if (strcmp(name, "static") == 0)
        return read_pk(r, &e->static_pk);
    if (strcmp(name, "client") == 0)
        return read_client(r, e);
    if (strcmp(name, "client_type") == 0)
        return read_text(r, e->client_type);
    if (strcmp(name, "server") == 0)
        return read_server(r, e);
    if (strcmp(name, "signature") == 0)
        return read_text(r, e->signature);
    if (strcmp(name, "protocol") == 0)
        return read_text(r, e->protocol);
    return skip_value(r);
}

static int read_entry(reader *r, dmsg_entry *e)
{
    memset(e, 0, sizeof *e);
    bool seen;
    return read_object(r, entry_member, e, &seen);
}

int dmsg_entry_parse(dmsg_entry *e, const char *json, size_t len)
{
    memset(e, 0, sizeof *e);
    if (len > DMSG_ENTRY_JSON_MAX)
        return DMSG_ETOOBIG;
    reader r = {json, json + len, 0};
    return read_entry(&r, e);
}

/* ---------------------------------------------------------------------------------------------
 * Arrays of entries */

int dmsg_entry_iter_init(dmsg_entry_iter *it, const char *json, size_t len)
{
    reader r = {json, json + len, 0};
    it->json = json;
    it->len = len;
    it->done = true;
    if (take_null(&r)) {
        it->pos = (size_t)(r.p - json);
        return 0;
    }
    if (expect(&r, '[') < 0)
        return DMSG_EPROTO;
    it->done = peek(&r) == ']';
    if (it->done)
        r.p++;
    it->pos = (size_t)(r.p - json);
    return 0;
}

int dmsg_entry_iter_next(dmsg_entry_iter *it, dmsg_entry *e)
{
    if (it->done)
        return it->pos <= it->len ? 0 : DMSG_EPROTO;
    reader r = {it->json + it->pos, it->json + it->len, 1};
    it->done = true;
    it->pos = it->len + 1; /* poisoned until this element parses */
    if (peek(&r) != '{')
        return DMSG_EPROTO;
    bool closed;
    int rc = read_entry(&r, e);
    if (rc < 0 || (rc = separator(&r, ']', &closed)) < 0)
        return rc;
    it->done = closed;
    it->pos = (size_t)(r.p - it->json);
    return 1;
}
