/* Where is dmsgd's admin API, and which token goes with it?
 *
 *   --admin PATH|unix:PATH   that unix socket
 *   --admin URL|HOST:PORT    that TCP listener (http:// assumed when no scheme is given)
 *   -c FILE                  dmsgd's config file: admin_socket (default <state_dir>/admin.sock),
 *                            else admin_address when the socket is absent; relative paths are
 *                            taken relative to FILE's directory, as dmsgd does
 *   neither                  the first existing socket of: <state_dir>/admin.sock for the
 *                            state directory dmsgd would pick for this user ($STATE_DIRECTORY,
 *                            /var/lib/dmsgd for root, $XDG_STATE_HOME/dmsgd,
 *                            ~/.local/state/dmsgd, ./dmsgd-state), then /var/lib/dmsgd/admin.sock
 *                            and /run/dmsgd/admin.sock (the packaged systemd unit)
 *
 * Token: --token-file, else <state_dir>/admin.token of the config's (or the candidate) state
 * directories, the first that exists. It is read and sent on TCP only: the unix socket needs
 * none. */
#ifndef DMSGCTL_LOCATE_H
#define DMSGCTL_LOCATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#define CTL_PATH_MAX 1024
#define CTL_DEFAULT_TOKEN_NAME "admin.token"
#define CTL_DEFAULT_SOCKET_NAME "admin.sock"

struct ctl_target {
    char unix_path[CTL_PATH_MAX];  /* "" for TCP */
    char base_url[CTL_PATH_MAX];   /* "http://localhost" on the socket */
    char token_file[CTL_PATH_MAX]; /* "" when none was found */
    bool token_explicit;           /* from --token-file: errors reading it are fatal */
    bool searched;                 /* found by the default search (no -c, no --admin) */
    char config_path[CTL_PATH_MAX]; /* -c FILE, for messages ("" without) */
    char tried[4 * CTL_PATH_MAX];  /* the sockets looked at, ", "-separated, for messages */
    char state_dir[CTL_PATH_MAX];  /* where the token should be, for messages ("" unknown) */
};

struct ctl_locate_input {
    const char *config_path;
    const char *admin;
    const char *token_file;
    const char *(*env)(const char *name);  /* getenv, or a test's */
    bool is_root;
};

/* 0, or CTL_EXIT_USAGE with a message in err (unreadable or malformed -c FILE, an --admin
 * value that is neither a path nor a URL). */
int ctl_locate(const struct ctl_locate_input *in, struct ctl_target *t, char *err, size_t cap);

/* The state directory dmsgd would use with no state_dir configured, for this user (the same
 * order as the daemon's config_resolve_state_dir). */
void ctl_default_state_dir(const char *(*env)(const char *name), bool is_root, char *out,
                           size_t cap);

#endif
