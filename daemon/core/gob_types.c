/* The received type table: definition messages in, compatibility answers out. */
#include <string.h>

#include "dmsg/error.h"
#include "gob_internal.h"

const dmsg_gob_wire_type *gob_lookup(const dmsg_gob_decoder *dec, int32_t id)
{
    for (size_t i = 0; i < dec->ntypes; i++)
        if (dec->types[i].id == id)
            return &dec->types[i];
    return NULL;
}

static bool is_builtin_id(int32_t id)
{
    return id >= DMSG_GOB_ID_BOOL && id <= DMSG_GOB_ID_INTERFACE;
}

/* ---- parsing a wireType value ---- */

static int skip_string(gob_reader *r)
{
    size_t n;
    int rc = gob_read_len(r, &n);
    if (rc == 0)
        r->pos += n;
    return rc;
}

/* CommonType{Name string, Id typeId}: informational only, Go does not compare it. */
static int skip_common(gob_reader *r)
{
    int64_t f = -1;
    int rc;
    int32_t ignored;
    while ((rc = gob_next_field(r, &f, 2)) > 0) {
        rc = f == 0 ? skip_string(r) : gob_read_type_id(r, &ignored);
        if (rc)
            return rc;
    }
    return rc;
}

/* arrayType{CommonType, Elem, Len}, sliceType{CommonType, Elem}, mapType{CommonType, Key, Elem}
 * and gobEncoderType{CommonType} share their first field, so one walker reads all four. */
static int parse_container(gob_reader *r, dmsg_gob_wire_type *wt)
{
    static const size_t nfields[] = {
        [GOB_WK_ARRAY] = 3, [GOB_WK_SLICE] = 2, [GOB_WK_MAP] = 3,
        [GOB_WK_GOBENC] = 1, [GOB_WK_BINARY] = 1, [GOB_WK_TEXT] = 1,
    };
    int64_t f = -1;
    int rc;
    while ((rc = gob_next_field(r, &f, nfields[wt->kind])) > 0) {
        if (f == 0)
            rc = skip_common(r);
        else if (wt->kind == GOB_WK_ARRAY && f == 2)
            rc = gob_read_int(r, &wt->len);
        else if (wt->kind == GOB_WK_MAP && f == 1)
            rc = gob_read_type_id(r, &wt->key);
        else
            rc = gob_read_type_id(r, &wt->elem);
        if (rc)
            return rc;
    }
    return rc;
}

static int keep_field_name(dmsg_gob_decoder *dec, dmsg_gob_wire_field *wf, const uint8_t *name,
                           size_t len)
{
    if (len > DMSG_GOB_MAX_NAME) {
        wf->name_len = DMSG_GOB_NAME_UNMATCHABLE;
        return 0;
    }
    if (DMSG_GOB_NAME_POOL - dec->names_used < len)
        return DMSG_ELIMIT;
    memcpy(dec->names + dec->names_used, name, len);
    wf->name_off = (uint16_t)dec->names_used;
    wf->name_len = (uint16_t)len;
    dec->names_used += len;
    return 0;
}

/* fieldType{Name string, Id typeId} */
static int parse_field(dmsg_gob_decoder *dec, gob_reader *r)
{
    if (dec->nfields == DMSG_GOB_MAX_FIELDS)
        return DMSG_ELIMIT;
    dmsg_gob_wire_field wf = {0};
    int64_t f = -1;
    int rc;
    while ((rc = gob_next_field(r, &f, 2)) > 0) {
        if (f == 0) {
            size_t n;
            rc = gob_read_len(r, &n);
            if (rc == 0)
                rc = keep_field_name(dec, &wf, r->p + r->pos, n);
            r->pos += rc == 0 ? n : 0;
        } else {
            rc = gob_read_type_id(r, &wf.type_id);
        }
        if (rc)
            return rc;
    }
    if (rc == 0)
        dec->fields[dec->nfields++] = wf;
    return rc;
}

/* structType{CommonType, Field []*fieldType} */
static int parse_struct(dmsg_gob_decoder *dec, gob_reader *r, dmsg_gob_wire_type *wt)
{
    int64_t f = -1;
    int rc;
    wt->first_field = (uint16_t)dec->nfields;
    while ((rc = gob_next_field(r, &f, 2)) > 0) {
        if (f == 0) {
            rc = skip_common(r);
            if (rc)
                return rc;
            continue;
        }
        size_t count;
        rc = gob_read_len(r, &count);
        for (size_t i = 0; rc == 0 && i < count; i++) {
            rc = gob_left(r) ? parse_field(dec, r) : DMSG_EGOB;
            wt->nfields++;
        }
        if (rc)
            return rc;
    }
    return rc;
}

/* wireType{ArrayT, SliceT, StructT, MapT, GobEncoderT, BinaryMarshalerT, TextMarshalerT}:
 * Go's encoder sets exactly one; we refuse anything else. */
static int parse_wire_type(dmsg_gob_decoder *dec, gob_reader *r, dmsg_gob_wire_type *wt)
{
    int64_t f = -1;
    int rc, kinds = 0;
    while ((rc = gob_next_field(r, &f, GOB_WK_COUNT)) > 0) {
        wt->kind = (uint8_t)(f + 1);
        kinds++;
        rc = wt->kind == GOB_WK_STRUCT ? parse_struct(dec, r, wt) : parse_container(r, wt);
        if (rc)
            return rc;
    }
    if (rc)
        return rc;
    return kinds == 1 ? 0 : DMSG_EGOB;
}

int gob_define(dmsg_gob_decoder *dec, int32_t id, gob_reader *r)
{
    if (id < GOB_MIN_DEFINABLE_ID || gob_lookup(dec, id))
        return DMSG_EGOB; /* Go: "duplicate type received" */
    if (dec->ntypes == DMSG_GOB_MAX_TYPES)
        return DMSG_ELIMIT;
    size_t saved_fields = dec->nfields, saved_names = dec->names_used;
    dmsg_gob_wire_type wt = {.id = id};
    int rc = parse_wire_type(dec, r, &wt);
    if (rc == 0 && gob_left(r) != 0)
        rc = DMSG_EGOB; /* Go: "extra data in buffer" */
    if (rc) {
        dec->nfields = saved_fields;
        dec->names_used = saved_names;
        return rc;
    }
    dec->types[dec->ntypes++] = wt;
    return 0;
}

/* ---- compatibility ---- */

static int ignorable(const dmsg_gob_decoder *dec, int32_t id, uint64_t *visited)
{
    if (is_builtin_id(id))
        return 0;
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id);
    if (!wt)
        return DMSG_EGOB; /* Go: "bad data: undefined type" */
    uint64_t bit = (uint64_t)1 << (wt - dec->types);
    if (*visited & bit)
        return 0; /* recursive type: already being checked */
    *visited |= bit;
    int rc = 0;
    switch (wt->kind) {
    case GOB_WK_MAP:
        rc = ignorable(dec, wt->key, visited);
        /* fall through */
    case GOB_WK_ARRAY:
    case GOB_WK_SLICE:
        return rc ? rc : ignorable(dec, wt->elem, visited);
    case GOB_WK_STRUCT:
        for (size_t i = 0; rc == 0 && i < wt->nfields; i++) {
            const dmsg_gob_wire_field *wf = &dec->fields[wt->first_field + i];
            rc = wf->name_len == 0 ? DMSG_EGOB : ignorable(dec, wf->type_id, visited);
        }
        return rc;
    case GOB_WK_GOBENC:
    case GOB_WK_BINARY:
    case GOB_WK_TEXT:
        return 0;
    default:
        return DMSG_EGOB;
    }
}

int gob_check_ignorable(const dmsg_gob_decoder *dec, int32_t id)
{
    uint64_t visited = 0;
    return ignorable(dec, id, &visited);
}

const dmsg_gob_field *gob_match_field(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema,
                                      const dmsg_gob_wire_field *wf)
{
    if (wf->name_len == DMSG_GOB_NAME_UNMATCHABLE)
        return NULL;
    const char *name = dec->names + wf->name_off;
    for (size_t i = 0; i < schema->nfields; i++) {
        const dmsg_gob_field *f = &schema->fields[i];
        if (strlen(f->name) == wf->name_len && memcmp(f->name, name, wf->name_len) == 0)
            return f;
    }
    return NULL;
}

int gob_check_struct(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema,
                     const dmsg_gob_wire_type *wt, int depth, size_t *matched)
{
    for (size_t i = 0; i < wt->nfields; i++) {
        const dmsg_gob_wire_field *wf = &dec->fields[wt->first_field + i];
        if (wf->name_len == 0)
            return DMSG_EGOB; /* Go: "empty name for remote field" */
        const dmsg_gob_field *local = gob_match_field(dec, schema, wf);
        if (local) {
            int rc = gob_check_compatible(dec, local->type, wf->type_id, depth);
            if (rc == DMSG_EGOBTYPE && (local->flags & DMSG_GOB_FIELD_LENIENT))
                local = NULL;
            else if (rc)
                return rc;
        }
        if (!local) {
            int rc = gob_check_ignorable(dec, wf->type_id);
            if (rc)
                return rc;
        } else if (matched) {
            (*matched)++;
        }
    }
    return 0;
}

int gob_check_compatible(const dmsg_gob_decoder *dec, const dmsg_gob_type *schema, int32_t id,
                         int depth)
{
    if (depth > DMSG_GOB_MAX_DEPTH)
        return DMSG_EDEPTH;
    int32_t builtin = gob_builtin_id(schema->kind);
    if (builtin)
        return id == builtin ? 0 : DMSG_EGOBTYPE;
    const dmsg_gob_wire_type *wt = gob_lookup(dec, id);
    if (!wt)
        return is_builtin_id(id) ? DMSG_EGOBTYPE : DMSG_EGOB;
    switch (schema->kind) {
    case DMSG_GOB_BINARY:
        return wt->kind == GOB_WK_BINARY ? 0 : DMSG_EGOBTYPE;
    case DMSG_GOB_TEXT:
        return wt->kind == GOB_WK_TEXT ? 0 : DMSG_EGOBTYPE;
    case DMSG_GOB_ARRAY:
        if (wt->kind != GOB_WK_ARRAY || wt->len < 0 || (uint64_t)wt->len != schema->len)
            return DMSG_EGOBTYPE;
        return gob_check_compatible(dec, schema->elem, wt->elem, depth + 1);
    case DMSG_GOB_SLICE:
        if (wt->kind != GOB_WK_SLICE)
            return DMSG_EGOBTYPE;
        return gob_check_compatible(dec, schema->elem, wt->elem, depth + 1);
    case DMSG_GOB_STRUCT:
        if (wt->kind != GOB_WK_STRUCT)
            return DMSG_EGOBTYPE;
        return gob_check_struct(dec, schema, wt, depth + 1, NULL);
    default:
        return DMSG_EINVAL;
    }
}
