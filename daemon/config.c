/* The dmsgd configuration file; see config.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dmsg/error.h"
#include "netaddr.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define MAX_SESSIONS_CEILING 1000000
#define MIN_UPDATE_INTERVAL_NS 1000000000ULL
#define MAX_UPDATE_INTERVAL_NS (24ULL * 3600ULL * 1000000000ULL)

/* ---------------------------------------------------------------------------------------------
 * Defaults */

static void limits_defaults(struct config_limits *l)
{
    l->handshake_timeout_ms = 5000;
    l->max_pending_handshakes = 1024;
    l->max_pending_per_ip = 16;
    l->max_sessions_per_ip = 64;
    l->max_sessions_hard = 0;
    l->max_streams_per_session = 2048;
    l->max_pending_requests = 256;
    l->stream_requests_per_second = 100;
    l->stream_requests_burst = 300;
    l->request_timeout_ms = 10000;
    l->response_timeout_ms = 10000;
    l->max_object_bytes = 65535;
    l->max_early_bytes = 65536;
    l->keepalive_interval_ms = 30000;
    l->keepalive_timeout_ms = 10000;
    l->write_timeout_ms = 10000;
    l->session_idle_timeout_ms = 0;
    l->max_write_queue_bytes = 4u * 1024u * 1024u;
    l->eviction_interval_ms = 1000;
    l->shutdown_grace_ms = 3000;
    l->metrics_sample_interval_ms = 60000;
    l->metrics_retention_s = 3 * 86400;
    l->route_setup_max_hops = 50;
    l->route_setup_max_in_flight = 64;
    l->route_setup_max_per_requester = 2;
    l->route_setup_deadline_ms = 30000;
    l->route_setup_retention_s = 7 * 86400;
    l->accept_proxy_header = false;
}

void config_defaults(struct dmsgd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->local_address, sizeof cfg->local_address, "%s", CONFIG_DEFAULT_LOCAL_ADDRESS);
    snprintf(cfg->embedded_discovery_address, sizeof cfg->embedded_discovery_address, "%s",
             CONFIG_DEFAULT_EMBEDDED_DISCOVERY);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->max_sessions = CONFIG_DEFAULT_MAX_SESSIONS;
    cfg->update_interval_ns = CONFIG_DEFAULT_UPDATE_INTERVAL_NS;
    limits_defaults(&cfg->limits);
}

/* ---------------------------------------------------------------------------------------------
 * Error reporting */

struct parse_ctx {
    struct dmsgd_config *cfg;
    const char *origin;
    config_warn_fn warn;
    void *warn_user;
    struct config_error *err;
    bool secret_seen, public_seen;
    /* The first entry of a newer config's "discoveries" list, applied when "discovery" and
     * "public_address" leave it open (the reference folds them the same way). */
    char first_discovery_url[CONFIG_URL_MAX + 1];
    char first_discovery_address[CONFIG_ADDR_MAX + 1];
};

/* The value as short JSON text for messages; secrets are never printed. */
static void value_text(const json_t *v, char *out, size_t cap)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

    if (text == NULL) {
        snprintf(out, cap, "(unprintable)");
        return;
    }
    if (strlen(text) > 80)
        snprintf(out, cap, "%.77s...", text);
    else
        snprintf(out, cap, "%s", text);
    free(text);
}

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static int fail(struct parse_ctx *pc, const char *key, const json_t *value, const char *fmt, ...)
{
    char why[300];
    char shown[96];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (pc->err == NULL)
        return DMSG_EINVAL;
    snprintf(pc->err->key, sizeof pc->err->key, "%s", key);
    if (value != NULL) {
        value_text(value, shown, sizeof shown);
        snprintf(pc->err->message, sizeof pc->err->message, "%s: key \"%s\" = %s: %s", pc->origin,
                 key, shown, why);
    } else {
        snprintf(pc->err->message, sizeof pc->err->message, "%s: key \"%s\": %s", pc->origin, key,
                 why);
    }
    return DMSG_EINVAL;
}

static void warn(struct parse_ctx *pc, const char *key, const char *message)
{
    if (pc->warn != NULL)
        pc->warn(pc->warn_user, key, message);
}

/* ---------------------------------------------------------------------------------------------
 * Addresses */

int config_split_address(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    return netaddr_split(addr, host, host_cap, port);
}

static bool is_numeric_ip(const char *host)
{
    uint8_t buf[16];

    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static bool is_loopback_host(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;

    if (strcasecmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6);
    return false;
}

static bool valid_hostname(const char *host)
{
    if (host[0] == '\0')
        return false;
    for (const char *c = host; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == ':' || *c == '%';
        if (!ok)
            return false;
    }
    return true;
}

enum addr_kind {
    ADDR_LISTEN,   /* numeric host, "localhost" or empty (every address); port may be 0 */
    ADDR_LOOPBACK, /* listen, and loopback only */
    ADDR_REMOTE    /* any host name; port 1..65535 */
};

static int check_address(struct parse_ctx *pc, const char *key, const json_t *v,
                         const char *addr, enum addr_kind kind)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port;

    if (config_split_address(addr, host, sizeof host, &port) != 0)
        return fail(pc, key, v, "not a host:port address (IPv6 hosts go in brackets)");
    switch (kind) {
    case ADDR_LISTEN:
        if (host[0] != '\0' && strcasecmp(host, "localhost") != 0 && !is_numeric_ip(host))
            return fail(pc, key, v, "the listen host must be a numeric IP, localhost or empty");
        break;
    case ADDR_LOOPBACK:
        if (host[0] == '\0' || !is_loopback_host(host))
            return fail(pc, key, v, "must be a loopback address (127.0.0.1, [::1] or localhost)");
        break;
    case ADDR_REMOTE:
        if (!valid_hostname(host))
            return fail(pc, key, v, "the host is empty or has invalid characters");
        if (port == 0)
            return fail(pc, key, v, "the port must be 1..65535");
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Scalar readers */

static int get_string(struct parse_ctx *pc, const char *key, const json_t *v, char *out,
                      size_t cap)
{
    const char *s;

    if (!json_is_string(v))
        return fail(pc, key, v, "must be a string");
    s = json_string_value(v);
    if (json_string_length(v) != strlen(s))
        return fail(pc, key, v, "must not contain a NUL character");
    if (strlen(s) >= cap)
        return fail(pc, key, v, "is longer than %zu characters", cap - 1);
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int get_bool(struct parse_ctx *pc, const char *key, const json_t *v, bool *out)
{
    if (!json_is_boolean(v))
        return fail(pc, key, v, "must be true or false");
    *out = json_is_true(v);
    return 0;
}

static int get_integer(struct parse_ctx *pc, const char *key, const json_t *v, int64_t min,
                       int64_t max, int64_t *out)
{
    double d;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < min || i > max)
            return fail(pc, key, v, "must be %lld..%lld", (long long)min, (long long)max);
        *out = (int64_t)i;
        return 0;
    }
    if (!json_is_real(v))
        return fail(pc, key, v, "must be an integer");
    /* Go decodes 1e9 into an int64 too; accept reals that are exact integers. */
    d = json_real_value(v);
    /* int64's range first (2^63 itself is out): converting a double outside it is undefined. */
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) ||
        d != (double)(int64_t)d || (int64_t)d < min || (int64_t)d > max)
        return fail(pc, key, v, "must be an integer in %lld..%lld", (long long)min,
                    (long long)max);
    *out = (int64_t)d;
    return 0;
}

/* A Go duration string: [0-9]+(.[0-9]+)?(ns|us|µs|ms|s|m|h), repeated ("1m30s"). */
static int parse_go_duration(const char *s, uint64_t *out_ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
                 {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    double total = 0;

    if (*s == '\0')
        return DMSG_EINVAL;
    if (strcmp(s, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    while (*s) {
        char *end;
        double num;
        size_t best = 0, best_len = 0;

        if (!((*s >= '0' && *s <= '9') || *s == '.'))
            return DMSG_EINVAL;
        num = strtod(s, &end);
        if (end == s)
            return DMSG_EINVAL;
        s = end;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t len = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, len) == 0 && len > best_len) {
                best = i;
                best_len = len;
            }
        }
        if (best_len == 0)
            return DMSG_EINVAL;
        total += num * units[best].ns;
        s += best_len;
    }
    if (total > 9.2e18)
        return DMSG_EINVAL;
    *out_ns = (uint64_t)total;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Keys */

static int parse_key_text(struct parse_ctx *pc, const char *key, const json_t *v, bool secret)
{
    const char *s;
    size_t len;

    if (!json_is_string(v))
        return fail(pc, key, secret ? NULL : v, "must be a hex string");
    s = json_string_value(v);
    len = strlen(s);
    if (len == 0)
        return 0; /* Go's zero value: treated as absent */
    if (secret) {
        if (dmsg_sk_from_hex(&pc->cfg->secret_key, s, len) != 0)
            return fail(pc, key, NULL, "must be 64 hex characters (value not shown)");
        if (dmsg_sk_validate(&pc->cfg->secret_key) != 0)
            return fail(pc, key, NULL, "is not a valid secp256k1 secret key (value not shown)");
        pc->secret_seen = true;
    } else {
        if (dmsg_pk_from_hex(&pc->cfg->public_key, s, len) != 0)
            return fail(pc, key, v, "must be 66 hex characters");
        if (dmsg_pk_validate(&pc->cfg->public_key) != 0)
            return fail(pc, key, v, "is not a valid compressed secp256k1 public key");
        pc->public_seen = true;
    }
    return 0;
}

/* After all keys are read: both or neither; the public key must match the secret one. */
static int finish_keys(struct parse_ctx *pc)
{
    dmsg_pk derived;

    if (!pc->secret_seen) {
        if (pc->public_seen)
            return fail(pc, "secret_key", NULL,
                        "is missing while public_key is set (give both, or neither to use the "
                        "key file in state_dir)");
        pc->cfg->has_keys = false;
        return 0;
    }
    if (dmsg_pk_from_sk(&derived, &pc->cfg->secret_key) != 0)
        return fail(pc, "secret_key", NULL, "is not a valid secret key");
    if (pc->public_seen && !dmsg_pk_equal(&derived, &pc->cfg->public_key)) {
        char hex[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&pc->cfg->public_key, hex);
        return fail(pc, "public_key", NULL, "\"%s\" does not belong to secret_key", hex);
    }
    pc->cfg->public_key = derived;
    pc->cfg->has_keys = true;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Peers */

static int parse_peer(struct parse_ctx *pc, size_t index, const json_t *obj)
{
    struct config_peer *peer = &pc->cfg->peers[index];
    char key[64];
    bool has_pk = false, has_addr = false;
    const char *name;
    json_t *v;

    snprintf(key, sizeof key, "peers[%zu]", index);
    if (!json_is_object(obj))
        return fail(pc, key, obj, "must be an object {\"public_key\": …, \"address\": …}");
    json_object_foreach((json_t *)obj, name, v) {
        char sub[128];
        int rc;

        snprintf(sub, sizeof sub, "%s.%s", key, name);
        if (strcasecmp(name, "public_key") == 0) {
            if (!json_is_string(v))
                return fail(pc, sub, v, "must be a hex string");
            if (dmsg_pk_from_hex(&peer->public_key, json_string_value(v),
                                 strlen(json_string_value(v))) != 0)
                return fail(pc, sub, v, "must be 66 hex characters");
            if (dmsg_pk_validate(&peer->public_key) != 0)
                return fail(pc, sub, v, "is not a valid compressed secp256k1 public key");
            has_pk = true;
        } else if (strcasecmp(name, "address") == 0) {
            rc = get_string(pc, sub, v, peer->address, sizeof peer->address);
            if (rc == 0)
                rc = check_address(pc, sub, v, peer->address, ADDR_REMOTE);
            if (rc != 0)
                return rc;
            has_addr = true;
        } else {
            warn(pc, sub, "unknown peer member, ignored");
        }
    }
    if (!has_pk)
        return fail(pc, key, NULL, "has no \"public_key\"");
    if (!has_addr)
        return fail(pc, key, NULL, "has no \"address\"");
    for (size_t i = 0; i < index; i++) {
        if (dmsg_pk_equal(&pc->cfg->peers[i].public_key, &peer->public_key)) {
            char hex[DMSG_PK_HEX_LEN + 1];
            dmsg_pk_to_hex(&peer->public_key, hex);
            return fail(pc, key, NULL, "public key %s is listed twice (also peers[%zu])", hex, i);
        }
    }
    return 0;
}

static int parse_peers(struct parse_ctx *pc, const char *key, const json_t *v)
{
    size_t n;

    if (json_is_null(v)) {
        pc->cfg->n_peers = 0;
        return 0;
    }
    if (!json_is_array(v))
        return fail(pc, key, v, "must be an array of {\"public_key\", \"address\"} objects");
    n = json_array_size(v);
    if (n > CONFIG_MAX_PEERS)
        return fail(pc, key, NULL, "has %zu entries; at most %d peers are supported", n,
                    CONFIG_MAX_PEERS);
    for (size_t i = 0; i < n; i++) {
        int rc = parse_peer(pc, i, json_array_get(v, i));
        if (rc != 0)
            return rc;
    }
    pc->cfg->n_peers = n;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The newer reference's "discoveries": [{"url", "dmsg_url", "public_key", "advertised_address"}]
 */

static int check_url(struct parse_ctx *pc, const char *key, const json_t *v, const char *url)
{
    if (url[0] != '\0' && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return fail(pc, key, v, "must be an http:// or https:// URL, or empty for the embedded "
                                "discovery");
    return 0;
}

static int parse_discoveries(struct parse_ctx *pc, const json_t *v)
{
    const json_t *first, *url, *addr;
    int rc;

    if (!json_is_array(v))
        return fail(pc, "discoveries", v, "must be an array of {\"url\", \"advertised_address\"}");
    if (json_array_size(v) == 0)
        return 0;
    first = json_array_get(v, 0);
    if (!json_is_object(first))
        return fail(pc, "discoveries[0]", first, "must be an object");
    url = json_object_get(first, "url");
    addr = json_object_get(first, "advertised_address");
    if (url != NULL && !json_is_null(url)) {
        rc = get_string(pc, "discoveries[0].url", url, pc->first_discovery_url,
                        sizeof pc->first_discovery_url);
        if (rc == 0)
            rc = check_url(pc, "discoveries[0].url", url, pc->first_discovery_url);
        if (rc != 0)
            return rc;
    }
    if (addr != NULL && !json_is_null(addr)) {
        rc = get_string(pc, "discoveries[0].advertised_address", addr,
                        pc->first_discovery_address, sizeof pc->first_discovery_address);
        if (rc == 0 && pc->first_discovery_address[0] != '\0')
            rc = check_address(pc, "discoveries[0].advertised_address", addr,
                               pc->first_discovery_address, ADDR_REMOTE);
        if (rc != 0)
            return rc;
    }
    if (json_array_size(v) > 1)
        warn(pc, "discoveries", "only the first discovery is used; the others are ignored");
    return 0;
}

static void apply_discoveries(struct parse_ctx *pc)
{
    struct dmsgd_config *cfg = pc->cfg;

    if (cfg->discovery[0] == '\0' && pc->first_discovery_url[0] != '\0')
        memcpy(cfg->discovery, pc->first_discovery_url, sizeof cfg->discovery);
    if (cfg->public_address[0] == '\0' && pc->first_discovery_address[0] != '\0')
        memcpy(cfg->public_address, pc->first_discovery_address, sizeof cfg->public_address);
}

/* ---------------------------------------------------------------------------------------------
 * Limits */

struct limit_def {
    const char *name;
    size_t offset;
    uint32_t min, max;
};

#define LIMIT(field, lo, hi) {#field, offsetof(struct config_limits, field), (lo), (hi)}

static const struct limit_def limit_defs[] = {
    LIMIT(handshake_timeout_ms, 100, 600000),
    LIMIT(max_pending_handshakes, 1, 1000000),
    LIMIT(max_pending_per_ip, 1, 1000000),
    LIMIT(max_sessions_per_ip, 1, 1000000),
    LIMIT(max_sessions_hard, 0, 1000000),
    LIMIT(max_streams_per_session, 1, 65536),
    LIMIT(max_pending_requests, 1, 65536),
    LIMIT(stream_requests_per_second, 1, 1000000),
    LIMIT(stream_requests_burst, 1, 1000000),
    LIMIT(request_timeout_ms, 100, 600000),
    LIMIT(response_timeout_ms, 100, 600000),
    LIMIT(max_object_bytes, 90, 65535),
    LIMIT(max_early_bytes, 0, 262144),
    LIMIT(keepalive_interval_ms, 1000, 3600000),
    LIMIT(keepalive_timeout_ms, 100, 600000),
    LIMIT(write_timeout_ms, 100, 600000),
    LIMIT(session_idle_timeout_ms, 0, 86400000),
    LIMIT(max_write_queue_bytes, 65536, 1073741824),
    LIMIT(eviction_interval_ms, 0, 3600000),
    LIMIT(shutdown_grace_ms, 0, 600000),
    LIMIT(metrics_sample_interval_ms, 1000, 86400000),
    LIMIT(metrics_retention_s, 60, 31622400),
    LIMIT(route_setup_max_hops, 1, 50),
    LIMIT(route_setup_max_in_flight, 1, 100000),
    LIMIT(route_setup_max_per_requester, 1, 100000),
    LIMIT(route_setup_deadline_ms, 1000, 600000),
    LIMIT(route_setup_retention_s, 60, 31622400),
};

static int parse_limits(struct parse_ctx *pc, const json_t *obj)
{
    struct config_limits *l = &pc->cfg->limits;
    const char *name;
    json_t *v;

    if (json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return fail(pc, "limits", obj, "must be an object");
    json_object_foreach((json_t *)obj, name, v) {
        char key[160];
        bool known = false;
        int rc;

        snprintf(key, sizeof key, "limits.%s", name);
        if (json_is_null(v))
            continue;
        if (strcasecmp(name, "accept_proxy_header") == 0) {
            rc = get_bool(pc, key, v, &l->accept_proxy_header);
            if (rc != 0)
                return rc;
            continue;
        }
        for (size_t i = 0; i < sizeof limit_defs / sizeof limit_defs[0]; i++) {
            const struct limit_def *d = &limit_defs[i];
            int64_t val;

            if (strcasecmp(name, d->name) != 0)
                continue;
            rc = get_integer(pc, key, v, d->min, d->max, &val);
            if (rc != 0)
                return rc;
            *(uint32_t *)((char *)l + d->offset) = (uint32_t)val;
            known = true;
            break;
        }
        if (!known)
            warn(pc, key, "unknown limit, ignored");
    }
    if (l->stream_requests_burst < l->stream_requests_per_second)
        return fail(pc, "limits.stream_requests_burst", json_object_get(obj, "stream_requests_burst"),
                    "must be at least limits.stream_requests_per_second (%u)",
                    l->stream_requests_per_second);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Top level */

/* Keys of newer reference configs that dmsgd reads but does not implement. */
static const struct {
    const char *name;
    const char *why;
} ignored_keys[] = {
    {"discovery_dmsg", "discovery over DMSG is not supported; ignored"},
    {"public_address_v6", "IPv6 advertising is not supported yet; ignored"},
    {"ws_address", "websocket sessions are not supported; ignored"},
    {"public_address_ws", "websocket sessions are not supported; ignored"},
    {"dmsg", "deployment blocks are not used by the server; ignored"},
    {"announce_as_peer", "dmsgd peers only with configured peers; ignored"},
    {"accept_peer_announcements", "dmsgd peers only with configured peers; ignored"},
    {"accepted_peer_pks", "dmsgd peers only with configured peers (use \"peers\"); ignored"},
    {"max_peer_links", "the peer count is capped by \"peers\" (64); ignored"},
    {"max_relayed_streams", "use \"limits\"; ignored"},
    {"enable_dht", "the DHT is not supported; ignored"},
    {"redis_addr", "dmsgd keeps state in SQLite; ignored"},
    {"persist_path", "dmsgd keeps state in state_dir; ignored"},
};

static int parse_member(struct parse_ctx *pc, const char *name, const json_t *v)
{
    struct dmsgd_config *cfg = pc->cfg;
    int rc;

    if (json_is_null(v))
        return 0; /* Go leaves the zero value; we keep the default */
    if (strcasecmp(name, "public_key") == 0)
        return parse_key_text(pc, "public_key", v, false);
    if (strcasecmp(name, "secret_key") == 0)
        return parse_key_text(pc, "secret_key", v, true);
    if (strcasecmp(name, "discovery") == 0) {
        rc = get_string(pc, "discovery", v, cfg->discovery, sizeof cfg->discovery);
        return rc == 0 ? check_url(pc, "discovery", v, cfg->discovery) : rc;
    }
    if (strcasecmp(name, "discoveries") == 0) {
        return parse_discoveries(pc, v);
    }
    if (strcasecmp(name, "public_address") == 0) {
        rc = get_string(pc, "public_address", v, cfg->public_address, sizeof cfg->public_address);
        if (rc == 0 && cfg->public_address[0] != '\0')
            rc = check_address(pc, "public_address", v, cfg->public_address, ADDR_REMOTE);
        return rc;
    }
    if (strcasecmp(name, "local_address") == 0) {
        rc = get_string(pc, "local_address", v, cfg->local_address, sizeof cfg->local_address);
        if (rc == 0 && cfg->local_address[0] == '\0')
            snprintf(cfg->local_address, sizeof cfg->local_address, "%s",
                     CONFIG_DEFAULT_LOCAL_ADDRESS);
        if (rc == 0)
            rc = check_address(pc, "local_address", v, cfg->local_address, ADDR_LISTEN);
        return rc;
    }
    if (strcasecmp(name, "health_endpoint_address") == 0) {
        rc = get_string(pc, "health_endpoint_address", v, cfg->health_endpoint_address,
                        sizeof cfg->health_endpoint_address);
        if (rc == 0 && cfg->health_endpoint_address[0] != '\0')
            rc = check_address(pc, "health_endpoint_address", v, cfg->health_endpoint_address,
                               ADDR_LISTEN);
        return rc;
    }
    if (strcasecmp(name, "log_level") == 0) {
        char level[32];
        rc = get_string(pc, "log_level", v, level, sizeof level);
        if (rc != 0)
            return rc;
        if (level[0] == '\0')
            return 0;
        if (log_level_parse(level, &cfg->log_level) != 0)
            return fail(pc, "log_level", v,
                        "must be one of trace, debug, info, warn, error, fatal, panic");
        return 0;
    }
    if (strcasecmp(name, "max_sessions") == 0) {
        int64_t n;
        rc = get_integer(pc, "max_sessions", v, 0, MAX_SESSIONS_CEILING, &n);
        if (rc == 0)
            cfg->max_sessions = n == 0 ? CONFIG_DEFAULT_MAX_SESSIONS : n;
        return rc;
    }
    if (strcasecmp(name, "update_interval") == 0) {
        uint64_t ns;
        if (json_is_string(v)) {
            if (parse_go_duration(json_string_value(v), &ns) != 0)
                return fail(pc, "update_interval", v,
                            "must be nanoseconds (integer) or a duration such as \"1m\"");
        } else {
            int64_t n;
            rc = get_integer(pc, "update_interval", v, 0, INT64_MAX, &n);
            if (rc != 0)
                return fail(pc, "update_interval", v,
                            "must be a non-negative integer of nanoseconds (60000000000 = 1 min)");
            ns = (uint64_t)n;
        }
        if (ns == 0)
            ns = CONFIG_DEFAULT_UPDATE_INTERVAL_NS;
        if (ns < MIN_UPDATE_INTERVAL_NS || ns > MAX_UPDATE_INTERVAL_NS)
            return fail(pc, "update_interval", v,
                        "must be 0 (1 min) or between 1 s and 24 h, in nanoseconds");
        cfg->update_interval_ns = ns;
        return 0;
    }
    if (strcasecmp(name, "state_dir") == 0)
        return get_string(pc, "state_dir", v, cfg->state_dir, sizeof cfg->state_dir);
    if (strcasecmp(name, "embedded_discovery_address") == 0) {
        rc = get_string(pc, "embedded_discovery_address", v, cfg->embedded_discovery_address,
                        sizeof cfg->embedded_discovery_address);
        if (rc == 0 && cfg->embedded_discovery_address[0] == '\0')
            snprintf(cfg->embedded_discovery_address, sizeof cfg->embedded_discovery_address,
                     "%s", CONFIG_DEFAULT_EMBEDDED_DISCOVERY);
        if (rc == 0)
            rc = check_address(pc, "embedded_discovery_address", v,
                               cfg->embedded_discovery_address, ADDR_LISTEN);
        return rc;
    }
    if (strcasecmp(name, "admin_socket") == 0)
        return get_string(pc, "admin_socket", v, cfg->admin_socket, sizeof cfg->admin_socket);
    if (strcasecmp(name, "admin_address") == 0) {
        rc = get_string(pc, "admin_address", v, cfg->admin_address, sizeof cfg->admin_address);
        if (rc == 0 && cfg->admin_address[0] != '\0')
            rc = check_address(pc, "admin_address", v, cfg->admin_address, ADDR_LISTEN);
        return rc; /* loopback unless admin_allow_remote: check_whole, once both are read */
    }
    if (strcasecmp(name, "admin_allow_remote") == 0)
        return get_bool(pc, "admin_allow_remote", v, &cfg->admin_allow_remote);
    if (strcasecmp(name, "peers") == 0)
        return parse_peers(pc, "peers", v);
    if (strcasecmp(name, "enable_route_setup") == 0)
        return get_bool(pc, "enable_route_setup", v, &cfg->enable_route_setup);
    if (strcasecmp(name, "accept_discovered_peers") == 0)
        return get_bool(pc, "accept_discovered_peers", v, &cfg->accept_discovered_peers);
    if (strcasecmp(name, "limits") == 0)
        return parse_limits(pc, v);
    for (size_t i = 0; i < sizeof ignored_keys / sizeof ignored_keys[0]; i++) {
        if (strcasecmp(name, ignored_keys[i].name) == 0) {
            warn(pc, name, ignored_keys[i].why);
            return 0;
        }
    }
    warn(pc, name, "unknown key, ignored");
    return 0;
}

/* Checks that need more than one key. */
static int check_whole(struct parse_ctx *pc)
{
    const struct dmsgd_config *cfg = pc->cfg;

    if (cfg->has_keys) {
        for (size_t i = 0; i < cfg->n_peers; i++) {
            if (dmsg_pk_equal(&cfg->peers[i].public_key, &cfg->public_key)) {
                char key[48];
                snprintf(key, sizeof key, "peers[%u].public_key", (unsigned)i);
                return fail(pc, key, NULL, "is this server's own public key");
            }
        }
    }
    if (cfg->limits.max_sessions_hard != 0 &&
        (int64_t)cfg->limits.max_sessions_hard < cfg->max_sessions)
        return fail(pc, "limits.max_sessions_hard", NULL,
                    "(%u) must be 0 or at least max_sessions (%lld)",
                    cfg->limits.max_sessions_hard, (long long)cfg->max_sessions);
    if (cfg->admin_address[0] != '\0' && !cfg->admin_allow_remote) {
        char host[CONFIG_ADDR_MAX + 1];
        uint16_t port;
        if (config_split_address(cfg->admin_address, host, sizeof host, &port) != 0 ||
            host[0] == '\0' || !is_loopback_host(host))
            return fail(pc, "admin_address", NULL,
                        "\"%s\" must be a loopback address (127.0.0.1, [::1] or localhost);"
                        " set admin_allow_remote to true to listen elsewhere",
                        cfg->admin_address);
    }
    return 0;
}

int config_parse(struct dmsgd_config *cfg, const char *text, size_t len, const char *origin,
                 config_warn_fn warn_fn, void *warn_user, struct config_error *err)
{
    struct parse_ctx pc;
    json_error_t jerr;
    json_t *root;
    const char *name;
    json_t *v;
    int rc = 0;

    memset(&pc, 0, sizeof pc);
    pc.cfg = cfg;
    pc.origin = origin != NULL ? origin : "config";
    pc.warn = warn_fn;
    pc.warn_user = warn_user;
    pc.err = err;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if (len > CONFIG_FILE_MAX)
        return fail(&pc, "", NULL, "the file is larger than %d bytes", CONFIG_FILE_MAX);
    root = json_loadb(text, len, 0, &jerr);
    if (root == NULL) {
        if (err != NULL) {
            snprintf(err->key, sizeof err->key, "%s", "");
            snprintf(err->message, sizeof err->message, "%s:%d:%d: invalid JSON: %s", pc.origin,
                     jerr.line, jerr.column, jerr.text);
        }
        return DMSG_EINVAL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(&pc, "", NULL, "the top level must be a JSON object");
    }
    json_object_foreach(root, name, v) {
        rc = parse_member(&pc, name, v);
        if (rc != 0)
            break;
    }
    if (rc == 0)
        rc = finish_keys(&pc);
    if (rc == 0)
        apply_discoveries(&pc);
    if (rc == 0)
        rc = check_whole(&pc);
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Files and paths */

static int read_file(const char *path, char **out, size_t *out_len, struct config_error *err)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;

    if (f == NULL) {
        if (err != NULL)
            snprintf(err->message, sizeof err->message, "%s: cannot open: %s", path,
                     strerror(errno));
        return DMSG_EIO;
    }
    buf = malloc(CONFIG_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return DMSG_ENOMEM;
    }
    n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
    if (ferror(f) || n > CONFIG_FILE_MAX) {
        if (err != NULL)
            snprintf(err->message, sizeof err->message, "%s: %s", path,
                     ferror(f) ? "read error" : "larger than 1 MiB");
        free(buf);
        fclose(f);
        return DMSG_EIO;
    }
    fclose(f);
    *out = buf;
    *out_len = n;
    return 0;
}

/* Joins a relative path onto the directory of base_file. */
static void make_relative_to(char *path, size_t cap, const char *base_file)
{
    const char *slash = strrchr(base_file, '/');
    char joined[CONFIG_PATH_MAX * 2 + 2];

    if (path[0] == '\0' || path[0] == '/' || slash == NULL)
        return;
    snprintf(joined, sizeof joined, "%.*s/%s", (int)(slash - base_file), base_file, path);
    if (strlen(joined) < cap)
        memcpy(path, joined, strlen(joined) + 1);
}

int config_load_file(struct dmsgd_config *cfg, const char *path, config_warn_fn warn_fn,
                     void *warn_user, struct config_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    rc = read_file(path, &text, &len, err);
    if (rc != 0)
        return rc;
    rc = config_parse(cfg, text, len, path, warn_fn, warn_user, err);
    free(text);
    if (rc != 0)
        return rc;
    make_relative_to(cfg->state_dir, sizeof cfg->state_dir, path);
    make_relative_to(cfg->admin_socket, sizeof cfg->admin_socket, path);
    return 0;
}

void config_resolve_state_dir(struct dmsgd_config *cfg, const char *(*env)(const char *name),
                              bool is_root)
{
    const char *v;

    if (cfg->state_dir[0] != '\0')
        return;
    v = env("STATE_DIRECTORY");
    if (v != NULL && v[0] != '\0') {
        /* systemd lists several directories separated by ':' when StateDirectory has several. */
        size_t len = strcspn(v, ":");
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "%.*s", (int)len, v);
        return;
    }
    if (is_root) {
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "/var/lib/dmsgd");
        return;
    }
    v = env("XDG_STATE_HOME");
    if (v != NULL && v[0] == '/') {
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s/dmsgd", v);
        return;
    }
    v = env("HOME");
    if (v != NULL && v[0] == '/') {
        snprintf(cfg->state_dir, sizeof cfg->state_dir, "%s/.local/state/dmsgd", v);
        return;
    }
    snprintf(cfg->state_dir, sizeof cfg->state_dir, "dmsgd-state");
}

int config_health_address(const struct dmsgd_config *cfg, char *out, size_t cap)
{
    char host[CONFIG_ADDR_MAX + 1];
    uint16_t port;
    bool v6;

    if (cfg->health_endpoint_address[0] != '\0') {
        snprintf(out, cap, "%s", cfg->health_endpoint_address);
        return 0;
    }
    if (config_split_address(cfg->local_address, host, sizeof host, &port) != 0 || port == 0 ||
        port == 65535)
        return DMSG_EINVAL;
    v6 = strchr(host, ':') != NULL;
    snprintf(out, cap, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port + 1);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Writing */

static int add_limits(json_t *root, const struct config_limits *l)
{
    json_t *obj = json_object();

    if (obj == NULL)
        return -1;
    for (size_t i = 0; i < sizeof limit_defs / sizeof limit_defs[0]; i++) {
        uint32_t val = *(const uint32_t *)((const char *)l + limit_defs[i].offset);
        json_object_set_new(obj, limit_defs[i].name, json_integer(val));
    }
    json_object_set_new(obj, "accept_proxy_header", json_boolean(l->accept_proxy_header));
    return json_object_set_new(root, "limits", obj);
}

static int add_peers(json_t *root, const struct dmsgd_config *cfg)
{
    json_t *arr = json_array();

    if (arr == NULL)
        return -1;
    for (size_t i = 0; i < cfg->n_peers; i++) {
        char hex[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&cfg->peers[i].public_key, hex);
        json_array_append_new(arr, json_pack("{s:s, s:s}", "public_key", hex, "address",
                                             cfg->peers[i].address));
    }
    return json_object_set_new(root, "peers", arr);
}

char *config_to_json(const struct dmsgd_config *cfg)
{
    json_t *root = json_object();
    char pk_hex[DMSG_PK_HEX_LEN + 1] = "";
    char sk_hex[DMSG_SK_HEX_LEN + 1] = "";
    char *text;

    if (root == NULL)
        return NULL;
    if (cfg->has_keys) {
        dmsg_pk_to_hex(&cfg->public_key, pk_hex);
        dmsg_sk_to_hex(&cfg->secret_key, sk_hex);
        json_object_set_new(root, "public_key", json_string(pk_hex));
        json_object_set_new(root, "secret_key", json_string(sk_hex));
    }
    json_object_set_new(root, "discovery", json_string(cfg->discovery));
    json_object_set_new(root, "public_address", json_string(cfg->public_address));
    json_object_set_new(root, "local_address", json_string(cfg->local_address));
    json_object_set_new(root, "health_endpoint_address",
                        json_string(cfg->health_endpoint_address));
    json_object_set_new(root, "log_level", json_string(log_level_name(cfg->log_level)));
    json_object_set_new(root, "max_sessions", json_integer(cfg->max_sessions));
    json_object_set_new(root, "update_interval", json_integer((json_int_t)cfg->update_interval_ns));
    json_object_set_new(root, "state_dir", json_string(cfg->state_dir));
    json_object_set_new(root, "embedded_discovery_address",
                        json_string(cfg->embedded_discovery_address));
    json_object_set_new(root, "admin_socket", json_string(cfg->admin_socket));
    json_object_set_new(root, "admin_address", json_string(cfg->admin_address));
    json_object_set_new(root, "admin_allow_remote", json_boolean(cfg->admin_allow_remote));
    add_peers(root, cfg);
    json_object_set_new(root, "enable_route_setup", json_boolean(cfg->enable_route_setup));
    json_object_set_new(root, "accept_discovered_peers",
                        json_boolean(cfg->accept_discovered_peers));
    add_limits(root, &cfg->limits);
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    dmsg_wipe(sk_hex, sizeof sk_hex);
    return text;
}

/* ---------------------------------------------------------------------------------------------
 * Reload */

static void note_change(char *changed, size_t cap, const char *key)
{
    size_t n = strlen(changed);

    snprintf(changed + n, cap - n, "%s%s", n > 0 ? "," : "", key);
}

void config_apply_reload(struct dmsgd_config *cur, const struct dmsgd_config *next,
                         char *changed, size_t cap)
{
    changed[0] = '\0';
#define DIFF_STR(field)                                                                        \
    if (strcmp(cur->field, next->field) != 0)                                                  \
        note_change(changed, cap, #field);
#define DIFF_VAL(field)                                                                        \
    if (cur->field != next->field)                                                             \
        note_change(changed, cap, #field);
    if (cur->has_keys != next->has_keys || !dmsg_pk_equal(&cur->public_key, &next->public_key))
        note_change(changed, cap, "public_key");
    DIFF_STR(discovery)
    DIFF_STR(public_address)
    DIFF_STR(local_address)
    DIFF_STR(health_endpoint_address)
    DIFF_VAL(max_sessions)
    DIFF_VAL(update_interval_ns)
    DIFF_STR(state_dir)
    DIFF_STR(embedded_discovery_address)
    DIFF_STR(admin_socket)
    DIFF_STR(admin_address)
    DIFF_VAL(admin_allow_remote)
    DIFF_VAL(enable_route_setup)
    DIFF_VAL(accept_discovered_peers)
#undef DIFF_STR
#undef DIFF_VAL
    if (cur->n_peers != next->n_peers) {
        note_change(changed, cap, "peers");
    } else {
        for (size_t i = 0; i < cur->n_peers; i++) {
            if (!dmsg_pk_equal(&cur->peers[i].public_key, &next->peers[i].public_key) ||
                strcmp(cur->peers[i].address, next->peers[i].address) != 0) {
                note_change(changed, cap, "peers");
                break;
            }
        }
    }
    cur->log_level = next->log_level;
    cur->limits = next->limits;
}
