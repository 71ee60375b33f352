/* PROXY v1/v2 header parser: never crashes, never claims more bytes than it was given, and its
 * answer is a property of the prefix: the header parses the same from exactly its own bytes and
 * is incomplete one byte earlier. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"
#include "dmsg/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dmsg_proxy_info info, again;
    size_t len, len2;
    int r = dmsg_proxy_parse(data, size, &info, &len);
    if (r != 0) {
        if (r != DMSG_EAGAIN && r != DMSG_ENOTFOUND && r != DMSG_EPROTO && r != DMSG_ETOOBIG)
            abort();
        return 0;
    }
    if (len == 0 || len > size || len > DMSG_PROXY_MAX_LEN)
        abort();
    if (info.version == 1 && len > DMSG_PROXY_V1_MAX)
        abort();
    if (info.has_addr && info.family != 4 && info.family != 6)
        abort();
    if (dmsg_proxy_parse(data, len, &again, &len2) != 0 || len2 != len ||
        memcmp(&info, &again, sizeof info) != 0)
        abort();
    if (dmsg_proxy_parse(data, len - 1, &again, &len2) != DMSG_EAGAIN)
        abort();
    return 0;
}
