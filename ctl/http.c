/* libcurl transport and failure reporting; see http.h. */
#include "http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_BODY (256u * 1024 * 1024)   /* larger answers are not from a sane dmsgd */
#define MAX_TOKEN 4096
#define STREAM_SILENCE_S 45             /* dmsgd sends a keepalive every 15 s */

struct ctl_conn {
    CURL *curl;
    struct ctl_target target;
    char *token;
    long timeout_ms;
    char token_problem[CTL_PATH_MAX + 128]; /* why a token found by the search was unusable */
};

void http_response_free(struct http_response *r)
{
    sb_free(&r->body);
    memset(r, 0, sizeof *r);
}

/* ---- the token ---- */

/* RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then "="s. */
static bool is_b64token(const char *s)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/");

    if (n == 0)
        return false;
    return strspn(s + n, "=") == strlen(s + n);
}

/* 0 with *token set, or an errno-like reason; msg says what is wrong. */
static int read_token(const char *path, char **token, char *msg, size_t cap)
{
    FILE *f = fopen(path, "r");
    char buf[MAX_TOKEN + 2];
    size_t n;
    int e;

    if (f == NULL) {
        e = errno;
        snprintf(msg, cap, "cannot read the token file %s: %s", path, strerror(e));
        return e;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (n > MAX_TOKEN) {
        snprintf(msg, cap, "the token file %s is too large to hold a token", path);
        return EINVAL;
    }
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = '\0';
    if (!is_b64token(buf)) {
        snprintf(msg, cap,
                 "the token file %s does not hold a bearer token (one line of letters, "
                 "digits, -._~+/)",
                 path);
        return EINVAL;
    }
    *token = xstrdup(buf);
    return 0;
}

struct ctl_conn *http_open(const struct ctl_target *t, long timeout_ms, FILE *err,
                           int *exit_code)
{
    struct ctl_conn *c = xcalloc(1, sizeof *c);
    /* The socket's file mode is its access control: no token goes over it. */
    bool need_token = t->unix_path[0] == '\0';

    c->target = *t;
    c->timeout_ms = timeout_ms;
    if (need_token && t->token_file[0] != '\0') {
        char msg[CTL_PATH_MAX + 128];
        int e = read_token(t->token_file, &c->token, msg, sizeof msg);
        if (e != 0 && t->token_explicit) {
            if (e == EACCES || e == EPERM) {
                fprintf(err,
                        "dmsgctl: %s — run dmsgctl as a user who may read it (dmsgd writes it "
                        "with mode 0600), or copy the token to a file you can read\n",
                        msg);
                *exit_code = CTL_EXIT_DENIED;
            } else {
                fprintf(err,
                        "dmsgctl: %s — pass --token-file with the admin.token (or "
                        "admin-readonly.token) that dmsgd wrote into its state directory\n",
                        msg);
                *exit_code = CTL_EXIT_USAGE;
            }
            free(c);
            return NULL;
        }
        if (e != 0)
            snprintf(c->token_problem, sizeof c->token_problem, "%s", msg);
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL)
        fatal_bug("curl_easy_init failed");
    *exit_code = CTL_EXIT_OK;
    return c;
}

void http_close(struct ctl_conn *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    if (c->token != NULL) {
        memset(c->token, 0, strlen(c->token));
        free(c->token);
    }
    free(c);
}

const char *http_where(const struct ctl_conn *c)
{
    if (c == NULL)
        return "dmsgd";
    return c->target.unix_path[0] != '\0' ? c->target.unix_path : c->target.base_url;
}

/* ---- one request ---- */

struct sink {
    struct http_response *resp;
    CURL *curl;
    http_data_fn on_data;   /* streaming: 2xx bodies go here */
    void *user;
    int stopped;            /* on_data's non-zero value */
    bool too_big;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t len = size * nmemb;
    long status = 0;

    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (s->on_data != NULL && status >= 200 && status < 300) {
        s->stopped = s->on_data(s->user, data, len);
        return s->stopped != 0 ? 0 : len;
    }
    if (s->resp->body.len + len > MAX_BODY) {
        s->too_big = true;
        return 0;
    }
    sb_append(&s->resp->body, data, len);
    return len;
}

static struct curl_slist *request_headers(const struct ctl_conn *c, const char *accept,
                                          bool has_body)
{
    struct curl_slist *h = NULL;
    char line[MAX_TOKEN + 32];

    snprintf(line, sizeof line, "Accept: %s", accept);
    h = curl_slist_append(h, line);
    /* No "Expect: 100-continue" round trip for our small bodies. */
    h = curl_slist_append(h, "Expect:");
    if (has_body)
        h = curl_slist_append(h, "Content-Type: application/json");
    if (c->token != NULL) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, line);
    }
    if (h == NULL)
        fatal_bug("curl_slist_append failed");
    return h;
}

static void setup(struct ctl_conn *c, const char *method, const char *url,
                  const char *json_body, struct curl_slist *headers, struct sink *sink,
                  bool stream)
{
    CURL *h = c->curl;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "dmsgctl/" DMSGCTL_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
    if (stream) {
        long silence = c->timeout_ms / 1000 > STREAM_SILENCE_S ? c->timeout_ms / 1000
                                                                : STREAM_SILENCE_S;
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, silence);
    } else {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    }
    if (c->target.unix_path[0] != '\0')
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->target.unix_path);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (json_body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(json_body));
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    }
}

static void collect_headers(CURL *h, struct http_response *resp)
{
    char *ct = NULL;
    struct curl_header *wa = NULL;

    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
        snprintf(resp->content_type, sizeof resp->content_type, "%s", ct);
    if (curl_easy_header(h, "WWW-Authenticate", 0, CURLH_HEADER, -1, &wa) == CURLHE_OK)
        snprintf(resp->www_authenticate, sizeof resp->www_authenticate, "%s", wa->value);
}

/* Why a unix socket path cannot be connected to, from the file system's point of view. */
static int socket_problem(const char *path, char *why, size_t cap)
{
    struct stat st;

    if (stat(path, &st) != 0) {
        int e = errno;
        snprintf(why, cap, "%s", strerror(e));
        return e;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(why, cap, "not a socket");
        return ENOTSOCK;
    }
    return 0;
}

static int report_unreachable(const struct ctl_conn *c, CURLcode cc, long os_errno,
                              bool stream, FILE *err)
{
    const char *where = http_where(c);
    bool on_socket = c->target.unix_path[0] != '\0';
    char why[256];
    int e = 0;

    if (cc == CURLE_OPERATION_TIMEDOUT && stream) {
        fprintf(err,
                "dmsgctl: the feed from dmsgd at %s went silent (not even a keepalive) — dmsgd "
                "may be stuck or gone; check its log, then retry (--follow reconnects by "
                "itself)\n",
                where);
        return CTL_EXIT_UNREACHABLE;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        fprintf(err,
                "dmsgctl: dmsgd at %s did not answer within %g s — it may be overloaded or "
                "stuck: check its log (journalctl -u dmsgd), or allow more time with "
                "--timeout SECONDS\n",
                where, (double)c->timeout_ms / 1000.0);
        return CTL_EXIT_UNREACHABLE;
    }
    if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) {
        if (on_socket)
            e = socket_problem(where, why, sizeof why);
        if (e == 0) {
            e = (int)os_errno;
            snprintf(why, sizeof why, "%s",
                     e != 0 ? strerror(e) : curl_easy_strerror(cc));
        }
        if (e == EACCES || e == EPERM) {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — run dmsgctl as the user dmsgd "
                    "runs as, or as a member of the socket's group (ls -l %s)\n",
                    where, why, where);
            return CTL_EXIT_DENIED;
        }
        if (on_socket && e == ECONNREFUSED) {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — the socket was left by a dmsgd "
                    "that is no longer running; start dmsgd (it replaces the stale socket)\n",
                    where, why);
        } else if (on_socket && e == ENOTSOCK) {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: not a socket — point -c or --admin at "
                    "dmsgd's admin socket (admin_socket in its config)\n",
                    where);
        } else if (on_socket && c->target.searched) {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — is dmsgd running? start it, or "
                    "pass -c FILE with the config file it runs with (looked for a socket at: "
                    "%s)\n",
                    where, why, c->target.tried);
        } else if (on_socket && c->target.config_path[0] != '\0') {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — is dmsgd running with %s? start "
                    "it (the socket is admin_socket there, by default <state_dir>/admin.sock)\n",
                    where, why, c->target.config_path);
        } else if (on_socket) {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — is dmsgd running? start it, or "
                    "pass -c FILE with the config file it runs with\n",
                    where, why);
        } else {
            fprintf(err,
                    "dmsgctl: cannot reach dmsgd at %s: %s — is dmsgd running, with "
                    "admin_address set to this address?%s%s%s\n",
                    where, why, c->target.tried[0] != '\0' ? " (and no socket at " : "",
                    c->target.tried, c->target.tried[0] != '\0' ? ")" : "");
        }
        return CTL_EXIT_UNREACHABLE;
    }
    fprintf(err,
            "dmsgctl: no usable answer from dmsgd at %s: %s — it may be stopping or "
            "restarting; check that %s is dmsgd's admin API and retry\n",
            where, curl_easy_strerror(cc), where);
    return CTL_EXIT_UNREACHABLE;
}

static int perform(struct ctl_conn *c, const char *method, const char *path,
                   const char *json_body, const char *accept, struct sink *sink, FILE *err)
{
    struct curl_slist *headers = request_headers(c, accept, json_body != NULL);
    char *url = xasprintf("%s%s", c->target.base_url, path);
    CURLcode cc;
    long os_errno = 0;
    int rc = 0;

    setup(c, method, url, json_body, headers, sink, sink->on_data != NULL);
    cc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    collect_headers(c->curl, sink->resp);
    if (cc == CURLE_WRITE_ERROR && sink->stopped != 0) {
        rc = 0; /* the caller stopped the stream on purpose */
    } else if (cc == CURLE_WRITE_ERROR && sink->too_big) {
        fprintf(err, "dmsgctl: the answer from %s is larger than %u MiB — is it really dmsgd?\n",
                http_where(c), MAX_BODY >> 20);
        rc = CTL_EXIT_REFUSED;
    } else if (cc != CURLE_OK && !(sink->on_data != NULL && sink->resp->status >= 200 &&
                                   sink->resp->status < 300 && cc == CURLE_PARTIAL_FILE)) {
        rc = report_unreachable(c, cc, os_errno, sink->on_data != NULL, err);
    }
    curl_slist_free_all(headers);
    free(url);
    return rc;
}

int http_request(struct ctl_conn *c, const char *method, const char *path,
                 const char *json_body, struct http_response *resp, FILE *err)
{
    struct sink sink = {.resp = resp, .curl = c->curl};

    memset(resp, 0, sizeof *resp);
    return perform(c, method, path, json_body, "application/json", &sink, err);
}

/* ---- failures ---- */

/* The parameter param="value" of a WWW-Authenticate challenge, or "". */
static void auth_param(const char *challenge, const char *param, char *out, size_t cap)
{
    char key[64];
    const char *p;

    out[0] = '\0';
    snprintf(key, sizeof key, "%s=\"", param);
    p = strstr(challenge, key);
    if (p == NULL)
        return;
    p += strlen(key);
    snprintf(out, cap, "%.*s", (int)strcspn(p, "\""), p);
}

struct problem {
    char code[64];
    char title[256];
    char detail[1024];
    char field[64];
};

static bool parse_problem(const struct http_response *resp, struct problem *p)
{
    json_t *doc;
    const char *s;

    memset(p, 0, sizeof *p);
    if (resp->body.s == NULL)
        return false;
    doc = json_loadb(resp->body.s, resp->body.len, 0, NULL);
    if (!json_is_object(doc) || jstr(doc, "code") == NULL) {
        json_decref(doc);
        return false;
    }
    snprintf(p->code, sizeof p->code, "%s", jstr(doc, "code"));
    if ((s = jstr(doc, "title")) != NULL)
        snprintf(p->title, sizeof p->title, "%s", s);
    if ((s = jstr(doc, "detail")) != NULL)
        snprintf(p->detail, sizeof p->detail, "%s", s);
    if ((s = jstr(doc, "field")) != NULL)
        snprintf(p->field, sizeof p->field, "%s", s);
    json_decref(doc);
    return true;
}

struct hint {
    const char *code;
    const char *text;
};

/* What the operator can do about each refusal (codes from api/openapi.yaml). */
static const struct hint hints[] = {
    {"peer_exists", "it is already a peer: see `dmsgctl peer ls`"},
    {"peer_not_found", "see the peers with `dmsgctl peer ls`"},
    {"peer_from_config", "remove it from `peers` in dmsgd's config file, then restart dmsgd"},
    {"peer_limit_reached", "remove a peer first (`dmsgctl peer rm PK`)"},
    {"peer_is_self", "that is this server's own key (see `dmsgctl info`)"},
    {"session_not_found", "see the sessions with `dmsgctl sessions`; the client may have left"},
    {"route_setup_not_found", "see recent route setups with `dmsgctl routes`"},
    {"store_unavailable", "dmsgd keeps relaying; fix its state store as said, then retry"},
    {"shutting_down", "dmsgd is stopping; retry once it runs again"},
    {"internal_error", "this is a bug in dmsgd; its log has the details"},
    {"invalid_public_key", "check the key (66 hex characters)"},
    {"invalid_address", "check the address (HOST:PORT)"},
    {NULL, NULL}};

/* Codes that mean dmsgctl and dmsgd do not speak the same API version. */
static const char *const mismatch_codes[] = {
    "not_found", "method_not_allowed", "malformed_json", "unknown_field", "missing_field",
    "invalid_field", "invalid_query", "body_too_large", "unsupported_media_type", NULL};

static int report_denied(const struct ctl_conn *c, const struct http_response *resp,
                         const struct problem *p, bool has_problem, FILE *err)
{
    char code[64], dir[CTL_PATH_MAX];
    const char *token = c->target.token_file[0] != '\0' ? c->target.token_file : NULL;
    const char *sd = c->target.state_dir[0] != '\0' ? c->target.state_dir : "<state_dir>";
    const char *slash = token != NULL ? strrchr(token, '/') : NULL;

    /* The admin token sits next to the one that was used, wherever that was. */
    if (slash != NULL) {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - token), token);
        sd = dir;
    } else if (token != NULL) {
        sd = ".";
    }

    if (has_problem)
        snprintf(code, sizeof code, "%s", p->code);
    else
        auth_param(resp->www_authenticate, "error", code, sizeof code);
    if (strcmp(code, "token_invalid") == 0 || strcmp(code, "invalid_token") == 0) {
        fprintf(err,
                "dmsgctl: dmsgd at %s did not accept the token from %s (%ld token_invalid) — it "
                "belongs to another dmsgd or was rotated; use the current %s/admin.token\n",
                http_where(c), token != NULL ? token : "?", resp->status, sd);
    } else if (strcmp(code, "insufficient_scope") == 0) {
        fprintf(err,
                "dmsgctl: the token from %s is read-only (%ld insufficient_scope) — changes "
                "need the admin token, %s/admin.token\n",
                token != NULL ? token : "?", resp->status, sd);
    } else if (strcmp(code, "origin_refused") == 0) {
        fprintf(err,
                "dmsgctl: dmsgd refused the request because it carries an Origin header (%ld "
                "origin_refused) — something between dmsgctl and dmsgd adds it; talk to dmsgd "
                "directly\n",
                resp->status);
    } else if (resp->status == 401) {
        fprintf(err,
                "dmsgctl: dmsgd at %s needs a token (401 token_missing) — pass --token-file "
                "%s/admin.token (dmsgd writes it at its first start), or -c with dmsgd's config "
                "file so that dmsgctl finds it%s%s\n",
                http_where(c), sd, c->token_problem[0] != '\0' ? "; " : "", c->token_problem);
    } else {
        fprintf(err, "dmsgctl: not permitted: %s (%ld %s)\n",
                has_problem && p->detail[0] != '\0' ? p->detail : "dmsgd refused the request",
                resp->status, code[0] != '\0' ? code : "forbidden");
    }
    return CTL_EXIT_DENIED;
}

int http_report_failure(const struct ctl_conn *c, const struct http_response *resp, FILE *err)
{
    struct problem p;
    bool has_problem = parse_problem(resp, &p);
    const char *hint = NULL;

    if (resp->status == 401 || resp->status == 403)
        return report_denied(c, resp, &p, has_problem, err);
    if (!has_problem) {
        fprintf(err,
                "dmsgctl: unexpected answer from %s: HTTP %ld%s%s — is this dmsgd's admin API? "
                "(check -c or --admin)\n",
                http_where(c), resp->status, resp->content_type[0] != '\0' ? ", " : "",
                resp->content_type);
        return CTL_EXIT_REFUSED;
    }
    for (const struct hint *h = hints; h->code != NULL; h++) {
        if (strcmp(h->code, p.code) == 0)
            hint = h->text;
    }
    for (const char *const *m = mismatch_codes; *m != NULL; m++) {
        if (strcmp(*m, p.code) == 0)
            hint = "dmsgctl and dmsgd may be of different versions: compare `dmsgctl "
                   "--version` with the version `dmsgctl info` shows";
    }
    fprintf(err, "dmsgctl: dmsgd refused: %s%s%s (%ld %s)%s%s\n",
            p.detail[0] != '\0' ? p.detail : p.title, p.field[0] != '\0' ? "; field " : "",
            p.field, resp->status, p.code, hint != NULL ? " — " : "", hint != NULL ? hint : "");
    return CTL_EXIT_REFUSED;
}

static int call(struct ctl *ctl, const char *method, const char *path, const char *json_body,
                const char *accept, struct http_response *resp)
{
    struct sink sink = {.resp = resp, .curl = ctl->conn->curl};
    int rc;

    memset(resp, 0, sizeof *resp);
    rc = perform(ctl->conn, method, path, json_body, accept, &sink, ctl->err);
    if (rc != 0) {
        http_response_free(resp);
        return rc;
    }
    if (resp->status >= 200 && resp->status < 300)
        return CTL_EXIT_OK;
    rc = http_report_failure(ctl->conn, resp, ctl->err);
    http_response_free(resp);
    return rc;
}

int http_call(struct ctl *ctl, const char *method, const char *path, const char *json_body,
              struct http_response *resp)
{
    return call(ctl, method, path, json_body, "application/json", resp);
}

int http_get_text(struct ctl *ctl, const char *path, struct http_response *resp)
{
    return call(ctl, "GET", path, NULL, "text/plain", resp);
}

int http_stream(struct ctl *ctl, const char *path, const char *accept, http_data_fn on_data,
                void *user)
{
    struct http_response resp;
    struct sink sink = {.resp = &resp, .curl = ctl->conn->curl, .on_data = on_data,
                        .user = user};
    int rc;

    memset(&resp, 0, sizeof resp);
    rc = perform(ctl->conn, "GET", path, NULL, accept, &sink, ctl->err);
    if (rc == 0 && sink.stopped != 0)
        rc = sink.stopped;
    else if (rc == 0 && (resp.status < 200 || resp.status >= 300))
        rc = http_report_failure(ctl->conn, &resp, ctl->err);
    http_response_free(&resp);
    return rc;
}
