/* dmsgd: the DMSG relay server. Parses the command line, loads the configuration and runs the
 * daemon; no protocol logic here. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dmsg/error.h"
#include "dmsg/rng.h"
#include "dmsgd.h"
#include "sd_notify.h"

#ifndef DMSGD_VERSION
#define DMSGD_VERSION "dev"
#endif

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage: dmsgd [-c FILE]           run (no FILE: the embedded default)\n"
            "       dmsgd start [FILE]        run with FILE, as the reference server is started\n"
            "       dmsgd -n -c FILE          check FILE and exit\n"
            "       dmsgd gen-config [FILE]   write a full config with fresh keys (stdout when\n"
            "                                 no FILE; an existing FILE is never overwritten)\n"
            "       dmsgd --version | --help\n"
            "\n"
            "With no config file dmsgd runs its embedded default: keys generated once and kept\n"
            "in the state directory, sessions on 127.0.0.1:8081, the embedded discovery on\n"
            "127.0.0.1:9090. State directory: $STATE_DIRECTORY, else /var/lib/dmsgd for root,\n"
            "else $XDG_STATE_HOME/dmsgd or ~/.local/state/dmsgd.\n"
            "Signals: SIGTERM/SIGINT drain and exit; SIGHUP reloads log_level and limits.\n");
}

struct options {
    const char *config_path;
    bool check_only;
    bool gen_config;
    const char *gen_path;
};

/* 0, or the exit code to leave with. */
static int parse_args(int argc, char **argv, struct options *o)
{
    int i = 1;

    memset(o, 0, sizeof *o);
    if (argc > 1 && strcmp(argv[1], "start") == 0) {
        if (argc > 3) {
            usage(stderr);
            return EXIT_USAGE;
        }
        o->config_path = argc == 3 ? argv[2] : NULL;
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "gen-config") == 0) {
        if (argc > 3) {
            usage(stderr);
            return EXIT_USAGE;
        }
        o->gen_config = true;
        o->gen_path = argc == 3 ? argv[2] : NULL;
        return 0;
    }
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "dmsgd: %s needs a file name\n", argv[i]);
                return EXIT_USAGE;
            }
            o->config_path = argv[++i];
        } else if (strcmp(argv[i], "-n") == 0 || strcmp(argv[i], "--check") == 0) {
            o->check_only = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(EXIT_SUCCESS);
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("dmsgd %s\n", DMSGD_VERSION);
            exit(EXIT_SUCCESS);
        } else {
            fprintf(stderr, "dmsgd: unknown argument \"%s\"\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (o->check_only && o->config_path == NULL) {
        fprintf(stderr, "dmsgd: -n needs -c FILE\n");
        return EXIT_USAGE;
    }
    return 0;
}

static int gen_config(const char *path)
{
    struct dmsgd_config cfg;
    dmsg_rng rng = dmsg_rng_system();
    char *text;
    int rc = EXIT_SUCCESS;

    if (dmsg_cipher_init() != 0)
        return EXIT_FAILURE;
    config_defaults(&cfg);
    if (dmsg_keypair_generate(&cfg.public_key, &cfg.secret_key, &rng) != 0)
        return EXIT_FAILURE;
    cfg.has_keys = true;
    text = config_to_json(&cfg);
    dmsg_wipe(&cfg.secret_key, sizeof cfg.secret_key);
    if (text == NULL)
        return EXIT_FAILURE;
    if (path == NULL) {
        printf("%s\n", text);
    } else {
        /* The file holds the secret key: owner-only, and never over an existing file. */
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        size_t len = strlen(text);
        if (fd < 0) {
            fprintf(stderr, "dmsgd: cannot create %s: %s\n", path, strerror(errno));
            rc = EXIT_FAILURE;
        } else {
            if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1 || fsync(fd) != 0) {
                fprintf(stderr, "dmsgd: cannot write %s: %s\n", path, strerror(errno));
                rc = EXIT_FAILURE;
            }
            close(fd);
        }
    }
    dmsg_wipe(text, strlen(text));
    free(text);
    return rc;
}

static void print_config_warning(void *user, const char *key, const char *message)
{
    struct dmsgd_log *lg = user;
    char quoted[300];

    log_warn(lg, "config", "key=%s problem=%s", key, log_quote(message, quoted, sizeof quoted));
}

static int load_config(const struct options *o, struct dmsgd_config *cfg)
{
    struct dmsgd_log lg;
    struct config_error err;

    log_init(&lg);
    config_defaults(cfg);
    if (o->config_path == NULL)
        return 0;
    if (dmsg_cipher_init() != 0)
        return EXIT_FAILURE;
    if (config_load_file(cfg, o->config_path, print_config_warning, &lg, &err) != 0) {
        fprintf(stderr, "dmsgd: %s\n", err.message);
        return EXIT_USAGE;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct dmsgd *d;
    struct dmsgd_config cfg;
    struct options o;
    char err[600] = "";
    int rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.gen_config)
        return gen_config(o.gen_path);
    rc = load_config(&o, &cfg);
    if (rc != 0)
        return rc;
    if (o.check_only) {
        printf("dmsgd: %s is valid\n", o.config_path);
        return EXIT_SUCCESS;
    }
    signal(SIGPIPE, SIG_IGN);
    umask(0077); /* keys, the database and the admin token are nobody else's business */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "dmsgd: cannot initialise libcurl\n");
        return EXIT_FAILURE;
    }
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return EXIT_FAILURE;
    if (dmsgd_init(d, &cfg, o.config_path, err, sizeof err) != 0) {
        dmsg_wipe(&cfg.secret_key, sizeof cfg.secret_key);
        fprintf(stderr, "dmsgd: %s\n", err);
        free(d);
        return EXIT_FAILURE;
    }
    dmsg_wipe(&cfg.secret_key, sizeof cfg.secret_key);
    if (dmsgd_start(d, err, sizeof err) != 0) {
        fprintf(stderr, "dmsgd: %s\n", err);
        dmsgd_free(d);
        free(d);
        return EXIT_FAILURE;
    }
    dmsgd_notify_ready(d->public_key_hex);
    rc = dmsgd_run(d);
    dmsgd_free(d);
    free(d);
    curl_global_cleanup();
    return rc;
}
