/* How dmsgctl finds dmsgd: --admin, -c FILE (admin_socket, state_dir, admin_address, paths
 * relative to the file), the default search, and the token file. Where the daemon's own
 * config code is linked in, both must agree on where the socket is. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl_support.h"
#include "dmsgctl.h"
#include "locate.h"

#ifdef CTL_TEST_WITH_DAEMON_CONFIG
#include "config.h"
#endif

static char tmp[256];

static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/dmsgctl-locate-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void remove_tmp(void)
{
    char cmd[300];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(ctl_locate, .init = make_tmp, .fini = remove_tmp, .timeout = 10);

/* A fake environment for the default search. */
static const char *fake_env_state_directory;
static const char *fake_env_xdg;
static const char *fake_env_home;

static const char *fake_env(const char *name)
{
    if (strcmp(name, "STATE_DIRECTORY") == 0)
        return fake_env_state_directory;
    if (strcmp(name, "XDG_STATE_HOME") == 0)
        return fake_env_xdg;
    if (strcmp(name, "HOME") == 0)
        return fake_env_home;
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fputs(text, f);
    fclose(f);
}

/* A unix socket file at path (bound, then the fd closed: the file stays). */
static void make_socket(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_lt(strlen(path), sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s: %s", path, strerror(errno));
    close(fd);
}

static int locate(const char *config, const char *admin, const char *token, bool root,
                  struct ctl_target *t, char *err, size_t cap)
{
    struct ctl_locate_input in = {.config_path = config, .admin = admin, .token_file = token,
                                  .env = fake_env, .is_root = root};
    err[0] = '\0';
    return ctl_locate(&in, t, err, cap);
}

Test(ctl_locate, admin_option_forms)
{
    struct ctl_target t;
    char err[512];

    cr_assert_eq(locate(NULL, "/run/dmsgd/admin.sock", NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, "/run/dmsgd/admin.sock");
    cr_expect_str_eq(t.base_url, "http://localhost");
    cr_assert_eq(locate(NULL, "unix:./rel.sock", NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, "./rel.sock");
    cr_assert_eq(locate(NULL, "http://127.0.0.1:8083/", NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, "");
    cr_expect_str_eq(t.base_url, "http://127.0.0.1:8083", "the trailing slash goes");
    cr_assert_eq(locate(NULL, "[::1]:8083", NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.base_url, "http://[::1]:8083");
    cr_expect_eq(locate(NULL, "somewhere", NULL, false, &t, err, sizeof err), CTL_EXIT_USAGE);
    cr_expect(strstr(err, "neither a socket path") != NULL, "%s", err);
    cr_assert_eq(locate(NULL, "/x.sock", "/my/token", false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.token_file, "/my/token");
    cr_expect(t.token_explicit);
}

Test(ctl_locate, config_file_admin_socket_relative_to_the_file)
{
    struct ctl_target t;
    char err[512], cfg[512], expect[512];

    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    write_file(cfg, "{\"ADMIN_SOCKET\": \"run/admin.sock\", \"state_dir\": \"state\"}");
    cr_assert_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), 0, "%s", err);
    snprintf(expect, sizeof expect, "%s/run/admin.sock", tmp);
    cr_expect_str_eq(t.unix_path, expect, "keys match without regard to case, as dmsgd's");
    snprintf(expect, sizeof expect, "%s/state", tmp);
    cr_expect_str_eq(t.state_dir, expect);
    cr_expect_not(t.searched);
}

Test(ctl_locate, config_file_state_dir_gives_socket_and_token)
{
    struct ctl_target t;
    char err[512], cfg[512], dir[512], sock[600], token[600];

    snprintf(dir, sizeof dir, "%s/state", tmp);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    write_file(cfg, "{\"state_dir\": \"state\", \"admin_address\": \"127.0.0.1:8083\"}");
    snprintf(token, sizeof token, "%s/admin.token", dir);
    write_file(token, "abc\n");

    /* No socket yet: the TCP address, with the token of the state directory. */
    cr_assert_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), 0, "%s", err);
    cr_expect_str_eq(t.unix_path, "");
    cr_expect_str_eq(t.base_url, "http://127.0.0.1:8083");
    cr_expect_str_eq(t.token_file, token);
    cr_expect_not(t.token_explicit);

    /* Once the socket exists, it wins. */
    snprintf(sock, sizeof sock, "%s/admin.sock", dir);
    make_socket(sock);
    cr_assert_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, sock);
}

Test(ctl_locate, config_without_socket_or_address_names_the_expected_socket)
{
    struct ctl_target t;
    char err[512], cfg[512], expect[600];

    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    write_file(cfg, "{\"state_dir\": \"/nonexistent/dmsgd\"}");
    cr_assert_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), 0);
    snprintf(expect, sizeof expect, "/nonexistent/dmsgd/admin.sock");
    cr_expect_str_eq(t.unix_path, expect);
}

Test(ctl_locate, bad_config_files_are_usage_errors_that_explain)
{
    struct ctl_target t;
    char err[1024], cfg[512];

    snprintf(cfg, sizeof cfg, "%s/missing.json", tmp);
    cr_expect_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), CTL_EXIT_USAGE);
    cr_expect(strstr(err, "No such file or directory") != NULL, "%s", err);
    cr_expect(strstr(err, "pass the file dmsgd runs with") != NULL, "%s", err);

    snprintf(cfg, sizeof cfg, "%s/broken.json", tmp);
    write_file(cfg, "{\"state_dir\": ");
    cr_expect_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), CTL_EXIT_USAGE);
    cr_expect(strstr(err, "broken.json:1:") != NULL, "names file and line: %s", err);
    cr_expect(strstr(err, "dmsgd -n -c") != NULL, "says how to check it: %s", err);

    write_file(cfg, "[1, 2]");
    cr_expect_eq(locate(cfg, NULL, NULL, false, &t, err, sizeof err), CTL_EXIT_USAGE);
    cr_expect(strstr(err, "not a dmsgd config file") != NULL, "%s", err);
}

Test(ctl_locate, default_search_follows_the_daemons_state_dir_rules)
{
    struct ctl_target t;
    char err[512], dir[512], sock[600], home_state[600];

    /* Nothing exists: the first candidate is named, and every candidate is listed. */
    fake_env_state_directory = NULL;
    fake_env_xdg = NULL;
    fake_env_home = tmp;
    cr_assert_eq(locate(NULL, NULL, NULL, false, &t, err, sizeof err), 0);
    snprintf(home_state, sizeof home_state, "%s/.local/state/dmsgd/admin.sock", tmp);
    cr_expect_str_eq(t.unix_path, home_state);
    cr_expect(t.searched);
    cr_expect(strstr(t.tried, home_state) != NULL, "%s", t.tried);
    cr_expect(strstr(t.tried, "/var/lib/dmsgd/admin.sock") != NULL, "%s", t.tried);
    cr_expect(strstr(t.tried, "/run/dmsgd/admin.sock") != NULL, "%s", t.tried);

    /* $STATE_DIRECTORY (systemd) comes first, its first entry. */
    snprintf(dir, sizeof dir, "%s/sd", tmp);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(sock, sizeof sock, "%s/admin.sock", dir);
    make_socket(sock);
    {
        char list[600];
        snprintf(list, sizeof list, "%s:/other", dir);
        fake_env_state_directory = list;
        cr_assert_eq(locate(NULL, NULL, NULL, false, &t, err, sizeof err), 0);
        cr_expect_str_eq(t.unix_path, sock);
    }
    fake_env_state_directory = NULL;

    /* $XDG_STATE_HOME/dmsgd, when absolute. */
    fake_env_xdg = tmp;
    snprintf(dir, sizeof dir, "%s/dmsgd", tmp);
    cr_assert_eq(mkdir(dir, 0700), 0);
    snprintf(sock, sizeof sock, "%s/admin.sock", dir);
    make_socket(sock);
    cr_assert_eq(locate(NULL, NULL, NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, sock);
    fake_env_xdg = "relative/not/used";
    cr_assert_eq(locate(NULL, NULL, NULL, false, &t, err, sizeof err), 0);
    cr_expect_str_eq(t.unix_path, home_state, "a relative XDG_STATE_HOME is ignored");
    fake_env_xdg = NULL;

    /* root: /var/lib/dmsgd. */
    {
        char out[256];
        ctl_default_state_dir(fake_env, true, out, sizeof out);
        cr_expect_str_eq(out, "/var/lib/dmsgd");
        fake_env_home = NULL;
        ctl_default_state_dir(fake_env, false, out, sizeof out);
        cr_expect_str_eq(out, "dmsgd-state");
    }
}

#ifdef CTL_TEST_WITH_DAEMON_CONFIG
static const char *no_env(const char *name)
{
    (void)name;
    return NULL;
}

/* dmsgctl reads the same file as dmsgd: both must arrive at the same socket path. */
Test(ctl_locate, agrees_with_the_daemons_config_code)
{
    const char *configs[] = {
        "{\"state_dir\": \"state\"}",
        "{\"state_dir\": \"/var/lib/x\", \"admin_socket\": \"sock/admin.sock\"}",
        "{\"admin_socket\": \"/run/dmsgd/admin.sock\"}",
    };

    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        struct dmsgd_config cfg;
        struct config_error cerr;
        struct ctl_target t;
        char path[512], err[512], daemon_socket[2 * CONFIG_PATH_MAX + 16];

        snprintf(path, sizeof path, "%s/config%zu.json", tmp, i);
        write_file(path, configs[i]);
        config_defaults(&cfg);
        cr_assert_eq(config_load_file(&cfg, path, NULL, NULL, &cerr), 0, "%s", cerr.message);
        config_resolve_state_dir(&cfg, no_env, true);
        if (cfg.admin_socket[0] != '\0')
            snprintf(daemon_socket, sizeof daemon_socket, "%s", cfg.admin_socket);
        else
            snprintf(daemon_socket, sizeof daemon_socket, "%s/admin.sock", cfg.state_dir);
        fake_env_state_directory = fake_env_xdg = fake_env_home = NULL;
        cr_assert_eq(locate(path, NULL, NULL, true, &t, err, sizeof err), 0, "%s", err);
        cr_expect_str_eq(t.unix_path, daemon_socket, "config %zu", i);
    }
}
#endif
