/* Two-way set-associative key cache with expiry; see mesh_cache.h. */
#include "mesh_cache.h"

#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

/* Keys are compressed points: byte 0 is 02/03, the rest is uniformly spread x. */
static size_t set_of(const struct mesh_cache *c, const dmsg_pk *key)
{
    uint64_t h = 0;

    memcpy(&h, key->b + 1, sizeof h);
    h ^= h >> 29;
    return (size_t)(h & (c->sets - 1));
}

static bool live(const struct mesh_cache_entry *e, uint64_t now_ms)
{
    return e->expires_ms != 0 && e->expires_ms > now_ms;
}

int mesh_cache_init(struct mesh_cache *c, uint32_t max_entries, uint32_t ttl_ms)
{
    size_t sets = 1;

    while (sets * 2 < max_entries)
        sets *= 2;
    c->slots = calloc(sets * 2, sizeof *c->slots);
    if (c->slots == NULL)
        return DMSG_ENOMEM;
    c->sets = sets;
    c->ttl_ms = ttl_ms;
    return 0;
}

void mesh_cache_free(struct mesh_cache *c)
{
    free(c->slots);
    memset(c, 0, sizeof *c);
}

static struct mesh_cache_entry *find(const struct mesh_cache *c, const dmsg_pk *key)
{
    struct mesh_cache_entry *set = &c->slots[set_of(c, key) * 2];

    for (int i = 0; i < 2; i++)
        if (set[i].expires_ms != 0 && dmsg_pk_equal(&set[i].key, key))
            return &set[i];
    return NULL;
}

const struct mesh_cache_entry *mesh_cache_get(const struct mesh_cache *c, const dmsg_pk *key,
                                              uint64_t now_ms)
{
    const struct mesh_cache_entry *e;

    if (c->slots == NULL)
        return NULL;
    e = find(c, key);
    return e != NULL && live(e, now_ms) ? e : NULL;
}

void mesh_cache_put(struct mesh_cache *c, const dmsg_pk *key, const dmsg_pk *value,
                    uint64_t now_ms)
{
    struct mesh_cache_entry *e, *set;

    if (c->slots == NULL)
        return;
    e = find(c, key);
    if (e == NULL) {
        set = &c->slots[set_of(c, key) * 2];
        if (!live(&set[0], now_ms))
            e = &set[0];
        else if (!live(&set[1], now_ms))
            e = &set[1];
        else
            e = set[0].expires_ms <= set[1].expires_ms ? &set[0] : &set[1];
    }
    e->key = *key;
    if (value != NULL)
        e->value = *value;
    else
        memset(&e->value, 0, sizeof e->value);
    e->expires_ms = now_ms + c->ttl_ms;
    if (e->expires_ms == 0)
        e->expires_ms = 1;
}

void mesh_cache_remove(struct mesh_cache *c, const dmsg_pk *key)
{
    struct mesh_cache_entry *e;

    if (c->slots == NULL)
        return;
    e = find(c, key);
    if (e != NULL)
        memset(e, 0, sizeof *e);
}

void mesh_cache_remove_value(struct mesh_cache *c, const dmsg_pk *value)
{
    for (size_t i = 0; c->slots != NULL && i < c->sets * 2; i++)
        if (c->slots[i].expires_ms != 0 && dmsg_pk_equal(&c->slots[i].value, value))
            memset(&c->slots[i], 0, sizeof c->slots[i]);
}

void mesh_cache_clear(struct mesh_cache *c)
{
    if (c->slots != NULL)
        memset(c->slots, 0, c->sets * 2 * sizeof *c->slots);
}

size_t mesh_cache_count(const struct mesh_cache *c, uint64_t now_ms)
{
    size_t n = 0;

    for (size_t i = 0; c->slots != NULL && i < c->sets * 2; i++)
        if (live(&c->slots[i], now_ms))
            n++;
    return n;
}
