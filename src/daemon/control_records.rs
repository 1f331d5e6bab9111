//! The shared control plane's records: storage types (MessagePack, versioned), apart from the
//! domain types, holding what the store's rows hold: settings and runner secrets stay sealed
//! as stored (every daemon is given the same sealing key), a token its hash. Each has its key
//! in the bucket (`connector.<account>.<integration>.<connector>`, …): idns and names use only
//! characters a key may (`[-/_=.a-zA-Z0-9]`), and none has a `.`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::accounts::{AccountRow, TokenRow};
use crate::store::{ConnectorRow, FlowRow, RunnerSecretRow};

/// The version of the record encoding this daemon writes and reads.
pub const VERSION: u8 = 1;

/// What kind of record a key names: the label of the control plane's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Account,
    Token,
    Connector,
    Settings,
    Flow,
    RunnerSecret,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Account,
        Kind::Token,
        Kind::Connector,
        Kind::Settings,
        Kind::Flow,
        Kind::RunnerSecret,
    ];

    /// The key's first token, and the metrics' label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Token => "token",
            Kind::Connector => "connector",
            Kind::Settings => "settings",
            Kind::Flow => "flow",
            Kind::RunnerSecret => "runner_secret",
        }
    }

    /// How many more tokens its key has after the kind.
    fn parts(self) -> usize {
        match self {
            Kind::Account | Kind::Token => 1,
            Kind::Settings => 2,
            Kind::Connector | Kind::Flow | Kind::RunnerSecret => 3,
        }
    }
}

/// A record's key in the bucket: its kind and the names it is found by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey(String);

impl RecordKey {
    fn of(kind: Kind, parts: &[&str]) -> RecordKey {
        let mut k = kind.as_str().to_owned();
        for p in parts {
            k.push('.');
            k.push_str(p);
        }
        RecordKey(k)
    }

    pub fn account(idn: &str) -> RecordKey {
        Self::of(Kind::Account, &[idn])
    }

    pub fn token(id: &str) -> RecordKey {
        Self::of(Kind::Token, &[id])
    }

    pub fn connector(account: &str, integration: &str, connector: &str) -> RecordKey {
        Self::of(Kind::Connector, &[account, integration, connector])
    }

    pub fn settings(account: &str, integration: &str) -> RecordKey {
        Self::of(Kind::Settings, &[account, integration])
    }

    pub fn flow(account: &str, agent: &str, flow: &str) -> RecordKey {
        Self::of(Kind::Flow, &[account, agent, flow])
    }

    pub fn runner_secret(account: &str, agent: &str, flow: &str) -> RecordKey {
        Self::of(Kind::RunnerSecret, &[account, agent, flow])
    }

    /// A key read from the bucket; `None` when it is no record's (another writer's key).
    pub fn parse(text: &str) -> Option<RecordKey> {
        let mut tokens = text.split('.');
        let first = tokens.next()?;
        let kind = Kind::ALL.into_iter().find(|k| k.as_str() == first)?;
        let rest: Vec<&str> = tokens.collect();
        let valid = |t: &&str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        (rest.len() == kind.parts() && rest.iter().all(valid)).then(|| RecordKey(text.to_owned()))
    }

    pub fn kind(&self) -> Kind {
        let first = self.0.split('.').next().unwrap_or_default();
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == first)
            .expect("a key is built or parsed with its kind")
    }

    /// The names after the kind.
    pub fn parts(&self) -> Vec<&str> {
        self.0.split('.').skip(1).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub idn: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub account: String,
    pub name: String,
    pub scopes: String,
    /// The hash of the token's text, never the text.
    pub hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorRecord {
    pub id: Uuid,
    pub account: String,
    pub integration: String,
    pub connector: String,
    pub title: String,
    pub running: bool,
    /// Setting values, secret ones sealed (bound to the connector).
    pub settings: BTreeMap<String, String>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsRecord {
    pub account: String,
    pub integration: String,
    /// Setting values, secret ones sealed.
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub account: String,
    pub agent: String,
    pub flow: String,
    /// The flow document as JSON (`wire::FlowDoc`), as the store holds it.
    pub document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerSecretRecord {
    pub account: String,
    pub agent: String,
    pub flow: String,
    /// Sealed.
    pub current: String,
    /// Sealed, and until when (Unix ms) it still signs.
    pub previous: Option<(String, i64)>,
}

/// One record of the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Account(AccountRecord),
    Token(TokenRecord),
    Connector(ConnectorRecord),
    Settings(SettingsRecord),
    Flow(FlowRecord),
    RunnerSecret(RunnerSecretRecord),
}

/// What the bucket holds under a key: the version, then the record.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u8,
    record: Record,
}

/// Why a bucket entry is not a record this daemon reads.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record version {0} is not one this daemon reads ({VERSION})")]
    Version(u8),
    #[error("record does not decode: {0}")]
    Malformed(String),
    #[error("record under key {key} is a {kind}'s")]
    Misplaced { key: String, kind: &'static str },
}

impl Record {
    pub fn key(&self) -> RecordKey {
        match self {
            Record::Account(a) => RecordKey::account(&a.idn),
            Record::Token(t) => RecordKey::token(&t.id),
            Record::Connector(c) => RecordKey::connector(&c.account, &c.integration, &c.connector),
            Record::Settings(s) => RecordKey::settings(&s.account, &s.integration),
            Record::Flow(f) => RecordKey::flow(&f.account, &f.agent, &f.flow),
            Record::RunnerSecret(r) => RecordKey::runner_secret(&r.account, &r.agent, &r.flow),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct StoredRef<'a> {
            v: u8,
            record: &'a Record,
        }
        rmp_serde::to_vec_named(&StoredRef {
            v: VERSION,
            record: self,
        })
        .expect("a record serializes")
    }

    /// The record stored under `key`, checked to be that key's.
    pub fn decode(key: &RecordKey, bytes: &[u8]) -> Result<Record, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: u8,
        }
        let version: Version =
            rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if version.v != VERSION {
            return Err(DecodeError::Version(version.v));
        }
        let stored: Stored =
            rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if stored.record.key() != *key {
            return Err(DecodeError::Misplaced {
                key: key.to_string(),
                kind: stored.record.key().kind().as_str(),
            });
        }
        Ok(stored.record)
    }
}

impl From<AccountRow> for Record {
    fn from(r: AccountRow) -> Record {
        Record::Account(AccountRecord {
            idn: r.idn,
            title: r.title,
            created_at: r.created_at,
        })
    }
}

impl From<TokenRow> for Record {
    fn from(r: TokenRow) -> Record {
        Record::Token(TokenRecord {
            id: r.id,
            account: r.account,
            name: r.name,
            scopes: r.scopes,
            hash: r.hash,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        })
    }
}

impl From<TokenRecord> for TokenRow {
    fn from(r: TokenRecord) -> TokenRow {
        TokenRow {
            id: r.id,
            account: r.account,
            name: r.name,
            scopes: r.scopes,
            hash: r.hash,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

impl From<ConnectorRow> for Record {
    fn from(r: ConnectorRow) -> Record {
        Record::Connector(ConnectorRecord {
            id: r.id,
            account: r.account,
            integration: r.integration,
            connector: r.connector,
            title: r.title,
            running: r.running,
            settings: r.settings,
            created_at: r.created_at,
        })
    }
}

impl From<ConnectorRecord> for ConnectorRow {
    fn from(r: ConnectorRecord) -> ConnectorRow {
        ConnectorRow {
            id: r.id,
            account: r.account,
            integration: r.integration,
            connector: r.connector,
            title: r.title,
            running: r.running,
            settings: r.settings,
            created_at: r.created_at,
        }
    }
}

impl From<FlowRow> for Record {
    fn from(r: FlowRow) -> Record {
        Record::Flow(FlowRecord {
            account: r.account,
            agent: r.agent,
            flow: r.flow,
            document: r.document,
        })
    }
}

impl From<FlowRecord> for FlowRow {
    fn from(r: FlowRecord) -> FlowRow {
        FlowRow {
            account: r.account,
            agent: r.agent,
            flow: r.flow,
            document: r.document,
        }
    }
}

impl From<RunnerSecretRow> for Record {
    fn from(r: RunnerSecretRow) -> Record {
        Record::RunnerSecret(RunnerSecretRecord {
            account: r.account,
            agent: r.agent,
            flow: r.flow,
            current: r.current,
            previous: r.previous,
        })
    }
}

impl From<RunnerSecretRecord> for RunnerSecretRow {
    fn from(r: RunnerSecretRecord) -> RunnerSecretRow {
        RunnerSecretRow {
            account: r.account,
            agent: r.agent,
            flow: r.flow,
            current: r.current,
            previous: r.previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let t = DateTime::parse_from_rfc3339("2026-12-07T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        vec![
            Record::Account(AccountRecord {
                idn: "acme".into(),
                title: "Acme".into(),
                created_at: t,
            }),
            Record::Token(TokenRecord {
                id: "AbC123xyz789".into(),
                account: "acme".into(),
                name: "ci".into(),
                scopes: "read,events:write".into(),
                hash: vec![0, 1, 2, 255],
                created_at: t,
                expires_at: None,
                revoked_at: Some(t),
            }),
            Record::Connector(ConnectorRecord {
                id: Uuid::from_u128(7),
                account: "acme".into(),
                integration: "telegram".into(),
                connector: "bot".into(),
                title: "Bot".into(),
                running: true,
                settings: BTreeMap::from([("bot_token".into(), "sealed:v2:k:abc".into())]),
                created_at: t.to_rfc3339(),
            }),
            Record::Settings(SettingsRecord {
                account: "acme".into(),
                integration: "twilio".into(),
                settings: BTreeMap::new(),
            }),
            Record::Flow(FlowRecord {
                account: "acme".into(),
                agent: "Bot".into(),
                flow: "Main".into(),
                document: r#"{"runner":{"kind":"queue"}}"#.into(),
            }),
            Record::RunnerSecret(RunnerSecretRecord {
                account: "acme".into(),
                agent: "Bot".into(),
                flow: "Main".into(),
                current: "sealed:v2:k:cur".into(),
                previous: Some(("sealed:v2:k:prev".into(), 17)),
            }),
        ]
    }

    #[test]
    fn every_record_round_trips_under_its_key() {
        let keys: Vec<String> = records().iter().map(|r| r.key().to_string()).collect();
        assert_eq!(
            keys,
            [
                "account.acme",
                "token.AbC123xyz789",
                "connector.acme.telegram.bot",
                "settings.acme.twilio",
                "flow.acme.Bot.Main",
                "runner_secret.acme.Bot.Main",
            ]
        );
        for r in records() {
            let key = RecordKey::parse(r.key().as_str()).expect("the key parses back");
            assert_eq!(key, r.key());
            let bytes = r.encode();
            assert_eq!(Record::decode(&key, &bytes).unwrap(), r);
        }
    }

    #[test]
    fn a_record_under_another_key_or_version_is_refused() {
        let rs = records();
        let bytes = rs[2].encode();
        let err = Record::decode(&RecordKey::connector("acme", "telegram", "other"), &bytes);
        assert!(matches!(err, Err(DecodeError::Misplaced { .. })), "{err:?}");
        let mut v2 = rmp_serde::to_vec_named(&Stored {
            v: 2,
            record: rs[0].clone(),
        })
        .unwrap();
        let err = Record::decode(&rs[0].key(), &v2);
        assert!(matches!(err, Err(DecodeError::Version(2))), "{err:?}");
        v2.truncate(3);
        assert!(matches!(
            Record::decode(&rs[0].key(), &v2),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn keys_that_are_no_records_do_not_parse() {
        for k in [
            "",
            "account",
            "account.",
            "account.a.b",
            "connector.a.b",
            "members.x",
            "flow.a.b.c.d",
            "token.a b",
        ] {
            assert_eq!(RecordKey::parse(k), None, "{k}");
        }
        assert_eq!(
            RecordKey::parse("settings.acme.twilio").map(|k| k.kind()),
            Some(Kind::Settings)
        );
    }

    #[test]
    fn a_sealed_setting_stays_sealed_in_the_encoding() {
        let bytes = records()[2].encode();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("sealed:v2:k:abc"));
    }
}
