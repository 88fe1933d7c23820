//! The serving certificate: a rustls configuration (ring provider) from the PEM files, and the
//! reloader that follows them on disk.
//!
//! cert-manager rotates the Secret and kubelet swaps the mounted files at once (an atomic
//! rename of the `..data` symlink), so the reloader reads both files every few seconds and
//! compares their content with what it loaded, which sees a swap whatever happens to mtimes.
//! A new pair that does not load is only reported once it has stayed the same for two looks
//! (a writer that replaces the two files one after the other passes through a mismatched
//! pair), and then once: the server keeps the pair it has.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate and key do not make a TLS identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate, or a broken one.
    #[error("{path} holds no PEM certificate: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The key file holds no private key, or a broken one.
    #[error("{path} holds no PEM private key: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, for one).
    #[error("{cert} and {key} do not make a TLS identity: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// Where the serving certificate and its key are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// The content of both files, as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertFiles {
    fn read(&self) -> Result<Pem, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(Pem {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }

    /// A server configuration for this pair: TLS 1.2 and 1.3 with ring, HTTP/2 and HTTP/1.1.
    fn config(&self, pem: &Pem) -> Result<ServerConfig, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate {
                path: self.cert.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Certificate {
                path: self.cert.clone(),
                reason: "no CERTIFICATE block".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&pem.key).map_err(|e| TlsError::Key {
            path: self.key.clone(),
            reason: e.to_string(),
        })?;
        let pair = |source| TlsError::Pair {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        };
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(pair)?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(pair)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Check {
    /// The files hold what is loaded, or a bad pair already reported.
    Unchanged,
    /// A new pair loaded: serve it.
    Reloaded(Arc<ServerConfig>),
    /// The files changed to something that does not load; look again before saying so.
    Settling,
    /// The files hold a bad pair for the second look in a row: report it (once).
    Rejected(TlsError),
}

/// What the files held at one look: their content, or why they could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Pem(Pem),
    Unreadable(String),
}

/// Follows the files: what is loaded and what bad pair was seen.
pub struct Reloader {
    files: CertFiles,
    loaded: Pem,
    /// A bad pair seen once (false: waiting for a second look) or already reported (true).
    bad: Option<(Seen, bool)>,
}

impl Reloader {
    /// Loads the pair; the server starts with the configuration returned.
    pub fn load(files: CertFiles) -> Result<(Self, Arc<ServerConfig>), TlsError> {
        let pem = files.read()?;
        let config = Arc::new(files.config(&pem)?);
        let reloader = Self {
            files,
            loaded: pem,
            bad: None,
        };
        Ok((reloader, config))
    }

    /// The files this reloader follows.
    pub fn files(&self) -> &CertFiles {
        &self.files
    }

    /// Looks at the files once.
    pub fn check(&mut self) -> Check {
        let read = self.files.read();
        if read.as_ref().is_ok_and(|pem| *pem == self.loaded) {
            self.bad = None;
            return Check::Unchanged;
        }
        let seen = match &read {
            Ok(pem) => Seen::Pem(pem.clone()),
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        let seen_before =
            |reported: bool| matches!(&self.bad, Some((b, r)) if *b == seen && *r == reported);
        if seen_before(true) {
            return Check::Unchanged;
        }
        let settled = seen_before(false);
        match read.and_then(|pem| self.files.config(&pem).map(|c| (pem, c))) {
            Ok((pem, config)) => {
                self.loaded = pem;
                self.bad = None;
                Check::Reloaded(Arc::new(config))
            }
            Err(e) if settled => {
                self.bad = Some((seen, true));
                Check::Rejected(e)
            }
            Err(_) => {
                self.bad = Some((seen, false));
                Check::Settling
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::testing::Pair;

    fn kind(check: &Check) -> &'static str {
        match check {
            Check::Unchanged => "unchanged",
            Check::Reloaded(_) => "reloaded",
            Check::Settling => "settling",
            Check::Rejected(_) => "rejected",
        }
    }

    #[test]
    fn a_new_pair_is_loaded_and_a_bad_one_reported_once() {
        let dir = tempfile::tempdir().expect("dir");
        let files = Pair::generate().write(dir.path());
        let (mut r, _) = Reloader::load(files.clone()).expect("loads");
        let second = Pair::generate();
        let mismatched = Pair {
            key_pem: Pair::generate().key_pem,
            ..Pair::generate()
        };
        let mut looks = Vec::new();
        let mut look = |r: &mut Reloader| looks.push(kind(&r.check()));
        look(&mut r);
        second.write(dir.path());
        look(&mut r);
        look(&mut r);
        mismatched.write(dir.path());
        look(&mut r);
        look(&mut r);
        look(&mut r);
        std::fs::remove_file(&files.key).expect("remove");
        look(&mut r);
        look(&mut r);
        look(&mut r);
        second.write(dir.path());
        look(&mut r);
        Pair::generate().write(dir.path());
        look(&mut r);
        assert_eq!(
            looks,
            [
                "unchanged",
                "reloaded",
                "unchanged",
                // A mismatched pair: a second look before saying so, then silence.
                "settling",
                "rejected",
                "unchanged",
                // A file gone: the same.
                "settling",
                "rejected",
                "unchanged",
                // Back to the pair in use: nothing to do; then a new good pair.
                "unchanged",
                "reloaded",
            ]
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let files = Pair::generate().write(dir.path());
        let message = |files: &CertFiles| match Reloader::load(files.clone()) {
            Ok(_) => "loaded".to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(message(&files), "loaded");
        std::fs::write(&files.cert, "not a certificate").expect("write");
        assert_eq!(
            message(&files),
            format!(
                "{} holds no PEM certificate: no CERTIFICATE block",
                files.cert.display()
            )
        );
        Pair::generate().write(dir.path());
        std::fs::write(&files.key, Pair::generate().cert_pem).expect("write");
        assert!(
            message(&files).starts_with(&format!(
                "{} holds no PEM private key: ",
                files.key.display()
            )),
            "{}",
            message(&files)
        );
        let other = Pair::generate();
        std::fs::write(&files.key, other.key_pem).expect("write");
        assert!(
            message(&files).starts_with(&format!(
                "{} and {} do not make a TLS identity: ",
                files.cert.display(),
                files.key.display()
            )),
            "{}",
            message(&files)
        );
        std::fs::remove_file(&files.cert).expect("remove");
        assert_eq!(
            message(&files),
            format!(
                "cannot read {}: No such file or directory (os error 2)",
                files.cert.display()
            )
        );
    }
}
