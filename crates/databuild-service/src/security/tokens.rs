//! The access-token file (`auth.toml`): one entry per principal — name, role and the
//! SHA-256 of its token; tokens themselves are shown once, when made, and never stored.
//! The service re-reads the file when it changes, so a revoked token stops working at once.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Principal, Role};

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read or written.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a token file.
    #[error("`{path}` is not a databuild token file: {message}; make one with `databuild auth add NAME --role read --file {path}`")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A name that cannot be a principal's.
    #[error(
        "principal name `{0}` is not valid: use 1 to 64 letters, digits, `.`, `_`, `-` or `@`"
    )]
    BadName(String),
    /// `auth add` of a name already there.
    #[error("principal `{name}` already has a token in `{path}`; revoke it first with `databuild auth revoke {name} --file {path}`")]
    Exists {
        /// The name.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// `auth revoke` of a name not there.
    #[error("no principal `{name}` in `{path}`; see `databuild auth list --file {path}`")]
    Unknown {
        /// The name.
        name: String,
        /// The file.
        path: PathBuf,
    },
}

/// One principal of the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The principal's name, recorded as the requester of what it does.
    pub name: String,
    /// `read`, `build` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Every principal.
    #[serde(default)]
    pub principal: Vec<Entry>,
}

/// Hex SHA-256 of `token`.
pub fn hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new token: `dbt_` and 64 hex digits from the system's random source.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!(
        "dbt_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

impl TokenFile {
    /// Reads `path`; a file that does not exist is empty.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AuthError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let malformed = |message: String| AuthError::Malformed {
            path: path.to_path_buf(),
            message,
        };
        let file: TokenFile = toml::from_str(&text).map_err(|e| malformed(e.message().into()))?;
        for p in &file.principal {
            if Role::parse(&p.role).is_none() {
                return Err(malformed(format!(
                    "principal `{}` has role `{}`; roles are [read, build, admin]",
                    p.name, p.role
                )));
            }
            if p.token_sha256.len() != 64 || !p.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(malformed(format!(
                    "principal `{}` has no valid `token_sha256`",
                    p.name
                )));
            }
        }
        Ok(file)
    }

    /// Writes the file (readable by its owner only), replacing it in one rename.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |source| AuthError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        };
        let text = format!(
            "# databuild access tokens: `databuild auth add|list|revoke`. Only SHA-256 hashes of the\n# tokens are kept here.\n\n{}",
            toml::to_string(self).expect("a token file serializes")
        );
        let tmp = path.with_extension("toml.tmp");
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds principal `name` with `role`; returns its token (to show once).
    pub fn add(&mut self, path: &Path, name: &str, role: Role) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadName(name.to_string()));
        }
        if self.principal.iter().any(|p| p.name == name) {
            return Err(AuthError::Exists {
                name: name.to_string(),
                path: path.to_path_buf(),
            });
        }
        let token = new_token().map_err(|source| AuthError::Io {
            action: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
        self.principal.push(Entry {
            name: name.to_string(),
            role: role.name().to_string(),
            token_sha256: hash(&token),
        });
        Ok(token)
    }

    /// Removes principal `name`.
    pub fn revoke(&mut self, path: &Path, name: &str) -> Result<(), AuthError> {
        let before = self.principal.len();
        self.principal.retain(|p| p.name != name);
        if self.principal.len() == before {
            return Err(AuthError::Unknown {
                name: name.to_string(),
                path: path.to_path_buf(),
            });
        }
        Ok(())
    }

    fn find(&self, token: &str) -> Option<Principal> {
        let h = hash(token);
        self.principal
            .iter()
            .find(|p| p.token_sha256.eq_ignore_ascii_case(&h))
            .and_then(|p| {
                Some(Principal {
                    name: p.name.clone(),
                    role: Role::parse(&p.role)?,
                })
            })
    }

    fn named(&self, name: &str) -> Option<Principal> {
        self.principal
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| {
                Some(Principal {
                    name: p.name.clone(),
                    role: Role::parse(&p.role)?,
                })
            })
    }
}

/// What identifies a version of the file on disk.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// The service's view of the token file, re-read whenever the file changes. A file that
/// becomes unreadable or malformed admits no one until it is fixed.
#[derive(Debug)]
pub struct Verifier {
    path: PathBuf,
    cached: Mutex<(Stamp, Option<TokenFile>)>,
}

impl Verifier {
    /// Reads `path` (which must exist and be well-formed).
    pub fn new(path: PathBuf) -> Result<Self, AuthError> {
        if !path.exists() {
            return Err(AuthError::Io {
                action: "read",
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file; make one with `databuild auth add NAME --role admin --file FILE`",
                ),
            });
        }
        let file = TokenFile::load(&path)?;
        Ok(Self {
            cached: Mutex::new((stamp(&path), Some(file))),
            path,
        })
    }

    fn with_file<T>(&self, f: impl FnOnce(&TokenFile) -> Option<T>) -> Option<T> {
        let mut c = self.cached.lock().expect("token cache lock");
        let now = stamp(&self.path);
        if now != c.0 {
            c.1 = match TokenFile::load(&self.path) {
                Ok(file) if now.is_some() => Some(file),
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %e, "the token file cannot be used; refusing every token");
                    None
                }
            };
            c.0 = now;
        }
        c.1.as_ref().and_then(f)
    }

    /// The principal whose token is `token`, if any.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        self.with_file(|f| f.find(token))
    }

    /// The principal named `name` as the file says now (a session's principal may have
    /// been revoked or changed role since it signed in).
    pub fn current(&self, name: &str) -> Option<Principal> {
        self.with_file(|f| f.named(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_only_as_hashes_and_revocation_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        let mut f = TokenFile::load(&path).unwrap();
        let t = f.add(&path, "alice", Role::Build).unwrap();
        assert!(t.starts_with("dbt_") && t.len() == 68);
        f.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t[4..]), "{text}");
        assert!(text.contains(&hash(&t)));
        let v = Verifier::new(path.clone()).unwrap();
        assert_eq!(
            v.verify(&t),
            Some(Principal {
                name: "alice".into(),
                role: Role::Build
            })
        );
        assert_eq!(v.verify("dbt_wrong"), None);
        let mut f = TokenFile::load(&path).unwrap();
        assert!(matches!(
            f.add(&path, "alice", Role::Read),
            Err(AuthError::Exists { .. })
        ));
        f.revoke(&path, "alice").unwrap();
        // A different length, so the change is seen even within the clock's resolution.
        f.add(&path, "bob-the-reader", Role::Read).unwrap();
        f.save(&path).unwrap();
        assert_eq!(v.verify(&t), None);
        assert_eq!(v.current("alice"), None);
    }
}
