/* gob primitives: integers, lengths, struct field deltas, and the builtin schemas. */
#include <string.h>

#include "dmsg/error.h"
#include "gob_internal.h"

#define BUILTIN(kind_, size_) { .kind = (kind_), .name = "", .size = (size_) }

const dmsg_gob_type dmsg_gob_type_bool = BUILTIN(DMSG_GOB_BOOL, sizeof(bool));
const dmsg_gob_type dmsg_gob_type_int8 = BUILTIN(DMSG_GOB_INT, 1);
const dmsg_gob_type dmsg_gob_type_int16 = BUILTIN(DMSG_GOB_INT, 2);
const dmsg_gob_type dmsg_gob_type_int32 = BUILTIN(DMSG_GOB_INT, 4);
const dmsg_gob_type dmsg_gob_type_int64 = BUILTIN(DMSG_GOB_INT, 8);
const dmsg_gob_type dmsg_gob_type_uint8 = BUILTIN(DMSG_GOB_UINT, 1);
const dmsg_gob_type dmsg_gob_type_uint16 = BUILTIN(DMSG_GOB_UINT, 2);
const dmsg_gob_type dmsg_gob_type_uint32 = BUILTIN(DMSG_GOB_UINT, 4);
const dmsg_gob_type dmsg_gob_type_uint64 = BUILTIN(DMSG_GOB_UINT, 8);
const dmsg_gob_type dmsg_gob_type_float64 = BUILTIN(DMSG_GOB_FLOAT, sizeof(double));
const dmsg_gob_type dmsg_gob_type_string = BUILTIN(DMSG_GOB_STRING, sizeof(dmsg_gob_bytes));
const dmsg_gob_type dmsg_gob_type_bytes = BUILTIN(DMSG_GOB_BYTES, sizeof(dmsg_gob_bytes));

int32_t gob_builtin_id(dmsg_gob_kind kind)
{
    switch (kind) {
    case DMSG_GOB_BOOL: return DMSG_GOB_ID_BOOL;
    case DMSG_GOB_INT: return DMSG_GOB_ID_INT;
    case DMSG_GOB_UINT: return DMSG_GOB_ID_UINT;
    case DMSG_GOB_FLOAT: return DMSG_GOB_ID_FLOAT;
    case DMSG_GOB_BYTES: return DMSG_GOB_ID_BYTES;
    case DMSG_GOB_STRING: return DMSG_GOB_ID_STRING;
    default: return 0;
    }
}

/* Values 0..127 are one byte; otherwise a byte holding minus the byte count (1..8) is followed
 * by the value big-endian. Go accepts non-minimal forms, so do we. */
static int decode_uint(const uint8_t *p, size_t len, uint64_t *v, size_t *used, int short_err)
{
    if (len == 0)
        return short_err;
    uint8_t b = p[0];
    if (b <= 0x7f) {
        *v = b;
        *used = 1;
        return 0;
    }
    size_t n = (size_t)(256u - b);
    if (n > 8)
        return DMSG_EGOB;
    if (len - 1 < n)
        return short_err;
    uint64_t x = 0;
    for (size_t i = 1; i <= n; i++)
        x = x << 8 | p[i];
    *v = x;
    *used = n + 1;
    return 0;
}

int gob_peek_uint(const uint8_t *p, size_t len, uint64_t *v, size_t *used)
{
    return decode_uint(p, len, v, used, DMSG_EAGAIN);
}

int gob_read_uint(gob_reader *r, uint64_t *v)
{
    size_t used;
    int rc = decode_uint(r->p + r->pos, gob_left(r), v, &used, DMSG_EGOB);
    if (rc == 0)
        r->pos += used;
    return rc;
}

int gob_read_int(gob_reader *r, int64_t *v)
{
    uint64_t u;
    int rc = gob_read_uint(r, &u);
    if (rc)
        return rc;
    uint64_t magnitude = u >> 1;
    *v = (u & 1) ? -(int64_t)magnitude - 1 : (int64_t)magnitude;
    return 0;
}

int gob_read_len(gob_reader *r, size_t *n)
{
    uint64_t u;
    int rc = gob_read_uint(r, &u);
    if (rc)
        return rc;
    if (u > gob_left(r))
        return DMSG_EGOB;
    *n = (size_t)u;
    return 0;
}

int gob_read_type_id(gob_reader *r, int32_t *id)
{
    int64_t v;
    int rc = gob_read_int(r, &v);
    if (rc)
        return rc;
    if (v < INT32_MIN || v > INT32_MAX)
        return DMSG_EGOB;
    *id = (int32_t)v;
    return 0;
}

int gob_next_field(gob_reader *r, int64_t *fieldnum, size_t nfields)
{
    if (gob_left(r) == 0)
        return 0;
    uint64_t delta;
    int rc = gob_read_uint(r, &delta);
    if (rc)
        return rc;
    if (delta == 0)
        return 0;
    /* fields left after the current one; compared unsigned so a huge delta cannot wrap */
    uint64_t room = (uint64_t)((int64_t)nfields - 1 - *fieldnum);
    if (delta > room)
        return DMSG_EGOB;
    *fieldnum += (int64_t)delta;
    return 1;
}

void gob_put_raw(gob_writer *w, const uint8_t *p, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (n && w->buf) /* no buffer: only counting */
        memcpy(w->buf + w->len, p, n);
    w->len += n;
}

void gob_put_uint(gob_writer *w, uint64_t v)
{
    uint8_t tmp[9];
    if (v <= 0x7f) {
        tmp[0] = (uint8_t)v;
        gob_put_raw(w, tmp, 1);
        return;
    }
    size_t n = 0;
    for (uint64_t x = v; x; x >>= 8)
        n++;
    tmp[0] = (uint8_t)(256u - n);
    for (size_t i = 0; i < n; i++)
        tmp[n - i] = (uint8_t)(v >> (8 * i));
    gob_put_raw(w, tmp, n + 1);
}

void gob_put_int(gob_writer *w, int64_t v)
{
    uint64_t u = v < 0 ? ((uint64_t)(-(v + 1)) << 1) | 1 : (uint64_t)v << 1;
    gob_put_uint(w, u);
}

void gob_put_bytes(gob_writer *w, const uint8_t *p, size_t n)
{
    gob_put_uint(w, n);
    gob_put_raw(w, p, n);
}

static uint64_t reverse_bytes(uint64_t x)
{
    uint64_t y = 0;
    for (int i = 0; i < 8; i++, x >>= 8)
        y = y << 8 | (x & 0xff);
    return y;
}

uint64_t gob_float_to_wire(double f)
{
    uint64_t bits;
    memcpy(&bits, &f, sizeof bits);
    return reverse_bytes(bits);
}

double gob_float_from_wire(uint64_t u)
{
    uint64_t bits = reverse_bytes(u);
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}
