/* Test helpers: load a known-answer vector file and decode its hex fields. */
#ifndef DMSG_TEST_VECTORS_H
#define DMSG_TEST_VECTORS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Loads tests/vectors/<name> (e.g. "keys.json"); aborts the test on failure. Caller decrefs. */
json_t *vec_load(const char *name);

/* Follows a path like "sessions.0.messages.2.raw" (object keys and array indexes, '.'-separated).
 * Returns a borrowed reference or NULL. */
json_t *vec_get(json_t *root, const char *path);

/* Decodes a hex string into out; returns the byte count, or -1 when it is not hex or does not fit. */
long vec_hex_decode(const char *hex, uint8_t *out, size_t cap);

/* The hex string at path, decoded into a fresh buffer (caller frees); *len gets its size.
 * Aborts the test when the path is missing or not hex. */
uint8_t *vec_hex(json_t *root, const char *path, size_t *len);

/* Decodes exactly n bytes at path into out; aborts the test on any mismatch. */
void vec_hex_exact(json_t *root, const char *path, uint8_t *out, size_t n);

/* Lowercase hex of buf into a fresh string (caller frees). */
char *vec_to_hex(const uint8_t *buf, size_t len);

#endif
