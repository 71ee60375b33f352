/* The gob decoder: message framing, then one value walked against the sender's definitions. */
#include <string.h>

#include "dmsg/error.h"
#include "gob_internal.h"

_Static_assert(DMSG_GOB_MAX_TYPES <= 64, "type visit sets are 64-bit masks");
_Static_assert(DMSG_GOB_NAME_POOL <= 0xffff, "name offsets are 16-bit");

void dmsg_gob_decoder_init(dmsg_gob_decoder *dec, size_t max_message, void *arena,
                           size_t arena_cap)
{
    memset(dec, 0, sizeof *dec);
    dec->max_message = max_message;
    dec->arena = arena;
    dec->arena_cap = arena ? arena_cap : 0;
}

/* ---- values ---- */

static int read_value(dmsg_gob_decoder *dec, gob_reader *r, int32_t id, const dmsg_gob_type *t,
                      void *dst, int depth);

static int skip_value(dmsg_gob_decoder *dec, gob_reader *r, int32_t id, int depth);

/* A struct body: fields by delta until a zero delta or the end of the message (Go stops at
 * either). t NULL skips every field. */
static int read_struct(dmsg_gob_decoder *dec, gob_reader *r, const dmsg_gob_wire_type *wt,
                       const dmsg_gob_type *t, void *dst, int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EDEPTH;
    int64_t f = -1;
    int rc;
    while ((rc = gob_next_field(r, &f, wt->nfields)) > 0) {
        const dmsg_gob_wire_field *wf = &dec->fields[wt->first_field + f];
        const dmsg_gob_field *local = t ? gob_match_field(dec, t, wf) : NULL;
        if (local && (local->flags & DMSG_GOB_FIELD_LENIENT) &&
            gob_check_compatible(dec, local->type, wf->type_id, depth) != 0)
            local = NULL;
        if (local)
            rc = read_value(dec, r, wf->type_id, local->type, (uint8_t *)dst + local->offset,
                            depth);
        else
            rc = skip_value(dec, r, wf->type_id, depth);
        if (rc)
            return rc;
    }
    return rc;
}

/* Elements of arrays and slices: Go refuses an element that starts at the end of the message,
 * which also bounds every loop by the bytes that remain. */
static int skip_elements(dmsg_gob_decoder *dec, gob_reader *r, uint64_t count, int32_t elem,
                         int32_t key, int depth)
{
    for (uint64_t i = 0; i < count; i++) {
        if (gob_left(r) == 0)
            return DMSG_EGOB;
        int rc = key ? skip_value(dec, r, key, depth) : 0;
        if (rc == 0)
            rc = skip_value(dec, r, elem, depth);
        if (rc)
            return rc;
    }
    return 0;
}

static int skip_bytes(gob_reader *r)
{
    size_t n;
    int rc = gob_read_len(r, &n);
    if (rc == 0)
        r->pos += n;
    return rc;
}

static int skip_builtin(gob_reader *r, int32_t id)
{
    uint64_t u;
    int rc;
    switch (id) {
    case DMSG_GOB_ID_BYTES:
    case DMSG_GOB_ID_STRING:
        return skip_bytes(r);
    case DMSG_GOB_ID_COMPLEX:
        rc = gob_read_uint(r, &u);
        return rc ? rc : gob_read_uint(r, &u);
    case DMSG_GOB_ID_INTERFACE: {
        /* Only a nil interface (empty type name) is skipped: a concrete value embeds its own
         * type definitions, which we do not take from an unknown field. */
        size_t n;
        rc = gob_read_len(r, &n);
        return rc ? rc : n ? DMSG_EGOBTYPE : 0;
    }
    default: /* bool, int, uint, float */
        return gob_read_uint(r, &u);
    }
}

static int skip_value(dmsg_gob_decoder *dec, gob_reader *r, int32_t id, int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EDEPTH;
    if (id >= DMSG_GOB_ID_BOOL && id <= DMSG_GOB_ID_INTERFACE)
        return skip_builtin(r, id);
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id);
    if (!wt)
        return DMSG_EGOB;
    uint64_t count;
    int rc;
    switch (wt->kind) {
    case GOB_WK_ARRAY:
        rc = gob_read_uint(r, &count);
        if (rc == 0 && count != (uint64_t)wt->len)
            rc = DMSG_EGOB;
        return rc ? rc : skip_elements(dec, r, count, wt->elem, 0, depth + 1);
    case GOB_WK_SLICE:
    case GOB_WK_MAP:
        rc = gob_read_uint(r, &count);
        return rc ? rc
                  : skip_elements(dec, r, count, wt->elem, wt->kind == GOB_WK_MAP ? wt->key : 0,
                                  depth + 1);
    case GOB_WK_STRUCT:
        return read_struct(dec, r, wt, NULL, NULL, depth + 1);
    case GOB_WK_GOBENC:
    case GOB_WK_BINARY:
    case GOB_WK_TEXT:
        return skip_bytes(r);
    default:
        return DMSG_EGOB;
    }
}

static int store_int(void *dst, size_t size, int64_t v)
{
    switch (size) {
    case 1: {
        if (v < INT8_MIN || v > INT8_MAX)
            return DMSG_EGOB;
        int8_t x = (int8_t)v;
        memcpy(dst, &x, 1);
        return 0;
    }
    case 2: {
        if (v < INT16_MIN || v > INT16_MAX)
            return DMSG_EGOB;
        int16_t x = (int16_t)v;
        memcpy(dst, &x, 2);
        return 0;
    }
    case 4: {
        if (v < INT32_MIN || v > INT32_MAX)
            return DMSG_EGOB;
        int32_t x = (int32_t)v;
        memcpy(dst, &x, 4);
        return 0;
    }
    case 8:
        memcpy(dst, &v, 8);
        return 0;
    default:
        return DMSG_EINVAL;
    }
}

static int store_uint(void *dst, size_t size, uint64_t v)
{
    switch (size) {
    case 1: {
        if (v > UINT8_MAX)
            return DMSG_EGOB;
        uint8_t x = (uint8_t)v;
        memcpy(dst, &x, 1);
        return 0;
    }
    case 2: {
        if (v > UINT16_MAX)
            return DMSG_EGOB;
        uint16_t x = (uint16_t)v;
        memcpy(dst, &x, 2);
        return 0;
    }
    case 4: {
        if (v > UINT32_MAX)
            return DMSG_EGOB;
        uint32_t x = (uint32_t)v;
        memcpy(dst, &x, 4);
        return 0;
    }
    case 8:
        memcpy(dst, &v, 8);
        return 0;
    default:
        return DMSG_EINVAL;
    }
}

static int read_view(gob_reader *r, const dmsg_gob_type *t, void *dst)
{
    size_t n;
    int rc = gob_read_len(r, &n);
    if (rc)
        return rc;
    dmsg_gob_bytes view = {r->p + r->pos, n};
    r->pos += n;
    if (t->kind == DMSG_GOB_TEXT && t->check && (rc = t->check(view.ptr, n)) != 0)
        return rc;
    memcpy(dst, &view, sizeof view);
    return 0;
}

static int read_binary(gob_reader *r, const dmsg_gob_type *t, void *dst)
{
    size_t n;
    int rc = gob_read_len(r, &n);
    if (rc)
        return rc;
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    if (t->check && (rc = t->check(p, n)) != 0)
        return rc;
    if (n != t->len)
        return DMSG_EGOB;
    memcpy(dst, p, n);
    return 0;
}

static void *arena_alloc(dmsg_gob_decoder *dec, uint64_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    size_t bytes = (size_t)count * size;
    uintptr_t base = (uintptr_t)(dec->arena + dec->arena_used);
    size_t pad = (_Alignof(max_align_t) - base % _Alignof(max_align_t)) % _Alignof(max_align_t);
    if (!dec->arena || dec->arena_cap - dec->arena_used < pad ||
        dec->arena_cap - dec->arena_used - pad < bytes)
        return NULL;
    void *p = dec->arena + dec->arena_used + pad;
    dec->arena_used += pad + bytes;
    memset(p, 0, bytes);
    return p;
}

static int read_elements(dmsg_gob_decoder *dec, gob_reader *r, int32_t elem_id,
                         const dmsg_gob_type *elem, uint8_t *items, uint64_t count, int depth)
{
    for (uint64_t i = 0; i < count; i++) {
        if (gob_left(r) == 0)
            return DMSG_EGOB;
        int rc = read_value(dec, r, elem_id, elem, items + i * elem->size, depth);
        if (rc)
            return rc;
    }
    return 0;
}

static int read_container(dmsg_gob_decoder *dec, gob_reader *r, int32_t id,
                          const dmsg_gob_type *t, void *dst, int depth)
{
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id); /* compatibility was checked */
    if (!wt)
        return DMSG_EGOB;
    if (t->kind == DMSG_GOB_STRUCT)
        return read_struct(dec, r, wt, t, dst, depth + 1);
    uint64_t count;
    int rc = gob_read_uint(r, &count);
    if (rc)
        return rc;
    if (t->kind == DMSG_GOB_ARRAY) {
        if (count != t->len)
            return DMSG_EGOB;
        return read_elements(dec, r, wt->elem, t->elem, dst, count, depth + 1);
    }
    if (count > gob_left(r))
        return DMSG_EGOB; /* every element takes at least one byte */
    dmsg_gob_slice slice = {NULL, (size_t)count};
    if (count) {
        slice.items = arena_alloc(dec, count, t->elem->size);
        if (!slice.items)
            return DMSG_ELIMIT;
    }
    memcpy(dst, &slice, sizeof slice);
    return read_elements(dec, r, wt->elem, t->elem, slice.items, count, depth + 1);
}

static int read_value(dmsg_gob_decoder *dec, gob_reader *r, int32_t id, const dmsg_gob_type *t,
                      void *dst, int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EDEPTH;
    uint64_t u;
    int64_t i;
    int rc;
    switch (t->kind) {
    case DMSG_GOB_BOOL:
        if ((rc = gob_read_uint(r, &u)) == 0)
            *(bool *)dst = u != 0;
        return rc;
    case DMSG_GOB_INT:
        rc = gob_read_int(r, &i);
        return rc ? rc : store_int(dst, t->size, i);
    case DMSG_GOB_UINT:
        rc = gob_read_uint(r, &u);
        return rc ? rc : store_uint(dst, t->size, u);
    case DMSG_GOB_FLOAT:
        if ((rc = gob_read_uint(r, &u)) == 0) {
            double f = gob_float_from_wire(u);
            memcpy(dst, &f, sizeof f);
        }
        return rc;
    case DMSG_GOB_BYTES:
    case DMSG_GOB_STRING:
    case DMSG_GOB_TEXT:
        return read_view(r, t, dst);
    case DMSG_GOB_BINARY:
        return read_binary(r, t, dst);
    case DMSG_GOB_ARRAY:
    case DMSG_GOB_SLICE:
    case DMSG_GOB_STRUCT:
        return read_container(dec, r, id, t, dst, depth);
    default:
        return DMSG_EINVAL;
    }
}

/* Top-level values: a struct starts with its first field delta; anything else is preceded by a
 * zero delta (Go's singleton marker). */
static int read_singleton_marker(gob_reader *r)
{
    uint64_t marker;
    int rc = gob_read_uint(r, &marker);
    return rc ? rc : marker ? DMSG_EGOB : 0;
}

static int decode_discarded(dmsg_gob_decoder *dec, gob_reader *r, int32_t id)
{
    int rc = gob_check_ignorable(dec, id);
    if (rc)
        return rc;
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id);
    if (wt && wt->kind == GOB_WK_STRUCT)
        return read_struct(dec, r, wt, NULL, NULL, 1);
    rc = read_singleton_marker(r);
    return rc ? rc : skip_value(dec, r, id, 1);
}

static int decode_struct_top(dmsg_gob_decoder *dec, gob_reader *r, int32_t id,
                             const dmsg_gob_type *type, void *out)
{
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id);
    if (!wt)
        return id >= DMSG_GOB_ID_BOOL && id <= DMSG_GOB_ID_INTERFACE ? DMSG_EGOBTYPE : DMSG_EGOB;
    if (wt->kind != GOB_WK_STRUCT)
        return DMSG_EGOBTYPE;
    size_t matched = 0;
    int rc = gob_check_struct(dec, type, wt, 1, &matched);
    if (rc)
        return rc;
    /* Go: "type mismatch: no fields matched compiling decoder" (top level only) */
    if (matched == 0 && type->nfields > 0 && wt->nfields > 0)
        return DMSG_EGOBTYPE;
    return read_struct(dec, r, wt, type, out, 1);
}

static int decode_value_message(dmsg_gob_decoder *dec, gob_reader *r, int32_t id,
                                const dmsg_gob_type *type, void *out)
{
    dec->arena_used = 0;
    if (!type)
        return decode_discarded(dec, r, id);
    memset(out, 0, type->size);
    if (type->kind == DMSG_GOB_STRUCT)
        return decode_struct_top(dec, r, id, type, out);
    int rc = gob_check_compatible(dec, type, id, 1);
    if (rc == 0)
        rc = read_singleton_marker(r);
    return rc ? rc : read_value(dec, r, id, type, out, 1);
}

/* ---- messages ---- */

typedef struct gob_message {
    size_t next;   /* offset just past the message */
    gob_reader body; /* positioned after the type id */
    int64_t id;    /* < 0: definition of -id; >= 0: value of type id */
} gob_message;

static int next_message(const dmsg_gob_decoder *dec, const uint8_t *in, size_t len, size_t pos,
                        gob_message *m)
{
    uint64_t n;
    size_t used;
    int rc = gob_peek_uint(in + pos, len - pos, &n, &used);
    if (rc)
        return rc;
    if (n > dec->max_message)
        return DMSG_ETOOBIG;
    if (n == 0)
        return DMSG_EGOB;
    if (len - pos - used < n)
        return DMSG_EAGAIN;
    m->body = (gob_reader){in + pos + used, (size_t)n, 0};
    m->next = pos + used + (size_t)n;
    rc = gob_read_int(&m->body, &m->id);
    if (rc == 0 && (m->id > INT32_MAX || m->id < -(int64_t)INT32_MAX))
        rc = DMSG_EGOB;
    return rc;
}

int dmsg_gob_decode(dmsg_gob_decoder *dec, const uint8_t *in, size_t len,
                    const dmsg_gob_type *type, void *out, size_t *consumed)
{
    if (!dec || !consumed || (type && !out) || (!in && len))
        return DMSG_EINVAL;
    if (len == 0)
        return DMSG_EAGAIN;
    gob_message m;
    size_t pos = 0, definitions = 0;
    int rc;
    /* First find a complete value message, so that an incomplete input changes nothing. */
    while ((rc = next_message(dec, in, len, pos, &m)) == 0 && m.id < 0) {
        if (++definitions > DMSG_GOB_MAX_TYPES)
            return DMSG_ELIMIT;
        pos = m.next;
    }
    if (rc)
        return rc;
    for (pos = 0; (rc = next_message(dec, in, len, pos, &m)) == 0 && m.id < 0; pos = m.next) {
        rc = gob_define(dec, (int32_t)-m.id, &m.body);
        if (rc)
            return rc;
    }
    if (rc)
        return rc;
    rc = decode_value_message(dec, &m.body, (int32_t)m.id, type, out);
    if (rc == 0)
        *consumed = m.next;
    return rc;
}
