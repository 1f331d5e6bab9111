//! What an outbound URL may carry and show. Credentials have no place in one
//! ([`has_userinfo`]: a webhook runner's credential is its signing secret, and a URL is shown
//! back by `GET /v1/flows`); a log line shows a URL through [`masked_url`], with its query
//! values masked (`?key=***`), since a query often holds a key.

/// Whether `url` has a userinfo part (`user:pass@`, `user@`, even an empty `@`) before its
/// host, as a WHATWG URL parser reads it: slashes after the scheme are skipped and the
/// authority ends at the first `/`, `\`, `?` or `#`. Read from the text, so a URL that does
/// not parse is judged too.
pub fn has_userinfo(url: &str) -> bool {
    let Some((_, rest)) = url.split_once(':') else {
        return false;
    };
    let rest = rest.trim_start_matches(['/', '\\']);
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
        || reqwest::Url::parse(url)
            .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// `url` for a log line: each query value replaced by `***` (`?key=***&flag`, a bare item
/// `***`), a userinfo part by `***@`, the fragment dropped. A URL that does not parse shows
/// only that.
pub fn masked_url(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        return "(a URL that does not parse)".to_owned();
    };
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username("***");
    }
    if let Some(query) = u.query() {
        let masked = query
            .split('&')
            .map(|item| match item.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if item.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        u.set_query(Some(&masked));
    }
    u.set_fragment(None);
    u.into()
}

/// `text` (an error's message, say) with every occurrence of `url` masked as by [`masked_url`].
pub fn mask_in(text: &str, url: &str) -> String {
    if url.is_empty() {
        return text.to_owned();
    }
    text.replace(url, &masked_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_found_however_it_is_written() {
        for url in [
            "https://user:pass@host/x",
            "https://user@host/x",
            "https://:pass@host/x",
            "https://@host/x",
            "http:///user:pass@host/x",
            "http:\\\\user:pass@host/x",
            "https://us\ter:p@host/x",
            "https://user:pa ss@host/x%zz",
        ] {
            assert!(has_userinfo(url), "{url:?}");
        }
        for url in [
            "https://host/x",
            "https://host:8443/x?mail=a@b.example",
            "https://host/a@b",
            "https://host#frag@x",
            "https://host\\a@b",
            "https://[::1]:80/x",
            "not a url",
        ] {
            assert!(!has_userinfo(url), "{url:?}");
        }
    }

    #[test]
    fn query_values_and_userinfo_are_masked() {
        let cases = [
            (
                "https://runner.example/x?key=s3cr3t&flag&b=",
                "https://runner.example/x?key=***&***&b=***",
            ),
            (
                "https://user:pass@runner.example:8443/a/b?token=t#frag",
                "https://***@runner.example:8443/a/b?token=***",
            ),
            ("http://127.0.0.1:9/run", "http://127.0.0.1:9/run"),
            ("http://h/run?", "http://h/run?"),
            ("::", "(a URL that does not parse)"),
        ];
        for (url, shown) in cases {
            assert_eq!(masked_url(url), shown, "{url}");
        }
        let error = "error sending request for url (https://h/x?key=s3cr3t): connection refused";
        assert_eq!(
            mask_in(error, "https://h/x?key=s3cr3t"),
            "error sending request for url (https://h/x?key=***): connection refused"
        );
    }
}
