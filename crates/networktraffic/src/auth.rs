//! Talking to a protected Prometheus: the HTTP client (timeouts, TLS) and the `Authorization`
//! header from a bearer-token or password file.
//!
//! Credentials files are read before every query rather than once: Kubernetes rotates
//! projected service-account tokens and updates mounted Secrets in place, and a scheduler that
//! cached the first token would start failing an hour later. Reading a small file every 15 s
//! costs nothing. The secret goes only into a header marked sensitive; it is never logged or
//! put into an error message (errors name the file).
//!
//! TLS: rustls with the `ring` provider, the one kube uses. reqwest 0.13's default TLS would
//! bring aws-lc-rs, and two providers in one process make rustls panic when a client picks one
//! (`docs/architecture.md`); reqwest is built with `rustls-no-provider` and uses the
//! process-wide default, which [`ensure_crypto_provider`] sets to `ring` if nothing did.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    path::Path,
};

use base64::Engine as _;
use parking_lot::Mutex;
use reqwest::header::HeaderValue;

use crate::{
    Error,
    args::{AuthConfig, Config},
};

/// Installs rustls' `ring` provider as the process default unless one is installed already
/// (reqwest without a built-in provider would panic when building its client).
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing a provider is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The reqwest client: connect and whole-request timeouts, CA file, optional insecure mode.
///
/// # Errors
/// [`Error::ReadFile`] for an unreadable CA file, [`Error::HttpClient`] for one without a
/// certificate or when TLS cannot be set up.
pub fn http_client(config: &Config) -> Result<reqwest::Client, Error> {
    ensure_crypto_provider();
    let mut b = reqwest::Client::builder()
        .connect_timeout(config.timeout)
        .timeout(config.timeout)
        .user_agent(concat!("ksched-networktraffic/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|source| Error::ReadFile {
            what: "CA file",
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::HttpClient(format!(
                "CA file {}: {}",
                path.display(),
                crate::error::chain(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(Error::HttpClient(format!(
                "CA file {} holds no PEM certificate",
                path.display()
            )));
        }
        // Only the given CA(s), as Prometheus' own `ca_file` means: the system roots would
        // let any public CA vouch for the Prometheus host.
        b = b.tls_certs_only(certs);
    }
    if config.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| Error::HttpClient(crate::error::chain(&e)))
}

/// Builds the `Authorization` header for each query from the credentials files.
#[derive(Debug)]
pub struct Credentials {
    config: AuthConfig,
    /// Fingerprint of the last secret read, to log rotations (never the secret itself).
    last: Mutex<Option<u64>>,
}

fn read_secret(what: &'static str, path: &Path) -> Result<String, Error> {
    let s = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
        what,
        path: path.into(),
        source,
    })?;
    // Secrets mounted from files usually end in a newline that is not part of the secret.
    let s = s.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(Error::EmptyFile {
            what,
            path: path.into(),
        });
    }
    Ok(s)
}

impl Credentials {
    /// Credentials as configured.
    #[must_use]
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config,
            last: Mutex::new(None),
        }
    }

    /// The header for the next query (`None` without auth), from the files as they are now.
    ///
    /// # Errors
    /// [`Error::ReadFile`] / [`Error::EmptyFile`] naming the file; [`Error::HttpClient`] when
    /// the secret holds bytes a header cannot carry.
    pub fn header(&self) -> Result<Option<HeaderValue>, Error> {
        let (value, path) = match &self.config {
            AuthConfig::None => return Ok(None),
            AuthConfig::BearerTokenFile(path) => {
                let token = read_secret("bearer token file", path)?;
                (format!("Bearer {}", token.trim()), path)
            }
            AuthConfig::Basic {
                username,
                password_file,
            } => {
                let password = read_secret("password file", password_file)?;
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                (format!("Basic {b64}"), password_file)
            }
        };
        let mut h = DefaultHasher::new();
        value.hash(&mut h);
        let fingerprint = h.finish();
        let mut last = self.last.lock();
        if last.is_some_and(|l| l != fingerprint) {
            tracing::info!(plugin = crate::NAME, file = %path.display(), "credentials file changed; using the new secret");
        }
        *last = Some(fingerprint);
        drop(last);
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            Error::HttpClient(format!(
                "{} holds characters not allowed in an HTTP header",
                path.display()
            ))
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ksched-nt-auth-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn bearer_token_is_reread() {
        let p = temp_file("token", "abc\n");
        let c = Credentials::new(AuthConfig::BearerTokenFile(p.clone()));
        let h = c.header().unwrap().unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Bearer abc");
        std::fs::write(&p, "def").unwrap();
        assert_eq!(c.header().unwrap().unwrap().to_str().unwrap(), "Bearer def");
        std::fs::write(&p, "\n").unwrap();
        let e = c.header().unwrap_err();
        assert_eq!(e.kind(), "credentials");
        assert!(e.to_string().contains("is empty"), "{e}");
        assert!(!e.to_string().contains("def"));
    }

    #[test]
    fn basic_auth_header() {
        let p = temp_file("pw", "pa ss\n");
        let c = Credentials::new(AuthConfig::Basic {
            username: "user".into(),
            password_file: p,
        });
        // base64("user:pa ss")
        assert_eq!(
            c.header().unwrap().unwrap().to_str().unwrap(),
            "Basic dXNlcjpwYSBzcw=="
        );
        assert!(
            Credentials::new(AuthConfig::None)
                .header()
                .unwrap()
                .is_none()
        );
    }
}
