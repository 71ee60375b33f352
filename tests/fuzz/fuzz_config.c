/* libFuzzer harness for the configuration file parser (daemon/config.c) and host:port text
 * (daemon/netaddr.c). Property: whatever parses, written back by config_to_json (what
 * `dmsgd gen-config` prints), parses again to the same configuration. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The daemon's files are not in dmsgcore, which harnesses link: compile them in. */
#include "../../daemon/config.c"
#include "../../daemon/log.c"
#include "../../daemon/netaddr.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore_warning(void *user, const char *key, const char *message)
{
    (void)user;
    if (key == NULL || message == NULL || message[0] == '\0')
        abort();
}

static void check_round_trip(const struct dmsgd_config *a)
{
    struct dmsgd_config b;
    struct config_error err;
    char changed[512];
    char *text = config_to_json(a);

    if (text == NULL)
        abort();
    config_defaults(&b);
    if (config_parse(&b, text, strlen(text), "round-trip", NULL, NULL, &err) != 0)
        abort(); /* gen-config wrote something the parser refuses */
    free(text);
    config_apply_reload(&b, a, changed, sizeof changed);
    if (changed[0] != '\0' || b.log_level != a->log_level ||
        memcmp(&b.limits, &a->limits, sizeof b.limits) != 0 || b.has_keys != a->has_keys ||
        (a->has_keys && memcmp(b.secret_key.b, a->secret_key.b, DMSG_SK_LEN) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    struct dmsgd_config cfg;
    struct config_error err;
    char addr[300];
    char host[256];
    uint16_t port;

    if (!ready) {
        if (dmsg_cipher_init() != 0)
            abort();
        ready = true;
    }
    config_defaults(&cfg);
    if (config_parse(&cfg, (const char *)data, size, "fuzz", ignore_warning, NULL, &err) == 0) {
        check_round_trip(&cfg);
    } else if (err.message[0] == '\0') {
        abort(); /* every refusal says why */
    }
    if (size < sizeof addr) {
        memcpy(addr, data, size);
        addr[size] = '\0';
        if (netaddr_split(addr, host, sizeof host, &port) == 0 && strlen(host) >= sizeof host)
            abort();
    }
    return 0;
}
