/* A small bounded cache keyed by public key, with expiry: which peer last delivered to a
 * destination, and which destinations no peer had (mesh.h).
 *
 * Two-way set associative: a key lives in one of two slots of its set; inserting into a full set
 * replaces the entry that expires first. So memory is fixed at creation, every operation is
 * O(1), and an entry may be forgotten early when its set is busy: this is a hint cache, a
 * forgotten entry only costs the default order. Time is an argument (milliseconds, any epoch). */
#ifndef DMSGD_MESH_CACHE_H
#define DMSGD_MESH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmsg/cipher.h"

struct mesh_cache_entry {
    dmsg_pk key;
    dmsg_pk value;          /* e.g. the peer that delivered; unused by a plain set */
    uint64_t expires_ms;    /* 0: free slot */
};

struct mesh_cache {
    struct mesh_cache_entry *slots;
    size_t sets;            /* a power of two; 2 slots each */
    uint32_t ttl_ms;
};

/* Room for at least max_entries (rounded up to a power of two, at least 2). DMSG_ENOMEM. */
int mesh_cache_init(struct mesh_cache *c, uint32_t max_entries, uint32_t ttl_ms);
void mesh_cache_free(struct mesh_cache *c);

/* The live entry of key, or NULL. */
const struct mesh_cache_entry *mesh_cache_get(const struct mesh_cache *c, const dmsg_pk *key,
                                              uint64_t now_ms);
/* Inserts or refreshes key (expiring ttl_ms after now_ms); value may be NULL. */
void mesh_cache_put(struct mesh_cache *c, const dmsg_pk *key, const dmsg_pk *value,
                    uint64_t now_ms);
void mesh_cache_remove(struct mesh_cache *c, const dmsg_pk *key);
/* Forgets every entry whose value is value (a peer that went away). */
void mesh_cache_remove_value(struct mesh_cache *c, const dmsg_pk *value);
void mesh_cache_clear(struct mesh_cache *c);
/* Live entries (a full scan; for tests and statistics). */
size_t mesh_cache_count(const struct mesh_cache *c, uint64_t now_ms);

#endif
