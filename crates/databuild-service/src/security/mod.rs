//! Who may do what on the service: principals and roles, the access-token file, sessions
//! and CSRF tokens of the dashboard, and the guard every request passes (the `Host` it
//! names, where it comes from, its content type, its credentials, the role it needs) before
//! any handler runs; plus the security headers of every answer.

mod guard;
pub mod roles;
pub mod session;
pub mod tokens;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

pub use guard::guard;
pub use roles::{required_role, Role};

/// The principal of a service without `--auth`: anyone who can reach its loopback port.
pub const ANONYMOUS: &str = "anonymous@loopback";

/// Who a request comes from, as the guard established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name (`databuild auth add NAME`), or [`ANONYMOUS`].
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// The principal of a service without authentication (may do anything).
    pub fn anonymous() -> Self {
        Self {
            name: ANONYMOUS.to_string(),
            role: Role::Admin,
        }
    }

    /// The requester recorded in the event log: the principal's name, with the label a
    /// client gave (`x-databuild-client`) after it — a label never replaces the name.
    pub fn requester(&self, label: Option<&str>) -> String {
        match label.map(str::trim).filter(|l| !l.is_empty()) {
            Some(l) => {
                let l: String = l.chars().filter(|c| !c.is_control()).take(64).collect();
                format!("{} ({l})", self.name)
            }
            None => self.name.clone(),
        }
    }
}

/// How the service guards its port.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// The access-token file (`--auth`); none: everyone is [`ANONYMOUS`] with every role.
    pub auth: Option<PathBuf>,
    /// Host names (or `host:port`) the service answers to besides the loopback names.
    pub allowed_hosts: Vec<String>,
    /// Whether the port speaks TLS (session cookies are then `Secure`).
    pub tls: bool,
}

/// The guard's state, shared by every request.
#[derive(Debug)]
pub struct Security {
    pub(crate) opts: SecurityOptions,
    pub(crate) tokens: Option<tokens::Verifier>,
    pub(crate) sessions: session::Sessions,
    pub(crate) streams: Arc<StreamCounts>,
}

/// Streams open per principal.
#[derive(Debug, Default)]
pub struct StreamCounts(Mutex<HashMap<String, usize>>);

/// One open stream of a principal; dropping it closes the count.
#[derive(Debug)]
pub struct StreamPermit {
    counts: Arc<StreamCounts>,
    name: String,
}

impl StreamCounts {
    /// A permit for one more stream of `name`, unless it has `max` open.
    pub fn acquire(self: &Arc<Self>, name: &str, max: usize) -> Option<StreamPermit> {
        let mut m = self.0.lock().expect("stream counts lock");
        let n = m.entry(name.to_string()).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamPermit {
            counts: self.clone(),
            name: name.to_string(),
        })
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().expect("stream counts lock");
        if let Some(n) = m.get_mut(&self.name) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.name);
            }
        }
    }
}

impl Security {
    /// The guard for `opts`; fails if the token file cannot be read.
    pub fn new(opts: SecurityOptions) -> Result<Arc<Self>, tokens::AuthError> {
        let tokens = opts.auth.clone().map(tokens::Verifier::new).transpose()?;
        Ok(Arc::new(Self {
            opts,
            tokens,
            sessions: session::Sessions::new(),
            streams: Arc::default(),
        }))
    }

    /// The guard of a service without authentication that answers to loopback names.
    pub fn open() -> Arc<Self> {
        Arc::new(Self {
            opts: SecurityOptions::default(),
            tokens: None,
            sessions: session::Sessions::new(),
            streams: Arc::default(),
        })
    }

    /// Whether requests must carry credentials.
    pub fn requires_auth(&self) -> bool {
        self.tokens.is_some()
    }

    /// Whether `host` (a `Host` header or URI authority) names this service.
    pub fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host);
        if is_loopback_name(name) {
            return true;
        }
        self.opts.allowed_hosts.iter().any(|a| {
            a.eq_ignore_ascii_case(host)
                || (!a.contains(':') && a.eq_ignore_ascii_case(name))
                || a.strip_prefix('[').is_some() && a.eq_ignore_ascii_case(host)
        })
    }
}

/// The host part of `host[:port]` (IPv6 in brackets kept without them).
pub fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `localhost`, `127.0.0.1` (any of 127/8) or `::1`.
pub fn is_loopback_name(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(allowed: &[&str]) -> Security {
        Security {
            opts: SecurityOptions {
                allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
                ..SecurityOptions::default()
            },
            tokens: None,
            sessions: session::Sessions::new(),
            streams: Arc::default(),
        }
    }

    #[test]
    fn loopback_names_are_always_allowed_and_others_only_when_listed() {
        let s = sec(&["build.example.com", "10.0.0.5:8080"]);
        for ok in [
            "localhost",
            "localhost:50051",
            "127.0.0.1:1",
            "[::1]:50051",
            "build.example.com",
            "build.example.com:443",
            "10.0.0.5:8080",
        ] {
            assert!(s.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:50051",
            "10.0.0.5:9999",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "",
        ] {
            assert!(!s.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn a_client_label_never_replaces_the_principal() {
        let p = Principal::anonymous();
        assert_eq!(p.requester(None), "anonymous@loopback");
        assert_eq!(p.requester(Some("")), "anonymous@loopback");
        assert_eq!(
            p.requester(Some("ops-admin")),
            "anonymous@loopback (ops-admin)"
        );
    }
}
