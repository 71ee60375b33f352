/* Private to the gob codec (gob.c, gob_types.c, gob_decode.c, gob_encode.c). */
#ifndef DMSG_GOB_INTERNAL_H
#define DMSG_GOB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/gob.h"

/* Kinds of a received definition, numbered like the wireType fields they come from + 1. */
enum gob_wire_kind {
    GOB_WK_NONE = 0,
    GOB_WK_ARRAY,
    GOB_WK_SLICE,
    GOB_WK_STRUCT,
    GOB_WK_MAP,
    GOB_WK_GOBENC,
    GOB_WK_BINARY,
    GOB_WK_TEXT,
    GOB_WK_COUNT = GOB_WK_TEXT /* number of wireType fields */
};

/* Go refuses definitions of ids below its firstUserId (64). */
#define GOB_MIN_DEFINABLE_ID 64

/* Bounded reader over one message. */
typedef struct gob_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
} gob_reader;

static inline size_t gob_left(const gob_reader *r) { return r->len - r->pos; }

int gob_read_uint(gob_reader *r, uint64_t *v);
int gob_read_int(gob_reader *r, int64_t *v);
/* A length or count that Go checks against the bytes left in the message. */
int gob_read_len(gob_reader *r, size_t *n);
/* A type id: a signed integer that must fit in int32. */
int gob_read_type_id(gob_reader *r, int32_t *id);
/* Advances *fieldnum to the next field present in a struct value: 1 = a field, 0 = end of the
 * struct (a zero delta or the end of the message, as Go reads it), <0 = error. */
int gob_next_field(gob_reader *r, int64_t *fieldnum, size_t nfields);

/* Reads an unsigned integer from raw stream bytes: 0, DMSG_EAGAIN (incomplete) or DMSG_EGOB. */
int gob_peek_uint(const uint8_t *p, size_t len, uint64_t *v, size_t *used);

/* Output buffer with a sticky overflow flag. */
typedef struct gob_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;
} gob_writer;

void gob_put_uint(gob_writer *w, uint64_t v);
void gob_put_int(gob_writer *w, int64_t v);
void gob_put_raw(gob_writer *w, const uint8_t *p, size_t n);
/* u(len) followed by the bytes. */
void gob_put_bytes(gob_writer *w, const uint8_t *p, size_t n);

/* The id of a builtin schema kind, or 0 for kinds that need a definition. */
int32_t gob_builtin_id(dmsg_gob_kind kind);

/* Floats travel as their IEEE bits byte-reversed, so that small integral values are short. */
uint64_t gob_float_to_wire(double f);
double gob_float_from_wire(uint64_t u);

/* ---- received type table (gob_types.c) ---- */

const dmsg_gob_wire_type *gob_lookup(const dmsg_gob_decoder *dec, int32_t id);
/* Parses the wireType of a definition message (r is past the negative id) and adds it. */
int gob_define(dmsg_gob_decoder *dec, int32_t id, gob_reader *r);
/* Go compiles a decoder for the whole received type before reading a value: every type
 * reachable from id must be defined and skippable (schema NULL) or compatible with schema. */
int gob_check_ignorable(const dmsg_gob_decoder *dec, int32_t id);
int gob_check_compatible(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema, int32_t id,
                         int depth);
/* The struct case of the above; *matched (if not NULL) counts the fields that match by name. */
int gob_check_struct(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema,
                     const dmsg_gob_wire_type *wt, int depth, size_t *matched);
/* The schema field of the same name as the received field, or NULL. */
const dmsg_gob_field *gob_match_field(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema,
                                      const dmsg_gob_wire_field *wf);

#endif
