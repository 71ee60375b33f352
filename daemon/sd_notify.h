/* Tells the service manager where the daemon is in its life (systemd's Type=notify protocol):
 * ready once the listeners are bound, the outcome of a reload, and that it is stopping.
 *
 * Each call is one datagram to $NOTIFY_SOCKET and a no-op when that variable is unset (dmsgd
 * not started by systemd), so the daemon calls them unconditionally. Built with libsystemd's
 * sd_notify() when DMSG_HAVE_SYSTEMD is defined (CMake option DMSG_SYSTEMD), else with a small
 * built-in sender that speaks the same protocol. */
#ifndef DMSGD_SD_NOTIFY_H
#define DMSGD_SD_NOTIFY_H

#include <stdbool.h>

/* READY=1 and a STATUS line naming the server's public key. Call after every listener is bound
 * and the store is open: `systemctl start` returns then. */
void dmsgd_notify_ready(const char *public_key_hex);

/* STATUS after a SIGHUP reload: applied, or failed and the running configuration kept. */
void dmsgd_notify_reloaded(bool applied);

/* STOPPING=1: the drain has begun (SIGTERM); systemd waits for the exit. */
void dmsgd_notify_stopping(void);

#endif
