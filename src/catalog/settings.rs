//! Setting values checked against their ISettingPreset: unknown idn, wrong type, a value
//! outside `possible_values`, a read-only or missing required setting. Every refusal names the
//! setting.

use std::collections::BTreeMap;

use super::{SettingFormat, SettingSpec, ValueType};

/// A refused setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting {setting:?}: {reason}")]
pub struct SettingError {
    pub setting: String,
    pub reason: String,
}

/// Settings of one connector or integration: idn → value. Ordered for stable output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings(pub BTreeMap<String, String>);

impl Settings {
    pub fn get(&self, idn: &str) -> Option<&str> {
        self.0.get(idn).map(String::as_str)
    }
}

/// Checks one value against its preset's type and allowed values.
pub fn check_value(preset: &SettingSpec, value: &str) -> Result<(), String> {
    match preset.value_type {
        ValueType::String | ValueType::Enum => {}
        ValueType::Number => {
            let n: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("must be a number (got {value:?})"))?;
            if !n.is_finite() {
                return Err(format!("must be a finite number (got {value:?})"));
            }
            if preset.integer && n.fract() != 0.0 {
                return Err(format!("must be a whole number (got {value:?})"));
            }
            if let Some(min) = preset.min.filter(|min| n < *min) {
                return Err(format!("must be at least {min} (got {value:?})"));
            }
            if let Some(max) = preset.max.filter(|max| n > *max) {
                return Err(format!("must be at most {max} (got {value:?})"));
            }
        }
        ValueType::Bool => {
            if value != "true" && value != "false" {
                return Err(format!("must be \"true\" or \"false\" (got {value:?})"));
            }
        }
        ValueType::Json => {
            serde_json::from_str::<serde_json::Value>(value)
                .map_err(|e| format!("must be JSON: {e}"))?;
        }
    }
    match preset.format {
        None => {}
        Some(SettingFormat::TimeZone) => {
            value.parse::<chrono_tz::Tz>().map_err(|_| {
                format!("must be an IANA time zone such as Europe/Berlin (got {value:?})")
            })?;
        }
        Some(SettingFormat::Url) => {
            let url = reqwest::Url::parse(value).map_err(|e| format!("must be a URL: {e}"))?;
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                return Err("must be an absolute http or https URL".into());
            }
        }
    }
    let restricted = preset.possible_values_only || preset.value_type == ValueType::Enum;
    if restricted && !preset.possible_values.iter().any(|p| p == value) {
        return Err(format!(
            "must be one of {:?} (got {value:?})",
            preset.possible_values
        ));
    }
    Ok(())
}

/// Who is writing: users may not write read-only settings; the daemon may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    User,
    Daemon,
}

/// Applies `changes` on top of `current`, checking each against `presets`. An empty value
/// clears the setting. Nothing is applied unless every change is valid.
pub fn apply(
    presets: &[SettingSpec],
    current: &Settings,
    changes: &[(String, String)],
    writer: Writer,
) -> Result<Settings, SettingError> {
    let mut next = current.clone();
    for (idn, value) in changes {
        let preset = presets
            .iter()
            .find(|p| &p.idn == idn)
            .ok_or_else(|| SettingError {
                setting: idn.clone(),
                reason: "unknown setting for this integration".into(),
            })?;
        if preset.is_readonly && writer == Writer::User {
            return Err(SettingError {
                setting: idn.clone(),
                reason: "read-only".into(),
            });
        }
        if value.is_empty() {
            next.0.remove(idn);
            continue;
        }
        check_value(preset, value).map_err(|reason| SettingError {
            setting: idn.clone(),
            reason,
        })?;
        next.0.insert(idn.clone(), value.clone());
    }
    Ok(next)
}

/// Checks that every required setting has a value (explicit or default): the run condition.
pub fn check_complete(presets: &[SettingSpec], settings: &Settings) -> Result<(), SettingError> {
    for p in presets {
        if p.is_required && settings.get(&p.idn).is_none() && p.default_value.is_none() {
            return Err(SettingError {
                setting: p.idn.clone(),
                reason: "required, and has no value".into(),
            });
        }
    }
    Ok(())
}

/// The value in force: the explicit one, else the preset's default.
pub fn effective<'a>(
    presets: &'a [SettingSpec],
    settings: &'a Settings,
    idn: &str,
) -> Option<&'a str> {
    settings.get(idn).or_else(|| {
        presets
            .iter()
            .find(|p| p.idn == idn)
            .and_then(|p| p.default_value.as_deref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ControlType;

    fn preset(idn: &str, vt: ValueType) -> SettingSpec {
        SettingSpec {
            idn: idn.into(),
            title: idn.into(),
            control_type: ControlType::Text,
            value_type: vt,
            is_required: false,
            is_readonly: false,
            is_secret: false,
            default_value: None,
            description: String::new(),
            group: None,
            possible_values: vec![],
            possible_values_only: false,
            min: None,
            max: None,
            integer: false,
            format: None,
        }
    }

    fn presets() -> Vec<SettingSpec> {
        let mut url = preset("base_url", ValueType::String);
        url.is_required = true;
        let mut voice = preset("voice", ValueType::Enum);
        voice.possible_values = vec!["luna".into(), "zeus".into()];
        let mut secret = preset("client_secret", ValueType::String);
        secret.is_readonly = true;
        let mut lang = preset("language", ValueType::String);
        lang.possible_values = vec!["en-US".into(), "de-DE".into()];
        lang.possible_values_only = true;
        let mut retries = preset("retries", ValueType::Number);
        retries.default_value = Some("3".into());
        let mut per_persona = preset("max_timers_per_persona", ValueType::Number);
        (per_persona.min, per_persona.max, per_persona.integer) = (Some(1.0), Some(1000.0), true);
        let mut min_interval = preset("min_interval_seconds", ValueType::Number);
        (min_interval.min, min_interval.max) = (Some(1.0), Some(86_400.0));
        let mut tz = preset("time_zone", ValueType::String);
        tz.format = Some(SettingFormat::TimeZone);
        let mut hook = preset("webhook_url", ValueType::String);
        hook.format = Some(SettingFormat::Url);
        vec![
            per_persona,
            min_interval,
            tz,
            hook,
            url,
            voice,
            secret,
            lang,
            retries,
            preset("verbose", ValueType::Bool),
            preset("headers", ValueType::Json),
        ]
    }

    fn check(changes: &[(&str, &str)], expected: Result<(), (&str, &str)>) {
        let changes: Vec<_> = changes
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let got = apply(&presets(), &Settings::default(), &changes, Writer::User);
        match expected {
            Ok(()) => assert!(got.is_ok(), "{changes:?}: {got:?}"),
            Err((setting, reason_part)) => {
                let e = got.expect_err("should be refused");
                assert_eq!(e.setting, setting);
                assert!(e.reason.contains(reason_part), "{}", e.reason);
            }
        }
    }

    #[test]
    fn values_against_presets() {
        check(&[("base_url", "https://x")], Ok(()));
        check(&[("nope", "1")], Err(("nope", "unknown setting")));
        check(
            &[("retries", "three")],
            Err(("retries", "must be a number")),
        );
        check(&[("retries", "2.5")], Ok(()));
        check(
            &[("verbose", "yes")],
            Err(("verbose", "\"true\" or \"false\"")),
        );
        check(&[("verbose", "true")], Ok(()));
        check(&[("headers", "{")], Err(("headers", "must be JSON")));
        check(&[("headers", "{\"a\":\"b\"}")], Ok(()));
        check(&[("voice", "bob")], Err(("voice", "must be one of")));
        check(&[("voice", "zeus")], Ok(()));
        check(
            &[("language", "fr-FR")],
            Err(("language", "must be one of")),
        );
        check(
            &[("client_secret", "x")],
            Err(("client_secret", "read-only")),
        );
        // Ranges, whole numbers and formats (the audit's accepted values are refused).
        check(
            &[("min_interval_seconds", "-5")],
            Err(("min_interval_seconds", "must be at least 1")),
        );
        check(
            &[("min_interval_seconds", "0.5")],
            Err(("min_interval_seconds", "at least 1")),
        );
        check(&[("min_interval_seconds", "1.5")], Ok(()));
        check(
            &[("max_timers_per_persona", "-1")],
            Err(("max_timers_per_persona", "at least 1")),
        );
        check(
            &[("max_timers_per_persona", "2.5")],
            Err(("max_timers_per_persona", "whole number")),
        );
        check(
            &[("max_timers_per_persona", "1001")],
            Err(("max_timers_per_persona", "at most 1000")),
        );
        check(&[("max_timers_per_persona", "10")], Ok(()));
        check(
            &[("time_zone", "../../etc/localtime")],
            Err(("time_zone", "IANA time zone")),
        );
        check(&[("time_zone", "America/New_York")], Ok(()));
        check(
            &[("webhook_url", "ftp://x/y")],
            Err(("webhook_url", "http or https")),
        );
        check(
            &[("webhook_url", "not a url")],
            Err(("webhook_url", "must be a URL")),
        );
        check(&[("webhook_url", "https://hooks.example.com/x")], Ok(()));
        // Nothing is applied when one change is bad.
        check(
            &[("base_url", "https://x"), ("retries", "x")],
            Err(("retries", "number")),
        );
    }

    #[test]
    fn daemon_may_write_read_only_and_empty_clears() {
        let p = presets();
        let s = apply(
            &p,
            &Settings::default(),
            &[("client_secret".into(), "abc".into())],
            Writer::Daemon,
        )
        .unwrap();
        assert_eq!(s.get("client_secret"), Some("abc"));
        let s = apply(
            &p,
            &s,
            &[("client_secret".into(), "".into())],
            Writer::Daemon,
        )
        .unwrap();
        assert_eq!(s.get("client_secret"), None);
    }

    #[test]
    fn completeness_uses_defaults() {
        let p = presets();
        let e = check_complete(&p, &Settings::default()).unwrap_err();
        assert_eq!(e.setting, "base_url");
        let mut s = Settings::default();
        s.0.insert("base_url".into(), "https://x".into());
        assert!(check_complete(&p, &s).is_ok());
        assert_eq!(effective(&p, &s, "retries"), Some("3"));
    }
}
