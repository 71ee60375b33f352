-- dmsgd state, version 1. Applied once at start when PRAGMA user_version < 1.

-- Mesh peers. Peers from the config file are mirrored here with source 'config' at each start
-- so that one table answers "who are my peers"; only source 'admin' rows are operator-owned.
CREATE TABLE peers (
    public_key  TEXT PRIMARY KEY CHECK (length(public_key) = 66),
    address     TEXT NOT NULL CHECK (length(address) BETWEEN 3 AND 261),
    source      TEXT NOT NULL CHECK (source IN ('config', 'admin', 'discovered')),
    added_at    INTEGER NOT NULL,          -- unix seconds
    note        TEXT NOT NULL DEFAULT ''
) STRICT;

-- Runtime toggles that outlive restarts (e.g. enable_route_setup). Values are JSON text.
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Embedded discovery: one entry per key, as the reference discovery keeps them.
CREATE TABLE discovery_entries (
    public_key  TEXT PRIMARY KEY CHECK (length(public_key) = 66),
    entry_json  TEXT NOT NULL,             -- the signed entry as the discovery re-serialised it
    sequence    INTEGER NOT NULL,          -- the entry's uint64 sequence, stored bit for bit
    timestamp   INTEGER NOT NULL,          -- the entry's own timestamp, unix nanoseconds
    is_client   INTEGER NOT NULL CHECK (is_client IN (0, 1)),
    is_server   INTEGER NOT NULL CHECK (is_server IN (0, 1)),
    available_sessions INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER                    -- unix seconds; NULL: never (client entries)
) STRICT;
CREATE INDEX discovery_entries_expiry ON discovery_entries (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE INDEX discovery_entries_servers ON discovery_entries (is_server, available_sessions);

-- Route setups handled by the integrated setup node.
CREATE TABLE route_setups (
    id          INTEGER PRIMARY KEY,
    requester   TEXT NOT NULL,
    source      TEXT NOT NULL,
    destination TEXT NOT NULL,
    hops_fwd    INTEGER NOT NULL,
    hops_rev    INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('received', 'reserving', 'installing', 'done', 'failed')),
    error       TEXT NOT NULL DEFAULT '',
    started_at  INTEGER NOT NULL,          -- unix milliseconds
    finished_at INTEGER                    -- unix milliseconds, NULL while in flight
) STRICT;
CREATE INDEX route_setups_started ON route_setups (started_at);

CREATE TABLE route_setup_events (
    setup_id    INTEGER NOT NULL REFERENCES route_setups (id) ON DELETE CASCADE,
    state       TEXT NOT NULL,
    at          INTEGER NOT NULL,          -- unix milliseconds
    detail      TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX route_setup_events_setup ON route_setup_events (setup_id);

-- Periodic snapshots of the counters, for `dmsgctl stats --since`.
CREATE TABLE metric_samples (
    at          INTEGER NOT NULL,          -- unix seconds
    name        TEXT NOT NULL,
    value       REAL NOT NULL,
    PRIMARY KEY (at, name)
) STRICT, WITHOUT ROWID;
