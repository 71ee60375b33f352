/* PROXY protocol header (HAProxy's text v1 and binary v2) at the start of a TCP connection, as a
 * pure parser: the server role of a session strips it and takes the client address it carries.
 *
 * Stateless: call dmsg_proxy_parse() with all bytes received so far (from the first byte of the
 * connection) until it stops returning DMSG_EAGAIN. A DMSG client's first byte is 0x00 (the high
 * byte of a Noise frame length), never the first byte of a signature, so the decision takes one
 * byte for a client that sends no header. */
#ifndef DMSG_PROXY_H
#define DMSG_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DMSG_PROXY_V1_MAX 107   /* the longest v1 line, "PROXY ... \r\n" included */
#define DMSG_PROXY_V2_FIXED 16  /* signature, version/command, family, u16 BE length */
#define DMSG_PROXY_MAX_LEN 1024 /* the longest v2 header (with TLVs) we accept */

typedef struct dmsg_proxy_info {
    uint8_t version;   /* 1 or 2 */
    bool has_addr;     /* false: LOCAL command, UNKNOWN / UNSPEC or a UNIX family; keep the
                        * connection's own peer address then */
    uint8_t family;    /* 4 or 6 when has_addr */
    uint8_t src[16];   /* network byte order; the first 4 bytes for IPv4 */
    uint8_t dst[16];
    uint16_t src_port; /* host byte order */
    uint16_t dst_port;
} dmsg_proxy_info;

/* Parses the header at the start of in (len bytes received so far).
 *   0              the header is the first *hdr_len bytes; info is filled
 *   DMSG_EAGAIN    in is a proper prefix of a header (or empty): call again with more bytes
 *   DMSG_ENOTFOUND in does not start with a v1 or v2 signature (nothing to strip)
 *   DMSG_EPROTO    a signature followed by a malformed header
 *   DMSG_ETOOBIG   longer than DMSG_PROXY_V1_MAX (v1) or DMSG_PROXY_MAX_LEN (v2) */
int dmsg_proxy_parse(const uint8_t *in, size_t len, dmsg_proxy_info *info, size_t *hdr_len);

#endif
