//! TLS with rustls (the `ring` provider): the server's configuration from a PEM
//! certificate chain and key (`serve --tls-cert/--tls-key`, ALPN `h2` and `http/1.1`), and
//! a client's from a CA file (`--ca-cert`) or the system's CA bundle.

use std::{path::Path, sync::Arc};

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the PEM file `path` (`what` names the option, for messages).
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |detail: String| {
        TlsError(format!(
            "cannot use `{}` ({what}): {detail}",
            path.display()
        ))
    };
    databuild_bel::pem_certificates(path).map_err(bad)
}

/// The private key of the PEM file `path`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bad = |detail: String| {
        TlsError(format!(
            "cannot use `{}` (--tls-key): {detail}",
            path.display()
        ))
    };
    std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            bad("no PEM private key in it (`-----BEGIN PRIVATE KEY-----`)".into())
        }
        e => bad(e.to_string()),
    })
}

/// The server's TLS configuration: the chain in `cert` and the key in `key` (PEM), ALPN
/// `h2` (gRPC) and `http/1.1`.
pub fn server_config(cert: &Path, key_file: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert, "--tls-cert")?;
    let key = load_key(key_file)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            TlsError(format!(
                "the key in `{}` (--tls-key) does not fit the certificate in `{}` (--tls-cert): {e}",
                key_file.display(),
                cert.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots to verify a server against: the certificates of `ca`, else the system's CA
/// bundle. `what` names the option giving `ca`.
pub fn roots(ca: Option<&Path>, what: &str) -> Result<RootCertStore, TlsError> {
    let (path, what) = match ca {
        Some(p) => (p.to_path_buf(), what.to_string()),
        None => (
            databuild_bel::system_bundle().ok_or_else(|| {
                TlsError(format!(
                    "no system CA bundle found to verify the server; give the CA that signed its certificate with `{what} CA.pem`"
                ))
            })?,
            "the system's CA bundle".to_string(),
        ),
    };
    let mut store = RootCertStore::empty();
    for c in load_certs(&path, &what)? {
        store.add(c).map_err(|e| {
            TlsError(format!(
                "cannot use `{}` ({what}): a certificate in it is not a CA certificate: {e}",
                path.display()
            ))
        })?;
    }
    Ok(store)
}

/// A client's TLS configuration verifying servers against `roots`.
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
