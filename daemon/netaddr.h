/* host:port text as dmsgd's config and listeners use it. */
#ifndef DMSGD_NETADDR_H
#define DMSGD_NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Splits "host:port", "[v6]:port" or ":port" (host "" = every address). 0 or DMSG_EINVAL
 * (no port, port over 65535, a bare IPv6 host, host longer than host_cap - 1). */
int netaddr_split(const char *addr, char *host, size_t host_cap, uint16_t *port);

/* A listen address as a sockaddr: a numeric IPv4/IPv6 host, "localhost" (127.0.0.1) or ""
 * (0.0.0.0). 0 or DMSG_EINVAL. */
int netaddr_listen_sockaddr(const char *addr, struct sockaddr_storage *out);

/* Text of a socket address: "1.2.3.4:5", "[::1]:5"; "?" when unknown. */
void netaddr_format(const struct sockaddr_storage *sa, char *out, size_t cap);

/* The IP of sa as bytes, IPv4-mapped IPv6 folded to IPv4: 4 or 16 bytes, 0 when none. */
size_t netaddr_ip_bytes(const struct sockaddr_storage *sa, uint8_t out[16]);

#endif
