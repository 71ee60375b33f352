/* Validators for what operators send to the admin API: public keys, peer addresses, notes and
 * query parameters. Pure (no daemon state), so they are unit tested and fuzzed on their own.
 * Each returns 0 when the value is acceptable, else -1 and (where it takes one) a reason for
 * the problem's detail that names what is wrong. */
#ifndef DMSGD_API_VALIDATE_H
#define DMSGD_API_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"

#define API_ADDRESS_MIN 3
#define API_ADDRESS_MAX 261
#define API_NOTE_MAX_BYTES 256
#define API_LIMIT_DEFAULT 100
#define API_LIMIT_MAX 1000
#define API_SINCE_MAX_SECONDS (366LL * 86400)

/* 66 hex characters (either case) that decode to a compressed point on secp256k1. hex_out
 * (may be NULL) gets the lowercase form. */
int api_parse_public_key(const char *text, dmsg_pk *pk, char hex_out[DMSG_PK_HEX_LEN + 1],
                         char *why, size_t why_cap);

/* host:port: a DNS name or IPv4 address (letters, digits, '-', '.'), or an IPv6 address in
 * brackets; port 1..65535 without sign or leading zeros; 3..261 characters in all. */
int api_check_address(const char *addr, char *why, size_t why_cap);

/* Valid UTF-8 of at most 256 bytes, none of U+0000..U+001F, U+007F. */
int api_check_note(const char *note, size_t len, char *why, size_t why_cap);

/* An unsigned decimal without sign, spaces or leading zeros, within [min, max]. */
int api_parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out);

/* `since`: ^[1-9][0-9]{0,8}[smhd]?$ (no unit: seconds), at most 366 days; out in seconds. */
int api_parse_since(const char *text, int64_t *seconds);

/* A hex prefix of 1..66 characters (either case); lower gets the lowercase form. */
int api_parse_hex_prefix(const char *text, char lower[DMSG_PK_HEX_LEN + 1]);

/* RFC 3339 UTC with millisecond precision when ms % 1000 != 0 ("2026-04-09T12:00:00Z",
 * "2026-04-09T12:00:00.250Z"); unix_ms is milliseconds since the epoch. */
void api_format_time(int64_t unix_ms, char out[32]);

#endif
