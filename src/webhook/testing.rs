//! Test helpers of the webhook server: self-signed certificates written where the server reads
//! them, and an HTTPS client that trusts one certificate and reports the one it was served.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};

use super::CertFiles;

/// A self-signed certificate for `localhost` and its key, both PEM.
pub struct Pair {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The key, PEM.
    pub key_pem: String,
    /// The certificate, DER (what a client is served).
    pub cert_der: CertificateDer<'static>,
}

impl Pair {
    /// A new pair.
    pub fn generate() -> Self {
        let c =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        Self {
            cert_pem: c.cert.pem(),
            key_pem: c.signing_key.serialize_pem(),
            cert_der: c.cert.der().clone(),
        }
    }

    /// Writes the pair as `tls.crt` and `tls.key` in `dir`.
    pub fn write(&self, dir: &Path) -> CertFiles {
        let files = CertFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&files.cert, &self.cert_pem).expect("write the certificate");
        std::fs::write(&files.key, &self.key_pem).expect("write the key");
        files
    }
}

/// What one HTTPS request saw.
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// The certificate the server presented.
    pub served: CertificateDer<'static>,
}

/// POSTs `body` to `path` on a new connection, trusting only `trusted` for `localhost`.
pub async fn post(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
) -> Answer {
    try_post(addr, trusted, path, body)
        .await
        .expect("an HTTPS answer")
}

/// Like [`post`]; Err when the connection, the handshake or the request fails.
pub async fn try_post(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .ok_or("no certificate")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
    tokio::spawn(connection);
    let request = hyper::Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes()
        .to_vec();
    Ok(Answer {
        status,
        body,
        served,
    })
}
