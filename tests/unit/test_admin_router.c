/* The admin API's routing, request-body checks, validators and token checks (api/router.c,
 * api/body.c, api/validate.c, api/auth.c), without a daemon. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "body.h"
#include "dmsg/cipher.h"
#include "validate.h"

/* secp256k1's generator G, the public key of secret key 1. */
#define G_HEX "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

static void init_cipher(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(admin_router, .init = init_cipher, .timeout = 10);

/* ---- routing: every operation of the contract ---- */

static const struct {
    const char *method, *path, *operation, *param;
} operations[] = {
    {"GET", "/v1/health", "getHealth", ""},
    {"GET", "/v1/info", "getInfo", ""},
    {"GET", "/v1/peers", "listPeers", ""},
    {"POST", "/v1/peers", "addPeer", ""},
    {"GET", "/v1/peers/" G_HEX, "getPeer", G_HEX},
    {"DELETE", "/v1/peers/" G_HEX, "removePeer", G_HEX},
    {"GET", "/v1/mesh", "getMesh", ""},
    {"GET", "/v1/route-setup", "getRouteSetup", ""},
    {"PUT", "/v1/route-setup", "setRouteSetup", ""},
    {"GET", "/v1/route-setups", "listRouteSetups", ""},
    {"GET", "/v1/route-setups/17", "getRouteSetupRecord", "17"},
    {"GET", "/v1/sessions", "listSessions", ""},
    {"GET", "/v1/sessions/abc", "getSession", "abc"},
    {"DELETE", "/v1/sessions/abc", "kickSession", "abc"},
    {"GET", "/v1/streams", "listStreams", ""},
    {"GET", "/v1/events", "followEvents", ""},
    {"GET", "/v1/stats", "getStats", ""},
    {"GET", "/v1/metrics", "getMetricsV1", ""},
    {"GET", "/metrics", "getMetrics", ""},
};

Test(admin_router, finds_every_operation_with_its_parameter)
{
    for (size_t i = 0; i < sizeof operations / sizeof operations[0]; i++) {
        const struct api_op *op = NULL;
        char param[128], allow[64];
        int rc = api_route_find(operations[i].method, operations[i].path, &op, param,
                                sizeof param, allow, sizeof allow);
        cr_assert_eq(rc, 0, "%s %s", operations[i].method, operations[i].path);
        cr_assert_str_eq(op->name, operations[i].operation);
        cr_assert_str_eq(param, operations[i].param);
        cr_assert_not_null(op->handler);
        cr_assert_not_null(op->query);
    }
}

Test(admin_router, changes_need_the_admin_scope_and_reads_do_not)
{
    for (size_t i = 0; i < sizeof operations / sizeof operations[0]; i++) {
        const struct api_op *op = NULL;
        char param[128], allow[64];
        api_route_find(operations[i].method, operations[i].path, &op, param, sizeof param, allow,
                       sizeof allow);
        bool change = strcmp(operations[i].method, "GET") != 0;
        cr_assert_eq(op->scope, change ? API_SCOPE_ADMIN : API_SCOPE_READ, "%s",
                     operations[i].operation);
        /* Exactly the operations with a request body declare members. */
        bool has_body = strcmp(operations[i].method, "POST") == 0 ||
                        strcmp(operations[i].method, "PUT") == 0;
        cr_assert_eq(op->fields != NULL, has_body, "%s", operations[i].operation);
    }
}

Test(admin_router, unknown_paths_are_not_found)
{
    static const char *const paths[] = {
        "/", "", "/v1", "/v1/", "/v2/health", "/v1/health/", "/v1/peers/", "/v1/peers/a/b",
        "/v1/sessions/", "/metrics/", "/v1/HEALTH", "/v1/healthz", "/v1/peers/x/../y",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const struct api_op *op = (const struct api_op *)1;
        char param[128], allow[64];
        cr_assert_eq(api_route_find("GET", paths[i], &op, param, sizeof param, allow,
                                    sizeof allow),
                     API_P_NOT_FOUND, "%s", paths[i]);
        cr_assert_null(op);
    }
}

Test(admin_router, wrong_method_lists_the_allowed_ones)
{
    static const struct {
        const char *method, *path, *allow;
    } cases[] = {
        {"DELETE", "/v1/health", "GET"},
        {"PUT", "/v1/peers", "GET, POST"},
        {"POST", "/v1/peers/" G_HEX, "GET, DELETE"},
        {"DELETE", "/v1/route-setup", "GET, PUT"},
        {"POST", "/metrics", "GET"},
        {"HEAD", "/v1/sessions", "GET"},
        {"get", "/v1/health", "GET"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct api_op *op = NULL;
        char param[128], allow[64];
        cr_assert_eq(api_route_find(cases[i].method, cases[i].path, &op, param, sizeof param,
                                    allow, sizeof allow),
                     API_P_METHOD_NOT_ALLOWED);
        cr_assert_str_eq(allow, cases[i].allow);
    }
}

/* ---- bodies ---- */

static const struct api_field peer_fields[] = {
    {"public_key", API_FIELD_STRING, true},
    {"address", API_FIELD_STRING, true},
    {"note", API_FIELD_STRING, false},
};

static enum api_problem body_problem(const char *ctype, const char *body, const char **field)
{
    json_t *out = NULL;
    static struct api_body_error err;
    int rc = api_body_parse(ctype, body, strlen(body), peer_fields, 3, &out, &err);
    if (rc == 0) {
        cr_assert_not_null(out);
        json_decref(out);
        return API_P_COUNT;
    }
    cr_assert_null(out);
    cr_assert_gt(strlen(err.detail), 0);
    if (field)
        *field = err.field;
    return err.problem;
}

Test(admin_router, body_content_type)
{
    const char *ok = "{\"public_key\":\"x\",\"address\":\"y\"}";
    cr_assert_eq(body_problem("application/json", ok, NULL), API_P_COUNT);
    cr_assert_eq(body_problem("Application/JSON; charset=utf-8", ok, NULL), API_P_COUNT);
    cr_assert_eq(body_problem("application/json;charset=UTF-8", ok, NULL), API_P_COUNT);
    cr_assert_eq(body_problem(NULL, ok, NULL), API_P_UNSUPPORTED_MEDIA_TYPE);
    cr_assert_eq(body_problem("text/plain", ok, NULL), API_P_UNSUPPORTED_MEDIA_TYPE);
    cr_assert_eq(body_problem("application/jsonx", ok, NULL), API_P_UNSUPPORTED_MEDIA_TYPE);
    cr_assert_eq(body_problem("application/x-www-form-urlencoded", ok, NULL),
                 API_P_UNSUPPORTED_MEDIA_TYPE);
}

Test(admin_router, body_malformed_json)
{
    static const char *const bad[] = {
        "", "{", "[]", "\"text\"", "42", "null", "{\"public_key\":\"x\",}",
        "{\"public_key\":\"x\",\"public_key\":\"y\",\"address\":\"z\"}", /* duplicate member */
        "{\"public_key\":\"\xff\xfe\",\"address\":\"z\"}",                 /* invalid UTF-8 */
        "{\"public_key\":\"a\\u0000b\",\"address\":\"z\"}",                /* NUL in a string */
        "{} {}", "{\"a\":1}x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(body_problem("application/json", bad[i], NULL), API_P_MALFORMED_JSON, "%s",
                     bad[i]);
}

Test(admin_router, body_members)
{
    const char *field = NULL;
    cr_assert_eq(body_problem("application/json",
                              "{\"public_key\":\"x\",\"address\":\"y\",\"extra\":1}", &field),
                 API_P_UNKNOWN_FIELD);
    cr_assert_str_eq(field, "extra");
    cr_assert_eq(body_problem("application/json", "{\"address\":\"y\"}", &field),
                 API_P_MISSING_FIELD);
    cr_assert_str_eq(field, "public_key");
    cr_assert_eq(body_problem("application/json", "{\"public_key\":1,\"address\":\"y\"}", &field),
                 API_P_INVALID_FIELD);
    cr_assert_str_eq(field, "public_key");
    cr_assert_eq(body_problem("application/json",
                              "{\"public_key\":\"x\",\"address\":[\"y\"]}", &field),
                 API_P_INVALID_FIELD);
    cr_assert_str_eq(field, "address");
    cr_assert_eq(body_problem("application/json",
                              "{\"public_key\":\"x\",\"address\":\"y\",\"note\":null}", &field),
                 API_P_INVALID_FIELD);
    cr_assert_eq(body_problem("application/json",
                              "{\"public_key\":\"x\",\"address\":\"y\",\"note\":\"n\"}", NULL),
                 API_P_COUNT);
    /* Case matters: "Address" is not "address". */
    cr_assert_eq(body_problem("application/json", "{\"public_key\":\"x\",\"Address\":\"y\"}",
                              &field),
                 API_P_UNKNOWN_FIELD);
}

Test(admin_router, body_boolean_and_integer_types)
{
    static const struct api_field f[] = {{"enabled", API_FIELD_BOOL, true},
                                         {"n", API_FIELD_INTEGER, false}};
    json_t *out;
    struct api_body_error err;
    cr_assert_eq(api_body_parse("application/json", "{\"enabled\":true}", 16, f, 2, &out, &err),
                 0);
    json_decref(out);
    static const char *const bad[] = {"{\"enabled\":\"true\"}", "{\"enabled\":1}",
                                      "{\"enabled\":null}", "{\"enabled\":true,\"n\":1.5}",
                                      "{\"enabled\":false,\"n\":\"1\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(api_body_parse("application/json", bad[i], strlen(bad[i]), f, 2, &out,
                                    &err),
                     -1);
        cr_assert_eq(err.problem, API_P_INVALID_FIELD, "%s", bad[i]);
    }
}

/* ---- validators ---- */

Test(admin_router, public_keys)
{
    dmsg_pk pk;
    char hex[DMSG_PK_HEX_LEN + 1], why[96];
    cr_assert_eq(api_parse_public_key(G_HEX, &pk, hex, why, sizeof why), 0);
    cr_assert_str_eq(hex, G_HEX);
    char upper[DMSG_PK_HEX_LEN + 1];
    for (size_t i = 0; i <= DMSG_PK_HEX_LEN; i++)
        upper[i] = (char)((G_HEX[i] >= 'a' && G_HEX[i] <= 'f') ? G_HEX[i] - 32 : G_HEX[i]);
    cr_assert_eq(api_parse_public_key(upper, NULL, hex, why, sizeof why), 0);
    cr_assert_str_eq(hex, G_HEX, "normalised to lowercase");
    static const char *const bad[] = {
        "", "02", G_HEX "00", "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f8179",
        "0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798", /* not compressed */
        "02ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", /* x >= p */
        "000000000000000000000000000000000000000000000000000000000000000000", /* null key */
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f8179g",
        " 279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "02'; DROP TABLE peers;--0000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_assert_eq(api_parse_public_key(bad[i], &pk, hex, why, sizeof why), -1, "%s", bad[i]);
        cr_assert_gt(strlen(why), 0);
    }
    cr_assert_eq(api_parse_public_key(NULL, NULL, NULL, NULL, 0), -1);
}

Test(admin_router, addresses)
{
    static const char *const good[] = {
        "relay2.example.net:8081", "127.0.0.1:1", "a:65535", "[::1]:8081",
        "[2001:db8::1]:443", "my-host.local:80",
    };
    static const char *const bad[] = {
        "", "a:", ":80", "host", "host:0", "host:65536", "host:-1", "host:+80", "host:080",
        "host:80x", "ho st:80", "host\":80", "h'; DROP TABLE peers;--:80", "[::1]", "[::1]80",
        "[zz::1]:80", "::1:80", "-host:80", ".host:80", "a..b:80", "host:80\n", "[]:80",
        "http://host:80",
    };
    char why[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(api_check_address(good[i], why, sizeof why), 0, "%s: %s", good[i], why);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        cr_assert_eq(api_check_address(bad[i], why, sizeof why), -1, "%s", bad[i]);
        cr_assert_gt(strlen(why), 0);
    }
    char longest[API_ADDRESS_MAX + 2];
    memset(longest, 'a', sizeof longest);
    memcpy(longest + API_ADDRESS_MAX - 3, ":80", 4);
    cr_assert_eq(api_check_address(longest, NULL, 0), 0, "261 characters");
    memset(longest, 'a', sizeof longest);
    memcpy(longest + API_ADDRESS_MAX - 2, ":80", 4);
    cr_assert_eq(api_check_address(longest, NULL, 0), -1, "262 characters");
}

Test(admin_router, notes)
{
    char why[96];
    cr_assert_eq(api_check_note("", 0, why, sizeof why), 0);
    cr_assert_eq(api_check_note("Frankfurt \"rack 3\" 'x'; DROP TABLE", 34, why, sizeof why), 0);
    cr_assert_eq(api_check_note("\xc3\xa9t\xc3\xa9", 5, why, sizeof why), 0);
    cr_assert_eq(api_check_note("a\nb", 3, why, sizeof why), -1);
    cr_assert_eq(api_check_note("a\x7f", 2, why, sizeof why), -1);
    cr_assert_eq(api_check_note("\xc3", 1, why, sizeof why), -1, "truncated UTF-8");
    cr_assert_eq(api_check_note("\xc0\xaf", 2, why, sizeof why), -1, "overlong");
    cr_assert_eq(api_check_note("\xed\xa0\x80", 3, why, sizeof why), -1, "surrogate");
    char note[600];
    memset(note, 'x', 256);
    cr_assert_eq(api_check_note(note, 256, why, sizeof why), 0);
    cr_assert_eq(api_check_note(note, 257, why, sizeof why), -1);
    /* The limit is in bytes (what the store and the mesh keep): 128 two-byte characters fit,
     * one more does not. */
    for (int i = 0; i < 129; i++)
        memcpy(note + 2 * i, "\xc3\xa9", 2);
    cr_assert_eq(api_check_note(note, 256, why, sizeof why), 0);
    cr_assert_eq(api_check_note(note, 258, why, sizeof why), -1);
}

Test(admin_router, query_numbers_and_since)
{
    uint64_t v;
    cr_assert_eq(api_parse_uint("1", 1, 1000, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(api_parse_uint("1000", 1, 1000, &v), 0);
    static const char *const bad_limits[] = {"0", "1001", "", "-1", "+1", "01", "1e3", "10 ",
                                             "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++)
        cr_assert_eq(api_parse_uint(bad_limits[i], 1, 1000, &v), -1, "%s", bad_limits[i]);
    int64_t s;
    static const struct {
        const char *text;
        int64_t seconds;
    } since[] = {{"90", 90}, {"90s", 90}, {"15m", 900}, {"1h", 3600}, {"7d", 604800},
                 {"366d", 366 * 86400}, {"31622400", 31622400}};
    for (size_t i = 0; i < sizeof since / sizeof since[0]; i++) {
        cr_assert_eq(api_parse_since(since[i].text, &s), 0, "%s", since[i].text);
        cr_assert_eq(s, since[i].seconds);
    }
    static const char *const bad_since[] = {"", "0", "0h", "h", "1w", "1.5h", "367d",
                                            "31622401", "1234567890", "-1h", "1hh"};
    for (size_t i = 0; i < sizeof bad_since / sizeof bad_since[0]; i++)
        cr_assert_eq(api_parse_since(bad_since[i], &s), -1, "%s", bad_since[i]);
    char lower[DMSG_PK_HEX_LEN + 1];
    cr_assert_eq(api_parse_hex_prefix("02AB", lower), 0);
    cr_assert_str_eq(lower, "02ab");
    cr_assert_eq(api_parse_hex_prefix("", lower), -1);
    cr_assert_eq(api_parse_hex_prefix("0x", lower), -1);
    cr_assert_eq(api_parse_hex_prefix(G_HEX "0", lower), -1);
}

Test(admin_router, time_format)
{
    char t[32];
    api_format_time(0, t);
    cr_assert_str_eq(t, "1970-01-01T00:00:00Z");
    api_format_time(1775736000000LL, t);
    cr_assert_str_eq(t, "2026-04-09T12:00:00Z");
    api_format_time(1775736000250LL, t);
    cr_assert_str_eq(t, "2026-04-09T12:00:00.250Z");
}

/* ---- tokens ---- */

Test(admin_router, bearer_tokens)
{
    char admin[API_TOKEN_HEX_LEN + 1], readonly[API_TOKEN_HEX_LEN + 1];
    memset(admin, 'a', API_TOKEN_HEX_LEN);
    admin[API_TOKEN_HEX_LEN] = '\0';
    memset(readonly, 'b', API_TOKEN_HEX_LEN);
    readonly[API_TOKEN_HEX_LEN] = '\0';
    char h[128];
    snprintf(h, sizeof h, "Bearer %s", admin);
    cr_assert_eq(api_authenticate(h, admin, readonly), API_AUTH_ADMIN);
    snprintf(h, sizeof h, "bearer %s", readonly);
    cr_assert_eq(api_authenticate(h, admin, readonly), API_AUTH_READ);
    cr_assert_eq(api_authenticate(NULL, admin, readonly), API_AUTH_MISSING);
    cr_assert_eq(api_authenticate("", admin, readonly), API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Basic YWxhZGRpbjpvcGVuc2VzYW1l", admin, readonly),
                 API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Bearer", admin, readonly), API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Bearer ", admin, readonly), API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Bearer a b", admin, readonly), API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Bearer \"x\"", admin, readonly), API_AUTH_MALFORMED);
    cr_assert_eq(api_authenticate("Bearer abc", admin, readonly), API_AUTH_INVALID);
    snprintf(h, sizeof h, "Bearer %.63sc", admin);
    cr_assert_eq(api_authenticate(h, admin, readonly), API_AUTH_INVALID, "one character off");
    snprintf(h, sizeof h, "Bearer %sa", admin);
    cr_assert_eq(api_authenticate(h, admin, readonly), API_AUTH_INVALID, "one character more");
}

Test(admin_router, token_files_are_created_once_with_mode_0600)
{
    char dir[] = "/tmp/test_admin_tokens_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char a1[API_TOKEN_HEX_LEN + 1], r1[API_TOKEN_HEX_LEN + 1];
    char a2[API_TOKEN_HEX_LEN + 1], r2[API_TOKEN_HEX_LEN + 1], err[256];
    cr_assert_eq(api_tokens_load(dir, a1, r1, err, sizeof err), 0, "%s", err);
    cr_assert_str_neq(a1, r1);
    cr_assert_eq(api_tokens_load(dir, a2, r2, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(a1, a2, "never overwritten");
    cr_assert_str_eq(r1, r2);
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, ADMIN_TOKEN_FILE);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    /* A token file others can read is refused, as is a damaged one. */
    chmod(path, 0644);
    cr_assert_neq(api_tokens_load(dir, a2, r2, err, sizeof err), 0);
    cr_assert(strstr(err, "chmod 600") != NULL, "%s", err);
    FILE *f = fopen(path, "w");
    fputs("not a token\n", f);
    fclose(f);
    chmod(path, 0600);
    cr_assert_neq(api_tokens_load(dir, a2, r2, err, sizeof err), 0);
    cr_assert(strstr(err, "delete it") != NULL, "%s", err);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s", dir, ADMIN_READ_TOKEN_FILE);
    unlink(path);
    rmdir(dir);
}
