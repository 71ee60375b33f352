/* IP addresses as Go's net.IP text (the IP field of an IPinfo StreamResponse). */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/wire.h"

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Go's IPv6 form: lowercase groups without leading zeros, the first longest run of two or more
 * zero groups written as "::". */
static int ipv6_to_text(char out[DMSG_IP_TEXT_MAX], const uint8_t *ip)
{
    unsigned groups[8];
    for (int i = 0; i < 8; i++)
        groups[i] = (unsigned)ip[2 * i] << 8 | ip[2 * i + 1];
    int run = -1, run_len = 0;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && groups[j] == 0)
            j++;
        if (j - i > run_len) {
            run = i;
            run_len = j - i;
        }
        i = j > i ? j : i + 1;
    }
    if (run_len < 2)
        run = -1;
    size_t n = 0;
    for (int i = 0; i < 8; i++) {
        if (i == run) {
            out[n++] = ':';
            out[n++] = ':';
            i += run_len;
            if (i >= 8)
                break;
        } else if (i > 0) {
            out[n++] = ':';
        }
        n += (size_t)snprintf(out + n, DMSG_IP_TEXT_MAX - n, "%x", groups[i]);
    }
    out[n] = 0;
    return (int)n;
}

int dmsg_ip_to_text(char out[DMSG_IP_TEXT_MAX], const uint8_t *ip, size_t len)
{
    const uint8_t *v4 = NULL;
    if (len == 4)
        v4 = ip;
    else if (len == 16 && memcmp(ip, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0)
        v4 = ip + 12;
    else if (len != 16)
        return DMSG_EINVAL;
    if (!v4)
        return ipv6_to_text(out, ip);
    return snprintf(out, DMSG_IP_TEXT_MAX, "%u.%u.%u.%u", v4[0], v4[1], v4[2], v4[3]);
}

int dmsg_ip_from_text(uint8_t out[16], size_t *out_len, const uint8_t *text, size_t len)
{
    char buf[DMSG_IP_TEXT_MAX];
    if (len == 0 || len >= sizeof buf || memchr(text, 0, len))
        return DMSG_EINVAL;
    memcpy(buf, text, len);
    buf[len] = 0;
    if (inet_pton(AF_INET, buf, out) == 1) {
        *out_len = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out) == 1) {
        *out_len = 16;
        return 0;
    }
    return DMSG_EINVAL;
}
