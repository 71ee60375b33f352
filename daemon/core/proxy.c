/* PROXY protocol v1 (text) and v2 (binary) headers, per HAProxy's proxy-protocol.txt.
 *
 * Strict where a sloppy reading would let bytes through as an address: one space between v1
 * fields, addresses of the announced family, ports of at most five digits. TLVs after the v2
 * addresses are skipped, not interpreted. */
#include "dmsg/proxy.h"

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "dmsg/error.h"

static const uint8_t v1_sig[] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

#define V1_FIELDS 6           /* PROXY proto src dst sport dport */
#define V1_FIELD_MAX 45       /* longest textual IPv6 address */
#define V2_INET_LEN 12        /* 4 + 4 + 2 + 2 */
#define V2_INET6_LEN 36       /* 16 + 16 + 2 + 2 */
#define V2_UNIX_LEN 216       /* 108 + 108 */

/* Whether in can still be (or already is) the start of sig. */
static bool prefix_of(const uint8_t *in, size_t len, const uint8_t *sig, size_t sig_len)
{
    size_t n = len < sig_len ? len : sig_len;
    return memcmp(in, sig, n) == 0;
}

/* ---- v1 ---------------------------------------------------------------------------------- */

typedef struct field {
    const uint8_t *p;
    size_t len;
} field;

/* Splits the line (without CRLF) at single spaces; empty fields are malformed. */
static int split_fields(const uint8_t *line, size_t len, field *out, size_t max, size_t *count)
{
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && line[i] != ' ')
            continue;
        if (i == start || n == max)
            return DMSG_EPROTO;
        out[n++] = (field){line + start, i - start};
        start = i + 1;
    }
    *count = n;
    return 0;
}

static bool field_is(const field *f, const char *s)
{
    return f->len == strlen(s) && memcmp(f->p, s, f->len) == 0;
}

static int parse_port(const field *f, uint16_t *port)
{
    if (f->len == 0 || f->len > 5)
        return DMSG_EPROTO;
    uint32_t v = 0;
    for (size_t i = 0; i < f->len; i++) {
        if (f->p[i] < '0' || f->p[i] > '9')
            return DMSG_EPROTO;
        v = v * 10 + (uint32_t)(f->p[i] - '0');
    }
    if (v > UINT16_MAX)
        return DMSG_EPROTO;
    *port = (uint16_t)v;
    return 0;
}

static int parse_addr(const field *f, int af, uint8_t out[16])
{
    char text[V1_FIELD_MAX + 1];
    if (f->len > V1_FIELD_MAX)
        return DMSG_EPROTO;
    memcpy(text, f->p, f->len);
    text[f->len] = '\0';
    return inet_pton(af, text, out) == 1 ? 0 : DMSG_EPROTO;
}

/* "PROXY UNKNOWN" may carry anything up to the CRLF: the receiver ignores the rest. */
static bool is_unknown(const uint8_t *line, size_t len)
{
    size_t p = sizeof v1_sig, n = strlen("UNKNOWN");
    return len >= p + n && memcmp(line + p, "UNKNOWN", n) == 0 &&
           (len == p + n || line[p + n] == ' ');
}

static int parse_v1_line(const uint8_t *line, size_t len, dmsg_proxy_info *info)
{
    if (is_unknown(line, len)) {
        info->has_addr = false;
        return 0;
    }
    field f[V1_FIELDS];
    size_t n;
    int err = split_fields(line, len, f, V1_FIELDS, &n);
    if (err < 0 || n != V1_FIELDS)
        return DMSG_EPROTO;
    int af;
    if (field_is(&f[1], "TCP4")) {
        af = AF_INET;
        info->family = 4;
    } else if (field_is(&f[1], "TCP6")) {
        af = AF_INET6;
        info->family = 6;
    } else {
        return DMSG_EPROTO;
    }
    if (parse_addr(&f[2], af, info->src) < 0 || parse_addr(&f[3], af, info->dst) < 0 ||
        parse_port(&f[4], &info->src_port) < 0 || parse_port(&f[5], &info->dst_port) < 0)
        return DMSG_EPROTO;
    info->has_addr = true;
    return 0;
}

static int parse_v1(const uint8_t *in, size_t len, dmsg_proxy_info *info, size_t *hdr_len)
{
    const size_t cr_limit = DMSG_PROXY_V1_MAX - 1; /* the CR must leave room for the LF */
    size_t scan = len < cr_limit ? len : cr_limit;
    for (size_t i = sizeof v1_sig; i < scan; i++) {
        if (in[i] == '\n' || (in[i] < 0x20 && in[i] != '\r') || in[i] > 0x7e)
            return DMSG_EPROTO;
        if (in[i] != '\r')
            continue;
        if (i + 1 == len)
            return DMSG_EAGAIN;
        if (in[i + 1] != '\n')
            return DMSG_EPROTO;
        int err = parse_v1_line(in, i, info);
        if (err < 0)
            return err;
        info->version = 1;
        *hdr_len = i + 2;
        return 0;
    }
    return len >= cr_limit ? DMSG_ETOOBIG : DMSG_EAGAIN;
}

/* ---- v2 ---------------------------------------------------------------------------------- */

enum { V2_CMD_LOCAL = 0, V2_CMD_PROXY = 1 };
enum { V2_AF_UNSPEC = 0, V2_AF_INET = 1, V2_AF_INET6 = 2, V2_AF_UNIX = 3 };

static uint16_t get_be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static int parse_v2_addresses(uint8_t family, const uint8_t *a, size_t len, dmsg_proxy_info *info)
{
    size_t alen;
    switch (family) {
    case V2_AF_UNSPEC:
        return 0;
    case V2_AF_INET:
        alen = 4;
        break;
    case V2_AF_INET6:
        alen = 16;
        break;
    case V2_AF_UNIX:
        return len >= V2_UNIX_LEN ? 0 : DMSG_EPROTO;
    default:
        return DMSG_EPROTO;
    }
    if (len < 2 * alen + 4)
        return DMSG_EPROTO;
    memcpy(info->src, a, alen);
    memcpy(info->dst, a + alen, alen);
    info->src_port = get_be16(a + 2 * alen);
    info->dst_port = get_be16(a + 2 * alen + 2);
    info->family = family == V2_AF_INET ? 4 : 6;
    info->has_addr = true;
    return 0;
}

static int parse_v2(const uint8_t *in, size_t len, dmsg_proxy_info *info, size_t *hdr_len)
{
    if (len < DMSG_PROXY_V2_FIXED)
        return DMSG_EAGAIN;
    uint8_t version = in[12] >> 4, command = in[12] & 0x0f;
    uint8_t family = in[13] >> 4, transport = in[13] & 0x0f;
    if (version != 2 || command > V2_CMD_PROXY || transport > 2)
        return DMSG_EPROTO;
    size_t total = DMSG_PROXY_V2_FIXED + get_be16(in + 14);
    if (total > DMSG_PROXY_MAX_LEN)
        return DMSG_ETOOBIG;
    if (len < total)
        return DMSG_EAGAIN;
    info->has_addr = false;
    int err = parse_v2_addresses(family, in + DMSG_PROXY_V2_FIXED, total - DMSG_PROXY_V2_FIXED,
                                 info);
    if (err < 0)
        return err;
    if (command == V2_CMD_LOCAL) /* health checks of the proxy itself: its own address */
        info->has_addr = false;
    info->version = 2;
    *hdr_len = total;
    return 0;
}

int dmsg_proxy_parse(const uint8_t *in, size_t len, dmsg_proxy_info *info, size_t *hdr_len)
{
    memset(info, 0, sizeof *info);
    *hdr_len = 0;
    if (len == 0)
        return DMSG_EAGAIN;
    if (prefix_of(in, len, v1_sig, sizeof v1_sig))
        return len < sizeof v1_sig ? DMSG_EAGAIN : parse_v1(in, len, info, hdr_len);
    if (prefix_of(in, len, v2_sig, sizeof v2_sig))
        return len < sizeof v2_sig ? DMSG_EAGAIN : parse_v2(in, len, info, hdr_len);
    return DMSG_ENOTFOUND;
}
