/* A hash table from short byte strings (public keys, IP addresses) to pointers.
 *
 * Keyed SipHash (libsodium crypto_shorthash) with a per-table random key, so that clients who
 * choose their keys cannot make the table degrade; open addressing with linear probing and
 * backward-shift deletion; grows at 3/4 load and never shrinks below its initial size. */
#ifndef DMSGD_KEYMAP_H
#define DMSGD_KEYMAP_H

#include <stddef.h>
#include <stdint.h>

#include "dmsg/rng.h"

#define KEYMAP_KEY_MAX 33

struct keymap_slot {
    void *value;            /* NULL: empty slot */
    uint8_t key_len;
    uint8_t key[KEYMAP_KEY_MAX];
};

struct keymap {
    struct keymap_slot *slots;
    size_t cap;             /* a power of two */
    size_t count;
    uint8_t hash_key[16];
};

/* 0 or DMSG_ENOMEM. */
int keymap_init(struct keymap *m, const dmsg_rng *rng);
void keymap_free(struct keymap *m);

/* The value stored under key, or NULL. */
void *keymap_get(const struct keymap *m, const uint8_t *key, size_t key_len);
/* Stores value (not NULL) under key, replacing any previous value. 0, DMSG_EINVAL (key too long
 * or value NULL) or DMSG_ENOMEM. */
int keymap_put(struct keymap *m, const uint8_t *key, size_t key_len, void *value);
/* Removes key only while it maps to value (so an old owner never removes a newer entry).
 * Returns 0, or DMSG_ENOTFOUND when key is absent or maps to something else. */
int keymap_remove_if(struct keymap *m, const uint8_t *key, size_t key_len, const void *value);

/* Calls fn for every entry (the table must not change during the walk). */
void keymap_foreach(const struct keymap *m, void (*fn)(void *value, void *arg), void *arg);

#endif
