/* dmsgctl: parse the command line, find dmsgd, run one command, exit with its status. */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmsg/cipher.h"
#include "dmsgctl.h"
#include "http.h"
#include "locate.h"

static const char *env(const char *name)
{
    return getenv(name);
}

/* Help and version go to stdout; a failed write there is still a failure (knotc does the
 * same), e.g. `dmsgctl --help | head -1` is fine but a full disk is not. */
static int finish_stdout(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (errno != EPIPE)
            perror("dmsgctl: cannot write the output");
        return CTL_EXIT_OUTPUT;
    }
    return CTL_EXIT_OK;
}

static int run(struct ctl *ctl)
{
    struct ctl_locate_input in = {
        .config_path = ctl->args.config_path,
        .admin = ctl->args.admin,
        .token_file = ctl->args.token_file,
        .env = env,
        .is_root = geteuid() == 0,
    };
    struct ctl_target target;
    char err[2 * CTL_PATH_MAX];
    int rc = ctl_locate(&in, &target, err, sizeof err);

    if (rc != 0) {
        fprintf(stderr, "dmsgctl: %s\n", err);
        return rc;
    }
    ctl->conn = http_open(&target, ctl->args.timeout_ms, stderr, &rc);
    if (ctl->conn == NULL)
        return rc;
    ctl->out = output_new(ctl->args.mode, stdout);
    rc = ctl->args.cmd->run(ctl);
    if (output_failed(ctl->out)) {
        if (output_error(ctl->out) != EPIPE)
            fprintf(stderr, "dmsgctl: cannot write the output: %s\n",
                    strerror(output_error(ctl->out)));
        rc = CTL_EXIT_OUTPUT;
    }
    output_free(ctl->out);
    http_close(ctl->conn);
    return rc;
}

int main(int argc, char **argv)
{
    struct ctl ctl;
    int rc;

    /* A closed pipe is reported as a write error (exit 5), not a silent death. */
    signal(SIGPIPE, SIG_IGN);
    memset(&ctl, 0, sizeof ctl);
    ctl.err = stderr;
    if (dmsg_cipher_init() != 0) {
        fputs("dmsgctl: cannot initialise libsodium\n", stderr);
        return CTL_EXIT_USAGE;
    }
    rc = ctl_parse_args(argc, argv, &ctl.args, stderr);
    if (rc != 0)
        return rc;
    if (ctl.args.version) {
        printf("dmsgctl %s\n", DMSGCTL_VERSION);
        return finish_stdout();
    }
    if (ctl.args.help) {
        if (ctl.args.help_noun != NULL)
            ctl_print_noun_help(stdout, ctl.args.help_noun);
        else
            ctl_print_help(stdout);
        return finish_stdout();
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("dmsgctl: cannot initialise libcurl\n", stderr);
        return CTL_EXIT_UNREACHABLE;
    }
    rc = run(&ctl);
    curl_global_cleanup();
    return rc;
}
