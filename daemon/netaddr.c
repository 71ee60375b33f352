/* host:port text; see netaddr.h. */
#include "netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmsg/error.h"

int netaddr_split(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    const char *colon;
    const char *host_start = addr;
    size_t host_len;
    char *end;
    unsigned long p;

    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':')
            return DMSG_EINVAL;
        host_start = addr + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL)
            return DMSG_EINVAL; /* a bare IPv6 address needs brackets */
        host_len = (size_t)(colon - addr);
    }
    if (host_len >= host_cap || colon[1] == '\0' || strlen(colon + 1) > 5)
        return DMSG_EINVAL;
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9')
            return DMSG_EINVAL;
    }
    errno = 0;
    p = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || p > 65535)
        return DMSG_EINVAL;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (uint16_t)p;
    return 0;
}

int netaddr_listen_sockaddr(const char *addr, struct sockaddr_storage *out)
{
    char host[256];
    uint16_t port;

    memset(out, 0, sizeof *out);
    if (netaddr_split(addr, host, sizeof host, &port) != 0)
        return DMSG_EINVAL;
    if (host[0] == '\0' || strcasecmp(host, "localhost") == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        in->sin_addr.s_addr = htonl(host[0] == '\0' ? INADDR_ANY : INADDR_LOOPBACK);
        return 0;
    }
    {
        struct sockaddr_in *in = (struct sockaddr_in *)out;
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
            in->sin_family = AF_INET;
            in->sin_port = htons(port);
            return 0;
        }
    }
    {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
        memset(out, 0, sizeof *out);
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            return 0;
        }
    }
    return DMSG_EINVAL;
}

void netaddr_format(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}

size_t netaddr_ip_bytes(const struct sockaddr_storage *sa, uint8_t out[16])
{
    if (sa->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 4;
    }
    if (sa->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, &a->s6_addr[12], 4);
            return 4;
        }
        memcpy(out, a->s6_addr, 16);
        return 16;
    }
    return 0;
}
