//! The subjects of the NATS transport, under a configurable prefix:
//! `<p>.events.<account>.<integration>.<connector>` in, `<p>.commands.<account>.<integration>.<connector>`
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
        if parts.next().is_some() {
            return None;
        }
        Some(EventSubject {
            account,
            integration,
            connector,
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
                connector: "bot"
            })
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
