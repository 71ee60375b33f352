/* The command line: global options anywhere, then "noun verb arguments" walked through keyword
 * tables as relayctl/bgpctl do (a keyword may be shortened to any unique prefix), then the
 * command's own options. Every mistake is a usage error that says what was wrong and what
 * would have been valid. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dmsgctl.h"
#include "util.h"

enum token_type {
    T_END = 0,
    T_KEYWORD,   /* keyword: matched by unique prefix */
    T_PK,        /* a public key */
    T_ADDRESS,   /* HOST:PORT */
    T_DONE       /* the command may end here (cmd) */
};

struct token {
    enum token_type type;
    const char *keyword;
    const struct ctl_command *cmd;   /* chosen when this token matches */
    const struct token *next;        /* NULL: nothing may follow */
    const struct ctl_noun *noun;     /* for help and messages (top level) */
};

static const struct token t_peer_add_address[] = {
    {T_ADDRESS, "HOST:PORT", &cmd_peer_add, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_peer_add[] = {
    {T_PK, "PK", NULL, t_peer_add_address, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_peer_rm[] = {
    {T_PK, "PK", &cmd_peer_rm, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_peer_show[] = {
    {T_PK, "PK", &cmd_peer_show, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_peer[] = {
    {T_DONE, NULL, &cmd_peer_ls, NULL, NULL},
    {T_KEYWORD, "add", NULL, t_peer_add, NULL},
    {T_KEYWORD, "rm", NULL, t_peer_rm, NULL},
    {T_KEYWORD, "remove", NULL, t_peer_rm, NULL},
    {T_KEYWORD, "ls", &cmd_peer_ls, NULL, NULL},
    {T_KEYWORD, "list", &cmd_peer_ls, NULL, NULL},
    {T_KEYWORD, "show", NULL, t_peer_show, NULL},
    {T_END, NULL, NULL, NULL, NULL}};

static const struct token t_route_setup[] = {
    {T_DONE, NULL, &cmd_route_setup_status, NULL, NULL},
    {T_KEYWORD, "on", &cmd_route_setup_on, NULL, NULL},
    {T_KEYWORD, "off", &cmd_route_setup_off, NULL, NULL},
    {T_KEYWORD, "status", &cmd_route_setup_status, NULL, NULL},
    {T_KEYWORD, "enable", &cmd_route_setup_on, NULL, NULL},
    {T_KEYWORD, "disable", &cmd_route_setup_off, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};

static const struct token t_session_show[] = {
    {T_PK, "PK", &cmd_session_show, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_session_kick[] = {
    {T_PK, "PK", &cmd_session_kick, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};
static const struct token t_session[] = {
    {T_KEYWORD, "show", NULL, t_session_show, NULL},
    {T_KEYWORD, "kick", NULL, t_session_kick, NULL},
    {T_PK, "PK", &cmd_session_show, NULL, NULL},
    {T_END, NULL, NULL, NULL, NULL}};

static const struct token t_main[] = {
    {T_KEYWORD, "peer", NULL, t_peer, &noun_peer},
    {T_KEYWORD, "route-setup", NULL, t_route_setup, &noun_route_setup},
    {T_KEYWORD, "routes", &cmd_routes, NULL, &noun_routes},
    {T_KEYWORD, "sessions", &cmd_sessions, NULL, &noun_sessions},
    {T_KEYWORD, "session", NULL, t_session, &noun_sessions},
    {T_KEYWORD, "streams", &cmd_streams, NULL, &noun_streams},
    {T_KEYWORD, "events", &cmd_events, NULL, &noun_events},
    {T_KEYWORD, "mesh", &cmd_mesh, NULL, &noun_mesh},
    {T_KEYWORD, "metrics", &cmd_metrics, NULL, &noun_metrics},
    {T_KEYWORD, "info", &cmd_info, NULL, &noun_info},
    {T_KEYWORD, "health", &cmd_health, NULL, &noun_health},
    {T_KEYWORD, "stats", &cmd_stats, NULL, &noun_stats},
    {T_END, NULL, NULL, NULL, NULL}};

/* ---- options ---- */

enum opt_id {
    O_CONFIG, O_ADMIN, O_TOKEN_FILE, O_JSON, O_PLAIN, O_TIMEOUT, O_HELP, O_VERSION,
    O_NOTE, O_LIMIT, O_WATCH, O_INTERVAL, O_FILTER, O_FOLLOW, O_TYPE, O_COUNT, O_DOT, O_SINCE,
    O_SERIES, O_STATE, O_SESSION, O_PATH
};

struct optdef {
    enum opt_id id;
    const char *name;       /* long name, without "--" */
    char short_name;        /* 0: none */
    const char *argname;    /* NULL: a flag */
    unsigned bit;           /* enum ctl_opt for command options, 0 for global ones */
};

static const struct optdef optdefs[] = {
    {O_CONFIG, "config", 'c', "FILE", 0},
    {O_ADMIN, "admin", 0, "PATH|URL", 0},
    {O_TOKEN_FILE, "token-file", 0, "FILE", 0},
    {O_JSON, "json", 0, NULL, 0},
    {O_PLAIN, "plain", 0, NULL, 0},
    {O_TIMEOUT, "timeout", 0, "SECONDS", 0},
    {O_HELP, "help", 'h', NULL, 0},
    {O_VERSION, "version", 'V', NULL, 0},
    {O_NOTE, "note", 0, "TEXT", OPT_NOTE},
    {O_LIMIT, "limit", 'n', "N", OPT_LIMIT},
    {O_WATCH, "watch", 'w', NULL, OPT_WATCH},
    {O_INTERVAL, "interval", 'i', "SECONDS", OPT_INTERVAL},
    {O_FILTER, "filter", 0, "KEY=VALUE", OPT_FILTER},
    {O_FOLLOW, "follow", 'f', NULL, OPT_FOLLOW},
    {O_TYPE, "type", 't', "TYPE[,TYPE…]", OPT_TYPE},
    {O_COUNT, "count", 0, "N", OPT_COUNT},
    {O_DOT, "dot", 0, NULL, OPT_DOT},
    {O_SINCE, "since", 0, "DURATION", OPT_SINCE},
    {O_SERIES, "series", 0, "PREFIX[,PREFIX…]", OPT_SERIES},
    {O_STATE, "state", 0, "STATE", OPT_STATE},
    {O_SESSION, "session", 0, "PK", OPT_SESSION},
    {O_PATH, "path", 0, "PATH", OPT_PATH},
};

static const char *const event_types[] = {"session_up", "session_down", "stream_open",
                                          "stream_close", "peer_link", "route_setup", NULL};
static const char *const setup_states[] = {"received", "reserving", "installing", "done",
                                           "failed", NULL};
static const char *const stream_paths[] = {"local", "mesh", "service", NULL};

static int usage_error(FILE *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(FILE *err, const char *fmt, ...)
{
    va_list ap;

    fputs("dmsgctl: ", err);
    va_start(ap, fmt);
    vfprintf(err, fmt, ap);
    va_end(ap);
    fputc('\n', err);
    return CTL_EXIT_USAGE;
}

static bool in_list(const char *const *list, const char *s)
{
    for (; *list != NULL; list++) {
        if (strcmp(*list, s) == 0)
            return true;
    }
    return false;
}

static void join_list(const char *const *list, char *out, size_t cap)
{
    out[0] = '\0';
    for (size_t i = 0; list[i] != NULL; i++) {
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", i > 0 ? ", " : "", list[i]);
    }
}

static int set_filter(struct ctl_args *a, const char *v, FILE *err)
{
    const char *eq = strchr(v, '=');
    char key[32];
    const char *val;
    long long n;

    if (eq == NULL || eq == v || (size_t)(eq - v) >= sizeof key)
        return usage_error(err,
                           "--filter `%s' is not KEY=VALUE (keys: kind, pk, remote, "
                           "min-streams), e.g. --filter kind=peer",
                           v);
    snprintf(key, sizeof key, "%.*s", (int)(eq - v), v);
    val = eq + 1;
    if (strcmp(key, "kind") == 0) {
        if (strcmp(val, "client") != 0 && strcmp(val, "peer") != 0)
            return usage_error(err, "--filter kind=%s: the kind is client or peer", val);
    } else if (strcmp(key, "pk") == 0) {
        size_t len = strlen(val);
        if (len == 0 || len > DMSG_PK_HEX_LEN ||
            strspn(val, "0123456789abcdefABCDEF") != len)
            return usage_error(err,
                               "--filter pk=%s: give the first 1 to 66 hex characters of a key",
                               val);
    } else if (strcmp(key, "remote") == 0) {
        if (val[0] == '\0' || strlen(val) > 64)
            return usage_error(err,
                               "--filter remote=%s: give the start of an address, 1 to 64 "
                               "characters (e.g. remote=203.0.113.)",
                               val);
    } else if (strcmp(key, "min-streams") == 0 || strcmp(key, "min_streams") == 0) {
        if (!parse_integer(val, 0, 1000000000, &n))
            return usage_error(err, "--filter %s=%s: give a number of streams, 0 or more", key,
                               val);
    } else {
        return usage_error(err,
                           "--filter %s: unknown filter key `%s' (keys: kind, pk, remote, "
                           "min-streams)",
                           v, key);
    }
    if (a->n_filters == CTL_MAX_FILTERS)
        return usage_error(err, "at most %d --filter options", CTL_MAX_FILTERS);
    a->filters[a->n_filters++] = v;
    return 0;
}

static int add_types(struct ctl_args *a, const char *v, FILE *err)
{
    char list[160];
    const char *p = v;

    join_list(event_types, list, sizeof list);
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char type[32];
        size_t used = strlen(a->types_buf);
        if (n == 0 || n >= sizeof type)
            return usage_error(err, "--type `%s': give event types separated by commas (%s)",
                               v, list);
        snprintf(type, sizeof type, "%.*s", (int)n, p);
        if (!in_list(event_types, type))
            return usage_error(err, "--type: unknown event type `%s' (types: %s)", type, list);
        if (strstr(a->types_buf, type) == NULL) {
            if (used + n + 2 > sizeof a->types_buf)
                return usage_error(err, "--type: too many types");
            snprintf(a->types_buf + used, sizeof a->types_buf - used, "%s%s",
                     used > 0 ? "," : "", type);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    a->types = a->types_buf;
    return 0;
}

static int set_mode(struct ctl_args *a, enum output_mode mode, FILE *err)
{
    if (a->mode_set && a->mode != mode)
        return usage_error(err, "--json and --plain cannot be combined: choose one");
    a->mode = mode;
    a->mode_set = true;
    return 0;
}

static int apply_option(struct ctl_args *a, const struct optdef *o, const char *v, FILE *err)
{
    char why[512];
    char list[160];
    double secs;

    a->given |= o->bit;
    switch (o->id) {
    case O_CONFIG: a->config_path = v; return 0;
    case O_ADMIN: a->admin = v; return 0;
    case O_TOKEN_FILE: a->token_file = v; return 0;
    case O_JSON: return set_mode(a, OUTPUT_JSON, err);
    case O_PLAIN: return set_mode(a, OUTPUT_PLAIN, err);
    case O_HELP: a->help = true; return 0;
    case O_VERSION: a->version = true; return 0;
    case O_WATCH: case O_FOLLOW: case O_DOT: return 0;
    case O_TIMEOUT:
        if (!parse_seconds(v, 0.1, 3600, &secs))
            return usage_error(err, "--timeout `%s': give seconds between 0.1 and 3600", v);
        a->timeout_ms = (long)(secs * 1000.0 + 0.5);
        return 0;
    case O_NOTE:
        if (!check_note(v, why, sizeof why))
            return usage_error(err, "--note: %s", why);
        a->note = v;
        return 0;
    case O_LIMIT:
        if (!parse_integer(v, 1, 1000000, &a->limit))
            return usage_error(err, "--limit `%s': give a number from 1 to 1000000", v);
        return 0;
    case O_COUNT:
        if (!parse_integer(v, 1, 1000000000, &a->count))
            return usage_error(err, "--count `%s': give a number from 1 upwards", v);
        return 0;
    case O_INTERVAL:
        if (!parse_seconds(v, 0.2, 86400, &a->interval_s))
            return usage_error(err, "--interval `%s': give seconds between 0.2 and 86400", v);
        return 0;
    case O_FILTER: return set_filter(a, v, err);
    case O_TYPE: return add_types(a, v, err);
    case O_SINCE: {
        long long s;
        if (!parse_api_duration(v, &s))
            return usage_error(err,
                               "--since `%s': give a duration such as 90s, 15m, 1h or 7d (at "
                               "most 366d)",
                               v);
        a->since = v;
        return 0;
    }
    case O_SERIES:
        if (v[0] == '\0' || strlen(v) > 512)
            return usage_error(err, "--series: give metric name prefixes such as dmsgd_sessions");
        a->series = v;
        return 0;
    case O_STATE:
        join_list(setup_states, list, sizeof list);
        if (!in_list(setup_states, v))
            return usage_error(err, "--state `%s': the state is one of %s", v, list);
        a->state = v;
        return 0;
    case O_SESSION:
        if (!check_public_key(v, a->session_pk, why, sizeof why))
            return usage_error(err, "--session: %s", why);
        return 0;
    case O_PATH:
        join_list(stream_paths, list, sizeof list);
        if (!in_list(stream_paths, v))
            return usage_error(err, "--path `%s': the path is one of %s", v, list);
        a->path = v;
        return 0;
    }
    return 0;
}

static const struct optdef *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++) {
        if (strlen(optdefs[i].name) == len && strncmp(optdefs[i].name, name, len) == 0)
            return &optdefs[i];
    }
    return NULL;
}

static const struct optdef *find_short(char c)
{
    for (size_t i = 0; i < sizeof optdefs / sizeof optdefs[0]; i++) {
        if (optdefs[i].short_name == c)
            return &optdefs[i];
    }
    return NULL;
}

/* Takes the option at argv[*i] (and its value); 0 or CTL_EXIT_USAGE. */
static int take_option(int argc, char **argv, int *i, struct ctl_args *a, FILE *err)
{
    const char *arg = argv[*i];
    const struct optdef *o;
    const char *value = NULL;
    char shown[64];

    if (arg[1] == '-') {
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        o = find_long(arg + 2, len);
        snprintf(shown, sizeof shown, "--%.*s", (int)len, arg + 2);
        if (eq != NULL)
            value = eq + 1;
    } else {
        o = find_short(arg[1]);
        snprintf(shown, sizeof shown, "-%c", arg[1]);
        if (o != NULL && arg[2] != '\0') {
            if (o->argname == NULL)
                o = NULL; /* bundled flags (-fw) are not offered */
            else
                value = arg + 2; /* -cFILE */
        }
    }
    if (o == NULL)
        return usage_error(err, "unknown option `%s' — see `dmsgctl --help'", arg);
    if (o->argname == NULL && value != NULL)
        return usage_error(err, "option %s takes no value", shown);
    if (o->argname != NULL && value == NULL) {
        if (*i + 1 >= argc)
            return usage_error(err, "option %s needs a value (%s)", shown, o->argname);
        value = argv[++*i];
    }
    return apply_option(a, o, value, err);
}

/* ---- keywords ---- */

static void valid_args(const struct token *table, char *out, size_t cap)
{
    out[0] = '\0';
    for (const struct token *t = table; t->type != T_END; t++) {
        const char *name = t->type == T_KEYWORD ? t->keyword
                           : t->type == T_PK    ? "PK (a public key, 66 hex characters)"
                           : t->type == T_ADDRESS ? "HOST:PORT"
                                                  : NULL;
        size_t used = strlen(out);
        if (name != NULL)
            snprintf(out + used, cap - used, "%s%s", used > 0 ? ", " : "", name);
    }
}

static const struct token *match_keyword(const struct token *table, const char *word,
                                         char *ambiguous, size_t cap)
{
    const struct token *found = NULL;
    size_t len = strlen(word);

    ambiguous[0] = '\0';
    for (const struct token *t = table; t->type != T_END; t++) {
        if (t->type == T_KEYWORD && strcmp(t->keyword, word) == 0)
            return t;
    }
    for (const struct token *t = table; t->type != T_END; t++) {
        if (t->type != T_KEYWORD || strncmp(t->keyword, word, len) != 0)
            continue;
        if (found != NULL && (found->cmd != t->cmd || found->next != t->next)) {
            size_t used = strlen(ambiguous);
            if (used == 0)
                snprintf(ambiguous, cap, "%s", found->keyword);
            used = strlen(ambiguous);
            snprintf(ambiguous + used, cap - used, ", %s", t->keyword);
        }
        if (found == NULL)
            found = t;
    }
    return ambiguous[0] != '\0' ? NULL : found;
}

static const struct token *find_type(const struct token *table, enum token_type type)
{
    for (const struct token *t = table; t != NULL && t->type != T_END; t++) {
        if (t->type == type)
            return t;
    }
    return NULL;
}

static void print_synopsis_hint(FILE *err, const struct ctl_noun *noun)
{
    if (noun == NULL) {
        fputs("see `dmsgctl --help'\n", err);
        return;
    }
    fprintf(err, "usage:\n");
    for (const char *p = noun->synopsis; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        fprintf(err, "  dmsgctl %.*s\n", (int)n, p);
        p += n;
        if (*p == '\n')
            p++;
    }
    fprintf(err, "see `dmsgctl help %s'\n", noun->name);
}

/* Walks the words through the tables. 0 or CTL_EXIT_USAGE. */
static int walk(char **words, size_t n, struct ctl_args *a, FILE *err)
{
    const struct token *table = t_main;
    const struct ctl_noun *noun = NULL;
    char said[256] = "";
    char list[512], amb[256], why[512];

    for (size_t i = 0; i < n; i++) {
        const char *w = words[i];
        const struct token *t;
        size_t used = strlen(said);

        if (table == NULL) {
            usage_error(err, "unexpected argument `%s' after `%s'", w, said);
            print_synopsis_hint(err, noun);
            return CTL_EXIT_USAGE;
        }
        t = match_keyword(table, w, amb, sizeof amb);
        if (t == NULL && amb[0] != '\0') {
            usage_error(err, "ambiguous argument `%s': it could be %s", w, amb);
            print_synopsis_hint(err, noun);
            return CTL_EXIT_USAGE;
        }
        if (t == NULL && (t = find_type(table, T_PK)) != NULL &&
            strspn(w, "0123456789abcdefABCDEF") == strlen(w)) {
            if (!check_public_key(w, a->pk, why, sizeof why))
                return usage_error(err, "%s", why);
        } else if (t == NULL && (t = find_type(table, T_ADDRESS)) != NULL) {
            if (!check_peer_address(w, why, sizeof why))
                return usage_error(err, "%s", why);
            a->address = w;
        } else if (t == NULL || t->type == T_PK) {
            valid_args(table, list, sizeof list);
            if (table == t_main)
                usage_error(err, "unknown command `%s' (commands: %s)", w, list);
            else if (find_type(table, T_PK) != NULL && find_type(table, T_KEYWORD) == NULL) {
                /* Only a key fits here and w has other characters: say which. */
                check_public_key(w, a->pk, why, sizeof why);
                usage_error(err, "%s", why);
            } else
                usage_error(err, "unknown argument `%s' after `%s' (valid: %s)", w, said, list);
            print_synopsis_hint(err, noun);
            return CTL_EXIT_USAGE;
        }
        if (table == t_main)
            noun = t->noun;
        snprintf(said + used, sizeof said - used, "%s%s", used > 0 ? " " : "",
                 t->type == T_KEYWORD ? t->keyword : w);
        if (t->cmd != NULL)
            a->cmd = t->cmd;
        else
            a->cmd = NULL;
        table = t->next;
    }
    if (n == 0) {
        usage_error(err, "no command given");
        ctl_print_usage(err);
        return CTL_EXIT_USAGE;
    }
    if (table != NULL) {
        const struct token *done = find_type(table, T_DONE);
        if (done != NULL) {
            a->cmd = done->cmd;
        } else {
            valid_args(table, list, sizeof list);
            usage_error(err, "`%s' needs more: %s", said, list);
            print_synopsis_hint(err, noun);
            return CTL_EXIT_USAGE;
        }
    }
    if (a->cmd == NULL)
        fatal_bug("grammar: `%s' ends without a command", said);
    return 0;
}

static const struct ctl_noun *find_noun(const char *word, FILE *err)
{
    char amb[256], list[512];
    const struct token *t = match_keyword(t_main, word, amb, sizeof amb);

    if (t != NULL)
        return t->noun;
    valid_args(t_main, list, sizeof list);
    if (amb[0] != '\0')
        usage_error(err, "ambiguous command `%s': it could be %s", word, amb);
    else
        usage_error(err, "no help for `%s' (commands: %s)", word, list);
    return NULL;
}

static int check_command_options(struct ctl_args *a, FILE *err)
{
    unsigned extra = a->given & ~a->cmd->options;

    for (size_t i = 0; extra != 0 && i < sizeof optdefs / sizeof optdefs[0]; i++) {
        if (optdefs[i].bit & extra) {
            usage_error(err, "option --%s does not apply to `%s'", optdefs[i].name,
                        a->cmd->name);
            print_synopsis_hint(err, a->cmd->noun);
            return CTL_EXIT_USAGE;
        }
    }
    if ((a->given & OPT_INTERVAL) && !(a->given & OPT_WATCH))
        return usage_error(err, "--interval only makes sense with --watch");
    if (a->cmd == &cmd_sessions && (a->given & OPT_COUNT) && !(a->given & OPT_WATCH))
        return usage_error(err, "--count only makes sense with --watch (use --limit to list "
                                "fewer sessions)");
    if ((a->given & OPT_DOT) && a->mode_set)
        return usage_error(err, "--dot prints Graphviz; it cannot be combined with --json or "
                                "--plain");
    return 0;
}

int ctl_parse_args(int argc, char **argv, struct ctl_args *a, FILE *err)
{
    char **words = xcalloc((size_t)argc + 1, sizeof *words);
    size_t n = 0;
    bool options_done = false;
    int rc = 0;

    memset(a, 0, sizeof *a);
    a->mode = OUTPUT_HUMAN;
    a->timeout_ms = 10000;
    a->interval_s = 2.0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!options_done && strcmp(argv[i], "--") == 0)
            options_done = true;
        else if (!options_done && argv[i][0] == '-' && argv[i][1] != '\0')
            rc = take_option(argc, argv, &i, a, err);
        else
            words[n++] = argv[i];
    }
    if (rc != 0)
        goto out;
    if (a->version || (n == 1 && strcmp(words[0], "version") == 0)) {
        a->version = true;
        goto out;
    }
    if (n > 0 && strcmp(words[0], "help") == 0) {
        a->help = true;
        if (n > 2) {
            rc = usage_error(err, "`help' takes one command name, e.g. `dmsgctl help peer'");
            goto out;
        }
        if (n == 2 && (a->help_noun = find_noun(words[1], err)) == NULL)
            rc = CTL_EXIT_USAGE;
        goto out;
    }
    if (a->help) {
        if (n > 0 && (a->help_noun = find_noun(words[0], err)) == NULL)
            rc = CTL_EXIT_USAGE;
        goto out;
    }
    rc = walk(words, n, a, err);
    if (rc == 0)
        rc = check_command_options(a, err);
out:
    free(words);
    return rc;
}
