/* Hash table from short byte strings to pointers; see keymap.h. */
#include "keymap.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dmsg/error.h"

#define INITIAL_CAP 64

static size_t slot_of(const struct keymap *m, const uint8_t *key, size_t key_len)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, key, key_len, m->hash_key);
    memcpy(&v, h, sizeof v);
    return (size_t)v & (m->cap - 1);
}

static bool slot_matches(const struct keymap_slot *s, const uint8_t *key, size_t key_len)
{
    return s->value != NULL && s->key_len == key_len && memcmp(s->key, key, key_len) == 0;
}

int keymap_init(struct keymap *m, const dmsg_rng *rng)
{
    memset(m, 0, sizeof *m);
    m->slots = calloc(INITIAL_CAP, sizeof *m->slots);
    if (m->slots == NULL)
        return DMSG_ENOMEM;
    m->cap = INITIAL_CAP;
    dmsg_rng_fill(rng, m->hash_key, sizeof m->hash_key);
    return 0;
}

void keymap_free(struct keymap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

void *keymap_get(const struct keymap *m, const uint8_t *key, size_t key_len)
{
    size_t i;

    if (key_len > KEYMAP_KEY_MAX || m->cap == 0)
        return NULL;
    for (i = slot_of(m, key, key_len);; i = (i + 1) & (m->cap - 1)) {
        const struct keymap_slot *s = &m->slots[i];
        if (s->value == NULL)
            return NULL;
        if (slot_matches(s, key, key_len))
            return s->value;
    }
}

static void insert_slot(struct keymap *m, const struct keymap_slot *src)
{
    size_t i = slot_of(m, src->key, src->key_len);

    while (m->slots[i].value != NULL)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = *src;
}

static int grow(struct keymap *m)
{
    struct keymap_slot *old = m->slots;
    size_t old_cap = m->cap;

    m->slots = calloc(old_cap * 2, sizeof *m->slots);
    if (m->slots == NULL) {
        m->slots = old;
        return DMSG_ENOMEM;
    }
    m->cap = old_cap * 2;
    for (size_t i = 0; i < old_cap; i++) {
        if (old[i].value != NULL)
            insert_slot(m, &old[i]);
    }
    free(old);
    return 0;
}

int keymap_put(struct keymap *m, const uint8_t *key, size_t key_len, void *value)
{
    struct keymap_slot slot;
    size_t i;

    if (key_len > KEYMAP_KEY_MAX || value == NULL)
        return DMSG_EINVAL;
    for (i = slot_of(m, key, key_len); m->slots[i].value != NULL; i = (i + 1) & (m->cap - 1)) {
        if (slot_matches(&m->slots[i], key, key_len)) {
            m->slots[i].value = value;
            return 0;
        }
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        int rc = grow(m);
        if (rc != 0)
            return rc;
    }
    memset(&slot, 0, sizeof slot);
    slot.value = value;
    slot.key_len = (uint8_t)key_len;
    memcpy(slot.key, key, key_len);
    insert_slot(m, &slot);
    m->count++;
    return 0;
}

/* Backward-shift deletion: later members of the probe run move up so lookups still find them. */
static void delete_at(struct keymap *m, size_t hole)
{
    size_t mask = m->cap - 1;
    size_t i = hole;

    for (;;) {
        size_t home;

        i = (i + 1) & mask;
        if (m->slots[i].value == NULL)
            break;
        home = slot_of(m, m->slots[i].key, m->slots[i].key_len);
        /* Move slot i into the hole unless its home lies cyclically in (hole, i]. */
        if (((i - home) & mask) >= ((i - hole) & mask)) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    memset(&m->slots[hole], 0, sizeof m->slots[hole]);
    m->count--;
}

int keymap_remove_if(struct keymap *m, const uint8_t *key, size_t key_len, const void *value)
{
    size_t i;

    if (key_len > KEYMAP_KEY_MAX || m->cap == 0)
        return DMSG_ENOTFOUND;
    for (i = slot_of(m, key, key_len); m->slots[i].value != NULL; i = (i + 1) & (m->cap - 1)) {
        if (slot_matches(&m->slots[i], key, key_len)) {
            if (m->slots[i].value != value)
                return DMSG_ENOTFOUND;
            delete_at(m, i);
            return 0;
        }
    }
    return DMSG_ENOTFOUND;
}

void keymap_foreach(const struct keymap *m, void (*fn)(void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].value != NULL)
            fn(m->slots[i].value, arg);
    }
}
