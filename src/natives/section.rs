//! A native's own config section: its type in its folder ([`NativeSection`]: key, named
//! defaults, `deny_unknown_fields`, validation naming the key), declared by one [`Section`] on
//! its registration line; config load reads every declared section from the daemon's file and
//! environment beside the daemon's own, refuses what the native's type refuses, and keeps the
//! typed values in [`Sections`], where the native's component finds its own.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use figment::value::Value;
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A native's config section type (`#[serde(deny_unknown_fields, default)]`, its defaults
/// named constants).
pub trait NativeSection:
    Serialize + DeserializeOwned + Default + Clone + PartialEq + Debug + Send + Sync + 'static
{
    /// Its top-level key in the file (`newo_chat`), and the environment's
    /// (`SWITCHBOARD_NEWO_CHAT__LISTEN`).
    const KEY: &'static str;

    /// Checks its values; the first one refused is named by its full key (`newo_chat.listen`).
    fn validate(&self) -> Result<(), Invalid>;
}

/// A value of a native's section refused: its full key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct Invalid {
    pub key: &'static str,
    pub reason: String,
}

impl Invalid {
    /// `value` within `min..=max`, in the words of the daemon's other checks.
    pub fn between(key: &'static str, value: u64, min: u64, max: u64) -> Result<(), Invalid> {
        let reason = if value > max {
            format!("must be at most {max}")
        } else if value < min {
            format!("must be at least {min}")
        } else {
            return Ok(());
        };
        Err(Invalid { key, reason })
    }
}

/// Why a declared section was not read.
#[derive(Debug)]
pub enum SectionError {
    /// A value of the wrong type or an unknown key (the error's path starts with the section's
    /// key).
    Value(Box<figment::Error>),
    /// A value its validation refused.
    Invalid(Invalid),
}

/// A native's section as its registration line declares it: `Section::of::<NewoChatConfig>()`.
#[derive(Clone, Copy)]
pub struct Section {
    /// Its top-level key.
    pub key: &'static str,
    defaults: fn() -> Value,
    read: fn(&Figment) -> Result<Arc<dyn Loaded>, SectionError>,
}

impl Section {
    /// The section of type `T`.
    pub const fn of<T: NativeSection>() -> Section {
        Section {
            key: T::KEY,
            defaults: defaults::<T>,
            read: read::<T>,
        }
    }

    /// Its defaults, as the layer under the file and the environment.
    pub fn defaults(&self) -> Value {
        (self.defaults)()
    }

    /// Reads it from the daemon's merged configuration and checks it.
    pub fn read(&self, figment: &Figment) -> Result<Arc<dyn Loaded>, SectionError> {
        (self.read)(figment)
    }
}

fn defaults<T: NativeSection>() -> Value {
    Value::serialize(T::default()).expect("a section's defaults serialize")
}

fn read<T: NativeSection>(figment: &Figment) -> Result<Arc<dyn Loaded>, SectionError> {
    let value: T = figment.extract_inner(T::KEY).map_err(|mut e| {
        // figment 0.10 appends the focus key to the error's path; it leads.
        if e.path.last().map(String::as_str) == Some(T::KEY) {
            e.path.pop();
        }
        e.path.insert(0, T::KEY.to_owned());
        SectionError::Value(Box::new(e))
    })?;
    value.validate().map_err(SectionError::Invalid)?;
    Ok(Arc::new(value))
}

/// A section's typed value, as [`Sections`] keeps it.
pub trait Loaded: Debug + Send + Sync + 'static {
    fn as_any(&self) -> &dyn Any;
    fn same(&self, other: &dyn Loaded) -> bool;
}

impl<T: NativeSection> Loaded for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn same(&self, other: &dyn Loaded) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
}

/// The natives' sections as loaded, by key.
#[derive(Debug, Clone, Default)]
pub struct Sections(BTreeMap<&'static str, Arc<dyn Loaded>>);

impl Sections {
    pub fn insert(&mut self, key: &'static str, value: Arc<dyn Loaded>) {
        self.0.insert(key, value);
    }

    /// The section of type `T` as loaded; its defaults when none was (a configuration made in
    /// code: tests, embedders).
    pub fn get<T: NativeSection>(&self) -> T {
        self.0
            .get(T::KEY)
            .and_then(|v| v.as_any().downcast_ref::<T>())
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the section of type `T` (a configuration made in code).
    pub fn set<T: NativeSection>(&mut self, value: T) {
        self.0.insert(T::KEY, Arc::new(value));
    }
}

impl PartialEq for Sections {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(k, v)| other.0.get(k).is_some_and(|o| v.same(o.as_ref())))
    }
}

impl Eq for Sections {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Probe {
        n: u64,
    }

    impl NativeSection for Probe {
        const KEY: &'static str = "probe";
        fn validate(&self) -> Result<(), Invalid> {
            Invalid::between("probe.n", self.n, 0, 9)
        }
    }

    #[test]
    fn a_section_is_got_by_its_type_and_defaults_when_absent() {
        let mut sections = Sections::default();
        assert_eq!(sections.get::<Probe>(), Probe::default());
        sections.set(Probe { n: 3 });
        assert_eq!(sections.get::<Probe>().n, 3);
        let mut other = Sections::default();
        assert_ne!(sections, other);
        other.set(Probe { n: 3 });
        assert_eq!(sections, other);
    }
}
