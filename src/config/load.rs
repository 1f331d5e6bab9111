//! Loading: the defaults, then the TOML file, then `SWITCHBOARD_<SECTION>__<KEY>` environment
//! variables (figment), then [`Config::validate`]; every error tied to its key and to where
//! the value came from.

use std::path::{Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Metadata, Provider, Source};

use super::{Config, ConfigError, Origin};
use crate::natives::section::{Section, SectionError};

/// Keys whose values an error never shows.
const SECRET_KEYS: &[&str] = &["transport.nats.password", "transport.nats.token"];

impl Config {
    /// Loads the configuration: defaults, then the file, then the environment; then checks
    /// it.
    ///
    /// `path`: the file given with `--config`; it must exist. Without it,
    /// [`Config::DEFAULT_PATH`] is read if it exists, and the defaults apply if it does not.
    ///
    /// Environment variables `SWITCHBOARD_<SECTION>__<KEY>` override keys (names are
    /// case-insensitive). Variables with the prefix but without `__`
    /// (`SWITCHBOARD_SECRET_KEY`) are not configuration keys and are left alone; one with
    /// `__` that names no key is refused like an unknown key in the file. Values are parsed
    /// like TOML scalars: `8080` is a number, `true` a boolean; quote a string that looks like
    /// one (`'"0123"'`).
    ///
    /// `natives`: the natives' sections (the registration list's, `boot::sections()`), read
    /// beside the daemon's under their keys, layered and refused alike; a top-level key that is
    /// neither theirs nor the daemon's is refused.
    pub fn load(path: Option<&Path>, natives: &[Section]) -> Result<Config, ConfigError> {
        Self::load_from(
            path,
            Path::new(Self::DEFAULT_PATH),
            Some(env_provider()),
            natives,
        )
    }

    /// The defaults layer: the daemon's sections', then the natives'.
    pub(crate) fn defaults(natives: &[Section]) -> Figment {
        natives.iter().fold(
            Figment::from(Serialized::defaults(Config::default())),
            |figment, section| figment.merge(Serialized::default(section.key, section.defaults())),
        )
    }

    /// [`Config::load`] with the default path and the environment chosen by the caller
    /// (`None`: not read).
    pub(crate) fn load_from(
        path: Option<&Path>,
        default_path: &Path,
        env: Option<Env>,
        natives: &[Section],
    ) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => match path.try_exists() {
                Ok(true) => Some(path.to_path_buf()),
                Ok(false) => {
                    return Err(ConfigError::NotFound {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) => {
                    return Err(ConfigError::File {
                        path: path.to_path_buf(),
                        message: e.to_string(),
                    })
                }
            },
            None => default_path
                .try_exists()
                .unwrap_or(true)
                .then(|| default_path.to_path_buf()),
        };

        let mut figment = Self::defaults(natives);
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let env_name = env.as_ref().map(|env| env.metadata().name.into_owned());
        if let Some(env) = env {
            figment = figment.merge(env);
        }
        let origins = Origins {
            figment: &figment,
            file: file.as_deref(),
            env_name: env_name.as_deref(),
        };

        let with_origin = |mut e: ConfigError| {
            if let Some(key) = e.key() {
                let origin = origins.of(figment.find_metadata(key), key);
                e.set_origin(origin);
            }
            e
        };

        let top: figment::value::Dict = figment.extract().map_err(|e| origins.error(e))?;
        let known = |key: &str| {
            Self::SECTIONS.contains(&key) || natives.iter().any(|section| section.key == key)
        };
        if let Some(key) = top.keys().find(|key| !known(key)) {
            return Err(with_origin(ConfigError::UnknownKey {
                key: key.clone(),
                expected: Self::SECTIONS
                    .iter()
                    .copied()
                    .chain(natives.iter().map(|section| section.key))
                    .collect(),
                origin: Origin::Unknown,
            }));
        }
        let mut config: Config = figment.extract().map_err(|e| origins.error(e))?;
        for section in natives {
            let loaded = section.read(&figment).map_err(|e| match e {
                SectionError::Value(e) => origins.error(*e),
                SectionError::Invalid(e) => with_origin(ConfigError::invalid(e.key, e.reason)),
            })?;
            config.natives.insert(section.key, loaded);
        }
        config.validate().map_err(with_origin)?;
        Ok(config)
    }
}

/// `SWITCHBOARD_<SECTION>__<KEY>` → `section.key`; variables without `__` are skipped.
fn env_provider() -> Env {
    Env::prefixed(Config::ENV_PREFIX)
        .filter(|key| key.as_str().contains(Config::ENV_SEPARATOR))
        .split(Config::ENV_SEPARATOR)
}

/// Tells where a value came from.
struct Origins<'a> {
    figment: &'a Figment,
    file: Option<&'a Path>,
    env_name: Option<&'a str>,
}

impl Origins<'_> {
    fn of(&self, metadata: Option<&Metadata>, key: &str) -> Origin {
        let Some(md) = metadata else {
            return Origin::Unknown;
        };
        match &md.source {
            Some(Source::File(path)) => Origin::File(path.clone()),
            _ if Some(md.name.as_ref()) == self.env_name => Origin::Env(Config::env_var_name(key)),
            Some(Source::Code(_)) => Origin::Default,
            _ => Origin::Unknown,
        }
    }

    /// A figment error as a [`ConfigError`] naming the key.
    fn error(&self, err: figment::Error) -> ConfigError {
        let key = err.path.join(".");
        let metadata = err
            .metadata
            .as_ref()
            .or_else(|| self.figment.find_metadata(&key));
        let origin = self.of(metadata, &key);
        if key.is_empty() {
            // Not about a key: the file could not be read or parsed.
            let path = match &origin {
                Origin::File(path) => Some(path.clone()),
                _ => self.file.map(PathBuf::from),
            };
            return match path {
                Some(path) => ConfigError::File {
                    path,
                    message: err.kind.to_string(),
                },
                None => ConfigError::Other(err.to_string()),
            };
        }
        match err.kind {
            Kind::UnknownField(_, expected) => ConfigError::UnknownKey {
                key,
                expected: expected.to_vec(),
                origin,
            },
            kind => {
                let secret = SECRET_KEYS.contains(&key.as_str());
                let reason = reason(kind, secret, &origin);
                ConfigError::Invalid {
                    key,
                    reason,
                    origin,
                }
            }
        }
    }
}

/// The message of a value refused by deserialization; without the value for a secret.
fn reason(kind: Kind, secret: bool, origin: &Origin) -> String {
    match kind {
        Kind::InvalidType(actual, expected) => {
            let mut reason = if secret {
                format!("expected {}", friendly(&expected))
            } else {
                format!("expected {}, found {actual}", friendly(&expected))
            };
            if let (Origin::Env(name), true) = (origin, expected.contains("string")) {
                reason.push_str(&format!(
                    "; a value that looks like a number or boolean is read as one, \
                     quote it to keep it a string ({name}='\"...\"')"
                ));
            }
            reason
        }
        Kind::InvalidValue(actual, expected) if !secret => {
            format!("expected {}, found {actual}", friendly(&expected))
        }
        Kind::InvalidValue(_, expected) => format!("expected {}", friendly(&expected)),
        Kind::UnknownVariant(value, expected) => {
            format!(
                "unknown value {value:?}; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::Message(message) if !secret => message,
        Kind::Message(_) => "invalid value".to_owned(),
        other => other.to_string(),
    }
}

/// Serde's primitive type names in words.
fn friendly(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::net::SocketAddr;

    use super::*;
    use crate::config::{LogFormat, TransportConfig};
    use crate::natives::section::{Invalid, NativeSection};

    /// A native's section, as its registration line declares one.
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Probe {
        on: bool,
        listen: SocketAddr,
        count: u64,
    }

    impl Default for Probe {
        fn default() -> Self {
            Probe {
                on: false,
                listen: SocketAddr::from(([127, 0, 0, 1], 1)),
                count: 1,
            }
        }
    }

    impl NativeSection for Probe {
        const KEY: &'static str = "probe";
        fn validate(&self) -> Result<(), Invalid> {
            Invalid::between("probe.count", self.count, 1, 10)
        }
    }

    const NATIVES: &[Section] = &[Section::of::<Probe>()];

    /// The defaults, the natives' loaded.
    fn defaults() -> Config {
        let mut config = Config::default();
        config.natives.set(Probe::default());
        config
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("switchboard-config-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.0.join(name);
            fs::write(&path, contents).unwrap();
            path
        }

        fn absent(&self) -> PathBuf {
            self.0.join("absent.toml")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Loads `contents` as the explicit file, without the environment.
    fn load_str(dir: &TempDir, contents: &str) -> (PathBuf, Result<Config, ConfigError>) {
        let path = dir.file("switchboard.toml", contents);
        let result = Config::load_from(Some(&path), &dir.absent(), None, NATIVES);
        (path, result)
    }

    #[test]
    fn missing_default_file_gives_the_defaults() {
        let dir = TempDir::new("defaults");
        let config = Config::load_from(None, &dir.absent(), None, NATIVES).unwrap();
        assert_eq!(config, defaults());
    }

    #[test]
    fn default_file_is_read_when_present() {
        let dir = TempDir::new("default-present");
        let path = dir.file("switchboard.toml", "[engine]\nworkers = 7\n");
        let config = Config::load_from(None, &path, None, NATIVES).unwrap();
        assert_eq!(config.engine.workers, 7);
    }

    #[test]
    fn explicit_missing_file_is_refused() {
        let dir = TempDir::new("explicit-missing");
        let missing = dir.absent();
        let err = Config::load_from(Some(&missing), &dir.absent(), None, NATIVES).unwrap_err();
        assert!(
            matches!(&err, ConfigError::NotFound { path } if *path == missing),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("config file {}: not found", missing.display())
        );
    }

    #[test]
    fn file_values_override_the_defaults() {
        let dir = TempDir::new("file-values");
        let (_, result) = load_str(
            &dir,
            r#"
            [http]
            listen = "0.0.0.0:9000"

            [engine]
            workers = 4
            inflight_limit = 10

            [runners]
            secret_overlap_ms = 1000

            [egress]
            allow = ["127.0.0.1/32", "10.0.0.0/8"]

            [log]
            format = "json"
            level = "switchboard=debug,actix_web=warn"
            "#,
        );
        let config = result.unwrap();
        let mut expected = defaults();
        expected.http.listen = "0.0.0.0:9000".parse().unwrap();
        expected.engine.workers = 4;
        expected.engine.inflight_limit = 10;
        expected.runners.secret_overlap_ms = 1000;
        expected.egress.allow = vec!["127.0.0.1/32".into(), "10.0.0.0/8".into()];
        expected.log.format = LogFormat::Json;
        expected.log.level = "switchboard=debug,actix_web=warn".into();
        assert_eq!(config, expected);
        assert_eq!(config.engine.to_engine_config().inflight_limit, 10);
    }

    #[test]
    fn unknown_section_is_refused_naming_it() {
        let dir = TempDir::new("unknown-section");
        let (path, result) = load_str(&dir, "[htp]\nlisten = \"127.0.0.1:1\"\n");
        let err = result.unwrap_err();
        assert_eq!(err.key(), Some("htp"), "{err}");
        assert_eq!(err.origin(), Some(&Origin::File(path.clone())));
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "unknown key \"htp\" (in {}); expected one of: http, store",
                path.display()
            )),
            "{message}"
        );
    }

    #[test]
    fn unknown_key_in_a_section_is_refused_naming_it() {
        let dir = TempDir::new("unknown-key");
        let (path, result) = load_str(&dir, "[http]\nlisen = \"127.0.0.1:1\"\n");
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "unknown key \"http.lisen\" (in {}); expected one of: listen, max_body_bytes, \
                 workers, shutdown_timeout_ms, access_log, request_head_timeout_ms, \
                 idle_timeout_ms, body_timeout_ms, disconnect_timeout_ms",
                path.display()
            )
        );
    }

    #[test]
    fn bad_socket_address_is_refused_naming_the_key() {
        let dir = TempDir::new("bad-listen");
        let (path, result) = load_str(&dir, "[http]\nlisten = \"x\"\n");
        let err = result.unwrap_err();
        assert_eq!(err.key(), Some("http.listen"));
        let message = err.to_string();
        assert!(
            message.starts_with("http.listen: invalid socket address \"x\""),
            "{message}"
        );
        assert!(
            message.ends_with(&format!("(in {})", path.display())),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_is_refused_naming_the_key() {
        let dir = TempDir::new("wrong-type");
        let (path, result) = load_str(&dir, "[engine]\nworkers = \"two\"\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "engine.workers: expected a non-negative integer, found string \"two\" (in {})",
                path.display()
            )
        );
        let (_, result) = load_str(&dir, "[engine]\nworkers = -1\n");
        let err = result.unwrap_err();
        assert_eq!(err.key(), Some("engine.workers"), "{err}");
    }

    #[test]
    fn unknown_enum_value_is_refused_naming_the_key() {
        let dir = TempDir::new("bad-enum");
        let (_, result) = load_str(&dir, "[log]\nformat = \"xml\"\n");
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("log.format: unknown value \"xml\"; expected one of: plain, json"),
            "{message}"
        );
        let (_, result) = load_str(&dir, "[transport]\nkind = \"kafka\"\n");
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with(
                "transport.kind: unknown value \"kafka\"; expected one of: embedded, nats"
            ),
            "{message}"
        );
        let (_, result) = load_str(
            &dir,
            "[transport]\nkind = \"nats\"\n[transport.nats]\nurls = [\"http://x\"]\n",
        );
        let err = result.unwrap_err();
        assert_eq!(err.key(), Some("transport.nats.urls"), "{err}");
    }

    #[test]
    fn invalid_value_is_refused_naming_the_key_and_file() {
        let dir = TempDir::new("validation");
        let (path, result) = load_str(&dir, "[engine]\ninflight_limit = 0\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "engine.inflight_limit: must be at least 1 (in {})",
                path.display()
            )
        );
        let (_, result) = load_str(&dir, "[log]\nlevel = \"switchboard=loud\"\n");
        let err = result.unwrap_err();
        assert_eq!(err.key(), Some("log.level"), "{err}");
    }

    #[test]
    fn toml_syntax_error_names_the_file() {
        let dir = TempDir::new("syntax");
        let (path, result) = load_str(&dir, "[http\nlisten = 1\n");
        let err = result.unwrap_err();
        assert!(
            matches!(&err, ConfigError::File { path: p, .. } if *p == path),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("config file {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn secret_is_not_shown_in_errors_or_debug() {
        let dir = TempDir::new("secret");
        let (_, result) = load_str(&dir, "[transport.nats]\npassword = 918273645\n");
        let message = result.unwrap_err().to_string();
        assert!(
            message.starts_with("transport.nats.password: expected a string"),
            "{message}"
        );
        assert!(!message.contains("918273645"), "{message}");

        let mut transport = TransportConfig::default();
        transport.nats.password = "hunter2".into();
        assert!(!format!("{transport:?}").contains("hunter2"));
    }

    /// A native's section, declared as a registration line does: read, refused and layered as
    /// the daemon's own sections are, its errors naming its keys; unknown without the
    /// declaration.
    #[test]
    fn a_native_s_section_is_read_like_the_daemon_s() {
        let dir = TempDir::new("native-section");
        let check = |text: &str, expected: Result<u64, &str>| {
            let (path, result) = load_str(&dir, text);
            let got = result
                .map(|c| c.natives.get::<Probe>().count)
                .map_err(|e| e.to_string());
            let expected = expected.map_err(|e| format!("{e} (in {})", path.display()));
            assert_eq!(got, expected, "{text}");
        };
        check("", Ok(1));
        check("[probe]\ncount = 3\n", Ok(3));
        check(
            "[probe]\ncount = 0\n",
            Err("probe.count: must be at least 1"),
        );
        check(
            "[probe]\nlisten = \"x\"\n",
            Err("probe.listen: invalid socket address syntax"),
        );
        check(
            "probe = 5\n",
            Err("probe: expected struct Probe, found signed int `5`"),
        );
        let (path, result) = load_str(&dir, "[probe]\ncont = 3\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "unknown key \"probe.cont\" (in {}); expected one of: on, listen, count",
                path.display()
            )
        );
        let (path, result) = load_str(&dir, "[prob]\non = true\n");
        assert_eq!(
            result.unwrap_err().to_string(),
            format!(
                "unknown key \"prob\" (in {}); expected one of: {}, probe",
                path.display(),
                Config::SECTIONS.join(", ")
            )
        );
        // Without its declaration the section is an unknown key.
        let path = dir.file("undeclared.toml", "[probe]\ncount = 3\n");
        let err = Config::load_from(Some(&path), &dir.absent(), None, &[]).unwrap_err();
        assert_eq!(err.key(), Some("probe"), "{err}");
    }

    /// The only test that touches the process environment (tests run in parallel threads).
    #[test]
    fn environment_overrides_keys() {
        /// Removes the variables it set, even when an assertion fails.
        struct Vars(Vec<&'static str>);
        impl Vars {
            fn set(&mut self, name: &'static str, value: &str) {
                std::env::set_var(name, value);
                self.0.push(name);
            }
            fn clear(&mut self) {
                for name in self.0.drain(..) {
                    std::env::remove_var(name);
                }
            }
        }
        impl Drop for Vars {
            fn drop(&mut self) {
                self.clear();
            }
        }

        let dir = TempDir::new("env");
        let absent = dir.absent();
        let load =
            |path: Option<&Path>| Config::load_from(path, &absent, Some(env_provider()), NATIVES);
        let mut vars = Vars(Vec::new());

        // Variables with the prefix that are not keys do not get in the way.
        vars.set("SWITCHBOARD_SECRET_KEY", "c2VjcmV0");
        vars.set("SWITCHBOARD_CONFIG", "elsewhere.toml");
        vars.set("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0");
        let config = load(None).unwrap();
        let mut expected = defaults();
        expected.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        assert_eq!(config, expected);

        // The environment wins over the file; names are case-insensitive.
        let path = dir.file(
            "switchboard.toml",
            "[engine]\nworkers = 3\ninflight_limit = 5\n",
        );
        vars.set("SWITCHBOARD_ENGINE__WORKERS", "4");
        vars.set("switchboard_probe__on", "true");
        let config = load(Some(&path)).unwrap();
        assert_eq!(config.engine.workers, 4);
        assert_eq!(config.engine.inflight_limit, 5);
        assert!(config.natives.get::<Probe>().on);
        assert_eq!(config.http.listen.port(), 0);
        vars.clear();

        // Refusals name the key and the variable.
        vars.set("SWITCHBOARD_HTTP__LISEN", "127.0.0.1:0");
        let err = load(None).unwrap_err();
        assert_eq!(err.key(), Some("http.lisen"), "{err}");
        assert!(
            err.to_string().starts_with(
                "unknown key \"http.lisen\" (from environment variable SWITCHBOARD_HTTP__LISEN)"
            ),
            "{err}"
        );
        vars.clear();

        vars.set("SWITCHBOARD_HTTP__LISTEN", "nonsense");
        let message = load(None).unwrap_err().to_string();
        assert!(
            message.starts_with("http.listen: invalid socket address \"nonsense\""),
            "{message}"
        );
        assert!(
            message.ends_with("(from environment variable SWITCHBOARD_HTTP__LISTEN)"),
            "{message}"
        );
        vars.clear();

        vars.set("SWITCHBOARD_ENGINE__INFLIGHT_LIMIT", "0");
        assert_eq!(
            load(None).unwrap_err().to_string(),
            "engine.inflight_limit: must be at least 1 \
             (from environment variable SWITCHBOARD_ENGINE__INFLIGHT_LIMIT)"
        );
        vars.clear();

        // A string that looks like a number must be quoted; the secret is not shown.
        vars.set("SWITCHBOARD_TRANSPORT__NATS__TOKEN", "0123456789");
        let message = load(None).unwrap_err().to_string();
        assert!(
            message.starts_with("transport.nats.token: expected a string; "),
            "{message}"
        );
        assert!(!message.contains("123456789"), "{message}");
        vars.set("SWITCHBOARD_TRANSPORT__NATS__TOKEN", "\"0123456789\"");
        assert_eq!(load(None).unwrap().transport.nats.token, "0123456789");
        vars.clear();

        // A list, as the tests' daemons open loopback to their runners.
        vars.set("SWITCHBOARD_EGRESS__ALLOW", "[\"127.0.0.1/32\"]");
        assert_eq!(load(None).unwrap().egress.allow, vec!["127.0.0.1/32"]);
        vars.clear();

        // A native's keys, named with the variable.
        vars.set("SWITCHBOARD_PROBE__COUNT", "11");
        assert_eq!(
            load(None).unwrap_err().to_string(),
            "probe.count: must be at most 10 \
             (from environment variable SWITCHBOARD_PROBE__COUNT)"
        );
        vars.clear();

        // `Config::load` reads the real environment.
        vars.set("SWITCHBOARD_HTTP__LISTEN", "127.0.0.1:0");
        vars.set("SWITCHBOARD_PROBE__COUNT", "7");
        let config = Config::load(Some(&path), NATIVES).unwrap();
        assert_eq!(config.http.listen, expected.http.listen);
        assert_eq!(config.natives.get::<Probe>().count, 7);
    }
}
