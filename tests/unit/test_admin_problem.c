/* The admin API's problem details (api/problem.c): every code of the contract's Problem table
 * with its status, and the RFC 9457 rendering. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "problem.h"

/* The Problem table of api/openapi.yaml, transcribed: code and status. */
static const struct {
    const char *code;
    unsigned status;
} contract[] = {
    {"malformed_json", 400}, {"invalid_query", 400}, {"invalid_public_key", 400},
    {"bad_authorization", 400}, {"token_missing", 401}, {"token_invalid", 401},
    {"origin_refused", 403}, {"insufficient_scope", 403}, {"not_found", 404},
    {"peer_not_found", 404}, {"session_not_found", 404}, {"route_setup_not_found", 404},
    {"method_not_allowed", 405}, {"peer_exists", 409}, {"peer_from_config", 409},
    {"peer_limit_reached", 409}, {"body_too_large", 413}, {"unsupported_media_type", 415},
    {"unknown_field", 422}, {"missing_field", 422}, {"invalid_field", 422},
    {"invalid_address", 422}, {"peer_is_self", 422}, {"internal_error", 500},
    {"store_unavailable", 503}, {"shutting_down", 503}, {"too_many_subscribers", 503},
};

TestSuite(admin_problem, .timeout = 10);

Test(admin_problem, every_contract_code_has_its_status)
{
    size_t n = sizeof contract / sizeof contract[0];
    cr_assert_eq(n, API_P_COUNT, "the table and the enum must list the same codes");
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (int p = 0; p < API_P_COUNT; p++) {
            if (strcmp(api_problem_code(p), contract[i].code) == 0) {
                found = true;
                cr_expect_eq(api_problem_status(p), contract[i].status, "%s", contract[i].code);
                cr_expect_gt(strlen(api_problem_title(p)), 0);
            }
        }
        cr_expect(found, "code %s missing", contract[i].code);
    }
}

Test(admin_problem, codes_are_unique_and_well_formed)
{
    for (int p = 0; p < API_P_COUNT; p++) {
        const char *c = api_problem_code(p);
        cr_assert(c[0] >= 'a' && c[0] <= 'z');
        for (const char *q = c; *q; q++)
            cr_assert((*q >= 'a' && *q <= 'z') || *q == '_', "%s", c);
        for (int o = p + 1; o < API_P_COUNT; o++)
            cr_assert_str_neq(c, api_problem_code(o));
    }
}

Test(admin_problem, renders_rfc9457_members)
{
    char *text = api_problem_text(API_P_PEER_EXISTS, 0, "02ab is already a peer", "/v1/peers",
                                  "public_key");
    cr_assert_not_null(text);
    json_error_t err;
    json_t *o = json_loads(text, 0, &err);
    cr_assert_not_null(o, "%s", err.text);
    cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "urn:dmsgd:problem:peer_exists");
    cr_assert_str_eq(json_string_value(json_object_get(o, "title")), "Peer already exists");
    cr_assert_eq(json_integer_value(json_object_get(o, "status")), 409);
    cr_assert_str_eq(json_string_value(json_object_get(o, "detail")), "02ab is already a peer");
    cr_assert_str_eq(json_string_value(json_object_get(o, "instance")), "/v1/peers");
    cr_assert_str_eq(json_string_value(json_object_get(o, "code")), "peer_exists");
    cr_assert_str_eq(json_string_value(json_object_get(o, "field")), "public_key");
    json_decref(o);
    free(text);
}

Test(admin_problem, status_override_and_optional_members)
{
    json_t *o = api_problem_json(API_P_INVALID_PUBLIC_KEY, 422, "bad", NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(o, "status")), 422);
    cr_assert_null(json_object_get(o, "instance"));
    cr_assert_null(json_object_get(o, "field"));
    json_decref(o);
}

Test(admin_problem, detail_with_quotes_and_invalid_utf8_stays_valid_json)
{
    char *text = api_problem_text(API_P_INVALID_FIELD, 0, "note \"x'); DROP TABLE peers;--\"",
                                  "/v1/peers", "note");
    json_t *o = json_loads(text, 0, NULL);
    cr_assert_not_null(o);
    cr_assert_str_eq(json_string_value(json_object_get(o, "detail")),
                     "note \"x'); DROP TABLE peers;--\"");
    json_decref(o);
    free(text);
    /* Invalid UTF-8 from a client falls back to the title instead of losing the answer. */
    text = api_problem_text(API_P_INVALID_FIELD, 0, "bad \xff\xfe", "/v1/\xff", "\xff");
    o = json_loads(text, 0, NULL);
    cr_assert_not_null(o);
    cr_assert_str_eq(json_string_value(json_object_get(o, "detail")), "Invalid field");
    cr_assert_null(json_object_get(o, "instance"));
    json_decref(o);
    free(text);
}
