/* Discovery entries: building them, their canonical JSON text, signing and verifying. */
#include "dmsg/entry.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"

void dmsg_entry_init(dmsg_entry *e, const dmsg_pk *pk, uint64_t sequence, int64_t timestamp_ns)
{
    memset(e, 0, sizeof *e);
    memcpy(e->version, DMSG_ENTRY_VERSION, sizeof DMSG_ENTRY_VERSION);
    e->sequence = sequence;
    e->timestamp = timestamp_ns;
    e->static_pk = *pk;
}

int dmsg_entry_set_text(char field[DMSG_ENTRY_TEXT_MAX + 1], const char *text)
{
    size_t len = strlen(text);
    if (len > DMSG_ENTRY_TEXT_MAX)
        return DMSG_ETOOBIG;
    memmove(field, text, len + 1);
    return 0;
}

int dmsg_entry_set_server(dmsg_entry *e, const char *address, int64_t available_sessions)
{
    dmsg_entry_server server;
    memset(&server, 0, sizeof server);
    int rc = dmsg_entry_set_text(server.address, address);
    if (rc < 0)
        return rc;
    server.available_sessions = available_sessions;
    e->server = server;
    e->has_server = true;
    return 0;
}

int dmsg_entry_set_client(dmsg_entry *e, const dmsg_pk *delegated, size_t n)
{
    if (n > DMSG_ENTRY_DELEGATED_MAX)
        return DMSG_ETOOBIG;
    e->has_client = true;
    e->client.delegated_null = false;
    e->client.n_delegated = n;
    if (n > 0)
        memcpy(e->client.delegated, delegated, n * sizeof *delegated);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Canonical writer. Output beyond cap is counted, not stored, so one pass also sizes. */

typedef struct sink {
    char *out;
    size_t cap;
    size_t len;
} sink;

static void put(sink *s, const char *bytes, size_t n)
{
    if (s->out && s->len <= s->cap && n <= s->cap - s->len)
        memcpy(s->out + s->len, bytes, n);
    s->len += n;
}

static void put_str(sink *s, const char *text)
{
    put(s, text, strlen(text));
}

/* json-iterator without HTML escaping: only '"', '\\' and bytes below 0x20 are escaped; \n \r
 * \t by name, the rest as \u00xx in lowercase. Everything else, non-ASCII included, is raw. */
static void put_quoted(sink *s, const char *text)
{
    static const char hex[] = "0123456789abcdef";
    put(s, "\"", 1);
    const char *run = text;
    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(s, run, (size_t)(p - run));
        run = p + 1;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t n = 2;
        if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        put(s, esc, n);
    }
    put(s, run, strlen(run));
    put(s, "\"", 1);
}

static void put_member(sink *s, const char *name)
{
    put(s, ",\"", 2);
    put_str(s, name);
    put(s, "\":", 2);
}

static void put_text_member(sink *s, const char *name, const char *text)
{
    put_member(s, name);
    put_quoted(s, text);
}

static void put_optional_text(sink *s, const char *name, const char *text)
{
    if (text[0])
        put_text_member(s, name, text);
}

static void put_pk(sink *s, const dmsg_pk *pk)
{
    char hex[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(pk, hex);
    put(s, "\"", 1);
    put(s, hex, DMSG_PK_HEX_LEN);
    put(s, "\"", 1);
}

static void put_i64(sink *s, int64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRId64, v);
    put(s, num, (size_t)n);
}

static void put_u64(sink *s, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%" PRIu64, v);
    put(s, num, (size_t)n);
}

static void put_client(sink *s, const dmsg_entry_client *c)
{
    put_member(s, "client");
    put_str(s, "{\"delegated_servers\":");
    if (c->n_delegated == 0 && c->delegated_null) {
        put_str(s, "null}");
        return;
    }
    put(s, "[", 1);
    for (size_t i = 0; i < c->n_delegated; i++) {
        if (i > 0)
            put(s, ",", 1);
        put_pk(s, &c->delegated[i]);
    }
    put(s, "]}", 2);
}

static void put_server(sink *s, const dmsg_entry_server *srv)
{
    put_member(s, "server");
    put_str(s, "{\"address\":");
    put_quoted(s, srv->address);
    put_optional_text(s, "address_v6", srv->address_v6);
    put_optional_text(s, "address_udp", srv->address_udp);
    put_optional_text(s, "address_udp_v6", srv->address_udp_v6);
    put_optional_text(s, "address_ws", srv->address_ws);
    put_member(s, "availableSessions");
    put_i64(s, srv->available_sessions);
    put_optional_text(s, "serverType", srv->server_type);
    if (srv->dht_bootstrap)
        put_str(s, ",\"dht_bootstrap\":true");
    put(s, "}", 1);
}

int dmsg_entry_write(const dmsg_entry *e, bool with_signature, char *out, size_t cap,
                     size_t *len)
{
    sink s = {out, cap, 0};
    put_str(&s, "{\"version\":");
    put_quoted(&s, e->version);
    put_member(&s, "sequence");
    put_u64(&s, e->sequence);
    put_member(&s, "timestamp");
    put_i64(&s, e->timestamp);
    put_member(&s, "static");
    put_pk(&s, &e->static_pk);
    if (e->has_client)
        put_client(&s, &e->client);
    put_optional_text(&s, "client_type", e->client_type);
    if (e->has_server)
        put_server(&s, &e->server);
    if (with_signature)
        put_optional_text(&s, "signature", e->signature);
    put_optional_text(&s, "protocol", e->protocol);
    put(&s, "}", 1);
    *len = s.len;
    return out && s.len <= cap ? 0 : DMSG_ETOOBIG;
}

/* ---------------------------------------------------------------------------------------------
 * Signatures */

static bool printable_ascii(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            return false;
    return true;
}

static bool publishable(const dmsg_entry *e)
{
    const char *texts[] = {
        e->version, e->client_type, e->protocol, e->server.address, e->server.address_v6,
        e->server.address_udp, e->server.address_udp_v6, e->server.address_ws,
        e->server.server_type,
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (!printable_ascii(texts[i]))
            return false;
    return true;
}

int dmsg_entry_sign(dmsg_entry *e, const dmsg_sk *sk)
{
    if (!publishable(e))
        return DMSG_EINVAL;
    e->signature[0] = '\0';
    char text[DMSG_ENTRY_JSON_MAX];
    size_t len;
    int rc = dmsg_entry_write(e, false, text, sizeof text, &len);
    if (rc < 0)
        return rc;
    dmsg_sig sig;
    rc = dmsg_sign(&sig, sk, (const uint8_t *)text, len);
    if (rc < 0)
        return rc;
    dmsg_sig_to_hex(&sig, e->signature);
    return 0;
}

int dmsg_entry_verify(const dmsg_entry *e)
{
    dmsg_sig sig;
    if (dmsg_sig_from_hex(&sig, e->signature, strlen(e->signature)) < 0)
        return DMSG_EHEX;
    char text[DMSG_ENTRY_JSON_MAX];
    size_t len;
    int rc = dmsg_entry_write(e, false, text, sizeof text, &len);
    if (rc < 0)
        return rc;
    return dmsg_verify(&e->static_pk, &sig, (const uint8_t *)text, len);
}
