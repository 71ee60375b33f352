/* Discovery entries: canonical JSON and signatures against the Go vectors, the discovery's
 * checks against its recorded transcript, and the parser's limits. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/entry.h"
#include "dmsg/error.h"
#include "vectors.h"

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(entry, .init = setup);

/* ---------------------------------------------------------------------------------------------
 * Helpers */

static const char *str_at(json_t *root, const char *path)
{
    const char *s = json_string_value(vec_get(root, path));
    cr_assert_not_null(s, "missing string %s", path);
    return s;
}

/* Writes e and returns a fresh NUL-terminated copy. */
static char *written(const dmsg_entry *e, bool with_signature)
{
    size_t len;
    cr_assert_eq(dmsg_entry_write(e, with_signature, NULL, 0, &len), DMSG_ETOOBIG);
    char *out = malloc(len + 1);
    size_t again;
    cr_assert_eq(dmsg_entry_write(e, with_signature, out, len, &again), 0);
    cr_assert_eq(again, len);
    out[len] = '\0';
    return out;
}

static void assert_writes(const dmsg_entry *e, bool with_signature, const char *expected)
{
    char *got = written(e, with_signature);
    cr_assert_str_eq(got, expected);
    free(got);
}

static int parse_str(dmsg_entry *e, const char *json)
{
    return dmsg_entry_parse(e, json, strlen(json));
}

static void parse_ok(dmsg_entry *e, const char *json)
{
    int rc = parse_str(e, json);
    cr_assert_eq(rc, 0, "parse failed (%s): %s", dmsg_strerror(rc), json);
}

static dmsg_pk pk_of(const char *hex)
{
    dmsg_pk pk;
    cr_assert_eq(dmsg_pk_from_hex(&pk, hex, strlen(hex)), 0);
    return pk;
}

static dmsg_sk sk_of(const char *hex)
{
    dmsg_sk sk;
    cr_assert_eq(dmsg_sk_from_hex(&sk, hex, strlen(hex)), 0);
    return sk;
}

static char *reply_of(dmsg_disc_result r)
{
    size_t len;
    char *out = malloc(256);
    cr_assert_eq(dmsg_disc_reply_write(r, out, 255, &len), 0);
    out[len] = '\0';
    return out;
}

/* Rebuilds e from its fields with the public building calls only. */
static void rebuild(dmsg_entry *out, const dmsg_entry *e)
{
    dmsg_entry_init(out, &e->static_pk, e->sequence, e->timestamp);
    cr_assert_str_eq(out->version, e->version);
    if (e->has_client) {
        cr_assert_eq(dmsg_entry_set_client(out, e->client.delegated, e->client.n_delegated), 0);
        out->client.delegated_null = e->client.delegated_null;
    }
    if (e->has_server)
        cr_assert_eq(dmsg_entry_set_server(out, e->server.address, e->server.available_sessions), 0);
}

/* ---------------------------------------------------------------------------------------------
 * discovery.json entries */

static void check_vector_entry(json_t *v)
{
    const char *name = str_at(v, "name");
    const char *signed_bytes = str_at(v, "signed_bytes");
    const char *posted = str_at(v, "posted_json");
    size_t hex_len;
    uint8_t *from_hex = vec_hex(v, "signed_bytes_hex", &hex_len);
    cr_assert_eq(hex_len, strlen(signed_bytes), "%s", name);
    cr_assert_eq(memcmp(from_hex, signed_bytes, hex_len), 0, "%s", name);
    free(from_hex);

    uint8_t digest[DMSG_SHA256_LEN], expected_digest[DMSG_SHA256_LEN];
    dmsg_sha256(digest, (const uint8_t *)signed_bytes, strlen(signed_bytes));
    vec_hex_exact(v, "signed_bytes_sha256", expected_digest, sizeof expected_digest);
    cr_assert_eq(memcmp(digest, expected_digest, sizeof digest), 0, "%s", name);

    dmsg_entry e;
    parse_ok(&e, posted);
    assert_writes(&e, false, signed_bytes);
    assert_writes(&e, true, posted);
    cr_assert_str_eq(e.signature, str_at(v, "signature"), "%s", name);
    dmsg_pk signer = pk_of(str_at(v, "signer_pk"));
    cr_assert(dmsg_pk_equal(&signer, &e.static_pk), "%s", name);
    cr_assert_eq(dmsg_entry_verify(&e), 0, "%s", name);
    cr_assert(json_is_true(vec_get(v, "go_verify_signature_ok")), "%s", name);

    /* The pretty-printed fields decode to the same entry. */
    char *pretty = json_dumps(vec_get(v, "entry_fields"), JSON_INDENT(2));
    dmsg_entry from_fields;
    parse_ok(&from_fields, pretty);
    free(pretty);
    assert_writes(&from_fields, true, posted);

    /* Our own entry from the same fields: same signed bytes, our (deterministic) signature. */
    dmsg_entry ours;
    rebuild(&ours, &e);
    assert_writes(&ours, false, signed_bytes);
    dmsg_sk sk = sk_of(str_at(v, "signer_sk"));
    int rc = dmsg_entry_sign(&ours, &sk);
    if (json_is_false(vec_get(v, "stdlib_encoding_json_gives_same_bytes"))) {
        /* Text Go's encoders write differently is never published. */
        cr_assert_eq(rc, DMSG_EINVAL, "%s", name);
        return;
    }
    cr_assert_eq(rc, 0, "%s", name);
    cr_assert_eq(dmsg_entry_verify(&ours), 0, "%s", name);
    char expected[4096];
    snprintf(expected, sizeof expected, "%.*s,\"signature\":\"%s\"}",
             (int)strlen(signed_bytes) - 1, signed_bytes, ours.signature);
    assert_writes(&ours, true, expected);
    dmsg_entry twice = ours;
    cr_assert_eq(dmsg_entry_sign(&twice, &sk), 0);
    cr_assert_str_eq(twice.signature, ours.signature, "RFC6979 signing is deterministic");
}

Test(entry, discovery_vectors_entries)
{
    json_t *root = vec_load("discovery.json");
    json_t *entries = vec_get(root, "entries");
    cr_assert(json_array_size(entries) > 0);
    size_t i;
    json_t *v;
    json_array_foreach(entries, i, v) check_vector_entry(v);
    json_decref(root);
}

Test(entry, discovery_vectors_wrong_key)
{
    json_t *root = vec_load("discovery.json");
    const char *posted = str_at(root, "wrong_key_example.posted_json");
    dmsg_entry e;
    parse_ok(&e, posted);
    assert_writes(&e, true, posted);
    cr_assert_eq(dmsg_entry_verify(&e), DMSG_ESIG);
    cr_assert_eq(dmsg_disc_check_body(&e, posted, strlen(posted), DMSG_DISC_OP_POST, false, 0),
                 DMSG_DISC_UNAUTHORIZED);
    json_decref(root);
}

/* The secret key of a public key of keys.json. */
static dmsg_sk secret_of(const dmsg_pk *pk)
{
    json_t *keys = vec_load("keys.json");
    size_t i;
    json_t *k;
    json_array_foreach(vec_get(keys, "keypairs"), i, k) {
        dmsg_pk candidate = pk_of(str_at(k, "public_key"));
        if (dmsg_pk_equal(&candidate, pk)) {
            dmsg_sk sk = sk_of(str_at(k, "secret_key"));
            json_decref(keys);
            return sk;
        }
    }
    cr_assert_fail("no secret key for this public key");
    json_decref(keys);
    dmsg_sk none = {{0}};
    return none;
}

/* disc_entry.json: *_signed_json are signed bytes, *_post_body the matching body. */
Test(entry, disc_entry_vectors)
{
    json_t *root = vec_load("disc_entry.json");
    const char *key;
    json_t *value;
    int signed_seen = 0, bodies_seen = 0;
    json_object_foreach(root, key, value) {
        size_t klen = strlen(key);
        const char *suffix = "_signed_json";
        if (klen <= strlen(suffix) || strcmp(key + klen - strlen(suffix), suffix) != 0)
            continue;
        const char *signed_bytes = json_string_value(value);
        char body_key[128];
        snprintf(body_key, sizeof body_key, "%.*s_post_body", (int)(klen - strlen(suffix)), key);
        const char *body = json_string_value(json_object_get(root, body_key));
        dmsg_entry e;
        signed_seen++;
        if (!body) {
            /* Unsigned entry: parses and re-writes to itself. */
            parse_ok(&e, signed_bytes);
            assert_writes(&e, true, signed_bytes);
            cr_assert_eq(dmsg_entry_verify(&e), DMSG_EHEX);
            continue;
        }
        bodies_seen++;
        parse_ok(&e, body);
        assert_writes(&e, false, signed_bytes);
        assert_writes(&e, true, body);
        cr_assert_eq(dmsg_entry_verify(&e), 0, "%s", key);
        /* Ours from the same fields: the same body but for the signature, which verifies. */
        dmsg_entry ours;
        rebuild(&ours, &e);
        dmsg_sk sk = secret_of(&e.static_pk);
        cr_assert_eq(dmsg_entry_sign(&ours, &sk), 0);
        cr_assert_eq(dmsg_entry_verify(&ours), 0);
        char expected[1024];
        snprintf(expected, sizeof expected, "%.*s,\"signature\":\"%s\"}",
                 (int)strlen(signed_bytes) - 1, signed_bytes, ours.signature);
        assert_writes(&ours, true, expected);
    }
    cr_assert_eq(signed_seen, 3);
    cr_assert_eq(bodies_seen, 2);
    json_decref(root);
}

/* ---------------------------------------------------------------------------------------------
 * The transcript of the real discovery handler, replayed against a tiny in-memory store. */

#define STORE_MAX 8
typedef struct store {
    dmsg_entry entries[STORE_MAX];
    size_t n;
} store;

static dmsg_entry *store_find(store *s, const dmsg_pk *pk)
{
    for (size_t i = 0; i < s->n; i++)
        if (dmsg_pk_equal(&s->entries[i].static_pk, pk))
            return &s->entries[i];
    return NULL;
}

static void store_del(store *s, dmsg_entry *e)
{
    size_t i = (size_t)(e - s->entries);
    memmove(&s->entries[i], &s->entries[i + 1], (s->n - i - 1) * sizeof *e);
    s->n--;
}

typedef struct answer {
    int status;
    char body[8192];
    const char *content_type;
} answer;

static void answer_result(answer *a, dmsg_disc_result r)
{
    size_t len;
    a->status = dmsg_disc_result_status(r);
    cr_assert_eq(dmsg_disc_reply_write(r, a->body, sizeof a->body - 1, &len), 0);
    a->body[len] = '\0';
    a->content_type = "application/json";
}

static void answer_entry(answer *a, const dmsg_entry *e)
{
    size_t len;
    a->status = 200;
    cr_assert_eq(dmsg_entry_write(e, true, a->body, sizeof a->body - 1, &len), 0);
    a->body[len] = '\0';
    a->content_type = "application/json";
}

static void handle_post(store *s, const char *body, int64_t now, answer *a)
{
    dmsg_entry e;
    dmsg_disc_result r = dmsg_disc_check_body(&e, body, strlen(body), DMSG_DISC_OP_POST, false, now);
    if (r == DMSG_DISC_OK) {
        dmsg_entry *old = store_find(s, &e.static_pk);
        if (!old) {
            cr_assert(s->n < STORE_MAX);
            s->entries[s->n++] = e;
            r = DMSG_DISC_ENTRY_SET;
        } else if ((r = dmsg_disc_check_iteration(old, &e)) == DMSG_DISC_ENTRY_UPDATED) {
            *old = e;
        }
    }
    answer_result(a, r);
}

static void handle_delete(store *s, const char *body, int64_t now, answer *a)
{
    dmsg_entry e;
    dmsg_disc_result r =
        dmsg_disc_check_body(&e, body, strlen(body), DMSG_DISC_OP_DELETE, false, now);
    if (r == DMSG_DISC_OK) {
        dmsg_entry *old = store_find(s, &e.static_pk);
        if (old)
            store_del(s, old);
        r = DMSG_DISC_ENTRY_DELETED;
    }
    answer_result(a, r);
}

static void handle_get_entry(store *s, const char *pk_text, answer *a)
{
    dmsg_pk pk;
    int rc = dmsg_entry_pk_parse(&pk, pk_text, strlen(pk_text));
    if (rc == DMSG_EKEY) {
        /* Go panics on a non-point and its recoverer answers 500 without a body. */
        a->status = 500;
        a->body[0] = '\0';
        a->content_type = "";
        return;
    }
    if (rc < 0) {
        answer_result(a, DMSG_DISC_BAD_INPUT);
        return;
    }
    dmsg_entry *e = store_find(s, &pk);
    if (e)
        answer_entry(a, e);
    else
        answer_result(a, DMSG_DISC_KEY_NOT_FOUND);
}

static void handle_servers(store *s, answer *a)
{
    size_t off = 0;
    a->body[off++] = '[';
    for (size_t i = 0; i < s->n; i++) {
        if (!s->entries[i].has_server)
            continue;
        size_t len;
        if (off > 1)
            a->body[off++] = ',';
        cr_assert_eq(dmsg_entry_write(&s->entries[i], true, a->body + off,
                                      sizeof a->body - off - 2, &len), 0);
        off += len;
    }
    if (off == 1) {
        answer_result(a, DMSG_DISC_NO_AVAILABLE_SERVERS);
        return;
    }
    a->body[off++] = ']';
    a->body[off] = '\0';
    a->status = 200;
    a->content_type = "application/json";
}

/* false for exchanges decided by the router (405, unknown path), not by a handler. */
static bool handle(store *s, const char *method, const char *path, const char *body, int64_t now,
                   answer *a)
{
    const char *entry_prefix = "/dmsg-discovery/entry/";
    if (strcmp(method, "POST") == 0 && strcmp(path, entry_prefix) == 0)
        handle_post(s, body, now, a);
    else if (strcmp(method, "DELETE") == 0 && strcmp(path, "/dmsg-discovery/entry") == 0)
        handle_delete(s, body, now, a);
    else if (strcmp(method, "GET") == 0 && strncmp(path, entry_prefix, strlen(entry_prefix)) == 0)
        handle_get_entry(s, path + strlen(entry_prefix), a);
    else if (strcmp(method, "GET") == 0 && (strcmp(path, "/dmsg-discovery/available_servers") == 0 ||
                                            strcmp(path, "/dmsg-discovery/all_servers") == 0))
        handle_servers(s, a);
    else
        return false;
    return true;
}

Test(entry, discovery_transcript)
{
    json_t *root = vec_load("discovery.json");
    int64_t now = json_integer_value(vec_get(root, "api_transcript.note_now_unix_nano"));
    cr_assert(now > 0);
    json_t *exchanges = vec_get(root, "api_transcript.exchanges");
    static store s;
    s.n = 0;
    size_t i, handled = 0, routed = 0;
    json_t *x;
    json_array_foreach(exchanges, i, x) {
        const char *step = str_at(x, "step");
        const char *body = json_string_value(json_object_get(x, "request_body"));
        int status = (int)json_integer_value(json_object_get(x, "status"));
        const char *expected = str_at(x, "response_body");
        const char *type = str_at(x, "response_content_type");
        static answer a;
        if (!handle(&s, str_at(x, "method"), str_at(x, "path"), body ? body : "", now, &a)) {
            cr_assert(status == 405 || (status == 404 && strncmp(type, "text/plain", 10) == 0),
                      "unhandled step: %s", step);
            routed++;
            continue;
        }
        handled++;
        cr_assert_eq(a.status, status, "%s: status %d, expected %d", step, a.status, status);
        cr_assert_str_eq(a.body, expected, "%s", step);
        cr_assert_str_eq(a.content_type, type, "%s", step);
    }
    cr_assert_eq(handled + routed, json_array_size(exchanges));
    cr_assert_eq(routed, 3);
    json_decref(root);
}

/* ---------------------------------------------------------------------------------------------
 * Validation beyond the transcript, on entries we sign ourselves */

typedef struct fixture {
    dmsg_pk pk;
    dmsg_sk sk;
    int64_t now;
} fixture;

static fixture server_key(void)
{
    json_t *root = vec_load("discovery.json");
    fixture f = {pk_of(str_at(root, "keys.S1.public_key")), sk_of(str_at(root, "keys.S1.secret_key")),
                 json_integer_value(vec_get(root, "api_transcript.note_now_unix_nano"))};
    json_decref(root);
    return f;
}

static dmsg_disc_result post(const dmsg_entry *e, dmsg_disc_op op, bool test_mode, int64_t now)
{
    char body[DMSG_ENTRY_JSON_MAX];
    size_t len;
    cr_assert_eq(dmsg_entry_write(e, true, body, sizeof body, &len), 0);
    dmsg_entry decoded;
    return dmsg_disc_check_body(&decoded, body, len, op, test_mode, now);
}

static void server_entry(dmsg_entry *e, const fixture *f, int64_t ts, const char *addr)
{
    dmsg_entry_init(e, &f->pk, 0, ts);
    cr_assert_eq(dmsg_entry_set_server(e, addr, 10), 0);
    cr_assert_eq(dmsg_entry_sign(e, &f->sk), 0);
}

Test(entry, validation_order_and_causes)
{
    fixture f = server_key();
    dmsg_entry e;

    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OK);

    e.version[0] = '\0';
    cr_assert_eq(dmsg_entry_sign(&e, &f.sk), 0);
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_NO_VERSION);
    e.signature[0] = '\0';
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_NO_VERSION, "version first");
    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    e.signature[0] = '\0';
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_NO_SIGNATURE);

    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    memset(&e.static_pk, 0, sizeof e.static_pk);
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_NIL_KEYS);

    server_entry(&e, &f, f.now, "");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_EMPTY_SERVER_ADDRESS);

    /* Timestamp window, bounds included; only for entries without a client part. */
    int64_t old = f.now - DMSG_ENTRY_LIFETIME_NS, future = f.now + DMSG_ENTRY_CLOCK_SKEW_NS;
    server_entry(&e, &f, old, "203.0.113.10:30080");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OK);
    server_entry(&e, &f, old - 1, "203.0.113.10:30080");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OUTDATED_TIME);
    cr_assert_eq(post(&e, DMSG_DISC_OP_DELETE, false, f.now), DMSG_DISC_OUTDATED_TIME);
    cr_assert_eq(dmsg_entry_set_client(&e, NULL, 0), 0);
    cr_assert_eq(dmsg_entry_sign(&e, &f.sk), 0);
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OK, "client part: no window");
    server_entry(&e, &f, future, "203.0.113.10:30080");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OK);
    server_entry(&e, &f, future + 1, "203.0.113.10:30080");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_OUTDATED_TIME);

    /* Loopback comes before Validate, only on POST, and not in test mode. */
    server_entry(&e, &f, f.now, "127.0.0.1:8081");
    e.version[0] = '\0';
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_LOOPBACK_ADDRESS);
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, true, f.now), DMSG_DISC_NO_VERSION);
    cr_assert_eq(post(&e, DMSG_DISC_OP_DELETE, false, f.now), DMSG_DISC_NO_VERSION);
    server_entry(&e, &f, f.now, "127.0.0.1:8081");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, true, f.now), DMSG_DISC_OK);

    /* Signature: altered content, malformed hex, another key. */
    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    e.server.available_sessions++;
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_UNAUTHORIZED);
    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    e.signature[10] = 'x';
    cr_assert_eq(dmsg_entry_verify(&e), DMSG_EHEX);
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_UNAUTHORIZED);
    strcpy(e.signature, "00");
    cr_assert_eq(post(&e, DMSG_DISC_OP_POST, false, f.now), DMSG_DISC_UNAUTHORIZED);
}

Test(entry, validation_unknown_members_are_dropped_before_verifying)
{
    fixture f = server_key();
    dmsg_entry e;
    server_entry(&e, &f, f.now, "203.0.113.10:30080");
    char body[DMSG_ENTRY_JSON_MAX];
    size_t len;
    cr_assert_eq(dmsg_entry_write(&e, true, body, sizeof body, &len), 0);
    body[len] = '\0';
    /* Added after signing: dropped by the decoder, the signature still holds. */
    char extended[DMSG_ENTRY_JSON_MAX];
    snprintf(extended, sizeof extended, "%.*s,\"extra\":{\"x\":[1,2.5e3,true,null]}}",
             (int)len - 1, body);
    dmsg_entry d;
    cr_assert_eq(dmsg_disc_check_body(&d, extended, strlen(extended), DMSG_DISC_OP_POST, false,
                                      f.now), DMSG_DISC_OK);
    assert_writes(&d, true, body);

    /* Newer members are known: signed with them, verified with them, kept. */
    cr_assert_eq(dmsg_entry_set_text(e.client_type, "visor"), 0);
    cr_assert_eq(dmsg_entry_set_text(e.server.server_type, "community"), 0);
    cr_assert_eq(dmsg_entry_set_text(e.server.address_v6, "[2001:db8::1]:30080"), 0);
    cr_assert_eq(dmsg_entry_set_text(e.protocol, "smux"), 0);
    e.server.dht_bootstrap = true;
    cr_assert_eq(dmsg_entry_sign(&e, &f.sk), 0);
    char *text = written(&e, true);
    cr_assert(strstr(text, "\"client_type\":\"visor\",\"server\":{") != NULL);
    cr_assert(strstr(text, "\"availableSessions\":10,\"serverType\":\"community\",\"dht_bootstrap\":true}") != NULL);
    cr_assert(strstr(text, "\"address\":\"203.0.113.10:30080\",\"address_v6\":") != NULL);
    cr_assert(strstr(text, "true},\"signature\":\"") != NULL);
    cr_assert(strstr(text, "\",\"protocol\":\"smux\"}") != NULL);
    cr_assert_eq(dmsg_disc_check_body(&d, text, strlen(text), DMSG_DISC_OP_POST, false, f.now),
                 DMSG_DISC_OK);
    assert_writes(&d, true, text);
    free(text);
}

Test(entry, iteration)
{
    dmsg_entry stored, next;
    memset(&stored, 0, sizeof stored);
    stored.sequence = 5;
    stored.timestamp = 1000;
    next = stored;
    cr_assert_eq(dmsg_disc_check_iteration(&stored, &next), DMSG_DISC_WRONG_SEQUENCE);
    next.sequence = 4;
    cr_assert_eq(dmsg_disc_check_iteration(&stored, &next), DMSG_DISC_WRONG_SEQUENCE);
    next.sequence = 9; /* any greater value, despite the message */
    cr_assert_eq(dmsg_disc_check_iteration(&stored, &next), DMSG_DISC_ENTRY_UPDATED);
    next.timestamp = 999;
    cr_assert_eq(dmsg_disc_check_iteration(&stored, &next), DMSG_DISC_WRONG_TIME);
    next.sequence = 5;
    cr_assert_eq(dmsg_disc_check_iteration(&stored, &next), DMSG_DISC_WRONG_SEQUENCE, "sequence first");
}

Test(entry, results_and_messages)
{
    for (int r = 0; r < DMSG_DISC_RESULT_COUNT; r++) {
        const char *m = dmsg_disc_result_message((dmsg_disc_result)r);
        int status = dmsg_disc_result_status((dmsg_disc_result)r);
        cr_assert(status == 200 || status == 400 || status == 401 || status == 404 ||
                  status == 422 || status == 500);
        cr_assert_eq(status == 422, strncmp(m, "entry validation error: ", 24) == 0);
        if (r != DMSG_DISC_OK)
            cr_assert_eq((int)dmsg_disc_result_from_message(m, strlen(m)), r);
        char *body = reply_of((dmsg_disc_result)r);
        char expected[256];
        snprintf(expected, sizeof expected, "{\"message\":\"%s\",\"code\":%d}", m, status);
        cr_assert_str_eq(body, expected);
        free(body);
    }
    cr_assert_eq(dmsg_disc_result_from_message("nope", 4), DMSG_DISC_UNEXPECTED);
    cr_assert_eq(dmsg_disc_result_from_message("", 0), DMSG_DISC_UNEXPECTED);
    cr_assert_eq(dmsg_disc_result_from_message("invalid signatur", 16), DMSG_DISC_UNEXPECTED);
    size_t len;
    char small[8];
    cr_assert_eq(dmsg_disc_reply_write(DMSG_DISC_UNAUTHORIZED, small, sizeof small, &len),
                 DMSG_ETOOBIG);
}

Test(entry, loopback_addresses)
{
    static const struct {
        const char *addr;
        bool loopback;
    } cases[] = {
        {"127.0.0.1:8081", true},     {"127.255.0.9:1", true},      {":8081", true},
        {"[::1]:8081", true},         {"[::ffff:127.0.0.1]:1", true}, {"[]:80", true},
        {"127.0.0.1:", true},         {"203.0.113.7:8081", false},  {"localhost:8081", false},
        {"127.0.0.1", false},         {"::1", false},               {"[::1]", false},
        {"[::1]:80:1", false},        {"a:b:c", false},             {"127.0.0.01:80", false},
        {"[fe80::1%eth0]:80", false}, {"[::2]:80", false},          {"x[127.0.0.1]:1", false},
        {"[127.0.0.1]:80", true},     {"128.0.0.1:80", false},      {"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_assert_eq(dmsg_disc_address_is_loopback(cases[i].addr), cases[i].loopback, "%s",
                     cases[i].addr);
}

Test(entry, timestamp_window_extremes)
{
    cr_assert(dmsg_disc_timestamp_fresh(INT64_MAX, INT64_MAX));
    cr_assert(!dmsg_disc_timestamp_fresh(INT64_MIN, INT64_MAX));
    cr_assert(!dmsg_disc_timestamp_fresh(INT64_MAX, INT64_MIN));
    cr_assert(dmsg_disc_timestamp_fresh(INT64_MIN + 1, INT64_MIN));
}

/* ---------------------------------------------------------------------------------------------
 * Parser */

static const char *const base_body =
    "{\"version\":\"0.0.1\",\"sequence\":0,\"timestamp\":1700000000123456789,"
    "\"static\":\"039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084\","
    "\"client\":{\"delegated_servers\":[\"026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9\"]}}";

/* base_body with one member replaced or added: "<name>":<value> spliced before the end. */
static int parse_with(dmsg_entry *e, const char *member)
{
    size_t head = strlen(base_body) - 1, tail = strlen(member);
    char *body = malloc(head + tail + 2);
    memcpy(body, base_body, head);
    body[head] = ',';
    memcpy(body + head + 1, member, tail);
    body[head + 1 + tail] = '}';
    int rc = dmsg_entry_parse(e, body, head + tail + 2);
    free(body);
    return rc;
}

Test(entry, parse_every_truncation_fails)
{
    json_t *root = vec_load("discovery.json");
    size_t i;
    json_t *v;
    json_array_foreach(vec_get(root, "entries"), i, v) {
        const char *posted = str_at(v, "posted_json");
        size_t len = strlen(posted);
        for (size_t cut = 0; cut < len; cut++) {
            dmsg_entry e;
            cr_assert_eq(dmsg_entry_parse(&e, posted, cut), DMSG_EPROTO, "cut at %zu", cut);
        }
    }
    json_decref(root);
}

Test(entry, parse_keys)
{
    dmsg_entry e;
    cr_assert_eq(parse_with(&e, "\"static\":\"zz9366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084\""), DMSG_EHEX);
    cr_assert_eq(parse_with(&e, "\"static\":\"039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d30\""), DMSG_EHEX);
    cr_assert_eq(parse_with(&e, "\"static\":\"02ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\""), DMSG_EKEY);
    cr_assert_eq(parse_with(&e, "\"static\":\"039366D11F49D387207971FCA013C625F02BB7BC17ADB48976810D61A3467D3084\""), 0);
    cr_assert_eq(parse_with(&e, "\"static\":5"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"client\":{\"delegated_servers\":[\"02ff\"]}"), DMSG_EHEX);
    /* Text of only zeros is the null key, whatever its length. */
    cr_assert_eq(parse_with(&e, "\"static\":\"000\""), 0);
    cr_assert(dmsg_pk_is_null(&e.static_pk));
    cr_assert_eq(parse_with(&e, "\"static\":\"\""), 0);
    cr_assert(dmsg_pk_is_null(&e.static_pk));
    cr_assert_eq(parse_with(&e, "\"static\":null"), 0);
    cr_assert(dmsg_pk_is_null(&e.static_pk));

    json_t *keys = vec_load("keys.json");
    size_t i;
    json_t *k;
    json_array_foreach(vec_get(keys, "invalid"), i, k) {
        if (strcmp(str_at(k, "kind"), "public_key") != 0)
            continue;
        const char *hex = str_at(k, "hex");
        dmsg_pk pk;
        int rc = dmsg_entry_pk_parse(&pk, hex, strlen(hex));
        bool zeros = strspn(hex, "0") == strlen(hex);
        cr_assert_eq(rc, zeros ? 0 : DMSG_EKEY, "%s", hex);
        char member[160];
        snprintf(member, sizeof member, "\"client\":{\"delegated_servers\":[\"%s\"]}", hex);
        cr_assert_eq(parse_with(&e, member), zeros ? 0 : DMSG_EKEY, "%s", hex);
    }
    json_array_foreach(vec_get(keys, "keypairs"), i, k) {
        const char *hex = str_at(k, "public_key");
        dmsg_pk pk;
        cr_assert_eq(dmsg_entry_pk_parse(&pk, hex, strlen(hex)), 0);
    }
    json_decref(keys);
    dmsg_pk pk;
    cr_assert_eq(dmsg_entry_pk_parse(&pk, "xyz", 3), DMSG_EHEX);
}

Test(entry, parse_numbers)
{
    dmsg_entry e;
    cr_assert_eq(parse_with(&e, "\"sequence\":18446744073709551615"), 0);
    cr_assert_eq(e.sequence, UINT64_MAX);
    cr_assert_eq(parse_with(&e, "\"sequence\":18446744073709551616"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":-1"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":1.0"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":1e3"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":01"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":\"1\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"sequence\":null"), 0);
    cr_assert_eq(e.sequence, 0, "null keeps the earlier value");
    cr_assert_eq(parse_with(&e, "\"timestamp\":-9223372036854775808"), 0);
    cr_assert_eq(e.timestamp, INT64_MIN);
    cr_assert_eq(parse_with(&e, "\"timestamp\":9223372036854775807"), 0);
    cr_assert_eq(e.timestamp, INT64_MAX);
    cr_assert_eq(parse_with(&e, "\"timestamp\":9223372036854775808"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"timestamp\":-9223372036854775809"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"timestamp\":-"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"timestamp\":- 1"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"server\":{\"address\":\"a:1\",\"availableSessions\":-5}"), 0);
    cr_assert_eq(e.server.available_sessions, -5);
    cr_assert_eq(parse_with(&e, "\"server\":{\"address\":\"a:1\",\"dht_bootstrap\":1}"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"server\":{\"address\":\"a:1\",\"dht_bootstrap\":true}"), 0);
    cr_assert(e.server.dht_bootstrap);
}

Test(entry, parse_strings)
{
    dmsg_entry e;
    cr_assert_eq(parse_with(&e, "\"version\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u2028\""), 0);
    cr_assert_str_eq(e.version, "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe2\x80\xa8");
    char *text = written(&e, false);
    cr_assert(strstr(text, "\"version\":\"a\\\"b\\\\c/d\\u0008\\u000c\\n\\r\\t\xc3\xa9\xe2\x80\xa8\"") != NULL);
    dmsg_entry again;
    parse_ok(&again, text);
    cr_assert_str_eq(again.version, e.version);
    free(text);

    cr_assert_eq(parse_with(&e, "\"version\":\"\\ud83d\\ude00\""), 0);
    cr_assert_str_eq(e.version, "\xf0\x9f\x98\x80");
    cr_assert_eq(parse_with(&e, "\"version\":\"\\ud83dx\""), 0);
    cr_assert_str_eq(e.version, "\xef\xbf\xbdx");
    cr_assert_eq(parse_with(&e, "\"version\":\"\\ude00\\ud83d\\ude00\""), 0);
    cr_assert_str_eq(e.version, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", "json-iterator pairs only once");
    cr_assert_eq(parse_with(&e, "\"version\":\"\\ud83d\\n\""), 0);
    cr_assert_str_eq(e.version, "\xef\xbf\xbd\n");
    cr_assert_eq(parse_with(&e, "\"version\":\"\\u0000\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\\x\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\\u12\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"a\tb\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\xc3\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\xc0\xaf\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\xed\xa0\x80\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\xf4\x90\x80\x80\""), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"version\":\"\x7f\""), 0);
    cr_assert_eq(parse_with(&e, "\"version\":null"), 0);
    cr_assert_str_eq(e.version, "");
    cr_assert_eq(parse_with(&e, "\"version\":1"), DMSG_EPROTO);

    /* Text limits: 255 bytes after unescaping. */
    char member[2048];
    char *p = member + sprintf(member, "\"version\":\"");
    memset(p, 'v', DMSG_ENTRY_TEXT_MAX);
    strcpy(p + DMSG_ENTRY_TEXT_MAX, "\"");
    cr_assert_eq(parse_with(&e, member), 0);
    cr_assert_eq(strlen(e.version), DMSG_ENTRY_TEXT_MAX);
    strcpy(p + DMSG_ENTRY_TEXT_MAX, "v\"");
    cr_assert_eq(parse_with(&e, member), DMSG_ETOOBIG);
    p = member + sprintf(member, "\"version\":\"");
    for (int i = 0; i < DMSG_ENTRY_TEXT_MAX; i++)
        p += sprintf(p, "\\u0041");
    strcpy(p, "\"");
    cr_assert_eq(parse_with(&e, member), 0, "escapes count once decoded");
}

Test(entry, parse_structure)
{
    dmsg_entry e;
    /* Names match without regard to ASCII case; a later duplicate wins. */
    cr_assert_eq(parse_with(&e, "\"SEQUENCE\":7,\"Sequence\":8"), 0);
    cr_assert_eq(e.sequence, 8);
    cr_assert_eq(parse_with(&e, "\"seq\\u0075ence\":9"), 0);
    cr_assert_eq(e.sequence, 9, "escaped names are decoded");
    /* Parts: null removes, a duplicate merges, {} creates an empty one. */
    cr_assert_eq(parse_with(&e, "\"client\":null"), 0);
    cr_assert(!e.has_client);
    cr_assert_eq(parse_with(&e, "\"client\":null,\"client\":{}"), 0);
    cr_assert(e.has_client && e.client.delegated_null && e.client.n_delegated == 0);
    assert_writes(&e, false,
                  "{\"version\":\"0.0.1\",\"sequence\":0,\"timestamp\":1700000000123456789,"
                  "\"static\":\"039366d11f49d387207971fca013c625f02bb7bc17adb48976810d61a3467d3084\","
                  "\"client\":{\"delegated_servers\":null}}");
    parse_ok(&e, base_body);
    cr_assert_eq(e.client.n_delegated, 1);
    cr_assert_eq(parse_with(&e, "\"client\":{\"other\":1}"), 0);
    cr_assert_eq(e.client.n_delegated, 1, "a duplicate part merges");
    cr_assert_eq(parse_with(&e, "\"client\":{\"delegated_servers\":[]}"), 0);
    cr_assert(!e.client.delegated_null && e.client.n_delegated == 0);
    cr_assert_eq(parse_with(&e, "\"client\":[]"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"server\":{}"), 0);
    cr_assert(e.has_server && e.server.address[0] == '\0');
    /* Whole values. */
    cr_assert_eq(parse_str(&e, "null"), 0);
    cr_assert(!e.has_client && !e.has_server && e.version[0] == '\0');
    cr_assert_eq(parse_str(&e, " {} "), 0);
    cr_assert_eq(parse_str(&e, "[]"), DMSG_EPROTO);
    cr_assert_eq(parse_str(&e, ""), DMSG_EPROTO);
    cr_assert_eq(parse_str(&e, "{not json"), DMSG_EPROTO);
    cr_assert_eq(parse_str(&e, "{\"version\":\"0.0.1\",}"), DMSG_EPROTO);
    cr_assert_eq(parse_str(&e, "{\"version\" \"0.0.1\"}"), DMSG_EPROTO);
    cr_assert_eq(parse_str(&e, "{\"version\":\"0.0.1\"}trailing"), 0, "the first value only");
    cr_assert_str_eq(e.version, "0.0.1");
    cr_assert_eq(parse_with(&e, "\"x\":[1,]"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"x\":tru"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"x\":-"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"x\":1.e5"), DMSG_EPROTO);
    cr_assert_eq(parse_with(&e, "\"x\":{\"a\":[{},{\"b\":\"\\u00e9\"}],\"c\":-0.5E+3}"), 0);
}

Test(entry, parse_limits)
{
    dmsg_entry e;
    char member[DMSG_ENTRY_JSON_MAX];
    /* Nesting of skipped members. */
    for (int depth = DMSG_ENTRY_DEPTH_MAX - 1; depth <= DMSG_ENTRY_DEPTH_MAX; depth++) {
        char *p = member + sprintf(member, "\"x\":");
        for (int i = 0; i < depth; i++)
            p += sprintf(p, i % 2 ? "{\"k\":" : "[");
        *p++ = '1';
        for (int i = depth - 1; i >= 0; i--)
            *p++ = i % 2 ? '}' : ']';
        *p = '\0';
        /* The entry object itself is one level. */
        cr_assert_eq(parse_with(&e, member), depth < DMSG_ENTRY_DEPTH_MAX ? 0 : DMSG_EDEPTH,
                     "depth %d", depth);
    }
    /* Delegated servers. */
    const char *pk = "\"026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9\"";
    for (int n = DMSG_ENTRY_DELEGATED_MAX; n <= DMSG_ENTRY_DELEGATED_MAX + 1; n++) {
        char *p = member + sprintf(member, "\"client\":{\"delegated_servers\":[");
        for (int i = 0; i < n; i++)
            p += sprintf(p, "%s%s", i ? "," : "", pk);
        strcpy(p, "]}");
        cr_assert_eq(parse_with(&e, member), n <= DMSG_ENTRY_DELEGATED_MAX ? 0 : DMSG_ETOOBIG);
    }
    /* Whole body. */
    char *huge = malloc(DMSG_ENTRY_JSON_MAX + 2);
    memset(huge, ' ', DMSG_ENTRY_JSON_MAX + 1);
    memcpy(huge, "{}", 2);
    cr_assert_eq(dmsg_entry_parse(&e, huge, DMSG_ENTRY_JSON_MAX), 0);
    cr_assert_eq(dmsg_entry_parse(&e, huge, DMSG_ENTRY_JSON_MAX + 1), DMSG_ETOOBIG);
    free(huge);
}

/* The largest entry this module can hold is written within DMSG_ENTRY_JSON_MAX and reads back. */
Test(entry, largest_entry_round_trip)
{
    static dmsg_entry e, back;
    fixture f = server_key();
    dmsg_entry_init(&e, &f.pk, UINT64_MAX, INT64_MIN);
    char *texts[] = {e.version, e.client_type, e.signature, e.protocol, e.server.address,
                     e.server.address_v6, e.server.address_udp, e.server.address_udp_v6,
                     e.server.address_ws, e.server.server_type};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        memset(texts[i], 0x01, DMSG_ENTRY_TEXT_MAX);
        texts[i][DMSG_ENTRY_TEXT_MAX] = '\0';
    }
    e.has_server = true;
    e.server.available_sessions = INT64_MIN;
    e.server.dht_bootstrap = true;
    e.has_client = true;
    e.client.n_delegated = DMSG_ENTRY_DELEGATED_MAX;
    for (size_t i = 0; i < DMSG_ENTRY_DELEGATED_MAX; i++)
        e.client.delegated[i] = f.pk;
    char *text = written(&e, true);
    cr_assert_leq(strlen(text), DMSG_ENTRY_JSON_MAX);
    cr_assert(strstr(text, "\\u0001\\u0001") != NULL);
    parse_ok(&back, text);
    char *again = written(&back, true);
    cr_assert_str_eq(again, text);
    free(again);
    free(text);
    cr_assert_eq(dmsg_entry_sign(&e, &f.sk), DMSG_EINVAL, "control characters are not published");

    size_t len, needed;
    cr_assert_eq(dmsg_entry_write(&e, true, NULL, 0, &needed), DMSG_ETOOBIG);
    char small[64];
    cr_assert_eq(dmsg_entry_write(&e, true, small, sizeof small, &len), DMSG_ETOOBIG);
    cr_assert_eq(len, needed);
}

Test(entry, building)
{
    fixture f = server_key();
    dmsg_entry e;
    dmsg_entry_init(&e, &f.pk, 3, 42);
    cr_assert_str_eq(e.version, DMSG_ENTRY_VERSION);
    char address[DMSG_ENTRY_TEXT_MAX + 2];
    memset(address, 'a', sizeof address - 1);
    address[sizeof address - 1] = '\0';
    cr_assert_eq(dmsg_entry_set_server(&e, address, 1), DMSG_ETOOBIG);
    cr_assert(!e.has_server);
    address[DMSG_ENTRY_TEXT_MAX] = '\0';
    cr_assert_eq(dmsg_entry_set_server(&e, address, 1), 0);
    cr_assert_eq(dmsg_entry_set_client(&e, NULL, DMSG_ENTRY_DELEGATED_MAX + 1), DMSG_ETOOBIG);
    cr_assert_eq(dmsg_entry_set_client(&e, NULL, 0), 0);
    cr_assert(e.has_client && !e.client.delegated_null);
    dmsg_sk bad;
    memset(&bad, 0, sizeof bad);
    cr_assert_eq(dmsg_entry_sign(&e, &bad), DMSG_EKEY);
}

/* ---------------------------------------------------------------------------------------------
 * Lists */

Test(entry, list_iteration)
{
    json_t *root = vec_load("discovery.json");
    size_t i, lists = 0;
    json_t *x;
    json_array_foreach(vec_get(root, "api_transcript.exchanges"), i, x) {
        const char *path = str_at(x, "path");
        if (json_integer_value(json_object_get(x, "status")) != 200 ||
            (strcmp(path, "/dmsg-discovery/available_servers") != 0 &&
             strcmp(path, "/dmsg-discovery/all_servers") != 0))
            continue;
        lists++;
        const char *body = str_at(x, "response_body");
        dmsg_entry_iter it;
        cr_assert_eq(dmsg_entry_iter_init(&it, body, strlen(body)), 0);
        dmsg_entry e;
        size_t n = 0;
        int rc;
        char rebuilt[8192] = "[";
        while ((rc = dmsg_entry_iter_next(&it, &e)) == 1) {
            cr_assert(e.has_server);
            cr_assert_eq(dmsg_entry_verify(&e), 0);
            size_t len, off = strlen(rebuilt);
            if (n++)
                rebuilt[off++] = ',';
            cr_assert_eq(dmsg_entry_write(&e, true, rebuilt + off, sizeof rebuilt - off - 2, &len), 0);
            rebuilt[off + len] = '\0';
        }
        cr_assert_eq(rc, 0);
        strcat(rebuilt, "]");
        cr_assert_str_eq(rebuilt, body);
        cr_assert_eq(dmsg_entry_iter_next(&it, &e), 0, "stays at the end");
    }
    cr_assert_eq(lists, 2);
    json_decref(root);

    static const struct {
        const char *json;
        int init, first;
    } cases[] = {
        {"null", 0, 0}, {" [ ] ", 0, 0}, {"[null]", 0, DMSG_EPROTO}, {"[{}", 0, DMSG_EPROTO},
        {"[{},]", 0, 1}, {"[{}]x", 0, 1}, {"{}", DMSG_EPROTO, 0}, {"", DMSG_EPROTO, 0},
        {"[{\"sequence\":\"1\"}]", 0, DMSG_EPROTO}, {"[1]", 0, DMSG_EPROTO},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dmsg_entry_iter it;
        dmsg_entry e;
        const char *j = cases[c].json;
        cr_assert_eq(dmsg_entry_iter_init(&it, j, strlen(j)), cases[c].init, "%s", j);
        if (cases[c].init == 0)
            cr_assert_eq(dmsg_entry_iter_next(&it, &e), cases[c].first, "%s", j);
    }
    dmsg_entry_iter it;
    dmsg_entry e;
    cr_assert_eq(dmsg_entry_iter_init(&it, "[{},]", 5), 0);
    cr_assert_eq(dmsg_entry_iter_next(&it, &e), 1);
    cr_assert_eq(dmsg_entry_iter_next(&it, &e), DMSG_EPROTO);
    cr_assert_eq(dmsg_entry_iter_next(&it, &e), DMSG_EPROTO, "errors stick");
}
