/* The server's key pair when the config file has none: generated once, kept in
 * <state_dir>/keys.json (mode 0600, {"public_key": hex, "secret_key": hex}) and reused on every
 * start, so the embedded default keeps its identity across restarts. */
#ifndef DMSGD_KEYFILE_H
#define DMSGD_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "dmsg/cipher.h"
#include "dmsg/rng.h"

#define KEYFILE_NAME "keys.json"

/* Creates dir (and its parents) with mode 0700 when missing. 0 or DMSG_EIO (err says why). */
int state_dir_ensure(const char *dir, char *err, size_t err_cap);

/* Loads the key pair from <dir>/keys.json, or generates one with rng and writes it there
 * (atomically: temporary file, fsync, rename). *created tells which. DMSG_EIO for file errors,
 * DMSG_EKEY when the file holds a bad or mismatched key (never overwritten). */
int keyfile_load_or_create(const char *dir, const dmsg_rng *rng, dmsg_pk *pk, dmsg_sk *sk,
                           bool *created, char *err, size_t err_cap);

#endif
