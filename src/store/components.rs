//! The store seam of native components: each keeps its own tables, made by its own migrations,
//! applied in order under its integration idn (`component_migrations` remembers how far each
//! namespace got), once, when the daemon opens the store. A component reads and writes its
//! tables through [`Store::read`] and [`Store::write`] like any part of the daemon.

use rusqlite::params;

use super::{Store, StoreError, Written};

impl Store {
    /// Applies the steps of `namespace` not applied yet, in order, in one transaction: all of
    /// them or none. Steps already applied are never run again, so a step, once released, is
    /// never edited: a change is a new step.
    pub async fn migrate_component(
        &self,
        namespace: &'static str,
        steps: &'static [&'static str],
    ) -> Result<(), StoreError> {
        if steps.is_empty() {
            return Ok(());
        }
        // One job of a group commit: a savepoint makes its steps all-or-none within it.
        self.write(move |tx| {
            tx.execute_batch("SAVEPOINT component_migration")?;
            let applied = apply(tx, namespace, steps);
            let end = match applied {
                Ok(()) => "RELEASE component_migration",
                Err(_) => "ROLLBACK TO component_migration; RELEASE component_migration",
            };
            tx.execute_batch(end)?;
            applied.map(|()| Written::Done)
        })
        .await
        .map(|_| ())
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, namespace: &str, steps: &[&str]) -> rusqlite::Result<()> {
    let done: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM component_migrations WHERE namespace = ?1",
        [namespace],
        |r| r.get(0),
    )?;
    for (i, step) in steps.iter().enumerate().skip(done as usize) {
        tx.execute_batch(step)?;
        tx.execute(
            "INSERT INTO component_migrations (namespace, version) VALUES (?1, ?2)",
            params![namespace, i as i64 + 1],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let dir = std::env::temp_dir().join(format!("sb-components-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Store::open(&dir.join("test.db"), 64, 5000).unwrap()
    }

    fn tables(store: &Store) -> Vec<String> {
        store
            .read(|c| {
                let mut q = c.prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'demo_%' ORDER BY name",
                )?;
                let names = q.query_map([], |r| r.get(0))?.collect();
                names
            })
            .unwrap()
    }

    const V1: &[&str] = &["CREATE TABLE demo_a (x INTEGER)"];
    const V2: &[&str] = &[
        "CREATE TABLE demo_a (x INTEGER)",
        "CREATE TABLE demo_b (y TEXT)",
    ];

    #[tokio::test]
    async fn steps_apply_once_in_order_and_later_steps_follow() {
        let s = store();
        s.migrate_component("demo", V1).await.unwrap();
        // Applied again (the next start): nothing runs twice (a second CREATE would fail).
        s.migrate_component("demo", V1).await.unwrap();
        assert_eq!(tables(&s), ["demo_a"]);
        // A later build adds a step: only that one runs.
        s.migrate_component("demo", V2).await.unwrap();
        assert_eq!(tables(&s), ["demo_a", "demo_b"]);
    }

    #[tokio::test]
    async fn namespaces_are_apart_and_a_failing_step_applies_nothing() {
        let s = store();
        s.migrate_component("demo", V1).await.unwrap();
        // Another component's first step is its own version 1.
        s.migrate_component("other", &["CREATE TABLE demo_c (z INTEGER)"])
            .await
            .unwrap();
        assert_eq!(tables(&s), ["demo_a", "demo_c"]);
        let broken: &'static [&'static str] = &["CREATE TABLE demo_d (x)", "NOT SQL"];
        assert!(s.migrate_component("third", broken).await.is_err());
        assert_eq!(tables(&s), ["demo_a", "demo_c"], "all of its steps or none");
    }
}
