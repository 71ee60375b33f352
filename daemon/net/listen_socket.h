/* Listening sockets for the servers on the loop: numeric TCP addresses, and unix sockets whose
 * file the server creates and removes. Blocking-free (no name resolution). */
#ifndef DMSG_NET_LISTEN_SOCKET_H
#define DMSG_NET_LISTEN_SOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct listen_socket {
    int fd;                 /* listening, non-blocking, close-on-exec */
    uint16_t port;          /* the bound TCP port (useful after port 0); 0 for unix */
    bool owns_file;         /* a unix socket file this process created */
    dev_t file_dev;         /* identity of that file, so that only it is ever removed */
    ino_t file_ino;
    char path[108];
};

/* Binds and listens on "host:port" (numeric host, "[v6]:port", or ":port" for every IPv4
 * address; port 0 picks one). DMSG_EINVAL (malformed), DMSG_EEXIST (in use), DMSG_EPERM,
 * DMSG_EIO. err gets a one-line reason naming the address. */
int listen_socket_tcp(struct listen_socket *ls, const char *address, int backlog, char *err,
                      size_t err_cap);

/* Creates a unix socket at path with the given permission bits. A stale socket file (nobody
 * accepting) is replaced; a live one or any other file is DMSG_EEXIST. */
int listen_socket_unix(struct listen_socket *ls, const char *path, unsigned mode, int backlog,
                       char *err, size_t err_cap);

/* Removes the unix socket file if this process created it and it is still that file. The
 * descriptor is not touched (its owner closes it). */
void listen_socket_remove_file(struct listen_socket *ls);

#endif
