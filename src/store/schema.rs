//! The versioned schema of the SQLite file. Each migration is applied once, in order; the
//! file's `user_version` records how far it got.

use rusqlite_migration::{Migrations, M};

/// Every migration, oldest first. Never edit a released one: add the next.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
            r#"
CREATE TABLE connectors (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    integration TEXT NOT NULL,
    connector   TEXT NOT NULL,
    title       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('running', 'stopped')),
    settings    TEXT NOT NULL,            -- JSON object; secret values sealed
    created_at  TEXT NOT NULL,
    UNIQUE (account, integration, connector)
);
CREATE TABLE integration_settings (
    account     TEXT NOT NULL,
    integration TEXT NOT NULL,
    settings    TEXT NOT NULL,            -- JSON object; secret values sealed
    PRIMARY KEY (account, integration)
);
CREATE TABLE flows (
    account     TEXT NOT NULL,
    agent       TEXT NOT NULL,
    flow        TEXT NOT NULL,
    document    TEXT NOT NULL,            -- the flow document, JSON
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (account, agent, flow)
);
CREATE TABLE actors (
    account     TEXT NOT NULL,
    integration TEXT NOT NULL,
    external_id TEXT NOT NULL,
    persona     TEXT NOT NULL,
    first_seen  TEXT NOT NULL,
    PRIMARY KEY (account, integration, external_id)
);
CREATE INDEX actors_persona ON actors (account, persona);
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    persona     TEXT NOT NULL,
    integration TEXT NOT NULL,
    connector   TEXT NOT NULL,
    channel     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    end_reason  TEXT
);
CREATE INDEX sessions_live ON sessions (account, ended_at);
CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('event', 'command', 'raw')),
    payload     BLOB NOT NULL,            -- MessagePack envelope; raw: content type, NUL, bytes
    persona     TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX dead_letters_account ON dead_letters (account, at);
CREATE TABLE inbox (
    id          TEXT PRIMARY KEY,         -- event id
    seq         INTEGER NOT NULL,
    envelope    BLOB NOT NULL,            -- MessagePack envelope
    received_at TEXT NOT NULL
);
CREATE INDEX inbox_seq ON inbox (seq);
CREATE TABLE dedupe (
    key         TEXT PRIMARY KEY,         -- account/integration/connector/external_event_id
    at_ms       INTEGER NOT NULL
);
CREATE INDEX dedupe_at ON dedupe (at_ms);
"#,
        ),
        // Invocation batches sent to queue runners, kept for the streams' duplicate window:
        // after a crash, a replayed invocation whose batch the stream acknowledged is not sent
        // again; one whose acknowledgement never arrived is sent again inside the very batch it
        // left in, under the same Nats-Msg-Id, so the stream drops it if it was stored.
        M::up(
            r#"
CREATE TABLE invocation_batches (
    key          BLOB PRIMARY KEY,        -- the batch's Nats-Msg-Id: its first invocation id
    subject      TEXT NOT NULL,
    content_type TEXT NOT NULL,
    payload      BLOB NOT NULL,           -- the message as published
    at_ms        INTEGER NOT NULL,
    stored       INTEGER NOT NULL DEFAULT 0  -- 1 once the stream acknowledged it
) WITHOUT ROWID;
CREATE INDEX invocation_batches_at ON invocation_batches (at_ms);
CREATE TABLE invocation_batch_members (
    invocation_id BLOB PRIMARY KEY,
    batch_key     BLOB NOT NULL,
    at_ms         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX invocation_batch_members_at ON invocation_batch_members (at_ms);
"#,
        ),
        // Timers of `program_timer` connectors, with absolute due times, and the firings
        // recorded before their events were handed on (replayed at start until they settle).
        // History: the tables are the `program_timer` native's now, whose own migrations
        // (natives/program_timer/store.rs) make the same with IF NOT EXISTS.
        M::up(
            r#"
CREATE TABLE timers (
    account     TEXT NOT NULL,
    connector   TEXT NOT NULL,
    persona     TEXT NOT NULL,
    name        TEXT NOT NULL,
    due_ms      INTEGER NOT NULL,        -- next fire, Unix milliseconds (UTC)
    interval_ms INTEGER,                 -- between fires of a repeating timer
    repeatable  INTEGER NOT NULL,
    event       TEXT NOT NULL,           -- event idn it fires
    arguments   TEXT NOT NULL,           -- JSON [[name, value], ...] carried into the event
    session     TEXT,                    -- the session a session-scoped timer is bound to
    PRIMARY KEY (account, connector, persona, name)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers (due_ms);
CREATE INDEX timers_session ON timers (session) WHERE session IS NOT NULL;
CREATE TABLE timer_firings (
    id           TEXT PRIMARY KEY,       -- the fired event's id
    account      TEXT NOT NULL,
    connector    TEXT NOT NULL,
    persona      TEXT NOT NULL,
    name         TEXT NOT NULL,
    event        TEXT NOT NULL,
    arguments    TEXT NOT NULL,          -- JSON [[name, value], ...], the event's arguments
    scheduled_ms INTEGER NOT NULL
);
"#,
        ),
        // Accounts (tenants) and their API tokens; a token is kept only as a hash.
        M::up(
            r#"
CREATE TABLE accounts (
    idn         TEXT PRIMARY KEY,
    title       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,        -- the token's public id (part of its text)
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    scopes      TEXT NOT NULL,           -- comma-separated scope names
    hash        BLOB NOT NULL,           -- SHA-256 of the token's text
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX tokens_account ON tokens (account);
"#,
        ),
        // The signing secrets of flows' webhook runners, sealed; the previous one signs too
        // until `previous_until_ms` (the overlap after a rotation).
        M::up(
            r#"
CREATE TABLE runner_secrets (
    account           TEXT NOT NULL,
    agent             TEXT NOT NULL,
    flow              TEXT NOT NULL,
    current           TEXT NOT NULL,     -- sealed whsec_...
    previous          TEXT,              -- sealed whsec_..., while the overlap lasts
    previous_until_ms INTEGER,           -- Unix milliseconds
    PRIMARY KEY (account, agent, flow)
) WITHOUT ROWID;
"#,
        ),
        // The daemon's own keys, sealed (the persona key: `daemon/persona_key`), or `unkeyed`
        // for a store whose persona ids were derived before keys existed.
        M::up(
            r#"
CREATE TABLE daemon_keys (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL
);
"#,
        ),
        // Command acts issued to adapters (`command_act_id` -> persona and connector) and flow
        // state values (`set_state`), written behind and restored at start; pruned by age.
        M::up(
            r#"
CREATE TABLE command_acts (
    act         TEXT PRIMARY KEY,
    account     TEXT NOT NULL,
    integration TEXT NOT NULL,
    connector   TEXT NOT NULL,
    persona     TEXT NOT NULL,
    issued_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX command_acts_issued ON command_acts (issued_ms);
CREATE TABLE flow_state (
    account     TEXT NOT NULL,
    agent       TEXT NOT NULL,
    flow        TEXT NOT NULL,
    field       TEXT NOT NULL,
    owner       TEXT NOT NULL,       -- a persona id, or `agent`
    value       TEXT NOT NULL,
    set_ms      INTEGER NOT NULL,
    PRIMARY KEY (account, agent, flow, field, owner)
) WITHOUT ROWID;
CREATE INDEX flow_state_set ON flow_state (set_ms);
"#,
        ),
        // The durable outbox: messages waiting to be delivered to a destination (outgoing API
        // webhooks, commands to external adapters), in enqueue order (`seq`), delivered in
        // order per (destination, key); a row leaves once its message settles. No secrets: a
        // destination resolves its own at send time.
        M::up(
            r#"
CREATE TABLE outbox (
    seq              INTEGER PRIMARY KEY,   -- enqueue order
    id               TEXT NOT NULL UNIQUE,  -- the message id, the same on every attempt
    account          TEXT NOT NULL,
    kind             TEXT NOT NULL,         -- the destination's kind (before ':')
    destination      TEXT NOT NULL,         -- e.g. api:<account>/<connector>
    key              TEXT NOT NULL,         -- ordering key (a persona, a conversation)
    payload          BLOB NOT NULL,
    meta             BLOB NOT NULL,         -- the owner's, opaque
    created_ms       INTEGER NOT NULL,      -- Unix milliseconds
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_attempt_ms INTEGER                -- Unix milliseconds
);
CREATE INDEX outbox_lane ON outbox (destination, key, seq);
"#,
        ),
        // The migrations of native components' own tables, applied under their idn
        // (`components.rs`).
        M::up(
            r#"
CREATE TABLE component_migrations (
    namespace TEXT NOT NULL,    -- the component's integration idn
    version   INTEGER NOT NULL, -- 1, 2, … in its list
    PRIMARY KEY (namespace, version)
);
"#,
        ),
        // The highest stream sequence each events consumer handed to the engine: after a
        // crash (of the daemon, or of the NATS server, which can forget delivery counts), a
        // message at or below it may have been invoked already and is marked redelivered.
        M::up(
            r#"
CREATE TABLE stream_marks (
    consumer   TEXT PRIMARY KEY,   -- stream/consumer
    handed_seq INTEGER NOT NULL
);
"#,
        ),
    ])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
