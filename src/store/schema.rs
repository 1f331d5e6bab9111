//! The versioned schema of the SQLite file. Each migration is applied once, in order; the
//! file's `user_version` records how far it got.

use rusqlite_migration::{Migrations, M};

/// Every migration, oldest first. Never edit a released one: add the next.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
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
    )])
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
