/* dmsgctl: the operator's client of dmsgd's admin API (api/openapi.yaml).
 *
 * main.c parses the command line (parser.c, a keyword table like bgpctl's), finds the daemon
 * (locate.c), connects (http.c) and runs one command. Each noun has its own file (peer.c,
 * route_setup.c, sessions.c, streams.c, events.c, mesh.c, metrics.c, info.c, stats.c) holding
 * its commands and its manual page; all stdout formatting goes through output.c. */
#ifndef DMSGCTL_H
#define DMSGCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "dmsg/cipher.h"
#include "output.h"

#ifndef DMSGCTL_VERSION
#define DMSGCTL_VERSION "dev"
#endif

/* Exit status (documented in `dmsgctl --help`). */
enum ctl_exit {
    CTL_EXIT_OK = 0,           /* the command did what was asked */
    CTL_EXIT_REFUSED = 1,      /* dmsgd answered with an error (4xx/5xx problem), or unhealthy */
    CTL_EXIT_USAGE = 2,        /* bad command line, option or argument; unreadable -c FILE */
    CTL_EXIT_UNREACHABLE = 3,  /* no answer: socket missing, connection refused, timeout */
    CTL_EXIT_DENIED = 4,       /* not permitted: 401/403, or the socket/token is not readable */
    CTL_EXIT_OUTPUT = 5        /* stdout could not be written (closed pipe, full disk) */
};

/* Options that belong to commands (bit set in ctl_command.options when accepted). */
enum ctl_opt {
    OPT_NOTE = 1u << 0,
    OPT_LIMIT = 1u << 1,
    OPT_WATCH = 1u << 2,
    OPT_INTERVAL = 1u << 3,
    OPT_FILTER = 1u << 4,
    OPT_FOLLOW = 1u << 5,
    OPT_TYPE = 1u << 6,
    OPT_COUNT = 1u << 7,
    OPT_DOT = 1u << 8,
    OPT_SINCE = 1u << 9,
    OPT_SERIES = 1u << 10,
    OPT_STATE = 1u << 11,
    OPT_SESSION = 1u << 12,
    OPT_PATH = 1u << 13
};

#define CTL_MAX_FILTERS 8

struct ctl;

/* A noun's manual page; help.c renders it (NAME, SYNOPSIS, DESCRIPTION, OPTIONS, OUTPUT,
 * EXIT STATUS, EXAMPLES). */
struct ctl_noun {
    const char *name;
    const char *summary;      /* one line */
    const char *synopsis;     /* one usage line per command, "\n"-separated */
    const char *description;
    const char *options;      /* "--name ARG\tmeaning\n" lines; NULL when none */
    const char *output;       /* columns per mode; NULL when nothing special */
    const char *examples;
};

struct ctl_command {
    const char *name;                 /* as typed, for messages: "peer add" */
    const struct ctl_noun *noun;
    unsigned options;                 /* enum ctl_opt bits */
    int (*run)(struct ctl *ctl);      /* returns an enum ctl_exit */
};

struct ctl_args {
    /* global options */
    const char *config_path;          /* -c */
    const char *admin;                /* --admin */
    const char *token_file;           /* --token-file */
    enum output_mode mode;
    bool mode_set;
    long timeout_ms;                  /* --timeout; default 10 s */
    bool help, version;

    /* what to do */
    const struct ctl_command *cmd;
    const struct ctl_noun *help_noun; /* help NOUN / NOUN --help */

    /* positional arguments */
    char pk[DMSG_PK_HEX_LEN + 1];     /* validated, lowercase */
    const char *address;              /* validated HOST:PORT */

    /* command options */
    unsigned given;                   /* enum ctl_opt bits seen */
    const char *note;
    long long limit;
    double interval_s;
    const char *filters[CTL_MAX_FILTERS];
    size_t n_filters;
    const char *types;                /* comma-separated, validated */
    char types_buf[256];
    long long count;
    const char *since;
    const char *series;
    const char *state;
    char session_pk[DMSG_PK_HEX_LEN + 1];
    const char *path;
};

struct ctl_conn;

struct ctl {
    struct ctl_args args;
    struct ctl_conn *conn;
    struct output *out;
    FILE *err;                        /* where messages for people go (stderr) */
};

/* parser.c: fills a from argv. 0 when a command (or help/version) was recognised, else
 * CTL_EXIT_USAGE after printing what was wrong and what is valid to err. */
int ctl_parse_args(int argc, char **argv, struct ctl_args *a, FILE *err);

/* help.c */
void ctl_print_help(FILE *out);                                      /* dmsgctl --help */
void ctl_print_noun_help(FILE *out, const struct ctl_noun *noun);    /* dmsgctl help NOUN */
void ctl_print_usage(FILE *out);                                     /* short, on bad usage */
/* The nouns in the order of the manual, NULL-terminated. */
extern const struct ctl_noun *const ctl_nouns[];

/* The commands, defined by the noun files. */
extern const struct ctl_command cmd_peer_add, cmd_peer_rm, cmd_peer_ls, cmd_peer_show;
extern const struct ctl_command cmd_route_setup_on, cmd_route_setup_off, cmd_route_setup_status;
extern const struct ctl_command cmd_routes;
extern const struct ctl_command cmd_sessions, cmd_session_show, cmd_session_kick;
extern const struct ctl_command cmd_streams, cmd_events, cmd_mesh, cmd_metrics;
extern const struct ctl_command cmd_info, cmd_health, cmd_stats;
extern const struct ctl_noun noun_peer, noun_route_setup, noun_routes, noun_sessions,
    noun_streams, noun_events, noun_mesh, noun_metrics, noun_info, noun_health, noun_stats;

/* Renderers: build the view of a daemon document and print it. They take the body as
 * received so that --json prints it unchanged; tests feed them fixed documents. Each returns
 * an enum ctl_exit (CTL_EXIT_REFUSED when the document does not follow the API). */
int render_peer_list(struct ctl *ctl, const char *body, size_t len);
int render_peer(struct ctl *ctl, const char *body, size_t len, const char *title);
int render_route_setup(struct ctl *ctl, const char *body, size_t len);
int render_route_setups(struct ctl *ctl, const char *body, size_t len);
int render_session_list(struct ctl *ctl, const char *body, size_t len);
int render_session(struct ctl *ctl, const char *body, size_t len);
int render_stream_list(struct ctl *ctl, const char *body, size_t len);
int render_mesh(struct ctl *ctl, const char *body, size_t len, bool dot);
int render_metrics(struct ctl *ctl, const char *body, size_t len);
int render_info(struct ctl *ctl, const char *body, size_t len);
int render_health(struct ctl *ctl, const char *body, size_t len);
int render_stats(struct ctl *ctl, const char *body, size_t len);
/* One SSE event (its "event" name and its data line). */
int render_event(struct ctl *ctl, const char *type, const char *data, size_t len);

/* Shared by the renderers: parses body as a JSON object, or reports on ctl->err that dmsgd's
 * answer does not follow the API (what, and that versions may differ). NULL then. */
json_t *ctl_parse_body(struct ctl *ctl, const char *body, size_t len, const char *what);
/* Emits v and frees it; CTL_EXIT_OK or CTL_EXIT_OUTPUT. */
int ctl_emit(struct ctl *ctl, struct view *v);

#endif
