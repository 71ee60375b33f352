/* The configuration file (daemon/config.c), the key file (daemon/keyfile.c), host:port text
 * (daemon/netaddr.c) and the session-table hash map (daemon/keymap.c). */
#define _XOPEN_SOURCE 700 /* nftw */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "dmsg/cipher.h"
#include "dmsg/error.h"
#include "keyfile.h"
#include "keymap.h"
#include "netaddr.h"
#include "vectors.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers */

struct warnings {
    size_t count;
    char keys[16][128];
};

static void collect_warning(void *user, const char *key, const char *message)
{
    struct warnings *w = user;

    cr_assert_neq(message[0], '\0');
    if (w->count < 16)
        snprintf(w->keys[w->count], sizeof w->keys[0], "%s", key);
    w->count++;
}

static bool warned_about(const struct warnings *w, const char *key)
{
    for (size_t i = 0; i < w->count && i < 16; i++) {
        if (strcmp(w->keys[i], key) == 0)
            return true;
    }
    return false;
}

static int parse(struct dmsgd_config *cfg, const char *text, struct warnings *w,
                 struct config_error *err)
{
    config_defaults(cfg);
    return config_parse(cfg, text, strlen(text), "test.json", collect_warning, w, err);
}

static void setup(void)
{
    cr_assert_eq(dmsg_cipher_init(), 0);
}

TestSuite(config, .init = setup);

/* The server key pair of keys.json. */
static void server_keys(char pk[DMSG_PK_HEX_LEN + 1], char sk[DMSG_SK_HEX_LEN + 1])
{
    json_t *v = vec_load("keys.json");
    json_t *pairs = vec_get(v, "keypairs");
    size_t i;
    json_t *p;

    json_array_foreach(pairs, i, p) {
        if (strcmp(json_string_value(json_object_get(p, "label")), "server") == 0) {
            snprintf(pk, DMSG_PK_HEX_LEN + 1, "%s", json_string_value(json_object_get(p, "public_key")));
            snprintf(sk, DMSG_SK_HEX_LEN + 1, "%s", json_string_value(json_object_get(p, "secret_key")));
        }
    }
    json_decref(v);
    cr_assert_eq(strlen(pk), DMSG_PK_HEX_LEN);
}

/* ---------------------------------------------------------------------------------------------
 * Reference configs accepted unchanged */

/* What the reference's `dmsg-server config gen` writes (spec dmsg-wire.md §8.1), for every key
 * pair of the vectors. */
Test(config, reference_config_gen_output_is_accepted_for_every_vector_key)
{
    json_t *v = vec_load("keys.json");
    json_t *pairs = vec_get(v, "keypairs");
    size_t i;
    json_t *p;

    cr_assert(json_array_size(pairs) > 0);
    json_array_foreach(pairs, i, p) {
        const char *pk = json_string_value(json_object_get(p, "public_key"));
        const char *sk = json_string_value(json_object_get(p, "secret_key"));
        char text[1024];
        struct dmsgd_config cfg;
        struct config_error err;
        struct warnings w = {0};
        char hex[DMSG_PK_HEX_LEN + 1];

        snprintf(text, sizeof text,
                 "{\n\t\"public_key\": \"%s\",\n\t\"secret_key\": \"%s\",\n"
                 "\t\"discovery\": \"http://dmsgd.skywire.skycoin.com\",\n"
                 "\t\"public_address\": \"127.0.0.1:8081\",\n\t\"local_address\": \":8081\",\n"
                 "\t\"health_endpoint_address\": \":8082\",\n\t\"log_level\": \"info\",\n"
                 "\t\"update_interval\": 0,\n\t\"max_sessions\": 2048\n}",
                 pk, sk);
        cr_assert_eq(parse(&cfg, text, &w, &err), 0, "%s", err.message);
        cr_assert_eq(w.count, 0);
        cr_assert(cfg.has_keys);
        dmsg_pk_to_hex(&cfg.public_key, hex);
        cr_assert_str_eq(hex, pk);
        cr_assert_str_eq(cfg.discovery, "http://dmsgd.skywire.skycoin.com");
        cr_assert_str_eq(cfg.public_address, "127.0.0.1:8081");
        cr_assert_str_eq(cfg.local_address, ":8081");
        cr_assert_str_eq(cfg.health_endpoint_address, ":8082");
        cr_assert_eq(cfg.log_level, LOG_LEVEL_INFO);
        /* update_interval 0 means one minute in the reference. */
        cr_assert_eq(cfg.update_interval_ns, 60000000000ULL);
        cr_assert_eq(cfg.max_sessions, 2048);
    }
    json_decref(v);
}

/* A newer reference server config: peers, route setup, DHT keys, "discoveries". */
Test(config, newer_reference_config_is_accepted_with_warnings)
{
    char pk[DMSG_PK_HEX_LEN + 1], sk[DMSG_SK_HEX_LEN + 1];
    char text[2048];
    struct dmsgd_config cfg;
    struct config_error err;
    struct warnings w = {0};
    json_t *v = vec_load("keys.json");
    const char *peer_pk = json_string_value(vec_get(v, "keypairs.1.public_key"));

    server_keys(pk, sk);
    cr_assert_str_neq(peer_pk, pk);
    snprintf(text, sizeof text,
             "{\"public_key\":\"%s\",\"secret_key\":\"%s\","
             "\"discoveries\":[{\"url\":\"http://disc.example:9090\","
             "\"advertised_address\":\"192.0.2.10:30086\"},{\"url\":\"http://other\"}],"
             "\"local_address\":\":8080\",\"health_endpoint_address\":\":8082\","
             "\"log_level\":\"debug\",\"update_interval\":30000000000,\"max_sessions\":100,"
             "\"peers\":[{\"public_key\":\"%s\",\"address\":\"peer.example:8081\"}],"
             "\"enable_route_setup\":true,\"enable_dht\":true,\"redis_addr\":\"redis:6379\","
             "\"persist_path\":\"/x\",\"max_peer_links\":512}",
             pk, sk, peer_pk);
    cr_assert_eq(parse(&cfg, text, &w, &err), 0, "%s", err.message);
    cr_assert_str_eq(cfg.discovery, "http://disc.example:9090");
    cr_assert_str_eq(cfg.public_address, "192.0.2.10:30086");
    cr_assert_eq(cfg.log_level, LOG_LEVEL_DEBUG);
    cr_assert_eq(cfg.update_interval_ns, 30000000000ULL);
    cr_assert_eq(cfg.max_sessions, 100);
    cr_assert_eq(cfg.n_peers, 1);
    cr_assert_str_eq(cfg.peers[0].address, "peer.example:8081");
    cr_assert(cfg.enable_route_setup);
    cr_assert_not(cfg.accept_discovered_peers);
    cr_assert(warned_about(&w, "enable_dht"));
    cr_assert(warned_about(&w, "redis_addr"));
    cr_assert(warned_about(&w, "persist_path"));
    cr_assert(warned_about(&w, "max_peer_links"));
    cr_assert(warned_about(&w, "discoveries"), "only the first discovery is used");
    cr_assert_eq(w.count, 5);
    json_decref(v);
}

Test(config, unknown_keys_are_warned_not_fatal)
{
    struct dmsgd_config cfg;
    struct config_error err;
    struct warnings w = {0};

    cr_assert_eq(parse(&cfg, "{\"future_key\": 1, \"limits\": {\"future_limit\": 2},"
                             " \"log_level\": \"warn\"}",
                       &w, &err),
                 0, "%s", err.message);
    cr_assert_eq(w.count, 2);
    cr_assert(warned_about(&w, "future_key"));
    cr_assert(warned_about(&w, "limits.future_limit"));
    cr_assert_eq(cfg.log_level, LOG_LEVEL_WARN);
}

Test(config, keys_match_case_insensitively_as_go_does)
{
    struct dmsgd_config cfg;
    struct config_error err;
    struct warnings w = {0};

    cr_assert_eq(parse(&cfg, "{\"Max_Sessions\": 7, \"LOG_LEVEL\": \"error\"}", &w, &err), 0);
    cr_assert_eq(cfg.max_sessions, 7);
    cr_assert_eq(cfg.log_level, LOG_LEVEL_ERROR);
    cr_assert_eq(w.count, 0);
}

Test(config, null_values_keep_the_defaults)
{
    struct dmsgd_config cfg;
    struct config_error err;

    cr_assert_eq(parse(&cfg, "{\"discovery\": null, \"max_sessions\": null, \"peers\": null,"
                             " \"public_key\": \"\", \"secret_key\": \"\"}",
                       NULL, &err),
                 0, "%s", err.message);
    cr_assert_str_eq(cfg.discovery, "");
    cr_assert_eq(cfg.max_sessions, CONFIG_DEFAULT_MAX_SESSIONS);
    cr_assert_not(cfg.has_keys);
}

/* ---------------------------------------------------------------------------------------------
 * Defaults */

Test(config, defaults_are_the_embedded_ones)
{
    struct dmsgd_config cfg;
    struct config_error err;
    char health[64];

    cr_assert_eq(parse(&cfg, "{}", NULL, &err), 0);
    cr_assert_not(cfg.has_keys);
    cr_assert_str_eq(cfg.discovery, "");                       /* embedded discovery */
    cr_assert_str_eq(cfg.local_address, "127.0.0.1:8081");
    cr_assert_str_eq(cfg.embedded_discovery_address, "127.0.0.1:9090");
    cr_assert_str_eq(cfg.public_address, "");
    cr_assert_str_eq(cfg.state_dir, "");
    cr_assert_str_eq(cfg.admin_socket, "");
    cr_assert_str_eq(cfg.admin_address, "");
    cr_assert_eq(cfg.max_sessions, 2048);
    cr_assert_eq(cfg.update_interval_ns, 60000000000ULL);
    cr_assert_eq(cfg.log_level, LOG_LEVEL_INFO);
    cr_assert_eq(cfg.n_peers, 0);
    cr_assert_not(cfg.enable_route_setup);
    cr_assert_not(cfg.accept_discovered_peers);
    /* threats.md §7 and upstream-mesh.md §7 */
    cr_assert_eq(cfg.limits.handshake_timeout_ms, 5000);
    cr_assert_eq(cfg.limits.max_pending_handshakes, 1024);
    cr_assert_eq(cfg.limits.max_pending_per_ip, 16);
    cr_assert_eq(cfg.limits.max_sessions_per_ip, 64);
    cr_assert_eq(cfg.limits.max_streams_per_session, 2048);
    cr_assert_eq(cfg.limits.max_pending_requests, 256);
    cr_assert_eq(cfg.limits.stream_requests_per_second, 100);
    cr_assert_eq(cfg.limits.stream_requests_burst, 300);
    cr_assert_eq(cfg.limits.request_timeout_ms, 10000);
    cr_assert_eq(cfg.limits.response_timeout_ms, 10000);
    cr_assert_eq(cfg.limits.keepalive_interval_ms, 30000);
    cr_assert_eq(cfg.limits.write_timeout_ms, 10000);
    cr_assert_not(cfg.limits.accept_proxy_header);
    /* The reference's health address: local port + 1. */
    cr_assert_eq(config_health_address(&cfg, health, sizeof health), 0);
    cr_assert_str_eq(health, "127.0.0.1:8082");
}

Test(config, max_sessions_zero_and_update_interval_zero_mean_default)
{
    struct dmsgd_config cfg;
    struct config_error err;

    cr_assert_eq(parse(&cfg, "{\"max_sessions\": 0, \"update_interval\": 0}", NULL, &err), 0);
    cr_assert_eq(cfg.max_sessions, CONFIG_DEFAULT_MAX_SESSIONS);
    cr_assert_eq(cfg.update_interval_ns, CONFIG_DEFAULT_UPDATE_INTERVAL_NS);
}

Test(config, update_interval_accepts_go_duration_text)
{
    static const struct {
        const char *text;
        uint64_t ns;
    } cases[] = {{"\"1m\"", 60000000000ULL},       {"\"1m30s\"", 90000000000ULL},
                 {"\"2h\"", 7200000000000ULL},     {"\"1500ms\"", 1500000000ULL},
                 {"1e10", 10000000000ULL},         {"\"0\"", 60000000000ULL}};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dmsgd_config cfg;
        struct config_error err;
        char text[128];

        snprintf(text, sizeof text, "{\"update_interval\": %s}", cases[i].text);
        cr_assert_eq(parse(&cfg, text, NULL, &err), 0, "%s: %s", text, err.message);
        cr_assert_eq(cfg.update_interval_ns, cases[i].ns, "%s", text);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Bad values: rejected with the key named */

Test(config, bad_values_are_rejected_naming_the_key)
{
    static const struct {
        const char *text;
        const char *key;
    } cases[] = {
        {"{\"max_sessions\": -1}", "max_sessions"},
        {"{\"max_sessions\": \"many\"}", "max_sessions"},
        {"{\"max_sessions\": 1.5}", "max_sessions"},
        {"{\"max_sessions\": 99999999999}", "max_sessions"},
        /* Reals beyond int64 (fuzz findings): refused, never converted. */
        {"{\"max_sessions\": 2e58}", "max_sessions"},
        {"{\"update_interval\": 77777777777055555440.0}", "update_interval"},
        {"{\"update_interval\": 9223372036854775808.0}", "update_interval"},
        {"{\"limits\": {\"handshake_timeout_ms\": -1e300}}", "limits.handshake_timeout_ms"},
        {"{\"update_interval\": -5}", "update_interval"},
        {"{\"update_interval\": \"soon\"}", "update_interval"},
        {"{\"update_interval\": 5}", "update_interval"},
        {"{\"update_interval\": true}", "update_interval"},
        {"{\"local_address\": \"nope\"}", "local_address"},
        {"{\"local_address\": \"example.com:80\"}", "local_address"},
        {"{\"local_address\": \"127.0.0.1:65536\"}", "local_address"},
        {"{\"local_address\": \"::1:80\"}", "local_address"},
        {"{\"local_address\": 8081}", "local_address"},
        {"{\"public_address\": \"host:0\"}", "public_address"},
        {"{\"public_address\": \"bad host:1\"}", "public_address"},
        {"{\"health_endpoint_address\": \"x\"}", "health_endpoint_address"},
        {"{\"embedded_discovery_address\": \"9090\"}", "embedded_discovery_address"},
        {"{\"admin_address\": \"0.0.0.0:8000\"}", "admin_address"},
        {"{\"admin_address\": \":8000\"}", "admin_address"},
        {"{\"log_level\": \"loud\"}", "log_level"},
        {"{\"log_level\": 3}", "log_level"},
        {"{\"discovery\": \"ftp://disc\"}", "discovery"},
        {"{\"discoveries\": [{\"url\": \"disc:9090\"}]}", "discoveries[0].url"},
        {"{\"discoveries\": {}}", "discoveries"},
        {"{\"enable_route_setup\": \"yes\"}", "enable_route_setup"},
        {"{\"accept_discovered_peers\": 1}", "accept_discovered_peers"},
        {"{\"state_dir\": 5}", "state_dir"},
        {"{\"peers\": {}}", "peers"},
        {"{\"peers\": [5]}", "peers[0]"},
        {"{\"peers\": [{\"address\": \"a:1\"}]}", "peers[0]"},
        {"{\"peers\": [{\"public_key\": \"zz\", \"address\": \"a:1\"}]}", "peers[0].public_key"},
        {"{\"limits\": []}", "limits"},
        {"{\"limits\": {\"handshake_timeout_ms\": 0}}", "limits.handshake_timeout_ms"},
        {"{\"limits\": {\"max_object_bytes\": 70000}}", "limits.max_object_bytes"},
        {"{\"limits\": {\"accept_proxy_header\": \"no\"}}", "limits.accept_proxy_header"},
        {"{\"limits\": {\"stream_requests_per_second\": 10, \"stream_requests_burst\": 5}}",
         "limits.stream_requests_burst"},
        {"{\"max_sessions\": 100, \"limits\": {\"max_sessions_hard\": 50}}",
         "limits.max_sessions_hard"},
        {"{\"public_key\": \"026f4f524720230f86b3047e69fad7b48e09da1119588b051d6055a83d83a31ea9\"}",
         "secret_key"},
        {"{\"secret_key\": \"xyz\"}", "secret_key"},
        {"{\"public_key\": 5}", "public_key"},
        {"[1, 2]", ""},
        {"{\"max_sessions\": 1,}", ""},
        {"", ""},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct dmsgd_config cfg;
        struct config_error err;

        cr_assert_eq(parse(&cfg, cases[i].text, NULL, &err), DMSG_EINVAL, "accepted: %s",
                     cases[i].text);
        cr_assert_str_eq(err.key, cases[i].key, "%s: wrong key in \"%s\"", cases[i].text,
                         err.message);
        cr_assert(strstr(err.message, "test.json") != NULL, "%s", err.message);
        if (cases[i].key[0] != '\0')
            cr_assert(strstr(err.message, cases[i].key) != NULL, "%s", err.message);
    }
}

/* The Go reference rejects these keys (keys.json: invalid); so do we, naming the key and never
 * echoing a secret. */
Test(config, invalid_vector_keys_are_rejected)
{
    json_t *v = vec_load("keys.json");
    json_t *invalid = vec_get(v, "invalid");
    size_t i;
    json_t *c;

    cr_assert(json_array_size(invalid) > 0);
    json_array_foreach(invalid, i, c) {
        const char *kind = json_string_value(json_object_get(c, "kind"));
        const char *hex = json_string_value(json_object_get(c, "hex"));
        bool secret = strcmp(kind, "secret_key") == 0;
        char text[512];
        struct dmsgd_config cfg;
        struct config_error err;

        if (secret) {
            snprintf(text, sizeof text, "{\"secret_key\": \"%s\"}", hex);
        } else {
            char pk[DMSG_PK_HEX_LEN + 1], sk[DMSG_SK_HEX_LEN + 1];
            server_keys(pk, sk);
            snprintf(text, sizeof text, "{\"secret_key\": \"%s\", \"public_key\": \"%s\"}", sk,
                     hex);
        }
        cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL, "accepted %s %s", kind, hex);
        cr_assert_str_eq(err.key, kind, "%s", err.message);
        if (secret)
            cr_assert_null(strstr(err.message, hex), "secret echoed: %s", err.message);
        /* As a peer key the invalid public keys are refused too. */
        if (!secret) {
            snprintf(text, sizeof text, "{\"peers\": [{\"public_key\": \"%s\", \"address\": "
                                        "\"a:1\"}]}", hex);
            cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL, "peer %s", hex);
            cr_assert_str_eq(err.key, "peers[0].public_key", "%s", err.message);
        }
    }
    json_decref(v);
}

Test(config, public_key_must_belong_to_secret_key)
{
    json_t *v = vec_load("keys.json");
    const char *sk0 = json_string_value(vec_get(v, "keypairs.0.secret_key"));
    const char *pk1 = json_string_value(vec_get(v, "keypairs.1.public_key"));
    char text[512];
    struct dmsgd_config cfg;
    struct config_error err;

    snprintf(text, sizeof text, "{\"secret_key\": \"%s\", \"public_key\": \"%s\"}", sk0, pk1);
    cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL);
    cr_assert_str_eq(err.key, "public_key");
    cr_assert_null(strstr(err.message, sk0));
    /* The secret key alone is enough: the public key is derived. */
    snprintf(text, sizeof text, "{\"secret_key\": \"%s\"}", sk0);
    cr_assert_eq(parse(&cfg, text, NULL, &err), 0, "%s", err.message);
    cr_assert(cfg.has_keys);
    {
        char hex[DMSG_PK_HEX_LEN + 1];
        dmsg_pk_to_hex(&cfg.public_key, hex);
        cr_assert_str_eq(hex, json_string_value(vec_get(v, "keypairs.0.public_key")));
    }
    json_decref(v);
}

Test(config, peers_duplicate_or_own_key_are_rejected)
{
    json_t *v = vec_load("keys.json");
    const char *pk0 = json_string_value(vec_get(v, "keypairs.0.public_key"));
    const char *sk0 = json_string_value(vec_get(v, "keypairs.0.secret_key"));
    const char *pk1 = json_string_value(vec_get(v, "keypairs.1.public_key"));
    char text[1024];
    struct dmsgd_config cfg;
    struct config_error err;

    snprintf(text, sizeof text,
             "{\"peers\": [{\"public_key\": \"%s\", \"address\": \"a:1\"},"
             " {\"public_key\": \"%s\", \"address\": \"b:2\"}]}",
             pk1, pk1);
    cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL);
    cr_assert_str_eq(err.key, "peers[1]", "%s", err.message);

    snprintf(text, sizeof text,
             "{\"secret_key\": \"%s\", \"peers\": [{\"public_key\": \"%s\", \"address\": \"a:1\"}]}",
             sk0, pk0);
    cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL);
    cr_assert_str_eq(err.key, "peers[0].public_key", "%s", err.message);
    json_decref(v);
}

Test(config, too_many_peers_are_rejected)
{
    json_t *v = vec_load("keys.json");
    const char *pk = json_string_value(vec_get(v, "keypairs.0.public_key"));
    size_t cap = 128 * (CONFIG_MAX_PEERS + 2);
    char *text = malloc(cap);
    size_t n = 0;
    struct dmsgd_config cfg;
    struct config_error err;

    n += (size_t)snprintf(text + n, cap - n, "{\"peers\": [");
    for (int i = 0; i <= CONFIG_MAX_PEERS; i++)
        n += (size_t)snprintf(text + n, cap - n, "%s{\"public_key\": \"%s\", \"address\": \"a:1\"}",
                              i ? "," : "", pk);
    snprintf(text + n, cap - n, "]}");
    cr_assert_eq(parse(&cfg, text, NULL, &err), DMSG_EINVAL);
    cr_assert_str_eq(err.key, "peers");
    free(text);
    json_decref(v);
}

Test(config, limits_are_read)
{
    struct dmsgd_config cfg;
    struct config_error err;

    cr_assert_eq(parse(&cfg, "{\"limits\": {\"handshake_timeout_ms\": 2000, "
                             "\"max_pending_per_ip\": 4, \"accept_proxy_header\": true, "
                             "\"max_streams_per_session\": 10}}",
                       NULL, &err),
                 0, "%s", err.message);
    cr_assert_eq(cfg.limits.handshake_timeout_ms, 2000);
    cr_assert_eq(cfg.limits.max_pending_per_ip, 4);
    cr_assert_eq(cfg.limits.max_streams_per_session, 10);
    cr_assert(cfg.limits.accept_proxy_header);
    cr_assert_eq(cfg.limits.max_pending_handshakes, 1024, "others keep their defaults");
}

/* ---------------------------------------------------------------------------------------------
 * gen-config output, files, state directory, reload */

Test(config, written_config_parses_back_to_the_same_values)
{
    json_t *v = vec_load("keys.json");
    struct dmsgd_config a, b;
    struct config_error err;
    struct warnings w = {0};
    char *text;

    config_defaults(&a);
    cr_assert_eq(dmsg_sk_from_hex(&a.secret_key, json_string_value(vec_get(v, "keypairs.0.secret_key")), 64), 0);
    cr_assert_eq(dmsg_pk_from_sk(&a.public_key, &a.secret_key), 0);
    a.has_keys = true;
    snprintf(a.discovery, sizeof a.discovery, "http://d.example");
    snprintf(a.public_address, sizeof a.public_address, "203.0.113.1:8081");
    a.n_peers = 1;
    cr_assert_eq(dmsg_pk_from_hex(&a.peers[0].public_key,
                                  json_string_value(vec_get(v, "keypairs.1.public_key")), 66), 0);
    snprintf(a.peers[0].address, sizeof a.peers[0].address, "[2001:db8::1]:8081");
    a.limits.max_pending_per_ip = 3;
    a.log_level = LOG_LEVEL_TRACE;
    text = config_to_json(&a);
    cr_assert_not_null(text);
    cr_assert_eq(parse(&b, text, &w, &err), 0, "%s\n%s", err.message, text);
    cr_assert_eq(w.count, 0, "gen-config writes only known keys");
    cr_assert(b.has_keys);
    cr_assert(dmsg_pk_equal(&a.public_key, &b.public_key));
    cr_assert_eq(memcmp(a.secret_key.b, b.secret_key.b, DMSG_SK_LEN), 0);
    cr_assert_str_eq(b.discovery, a.discovery);
    cr_assert_str_eq(b.public_address, a.public_address);
    cr_assert_str_eq(b.local_address, a.local_address);
    cr_assert_eq(b.n_peers, 1);
    cr_assert(dmsg_pk_equal(&a.peers[0].public_key, &b.peers[0].public_key));
    cr_assert_str_eq(b.peers[0].address, a.peers[0].address);
    cr_assert_eq(memcmp(&a.limits, &b.limits, sizeof a.limits), 0);
    cr_assert_eq(b.log_level, LOG_LEVEL_TRACE);
    {
        char changed[256];
        config_apply_reload(&a, &b, changed, sizeof changed);
        cr_assert_str_eq(changed, "", "identical configs need no restart");
    }
    free(text);
    json_decref(v);
}

static char *make_temp_dir(void)
{
    char tmpl[] = "/tmp/dmsgd-test-XXXXXX";
    char *dir = mkdtemp(tmpl);

    cr_assert_not_null(dir);
    return strdup(dir);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(char *dir)
{
    nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(config, file_relative_paths_follow_the_file)
{
    char *dir = make_temp_dir();
    char path[512];
    struct dmsgd_config cfg;
    struct config_error err;
    char want[600];

    snprintf(path, sizeof path, "%s/dmsgd.json", dir);
    write_text(path, "{\"state_dir\": \"state\", \"admin_socket\": \"/run/x.sock\"}");
    config_defaults(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, NULL, NULL, &err), 0, "%s", err.message);
    snprintf(want, sizeof want, "%s/state", dir);
    cr_assert_str_eq(cfg.state_dir, want);
    cr_assert_str_eq(cfg.admin_socket, "/run/x.sock");

    snprintf(path, sizeof path, "%s/missing.json", dir);
    cr_assert_eq(config_load_file(&cfg, path, NULL, NULL, &err), DMSG_EIO);
    cr_assert(strstr(err.message, "missing.json") != NULL);
    remove_tree(dir);
}

static const char *fake_env_values[4][2];

static const char *fake_env(const char *name)
{
    for (size_t i = 0; i < 4; i++) {
        if (fake_env_values[i][0] != NULL && strcmp(fake_env_values[i][0], name) == 0)
            return fake_env_values[i][1];
    }
    return NULL;
}

Test(config, state_dir_resolution_order)
{
    struct dmsgd_config cfg;

    memset(fake_env_values, 0, sizeof fake_env_values);
    fake_env_values[0][0] = "STATE_DIRECTORY";
    fake_env_values[0][1] = "/var/lib/dmsgd:/var/lib/other";
    fake_env_values[1][0] = "HOME";
    fake_env_values[1][1] = "/home/u";
    config_defaults(&cfg);
    config_resolve_state_dir(&cfg, fake_env, false);
    cr_assert_str_eq(cfg.state_dir, "/var/lib/dmsgd", "systemd's StateDirectory first");

    fake_env_values[0][0] = NULL;
    config_defaults(&cfg);
    config_resolve_state_dir(&cfg, fake_env, true);
    cr_assert_str_eq(cfg.state_dir, "/var/lib/dmsgd");

    config_defaults(&cfg);
    config_resolve_state_dir(&cfg, fake_env, false);
    cr_assert_str_eq(cfg.state_dir, "/home/u/.local/state/dmsgd");

    fake_env_values[2][0] = "XDG_STATE_HOME";
    fake_env_values[2][1] = "/xdg";
    config_defaults(&cfg);
    config_resolve_state_dir(&cfg, fake_env, false);
    cr_assert_str_eq(cfg.state_dir, "/xdg/dmsgd");

    memset(fake_env_values, 0, sizeof fake_env_values);
    config_defaults(&cfg);
    config_resolve_state_dir(&cfg, fake_env, false);
    cr_assert_str_eq(cfg.state_dir, "dmsgd-state");

    /* A configured state_dir is never replaced. */
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "/srv/dmsgd");
    config_resolve_state_dir(&cfg, fake_env, true);
    cr_assert_str_eq(cfg.state_dir, "/srv/dmsgd");
}

Test(config, reload_applies_level_and_limits_and_names_the_rest)
{
    struct dmsgd_config cur, next;
    char changed[256];

    config_defaults(&cur);
    config_defaults(&next);
    next.log_level = LOG_LEVEL_DEBUG;
    next.limits.max_pending_per_ip = 2;
    snprintf(next.local_address, sizeof next.local_address, "127.0.0.1:9999");
    next.max_sessions = 10;
    config_apply_reload(&cur, &next, changed, sizeof changed);
    cr_assert_eq(cur.log_level, LOG_LEVEL_DEBUG);
    cr_assert_eq(cur.limits.max_pending_per_ip, 2);
    cr_assert_str_eq(cur.local_address, "127.0.0.1:8081", "kept until a restart");
    cr_assert_str_eq(changed, "local_address,max_sessions");
}

Test(config, health_address_follows_the_reference)
{
    struct dmsgd_config cfg;
    char out[64];

    config_defaults(&cfg);
    snprintf(cfg.local_address, sizeof cfg.local_address, ":8081");
    cr_assert_eq(config_health_address(&cfg, out, sizeof out), 0);
    cr_assert_str_eq(out, ":8082");
    snprintf(cfg.local_address, sizeof cfg.local_address, "[::1]:9000");
    cr_assert_eq(config_health_address(&cfg, out, sizeof out), 0);
    cr_assert_str_eq(out, "[::1]:9001");
    snprintf(cfg.health_endpoint_address, sizeof cfg.health_endpoint_address, "127.0.0.1:1");
    cr_assert_eq(config_health_address(&cfg, out, sizeof out), 0);
    cr_assert_str_eq(out, "127.0.0.1:1");
}

/* ---------------------------------------------------------------------------------------------
 * Key file */

Test(config, keyfile_is_generated_once_and_reused)
{
    char *dir = make_temp_dir();
    char sub[600], path[700], err[512];
    dmsg_rng rng = dmsg_rng_system();
    dmsg_pk pk1, pk2, derived;
    dmsg_sk sk1, sk2;
    bool created;
    struct stat st;

    snprintf(sub, sizeof sub, "%s/a/b", dir);
    cr_assert_eq(state_dir_ensure(sub, err, sizeof err), 0, "%s", err);
    cr_assert_eq(keyfile_load_or_create(sub, &rng, &pk1, &sk1, &created, err, sizeof err), 0, "%s",
                 err);
    cr_assert(created);
    cr_assert_eq(dmsg_pk_from_sk(&derived, &sk1), 0);
    cr_assert(dmsg_pk_equal(&derived, &pk1));
    snprintf(path, sizeof path, "%s/%s", sub, KEYFILE_NAME);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "the secret key is owner-only");
    cr_assert_eq(keyfile_load_or_create(sub, &rng, &pk2, &sk2, &created, err, sizeof err), 0, "%s",
                 err);
    cr_assert_not(created);
    cr_assert(dmsg_pk_equal(&pk1, &pk2));
    cr_assert_eq(memcmp(sk1.b, sk2.b, DMSG_SK_LEN), 0);
    remove_tree(dir);
}

Test(config, keyfile_with_bad_content_is_refused_not_replaced)
{
    json_t *v = vec_load("keys.json");
    char *dir = make_temp_dir();
    char path[600], text[512], err[512];
    dmsg_rng rng = dmsg_rng_system();
    dmsg_pk pk;
    dmsg_sk sk;
    bool created;

    snprintf(path, sizeof path, "%s/%s", dir, KEYFILE_NAME);
    write_text(path, "{not json");
    cr_assert_eq(keyfile_load_or_create(dir, &rng, &pk, &sk, &created, err, sizeof err), DMSG_EIO);
    cr_assert(strstr(err, KEYFILE_NAME) != NULL, "%s", err);

    snprintf(text, sizeof text, "{\"public_key\": \"%s\", \"secret_key\": \"%s\"}",
             json_string_value(vec_get(v, "keypairs.1.public_key")),
             json_string_value(vec_get(v, "keypairs.0.secret_key")));
    write_text(path, text);
    cr_assert_eq(keyfile_load_or_create(dir, &rng, &pk, &sk, &created, err, sizeof err), DMSG_EKEY);
    cr_assert_not(created);

    write_text(path, "{\"public_key\": \"02\", \"secret_key\": 5}");
    cr_assert_eq(keyfile_load_or_create(dir, &rng, &pk, &sk, &created, err, sizeof err), DMSG_EKEY);
    remove_tree(dir);
    json_decref(v);
}

Test(config, state_dir_that_is_a_file_is_refused)
{
    char *dir = make_temp_dir();
    char path[600], err[512];

    snprintf(path, sizeof path, "%s/file", dir);
    write_text(path, "x");
    cr_assert_eq(state_dir_ensure(path, err, sizeof err), DMSG_EIO);
    cr_assert(strstr(err, "file") != NULL);
    remove_tree(dir);
}

/* ---------------------------------------------------------------------------------------------
 * host:port */

Test(netaddr, split_and_listen_forms)
{
    static const struct {
        const char *text;
        int rc;
        const char *host;
        uint16_t port;
    } cases[] = {
        {":8081", 0, "", 8081},           {"127.0.0.1:8081", 0, "127.0.0.1", 8081},
        {"[::1]:80", 0, "::1", 80},       {"example.com:1", 0, "example.com", 1},
        {"h:0", 0, "h", 0},               {"h:65535", 0, "h", 65535},
        {"h:65536", DMSG_EINVAL, "", 0},  {"h:", DMSG_EINVAL, "", 0},
        {"h", DMSG_EINVAL, "", 0},        {"::1:80", DMSG_EINVAL, "", 0},
        {"[::1]80", DMSG_EINVAL, "", 0},  {"h:-1", DMSG_EINVAL, "", 0},
        {"h:+1", DMSG_EINVAL, "", 0},     {"h:0000080", DMSG_EINVAL, "", 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64] = "";
        uint16_t port = 0;

        cr_assert_eq(netaddr_split(cases[i].text, host, sizeof host, &port), cases[i].rc, "%s",
                     cases[i].text);
        if (cases[i].rc == 0) {
            cr_assert_str_eq(host, cases[i].host);
            cr_assert_eq(port, cases[i].port);
        }
    }
}

Test(netaddr, listen_sockaddr_and_format)
{
    struct sockaddr_storage sa;
    char out[64];
    uint8_t ip[16];

    cr_assert_eq(netaddr_listen_sockaddr(":8081", &sa), 0);
    netaddr_format(&sa, out, sizeof out);
    cr_assert_str_eq(out, "0.0.0.0:8081");
    cr_assert_eq(netaddr_listen_sockaddr("localhost:1", &sa), 0);
    netaddr_format(&sa, out, sizeof out);
    cr_assert_str_eq(out, "127.0.0.1:1");
    cr_assert_eq(netaddr_ip_bytes(&sa, ip), 4);
    cr_assert_eq(ip[0], 127);
    cr_assert_eq(netaddr_listen_sockaddr("[::ffff:10.0.0.1]:2", &sa), 0);
    cr_assert_eq(netaddr_ip_bytes(&sa, ip), 4, "v4-mapped addresses count as IPv4");
    cr_assert_eq(ip[0], 10);
    cr_assert_eq(netaddr_listen_sockaddr("[2001:db8::1]:2", &sa), 0);
    cr_assert_eq(netaddr_ip_bytes(&sa, ip), 16);
    netaddr_format(&sa, out, sizeof out);
    cr_assert_str_eq(out, "[2001:db8::1]:2");
    cr_assert_eq(netaddr_listen_sockaddr("example.com:1", &sa), DMSG_EINVAL);
}

/* ---------------------------------------------------------------------------------------------
 * The session table's hash map */

Test(keymap, put_get_and_owner_only_removal)
{
    struct keymap m;
    dmsg_rng rng = dmsg_rng_system();
    static int values[5000];
    uint8_t key[33];

    cr_assert_eq(dmsg_cipher_init(), 0);
    cr_assert_eq(keymap_init(&m, &rng), 0);
    for (int i = 0; i < 5000; i++) {
        memset(key, 0, sizeof key);
        memcpy(key, &i, sizeof i);
        cr_assert_eq(keymap_put(&m, key, sizeof key, &values[i]), 0);
    }
    cr_assert_eq(m.count, 5000);
    /* Remove every third key, but only through its owner. */
    for (int i = 0; i < 5000; i += 3) {
        memset(key, 0, sizeof key);
        memcpy(key, &i, sizeof i);
        cr_assert_eq(keymap_remove_if(&m, key, sizeof key, &values[(i + 1) % 5000]),
                     DMSG_ENOTFOUND, "a stale owner must not remove a newer entry");
        cr_assert_eq(keymap_remove_if(&m, key, sizeof key, &values[i]), 0);
    }
    for (int i = 0; i < 5000; i++) {
        memset(key, 0, sizeof key);
        memcpy(key, &i, sizeof i);
        if (i % 3 == 0)
            cr_assert_null(keymap_get(&m, key, sizeof key), "%d", i);
        else
            cr_assert_eq(keymap_get(&m, key, sizeof key), &values[i], "%d", i);
    }
    /* Replacing keeps one entry per key. */
    memset(key, 0, sizeof key);
    key[0] = 1;
    cr_assert_eq(keymap_put(&m, key, sizeof key, &values[0]), 0);
    cr_assert_eq(keymap_get(&m, key, sizeof key), &values[0]);
    cr_assert_eq(keymap_put(&m, key, 34, &values[0]), DMSG_EINVAL);
    cr_assert_eq(keymap_put(&m, key, 4, NULL), DMSG_EINVAL);
    /* Keys of different lengths are different keys. */
    cr_assert_null(keymap_get(&m, key, 17));
    keymap_free(&m);
}
