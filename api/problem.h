/* RFC 9457 problem details for the admin API: the stable machine codes of api/openapi.yaml
 * (`Problem`), each with its HTTP status and title, rendered as application/problem+json.
 *
 * Pure: no I/O, no daemon state, so the table and the rendering are unit tested on their own. */
#ifndef DMSGD_API_PROBLEM_H
#define DMSGD_API_PROBLEM_H

#include <jansson.h>

enum api_problem {
    API_P_MALFORMED_JSON = 0,
    API_P_INVALID_QUERY,
    API_P_INVALID_PUBLIC_KEY,
    API_P_BAD_AUTHORIZATION,
    API_P_TOKEN_MISSING,
    API_P_TOKEN_INVALID,
    API_P_ORIGIN_REFUSED,
    API_P_INSUFFICIENT_SCOPE,
    API_P_NOT_FOUND,
    API_P_PEER_NOT_FOUND,
    API_P_SESSION_NOT_FOUND,
    API_P_ROUTE_SETUP_NOT_FOUND,
    API_P_METHOD_NOT_ALLOWED,
    API_P_PEER_EXISTS,
    API_P_PEER_FROM_CONFIG,
    API_P_PEER_LIMIT_REACHED,
    API_P_BODY_TOO_LARGE,
    API_P_UNSUPPORTED_MEDIA_TYPE,
    API_P_UNKNOWN_FIELD,
    API_P_MISSING_FIELD,
    API_P_INVALID_FIELD,
    API_P_INVALID_ADDRESS,
    API_P_PEER_IS_SELF,
    API_P_INTERNAL_ERROR,
    API_P_STORE_UNAVAILABLE,
    API_P_SHUTTING_DOWN,
    API_P_TOO_MANY_SUBSCRIBERS,
    API_P_COUNT
};

#define API_PROBLEM_CONTENT_TYPE "application/problem+json"
#define API_PROBLEM_TYPE_PREFIX "urn:dmsgd:problem:"

/* The machine code ("peer_exists"), its default status and its fixed title. */
const char *api_problem_code(enum api_problem p);
unsigned api_problem_status(enum api_problem p);
const char *api_problem_title(enum api_problem p);

/* The problem object: type, title, status, detail, instance (when not NULL), code, and field
 * (when not NULL). status 0 means the code's default (invalid_public_key is 400 in a path and
 * 422 in a body). NULL only when out of memory. */
json_t *api_problem_json(enum api_problem p, unsigned status, const char *detail,
                         const char *instance, const char *field);

/* The same, serialised compactly (caller frees). */
char *api_problem_text(enum api_problem p, unsigned status, const char *detail,
                       const char *instance, const char *field);

#endif
