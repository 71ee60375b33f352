/* dmsgctl's command line: every command parses, every mistake is a usage error (exit 2) with a
 * message that names the problem, and keys and addresses are checked before anything is
 * sent. */
#include <criterion/criterion.h>
#include <string.h>

#include "ctl_support.h"
#include "dmsg/cipher.h"
#include "dmsgctl.h"
#include "util.h"

#define PK1 "023268b6eebd162b10db9299660813080fa0b2aa37872a0a6e6e4648a5771ceeb0"
#define PK1_UPPER "023268B6EEBD162B10DB9299660813080FA0B2AA37872A0A6E6E4648A5771CEEB0"

/* The copy of the last command line parsed: ctl_args points into it. */
static char *last_line;

static void init(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

static void fini(void)
{
    free(last_line);
    last_line = NULL;
}

TestSuite(ctl_parser, .init = init, .fini = fini, .timeout = 10);

/* Parses a command line given as one string (words split at spaces); err gets messages. */
static int parse(const char *line, struct ctl_args *a, struct capture *err)
{
    char *copy;
    char *argv[64];
    int argc = 0;
    int rc;

    free(last_line);
    last_line = copy = strdup(line);
    argv[argc++] = "dmsgctl";
    for (char *w = strtok(copy, " "); w != NULL && argc < 63; w = strtok(NULL, " "))
        argv[argc++] = w;
    argv[argc] = NULL;
    cap_open(err);
    rc = ctl_parse_args(argc, argv, a, err->f);
    cap_text(err);
    return rc;
}

struct good {
    const char *line;
    const struct ctl_command *cmd;
};

Test(ctl_parser, every_command_parses)
{
    const struct good cases[] = {
        {"peer ls", &cmd_peer_ls},
        {"peer list", &cmd_peer_ls},
        {"peer", &cmd_peer_ls},
        {"peer l", &cmd_peer_ls},
        {"peer show " PK1, &cmd_peer_show},
        {"peer add " PK1 " relay2.example.net:8081", &cmd_peer_add},
        {"peer add " PK1 " [2001:db8::1]:8081 --note hello", &cmd_peer_add},
        {"peer rm " PK1, &cmd_peer_rm},
        {"peer remove " PK1, &cmd_peer_rm},
        {"route-setup on", &cmd_route_setup_on},
        {"route-setup off", &cmd_route_setup_off},
        {"route-setup status", &cmd_route_setup_status},
        {"route-setup", &cmd_route_setup_status},
        {"route-setup enable", &cmd_route_setup_on},
        {"route-s of", &cmd_route_setup_off},
        {"routes", &cmd_routes},
        {"routes --limit 5 --state failed", &cmd_routes},
        {"sessions", &cmd_sessions},
        {"sessions --watch --interval 0.5 --count 3", &cmd_sessions},
        {"sessions --filter kind=peer --filter pk=02ab --filter min-streams=2", &cmd_sessions},
        {"session " PK1, &cmd_session_show},
        {"session show " PK1, &cmd_session_show},
        {"session kick " PK1, &cmd_session_kick},
        {"streams", &cmd_streams},
        {"streams --session " PK1 " --path mesh --limit 10", &cmd_streams},
        {"events", &cmd_events},
        {"events --follow --type session_up,session_down --type peer_link --count 2",
         &cmd_events},
        {"mesh", &cmd_mesh},
        {"mesh --dot", &cmd_mesh},
        {"metrics", &cmd_metrics},
        {"info", &cmd_info},
        {"health", &cmd_health},
        {"stats", &cmd_stats},
        {"stats --since 7d --series dmsgd_sessions", &cmd_stats},
        {"sta --since=90s", &cmd_stats},
        {"i", &cmd_info},
        {"h", &cmd_health},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ctl_args a;
        struct capture err;
        int rc = parse(cases[i].line, &a, &err);
        cr_expect_eq(rc, 0, "`%s' did not parse: %s", cases[i].line, err.buf);
        cr_expect_eq(a.cmd, cases[i].cmd, "`%s' parsed as %s", cases[i].line,
                     a.cmd != NULL ? a.cmd->name : "nothing");
        cap_close(&err);
    }
}

Test(ctl_parser, arguments_and_options_land_in_args)
{
    struct ctl_args a;
    struct capture err;

    cr_assert_eq(parse("--json peer add " PK1_UPPER " relay2.example.net:8081 --note=rack-3 "
                       "-c /etc/dmsgd/config.json --timeout 2.5",
                       &a, &err),
                 0, "%s", err.buf);
    cr_expect_str_eq(a.pk, PK1, "the key is normalised to lowercase");
    cr_expect_str_eq(a.address, "relay2.example.net:8081");
    cr_expect_str_eq(a.note, "rack-3");
    cr_expect_str_eq(a.config_path, "/etc/dmsgd/config.json");
    cr_expect_eq(a.mode, OUTPUT_JSON);
    cr_expect_eq(a.timeout_ms, 2500);
    cap_close(&err);

    cr_assert_eq(parse("events -f -t stream_open --type stream_open,route_setup", &a, &err), 0);
    cr_expect_str_eq(a.types, "stream_open,route_setup", "types are joined without repeats");
    cr_expect(a.given & OPT_FOLLOW);
    cap_close(&err);

    cr_assert_eq(parse("--plain --admin unix:/run/x.sock --token-file /t sessions -w -i 1", &a,
                       &err),
                 0);
    cr_expect_eq(a.mode, OUTPUT_PLAIN);
    cr_expect_str_eq(a.admin, "unix:/run/x.sock");
    cr_expect_str_eq(a.token_file, "/t");
    cr_expect(a.interval_s > 0.99 && a.interval_s < 1.01);
    cap_close(&err);

    cr_assert_eq(parse("-c/etc/dmsgd.json info", &a, &err), 0);
    cr_expect_str_eq(a.config_path, "/etc/dmsgd.json");
    cap_close(&err);

    cr_assert_eq(parse("streams --session " PK1, &a, &err), 0);
    cr_expect_str_eq(a.session_pk, PK1);
    cap_close(&err);
}

Test(ctl_parser, help_and_version_forms)
{
    struct ctl_args a;
    struct capture err;

    cr_assert_eq(parse("--help", &a, &err), 0);
    cr_expect(a.help);
    cr_expect_null(a.help_noun);
    cap_close(&err);
    cr_assert_eq(parse("help peer", &a, &err), 0);
    cr_expect_eq(a.help_noun, &noun_peer);
    cap_close(&err);
    cr_assert_eq(parse("peer add --help", &a, &err), 0);
    cr_expect_eq(a.help_noun, &noun_peer);
    cap_close(&err);
    cr_assert_eq(parse("session -h", &a, &err), 0);
    cr_expect_eq(a.help_noun, &noun_sessions);
    cap_close(&err);
    cr_assert_eq(parse("help route-setup", &a, &err), 0);
    cr_expect_eq(a.help_noun, &noun_route_setup);
    cap_close(&err);
    cr_assert_eq(parse("version", &a, &err), 0);
    cr_expect(a.version);
    cap_close(&err);
    cr_assert_eq(parse("-V", &a, &err), 0);
    cr_expect(a.version);
    cap_close(&err);
    cr_expect_eq(parse("help nosuch", &a, &err), CTL_EXIT_USAGE);
    cr_expect(strstr(err.buf, "nosuch") != NULL);
    cap_close(&err);
}

struct bad {
    const char *line;
    const char *says; /* a piece of the message that explains the mistake */
};

Test(ctl_parser, mistakes_are_usage_errors_that_explain)
{
    const struct bad cases[] = {
        {"", "no command given"},
        {"frobnicate", "unknown command `frobnicate'"},
        {"s", "ambiguous argument `s'"},
        {"sess", "could be sessions, session"},
        {"peer frob", "unknown argument `frob' after `peer'"},
        {"peer add", "needs more: PK"},
        {"peer add " PK1, "needs more: HOST:PORT"},
        {"peer show", "needs more: PK"},
        {"peer ls extra", "unexpected argument `extra' after `peer ls'"},
        {"peer rm 02zz", "character 3 (`z') is not a hex digit"},
        {"peer rm 0211", "it has 4 hex characters, a key has exactly 66"},
        {"peer rm 020000000000000000000000000000000000000000000000000000000000000000",
         "not a point on the secp256k1 curve"},
        {"peer rm 043268b6eebd162b10db9299660813080fa0b2aa37872a0a6e6e4648a5771ceeb0",
         "not a point on the secp256k1 curve"},
        {"peer add " PK1 " relay2.example.net", "the port is missing"},
        {"peer add " PK1 " relay2.example.net:0", "must be a number from 1 to 65535"},
        {"peer add " PK1 " relay2.example.net:65536", "must be a number from 1 to 65535"},
        {"peer add " PK1 " relay2.example.net:80x", "must be a number from 1 to 65535"},
        {"peer add " PK1 " 2001:db8::1:8081", "IPv6 host in brackets"},
        {"peer add " PK1 " [2001:db8::1]8081", "in brackets, then the port"},
        {"peer add " PK1 " [zz]:8081", "is not an IPv6 address"},
        {"peer add " PK1 " :8081", "the host is missing"},
        {"peer add " PK1 " relay_2.example.net:8081", "`_' cannot appear in a host name"},
        {"peer add " PK1 " h:1 --note", "needs a value (TEXT)"},
        {"peer ls --note x", "option --note does not apply to `peer ls'"},
        {"peer ls --dot", "option --dot does not apply"},
        {"peer ls --frob", "unknown option `--frob'"},
        {"peer ls -x", "unknown option `-x'"},
        {"events -fw", "unknown option `-fw'"},
        {"--json --plain info", "cannot be combined"},
        {"info --timeout 0", "--timeout `0'"},
        {"info --timeout abc", "--timeout `abc'"},
        {"route-setup maybe", "valid: on, off, status"},
        {"routes --limit 0", "--limit `0'"},
        {"routes --limit -3", "--limit `-3'"},
        {"routes --state done-ish", "the state is one of received"},
        {"sessions --interval 1", "only makes sense with --watch"},
        {"sessions --count 3", "--count only makes sense with --watch"},
        {"ro", "could be route-setup, routes"},
        {"sessions --filter kind=robot", "the kind is client or peer"},
        {"sessions --filter colour=red", "unknown filter key `colour'"},
        {"sessions --filter kind", "is not KEY=VALUE"},
        {"sessions --filter pk=xyz", "hex characters of a key"},
        {"sessions --filter min-streams=-1", "a number of streams"},
        {"session kick", "needs more: PK"},
        {"session zz", "unknown argument `zz' after `session'"},
        {"streams --path sideways", "the path is one of local, mesh, service"},
        {"streams --session 02ab", "--session: `02ab' is not a public key"},
        {"events --type session_upp", "unknown event type `session_upp'"},
        {"events --type ,", "event types separated by commas"},
        {"events --count 0", "--count `0'"},
        {"stats --since 1y", "--since `1y'"},
        {"stats --since 367d", "at most 366d"},
        {"stats --since 0", "--since `0'"},
        {"mesh --dot --json", "cannot be combined with --json"},
        {"help peer route-setup", "takes one command name"},
        {"info --json=yes", "takes no value"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ctl_args a;
        struct capture err;
        int rc = parse(cases[i].line, &a, &err);
        cr_expect_eq(rc, CTL_EXIT_USAGE, "`%s' gave %d, not a usage error", cases[i].line, rc);
        cr_expect(strstr(err.buf != NULL ? err.buf : "", cases[i].says) != NULL,
                  "`%s': the message does not say `%s':\n%s", cases[i].line, cases[i].says,
                  err.buf);
        cr_expect(strncmp(err.buf != NULL ? err.buf : "", "dmsgctl: ", 9) == 0,
                  "`%s': the message does not start with the program name", cases[i].line);
        cap_close(&err);
    }
}

Test(ctl_parser, usage_errors_show_the_synopsis_of_the_noun)
{
    struct ctl_args a;
    struct capture err;

    cr_assert_eq(parse("peer add", &a, &err), CTL_EXIT_USAGE);
    cr_expect(strstr(err.buf, "dmsgctl peer add PK HOST:PORT [--note TEXT]") != NULL, "%s",
              err.buf);
    cr_expect(strstr(err.buf, "see `dmsgctl help peer'") != NULL);
    cap_close(&err);
}

Test(ctl_parser, note_limits)
{
    char long_note[300], why[256];

    memset(long_note, 'n', 256);
    long_note[256] = '\0';
    cr_expect(check_note(long_note, why, sizeof why), "256 characters are allowed");
    long_note[256] = 'n';
    long_note[257] = '\0';
    cr_expect_not(check_note(long_note, why, sizeof why));
    cr_expect(strstr(why, "257 characters") != NULL, "%s", why);
    /* Characters, not bytes: 256 two-byte characters fit. */
    {
        char utf8[600] = "";
        for (int i = 0; i < 256; i++)
            strcat(utf8, "\xc3\xa9");
        cr_expect(check_note(utf8, why, sizeof why), "%s", why);
    }
    cr_expect_not(check_note("tab\there", why, sizeof why));
    cr_expect_not(check_note("bad \xff utf-8", why, sizeof why));
    cr_expect(strstr(why, "UTF-8") != NULL);
}

Test(ctl_parser, api_durations)
{
    long long s;

    cr_expect(parse_api_duration("90", &s) && s == 90);
    cr_expect(parse_api_duration("90s", &s) && s == 90);
    cr_expect(parse_api_duration("15m", &s) && s == 900);
    cr_expect(parse_api_duration("1h", &s) && s == 3600);
    cr_expect(parse_api_duration("366d", &s) && s == 366LL * 86400);
    cr_expect_not(parse_api_duration("367d", &s));
    cr_expect_not(parse_api_duration("0", &s));
    cr_expect_not(parse_api_duration("01h", &s));
    cr_expect_not(parse_api_duration("1hh", &s));
    cr_expect_not(parse_api_duration("h", &s));
    cr_expect_not(parse_api_duration("1.5h", &s));
    cr_expect_not(parse_api_duration("1234567890", &s));
    cr_expect_not(parse_api_duration("", &s));
}

/* Display width in columns (code points; the manual has no wide characters). */
static size_t columns(const char *s, size_t n)
{
    size_t w = 0;

    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

static void expect_man_page(const char *what, const char *text, const char *const *sections)
{
    for (const char *const *s = sections; *s != NULL; s++) {
        char heading[64];
        snprintf(heading, sizeof heading, "\n%s\n", *s);
        cr_expect(strncmp(text, heading + 1, strlen(heading) - 1) == 0 ||
                      strstr(text, heading) != NULL,
                  "%s has no %s section", what, *s);
    }
    for (const char *p = text; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        cr_expect(columns(p, n) <= 80, "%s: a line is wider than 80 columns: %.*s", what,
                  (int)n, p);
        p += n + (p[n] == '\n');
    }
}

Test(ctl_parser, the_manual_reads_like_a_man_page)
{
    static const char *const main_sections[] = {"NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS",
                                                "GLOBAL OPTIONS", "EXIT STATUS", "EXAMPLES",
                                                NULL};
    static const char *const noun_sections[] = {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS",
                                                "EXIT STATUS", "EXAMPLES", NULL};
    struct capture out;

    char *main_page;

    cap_open(&out);
    ctl_print_help(out.f);
    main_page = strdup(cap_text(&out));
    cap_close(&out);
    expect_man_page("dmsgctl --help", main_page, main_sections);
    for (int code = 0; code <= 5; code++) {
        char row[16];
        snprintf(row, sizeof row, "\n    %d   ", code);
        cr_expect(strstr(main_page, row) != NULL, "exit status %d is documented", code);
    }
    for (const struct ctl_noun *const *n = ctl_nouns; *n != NULL; n++) {
        char name[64];
        cr_expect(strstr(main_page, (*n)->summary) != NULL, "--help lists %s", (*n)->name);
        snprintf(name, sizeof name, "dmsgctl help %s", (*n)->name);
        cap_open(&out);
        ctl_print_noun_help(out.f, *n);
        expect_man_page(name, cap_text(&out), noun_sections);
        cap_close(&out);
    }
    free(main_page);
}
