/* PROXY protocol v1/v2 header parser: well-formed headers of every family, fed whole and split
 * at every byte, and malformed ones, each with its specific error. The byte layouts follow
 * HAProxy's proxy-protocol.txt (the spec §4.1 names the v1 and v2 signatures). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/proxy.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static size_t v2(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t len)
{
    memcpy(out, v2_sig, 12);
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(len >> 8);
    out[15] = (uint8_t)len;
    if (len)
        memcpy(out + 16, body, len);
    return 16 + len;
}

/* Every proper prefix is EAGAIN, the whole is 0 with the same result; bytes after it (the start
 * of a Noise message) never change the header length. */
static void check_complete(const uint8_t *hdr, size_t len, dmsg_proxy_info *info)
{
    uint8_t buf[2048];
    size_t hlen;
    dmsg_proxy_info tmp;
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(dmsg_proxy_parse(hdr, i, &tmp, &hlen), DMSG_EAGAIN, "prefix %zu", i);
    cr_assert_eq(dmsg_proxy_parse(hdr, len, info, &hlen), 0);
    cr_assert_eq(hlen, len);
    memcpy(buf, hdr, len);
    memcpy(buf + len, "\x00\x31\x02\x03", 4);
    cr_assert_eq(dmsg_proxy_parse(buf, len + 4, &tmp, &hlen), 0);
    cr_assert_eq(hlen, len);
    cr_assert(memcmp(&tmp, info, sizeof tmp) == 0);
}

static void check_v1_ok(const char *text, int family, const char *src, uint16_t sport,
                        const char *dst, uint16_t dport)
{
    dmsg_proxy_info info;
    check_complete((const uint8_t *)text, strlen(text), &info);
    cr_assert_eq(info.version, 1);
    cr_assert_eq(info.has_addr, family != 0, "%s", text);
    if (!family)
        return;
    uint8_t want[16] = {0};
    cr_assert_eq(info.family, family);
    cr_assert_eq(inet_pton(family == 4 ? AF_INET : AF_INET6, src, want), 1);
    cr_assert(memcmp(info.src, want, family == 4 ? 4 : 16) == 0, "%s", text);
    cr_assert_eq(inet_pton(family == 4 ? AF_INET : AF_INET6, dst, want), 1);
    cr_assert(memcmp(info.dst, want, family == 4 ? 4 : 16) == 0, "%s", text);
    cr_assert_eq(info.src_port, sport);
    cr_assert_eq(info.dst_port, dport);
}

Test(proxy_parse, v1_headers)
{
    check_v1_ok("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", 4, "192.168.0.1", 56324,
                "192.168.0.11", 443);
    check_v1_ok("PROXY TCP6 2001:db8::7 ::1 0 65535\r\n", 6, "2001:db8::7", 0, "::1", 65535);
    check_v1_ok("PROXY UNKNOWN\r\n", 0, NULL, 0, NULL, 0);
    check_v1_ok("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n", 0, NULL, 0, NULL,
                0);
    check_v1_ok("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe 65535 65534\r\n",
                6, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65534);
    /* the worst case of the PROXY spec is exactly 107 bytes */
    const char *longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    cr_assert_eq(strlen(longest), DMSG_PROXY_V1_MAX);
    check_v1_ok(longest, 0, NULL, 0, NULL, 0);
}

static void check_err(const char *what, const uint8_t *in, size_t len, int want)
{
    dmsg_proxy_info info;
    size_t hlen = 99;
    int r = dmsg_proxy_parse(in, len, &info, &hlen);
    cr_assert_eq(r, want, "%s: got %s, want %s", what, dmsg_strerror(r), dmsg_strerror(want));
    cr_assert_eq(hlen, 0, "%s", what);
}

static void check_v1_err(const char *text, int want)
{
    check_err(text, (const uint8_t *)text, strlen(text), want);
}

Test(proxy_parse, v1_malformed)
{
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", DMSG_EPROTO);        /* LF without CR */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", DMSG_EPROTO);       /* CR without LF */
    check_v1_err("PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", DMSG_EPROTO);     /* double space */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", DMSG_EPROTO);     /* trailing space */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", DMSG_EPROTO);        /* missing port */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", DMSG_EPROTO);    /* extra field */
    check_v1_err("PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", DMSG_EPROTO);    /* bad octet */
    check_v1_err("PROXY TCP4 ::1 1.2.3.4 1 2\r\n", DMSG_EPROTO);          /* wrong family */
    check_v1_err("PROXY TCP6 1.2.3.4 ::1 1 2\r\n", DMSG_EPROTO);
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", DMSG_EPROTO);  /* port range */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", DMSG_EPROTO);
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.4 000001 2\r\n", DMSG_EPROTO); /* six digits */
    check_v1_err("PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", DMSG_EPROTO);      /* not TCP */
    check_v1_err("PROXY UNKNOWNX\r\n", DMSG_EPROTO);
    check_v1_err("PROXY \r\n", DMSG_EPROTO);
    check_v1_err("PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n", DMSG_EPROTO);     /* control byte */
    check_v1_err("PROXY TCP4 1.2.3.4 1.2.3.\x80 1 2\r\n", DMSG_EPROTO);   /* not ASCII */
    /* no CRLF within 107 bytes */
    char line[200];
    memset(line, 'a', sizeof line);
    memcpy(line, "PROXY ", 6);
    check_err("endless", (const uint8_t *)line, 106, DMSG_ETOOBIG);
    check_err("endless", (const uint8_t *)line, sizeof line, DMSG_ETOOBIG);
    check_err("105 bytes", (const uint8_t *)line, 105, DMSG_EAGAIN);
    /* CR at 106 would make the header 108 bytes */
    line[106] = '\r';
    line[107] = '\n';
    check_err("108 bytes", (const uint8_t *)line, 108, DMSG_ETOOBIG);
}

Test(proxy_parse, no_signature)
{
    /* a DMSG client starts with 0x00; anything that leaves both signatures is not a header */
    check_err("noise", (const uint8_t *)"\x00\x31\x02", 3, DMSG_ENOTFOUND);
    check_err("PROXZ", (const uint8_t *)"PROXZ", 5, DMSG_ENOTFOUND);
    check_err("proxy", (const uint8_t *)"proxy ", 6, DMSG_ENOTFOUND);
    check_err("GET", (const uint8_t *)"GET / HTTP/1.1\r\n", 16, DMSG_ENOTFOUND);
    uint8_t almost[12];
    memcpy(almost, v2_sig, 12);
    almost[11] = 0x0b;
    check_err("v2 sig off by one", almost, 12, DMSG_ENOTFOUND);
    check_err("empty", almost, 0, DMSG_EAGAIN);
    check_err("P", (const uint8_t *)"P", 1, DMSG_EAGAIN);
    check_err("CR", v2_sig, 1, DMSG_EAGAIN);
}

Test(proxy_parse, v2_headers)
{
    uint8_t h[DMSG_PROXY_MAX_LEN + 16];
    dmsg_proxy_info info;
    uint8_t a4[12] = {10, 0, 0, 1, 10, 0, 0, 2, 0x12, 0x34, 0x00, 0x50};
    size_t n = v2(h, 0x21, 0x11, a4, sizeof a4);
    check_complete(h, n, &info);
    cr_assert(info.version == 2 && info.has_addr && info.family == 4);
    cr_assert(memcmp(info.src, a4, 4) == 0 && memcmp(info.dst, a4 + 4, 4) == 0);
    cr_assert_eq(info.src_port, 0x1234);
    cr_assert_eq(info.dst_port, 80);

    uint8_t a6[36 + 20];
    for (int i = 0; i < 32; i++)
        a6[i] = (uint8_t)(0x20 + i);
    a6[32] = 0xff;
    a6[33] = 0xfe;
    a6[34] = 0;
    a6[35] = 1;
    memset(a6 + 36, 0xaa, 20); /* TLVs: skipped */
    n = v2(h, 0x21, 0x21, a6, sizeof a6);
    check_complete(h, n, &info);
    cr_assert(info.has_addr && info.family == 6);
    cr_assert(memcmp(info.src, a6, 16) == 0 && memcmp(info.dst, a6 + 16, 16) == 0);
    cr_assert_eq(info.src_port, 0xfffe);
    cr_assert_eq(info.dst_port, 1);

    /* LOCAL (the proxy's own health check), UNSPEC, UNIX and DGRAM keep the peer address */
    n = v2(h, 0x20, 0x00, NULL, 0);
    check_complete(h, n, &info);
    cr_assert(!info.has_addr);
    n = v2(h, 0x20, 0x11, a4, sizeof a4);
    check_complete(h, n, &info);
    cr_assert(!info.has_addr);
    n = v2(h, 0x21, 0x00, a4, sizeof a4);
    check_complete(h, n, &info);
    cr_assert(!info.has_addr);
    uint8_t unix_addrs[216] = {'/'};
    n = v2(h, 0x21, 0x31, unix_addrs, sizeof unix_addrs);
    check_complete(h, n, &info);
    cr_assert(!info.has_addr);
    n = v2(h, 0x21, 0x12, a4, sizeof a4);
    check_complete(h, n, &info);
    cr_assert(info.has_addr);

    /* the longest accepted header */
    uint8_t big[DMSG_PROXY_MAX_LEN - 16] = {0};
    memcpy(big, a4, sizeof a4);
    n = v2(h, 0x21, 0x11, big, sizeof big);
    cr_assert_eq(n, DMSG_PROXY_MAX_LEN);
    check_complete(h, n, &info);
}

Test(proxy_parse, v2_malformed)
{
    uint8_t h[64];
    uint8_t a4[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    size_t n = v2(h, 0x11, 0x11, a4, sizeof a4);
    check_err("version 1", h, n, DMSG_EPROTO);
    n = v2(h, 0x31, 0x11, a4, sizeof a4);
    check_err("version 3", h, n, DMSG_EPROTO);
    n = v2(h, 0x22, 0x11, a4, sizeof a4);
    check_err("command 2", h, n, DMSG_EPROTO);
    n = v2(h, 0x21, 0x41, a4, sizeof a4);
    check_err("family 4", h, n, DMSG_EPROTO);
    n = v2(h, 0x21, 0x13, a4, sizeof a4);
    check_err("transport 3", h, n, DMSG_EPROTO);
    n = v2(h, 0x21, 0x11, a4, 11);
    check_err("short inet", h, n, DMSG_EPROTO);
    n = v2(h, 0x21, 0x21, a4, 12);
    check_err("short inet6", h, n, DMSG_EPROTO);
    n = v2(h, 0x21, 0x31, a4, 12);
    check_err("short unix", h, n, DMSG_EPROTO);
    /* a length beyond the cap is refused as soon as it is known */
    v2(h, 0x21, 0x11, NULL, 0);
    h[14] = (uint8_t)((DMSG_PROXY_MAX_LEN - 15) >> 8);
    h[15] = (uint8_t)(DMSG_PROXY_MAX_LEN - 15);
    check_err("too long", h, 16, DMSG_ETOOBIG);
    h[14] = h[15] = 0xff;
    check_err("65535", h, 16, DMSG_ETOOBIG);
}
