//! The manager's webhooks wired into a test API server as a cluster wires them, with
//! certificates made here instead of by cert-manager:
//!
//! - [`Certs`]: a CA and a serving certificate for 127.0.0.1 in a directory laid out like the
//!   Secret cert-manager mounts (`tls.crt`, `tls.key`), and a rotation that replaces the pair.
//! - [`enable`]: the shipped webhook configurations (config/webhook/manifests.yaml) and the CRDs'
//!   conversion webhook, with the Service references replaced by `https://127.0.0.1:<port>`,
//!   since the test API server runs outside any cluster.
//! - [`served_certificate`]: the certificate the server presents to a new connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};

/// The plurals of the kinds whose CRDs get the conversion webhook: every capkind CRD.
pub fn plurals() -> Vec<String> {
    capkind_api::crds::all()
        .into_iter()
        .map(|crd| crd.spec.names.plural)
        .collect()
}

/// A CA and the serving certificate it signed, written to a directory.
pub struct Certs {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Certs {
    /// A new CA and a serving certificate for 127.0.0.1 and localhost, in `dir`.
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("certificate directory");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "capkind test webhook CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let certs = Self {
            dir: dir.to_path_buf(),
            ca,
        };
        certs.rotate();
        certs
    }

    /// The directory to give the manager as --webhook-cert-dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA in PEM, what the API server trusts.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// Writes a new serving certificate and key signed by the same CA, each file replaced by a
    /// rename so the server never reads half a file. Returns the new certificate (DER).
    pub fn rotate(&self) -> Vec<u8> {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("serving params");
        let key = KeyPair::generate().expect("serving key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("serving certificate");
        write_atomically(&self.dir.join("tls.key"), key.serialize_pem().as_bytes());
        write_atomically(&self.dir.join("tls.crt"), cert.pem().as_bytes());
        cert.der().to_vec()
    }
}

fn write_atomically(path: &Path, content: &[u8]) {
    let staging = path.with_extension("new");
    std::fs::write(&staging, content).expect("write certificate file");
    std::fs::rename(&staging, path).expect("move certificate file in place");
}

/// Points the CRDs' conversion and the shipped admission webhooks at the manager listening on
/// 127.0.0.1:`port`, trusting `ca_pem`; returns once the API server converts through it.
pub async fn enable(client: &Client, port: u16, ca_pem: &str) -> Result<(), String> {
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let base = format!("https://127.0.0.1:{port}");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for plural in plurals() {
        let patch = json!({"spec": {"conversion": {"strategy": "Webhook", "webhook": {
            "conversionReviewVersions": ["v1"],
            "clientConfig": {"url": format!("{base}/convert"), "caBundle": bundle}}}}});
        crds.patch(
            &format!("{plural}.{}", capkind_api::GROUP),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| format!("patch the {plural} CRD's conversion: {e}"))?;
    }
    for doc in shipped_webhook_configurations()? {
        let doc = with_url(doc, &base, &bundle);
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match doc["kind"].as_str() {
            Some("MutatingWebhookConfiguration") => {
                let obj: MutatingWebhookConfiguration =
                    serde_json::from_value(doc).map_err(|e| format!("{name}: {e}"))?;
                recreate(&Api::all(client.clone()), &name, &obj).await?;
            }
            Some("ValidatingWebhookConfiguration") => {
                let obj: ValidatingWebhookConfiguration =
                    serde_json::from_value(doc).map_err(|e| format!("{name}: {e}"))?;
                recreate(&Api::all(client.clone()), &name, &obj).await?;
            }
            _ => {}
        }
    }
    // The API server picks up CRD and webhook changes within a moment; wait until a v1beta1
    // list goes through the conversion webhook.
    let v1beta1 = kube::api::ApiResource::erase::<capkind_api::v1beta1::KindCluster>(&());
    crate::wait::until(
        "conversion webhook in use",
        Duration::from_secs(30),
        || async {
            let api: Api<kube::api::DynamicObject> = Api::all_with(client.clone(), &v1beta1);
            api.list(&ListParams::default().limit(1))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await;
    Ok(())
}

async fn recreate<K>(api: &Api<K>, name: &str, obj: &K) -> Result<(), String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let _ = api.delete(name, &DeleteParams::default()).await;
    api.create(&PostParams::default(), obj)
        .await
        .map(|_| ())
        .map_err(|e| format!("create {name}: {e}"))
}

/// The webhook configurations the provider ships, as JSON documents.
pub fn shipped_webhook_configurations() -> Result<Vec<Value>, String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/webhook/manifests.yaml");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if !value.is_null() {
            docs.push(serde_json::to_value(value).map_err(|e| e.to_string())?);
        }
    }
    Ok(docs)
}

/// `doc` with every webhook's Service reference replaced by `base` + its path.
fn with_url(mut doc: Value, base: &str, bundle: &str) -> Value {
    if let Some(webhooks) = doc["webhooks"].as_array_mut() {
        for webhook in webhooks {
            let path = webhook["clientConfig"]["service"]["path"]
                .as_str()
                .unwrap_or("/")
                .to_string();
            webhook["clientConfig"] = json!({"url": format!("{base}{path}"), "caBundle": bundle});
        }
    }
    doc["metadata"] = json!({"name": doc["metadata"]["name"]});
    doc
}

/// The certificate (DER) 127.0.0.1:`port` presents to a new TLS connection trusting `ca_pem`.
pub async fn served_certificate(port: u16, ca_pem: &str) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(ca_pem)? {
        roots.add(cert).map_err(|e| format!("CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| "no certificate presented".to_string())
}

fn rustls_pemfile_certs(
    pem: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("PEM: {e}"))
}
