//! The durable dead-letter store: [`DeadLetterStore`] over the SQLite file. Records are
//! written through the store's writer (not awaited: an actor must not block), read back with
//! their MessagePack envelope decoded.

use rusqlite::params;
use uuid::Uuid;

use super::{Store, StoreError, Written};
use crate::dead_letter::{
    DeadLetter, DeadLetterPayload, DeadLetterReason, DeadLetterStore, ReadError,
};
use crate::domain::{Idn, PersonaId};
use crate::wire::envelope::{CommandEnvelope, Encoding, EventEnvelope, Limits};

pub struct SqliteDeadLetters {
    store: Store,
    /// Of bytes that never decoded, how many a letter keeps (the rest is counted in its
    /// detail, not kept). A copy published elsewhere (the NATS DLQ subject) is not cut.
    max_raw_bytes: usize,
    quota: Option<Quota>,
}

impl SqliteDeadLetters {
    pub fn new(store: Store) -> Self {
        SqliteDeadLetters {
            store,
            max_raw_bytes: usize::MAX,
            quota: None,
        }
    }

    /// Keeps each account within `retention` between the periodic prunes too: an account that
    /// recorded an eighth of its count limit since its last prune is pruned at once.
    pub fn with_quota(mut self, retention: Retention) -> Self {
        self.quota = Some(Quota {
            retention,
            every: (retention.max_count / 8).max(64),
            since_prune: dashmap::DashMap::new(),
        });
        self
    }

    /// Counts a letter of `account`; prunes the account when its quota says so.
    fn counted(&self, account: &str) {
        let Some(q) = &self.quota else { return };
        let due = {
            let mut n = q.since_prune.entry(account.to_owned()).or_default();
            *n += 1;
            let due = *n >= q.every;
            if due {
                *n = 0;
            }
            due
        };
        if due {
            let (account, retention) = (account.to_owned(), q.retention);
            self.store.write_later(move |tx| {
                prune(tx, retention, Some(&account))?.count();
                Ok(Written::Done)
            });
        }
    }

    /// Keeps at most `n` bytes of a body that never decoded.
    pub fn with_raw_limit(mut self, n: usize) -> Self {
        self.max_raw_bytes = n;
        self
    }
}

fn reason_of(code: &str) -> Option<DeadLetterReason> {
    DeadLetterReason::of_code(code)
}

type Raw = (
    String,
    String,
    String,
    String,
    String,
    Vec<u8>,
    Option<String>,
    String,
);

/// The stored letter, or the reason it does not decode.
fn decode(raw: Raw) -> Result<DeadLetter, ReadError> {
    let id_text = raw.0.clone();
    decoded(raw).ok_or_else(|| ReadError::Corrupt {
        id: id_text,
        reason: "a stored field does not decode".into(),
    })
}

fn decoded(raw: Raw) -> Option<DeadLetter> {
    let (id, account, reason, detail, kind, payload, persona, at) = raw;
    let unlimited = Limits {
        max_arguments: usize::MAX,
        max_argument_bytes: usize::MAX,
    };
    let persona = persona
        .and_then(|p| Uuid::parse_str(&p).ok())
        .map(PersonaId);
    let payload = match kind.as_str() {
        "event" => {
            let env: EventEnvelope = Encoding::MessagePack.decode(&payload).ok()?;
            DeadLetterPayload::Event {
                event: Box::new(env.into_domain(unlimited).ok()?),
                persona,
            }
        }
        "command" => {
            let env: CommandEnvelope = Encoding::MessagePack.decode(&payload).ok()?;
            DeadLetterPayload::Command {
                command: Box::new(env.into_domain(unlimited).ok()?),
                persona,
            }
        }
        _ => {
            let split = payload.iter().position(|b| *b == 0)?;
            DeadLetterPayload::Raw {
                content_type: String::from_utf8_lossy(&payload[..split]).into_owned(),
                bytes: payload[split + 1..].to_vec(),
            }
        }
    };
    Some(DeadLetter {
        id: Uuid::parse_str(&id).ok()?,
        account: Idn::parse("account", &account).ok()?,
        reason: reason_of(&reason)?,
        detail,
        payload,
        at: chrono::DateTime::parse_from_rfc3339(&at)
            .ok()?
            .with_timezone(&chrono::Utc),
    })
}

const SELECT: &str =
    "SELECT id, account, reason, detail, kind, payload, persona, at FROM dead_letters";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

/// What one pass of the retention policy pruned, by limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub age: u64,
    pub count: u64,
    pub bytes: u64,
}

/// The retention policy's limits.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age_ms: i64,
    pub max_count: u64,
    pub max_bytes: u64,
}

impl Pruned {
    /// Counts what was pruned, by the limit that pruned.
    pub fn count(&self) {
        for (by, n) in [
            ("age", self.age),
            ("count", self.count),
            ("bytes", self.bytes),
        ] {
            if n > 0 {
                crate::telemetry::handles::dead_letters_pruned(by, n);
            }
        }
    }
}

/// Prunes the dead letters of `account` (of every account when `None`), each account on its
/// own: those older than the age limit, then the oldest past the count limit, then the oldest
/// until the payloads fit the byte limit. One account's letters never push out another's.
fn prune(
    tx: &rusqlite::Transaction<'_>,
    r: Retention,
    account: Option<&str>,
) -> rusqlite::Result<Pruned> {
    let before = (chrono::Utc::now() - chrono::Duration::milliseconds(r.max_age_ms)).to_rfc3339();
    // `?2 IS NULL` selects every account.
    let age = tx.execute(
        "DELETE FROM dead_letters WHERE at < ?1 AND (?2 IS NULL OR account = ?2)",
        params![before, account],
    )? as u64;
    let count = tx.execute(
        "DELETE FROM dead_letters WHERE id IN (
           SELECT id FROM (SELECT id, ROW_NUMBER()
             OVER (PARTITION BY account ORDER BY at DESC, id DESC) AS n
             FROM dead_letters WHERE ?2 IS NULL OR account = ?2)
           WHERE n > ?1)",
        params![r.max_count as i64, account],
    )? as u64;
    // The newest letters of each account whose running total of bytes fits stay.
    let bytes = tx.execute(
        "DELETE FROM dead_letters WHERE id IN (
           SELECT id FROM (SELECT id, SUM(length(payload) + length(detail))
             OVER (PARTITION BY account ORDER BY at DESC, id DESC) AS running
             FROM dead_letters WHERE ?2 IS NULL OR account = ?2)
           WHERE running > ?1)",
        params![r.max_bytes as i64, account],
    )? as u64;
    Ok(Pruned { age, count, bytes })
}

impl Store {
    /// Prunes every account's dead letters (see [`prune`]).
    pub async fn prune_dead_letters(&self, r: Retention) -> Result<Pruned, StoreError> {
        let pruned = std::sync::Arc::new(std::sync::Mutex::new(Pruned::default()));
        let out = pruned.clone();
        self.write(move |tx| {
            *out.lock().expect("pruned counts") = prune(tx, r, None)?;
            Ok(Written::Done)
        })
        .await?;
        let p = *pruned.lock().expect("pruned counts");
        Ok(p)
    }
}

/// An account's quota kept between prunes: past [`Quota::every`] letters recorded since its
/// last prune, the account is pruned at once (not at the next pass), so a flood of one
/// account's letters stays near its limits.
struct Quota {
    retention: Retention,
    every: u64,
    since_prune: dashmap::DashMap<String, u64>,
}

impl DeadLetterStore for SqliteDeadLetters {
    fn record(&self, letter: DeadLetter) {
        let (kind, payload, persona) = match &letter.payload {
            DeadLetterPayload::Event { event, persona } => (
                "event",
                Encoding::MessagePack.encode(&EventEnvelope::from_domain(event)),
                persona.map(|p| p.0.to_string()),
            ),
            DeadLetterPayload::Command { command, persona } => (
                "command",
                Encoding::MessagePack.encode(&CommandEnvelope::from_domain(command)),
                persona.map(|p| p.0.to_string()),
            ),
            DeadLetterPayload::Raw {
                content_type,
                bytes,
            } => (
                "raw",
                {
                    let mut b = content_type.as_bytes().to_vec();
                    b.push(0);
                    b.extend_from_slice(&bytes[..bytes.len().min(self.max_raw_bytes)]);
                    b
                },
                None,
            ),
        };
        let mut detail = letter.detail;
        if let DeadLetterPayload::Raw { bytes, .. } = &letter.payload {
            if bytes.len() > self.max_raw_bytes {
                detail.push_str(&format!(
                    " ({} bytes; the first {} kept)",
                    bytes.len(),
                    self.max_raw_bytes
                ));
            }
        }
        let letter_account = letter.account.as_str();
        let (id, account, reason, at) = (
            letter.id.to_string(),
            letter.account.to_string(),
            letter.reason.code(),
            letter.at.to_rfc3339(),
        );
        self.store.write_later(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO dead_letters (id, account, reason, detail, kind, payload, persona, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, account, reason, detail, kind, payload, persona, at],
            )?;
            Ok(Written::Done)
        });
        self.counted(letter_account);
    }

    fn list(&self, account: &Idn, limit: usize) -> Result<Vec<DeadLetter>, ReadError> {
        let account = account.to_string();
        self.store
            .read(|c| {
                let mut st = c.prepare(&format!(
                    "{SELECT} WHERE account = ?1 ORDER BY at DESC, id DESC LIMIT ?2"
                ))?;
                let rows = st.query_map(params![account, limit as i64], row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| ReadError::Unavailable(e.to_string()))?
            .into_iter()
            .map(decode)
            .collect()
    }

    fn get(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        self.store
            .read(|c| {
                let mut st = c.prepare(&format!("{SELECT} WHERE id = ?1"))?;
                let mut rows = st.query_map(params![id.to_string()], row)?;
                rows.next().transpose()
            })
            .map_err(|e| ReadError::Unavailable(e.to_string()))?
            .map(decode)
            .transpose()
    }

    fn remove(&self, id: Uuid) -> Result<Option<DeadLetter>, ReadError> {
        let Some(letter) = self.get(id)? else {
            return Ok(None);
        };
        self.store.write_later(move |tx| {
            tx.execute(
                "DELETE FROM dead_letters WHERE id = ?1",
                params![id.to_string()],
            )?;
            Ok(Written::Done)
        });
        Ok(Some(letter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::DeadLetter;

    fn store() -> Store {
        store_of(64)
    }

    /// A store whose writer queue holds `capacity` writes (a fuller one skips dead letters).
    fn store_of(capacity: usize) -> Store {
        let dir = std::env::temp_dir().join(format!("sb-dl-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("t.db"), capacity, 5000).unwrap()
    }

    fn letter(n: usize, bytes: usize, age: chrono::Duration) -> DeadLetter {
        let mut l = DeadLetter::raw(
            Idn::known("default"),
            format!("letter {n}"),
            "application/json".into(),
            vec![b'x'; bytes],
        );
        l.at = chrono::Utc::now() - age;
        l
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retention_prunes_the_oldest_first_by_age_count_and_bytes() {
        let store = store();
        let letters = SqliteDeadLetters::new(store.clone());
        let list = || letters.list(&Idn::known("default"), 100).unwrap();
        // Two too old, then ten by age 10..1 minutes, 1000 bytes each.
        letters.record(letter(100, 10, chrono::Duration::days(40)));
        letters.record(letter(101, 10, chrono::Duration::days(31)));
        for n in 0..10 {
            letters.record(letter(n, 1000, chrono::Duration::minutes(10 - n as i64)));
        }
        store.flush().await.unwrap();
        let day = 24 * 3600 * 1000;
        let p = store
            .prune_dead_letters(Retention {
                max_age_ms: 30 * day,
                max_count: 8,
                max_bytes: 1_000_000,
            })
            .await
            .unwrap();
        assert_eq!((p.age, p.count, p.bytes), (2, 2, 0));
        let kept: Vec<String> = list().into_iter().map(|l| l.detail).collect();
        assert_eq!(kept.len(), 8);
        assert!(!kept.contains(&"letter 0".to_owned()) && !kept.contains(&"letter 1".to_owned()));
        // Bytes: room for about five of them; the newest stay.
        let p = store
            .prune_dead_letters(Retention {
                max_age_ms: 30 * day,
                max_count: 100,
                max_bytes: 5_200,
            })
            .await
            .unwrap();
        assert_eq!(p.bytes, 3);
        let kept: Vec<String> = list().into_iter().map(|l| l.detail).collect();
        assert_eq!(kept.first().map(String::as_str), Some("letter 9"));
        assert_eq!(kept.len(), 5);
    }

    fn letter_of(account: &str, n: usize, bytes: usize) -> DeadLetter {
        let mut l = letter(n, bytes, chrono::Duration::minutes(1));
        l.account = Idn::known(account);
        l
    }

    /// The audit's case: one account's junk must not erase another's only record of its refused
    /// events. Limits hold per account, in the periodic pass and between passes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_account_never_prunes_another_s_letters() {
        let store = store_of(4096);
        let day = 24 * 3600 * 1000;
        let retention = Retention {
            max_age_ms: 30 * day,
            max_count: 64,
            max_bytes: 1_000_000,
        };
        let letters = SqliteDeadLetters::new(store.clone());
        for n in 0..5 {
            letters.record(letter_of("quiet", n, 100));
        }
        for n in 0..500 {
            letters.record(letter_of("noisy", n, 100));
        }
        store.flush().await.unwrap();
        let p = store.prune_dead_letters(retention).await.unwrap();
        assert_eq!(p.count, 500 - 64, "only the noisy account is cut");
        assert_eq!(letters.list(&Idn::known("quiet"), 100).unwrap().len(), 5);
        assert_eq!(letters.list(&Idn::known("noisy"), 1000).unwrap().len(), 64);
        // Bytes per account too.
        let p = store
            .prune_dead_letters(Retention {
                max_bytes: 64 * 60,
                ..retention
            })
            .await
            .unwrap();
        assert!(p.bytes > 0);
        assert_eq!(letters.list(&Idn::known("quiet"), 100).unwrap().len(), 5);

        // With a quota, a flood is pruned as it is recorded: the noisy account stays near its
        // limit before any periodic pass, and the quiet one keeps everything.
        let store = store_of(4096);
        let letters = SqliteDeadLetters::new(store.clone()).with_quota(retention);
        for n in 0..5 {
            letters.record(letter_of("quiet", n, 100));
        }
        for n in 0..2_000 {
            letters.record(letter_of("noisy", n, 100));
        }
        store.flush().await.unwrap();
        let noisy = letters.list(&Idn::known("noisy"), 10_000).unwrap().len();
        assert!(
            noisy <= 64 + 64,
            "{noisy} letters kept, limit 64 + one quota step"
        );
        assert_eq!(letters.list(&Idn::known("quiet"), 100).unwrap().len(), 5);
    }
}
