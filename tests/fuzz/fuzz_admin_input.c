/* libFuzzer harness for what the admin API takes from operators (api/body.c, api/validate.c,
 * api/problem.c). The first byte picks the parser; the rest is its input. Properties: no crash
 * or sanitizer report; an accepted body has only known members of the right JSON types; a
 * refusal is one of the contract's 4xx codes with a detail; an accepted key is 66 hex characters
 * and comes back lowercase; an accepted address is 3..261 characters with a port; an accepted
 * note has no control character; every problem renders as one JSON object. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The API's parsers are not in dmsgcore, which harnesses link: compile them in. */
#include "../../api/body.c"
#include "../../api/problem.c"
#include "../../api/validate.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct api_field fields[] = {
    {"public_key", API_FIELD_STRING, true},
    {"address", API_FIELD_STRING, true},
    {"note", API_FIELD_STRING, false},
    {"enabled", API_FIELD_BOOL, false},
    {"n", API_FIELD_INTEGER, false},
};

static void check_body(const char *text, size_t len)
{
    json_t *out = NULL;
    struct api_body_error err;
    if (api_body_parse("application/json", text, len, fields, 5, &out, &err) == 0) {
        const char *name;
        json_t *v;
        if (!json_is_object(out) || !json_object_get(out, "public_key") ||
            !json_object_get(out, "address"))
            abort();
        json_object_foreach(out, name, v) {
            const struct api_field *f = find_field(fields, 5, name);
            if (!f || !type_matches(v, f->type))
                abort();
        }
        json_decref(out);
        return;
    }
    if (out || err.detail[0] == '\0')
        abort();
    unsigned status = api_problem_status(err.problem);
    if (status != 400 && status != 415 && status != 422)
        abort();
    char *problem = api_problem_text(err.problem, 0, err.detail, "/v1/peers",
                                     err.field[0] ? err.field : NULL);
    json_t *back = problem ? json_loads(problem, 0, NULL) : NULL;
    if (!json_is_object(back))
        abort();
    json_decref(back);
    free(problem);
}

static void check_key(const char *text)
{
    char hex[DMSG_PK_HEX_LEN + 1], why[96];
    dmsg_pk pk;
    if (api_parse_public_key(text, &pk, hex, why, sizeof why) != 0)
        return;
    if (strlen(text) != DMSG_PK_HEX_LEN || strlen(hex) != DMSG_PK_HEX_LEN)
        abort();
    for (size_t i = 0; i < DMSG_PK_HEX_LEN; i++)
        if (hex[i] != text[i] && hex[i] != text[i] + ('a' - 'A'))
            abort();
    char again[DMSG_PK_HEX_LEN + 1];
    dmsg_pk_to_hex(&pk, again);
    if (strcmp(again, hex) != 0)
        abort();
}

static void check_address(const char *text)
{
    char why[128];
    if (api_check_address(text, why, sizeof why) != 0)
        return;
    size_t len = strlen(text);
    const char *colon = strrchr(text, ':');
    if (len < API_ADDRESS_MIN || len > API_ADDRESS_MAX || !colon || colon[1] == '\0')
        abort();
    for (const char *c = text; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == '"' || *c == '\'' || *c == '/')
            abort();
}

static void check_note(const char *text, size_t len)
{
    char why[96];
    if (api_check_note(text, len, why, sizeof why) != 0)
        return;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            abort();
    if (len > API_NOTE_MAX_BYTES)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (dmsg_cipher_init() != 0)
            abort();
        ready = true;
    }
    if (size < 1 || size > 70000)
        return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0: check_body(text, size - 1); break;
    case 1: check_key(text); break;
    case 2: check_address(text); break;
    case 3: check_note(text, size - 1); break;
    default: {
        uint64_t v;
        int64_t s;
        if (api_parse_uint(text, 1, 1000, &v) == 0 && (v < 1 || v > 1000))
            abort();
        if (api_parse_since(text, &s) == 0 && (s < 1 || s > API_SINCE_MAX_SECONDS))
            abort();
        break;
    }
    }
    free(text);
    return 0;
}
