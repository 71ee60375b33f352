/* dmsgctl's manual: the main page (dmsgctl --help) and one page per noun (dmsgctl help NOUN,
 * dmsgctl NOUN --help), laid out like a man page. The nouns' texts live in their own files. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dmsgctl.h"

#define INDENT "    "
#define OPTION_COLUMN 26
#define WRAP_COLUMN 79
#define STATUS_COLUMN 8

const struct ctl_noun *const ctl_nouns[] = {
    &noun_peer, &noun_route_setup, &noun_routes, &noun_sessions, &noun_streams, &noun_events,
    &noun_mesh, &noun_metrics, &noun_info, &noun_health, &noun_stats, NULL};

static const char global_options[] =
    "-c, --config FILE\tread dmsgd's config file to find its admin socket (admin_socket,\n"
    "\tdefault <state_dir>/admin.sock), or its TCP address (admin_address)\n"
    "\tand token (<state_dir>/admin.token); relative paths in FILE are taken\n"
    "\trelative to FILE's directory, as dmsgd does\n"
    "--admin PATH|URL\ttalk to this admin socket (/run/dmsgd/admin.sock, unix:PATH) or TCP\n"
    "\tlistener (http://127.0.0.1:8083, or just 127.0.0.1:8083)\n"
    "--token-file FILE\tthe bearer token for TCP: admin.token (changes) or\n"
    "\tadmin-readonly.token (monitoring) from dmsgd's state directory; never\n"
    "\tsent over the unix socket\n"
    "--json\tprint dmsgd's JSON answer unchanged (paged listings are joined into\n"
    "\tone document of the same shape; live feeds print one JSON object a line)\n"
    "--plain\tno headers, one record per line, fields separated by tabs, raw values\n"
    "\t(integers, RFC 3339 times, full keys), (none) for an absent value\n"
    "--timeout SECONDS\thow long to wait for dmsgd's answer (default 10)\n"
    "-h, --help\tthis page; `dmsgctl help COMMAND' or `dmsgctl COMMAND --help' for one\n"
    "\tcommand's page\n"
    "-V, --version\tprint dmsgctl's version\n";

static const char exit_status[] =
    "0\tsuccess\n"
    "1\tdmsgd refused the request (an error answer: unknown peer, store failure, …)\n"
    "\tor, for `health', dmsgd is not serving\n"
    "2\tusage error: unknown command or option, malformed key or address,\n"
    "\tunreadable -c FILE\n"
    "3\tdmsgd could not be reached: no socket, connection refused, no answer in time\n"
    "4\tnot permitted: 401/403 from dmsgd (token missing, wrong, or read-only), or\n"
    "\tthe socket or token file is not accessible to this user\n"
    "5\tthe output could not be written (closed pipe, full disk)\n";

static void section(FILE *out, const char *title)
{
    fprintf(out, "\n%s\n", title);
}

/* Prints one line indented, wrapped at WRAP_COLUMN; continuation lines are indented by hang
 * more spaces. */
static void wrapped_line(FILE *out, const char *line, size_t n, size_t hang, bool at_bracket)
{
    size_t room = WRAP_COLUMN - strlen(INDENT);
    bool first = true;

    while (n > 0) {
        size_t take = n, w = 0, last_space = 0;
        size_t pad = first ? 0 : hang;
        for (size_t i = 0; i < n; i++) {
            w += ((unsigned char)line[i] & 0xc0) != 0x80;
            if (line[i] == ' ' && (!at_bracket || (i + 1 < n && line[i + 1] == '[')))
                last_space = i;
            if (pad + w > room && last_space > 0) {
                take = last_space;
                break;
            }
        }
        fprintf(out, INDENT "%*s%.*s\n", (int)pad, "", (int)take, line);
        line += take;
        n -= take;
        while (n > 0 && *line == ' ') {
            line++;
            n--;
        }
        first = false;
    }
}

/* Prints text with every line indented (the texts are wrapped by hand). */
static void indented(FILE *out, const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        if (n > 0)
            fprintf(out, INDENT "%.*s\n", (int)n, text);
        else
            fputc('\n', out);
        text += n;
        if (*text == '\n')
            text++;
    }
}

/* Display width of UTF-8 text (code points; the texts here have no wide characters). */
static size_t text_width(const char *s, size_t n)
{
    size_t w = 0;

    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

/* Prints a term and its meaning, the meaning word-wrapped in the right-hand column. */
static void term_and_meaning(FILE *out, int column, const char *term, size_t term_len,
                             const char *meaning)
{
    size_t col = strlen(INDENT) + term_len;
    const char *p = meaning;

    fprintf(out, INDENT "%.*s", (int)term_len, term);
    if (col + 1 > (size_t)column) {
        fputc('\n', out);
        col = 0;
    }
    fprintf(out, "%*s", (int)((size_t)column - col), "");
    col = (size_t)column;
    while (*p != '\0') {
        size_t n = strcspn(p, " ");
        size_t w = text_width(p, n);
        if (col > (size_t)column && col + 1 + w > WRAP_COLUMN) {
            fprintf(out, "\n%*s", column, "");
            col = (size_t)column;
        } else if (col > (size_t)column) {
            fputc(' ', out);
            col++;
        }
        fprintf(out, "%.*s", (int)n, p);
        col += w;
        p += n;
        while (*p == ' ')
            p++;
    }
    fputc('\n', out);
}

/* "term\tmeaning" lines as two columns; a line starting with a tab continues the meaning. */
static void two_columns(FILE *out, int column, const char *text)
{
    while (*text != '\0') {
        size_t n = strcspn(text, "\n");
        const char *tab = memchr(text, '\t', n);
        char meaning[1024] = "";
        const char *term = text;
        size_t term_len;

        if (tab == NULL) {
            fprintf(out, INDENT "%.*s\n", (int)n, text);
            text += n + (text[n] == '\n');
            continue;
        }
        term_len = (size_t)(tab - text);
        snprintf(meaning, sizeof meaning, "%.*s", (int)(n - term_len - 1), tab + 1);
        text += n + (text[n] == '\n');
        while (*text == '\t') {
            size_t used = strlen(meaning);
            n = strcspn(text, "\n");
            snprintf(meaning + used, sizeof meaning - used, " %.*s", (int)(n - 1), text + 1);
            text += n + (text[n] == '\n');
        }
        term_and_meaning(out, column, term, term_len, meaning);
    }
}

static void synopsis_lines(FILE *out, const char *synopsis)
{
    while (*synopsis != '\0') {
        size_t n = strcspn(synopsis, "\n");
        char line[512];
        snprintf(line, sizeof line, "dmsgctl %.*s", (int)n, synopsis);
        /* Continuation lines line up after "dmsgctl ". */
        wrapped_line(out, line, strlen(line), 8, true);
        synopsis += n;
        if (*synopsis == '\n')
            synopsis++;
    }
}

void ctl_print_usage(FILE *out)
{
    fputs("usage: dmsgctl [-c FILE | --admin PATH|URL] [--token-file FILE] [--json | --plain]\n"
          "               [--timeout SECONDS] COMMAND [ARGUMENTS]\n"
          "commands:\n",
          out);
    for (const struct ctl_noun *const *n = ctl_nouns; *n != NULL; n++)
        fprintf(out, "  %-12s %s\n", (*n)->name, (*n)->summary);
    fputs("see `dmsgctl --help' for the manual, `dmsgctl help COMMAND' for one command\n", out);
}

void ctl_print_help(FILE *out)
{
    fputs("NAME\n" INDENT "dmsgctl — control a running dmsgd, the DMSG relay server\n", out);
    section(out, "SYNOPSIS");
    indented(out, "dmsgctl [-c FILE | --admin PATH|URL] [--token-file FILE] [--json | --plain]\n"
                  "        [--timeout SECONDS] COMMAND [ARGUMENTS] [OPTIONS]\n"
                  "dmsgctl help [COMMAND]\n"
                  "dmsgctl --version\n");
    section(out, "DESCRIPTION");
    indented(out,
             "dmsgctl drives dmsgd through its admin API: over the daemon's unix socket by\n"
             "default, or over TCP with a bearer token. It adds and removes mesh peers,\n"
             "turns route setup on and off, and shows sessions, streams, events, metrics\n"
             "and stored statistics, without restarting dmsgd. Changes are acknowledged\n"
             "only once dmsgd has stored them.\n"
             "\n"
             "Commands are written noun first, then verb (`peer add'), as in bgpctl; any\n"
             "keyword may be shortened to a unique prefix (`peer l' is `peer ls').\n"
             "Options may appear anywhere; `--' ends them.\n");
    section(out, "COMMANDS");
    for (const struct ctl_noun *const *n = ctl_nouns; *n != NULL; n++) {
        synopsis_lines(out, (*n)->synopsis);
        fprintf(out, INDENT INDENT "%s\n", (*n)->summary);
    }
    section(out, "GLOBAL OPTIONS");
    two_columns(out, OPTION_COLUMN, global_options);
    section(out, "FINDING DMSGD");
    indented(out,
             "With --admin, that socket or address. With -c FILE, the admin_socket of\n"
             "FILE (default <state_dir>/admin.sock), or its admin_address when the socket\n"
             "does not exist. With neither, the first socket that exists of:\n"
             "<state_dir>/admin.sock for the state directory dmsgd picks for this user\n"
             "($STATE_DIRECTORY; /var/lib/dmsgd for root; $XDG_STATE_HOME/dmsgd;\n"
             "~/.local/state/dmsgd), /var/lib/dmsgd/admin.sock, /run/dmsgd/admin.sock.\n"
             "The unix socket needs no token: its file mode (0660) decides who may use it.\n"
             "Over TCP the token comes from --token-file, else from admin.token in the\n"
             "state directory.\n");
    section(out, "EXIT STATUS");
    two_columns(out, STATUS_COLUMN, exit_status);
    section(out, "EXAMPLES");
    indented(out,
             "dmsgctl -c /etc/dmsgd/config.json peer ls\n"
             "dmsgctl peer add 03a4c3…d4c3 relay2.example.net:8081 --note frankfurt\n"
             "dmsgctl route-setup on\n"
             "dmsgctl sessions --filter kind=peer --plain | cut -f1\n"
             "dmsgctl events --follow --type session_up,session_down\n"
             "dmsgctl mesh --dot | dot -Tsvg > mesh.svg\n"
             "dmsgctl --admin 127.0.0.1:8083 --token-file admin-readonly.token health\n");
    section(out, "SEE ALSO");
    indented(out, "dmsgd(8); the admin API: api/openapi.yaml\n");
}

void ctl_print_noun_help(FILE *out, const struct ctl_noun *noun)
{
    char name_line[512];

    snprintf(name_line, sizeof name_line, "dmsgctl %s — %s", noun->name, noun->summary);
    fputs("NAME\n", out);
    wrapped_line(out, name_line, strlen(name_line), 4, false);
    section(out, "SYNOPSIS");
    synopsis_lines(out, noun->synopsis);
    section(out, "DESCRIPTION");
    indented(out, noun->description);
    section(out, "OPTIONS");
    if (noun->options != NULL)
        two_columns(out, OPTION_COLUMN, noun->options);
    indented(out, "The global options (-c, --admin, --token-file, --json, --plain, --timeout)\n"
                  "apply as well: see `dmsgctl --help'.\n");
    if (noun->output != NULL) {
        section(out, "OUTPUT");
        indented(out, noun->output);
    }
    section(out, "EXIT STATUS");
    two_columns(out, STATUS_COLUMN, exit_status);
    section(out, "EXAMPLES");
    indented(out, noun->examples);
}
