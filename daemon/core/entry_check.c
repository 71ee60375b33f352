/* What the reference discovery answers to an entry: its checks, in its order, and the exact
 * status and message of each outcome. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dmsg/entry.h"
#include "dmsg/error.h"

#define VALIDATION "entry validation error: "

static const struct {
    int status;
    const char *message;
} results[DMSG_DISC_RESULT_COUNT] = {
    [DMSG_DISC_OK] = {200, ""},
    [DMSG_DISC_ENTRY_SET] = {200, "wrote a new entry"},
    [DMSG_DISC_ENTRY_UPDATED] = {200, "wrote new entry iteration"},
    [DMSG_DISC_ENTRY_DELETED] = {200, "deleted entry"},
    [DMSG_DISC_BAD_INPUT] = {400, "error bad input"},
    [DMSG_DISC_UNAUTHORIZED] = {401, "invalid signature"},
    [DMSG_DISC_KEY_NOT_FOUND] = {404, "entry of public key is not found"},
    [DMSG_DISC_NO_AVAILABLE_SERVERS] = {404, "no delegated dmsg servers available for remote"},
    [DMSG_DISC_UNEXPECTED] = {500, "something unexpected happened"},
    [DMSG_DISC_NON_ZERO_SEQUENCE] = {422, VALIDATION "new entry has non-zero sequence"},
    [DMSG_DISC_NIL_EPHEMERALS] =
        {422, VALIDATION "entry of client instance has nil ephemeral keys"},
    [DMSG_DISC_NIL_KEYS] = {422, VALIDATION "entry Keys is nil"},
    [DMSG_DISC_NON_NIL_EPHEMERALS] =
        {422, VALIDATION "entry of server instance has non nil Keys.Ephemerals field"},
    [DMSG_DISC_NO_SIGNATURE] = {422, VALIDATION "entry has no signature"},
    [DMSG_DISC_NO_VERSION] = {422, VALIDATION "entry has no version"},
    [DMSG_DISC_NO_CLIENT_OR_SERVER] =
        {422, VALIDATION "entry has neither client or server field"},
    [DMSG_DISC_WRONG_SEQUENCE] =
        {422, VALIDATION "sequence field of new entry is not sequence of old entry + 1"},
    [DMSG_DISC_WRONG_TIME] =
        {422, VALIDATION "advertised entry timestamp is not greater than previous"},
    [DMSG_DISC_OUTDATED_TIME] = {422, VALIDATION "advertised entry has outdated timestamp"},
    [DMSG_DISC_LOOPBACK_ADDRESS] =
        {422, VALIDATION "advertising localhost listening address is not allowed in production "
                         "mode"},
    [DMSG_DISC_EMPTY_SERVER_ADDRESS] = {422, VALIDATION "server address cannot be empty"},
};

static bool known(dmsg_disc_result r)
{
    return (unsigned)r < DMSG_DISC_RESULT_COUNT;
}

int dmsg_disc_result_status(dmsg_disc_result r)
{
    return known(r) ? results[r].status : 500;
}

const char *dmsg_disc_result_message(dmsg_disc_result r)
{
    return known(r) ? results[r].message : results[DMSG_DISC_UNEXPECTED].message;
}

dmsg_disc_result dmsg_disc_result_from_message(const char *message, size_t len)
{
    for (int r = DMSG_DISC_OK + 1; r < DMSG_DISC_RESULT_COUNT; r++)
        if (strlen(results[r].message) == len && memcmp(results[r].message, message, len) == 0)
            return (dmsg_disc_result)r;
    return DMSG_DISC_UNEXPECTED;
}

int dmsg_disc_reply_write(dmsg_disc_result r, char *out, size_t cap, size_t *len)
{
    /* Every message is plain ASCII without quotes or backslashes: nothing to escape. */
    char text[160];
    int n = snprintf(text, sizeof text, "{\"message\":\"%s\",\"code\":%d}",
                     dmsg_disc_result_message(r), dmsg_disc_result_status(r));
    *len = (size_t)n;
    if (!out || *len > cap)
        return DMSG_ETOOBIG;
    memcpy(out, text, *len);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Addresses */

/* Go's net.SplitHostPort: host of "host:port" or "[host]:port" (port unchecked, may be empty).
 * False when the text does not split. */
static bool split_host(const char *addr, const char **host, size_t *host_len)
{
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return false;
    size_t i = (size_t)(colon - addr);
    size_t j = 0, k = 0; /* where '[' and ']' may no longer appear */
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || (size_t)(close - addr) + 1 != i)
            return false;
        *host = addr + 1;
        *host_len = (size_t)(close - addr) - 1;
        j = 1;
        k = i;
    } else {
        if (memchr(addr, ':', i))
            return false; /* too many colons */
        *host = addr;
        *host_len = i;
    }
    return !strchr(addr + j, '[') && !strchr(addr + k, ']');
}

/* Go's net.ParseIP(host).IsLoopback(): 127/8, ::1, and ::ffff:127/104. Zones are not IPs. */
static bool loopback_ip(const char *host, size_t len)
{
    char text[INET6_ADDRSTRLEN + 1];
    if (len >= sizeof text)
        return false;
    memcpy(text, host, len);
    text[len] = '\0';
    uint8_t v4[4], v6[16];
    if (inet_pton(AF_INET, text, v4) == 1)
        return v4[0] == 127;
    if (inet_pton(AF_INET6, text, v6) != 1)
        return false;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t one[16] = {[15] = 1};
    if (memcmp(v6, mapped, sizeof mapped) == 0)
        return v6[12] == 127;
    return memcmp(v6, one, sizeof one) == 0;
}

bool dmsg_disc_address_is_loopback(const char *address)
{
    const char *host;
    size_t len;
    if (!split_host(address, &host, &len))
        return false;
    return len == 0 || loopback_ip(host, len);
}

/* ---------------------------------------------------------------------------------------------
 * Checks */

bool dmsg_disc_timestamp_fresh(int64_t timestamp_ns, int64_t now_ns)
{
    /* Compared as differences so that no sum can overflow. */
    if (timestamp_ns >= now_ns)
        return (uint64_t)timestamp_ns - (uint64_t)now_ns <= (uint64_t)DMSG_ENTRY_CLOCK_SKEW_NS;
    return (uint64_t)now_ns - (uint64_t)timestamp_ns <= (uint64_t)DMSG_ENTRY_LIFETIME_NS;
}

/* Go's Entry.Validate. */
static dmsg_disc_result validate(const dmsg_entry *e, bool check_timestamp, int64_t now_ns)
{
    if (!e->version[0])
        return DMSG_DISC_NO_VERSION;
    if (!e->signature[0])
        return DMSG_DISC_NO_SIGNATURE;
    if (dmsg_pk_is_null(&e->static_pk))
        return DMSG_DISC_NIL_KEYS;
    if (!e->has_client && !e->has_server)
        return DMSG_DISC_NO_CLIENT_OR_SERVER;
    if (e->has_server && !e->server.address[0])
        return DMSG_DISC_EMPTY_SERVER_ADDRESS;
    if (check_timestamp && !dmsg_disc_timestamp_fresh(e->timestamp, now_ns))
        return DMSG_DISC_OUTDATED_TIME;
    return DMSG_DISC_OK;
}

dmsg_disc_result dmsg_disc_check_body(dmsg_entry *e, const char *body, size_t len,
                                      dmsg_disc_op op, bool test_mode, int64_t now_ns)
{
    if (dmsg_entry_parse(e, body, len) < 0)
        return DMSG_DISC_UNEXPECTED;
    if (op == DMSG_DISC_OP_POST && e->has_server && !test_mode &&
        dmsg_disc_address_is_loopback(e->server.address))
        return DMSG_DISC_LOOPBACK_ADDRESS;
    /* Client entries are not refreshed periodically, so their age is not checked. */
    dmsg_disc_result r = validate(e, !e->has_client, now_ns);
    if (r != DMSG_DISC_OK)
        return r;
    return dmsg_entry_verify(e) == 0 ? DMSG_DISC_OK : DMSG_DISC_UNAUTHORIZED;
}

dmsg_disc_result dmsg_disc_check_iteration(const dmsg_entry *stored, const dmsg_entry *next)
{
    if (next->sequence <= stored->sequence)
        return DMSG_DISC_WRONG_SEQUENCE;
    if (next->timestamp < stored->timestamp)
        return DMSG_DISC_WRONG_TIME;
    return DMSG_DISC_ENTRY_UPDATED;
}
