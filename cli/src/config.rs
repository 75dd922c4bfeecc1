//! The CLI's own config file (`~/.canopy.conf`, or `$CANOPY_CONFIG`): the registry URL, the
//! CA file it is verified with (https:// registries) and the access token saved by
//! `init-server` and `login` (with `login --sso`, also what renewing it needs, refresh
//! token included: see `sso/session.rs`).
//!
//! The file holds a secret, so it is created with mode 0600 from the first byte (never
//! written world-readable and chmod-ed afterwards) and replaced atomically, so a crash
//! mid-write cannot leave half a token behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CONFIG_ENV: &str = "CANOPY_CONFIG";
const FILE_NAME: &str = ".canopy.conf";

/// What the file holds. Unknown fields are tolerated (not `deny_unknown_fields`) because
/// this file is written by the CLI itself: a newer CLI may add fields an older one must
/// still be able to read.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// The `--ca-file` the registry's certificate is verified with (absolute path); applies
    /// to that registry only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Set when `access_token` came from `canopy login --sso`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso: Option<crate::sso::Session>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("registry", &self.registry)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .field("ca_file", &self.ca_file)
            .field("sso", &self.sso)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot find the config file: set {CONFIG_ENV} or HOME")]
    NoHome,
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    // serde_json's message ends with "at line L column C". It quotes a string value only
    // when a string sits where another type was expected, which cannot happen with these
    // all-string fields, so a token in the file never ends up on the terminal.
    #[error("config file {} is not valid: {source} (fix it or delete it and log in again)", .path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write config file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `$CANOPY_CONFIG`, else `$HOME/.canopy.conf`.
pub fn default_path() -> Result<PathBuf, ConfigError> {
    path_from(std::env::var_os(CONFIG_ENV), std::env::var_os("HOME"))
}

fn path_from(
    explicit: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Result<PathBuf, ConfigError> {
    match (explicit, home) {
        (Some(p), _) if !p.is_empty() => Ok(PathBuf::from(p)),
        (_, Some(h)) if !h.is_empty() => Ok(PathBuf::from(h).join(FILE_NAME)),
        _ => Err(ConfigError::NoHome),
    }
}

/// Reads the config; a missing file is an empty config (not logged in yet).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let config: Config = serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if config.access_token.is_some() {
        warn_if_exposed(path);
    }
    Ok(config)
}

/// Replaces the config file atomically with `config`, mode 0600.
pub fn save(path: &Path, config: &Config) -> Result<(), ConfigError> {
    let target = resolve_symlink(path);
    let werr = |source| ConfigError::Write {
        path: target.clone(),
        source,
    };
    let mut body = serde_json::to_vec_pretty(config).map_err(|e| werr(std::io::Error::other(e)))?;
    body.push(b'\n');
    let dir = parent_dir(&target);
    create_private_dir(&dir).map_err(werr)?;
    let tmp = temp_path(&target);
    let result = (|| {
        let mut f = create_private_file(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        // Best effort: a stale temp file would hold the token.
        let _ = fs::remove_file(&tmp);
        return Err(werr(e));
    }
    Ok(())
}

/// Fails early when the config file could not be written, before a call whose answer
/// (the one-time admin token of `init-server`) must not be lost.
pub fn check_writable(path: &Path) -> Result<(), ConfigError> {
    let target = resolve_symlink(path);
    let werr = |source| ConfigError::Write {
        path: target.clone(),
        source,
    };
    create_private_dir(&parent_dir(&target)).map_err(werr)?;
    let probe = temp_path(&target);
    create_private_file(&probe).map_err(werr)?;
    fs::remove_file(&probe).map_err(werr)
}

/// Dotfile managers often make `~/.canopy.conf` a symlink; write through it instead of
/// replacing the link with a plain file.
fn resolve_symlink(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_dir(target).join(format!(".{name}.tmp.{}", std::process::id()))
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // create_new: never follow or reuse a file someone else prepared at this path.
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            crate::output::warn(&format!(
                "{} holds an access token but other users can read it; run `chmod 600 {}`",
                path.display(),
                path.display()
            ));
        }
    }
}

#[cfg(not(unix))]
fn warn_if_exposed(_path: &Path) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    fn sample() -> Config {
        Config {
            registry: Some("https://cp:9090".into()),
            access_token: Some("canopy_usr_secret-value".into()),
            ca_file: Some(PathBuf::from("/etc/canopy/ca.pem")),
            sso: None,
        }
    }

    fn sso_sample() -> Config {
        Config {
            access_token: Some("eyJhbGciOi.jwt-secret.sig".into()),
            sso: Some(crate::sso::Session {
                idp: "corp".into(),
                issuer: "https://idp.example".into(),
                token_endpoint: "https://idp.example/token".into(),
                client_id: "canopy-cli".into(),
                audience: "https://cp.example".into(),
                refresh_token: Some("refresh-secret-value".into()),
                expires_at: Some(1_900_000_000),
            }),
            ..sample()
        }
    }

    #[cfg(unix)]
    #[test]
    fn sso_session_round_trips_privately_and_redacted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        save(&path, &sso_sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sso_sample());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let debug = format!("{:?}", sso_sample());
        assert!(
            !debug.contains("refresh-secret") && !debug.contains("jwt-secret"),
            "{debug}"
        );
        // A file written before SSO existed (no `sso` key) still loads, and a static-token
        // config is written without one.
        fs::write(&path, r#"{"registry": "http://a", "access_token": "t"}"#).unwrap();
        assert_eq!(load(&path).unwrap().sso, None);
        save(&path, &sample()).unwrap();
        assert!(!fs::read_to_string(&path).unwrap().contains("sso"));
    }

    #[test]
    fn round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        assert_eq!(load(&path).unwrap(), Config::default());
        save(&path, &sample()).unwrap();
        assert_eq!(load(&path).unwrap(), sample());
        // Saving again replaces the file (rename over an existing one).
        let other = Config {
            registry: Some("http://b".into()),
            access_token: None,
            ca_file: None,
            sso: None,
        };
        save(&path, &other).unwrap();
        assert_eq!(load(&path).unwrap(), other);
        // No temp file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/conf");
        save(&path, &sample()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // An existing, too-open file is replaced by a private one.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &sample()).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[cfg(unix)]
    #[test]
    fn writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.conf");
        let link = dir.path().join("link.conf");
        save(&real, &Config::default()).unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        save(&link, &sample()).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(load(&real).unwrap(), sample());
    }

    #[test]
    fn bad_json_names_the_file_without_echoing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf");
        fs::write(&path, "{\"access_token\": \"canopy_usr_secret-value\",,}").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("secret-value"), "{err}");
    }

    #[test]
    fn check_writable_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        check_writable(&dir.path().join("conf")).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn path_resolution() {
        assert_eq!(
            path_from(Some("/x/c".into()), Some("/home/a".into())).unwrap(),
            PathBuf::from("/x/c")
        );
        assert_eq!(
            path_from(None, Some("/home/a".into())).unwrap(),
            PathBuf::from("/home/a/.canopy.conf")
        );
        assert!(path_from(Some("".into()), None).is_err());
    }

    #[test]
    fn debug_redacts_the_token() {
        assert!(!format!("{:?}", sample()).contains("secret"));
    }
}
