/* Request bodies of the admin API: the Content-Type check and a strict JSON parse against a
 * small member table (check order 5 of api/openapi.yaml): not application/json -> 415; empty,
 * not one object, invalid UTF-8 or a duplicated member -> 400 malformed_json; a member the
 * table does not define -> 422 unknown_field; a required one absent -> 422 missing_field; a
 * member of the wrong JSON type -> 422 invalid_field. Values are checked by the handlers.
 * Pure: unit tested and fuzzed on its own. */
#ifndef DMSGD_API_BODY_H
#define DMSGD_API_BODY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "problem.h"

enum api_field_type { API_FIELD_STRING, API_FIELD_BOOL, API_FIELD_INTEGER };

struct api_field {
    const char *name;
    enum api_field_type type;
    bool required;
};

struct api_body_error {
    enum api_problem problem;
    char field[64];            /* "" when no member is concerned */
    char detail[256];
};

/* True for "application/json" in any case, with or without parameters ("; charset=utf-8"). */
bool api_is_json_content_type(const char *content_type);

/* On success *out is the object (caller decrefs) and 0 is returned; else -1 with err filled. */
int api_body_parse(const char *content_type, const char *body, size_t len,
                   const struct api_field *fields, size_t n_fields, json_t **out,
                   struct api_body_error *err);

#endif
