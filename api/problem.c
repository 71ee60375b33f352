/* Problem details; see problem.h. The table is the contract of api/openapi.yaml `Problem`:
 * a code never changes its meaning or status within v1. */
#include "problem.h"

#include <stdlib.h>

struct problem_def {
    const char *code;
    unsigned status;
    const char *title;
};

static const struct problem_def problems[API_P_COUNT] = {
    [API_P_MALFORMED_JSON] = {"malformed_json", 400, "Malformed JSON body"},
    [API_P_INVALID_QUERY] = {"invalid_query", 400, "Invalid query parameter"},
    [API_P_INVALID_PUBLIC_KEY] = {"invalid_public_key", 400, "Invalid public key"},
    [API_P_BAD_AUTHORIZATION] = {"bad_authorization", 400, "Malformed Authorization header"},
    [API_P_TOKEN_MISSING] = {"token_missing", 401, "Bearer token required"},
    [API_P_TOKEN_INVALID] = {"token_invalid", 401, "Invalid bearer token"},
    [API_P_ORIGIN_REFUSED] = {"origin_refused", 403, "Browser requests are refused"},
    [API_P_INSUFFICIENT_SCOPE] = {"insufficient_scope", 403, "Token lacks the admin scope"},
    [API_P_NOT_FOUND] = {"not_found", 404, "No such resource"},
    [API_P_PEER_NOT_FOUND] = {"peer_not_found", 404, "Peer not found"},
    [API_P_SESSION_NOT_FOUND] = {"session_not_found", 404, "Session not found"},
    [API_P_ROUTE_SETUP_NOT_FOUND] = {"route_setup_not_found", 404, "Route setup not found"},
    [API_P_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405, "Method not allowed"},
    [API_P_PEER_EXISTS] = {"peer_exists", 409, "Peer already exists"},
    [API_P_PEER_FROM_CONFIG] = {"peer_from_config", 409, "Peer comes from the config file"},
    [API_P_PEER_LIMIT_REACHED] = {"peer_limit_reached", 409, "Peer table is full"},
    [API_P_BODY_TOO_LARGE] = {"body_too_large", 413, "Request body too large"},
    [API_P_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415,
                                      "Request body must be application/json"},
    [API_P_UNKNOWN_FIELD] = {"unknown_field", 422, "Unknown field"},
    [API_P_MISSING_FIELD] = {"missing_field", 422, "Missing field"},
    [API_P_INVALID_FIELD] = {"invalid_field", 422, "Invalid field"},
    [API_P_INVALID_ADDRESS] = {"invalid_address", 422, "Invalid address"},
    [API_P_PEER_IS_SELF] = {"peer_is_self", 422, "Peer is this server"},
    [API_P_INTERNAL_ERROR] = {"internal_error", 500, "Internal error"},
    [API_P_STORE_UNAVAILABLE] = {"store_unavailable", 503, "State store unavailable"},
    [API_P_SHUTTING_DOWN] = {"shutting_down", 503, "Daemon is shutting down"},
    [API_P_TOO_MANY_SUBSCRIBERS] = {"too_many_subscribers", 503, "Too many event subscribers"},
};

static const struct problem_def *def_of(enum api_problem p)
{
    return (unsigned)p < API_P_COUNT ? &problems[p] : &problems[API_P_INTERNAL_ERROR];
}

const char *api_problem_code(enum api_problem p)
{
    return def_of(p)->code;
}

unsigned api_problem_status(enum api_problem p)
{
    return def_of(p)->status;
}

const char *api_problem_title(enum api_problem p)
{
    return def_of(p)->title;
}

json_t *api_problem_json(enum api_problem p, unsigned status, const char *detail,
                         const char *instance, const char *field)
{
    const struct problem_def *d = def_of(p);
    json_t *o = json_object();
    if (!o)
        return NULL;
    int err = json_object_set_new(o, "type",
                                  json_sprintf("%s%s", API_PROBLEM_TYPE_PREFIX, d->code));
    err |= json_object_set_new(o, "title", json_string(d->title));
    err |= json_object_set_new(o, "status", json_integer(status ? status : d->status));
    /* json_string refuses invalid UTF-8: a detail quoting client bytes must not lose the
     * whole answer, so fall back to the title. */
    json_t *dj = json_string(detail ? detail : d->title);
    err |= json_object_set_new(o, "detail", dj ? dj : json_string(d->title));
    if (instance) {
        json_t *ij = json_string(instance);
        if (ij)
            err |= json_object_set_new(o, "instance", ij);
    }
    err |= json_object_set_new(o, "code", json_string(d->code));
    if (field) {
        json_t *fj = json_string(field);
        if (fj)
            err |= json_object_set_new(o, "field", fj);
    }
    if (err) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *api_problem_text(enum api_problem p, unsigned status, const char *detail,
                       const char *instance, const char *field)
{
    json_t *o = api_problem_json(p, status, detail, instance, field);
    if (!o)
        return NULL;
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}
