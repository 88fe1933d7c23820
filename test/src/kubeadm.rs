//! Cluster API's kubeadm bootstrap provider (CABPK) and KubeadmControlPlane provider (KCP),
//! played by the tests: the cluster PKI Secrets, the bootstrap token, the cloud-config a
//! KubeadmConfig turns into, and the workload cluster's kubeconfig Secret, each in the shape
//! those providers give it, so that real kubeadm v1.20.2 runs in real node containers.
//!
//! The shape is CAPI's for Kubernetes 1.20 (kubeadm API `kubeadm.k8s.io/v1beta2`, last
//! produced by CAPI v1.3): `bootstrap/kubeadm/internal/cloudinit` (templates),
//! `bootstrap/kubeadm/types` (kubeadm documents: Go structs serialized as YAML, so keys sorted and
//! empty structs written as `{}`), `util/secret` (certificate Secrets and files), `util/kubeconfig`
//! (the kubeconfig Secret) and `bootstrap/kubeadm/internal/controllers/token.go` (the token).
//!
//! Two choices that are not CABPK's own output:
//! - The init document `/run/kubeadm/kubeadm.yaml` carries a third document, a
//!   `KubeletConfiguration` with `cgroupDriver: cgroupfs` and `cgroupRoot: /kubelet`, which the
//!   local node image needs (see shared/reference/real-kubernetes-here.md). kubeadm init uploads
//!   it to the `kubelet-config-1.20` ConfigMap, from which every joining node's kubelet takes it.
//!   CABPK itself writes only ClusterConfiguration and InitConfiguration; its users reach the
//!   same kubelet settings through `kubeletExtraArgs` (`cgroup-driver`, `cgroup-root`).
//! - `extra_args` of the cloud-config functions are appended to `kubeadm init|join` in the slot
//!   where CABPK puts its `--v N` verbosity flag, for what kubeadm 1.20 has no config field for
//!   (`--skip-phases=addon/coredns`: this node image has no CoreDNS). With none, the command is
//!   CABPK's, byte for byte. Preflight errors to ignore belong in
//!   [`NodeConfig::ignore_preflight_errors`] (a CABPK field; kubeadm merges it with the flag).
//!
//! The bootstrap token is CABPK's: a Secret the test creates in the workload cluster once its
//! control plane is up ([`BootstrapToken::create`]), as CABPK does before it writes any join
//! data (the init configuration names no token; kubeadm init makes and prints a default one that
//! nothing uses).
//!
//! Keys are made by `openssl` (RSA 2048, PKCS#1 PEM, as CAPI writes them; kubeadm 1.20 accepts
//! only RSA for the service-account key). Nothing this module prints with `Debug` holds key
//! material or the token's secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

/// The Kubernetes version the node image carries.
pub const KUBERNETES_VERSION: &str = "v1.20.2";
/// The kubeadm configuration API of Kubernetes 1.15 to 1.21.
pub const KUBEADM_API_VERSION: &str = "kubeadm.k8s.io/v1beta2";
/// `nodeRegistration.criSocket` as CAPD's templates set it.
pub const CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";
/// The kubelet's `eviction-hard` as CAPD's templates set it: never evict for disk pressure.
pub const EVICTION_HARD: &str = "nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%";
/// How long CABPK's bootstrap tokens live.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);
/// What CABPK runs after kubeadm succeeds.
pub const SENTINEL_COMMAND: &str = "echo success > /run/cluster-api/bootstrap-success.complete";
/// Where CABPK writes the init configuration.
pub const INIT_CONFIG_PATH: &str = "/run/kubeadm/kubeadm.yaml";
/// Where CABPK writes a join configuration.
pub const JOIN_CONFIG_PATH: &str = "/run/kubeadm/kubeadm-join-config.yaml";

const CLUSTER_NAME_LABEL: &str = "cluster.x-k8s.io/cluster-name";
const CLUSTER_SECRET_TYPE: &str = "cluster.x-k8s.io/secret";
const HEADER: &str = "## template: jinja\n#cloud-config\n";
const PLACEHOLDER: &str = "\n-   path: /run/cluster-api/placeholder\n    owner: root:root\n    permissions: '0640'\n    content: \"This placeholder file is used to create the /run/cluster-api sub directory in a way that is compatible with both Linux and Windows (mkdir -p /run/cluster-api does not work with Windows)\"";
const PKI_DIR: &str = "/etc/kubernetes/pki";

/// A certificate (or, for the service account, a public key) and its private key, both PEM, as
/// CAPI keeps them in a Secret's `tls.crt` and `tls.key`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    cert: String,
    key: String,
}

impl KeyPair {
    /// The certificate or public key, PEM.
    pub fn cert(&self) -> &str {
        &self.cert
    }

    /// The private key, PEM (PKCS#1).
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("cert", &format_args!("<{} bytes of PEM>", self.cert.len()))
            .field("key", &format_args!("<redacted>"))
            .finish()
    }
}

/// The cluster's PKI as KCP (or CABPK, for a control plane without KCP) generates it: three
/// self-signed CAs (subject `CN=kubernetes`, serial 0, ten years, path length 0) and the
/// service-account key pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterPki {
    /// The cluster CA: Secret `<cluster>-ca`, files `ca.crt`, `ca.key`.
    pub ca: KeyPair,
    /// The etcd CA: Secret `<cluster>-etcd`, files `etcd/ca.crt`, `etcd/ca.key`.
    pub etcd: KeyPair,
    /// The front-proxy CA: Secret `<cluster>-proxy`, files `front-proxy-ca.crt`, `.key`.
    pub front_proxy: KeyPair,
    /// The service-account keys: Secret `<cluster>-sa` (`tls.crt` holds the public key), files
    /// `sa.pub`, `sa.key`.
    pub service_account: KeyPair,
}

impl ClusterPki {
    /// Generates new keys and CA certificates with `openssl`.
    pub fn generate() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let ca = |name: &str| new_ca(dir.path(), name);
        Ok(Self {
            ca: ca("ca")?,
            etcd: ca("etcd")?,
            front_proxy: ca("proxy")?,
            service_account: new_service_account(dir.path())?,
        })
    }

    /// The cluster CA's public-key pin for kubeadm's discovery (`caCertHashes`).
    pub fn ca_cert_hash(&self) -> String {
        ca_cert_hash(&self.ca.cert).expect("the generated CA certificate parses")
    }

    /// The four Secrets `<cluster>-{ca,etcd,proxy,sa}` as CAPI stores them: type
    /// `cluster.x-k8s.io/secret`, the cluster-name label, keys `tls.crt` and `tls.key`, owned by
    /// `owner` when given (KCP makes itself the controller owner).
    pub fn secrets(&self, cluster: &str, owner: Option<&OwnerReference>) -> Vec<Secret> {
        [
            ("ca", &self.ca),
            ("etcd", &self.etcd),
            ("proxy", &self.front_proxy),
            ("sa", &self.service_account),
        ]
        .into_iter()
        .map(|(purpose, pair)| {
            cluster_secret(
                &format!("{cluster}-{purpose}"),
                cluster,
                owner,
                [
                    ("tls.crt", pair.cert.as_str()),
                    ("tls.key", pair.key.as_str()),
                ],
            )
        })
        .collect()
    }

    /// Creates [`Self::secrets`] in `namespace`.
    pub async fn store(
        &self,
        client: &Client,
        namespace: &str,
        cluster: &str,
        owner: Option<&OwnerReference>,
    ) -> Result<(), kube::Error> {
        let api = Api::<Secret>::namespaced(client.clone(), namespace);
        for secret in self.secrets(cluster, owner) {
            api.create(&PostParams::default(), &secret).await?;
        }
        Ok(())
    }

    /// The files CABPK writes for the first and every joining control-plane machine, in its
    /// order (cluster CA, etcd CA, front-proxy CA, service account; certificate before key).
    fn files(&self) -> Vec<(String, &'static str, &str)> {
        let mut out = vec![];
        for (cert, key, pair) in [
            ("ca.crt", "ca.key", &self.ca),
            ("etcd/ca.crt", "etcd/ca.key", &self.etcd),
            (
                "front-proxy-ca.crt",
                "front-proxy-ca.key",
                &self.front_proxy,
            ),
            ("sa.pub", "sa.key", &self.service_account),
        ] {
            out.push((format!("{PKI_DIR}/{cert}"), "0640", pair.cert.as_str()));
            out.push((format!("{PKI_DIR}/{key}"), "0600", pair.key.as_str()));
        }
        out
    }
}

/// `sha256:<hex>` of the DER SubjectPublicKeyInfo of the first certificate in `cert_pem`, the
/// pin `kubeadm join` checks the cluster CA against.
pub fn ca_cert_hash(cert_pem: &str) -> Result<String, String> {
    let der = pem_certificate(cert_pem).ok_or("no PEM certificate")?;
    let spki = subject_public_key_info(&der).ok_or("the certificate is not valid DER")?;
    let digest = ring::digest::digest(&ring::digest::SHA256, spki);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// A kubeadm bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// A new random token.
    pub fn generate() -> Self {
        Self {
            id: random_token_chars(6),
            secret: random_token_chars(16),
        }
    }

    /// The public part, which names the Secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The whole token, `<id>.<secret>`, as it goes into a JoinConfiguration.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    /// The Secret CABPK creates in the workload cluster's kube-system for the token, expiring
    /// `ttl` from now ([`DEFAULT_TOKEN_TTL`] is CABPK's).
    pub fn secret(&self, ttl: Duration) -> Secret {
        let expiration =
            chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let data = [
            ("token-id", self.id.clone()),
            ("token-secret", self.secret.clone()),
            (
                "expiration",
                expiration.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            ("usage-bootstrap-signing", "true".to_string()),
            ("usage-bootstrap-authentication", "true".to_string()),
            (
                "auth-extra-groups",
                "system:bootstrappers:kubeadm:default-node-token".to_string(),
            ),
            (
                "description",
                "token generated by cluster-api-bootstrap-provider-kubeadm".to_string(),
            ),
        ];
        Secret {
            metadata: ObjectMeta {
                name: Some(format!("bootstrap-token-{}", self.id)),
                namespace: Some("kube-system".to_string()),
                ..ObjectMeta::default()
            },
            type_: Some("bootstrap.kubernetes.io/token".to_string()),
            data: Some(
                data.into_iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    /// Creates [`Self::secret`] through the workload cluster's client.
    pub async fn create(&self, workload: &Client, ttl: Duration) -> Result<(), kube::Error> {
        Api::<Secret>::namespaced(workload.clone(), "kube-system")
            .create(&PostParams::default(), &self.secret(ttl))
            .await
            .map(|_| ())
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

/// What CABPK takes from the Cluster and the KubeadmControlPlane for the ClusterConfiguration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `clusterName`: the Cluster's name.
    pub name: String,
    /// `kubernetesVersion`: the Machine's version.
    pub kubernetes_version: String,
    /// `controlPlaneEndpoint`, `host:port`: the Cluster's (the load balancer's address on the
    /// Docker network and 6443). Also the discovery endpoint of joins.
    pub control_plane_endpoint: String,
    /// `networking.podSubnet`.
    pub pod_subnet: String,
    /// `networking.serviceSubnet`.
    pub service_subnet: String,
    /// `imageRepository`.
    pub image_repository: String,
    /// `apiServer.certSANs`: extra names of the API server's certificate.
    pub cert_sans: Vec<String>,
}

impl ClusterConfig {
    /// The cluster `name` behind `control_plane_endpoint` (`host:port`), with Kubernetes
    /// v1.20.2, pods in 10.244.0.0/16, services in 10.96.0.0/12, images from k8s.gcr.io, and
    /// `localhost` and `127.0.0.1` in the API server's certificate so that the host can reach
    /// it through the load balancer's published port.
    pub fn new(name: &str, control_plane_endpoint: &str) -> Self {
        Self {
            name: name.to_string(),
            kubernetes_version: KUBERNETES_VERSION.to_string(),
            control_plane_endpoint: control_plane_endpoint.to_string(),
            pod_subnet: "10.244.0.0/16".to_string(),
            service_subnet: "10.96.0.0/12".to_string(),
            image_repository: "k8s.gcr.io".to_string(),
            cert_sans: vec!["localhost".to_string(), "127.0.0.1".to_string()],
        }
    }
}

/// A KubeadmConfig's `nodeRegistration`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// `name`: the Node's name. CAPD's templates leave it unset, so kubeadm takes the hostname,
    /// which is the container's name.
    pub name: Option<String>,
    /// `criSocket`.
    pub cri_socket: String,
    /// `kubeletExtraArgs`.
    pub kubelet_extra_args: BTreeMap<String, String>,
    /// `ignorePreflightErrors`; kubeadm adds those of the `--ignore-preflight-errors` flag.
    /// The local node image has no CoreDNS image, so control-plane nodes need `ImagePull`.
    pub ignore_preflight_errors: Vec<String>,
}

impl NodeConfig {
    /// CAPD's nodeRegistration (containerd's socket, `eviction-hard`) for the Node `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: Some(name.to_string()),
            cri_socket: CRI_SOCKET.to_string(),
            kubelet_extra_args: BTreeMap::from([(
                "eviction-hard".to_string(),
                EVICTION_HARD.to_string(),
            )]),
            ignore_preflight_errors: vec![],
        }
    }

    fn registration(&self) -> Value {
        let mut r = json!({"criSocket": self.cri_socket});
        if let Some(name) = &self.name {
            r["name"] = json!(name);
        }
        if !self.kubelet_extra_args.is_empty() {
            r["kubeletExtraArgs"] = json!(self.kubelet_extra_args);
        }
        if !self.ignore_preflight_errors.is_empty() {
            r["ignorePreflightErrors"] = json!(self.ignore_preflight_errors);
        }
        r
    }
}

/// The ClusterConfiguration document as CABPK serializes it for Kubernetes 1.20.
pub fn cluster_configuration(cluster: &ClusterConfig) -> String {
    let mut api_server = json!({});
    if !cluster.cert_sans.is_empty() {
        api_server["certSANs"] = json!(cluster.cert_sans);
    }
    yaml(&json!({
        "apiVersion": KUBEADM_API_VERSION, "kind": "ClusterConfiguration",
        "apiServer": api_server,
        "clusterName": cluster.name,
        "controlPlaneEndpoint": cluster.control_plane_endpoint,
        "controllerManager": {}, "dns": {}, "etcd": {}, "scheduler": {},
        "imageRepository": cluster.image_repository,
        "kubernetesVersion": cluster.kubernetes_version,
        "networking": {"podSubnet": cluster.pod_subnet, "serviceSubnet": cluster.service_subnet},
    }))
}

/// The InitConfiguration document as CABPK serializes it for Kubernetes 1.20.
pub fn init_configuration(node: &NodeConfig) -> String {
    yaml(&json!({
        "apiVersion": KUBEADM_API_VERSION, "kind": "InitConfiguration",
        "localAPIEndpoint": {},
        "nodeRegistration": node.registration(),
    }))
}

/// The KubeletConfiguration document the local node image needs (cgroupfs, cgroup root
/// `/kubelet`); see the module's documentation.
pub fn kubelet_configuration() -> String {
    yaml(&json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": "/kubelet",
    }))
}

/// The JoinConfiguration document as CABPK serializes it for Kubernetes 1.20: token discovery
/// at the control-plane endpoint, pinned to `ca_cert_hash`; with `controlPlane` for a
/// control-plane machine (KCP leaves its `localAPIEndpoint` empty: kubeadm takes the node's
/// address).
pub fn join_configuration(
    cluster: &ClusterConfig,
    node: &NodeConfig,
    token: &BootstrapToken,
    ca_cert_hash: &str,
    control_plane: bool,
) -> String {
    let mut doc = json!({
        "apiVersion": KUBEADM_API_VERSION, "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {
            "apiServerEndpoint": cluster.control_plane_endpoint,
            "caCertHashes": [ca_cert_hash],
            "token": token.expose(),
        }},
        "nodeRegistration": node.registration(),
    });
    if control_plane {
        doc["controlPlane"] = json!({"localAPIEndpoint": {}});
    }
    yaml(&doc)
}

/// The cloud-config of the first control-plane machine, as CABPK writes it: the PKI files,
/// `/run/kubeadm/kubeadm.yaml` (ClusterConfiguration, InitConfiguration and the
/// KubeletConfiguration), the placeholder that creates /run/cluster-api, and
/// `kubeadm init --config /run/kubeadm/kubeadm.yaml <extra_args> && echo success > ...`.
pub fn init_cloud_config(
    cluster: &ClusterConfig,
    node: &NodeConfig,
    pki: &ClusterPki,
    extra_args: &[&str],
) -> String {
    let mut out = write_files(&pki.files());
    out.push_str(&format!(
        "\n-   path: {INIT_CONFIG_PATH}\n    owner: root:root\n    permissions: '0640'\n    content: |\n      ---\n{}\n      ---\n{}\n      ---\n{}",
        indent6(&cluster_configuration(cluster)),
        indent6(&init_configuration(node)),
        indent6(&kubelet_configuration()),
    ));
    out.push_str(PLACEHOLDER);
    out.push_str(&format!(
        "\nruncmd:\n  - 'kubeadm init --config {INIT_CONFIG_PATH} {} && {SENTINEL_COMMAND}'\n",
        flags(extra_args)
    ));
    out
}

/// The cloud-config of a joining control-plane machine, as CABPK writes it: the PKI files,
/// `/run/kubeadm/kubeadm-join-config.yaml` and `kubeadm join --config ... && echo success > ...`.
pub fn control_plane_join_cloud_config(
    cluster: &ClusterConfig,
    node: &NodeConfig,
    pki: &ClusterPki,
    token: &BootstrapToken,
    extra_args: &[&str],
) -> String {
    let join = join_configuration(cluster, node, token, &pki.ca_cert_hash(), true);
    let mut out = write_files(&pki.files());
    out.push_str(&format!(
        "\n-   path: {JOIN_CONFIG_PATH}\n    owner: root:root\n    permissions: '0640'\n    content: |\n{}",
        indent6(&join)
    ));
    out.push_str(&join_tail(extra_args));
    out
}

/// The cloud-config of a worker machine, as CABPK writes it: only
/// `/run/kubeadm/kubeadm-join-config.yaml` and `kubeadm join --config ... && echo success > ...`.
pub fn worker_join_cloud_config(
    cluster: &ClusterConfig,
    node: &NodeConfig,
    ca_cert_hash: &str,
    token: &BootstrapToken,
    extra_args: &[&str],
) -> String {
    let join = join_configuration(cluster, node, token, ca_cert_hash, false);
    let mut out = write_files(&[]);
    out.push_str(&format!(
        "\n-   path: {JOIN_CONFIG_PATH}\n    owner: root:root\n    permissions: '0640'\n    content: |\n      ---\n{}",
        indent6(&join)
    ));
    out.push_str(&join_tail(extra_args));
    out
}

/// The kubeconfig KCP writes for the workload cluster: cluster `<cluster>` at `server` (KCP:
/// `https://<control-plane endpoint>`) trusting the cluster CA, user `<cluster>-admin` with a
/// new client certificate for `kubernetes-admin` in `system:masters`, signed by the CA and valid
/// for a year, context `<cluster>-admin@<cluster>`.
pub fn admin_kubeconfig(cluster: &str, server: &str, ca: &KeyPair) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let d = dir.path();
    write_private(d, "ca.crt", &ca.cert)?;
    write_private(d, "ca.key", &ca.key)?;
    write_private(d, "pki.cnf", OPENSSL_CONFIG)?;
    openssl(d, "genrsa -traditional -out admin.key 2048")?;
    openssl(
        d,
        "req -new -config pki.cnf -key admin.key -subj /O=system:masters/CN=kubernetes-admin -out admin.csr",
    )?;
    let serial = random_serial();
    openssl(
        d,
        &format!(
            "x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -set_serial {serial} -days 365 -sha256 -extfile pki.cnf -extensions client -out admin.crt"
        ),
    )?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = format!("{cluster}-admin");
    let context = format!("{user}@{cluster}");
    Ok(yaml(&json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {
            "certificate-authority-data": b64(&ca.cert), "server": server}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user}}],
        "current-context": context,
        "preferences": {},
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(&read(d, "admin.crt")?),
            "client-key-data": b64(&read(d, "admin.key")?)}}],
    })))
}

/// `https://<endpoint>`, the server KCP writes for the control-plane endpoint `host:port`.
pub fn server_url(endpoint: &str) -> String {
    format!("https://{endpoint}")
}

/// `kubeconfig` with every cluster's server replaced by `server`.
pub fn with_server(kubeconfig: &str, server: &str) -> Result<String, String> {
    let mut doc: serde_yaml::Value =
        serde_yaml::from_str(kubeconfig).map_err(|_| "the kubeconfig is not YAML".to_string())?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(serde_yaml::Value::as_sequence_mut)
        .ok_or("the kubeconfig has no clusters")?;
    for c in clusters {
        let cluster = c
            .get_mut("cluster")
            .and_then(serde_yaml::Value::as_mapping_mut)
            .ok_or("a kubeconfig cluster has no cluster section")?;
        cluster.insert("server".into(), server.into());
    }
    serde_yaml::to_string(&doc).map_err(|e| format!("kubeconfig: {e}"))
}

/// The variant of `kubeconfig` the host can use: the API server through the load balancer's
/// port published on the host's loopback (the certificate has `127.0.0.1` among its names).
pub fn host_reachable(kubeconfig: &str, published_port: u16) -> Result<String, String> {
    with_server(kubeconfig, &format!("https://127.0.0.1:{published_port}"))
}

/// The Secret `<cluster>-kubeconfig` as KCP writes it: key `value`, type
/// `cluster.x-k8s.io/secret`, the cluster-name label, owned by `owner` when given (KCP).
pub fn kubeconfig_secret(
    cluster: &str,
    kubeconfig: &str,
    owner: Option<&OwnerReference>,
) -> Secret {
    cluster_secret(
        &format!("{cluster}-kubeconfig"),
        cluster,
        owner,
        [("value", kubeconfig)],
    )
}

/// Creates [`kubeconfig_secret`] in `namespace`.
pub async fn store_kubeconfig(
    client: &Client,
    namespace: &str,
    cluster: &str,
    kubeconfig: &str,
    owner: Option<&OwnerReference>,
) -> Result<(), kube::Error> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(
            &PostParams::default(),
            &kubeconfig_secret(cluster, kubeconfig, owner),
        )
        .await
        .map(|_| ())
}

// --- cloud-config text, as CABPK's Go templates lay it out ---

/// The header and the `write_files:` entries of CABPK's "files" template.
fn write_files(files: &[(String, &str, &str)]) -> String {
    let mut out = format!("{HEADER}\nwrite_files:");
    for (path, permissions, content) in files {
        out.push_str(&format!(
            "\n-   path: {path}\n    owner: root:root\n    permissions: '{permissions}'\n    content: |\n{}",
            indent6(content)
        ));
    }
    out
}

/// The placeholder file and the runcmd of CABPK's join templates.
fn join_tail(extra_args: &[&str]) -> String {
    format!(
        "{PLACEHOLDER}\nruncmd:\n  - kubeadm join --config {JOIN_CONFIG_PATH} {} && {SENTINEL_COMMAND}\n",
        flags(extra_args)
    )
}

/// The flags for the verbosity slot of CABPK's kubeadm command line.
fn flags(extra_args: &[&str]) -> String {
    for arg in extra_args {
        assert!(
            !arg.contains(['\'', '\n', '#', '"']) && !arg.contains(": "),
            "kubeadm argument {arg:?} would need quoting in cloud-config"
        );
    }
    extra_args.join(" ")
}

/// CABPK's `Indent 6`: every line, the empty one after a final newline too, prefixed.
fn indent6(text: &str) -> String {
    let pad = "      ";
    format!(
        "{pad}{}",
        text.split('\n')
            .collect::<Vec<_>>()
            .join(&format!("\n{pad}"))
    )
}

/// YAML as Go's Kubernetes serializers write it: mapping keys sorted.
fn yaml(value: &Value) -> String {
    fn sorted(value: &Value) -> serde_yaml::Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_yaml::Value::Mapping(
                    entries
                        .into_iter()
                        .map(|(k, v)| (serde_yaml::Value::from(k.as_str()), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => serde_yaml::Value::Sequence(items.iter().map(sorted).collect()),
            other => serde_yaml::to_value(other).expect("a JSON scalar is YAML"),
        }
    }
    serde_yaml::to_string(&sorted(value)).expect("YAML")
}

fn cluster_secret<'a>(
    name: &str,
    cluster: &str,
    owner: Option<&OwnerReference>,
    data: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                CLUSTER_NAME_LABEL.to_string(),
                cluster.to_string(),
            )])),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..ObjectMeta::default()
        },
        type_: Some(CLUSTER_SECRET_TYPE.to_string()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

// --- keys and certificates ---

/// Extensions as CAPI's Go code sets them (`util/secret`, `util/certs`).
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = kubernetes
[ca]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = none
[client]
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = none
authorityKeyIdentifier = keyid
";

fn new_ca(dir: &Path, name: &str) -> Result<KeyPair, String> {
    write_private(dir, "pki.cnf", OPENSSL_CONFIG)?;
    let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(dir, &format!("genrsa -traditional -out {key} 2048"))?;
    openssl(
        dir,
        &format!(
            "req -x509 -new -config pki.cnf -extensions ca -key {key} -set_serial 0 -days 3650 -sha256 -out {cert}"
        ),
    )?;
    Ok(KeyPair {
        cert: read(dir, &cert)?,
        key: read(dir, &key)?,
    })
}

fn new_service_account(dir: &Path) -> Result<KeyPair, String> {
    openssl(dir, "genrsa -traditional -out sa.key 2048")?;
    openssl(dir, "rsa -in sa.key -pubout -out sa.pub")?;
    Ok(KeyPair {
        cert: read(dir, "sa.pub")?,
        key: read(dir, "sa.key")?,
    })
}

/// Runs `openssl` with `args` (split at spaces) in `dir`.
fn openssl(dir: &Path, args: &str) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl could not run ({e}); install it: apt-get install openssl"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.split(' ').next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn read(dir: &Path, name: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(name)).map_err(|e| format!("read {name}: {e}"))
}

/// Writes a file only its owner can read (the directory is a private temporary one too).
fn write_private(dir: &Path, name: &str, content: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dir.join(name))
        .and_then(|mut f| f.write_all(content.as_bytes()))
        .map_err(|e| format!("write {name}: {e}"))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    bytes
}

/// `n` characters of `[a-z0-9]`, uniformly (bytes of 252 and above are drawn again).
fn random_token_chars(n: usize) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes::<32>() {
            if b < 252 && out.len() < n {
                out.push(ALPHABET[usize::from(b % 36)] as char);
            }
        }
    }
    out
}

/// A random positive 63-bit serial, as CAPI's `NewSignedCert` draws it.
fn random_serial() -> String {
    let n = u64::from_be_bytes(random_bytes::<8>()) >> 1;
    format!("{}", n.max(1))
}

/// The DER of the first `CERTIFICATE` block of `pem`.
fn pem_certificate(pem: &str) -> Option<Vec<u8>> {
    let body = pem.split("-----BEGIN CERTIFICATE-----").nth(1)?;
    let body = body.split("-----END CERTIFICATE-----").next()?;
    let b64: String = body.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The whole DER element at the start of `input`, and the rest after it.
fn der_element(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first_len = *input.get(1)?;
    let (header, len) = if first_len < 0x80 {
        (2, usize::from(first_len))
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (2 + n, len)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((whole, &whole[header..], &input[end..]))
}

/// The SubjectPublicKeyInfo element of an X.509 certificate: the seventh element of
/// tbsCertificate when the explicit version tag is there, the sixth otherwise.
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(certificate)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = der_element(rest)?.2;
    }
    let (spki, _, _) = der_element(rest)?;
    (spki.first() == Some(&0x30)).then_some(spki)
}

/// A binary of the locally built Kubernetes (kubeadm, kubectl, kubelet, ...), from the directory
/// that `hack/install-test-deps.sh` exports as `CAPKIND_KUBERNETES_BIN`; panics with what to run
/// when it is not there.
pub fn kubernetes_binary(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CAPKIND_KUBERNETES_BIN").unwrap_or_else(|| {
        panic!(
            "CAPKIND_KUBERNETES_BIN is not set: run `eval \"$(hack/install-test-deps.sh)\"` \
             (it builds Kubernetes v{} from Debian's source, cached)",
            &KUBERNETES_VERSION[1..]
        )
    });
    let path = std::path::PathBuf::from(dir).join(name);
    assert!(
        path.is_file(),
        "{} is missing: run hack/install-kubernetes.sh",
        path.display()
    );
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn pki() -> &'static ClusterPki {
        static PKI: OnceLock<ClusterPki> = OnceLock::new();
        PKI.get_or_init(|| ClusterPki::generate().expect("generate the PKI"))
    }

    fn cluster() -> ClusterConfig {
        ClusterConfig::new("c1", "172.18.0.2:6443")
    }

    fn token() -> BootstrapToken {
        BootstrapToken {
            id: "abcdef".into(),
            secret: "0123456789abcdef".into(),
        }
    }

    /// Runs `sh -c script` in `dir` and returns its stdout.
    fn sh(dir: &Path, script: &str) -> String {
        let out = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    fn sections(cloud_config: &str) -> Vec<String> {
        let doc: serde_yaml::Value = serde_yaml::from_str(cloud_config).expect("cloud-config");
        doc.as_mapping()
            .expect("mapping")
            .keys()
            .map(|k| k.as_str().expect("key").to_string())
            .collect()
    }

    fn files(cloud_config: &str) -> Vec<(String, String, String, String)> {
        let doc: serde_yaml::Value = serde_yaml::from_str(cloud_config).expect("cloud-config");
        doc["write_files"]
            .as_sequence()
            .expect("write_files")
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().expect(k).to_string();
                (s("path"), s("owner"), s("permissions"), s("content"))
            })
            .collect()
    }

    fn runcmd(cloud_config: &str) -> Vec<String> {
        let doc: serde_yaml::Value = serde_yaml::from_str(cloud_config).expect("cloud-config");
        doc["runcmd"]
            .as_sequence()
            .expect("runcmd")
            .iter()
            .map(|c| c.as_str().expect("a string command").to_string())
            .collect()
    }

    fn documents(text: &str) -> Vec<serde_json::Value> {
        use serde::Deserialize;
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde_json::Value::deserialize(d).expect("YAML document"))
            .filter(|v| !v.is_null())
            .collect()
    }

    const PKI_PATHS: [&str; 8] = [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.crt",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/sa.pub",
        "/etc/kubernetes/pki/sa.key",
    ];

    #[test]
    fn keys_and_certificates_are_as_capi_makes_them() {
        let pki = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for (name, pair) in [
            ("ca", &pki.ca),
            ("etcd", &pki.etcd),
            ("proxy", &pki.front_proxy),
        ] {
            assert!(pair.key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
            std::fs::write(d.join(format!("{name}.crt")), &pair.cert).expect("write");
            std::fs::write(d.join(format!("{name}.key")), &pair.key).expect("write");
            let text = sh(
                d,
                &format!("openssl x509 -in {name}.crt -noout -text -subject -serial"),
            );
            assert!(text.contains("subject=CN = kubernetes"), "{text}");
            assert!(text.contains("serial=00"), "{text}");
            assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
            assert!(
                text.contains("Digital Signature, Key Encipherment, Certificate Sign"),
                "{text}"
            );
            assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
            assert_eq!(
                sh(d, &format!("openssl verify -CAfile {name}.crt {name}.crt")).trim(),
                format!("{name}.crt: OK")
            );
            // The key is the certificate's.
            assert_eq!(
                sh(d, &format!("openssl x509 -in {name}.crt -noout -pubkey")),
                sh(
                    d,
                    &format!("openssl rsa -in {name}.key -pubout 2>/dev/null")
                )
            );
        }
        assert_ne!(pki.ca.cert, pki.etcd.cert);
        let sa = &pki.service_account;
        assert!(sa.cert.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(sa.key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        std::fs::write(d.join("sa.key"), &sa.key).expect("write");
        assert_eq!(sh(d, "openssl rsa -in sa.key -pubout 2>/dev/null"), sa.cert);
    }

    #[test]
    fn ca_hash_matches_openssl() {
        let pki = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.crt"), &pki.ca.cert).expect("write");
        let want = sh(
            dir.path(),
            "openssl x509 -in ca.crt -noout -pubkey | openssl pkey -pubin -outform der | sha256sum",
        );
        let want = format!("sha256:{}", want.split_whitespace().next().expect("hash"));
        assert_eq!(pki.ca_cert_hash(), want);
        assert_eq!(ca_cert_hash(&pki.ca.cert), Ok(want));
        assert!(ca_cert_hash("not a certificate").is_err());
    }

    #[test]
    fn pki_secrets_are_capis() {
        let owner = OwnerReference {
            api_version: "controlplane.cluster.x-k8s.io/v1beta1".into(),
            kind: "KubeadmControlPlane".into(),
            name: "c1-control-plane".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let secrets = pki().secrets("c1", Some(&owner));
        let names: Vec<_> = secrets
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["c1-ca", "c1-etcd", "c1-proxy", "c1-sa"]);
        for s in &secrets {
            assert_eq!(s.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
            assert_eq!(
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(CLUSTER_NAME_LABEL)),
                Some(&"c1".to_string())
            );
            assert_eq!(
                s.metadata.owner_references.as_deref(),
                Some(&[owner.clone()][..])
            );
            let data = s.data.as_ref().expect("data");
            assert_eq!(data.keys().collect::<Vec<_>>(), ["tls.crt", "tls.key"]);
        }
        let sa = secrets[3].data.as_ref().expect("data");
        assert_eq!(sa["tls.crt"].0, pki().service_account.cert.as_bytes());
        assert_eq!(sa["tls.key"].0, pki().service_account.key.as_bytes());
        assert!(
            pki().secrets("c1", None)[0]
                .metadata
                .owner_references
                .is_none()
        );
    }

    #[test]
    fn bootstrap_tokens() {
        let t = BootstrapToken::generate();
        let whole = t.expose();
        let (id, secret) = whole.split_once('.').expect("a dot");
        let ok = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        assert!(ok(id, 6) && ok(secret, 16), "{whole}");
        assert_eq!(t.id(), id);
        assert_ne!(BootstrapToken::generate(), t);

        let s = t.secret(DEFAULT_TOKEN_TTL);
        assert_eq!(
            s.metadata.name.as_deref(),
            Some(&*format!("bootstrap-token-{id}"))
        );
        assert_eq!(s.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(s.type_.as_deref(), Some("bootstrap.kubernetes.io/token"));
        let data: BTreeMap<_, _> = s
            .data
            .expect("data")
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8")))
            .collect();
        assert_eq!(data["token-id"], id);
        assert_eq!(data["token-secret"], secret);
        assert_eq!(data["usage-bootstrap-authentication"], "true");
        assert_eq!(data["usage-bootstrap-signing"], "true");
        assert_eq!(
            data["auth-extra-groups"],
            "system:bootstrappers:kubeadm:default-node-token"
        );
        let expires = chrono::DateTime::parse_from_rfc3339(&data["expiration"]).expect("RFC 3339");
        let left = expires
            .signed_duration_since(chrono::Utc::now())
            .num_seconds();
        assert!((890..=900).contains(&left), "{left}");
        assert!(data["expiration"].ends_with('Z'));
    }

    #[test]
    fn init_cloud_config_is_cabpks() {
        let pki = pki();
        let mut node = NodeConfig::new("c1-cp-0");
        node.ignore_preflight_errors = vec!["ImagePull".into()];
        let data = init_cloud_config(&cluster(), &node, pki, &[]);
        assert!(data.starts_with("## template: jinja\n#cloud-config\n\nwrite_files:\n-   path: /etc/kubernetes/pki/ca.crt\n    owner: root:root\n    permissions: '0640'\n    content: |\n      -----BEGIN CERTIFICATE-----\n"), "{}", &data[..200]);
        assert_eq!(sections(&data), ["write_files", "runcmd"]);
        let files = files(&data);
        let paths: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
        let mut want = PKI_PATHS.to_vec();
        want.extend([INIT_CONFIG_PATH, "/run/cluster-api/placeholder"]);
        assert_eq!(paths, want);
        let contents = [
            &pki.ca.cert,
            &pki.ca.key,
            &pki.etcd.cert,
            &pki.etcd.key,
            &pki.front_proxy.cert,
            &pki.front_proxy.key,
            &pki.service_account.cert,
            &pki.service_account.key,
        ];
        for (i, f) in files.iter().enumerate() {
            assert_eq!(f.1, "root:root");
            let key = i < 8 && i % 2 == 1;
            assert_eq!(f.2, if key { "0600" } else { "0640" }, "{}", f.0);
            if i < 8 {
                assert_eq!(&f.3, contents[i], "{}", f.0);
            }
        }
        let docs = documents(&files[8].3);
        let kinds: Vec<_> = docs
            .iter()
            .map(|d| d["kind"].as_str().expect("kind"))
            .collect();
        assert_eq!(
            kinds,
            [
                "ClusterConfiguration",
                "InitConfiguration",
                "KubeletConfiguration"
            ]
        );
        assert_eq!(
            docs[0],
            json!({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "ClusterConfiguration",
                   "apiServer": {"certSANs": ["localhost", "127.0.0.1"]},
                   "clusterName": "c1", "controlPlaneEndpoint": "172.18.0.2:6443",
                   "controllerManager": {}, "dns": {}, "etcd": {}, "scheduler": {},
                   "imageRepository": "k8s.gcr.io", "kubernetesVersion": "v1.20.2",
                   "networking": {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}})
        );
        assert_eq!(
            docs[1],
            json!({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "InitConfiguration",
                   "localAPIEndpoint": {},
                   "nodeRegistration": {"name": "c1-cp-0", "criSocket": CRI_SOCKET,
                                        "ignorePreflightErrors": ["ImagePull"],
                                        "kubeletExtraArgs": {"eviction-hard": EVICTION_HARD}}})
        );
        assert_eq!(
            docs[2],
            json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                   "cgroupDriver": "cgroupfs", "cgroupRoot": "/kubelet"})
        );
        // Keys in Go's order, as CABPK's serializer writes them.
        assert!(
            files[8]
                .3
                .starts_with("---\napiServer:\n  certSANs:\n  - localhost\n"),
            "{}",
            files[8].3
        );
        assert_eq!(
            runcmd(&data),
            [
                "kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo success > /run/cluster-api/bootstrap-success.complete"
            ]
        );
        assert!(data.ends_with("\nruncmd:\n  - 'kubeadm init --config /run/kubeadm/kubeadm.yaml  && echo success > /run/cluster-api/bootstrap-success.complete'\n"));

        let skip = init_cloud_config(&cluster(), &node, pki, &["--skip-phases=addon/coredns"]);
        assert_eq!(
            runcmd(&skip),
            [
                "kubeadm init --config /run/kubeadm/kubeadm.yaml --skip-phases=addon/coredns && echo success > /run/cluster-api/bootstrap-success.complete"
            ]
        );
    }

    #[test]
    fn join_cloud_configs_are_cabpks() {
        let pki = pki();
        let hash = pki.ca_cert_hash();
        let cp = control_plane_join_cloud_config(
            &cluster(),
            &NodeConfig::new("c1-cp-1"),
            pki,
            &token(),
            &[],
        );
        let worker = worker_join_cloud_config(
            &cluster(),
            &NodeConfig::new("c1-md-0"),
            &hash,
            &token(),
            &[],
        );
        let command = "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml  && echo success > /run/cluster-api/bootstrap-success.complete";
        for (data, control_plane) in [(&cp, true), (&worker, false)] {
            assert!(
                data.starts_with("## template: jinja\n#cloud-config\n\nwrite_files:\n-   path: ")
            );
            assert_eq!(sections(data), ["write_files", "runcmd"]);
            let files = files(data);
            let paths: Vec<_> = files.iter().map(|f| f.0.as_str()).collect();
            let mut want = if control_plane {
                PKI_PATHS.to_vec()
            } else {
                vec![]
            };
            want.extend([JOIN_CONFIG_PATH, "/run/cluster-api/placeholder"]);
            assert_eq!(paths, want);
            let join = &files[want.len() - 2];
            assert_eq!((join.1.as_str(), join.2.as_str()), ("root:root", "0640"));
            // CABPK's worker template starts the document with "---", the control-plane one not.
            assert_eq!(join.3.starts_with("---\n"), !control_plane);
            let docs = documents(&join.3);
            assert_eq!(docs.len(), 1);
            let name = if control_plane { "c1-cp-1" } else { "c1-md-0" };
            let mut want = json!({"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "JoinConfiguration",
                "discovery": {"bootstrapToken": {"apiServerEndpoint": "172.18.0.2:6443",
                              "caCertHashes": [hash], "token": "abcdef.0123456789abcdef"}},
                "nodeRegistration": {"name": name, "criSocket": CRI_SOCKET,
                                     "kubeletExtraArgs": {"eviction-hard": EVICTION_HARD}}});
            if control_plane {
                want["controlPlane"] = json!({"localAPIEndpoint": {}});
            }
            assert_eq!(docs[0], want);
            assert_eq!(runcmd(data), [command]);
            assert!(data.ends_with(&format!("\nruncmd:\n  - {command}\n")));
        }
        let with_args = worker_join_cloud_config(
            &cluster(),
            &NodeConfig::new("w"),
            &hash,
            &token(),
            &["--v=5"],
        );
        assert_eq!(
            runcmd(&with_args),
            [
                "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml --v=5 && echo success > /run/cluster-api/bootstrap-success.complete"
            ]
        );
    }

    #[test]
    fn the_provider_plans_every_file_and_the_kubeadm_command() {
        use capkind::bootstrap::{Step, plan};
        let pki = pki();
        let node = NodeConfig::new("n");
        for (data, files, verb) in [
            (
                init_cloud_config(&cluster(), &node, pki, &["--skip-phases=addon/coredns"]),
                10,
                "kubeadm init",
            ),
            (
                control_plane_join_cloud_config(&cluster(), &node, pki, &token(), &[]),
                10,
                "kubeadm join",
            ),
            (
                worker_join_cloud_config(&cluster(), &node, &pki.ca_cert_hash(), &token(), &[]),
                2,
                "kubeadm join",
            ),
        ] {
            let plan = plan(Some("cloud-config"), data.as_bytes()).expect("the provider reads it");
            assert!(plan.ignored.is_empty());
            let [Step::WriteFiles(written), Step::Run(argv)] = &plan.steps[..] else {
                panic!("{:?}", plan.steps.len());
            };
            assert_eq!(written.len(), files);
            let modes: Vec<_> = written.iter().map(|f| f.mode).collect();
            assert!(
                modes.iter().all(|m| *m == 0o640 || *m == 0o600),
                "{modes:?}"
            );
            assert_eq!(argv[..2], ["/bin/sh", "-c"]);
            assert!(argv[2].contains(verb), "{}", argv[2]);
            assert!(argv[2].ends_with(SENTINEL_COMMAND));
        }
    }

    #[test]
    fn kubeconfig_is_kcps() {
        let pki = pki();
        let kubeconfig =
            admin_kubeconfig("c1", &server_url("172.18.0.2:6443"), &pki.ca).expect("kubeconfig");
        let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("a kubeconfig");
        assert_eq!(parsed.current_context.as_deref(), Some("c1-admin@c1"));
        let cluster = parsed.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(parsed.clusters[0].name, "c1");
        assert_eq!(cluster.server.as_deref(), Some("https://172.18.0.2:6443"));
        let b64 = |s: &str| {
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .expect("b64"),
            )
            .expect("utf-8")
        };
        assert_eq!(
            b64(cluster.certificate_authority_data.as_deref().expect("CA")),
            pki.ca.cert
        );
        assert_eq!(parsed.auth_infos[0].name, "c1-admin");
        let user = parsed.auth_infos[0].auth_info.as_ref().expect("user");
        let cert = b64(user.client_certificate_data.as_deref().expect("cert"));
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("ca.crt"), &pki.ca.cert).expect("write");
        std::fs::write(d.join("admin.crt"), &cert).expect("write");
        assert_eq!(
            sh(
                d,
                "openssl verify -CAfile ca.crt -purpose sslclient admin.crt"
            )
            .trim(),
            "admin.crt: OK"
        );
        assert_eq!(
            sh(d, "openssl x509 -in admin.crt -noout -subject").trim(),
            "subject=O = system:masters, CN = kubernetes-admin"
        );
        let text = sh(d, "openssl x509 -in admin.crt -noout -text");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
        // The key is the certificate's.
        let raw: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).expect("YAML");
        let key = b64(raw["users"][0]["user"]["client-key-data"]
            .as_str()
            .expect("key"));
        assert!(key.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        std::fs::write(d.join("admin.key"), &key).expect("write");
        assert_eq!(
            sh(d, "openssl x509 -in admin.crt -noout -pubkey"),
            sh(d, "openssl rsa -in admin.key -pubout 2>/dev/null")
        );

        let host = host_reachable(&kubeconfig, 40123).expect("variant");
        let parsed_host = kube::config::Kubeconfig::from_yaml(&host).expect("a kubeconfig");
        assert_eq!(
            parsed_host.clusters[0]
                .cluster
                .as_ref()
                .and_then(|c| c.server.as_deref()),
            Some("https://127.0.0.1:40123")
        );
        let raw_host: serde_yaml::Value = serde_yaml::from_str(&host).expect("YAML");
        assert_eq!(raw_host["users"], raw["users"]);

        let secret = kubeconfig_secret("c1", &kubeconfig, None);
        assert_eq!(secret.metadata.name.as_deref(), Some("c1-kubeconfig"));
        assert_eq!(secret.type_.as_deref(), Some("cluster.x-k8s.io/secret"));
        assert_eq!(
            secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CLUSTER_NAME_LABEL)),
            Some(&"c1".to_string())
        );
        let data = secret.data.expect("data");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["value"]);
        assert_eq!(data["value"].0, kubeconfig.as_bytes());
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        let pki = pki();
        let t = BootstrapToken::generate();
        let printed = format!(
            "{pki:?} {:?} {t:?} {:?} {:?}",
            pki.ca,
            cluster(),
            NodeConfig::new("n")
        );
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        for pair in [&pki.ca, &pki.etcd, &pki.front_proxy, &pki.service_account] {
            let body: String = pair
                .key
                .lines()
                .nth(1)
                .expect("a PEM line")
                .chars()
                .take(24)
                .collect();
            assert!(!printed.contains(&body));
        }
        assert!(!printed.contains(&t.secret));
        assert!(printed.contains(t.id()));
    }

    /// kubeadm v1.20.2's own loader (defaulting, strict decoding, validation) accepts the three
    /// configurations. Only `kubeadm config` subcommands that read files run; nothing of the
    /// host changes.
    #[test]
    fn kubeadm_accepts_the_configurations() {
        let kubeadm = super::kubernetes_binary("kubeadm");
        let pki = pki();
        let node = NodeConfig::new("c1-cp-0");
        let dir = tempfile::tempdir().expect("tempdir");
        let join_content = |data: &str| {
            files(data)
                .into_iter()
                .find(|f| f.0 == JOIN_CONFIG_PATH)
                .expect("join config")
                .3
        };
        let init = init_cloud_config(&cluster(), &node, pki, &[]);
        let inputs = [
            (
                "init.yaml",
                files(&init)
                    .into_iter()
                    .find(|f| f.0 == INIT_CONFIG_PATH)
                    .expect("init")
                    .3,
            ),
            (
                "cp.yaml",
                join_content(&control_plane_join_cloud_config(
                    &cluster(),
                    &node,
                    pki,
                    &token(),
                    &[],
                )),
            ),
            (
                "worker.yaml",
                join_content(&worker_join_cloud_config(
                    &cluster(),
                    &node,
                    &pki.ca_cert_hash(),
                    &token(),
                    &[],
                )),
            ),
        ];
        let run = |args: &[&str]| {
            let out = Command::new(&kubeadm)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("kubeadm");
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            assert!(out.status.success(), "kubeadm {args:?}: {stderr}");
            assert!(
                !stderr.contains("strict decod") && !stderr.contains("unknown field"),
                "{stderr}"
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        for (name, content) in &inputs {
            std::fs::write(dir.path().join(name), content).expect("write");
            let migrated = run(&["config", "migrate", "--old-config", name]);
            assert!(
                migrated.contains(&format!(
                    "kind: {}",
                    if *name == "init.yaml" {
                        "InitConfiguration"
                    } else {
                        "JoinConfiguration"
                    }
                )),
                "{migrated}"
            );
        }
        let images = run(&["config", "images", "list", "--config", "init.yaml"]);
        assert!(
            images.contains("k8s.gcr.io/kube-apiserver:v1.20.2"),
            "{images}"
        );
    }
}
