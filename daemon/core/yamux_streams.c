/* The stream table. Sized from the live stream count (grows past 3/4 load, shrinks below 1/8,
 * freed when empty), so memory follows use and the caps in the session bound it. */
#include "yamux_internal.h"

#include <stdlib.h>

#include "dmsg/error.h"

#define MIN_BITS 3u

uint32_t yamux_slot_capacity(const dmsg_yamux *y)
{
    return y->slots ? 1u << y->slot_bits : 0;
}

/* Fibonacci hashing: ids are sequential with one parity, so take the product's high bits. */
static uint32_t home_slot(uint32_t id, uint32_t bits)
{
    return (uint32_t)(id * 2654435769u) >> (32 - bits);
}

static struct dmsg_yamux_stream *probe(struct dmsg_yamux_stream *slots, uint32_t bits, uint32_t id)
{
    uint32_t mask = (1u << bits) - 1;
    uint32_t i = home_slot(id, bits);
    while (slots[i].id != 0 && slots[i].id != id)
        i = (i + 1) & mask;
    return &slots[i];
}

static int resize(dmsg_yamux *y, uint32_t bits)
{
    struct dmsg_yamux_stream *fresh = calloc((size_t)1 << bits, sizeof *fresh);
    if (!fresh)
        return DMSG_ENOMEM;
    uint32_t old_cap = yamux_slot_capacity(y);
    for (uint32_t i = 0; i < old_cap; i++)
        if (y->slots[i].id != 0)
            *probe(fresh, bits, y->slots[i].id) = y->slots[i];
    free(y->slots);
    y->slots = fresh;
    y->slot_bits = bits;
    return 0;
}

struct dmsg_yamux_stream *yamux_stream_find(const dmsg_yamux *y, uint32_t id)
{
    if (!y->slots || id == 0)
        return NULL;
    struct dmsg_yamux_stream *s = probe(y->slots, y->slot_bits, id);
    return s->id == id ? s : NULL;
}

int yamux_stream_insert(dmsg_yamux *y, uint32_t id, struct dmsg_yamux_stream **out)
{
    uint32_t cap = yamux_slot_capacity(y);
    if ((uint64_t)(y->st.streams + 1) * 4 > (uint64_t)cap * 3) {
        int r = resize(y, cap ? y->slot_bits + 1 : MIN_BITS);
        if (r < 0)
            return r;
    }
    struct dmsg_yamux_stream *s = probe(y->slots, y->slot_bits, id);
    *s = (struct dmsg_yamux_stream){.id = id};
    y->st.streams++;
    *out = s;
    return 0;
}

/* True when slot k lies cyclically in (from, to]. */
static bool in_cyclic_range(uint32_t k, uint32_t from, uint32_t to)
{
    return from <= to ? (k > from && k <= to) : (k > from || k <= to);
}

static void remove_slot(dmsg_yamux *y, uint32_t hole)
{
    uint32_t mask = yamux_slot_capacity(y) - 1;
    for (uint32_t j = (hole + 1) & mask; y->slots[j].id != 0; j = (j + 1) & mask) {
        uint32_t home = home_slot(y->slots[j].id, y->slot_bits);
        if (!in_cyclic_range(home, hole, j)) {
            y->slots[hole] = y->slots[j];
            hole = j;
        }
    }
    y->slots[hole] = (struct dmsg_yamux_stream){0};
}

void yamux_stream_forget(dmsg_yamux *y, struct dmsg_yamux_stream *s)
{
    if (s->flags & YS_AWAIT_ACCEPT)
        y->st.pending_accept--;
    if (s->flags & YS_AWAIT_ACK)
        y->st.awaiting_ack--;
    remove_slot(y, (uint32_t)(s - y->slots));
    y->st.streams--;
    if (y->st.streams == 0) {
        free(y->slots);
        y->slots = NULL;
        y->slot_bits = 0;
    } else if (y->slot_bits > MIN_BITS && (uint64_t)y->st.streams * 8 <= yamux_slot_capacity(y)) {
        (void)resize(y, y->slot_bits - 1); /* keeping the bigger table is fine if memory is short */
    }
}

struct dmsg_yamux_stream *yamux_stream_scan(const dmsg_yamux *y, size_t *cursor)
{
    for (size_t cap = yamux_slot_capacity(y); *cursor < cap; (*cursor)++)
        if (y->slots[*cursor].id != 0)
            return &y->slots[(*cursor)++];
    return NULL;
}
