/* dmsgctl's Server-Sent Events parser (ctl/sse.c) on arbitrary bytes: it must never misbehave
 * under the sanitizers, and feeding the stream in two pieces (cut where the first byte says)
 * must give exactly the events of feeding it whole. ctl/ is not part of dmsgcore, so its two
 * files are compiled into the harness. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../ctl/sse.c"
#include "../../ctl/util.c"

#define MAX_EVENT 4096

struct digest {
    uint64_t hash;
    size_t events;
};

static void mix(struct digest *d, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d->hash = (d->hash ^ (unsigned char)s[i]) * 1099511628211ULL;
    d->hash = (d->hash ^ 0xff) * 1099511628211ULL;
}

static int on_event(void *user, const struct sse_event *ev)
{
    struct digest *d = user;

    if (ev->data[ev->data_len] != '\0')
        abort(); /* NUL-terminated after data_len bytes (which may include NULs) */
    mix(d, ev->type, strlen(ev->type));
    mix(d, ev->data, ev->data_len);
    mix(d, ev->last_id, strlen(ev->last_id));
    d->events++;
    return 0;
}

static int run(const uint8_t *data, size_t size, size_t cut, struct digest *d)
{
    struct sse_parser p;
    int rc;

    memset(d, 0, sizeof *d);
    d->hash = 1469598103934665603ULL;
    sse_init(&p, MAX_EVENT, on_event, d);
    rc = sse_feed(&p, (const char *)data, cut);
    if (rc == 0)
        rc = sse_feed(&p, (const char *)data + cut, size - cut);
    sse_free(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct digest whole, split;
    size_t cut;
    int rc_whole, rc_split;

    if (size == 0)
        return 0;
    cut = data[0] % size;
    rc_whole = run(data + 1, size - 1, 0, &whole);
    rc_split = run(data + 1, size - 1, cut > size - 1 ? size - 1 : cut, &split);
    if (rc_whole != rc_split)
        abort();
    if (rc_whole == 0 && (whole.events != split.events || whole.hash != split.hash))
        abort();
    return 0;
}
