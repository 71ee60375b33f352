/* Service manager notifications; see sd_notify.h. */
#include "sd_notify.h"

#include <stdio.h>

#ifdef DMSG_HAVE_SYSTEMD

#include <systemd/sd-daemon.h>

static void notify(const char *message)
{
    /* Failures are not the daemon's concern: without a manager listening there is nobody to
     * tell, and systemd reports a unit that never became ready on its own. */
    (void)sd_notify(0, message);
}

#else /* the protocol without libsystemd: one datagram to $NOTIFY_SOCKET */

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void notify(const char *message)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    size_t path_len;
    socklen_t addr_len;
    int fd;

    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return;
    path_len = strlen(path);
    if (path_len >= sizeof addr.sun_path)
        return;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, path_len);
    if (path[0] == '@')
        addr.sun_path[0] = '\0'; /* the abstract namespace: no terminating NUL counts */
    addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len +
                           (path[0] == '/' ? 1 : 0));
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)sendto(fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
    close(fd);
}

#endif

void dmsgd_notify_ready(const char *public_key_hex)
{
    char message[160];

    snprintf(message, sizeof message, "READY=1\nSTATUS=serving as %s", public_key_hex);
    notify(message);
}

void dmsgd_notify_reloaded(bool applied)
{
    notify(applied ? "STATUS=configuration reloaded"
                   : "STATUS=reload failed; the running configuration is kept (see the log)");
}

void dmsgd_notify_stopping(void)
{
    notify("STOPPING=1\nSTATUS=draining");
}
