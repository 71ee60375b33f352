/* Finding dmsgd's admin socket or address and its token; see locate.h. */
#include "locate.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dmsgctl.h"
#include "util.h"

#define MAX_CANDIDATES 6
#define PACKAGED_STATE_DIR "/var/lib/dmsgd"
#define PACKAGED_RUNTIME_SOCKET "/run/dmsgd/admin.sock"

struct daemon_config {
    char state_dir[CTL_PATH_MAX];
    char admin_socket[CTL_PATH_MAX];
    char admin_address[CTL_PATH_MAX];
};

struct candidates {
    char path[MAX_CANDIDATES][CTL_PATH_MAX];
    size_t n;
};

static void add_candidate(struct candidates *c, const char *path)
{
    if (path[0] == '\0' || c->n == MAX_CANDIDATES)
        return;
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->path[i], path) == 0)
            return;
    }
    size_t len = strlen(path);
    if (len >= CTL_PATH_MAX)
        return; /* a truncated path would name another file */
    memcpy(c->path[c->n++], path, len + 1);
}

void ctl_default_state_dir(const char *(*env)(const char *name), bool is_root, char *out,
                           size_t cap)
{
    const char *v = env("STATE_DIRECTORY");

    if (v != NULL && v[0] != '\0') {
        /* systemd separates several StateDirectory= entries with ':'; dmsgd takes the first. */
        snprintf(out, cap, "%.*s", (int)strcspn(v, ":"), v);
        return;
    }
    if (is_root) {
        snprintf(out, cap, "%s", PACKAGED_STATE_DIR);
        return;
    }
    v = env("XDG_STATE_HOME");
    if (v != NULL && v[0] == '/') {
        snprintf(out, cap, "%s/dmsgd", v);
        return;
    }
    v = env("HOME");
    if (v != NULL && v[0] == '/') {
        snprintf(out, cap, "%s/.local/state/dmsgd", v);
        return;
    }
    snprintf(out, cap, "dmsgd-state");
}

/* As dmsgd: a relative path in the config file is relative to the file's directory. */
static void relative_to(char *path, size_t cap, const char *config_file)
{
    const char *slash = strrchr(config_file, '/');
    char joined[2 * CTL_PATH_MAX + 2];

    if (path[0] == '\0' || path[0] == '/' || slash == NULL)
        return;
    snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - config_file), config_file, path);
    if (strlen(joined) < cap)
        memcpy(path, joined, strlen(joined) + 1);
}

/* dmsgd matches config keys without regard to case; so do we. */
static const char *config_string(json_t *root, const char *key)
{
    const char *k;
    json_t *v;

    json_object_foreach(root, k, v) {
        if (strcasecmp(k, key) == 0)
            return json_string_value(v);
    }
    return NULL;
}

static int read_daemon_config(const char *path, struct daemon_config *dc, char *err, size_t cap)
{
    json_error_t jerr;
    json_t *root;
    const char *s;

    memset(dc, 0, sizeof *dc);
    root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            snprintf(err, cap,
                     "cannot read the config file %s: %s — pass the file dmsgd runs with "
                     "(its -c argument; `systemctl cat dmsgd` shows it)",
                     path, strerror(errno));
        } else {
            fclose(f);
            snprintf(err, cap,
                     "%s:%d:%d: %s — this is not a valid JSON config file; `dmsgd -n -c %s` "
                     "checks it",
                     path, jerr.line, jerr.column, jerr.text, path);
        }
        return CTL_EXIT_USAGE;
    }
    if (!json_is_object(root)) {
        snprintf(err, cap,
                 "%s is not a dmsgd config file (its top level is not a JSON object) — pass "
                 "the file dmsgd runs with",
                 path);
        json_decref(root);
        return CTL_EXIT_USAGE;
    }
    if ((s = config_string(root, "state_dir")) != NULL)
        copy_text(dc->state_dir, sizeof dc->state_dir, s);
    if ((s = config_string(root, "admin_socket")) != NULL)
        copy_text(dc->admin_socket, sizeof dc->admin_socket, s);
    if ((s = config_string(root, "admin_address")) != NULL)
        copy_text(dc->admin_address, sizeof dc->admin_address, s);
    json_decref(root);
    relative_to(dc->state_dir, sizeof dc->state_dir, path);
    relative_to(dc->admin_socket, sizeof dc->admin_socket, path);
    return 0;
}

/* A path that stat() cannot rule out: it exists, or we may not look (then connecting will say
 * "Permission denied", which is the useful message). */
static bool maybe_socket(const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0)
        return S_ISSOCK(st.st_mode);
    return errno == EACCES;
}

static bool looks_like_host_port(const char *s)
{
    const char *colon = strrchr(s, ':');

    return colon != NULL && colon != s && colon[1] != '\0' &&
           strspn(colon + 1, "0123456789") == strlen(colon + 1) && strchr(s, '/') == NULL;
}

static int parse_admin(const char *admin, struct ctl_target *t, char *err, size_t cap)
{
    size_t len;

    if (strncmp(admin, "unix:", 5) == 0 && admin[5] != '\0') {
        copy_text(t->unix_path, sizeof t->unix_path, admin + 5);
    } else if (admin[0] == '/' || admin[0] == '.') {
        copy_text(t->unix_path, sizeof t->unix_path, admin);
    } else if (strncmp(admin, "http://", 7) == 0 || strncmp(admin, "https://", 8) == 0) {
        copy_text(t->base_url, sizeof t->base_url, admin);
    } else if (looks_like_host_port(admin)) {
        snprintf(t->base_url, sizeof t->base_url, "http://%s", admin);
    } else {
        snprintf(err, cap,
                 "--admin `%s' is neither a socket path (/run/dmsgd/admin.sock, unix:PATH) nor "
                 "an address (http://127.0.0.1:8083 or 127.0.0.1:8083)",
                 admin);
        return CTL_EXIT_USAGE;
    }
    if (t->unix_path[0] != '\0') {
        snprintf(t->base_url, sizeof t->base_url, "http://localhost");
        return 0;
    }
    len = strlen(t->base_url);
    while (len > 0 && t->base_url[len - 1] == '/')
        t->base_url[--len] = '\0';
    return 0;
}

static void choose_token(const struct ctl_locate_input *in, const struct candidates *dirs,
                         struct ctl_target *t)
{
    if (in->token_file != NULL) {
        copy_text(t->token_file, sizeof t->token_file, in->token_file);
        t->token_explicit = true;
        return;
    }
    for (size_t i = 0; i < dirs->n; i++) {
        char path[CTL_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", dirs->path[i], CTL_DEFAULT_TOKEN_NAME);
        if (access(path, F_OK) == 0) {
            copy_text(t->token_file, sizeof t->token_file, path);
            copy_text(t->state_dir, sizeof t->state_dir, dirs->path[i]);
            return;
        }
    }
}

int ctl_locate(const struct ctl_locate_input *in, struct ctl_target *t, char *err, size_t cap)
{
    struct daemon_config dc;
    struct candidates dirs = {.n = 0}, sockets = {.n = 0};
    char def[CTL_PATH_MAX];
    int rc;

    memset(t, 0, sizeof *t);
    memset(&dc, 0, sizeof dc);
    if (in->config_path != NULL && (rc = read_daemon_config(in->config_path, &dc, err, cap)) != 0)
        return rc;

    if (dc.state_dir[0] != '\0') {
        add_candidate(&dirs, dc.state_dir);
    } else {
        ctl_default_state_dir(in->env, in->is_root, def, sizeof def);
        add_candidate(&dirs, def);
        add_candidate(&dirs, PACKAGED_STATE_DIR);
    }
    copy_text(t->state_dir, sizeof t->state_dir, dirs.path[0]);
    choose_token(in, &dirs, t);

    if (in->admin != NULL)
        return parse_admin(in->admin, t, err, cap);

    if (dc.admin_socket[0] != '\0') {
        add_candidate(&sockets, dc.admin_socket);
    } else {
        for (size_t i = 0; i < dirs.n; i++) {
            char path[CTL_PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/%s", dirs.path[i], CTL_DEFAULT_SOCKET_NAME);
            add_candidate(&sockets, path);
        }
        add_candidate(&sockets, PACKAGED_RUNTIME_SOCKET);
    }
    t->searched = in->config_path == NULL;
    if (in->config_path != NULL)
        copy_text(t->config_path, sizeof t->config_path, in->config_path);
    for (size_t i = 0; i < sockets.n; i++) {
        size_t used = strlen(t->tried);
        snprintf(t->tried + used, sizeof t->tried - used, "%s%s", i > 0 ? ", " : "",
                 sockets.path[i]);
    }
    for (size_t i = 0; i < sockets.n; i++) {
        if (maybe_socket(sockets.path[i])) {
            copy_text(t->unix_path, sizeof t->unix_path, sockets.path[i]);
            snprintf(t->base_url, sizeof t->base_url, "http://localhost");
            return 0;
        }
    }
    if (dc.admin_address[0] != '\0')
        return parse_admin(dc.admin_address, t, err, cap);
    /* Nothing is there: connect to the first candidate, so the error names it. */
    copy_text(t->unix_path, sizeof t->unix_path, sockets.path[0]);
    snprintf(t->base_url, sizeof t->base_url, "http://localhost");
    return 0;
}
