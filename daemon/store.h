/* The daemon's persistent state in SQLite: mesh peers, settings, embedded-discovery entries.
 *
 * Used from the loop thread only. The database is opened in WAL mode with foreign keys on,
 * synchronous=FULL and a busy timeout; the schema migrations compiled into the binary are
 * applied in order, each in its own transaction, tracked by PRAGMA user_version. Every
 * function that changes something has committed it when it returns 0.
 *
 * Functions return 0 or a negative DMSG_E* code. Every database failure returns DMSG_EIO (or
 * DMSG_EVERSION for a schema newer than ours) and records what went wrong and what the operator
 * should do in the store's last error: see store_last_error(). */
#ifndef DMSGD_STORE_H
#define DMSGD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct store;

/* What kind of database failure happened; each has its own operator-facing message. */
enum store_fault {
    STORE_FAULT_NONE = 0,
    STORE_FAULT_LOCKED,    /* SQLITE_BUSY / SQLITE_LOCKED: another process holds the lock */
    STORE_FAULT_READONLY,  /* SQLITE_READONLY, or no permission to create the file or its WAL */
    STORE_FAULT_FULL,      /* SQLITE_FULL: disk (or the configured size cap) is full */
    STORE_FAULT_CORRUPT,   /* SQLITE_CORRUPT / SQLITE_NOTADB */
    STORE_FAULT_TOO_NEW,   /* schema version newer than this binary knows */
    STORE_FAULT_CANTOPEN,  /* the file cannot be opened (missing directory, not a file) */
    STORE_FAULT_INVALID,   /* the caller's value broke a constraint (e.g. a CHECK) */
    STORE_FAULT_OTHER
};

struct store_error {
    enum store_fault fault;
    int sqlite_code;       /* extended result code, 0 when not from SQLite */
    char message[384];     /* one line: what failed, on which file, and what to do */
};

/* Options for store_open; a zeroed struct gives the defaults. */
struct store_options {
    int busy_timeout_ms;   /* 0: 5000 */
    int64_t max_size_bytes;/* 0: no cap; else writes beyond it fail with STORE_FAULT_FULL */
    /* The migrations to apply: migration N takes user_version N-1 to N. NULL: the ones compiled
     * from the schema/ directory. Tests pass their own lists to exercise upgrades. */
    const char *const *migrations;
    size_t migration_count;
};

/* Opens (creating if needed) the database at path and brings its schema up to date.
 * On failure *out is NULL and err (if not NULL) says why. DMSG_EVERSION: the file was written
 * by a newer dmsgd; DMSG_EIO: see err->fault; DMSG_ENOMEM. */
int store_open(struct store **out, const char *path, const struct store_options *opts,
               struct store_error *err);
void store_close(struct store *st);

/* The failure recorded by the last function that returned an error on st. */
const struct store_error *store_last_error(const struct store *st);
/* The schema version of the open database (PRAGMA user_version). */
int store_schema_version(const struct store *st);

/* ---- embedded discovery entries ---- */

#define STORE_PK_HEX_LEN 66

struct store_disc_entry {
    const char *public_key;       /* 66 lowercase hex characters */
    const char *entry_json;       /* the entry as served on GET */
    size_t entry_json_len;
    uint64_t sequence;
    int64_t timestamp_ns;
    bool is_client;
    bool is_server;
    int64_t available_sessions;
    int64_t expires_at;           /* unix seconds; 0: never expires */
};

/* Stores e in place of the live entry of its key. An entry whose expires_at <= now counts as
 * absent. When a live entry exists, e must have a greater sequence (else DMSG_ENONCE) and a
 * timestamp not earlier than the stored one (else DMSG_EREPLAY); both checks run in the same
 * transaction as the write. *created (may be NULL) tells whether no live entry existed. */
int store_disc_put(struct store *st, const struct store_disc_entry *e, int64_t now,
                   bool *created);

/* The live entry JSON of public_key in a fresh NUL-terminated buffer (caller frees) and its
 * sequence/timestamp (each out-parameter may be NULL). DMSG_ENOTFOUND when there is none. */
int store_disc_get(struct store *st, const char *public_key, int64_t now, char **json,
                   size_t *json_len, uint64_t *sequence, int64_t *timestamp_ns);

/* Removes the entry of public_key. DMSG_ENOTFOUND when there was none. */
int store_disc_delete(struct store *st, const char *public_key);

/* Called once per listed row; a non-zero return stops the listing and is returned. */
typedef int (*store_visit_text_fn)(void *user, const char *text, size_t len);

/* Live server entries with available_sessions > 0, most available sessions first (ties in
 * random order, as the reference's random pick), at most limit of them. */
int store_disc_list_available(struct store *st, int64_t now, size_t limit,
                              store_visit_text_fn visit, void *user);
/* Every live server entry, unfiltered, ordered by public key. */
int store_disc_list_servers(struct store *st, int64_t now, store_visit_text_fn visit, void *user);
/* The public keys of every live entry that has a client part, ordered. */
int store_disc_list_clients(struct store *st, int64_t now, store_visit_text_fn visit, void *user);

/* Deletes every entry with expires_at <= now; *removed (may be NULL) gets how many. */
int store_disc_expire(struct store *st, int64_t now, int64_t *removed);

/* ---- settings: runtime toggles that outlive restarts, values are JSON text ---- */

/* The JSON text of setting name in a fresh buffer (caller frees). DMSG_ENOTFOUND if unset. */
int store_setting_get(struct store *st, const char *name, char **json);
/* Sets name to json_text, which must be one valid JSON value (else DMSG_EINVAL). */
int store_setting_set(struct store *st, const char *name, const char *json_text, int64_t now);

/* ---- mesh peers ---- */

enum store_peer_source {
    STORE_PEER_CONFIG = 0,  /* mirrored from the configuration file at each start */
    STORE_PEER_ADMIN,       /* added by the operator through the admin API */
    STORE_PEER_DISCOVERED
};

struct store_peer {
    const char *public_key;   /* 66 lowercase hex characters */
    const char *address;      /* host:port, 3..261 characters */
    enum store_peer_source source;
    int64_t added_at;         /* unix seconds */
    const char *note;         /* may be NULL: empty */
};

/* The stable text of a source as stored ("config", "admin", "discovered"). */
const char *store_peer_source_name(enum store_peer_source source);

/* DMSG_EEXIST when the key is already a peer; DMSG_EINVAL for a malformed key or address. */
int store_peer_add(struct store *st, const struct store_peer *peer);
/* DMSG_ENOTFOUND when the key is not a peer. */
int store_peer_remove(struct store *st, const char *public_key);
/* Removes every peer of one source (e.g. the config mirror before re-mirroring). */
int store_peer_remove_source(struct store *st, enum store_peer_source source, int64_t *removed);

/* Called once per peer, ordered by public key; the strings live until the call returns.
 * A non-zero return stops the listing and is returned. */
typedef int (*store_visit_peer_fn)(void *user, const struct store_peer *peer);
/* Every peer, or only those of *source when source is not NULL. */
int store_peer_list(struct store *st, const enum store_peer_source *source,
                    store_visit_peer_fn visit, void *user);

/* Changes how long a locked database is waited for (the busy timeout); returns the previous
 * value. Waiting blocks the calling (loop) thread: background writes that may be dropped use 0. */
int store_set_busy_timeout(struct store *st, int ms);

/* The database file's path, as given to store_open. */
const char *store_path(const struct store *st);

/* Stops this connection from checkpointing the WAL inside its own commits (each checkpoint
 * fsyncs, and this connection commits on the event loop); a store_checkpointer then does it
 * from a worker thread. */
int store_disable_autocheckpoint(struct store *st);

/* ---- failure counts (metrics: dmsgd_store_errors_total) ---- */

/* Failed SQLite operations since open, indexed by enum store_fault. */
void store_get_fault_counts(const struct store *st, uint64_t out[STORE_FAULT_OTHER + 1]);

/* ---- metric samples: periodic snapshots for `dmsgctl stats` ---- */

struct store_sample {
    const char *name;         /* the series as /metrics shows it, labels included */
    double value;
};

/* Writes every sample at time at (unix seconds) in one transaction (a series sampled twice in
 * the same second keeps the last value). */
int store_samples_put(struct store *st, int64_t at, const struct store_sample *samples,
                      size_t n);
/* Deletes samples older than before (unix seconds); *removed (may be NULL) gets how many. */
int store_samples_expire(struct store *st, int64_t before, int64_t *removed);
/* Every sample at or after since, ordered by name then time; a non-zero return of visit stops
 * the listing and is returned. */
typedef int (*store_visit_sample_fn)(void *user, const char *name, int64_t at, double value);
int store_samples_list(struct store *st, int64_t since, store_visit_sample_fn visit, void *user);

/* ---- route setups (read side for the admin API; the setup node writes them) ---- */

struct store_route_setup {
    int64_t id;
    const char *requester, *source, *destination;   /* 66 lowercase hex characters */
    int64_t hops_forward, hops_reverse;
    const char *state;        /* received, reserving, installing, done, failed */
    const char *error;        /* "" unless failed */
    int64_t started_at_ms;
    int64_t finished_at_ms;   /* 0 while in flight */
};

typedef int (*store_visit_route_setup_fn)(void *user, const struct store_route_setup *r);
typedef int (*store_visit_route_setup_event_fn)(void *user, const char *state, int64_t at_ms,
                                                const char *detail);

/* Newest first: ids below before (0: no bound), optionally only one state and/or one
 * requester (NULL: any), at most limit rows. */
int store_route_setup_list(struct store *st, int64_t before, size_t limit, const char *state,
                           const char *requester, store_visit_route_setup_fn visit, void *user);
/* One setup, then its events oldest first. DMSG_ENOTFOUND when there is no such id. */
int store_route_setup_get(struct store *st, int64_t id, store_visit_route_setup_fn visit,
                          store_visit_route_setup_event_fn visit_event, void *user);

/* Write side (the setup node). add: a new row in r->state with its first event; *id gets the
 * row id. set_state: the row's state and error (finished_at = at_ms when finished) and an
 * event (detail = error). expire: finished setups older than before_ms, with their events. */
int store_route_setup_add(struct store *st, const struct store_route_setup *r, int64_t *id);
int store_route_setup_event(struct store *st, int64_t id, const char *state, int64_t at_ms,
                            const char *detail);
int store_route_setup_set_state(struct store *st, int64_t id, const char *state,
                                const char *error, int64_t at_ms, bool finished);
int store_route_setup_expire(struct store *st, int64_t before_ms, int64_t *removed);

/* At start: setups a previous process left unfinished (it stopped or was killed mid-setup)
 * become failed with this error, finished at at_ms, so they show an end and expire. */
int store_route_setup_abandon(struct store *st, int64_t at_ms, const char *error,
                              int64_t *abandoned);

#endif
