/* Input validators of the admin API; see validate.h. */
#include "validate.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dmsg/error.h"

static int reason(char *why, size_t cap, const char *text)
{
    if (why && cap)
        snprintf(why, cap, "%s", text);
    return -1;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

int api_parse_public_key(const char *text, dmsg_pk *pk, char hex_out[DMSG_PK_HEX_LEN + 1],
                         char *why, size_t why_cap)
{
    size_t len = text ? strlen(text) : 0;
    if (len != DMSG_PK_HEX_LEN)
        return reason(why, why_cap, "a public key is 66 hex characters");
    for (size_t i = 0; i < len; i++)
        if (!is_hex(text[i]))
            return reason(why, why_cap, "a public key is 66 hex characters");
    dmsg_pk parsed;
    if (dmsg_pk_from_hex(&parsed, text, len) != 0)
        return reason(why, why_cap, "a public key is 66 hex characters");
    if (dmsg_pk_validate(&parsed) != 0)
        return reason(why, why_cap, "not a compressed point on secp256k1");
    if (pk)
        *pk = parsed;
    if (hex_out) {
        for (size_t i = 0; i < len; i++)
            hex_out[i] = lower(text[i]);
        hex_out[len] = '\0';
    }
    return 0;
}

int api_parse_uint(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!text || !*text || strlen(text) > 19)
        return -1;
    if (text[0] == '0' && text[1] != '\0')
        return -1;
    uint64_t v = 0;
    for (const char *c = text; *c; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static bool valid_port(const char *p, char *why, size_t cap)
{
    uint64_t port;
    if (api_parse_uint(p, 1, 65535, &port) != 0) {
        reason(why, cap, "the port must be a number 1..65535");
        return false;
    }
    return true;
}

static bool valid_dns_or_ipv4(const char *host, size_t len, char *why, size_t cap)
{
    if (len == 0) {
        reason(why, cap, "the host is empty");
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
        if (!ok) {
            reason(why, cap, "the host may hold only letters, digits, '-' and '.' (IPv6 in"
                             " brackets)");
            return false;
        }
    }
    if (host[0] == '.' || host[0] == '-' || strstr(host, "..") != NULL) {
        reason(why, cap, "the host is not a valid name");
        return false;
    }
    return true;
}

int api_check_address(const char *addr, char *why, size_t why_cap)
{
    size_t len = addr ? strlen(addr) : 0;
    if (len < API_ADDRESS_MIN || len > API_ADDRESS_MAX)
        return reason(why, why_cap, "an address is host:port, 3..261 characters");
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':')
            return reason(why, why_cap, "an IPv6 address is written [address]:port");
        char v6[64];
        size_t hlen = (size_t)(close - addr - 1);
        struct in6_addr a6;
        if (hlen == 0 || hlen >= sizeof v6)
            return reason(why, why_cap, "not a valid IPv6 address");
        memcpy(v6, addr + 1, hlen);
        v6[hlen] = '\0';
        if (inet_pton(AF_INET6, v6, &a6) != 1)
            return reason(why, why_cap, "not a valid IPv6 address");
        return valid_port(close + 2, why, why_cap) ? 0 : -1;
    }
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return reason(why, why_cap, "an address is host:port (the port is missing)");
    if (!valid_dns_or_ipv4(addr, (size_t)(colon - addr), why, why_cap))
        return -1;
    return valid_port(colon + 1, why, why_cap) ? 0 : -1;
}

/* Length of the UTF-8 sequence starting at s (at most n bytes), 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t v;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        v = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        v = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        v = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_of_len[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

int api_check_note(const char *note, size_t len, char *why, size_t why_cap)
{
    const unsigned char *s = (const unsigned char *)note;
    if (len > API_NOTE_MAX_BYTES)
        return reason(why, why_cap, "the note is longer than 256 bytes");
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_seq(s + i, len - i, &cp);
        if (n == 0)
            return reason(why, why_cap, "the note is not valid UTF-8");
        if (cp < 0x20 || cp == 0x7f)
            return reason(why, why_cap, "the note must not hold control characters");
        i += n;
    }
    return 0;
}

int api_parse_since(const char *text, int64_t *seconds)
{
    size_t len = text ? strlen(text) : 0;
    if (len == 0 || len > 10)
        return -1;
    int64_t unit = 1;
    size_t digits = len;
    switch (text[len - 1]) {
    case 's': unit = 1; digits--; break;
    case 'm': unit = 60; digits--; break;
    case 'h': unit = 3600; digits--; break;
    case 'd': unit = 86400; digits--; break;
    default: break;
    }
    if (digits == 0 || digits > 9 || text[0] < '1' || text[0] > '9')
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < digits; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
    }
    if (v > API_SINCE_MAX_SECONDS / unit)
        return -1;
    *seconds = v * unit;
    return 0;
}

int api_parse_hex_prefix(const char *text, char out[DMSG_PK_HEX_LEN + 1])
{
    size_t len = text ? strlen(text) : 0;
    if (len == 0 || len > DMSG_PK_HEX_LEN)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!is_hex(text[i]))
            return -1;
        out[i] = lower(text[i]);
    }
    out[len] = '\0';
    return 0;
}

void api_format_time(int64_t unix_ms, char out[32])
{
    time_t secs = (time_t)(unix_ms / 1000);
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ms != 0)
        snprintf(out + n, 32 - n, ".%03dZ", ms);
    else
        snprintf(out + n, 32 - n, "Z");
}
