/* The gob encoder: Go's type ids, definitions once per stream, Go's zero-field omission. */
#include <string.h>

#include "dmsg/error.h"
#include "gob_internal.h"

/* ---- type ids (Go's process-wide registry) ---- */

void dmsg_gob_registry_init(dmsg_gob_registry *reg)
{
    memset(reg, 0, sizeof *reg);
    reg->next_id = DMSG_GOB_FIRST_USER_ID;
}

static int32_t type_id(const dmsg_gob_registry *reg, const dmsg_gob_type *t)
{
    int32_t builtin = gob_builtin_id(t->kind);
    if (builtin)
        return builtin;
    for (size_t i = 0; i < reg->count; i++)
        if (reg->types[i] == t)
            return reg->ids[i];
    return 0;
}

static int take_id(dmsg_gob_registry *reg, const dmsg_gob_type *t)
{
    if (reg->count == DMSG_GOB_MAX_TYPES)
        return DMSG_ELIMIT;
    reg->types[reg->count] = t;
    reg->ids[reg->count++] = reg->next_id++;
    return 0;
}

/* Go's order: a struct (or marshaler) takes its id before its fields are visited, an array or
 * slice after its element. */
static int assign_ids(dmsg_gob_registry *reg, const dmsg_gob_type *t, int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EINVAL; /* a cyclic schema */
    if (type_id(reg, t))
        return 0;
    int rc;
    switch (t->kind) {
    case DMSG_GOB_STRUCT:
        rc = take_id(reg, t);
        for (size_t i = 0; rc == 0 && i < t->nfields; i++)
            rc = assign_ids(reg, t->fields[i].type, depth + 1);
        return rc;
    case DMSG_GOB_BINARY:
    case DMSG_GOB_TEXT:
        return take_id(reg, t);
    case DMSG_GOB_ARRAY:
    case DMSG_GOB_SLICE:
        rc = assign_ids(reg, t->elem, depth + 1);
        return rc ? rc : take_id(reg, t);
    default:
        return DMSG_EINVAL;
    }
}

/* ---- messages ---- */

typedef struct body_ctx {
    dmsg_gob_encoder *enc;
    const dmsg_gob_type *type;
    const void *value;
} body_ctx;

typedef int (*body_fn)(gob_writer *w, const body_ctx *ctx);

/* A message is u(length) then the body; the body is produced twice, first only to count it, so
 * that no space has to be guessed for the length. Value checks run on the real pass only. */
static int put_message(gob_writer *w, body_fn fn, const body_ctx *ctx)
{
    gob_writer counter = {NULL, SIZE_MAX, 0, false};
    int rc = fn(&counter, ctx);
    if (rc)
        return rc;
    gob_put_uint(w, counter.len);
    return fn(w, ctx);
}

/* CommonType{Name, Id}: an empty name is omitted like any zero field. */
static void put_common_type(gob_writer *w, const char *name, int32_t id)
{
    size_t n = name ? strlen(name) : 0;
    if (n) {
        gob_put_uint(w, 1);
        gob_put_bytes(w, (const uint8_t *)name, n);
    }
    gob_put_uint(w, n ? 1 : 2);
    gob_put_int(w, id);
    gob_put_uint(w, 0);
}

static void put_struct_type(gob_writer *w, const dmsg_gob_registry *reg, const dmsg_gob_type *t)
{
    put_common_type(w, t->name, type_id(reg, t));
    if (t->nfields) {
        gob_put_uint(w, 1);
        gob_put_uint(w, t->nfields);
        for (size_t i = 0; i < t->nfields; i++) {
            const char *name = t->fields[i].name;
            gob_put_uint(w, 1);
            gob_put_bytes(w, (const uint8_t *)name, strlen(name));
            gob_put_uint(w, 1);
            gob_put_int(w, type_id(reg, t->fields[i].type));
            gob_put_uint(w, 0);
        }
    }
}

/* A definition: i(-id) then a wireType with exactly one field set (delta = field number + 1). */
static int definition_body(gob_writer *w, const body_ctx *ctx)
{
    const dmsg_gob_registry *reg = ctx->enc->reg;
    const dmsg_gob_type *t = ctx->type;
    int32_t id = type_id(reg, t);
    gob_put_int(w, -(int64_t)id);
    switch (t->kind) {
    case DMSG_GOB_ARRAY:
    case DMSG_GOB_SLICE:
        gob_put_uint(w, t->kind == DMSG_GOB_ARRAY ? GOB_WK_ARRAY : GOB_WK_SLICE);
        gob_put_uint(w, 1);
        put_common_type(w, t->name, id);
        gob_put_uint(w, 1);
        gob_put_int(w, type_id(reg, t->elem));
        if (t->kind == DMSG_GOB_ARRAY && t->len) {
            gob_put_uint(w, 1);
            gob_put_int(w, (int64_t)t->len);
        }
        break;
    case DMSG_GOB_STRUCT:
        gob_put_uint(w, GOB_WK_STRUCT);
        gob_put_uint(w, 1);
        put_struct_type(w, reg, t);
        break;
    case DMSG_GOB_BINARY:
    case DMSG_GOB_TEXT:
        gob_put_uint(w, t->kind == DMSG_GOB_BINARY ? GOB_WK_BINARY : GOB_WK_TEXT);
        gob_put_uint(w, 1);
        put_common_type(w, t->name, id);
        break;
    default:
        return DMSG_EINVAL;
    }
    gob_put_uint(w, 0); /* end of the inner type */
    gob_put_uint(w, 0); /* end of wireType */
    return 0;
}

static bool was_sent(const dmsg_gob_encoder *enc, const dmsg_gob_type *t)
{
    for (size_t i = 0; i < enc->nsent; i++)
        if (enc->sent[i] == t)
            return true;
    return false;
}

/* Pre-order: the type itself, then its fields' types in order, or its element type. */
static int send_definitions(gob_writer *w, dmsg_gob_encoder *enc, const dmsg_gob_type *t,
                            int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EINVAL;
    if (gob_builtin_id(t->kind) || was_sent(enc, t))
        return 0;
    if (enc->nsent == DMSG_GOB_MAX_TYPES)
        return DMSG_ELIMIT;
    body_ctx ctx = {enc, t, NULL};
    int rc = put_message(w, definition_body, &ctx);
    if (rc)
        return rc;
    enc->sent[enc->nsent++] = t;
    if (t->kind == DMSG_GOB_STRUCT) {
        for (size_t i = 0; rc == 0 && i < t->nfields; i++)
            rc = send_definitions(w, enc, t->fields[i].type, depth + 1);
    } else if (t->kind == DMSG_GOB_ARRAY || t->kind == DMSG_GOB_SLICE) {
        rc = send_definitions(w, enc, t->elem, depth + 1);
    }
    return rc;
}

/* ---- values ---- */

static int64_t load_int(const void *p, size_t size)
{
    int8_t i8;
    int16_t i16;
    int32_t i32;
    int64_t i64 = 0;
    switch (size) {
    case 1: memcpy(&i8, p, 1); return i8;
    case 2: memcpy(&i16, p, 2); return i16;
    case 4: memcpy(&i32, p, 4); return i32;
    default: memcpy(&i64, p, 8); return i64;
    }
}

static uint64_t load_uint(const void *p, size_t size)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    uint64_t u64 = 0;
    switch (size) {
    case 1: memcpy(&u8, p, 1); return u8;
    case 2: memcpy(&u16, p, 2); return u16;
    case 4: memcpy(&u32, p, 4); return u32;
    default: memcpy(&u64, p, 8); return u64;
    }
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Go omits a struct field whose value is zero, except arrays and nested structs. */
static bool omitted(const dmsg_gob_type *t, const void *p)
{
    double f;
    switch (t->kind) {
    case DMSG_GOB_BOOL: return !*(const bool *)p;
    case DMSG_GOB_INT: return load_int(p, t->size) == 0;
    case DMSG_GOB_UINT: return load_uint(p, t->size) == 0;
    case DMSG_GOB_FLOAT: memcpy(&f, p, sizeof f); return f == 0;
    case DMSG_GOB_BYTES:
    case DMSG_GOB_STRING:
    case DMSG_GOB_TEXT: return ((const dmsg_gob_bytes *)p)->len == 0;
    case DMSG_GOB_SLICE: return ((const dmsg_gob_slice *)p)->len == 0;
    case DMSG_GOB_BINARY: return all_zero(p, t->len);
    default: return false;
    }
}

static int put_value(gob_writer *w, const dmsg_gob_type *t, const void *p, int depth);

static int put_struct(gob_writer *w, const dmsg_gob_type *t, const void *p, int depth)
{
    int64_t last = -1;
    for (size_t i = 0; i < t->nfields; i++) {
        const dmsg_gob_field *f = &t->fields[i];
        const uint8_t *fp = (const uint8_t *)p + f->offset;
        if (omitted(f->type, fp))
            continue;
        gob_put_uint(w, (uint64_t)((int64_t)i - last));
        int rc = put_value(w, f->type, fp, depth);
        if (rc)
            return rc;
        last = (int64_t)i;
    }
    gob_put_uint(w, 0);
    return 0;
}

static int put_elements(gob_writer *w, const dmsg_gob_type *elem, const uint8_t *items,
                        size_t count, int depth)
{
    gob_put_uint(w, count);
    for (size_t i = 0; i < count; i++) {
        int rc = put_value(w, elem, items + i * elem->size, depth);
        if (rc)
            return rc;
    }
    return 0;
}

/* Checks run on the real pass only (w->buf set), and never on an all-zero marshaler value. */
static int put_marshaled(gob_writer *w, const dmsg_gob_type *t, const uint8_t *p, size_t n)
{
    if (n && !p)
        return DMSG_EINVAL;
    if (w->buf && t->check && !all_zero(p, n)) {
        int rc = t->check(p, n);
        if (rc)
            return rc;
    }
    gob_put_bytes(w, p, n);
    return 0;
}

static int put_value(gob_writer *w, const dmsg_gob_type *t, const void *p, int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EINVAL;
    const dmsg_gob_bytes *view = p;
    const dmsg_gob_slice *slice = p;
    double f;
    switch (t->kind) {
    case DMSG_GOB_BOOL: gob_put_uint(w, *(const bool *)p ? 1 : 0); return 0;
    case DMSG_GOB_INT: gob_put_int(w, load_int(p, t->size)); return 0;
    case DMSG_GOB_UINT: gob_put_uint(w, load_uint(p, t->size)); return 0;
    case DMSG_GOB_FLOAT:
        memcpy(&f, p, sizeof f);
        gob_put_uint(w, gob_float_to_wire(f));
        return 0;
    case DMSG_GOB_BYTES:
    case DMSG_GOB_STRING:
    case DMSG_GOB_TEXT: return put_marshaled(w, t, view->ptr, view->len);
    case DMSG_GOB_BINARY: return put_marshaled(w, t, p, t->len);
    case DMSG_GOB_ARRAY: return put_elements(w, t->elem, p, t->len, depth + 1);
    case DMSG_GOB_SLICE:
        if (slice->len && !slice->items)
            return DMSG_EINVAL;
        return put_elements(w, t->elem, slice->items, slice->len, depth + 1);
    case DMSG_GOB_STRUCT: return put_struct(w, t, p, depth + 1);
    default: return DMSG_EINVAL;
    }
}

/* i(id), then a struct body, or the singleton marker and the value. */
static int value_body(gob_writer *w, const body_ctx *ctx)
{
    gob_put_int(w, type_id(ctx->enc->reg, ctx->type));
    if (ctx->type->kind == DMSG_GOB_STRUCT)
        return put_struct(w, ctx->type, ctx->value, 1);
    gob_put_uint(w, 0);
    return put_value(w, ctx->type, ctx->value, 1);
}

void dmsg_gob_encoder_init(dmsg_gob_encoder *enc, dmsg_gob_registry *reg)
{
    memset(enc, 0, sizeof *enc);
    enc->reg = reg;
}

int dmsg_gob_encode(dmsg_gob_encoder *enc, const dmsg_gob_type *type, const void *value,
                    uint8_t *out, size_t cap, size_t *out_len)
{
    if (!enc || !enc->reg || !type || !value || (!out && cap))
        return DMSG_EINVAL;
    int rc = assign_ids(enc->reg, type, 0);
    if (rc)
        return rc;
    size_t sent_before = enc->nsent;
    gob_writer w = {out, cap, 0, false};
    rc = send_definitions(&w, enc, type, 0);
    if (rc == 0) {
        body_ctx ctx = {enc, type, value};
        rc = put_message(&w, value_body, &ctx);
    }
    if (rc == 0 && w.overflow)
        rc = DMSG_ETOOBIG;
    if (rc) {
        enc->nsent = sent_before;
        return rc;
    }
    *out_len = w.len;
    return 0;
}
