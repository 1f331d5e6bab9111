//! The subjects of the NATS transport, under a configurable prefix:
//! `<p>.events.<account>.<integration>.<connector>[.<key>]` in (`<key>`: the partition key of the
//! actor, [`partition_key`]; the stream maps it to `…<key>.<partition>` when partitioned), `<p>.commands.<account>.<integration>.<connector>`
//! out, `<p>.invoke.<account>.<agent>` to queue runners, `<p>.results.<account>` back,
//! `<p>.dlq.<account>` for dead letters, `<p>.cancel.<account>.<agent>` (core NATS, no stream)
//! for cancel notices to queue runners.

#[derive(Debug, Clone)]
pub struct Subjects {
    prefix: String,
}

/// Where an inbound event subject says the event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSubject<'a> {
    pub account: &'a str,
    pub integration: &'a str,
    pub connector: &'a str,
    /// The partition key the publisher computed ([`partition_key`]), on 6-token subjects.
    pub key: Option<&'a str>,
}

/// The partition key of an actor: lowercase hex of the first 8 bytes of SHA-256 of its
/// `external_id` (UTF-8), 16 characters. An event without an actor uses the empty string's.
/// Adapters compute it; the events stream's subject transform maps it to a partition.
pub fn partition_key(external_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(external_id.as_bytes())[..8])
}

impl Subjects {
    pub fn new(prefix: &str) -> Self {
        Subjects {
            prefix: prefix.to_owned(),
        }
    }

    pub fn events(&self, account: &str, integration: &str, connector: &str) -> String {
        format!("{}.events.{account}.{integration}.{connector}", self.prefix)
    }

    /// The keyed events subject: one token more, the actor's [`partition_key`].
    pub fn events_keyed(
        &self,
        account: &str,
        integration: &str,
        connector: &str,
        key: &str,
    ) -> String {
        format!(
            "{}.events.{account}.{integration}.{connector}.{key}",
            self.prefix
        )
    }

    /// The events subjects of a partitioned stream: keyed ones as published, and as stored
    /// (the partition appended by the stream's subject transform).
    pub fn partitioned_events(&self) -> Vec<String> {
        vec![
            format!("{}.events.*.*.*.*", self.prefix),
            format!("{}.events.*.*.*.*.*", self.prefix),
        ]
    }

    /// The stream's subject transform for `partitions` partitions: keyed subject in, the same
    /// with the key's partition (`{{partition(P, key)}}`, 0..P) appended out.
    pub fn partition_transform(&self, partitions: u32) -> (String, String) {
        (
            format!("{}.events.*.*.*.*", self.prefix),
            format!(
                "{}.events.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{{{{wildcard(4)}}}}.{{{{partition({partitions},4)}}}}",
                self.prefix
            ),
        )
    }

    /// The stored subjects of partition `n`, the filter of its consumer.
    pub fn partition(&self, n: u32) -> String {
        format!("{}.events.*.*.*.*.{n}", self.prefix)
    }

    pub fn commands(&self, account: &str, integration: &str, connector: &str) -> String {
        format!(
            "{}.commands.{account}.{integration}.{connector}",
            self.prefix
        )
    }

    pub fn invoke(&self, account: &str, agent: &str) -> String {
        format!("{}.invoke.{account}.{agent}", self.prefix)
    }

    pub fn cancel(&self, account: &str, agent: &str) -> String {
        format!("{}.cancel.{account}.{agent}", self.prefix)
    }

    pub fn results(&self, account: &str) -> String {
        format!("{}.results.{account}", self.prefix)
    }

    pub fn dlq(&self, account: &str) -> String {
        format!("{}.dlq.{account}", self.prefix)
    }

    /// `<p>.<kind>.>`: every subject of one kind, for streams and consumers.
    pub fn all(&self, kind: &str) -> String {
        format!("{}.{kind}.>", self.prefix)
    }

    /// Parses an events subject.
    pub fn parse_event<'a>(&self, subject: &'a str) -> Option<EventSubject<'a>> {
        let rest = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(".events.")?;
        let mut parts = rest.split('.');
        let (account, integration, connector) = (parts.next()?, parts.next()?, parts.next()?);
        let key = parts.next();
        // The partition the stream's transform appended, if any.
        if parts.next().is_some_and(|p| p.parse::<u32>().is_err()) || parts.next().is_some() {
            return None;
        }
        Some(EventSubject {
            account,
            integration,
            connector,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        let s = Subjects::new("sb");
        let e = s.events("default", "telegram", "bot");
        assert_eq!(e, "sb.events.default.telegram.bot");
        assert_eq!(
            s.parse_event(&e),
            Some(EventSubject {
                account: "default",
                integration: "telegram",
                connector: "bot",
                key: None,
            })
        );
        let keyed = s.events_keyed("default", "telegram", "bot", &partition_key("42"));
        assert_eq!(keyed, "sb.events.default.telegram.bot.73475cb40a568e8d");
        for stored in [keyed.clone(), format!("{keyed}.17")] {
            assert_eq!(
                s.parse_event(&stored).and_then(|e| e.key),
                Some("73475cb40a568e8d")
            );
        }
        assert_eq!(
            s.parse_event(&format!("{keyed}.x")),
            None,
            "a partition is a number"
        );
        assert_eq!(s.parse_event(&format!("{keyed}.1.2")), None);
        assert_eq!(s.partition(3), "sb.events.*.*.*.*.3");
        assert_eq!(
            s.partition_transform(24).1,
            "sb.events.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}.{{partition(24,4)}}"
        );
        assert_eq!(s.parse_event("sb.events.default.telegram"), None);
        assert_eq!(s.parse_event("other.events.a.b.c"), None);
        assert_eq!(s.commands("a", "b", "c"), "sb.commands.a.b.c");
        assert_eq!(s.invoke("a", "Agent"), "sb.invoke.a.Agent");
        assert_eq!(s.results("a"), "sb.results.a");
        assert_eq!(s.dlq("a"), "sb.dlq.a");
        assert_eq!(s.all("events"), "sb.events.>");
    }
}
