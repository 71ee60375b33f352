/* Listening sockets; see listen_socket.h. */
#include "listen_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dmsg/error.h"

static int errno_to_dmsg(int err)
{
    switch (err) {
    case EADDRINUSE:
    case EEXIST:
        return DMSG_EEXIST;
    case EACCES:
    case EPERM:
        return DMSG_EPERM;
    case ENOMEM:
        return DMSG_ENOMEM;
    case EADDRNOTAVAIL:
    case EINVAL:
    case ENAMETOOLONG:
        return DMSG_EINVAL;
    default:
        return DMSG_EIO;
    }
}

/* Describes the failed system call (errno) and closes fd if open. */
static int fail_errno(char *err, size_t cap, int fd, const char *what, const char *where)
{
    int e = errno;
    snprintf(err, cap, "%s %s: %s", what, where, strerror(e));
    if (fd >= 0)
        close(fd);
    return errno_to_dmsg(e);
}

/* Splits "host:port" / "[v6]:port" and resolves it without any lookup. */
static int parse_tcp_address(const char *text, struct addrinfo **out, char *err, size_t cap)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= sizeof host) {
        snprintf(err, cap, "malformed listen address %s: want host:port", text);
        return DMSG_EINVAL;
    }
    size_t hlen = (size_t)(colon - text);
    bool bracketed = hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']';
    memcpy(host, text + bracketed, hlen - 2 * bracketed);
    host[hlen - 2 * bracketed] = '\0';
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen || atoi(port) > 65535) {
        snprintf(err, cap, "malformed listen address %s: bad port", text);
        return DMSG_EINVAL;
    }
    struct addrinfo hints = {.ai_family = host[0] ? AF_UNSPEC : AF_INET,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, out);
    if (rc != 0) {
        snprintf(err, cap, "malformed listen address %s: %s (the host must be a numeric IP)",
                 text, gai_strerror(rc));
        return DMSG_EINVAL;
    }
    return 0;
}

static int bound_port(int fd, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET)
        *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    else
        *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

int listen_socket_tcp(struct listen_socket *ls, const char *address, int backlog, char *err,
                      size_t err_cap)
{
    memset(ls, 0, sizeof *ls);
    ls->fd = -1;
    struct addrinfo *ai = NULL;
    int rc = parse_tcp_address(address, &ai, err, err_cap);
    if (rc)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return fail_errno(err, err_cap, -1, "socket for", address);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (rc != 0)
        return fail_errno(err, err_cap, fd, "bind", address);
    if (listen(fd, backlog) != 0)
        return fail_errno(err, err_cap, fd, "listen", address);
    if (bound_port(fd, &ls->port) != 0)
        return fail_errno(err, err_cap, fd, "getsockname", address);
    ls->fd = fd;
    return 0;
}

/* A socket file nobody accepts on is left over from a crash: remove it. Anything else at the
 * path (a live server, a regular file) is not ours to delete. */
static int clear_stale_socket(const struct sockaddr_un *sun, char *err, size_t cap)
{
    const char *path = sun->sun_path;
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : fail_errno(err, cap, -1, "stat", path);
    if (!S_ISSOCK(sb.st_mode)) {
        snprintf(err, cap, "%s exists and is not a socket; remove it or choose another path",
                 path);
        return DMSG_EEXIST;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return fail_errno(err, cap, -1, "socket for", path);
    int rc = connect(probe, (const struct sockaddr *)sun, sizeof *sun);
    int e = errno;
    close(probe);
    if (rc == 0 || e == EAGAIN) {
        snprintf(err, cap, "%s is in use by a running server", path);
        return DMSG_EEXIST;
    }
    errno = e;
    if (e != ECONNREFUSED)
        return fail_errno(err, cap, -1, "probe", path);
    if (unlink(path) != 0 && errno != ENOENT)
        return fail_errno(err, cap, -1, "remove stale socket", path);
    return 0;
}

/* Undoes a half-made unix listener, keeping errno for the report. */
static int unix_fail(struct listen_socket *ls, int fd, char *err, size_t cap, const char *what)
{
    int e = errno;
    unlink(ls->path);
    ls->owns_file = false;
    errno = e;
    return fail_errno(err, cap, fd, what, ls->path);
}

int listen_socket_unix(struct listen_socket *ls, const char *path, unsigned mode, int backlog,
                       char *err, size_t err_cap)
{
    memset(ls, 0, sizeof *ls);
    ls->fd = -1;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path || strlen(path) >= sizeof ls->path) {
        snprintf(err, err_cap, "unix socket path %s is longer than %zu bytes", path,
                 sizeof sun.sun_path - 1);
        return DMSG_EINVAL;
    }
    strcpy(sun.sun_path, path);
    strcpy(ls->path, path);
    int rc = clear_stale_socket(&sun, err, err_cap);
    if (rc)
        return rc;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail_errno(err, err_cap, -1, "socket for", path);
    if (bind(fd, (const struct sockaddr *)&sun, sizeof sun) != 0)
        return fail_errno(err, err_cap, fd, "bind", path);
    ls->owns_file = true;
    /* Nobody can connect before listen(), so the mode is in place before the first client. */
    struct stat sb;
    if (chmod(path, mode) != 0 || lstat(path, &sb) != 0)
        return unix_fail(ls, fd, err, err_cap, "chmod");
    ls->file_dev = sb.st_dev;
    ls->file_ino = sb.st_ino;
    if (listen(fd, backlog) != 0)
        return unix_fail(ls, fd, err, err_cap, "listen");
    ls->fd = fd;
    return 0;
}

void listen_socket_remove_file(struct listen_socket *ls)
{
    struct stat sb;
    if (!ls->owns_file)
        return;
    ls->owns_file = false;
    if (lstat(ls->path, &sb) == 0 && sb.st_dev == ls->file_dev && sb.st_ino == ls->file_ino)
        unlink(ls->path);
}
