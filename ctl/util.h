/* Small helpers for dmsgctl: allocation that cannot fail quietly, growable buffers, client-side
 * checks of operator input (keys, addresses, numbers, durations) and JSON member access. */
#ifndef DMSGCTL_UTIL_H
#define DMSGCTL_UTIL_H

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "dmsg/cipher.h"

/* A short-lived CLI has nothing better to do when memory runs out: these print and exit 1. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
_Noreturn void fatal_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct strbuf {
    char *s;    /* NUL-terminated; NULL until something is appended */
    size_t len;
    size_t cap;
};
void sb_append(struct strbuf *b, const void *data, size_t len);
void sb_printf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends text percent-encoded for a URL query value (RFC 3986 unreserved characters kept). */
void sb_query_escape(struct strbuf *b, const char *text);
void sb_free(struct strbuf *b);

/* Copies src into dst (cap bytes, always terminated); false when it had to be cut. */
bool copy_text(char *dst, size_t cap, const char *src);

/* Checks of operator input. Each returns true when the text is acceptable; otherwise why gets
 * a sentence that names the value and says what is expected. */

/* 66 hex characters, a compressed point on secp256k1 (dmsgcore checks the curve).
 * out gets the key in lowercase. */
bool check_public_key(const char *text, char out[DMSG_PK_HEX_LEN + 1], char *why, size_t cap);
/* host:port as the admin API accepts it for a peer (see Address in api/openapi.yaml). */
bool check_peer_address(const char *text, char *why, size_t cap);
/* At most 256 characters, no control characters. */
bool check_note(const char *text, char *why, size_t cap);
/* A decimal integer in [min, max]. */
bool parse_integer(const char *text, long long min, long long max, long long *out);
/* A decimal number of seconds (fractions allowed) in [min, max]. */
bool parse_seconds(const char *text, double min, double max, double *out);
/* The admin API's duration: 1..999999999 followed by s, m, h or d (none: seconds), at most
 * 366 days. *seconds gets the value. */
bool parse_api_duration(const char *text, long long *seconds);

/* JSON members: NULL / false when absent or of another type. */
const char *jstr(const json_t *obj, const char *key);
bool jint(const json_t *obj, const char *key, long long *out);
bool jbool(const json_t *obj, const char *key, bool *out);
json_t *jobj(const json_t *obj, const char *key);   /* borrowed; NULL unless an object */
json_t *jarr(const json_t *obj, const char *key);   /* borrowed; NULL unless an array */

#endif
