//! The origins a `newo_chat` connector serves: its `domain` setting, one or more web origins
//! (`https://example.com`, `http://localhost`) separated by commas or spaces. A request's
//! `Origin` (or a socket's `origin` query value) is allowed when it is one of them: same
//! scheme, host and port (the scheme's default port when none is written), compared without
//! case. Decision: `localhost`, `127.0.0.1` and `[::1]` written without a port allow any port
//! (local development servers pick theirs). An entry that is not an origin allows nothing.

/// An origin, lowercased: scheme, host, port (`None`: any port, for loopback hosts only).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// Whether `origin` is among the origins of the `domain` setting.
pub fn allowed(domain: &str, origin: &str) -> bool {
    let Some(given) = parse(origin, false) else {
        return false;
    };
    entries(domain).any(|o| {
        o.scheme == given.scheme
            && o.host == given.host
            && (o.port.is_none() || o.port == given.port)
    })
}

/// The parsed entries of a `domain` setting (bad ones left out).
fn entries(domain: &str) -> impl Iterator<Item = Origin> + '_ {
    domain
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .filter_map(|s| parse(s, true))
}

/// `scheme://host[:port]` (a trailing `/` tolerated in a setting). `setting`: a loopback host
/// without a port stands for any port.
fn parse(text: &str, setting: bool) -> Option<Origin> {
    let text = text.trim();
    let text = if setting {
        text.trim_end_matches('/')
    } else {
        text
    };
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && !p.contains(']') => (h, Some(p.parse::<u16>().ok()?)),
        _ => (rest, None),
    };
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
    {
        return None;
    }
    let host = host.to_ascii_lowercase();
    let loopback = matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    let port = match port {
        Some(p) => Some(p),
        None if setting && loopback => None,
        None => Some(default),
    };
    Some(Origin { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(domain: &str, origin: &str, expected: bool) {
        assert_eq!(allowed(domain, origin), expected, "{domain:?} / {origin:?}");
    }

    #[test]
    fn an_origin_is_allowed_when_the_domain_setting_lists_it() {
        check("https://example.com", "https://example.com", true);
        check("https://example.com/", "https://EXAMPLE.com", true);
        check("https://example.com", "https://example.com:443", true);
        check("https://example.com", "http://example.com", false);
        check("https://example.com", "https://evil.example.com", false);
        check("https://example.com", "https://example.com.evil.net", false);
        check("https://example.com", "https://example.com:8443", false);
        check("https://a.com, https://b.com", "https://b.com", true);
        check("https://a.com https://b.com", "https://c.com", false);
        check("http://localhost", "http://localhost:5173", true);
        check("http://localhost", "http://localhost", true);
        check("http://localhost:3000", "http://localhost:5173", false);
        check("http://127.0.0.1", "http://127.0.0.1:40000", true);
        check("example.com", "https://example.com", false);
        check("https://example.com", "null", false);
        check("https://example.com", "", false);
        check("", "https://example.com", false);
        check("https://example.com/path", "https://example.com", false);
    }
}
