/* Go encoding/gob, the subset the DMSG handshake objects and Go net/rpc use, driven by C schemas.
 *
 * A schema (dmsg_gob_type) describes a Go type and where its value lives in a C struct. The same
 * schema drives both directions:
 *
 *   DECODE  dmsg_gob_decode() reads type-definition messages into the decoder's type table (ids
 *           are whatever the sender chose; the table persists across calls, as it does on a Go
 *           stream) and then one value message. Fields are matched by name; unknown fields of
 *           any kind are skipped by walking the sender's definition; a field whose wire type
 *           does not fit the C field is refused as Go refuses it. Nothing is allocated: strings
 *           and byte slices are views into the input, slices of other types are carved from a
 *           caller-supplied arena. Every count is checked against the bytes that remain, the
 *           type table and the nesting depth are bounded.
 *
 *   ENCODE  dmsg_gob_encode() writes the definitions not yet sent on this encoder, then the value,
 *           using Go's zero-field omission and Go's type-id assignment order, so that output is
 *           byte-identical to a Go encoder in a process with the same registry history (a fresh
 *           registry = a fresh Go process).
 *
 * Acceptance follows the Go decoder (gob-and-rpc.md A.9), with these deliberate differences,
 * all on input no Go encoder produces: a PubKey-style check refuses instead of crashing; a
 * non-nil interface value in an unknown field is refused (DMSG_EGOBTYPE); type ids must fit in
 * int32; a definition must set exactly one kind; nesting deeper than DMSG_GOB_MAX_DEPTH is
 * refused. Like Go, bytes left in the value message after the value are ignored, and bytes after
 * the value message are left unconsumed (see *consumed).
 *
 * Error codes: DMSG_EAGAIN (the input holds no complete value yet; nothing was consumed or
 * changed), DMSG_EGOB (malformed data: bad integer, length past the message, field number out of
 * range, array length mismatch, duplicate or undefined type id, value out of range for the C
 * field), DMSG_EGOBTYPE (wire type incompatible with the schema), DMSG_EDEPTH, DMSG_ETOOBIG
 * (message longer than the decoder's limit, or output buffer too small), DMSG_ELIMIT (type
 * table, field-name pool or arena full), and whatever a value check returns (DMSG_EKEY for keys).
 * After any error but DMSG_EAGAIN the stream is unusable: discard the decoder. */
#ifndef DMSG_GOB_H
#define DMSG_GOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMSG_GOB_MAX_TYPES 32      /* user type definitions per decoder / encoder / registry */
#define DMSG_GOB_MAX_FIELDS 128    /* struct fields summed over all definitions of one decoder */
#define DMSG_GOB_NAME_POOL 2048    /* bytes of field names kept by one decoder */
#define DMSG_GOB_MAX_NAME 64       /* longer received field names never match a schema field */
#define DMSG_GOB_MAX_DEPTH 16      /* nested structs/arrays/slices/maps in one value */
#define DMSG_GOB_FIRST_USER_ID 65  /* first id Go assigns to a user type */

/* Predefined gob type ids (never defined on the wire). */
enum dmsg_gob_builtin_id {
    DMSG_GOB_ID_BOOL = 1,
    DMSG_GOB_ID_INT = 2,
    DMSG_GOB_ID_UINT = 3,
    DMSG_GOB_ID_FLOAT = 4,
    DMSG_GOB_ID_BYTES = 5,
    DMSG_GOB_ID_STRING = 6,
    DMSG_GOB_ID_COMPLEX = 7,
    DMSG_GOB_ID_INTERFACE = 8
};

/* A string or []byte value: a view (into the decoder's input, or the caller's bytes to encode). */
typedef struct dmsg_gob_bytes {
    const uint8_t *ptr;
    size_t len;
} dmsg_gob_bytes;

/* A slice of non-byte elements: len elements of elem->size bytes each, contiguous. */
typedef struct dmsg_gob_slice {
    void *items;
    size_t len;
} dmsg_gob_slice;

typedef enum dmsg_gob_kind {
    DMSG_GOB_BOOL = 1, /* C bool */
    DMSG_GOB_INT,      /* int8_t/int16_t/int32_t/int64_t by size; any Go signed integer type */
    DMSG_GOB_UINT,     /* uint8_t..uint64_t by size; any Go unsigned integer type */
    DMSG_GOB_FLOAT,    /* double (size 8) */
    DMSG_GOB_BYTES,    /* dmsg_gob_bytes; Go []byte and named byte slices */
    DMSG_GOB_STRING,   /* dmsg_gob_bytes; Go string (no encoding check, as in Go) */
    DMSG_GOB_ARRAY,    /* C array of len elements; Go [N]T, e.g. [32]byte = N gob uints */
    DMSG_GOB_SLICE,    /* dmsg_gob_slice; Go []T for T other than byte */
    DMSG_GOB_STRUCT,   /* C struct described by fields */
    DMSG_GOB_BINARY,   /* uint8_t[len]; a Go type with MarshalBinary (PubKey, UUID): byte string */
    DMSG_GOB_TEXT      /* dmsg_gob_bytes; a Go type with only MarshalText (net.IP): byte string */
} dmsg_gob_kind;

/* The field's wire type may be incompatible without failing the decode: the field is then
 * skipped like an unknown one. For fields added by newer peers whose Go type we only infer. */
#define DMSG_GOB_FIELD_LENIENT 1u

struct dmsg_gob_field;

typedef struct dmsg_gob_type {
    dmsg_gob_kind kind;
    const char *name;                  /* CommonType.Name sent in definitions; "" if unnamed */
    size_t size;                       /* sizeof the C value */
    const struct dmsg_gob_type *elem;  /* ARRAY, SLICE */
    size_t len;                        /* ARRAY: element count; BINARY: exact byte length */
    const struct dmsg_gob_field *fields; /* STRUCT, in Go declaration order */
    size_t nfields;
    /* BINARY/TEXT: checks bytes received (and bytes about to be sent, unless all zero);
     * returns 0 or a DMSG_E* code. NULL accepts any bytes of the right length. */
    int (*check)(const uint8_t *bytes, size_t len);
} dmsg_gob_type;

typedef struct dmsg_gob_field {
    const char *name; /* Go field name, matched exactly */
    size_t offset;    /* offsetof in the C struct */
    const dmsg_gob_type *type;
    unsigned flags;   /* DMSG_GOB_FIELD_* */
} dmsg_gob_field;

/* Schemas of the builtin Go types, for fields and top-level values. */
extern const dmsg_gob_type dmsg_gob_type_bool;
extern const dmsg_gob_type dmsg_gob_type_int8, dmsg_gob_type_int16, dmsg_gob_type_int32,
    dmsg_gob_type_int64;
extern const dmsg_gob_type dmsg_gob_type_uint8, dmsg_gob_type_uint16, dmsg_gob_type_uint32,
    dmsg_gob_type_uint64;
extern const dmsg_gob_type dmsg_gob_type_float64;
extern const dmsg_gob_type dmsg_gob_type_string;
extern const dmsg_gob_type dmsg_gob_type_bytes;

/* ---------------------------------------------------------------------------------------------
 * Decoder: one per gob stream (one per dmsg handshake object; one per direction of an RPC
 * stream). Fixed size, about 4 KiB; the fields are private. */

typedef struct dmsg_gob_wire_field {
    int32_t type_id;
    uint16_t name_off;
    uint16_t name_len; /* DMSG_GOB_NAME_UNMATCHABLE when longer than DMSG_GOB_MAX_NAME */
} dmsg_gob_wire_field;
#define DMSG_GOB_NAME_UNMATCHABLE 0xffffu

typedef struct dmsg_gob_wire_type {
    int64_t len;     /* array length */
    int32_t id;
    int32_t elem;    /* array, slice, map element */
    int32_t key;     /* map key */
    uint16_t first_field;
    uint16_t nfields;
    uint8_t kind;    /* private wire kind */
} dmsg_gob_wire_type;

typedef struct dmsg_gob_decoder {
    size_t max_message;
    uint8_t *arena;
    size_t arena_cap;
    size_t arena_used;
    size_t ntypes;
    size_t nfields;
    size_t names_used;
    dmsg_gob_wire_type types[DMSG_GOB_MAX_TYPES];
    dmsg_gob_wire_field fields[DMSG_GOB_MAX_FIELDS];
    char names[DMSG_GOB_NAME_POOL];
} dmsg_gob_decoder;

/* max_message: longest message accepted (e.g. 64 KiB for handshake objects, 1 MiB for RPC).
 * arena/arena_cap: memory for decoded non-byte slices, reused by every decode call (so such
 * values live until the next call); may be NULL/0 when no schema has such slices. */
void dmsg_gob_decoder_init(dmsg_gob_decoder *dec, size_t max_message, void *arena,
                           size_t arena_cap);

/* Decodes the next value of the stream in[0..len) into out, described by type; type NULL reads
 * and discards the value (Go's Decode(nil)). *consumed gets the bytes used: the definition
 * messages and the value message. out is zeroed first and is undefined after an error; views in
 * out point into in. See the top of this file for the error codes. */
int dmsg_gob_decode(dmsg_gob_decoder *dec, const uint8_t *in, size_t len,
                    const dmsg_gob_type *type, void *out, size_t *consumed);

/* ---------------------------------------------------------------------------------------------
 * Encoder.
 *
 * Go assigns a type's id once per process, on first use, and every encoder of that process uses
 * it. A registry plays the process: share one to reproduce a process's history, or give each
 * stream a fresh one (what a Go peer started just for that stream would send). Any consistent
 * ids are valid gob; the registry only matters for byte-exact comparison with Go. */

typedef struct dmsg_gob_registry {
    int32_t next_id;
    size_t count;
    const dmsg_gob_type *types[DMSG_GOB_MAX_TYPES];
    int32_t ids[DMSG_GOB_MAX_TYPES];
} dmsg_gob_registry;

void dmsg_gob_registry_init(dmsg_gob_registry *reg);

/* One encoder per gob stream: it remembers which definitions it has sent. */
typedef struct dmsg_gob_encoder {
    dmsg_gob_registry *reg;
    size_t nsent;
    const dmsg_gob_type *sent[DMSG_GOB_MAX_TYPES];
} dmsg_gob_encoder;

void dmsg_gob_encoder_init(dmsg_gob_encoder *enc, dmsg_gob_registry *reg);

/* Writes the definition messages still needed on this stream and the value message into
 * out[0..cap); *out_len gets the byte count. DMSG_ETOOBIG when cap is too small (the encoder's
 * sent-set is then unchanged, so the call can be repeated with a larger buffer), DMSG_ELIMIT when
 * the registry or sent-set is full, DMSG_EINVAL for a NULL view with a non-zero length or a
 * malformed schema, or the code of a failed value check. */
int dmsg_gob_encode(dmsg_gob_encoder *enc, const dmsg_gob_type *type, const void *value,
                    uint8_t *out, size_t cap, size_t *out_len);

#endif
