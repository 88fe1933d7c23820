//! etcd plus a real kube-apiserver on free loopback ports.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use capkind_api::capi::Version;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::names;

/// A running etcd and kube-apiserver pair, with the CRDs installed.
#[derive(Debug)]
pub struct ApiServer {
    capi: CapiCrds,
    dir: PathBuf,
    kubeconfig: PathBuf,
    url: String,
    pids: Vec<u32>,
    apiserver: PathBuf,
    etcd_port: u16,
    secure_port: u16,
}

/// The API server shared by all tests of this test binary, started on first use.
pub fn shared() -> &'static ApiServer {
    static SHARED: OnceLock<Result<ApiServer, String>> = OnceLock::new();
    match SHARED.get_or_init(ApiServer::start) {
        Ok(server) => server,
        Err(e) => panic!("the test API server could not start: {e}"),
    }
}

/// The stand-ins for Cluster API's CRDs a test API server serves, as the Cluster API release
/// they stand in for serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapiCrds {
    /// Cluster and Machine at v1beta1 only, as CAPI v1.10 serves them.
    V1Beta1,
    /// Cluster and Machine at v1beta2 only, the version CAPI v1.11 and later store (their
    /// deprecated v1beta1 left out, so no conversion is involved).
    V1Beta2,
    /// None: Cluster API is not installed.
    Absent,
}

impl CapiCrds {
    /// The one version served, if any.
    pub fn version(self) -> Option<Version> {
        match self {
            CapiCrds::V1Beta1 => Some(Version::V1Beta1),
            CapiCrds::V1Beta2 => Some(Version::V1Beta2),
            CapiCrds::Absent => None,
        }
    }
}

impl ApiServer {
    /// Starts a new etcd and kube-apiserver, installs the CRDs (Cluster API's at v1beta1) and
    /// returns once both are ready. Retries with other ports when a port was taken by another
    /// process in the meantime.
    pub fn start() -> Result<Self, String> {
        Self::start_with(CapiCrds::V1Beta1)
    }

    /// Like [`ApiServer::start`], with the stand-ins for Cluster API's CRDs of `capi`.
    pub fn start_with(capi: CapiCrds) -> Result<Self, String> {
        let etcd = find_etcd()?;
        let apiserver = find_kube_apiserver()?;
        let mut last = String::new();
        for _ in 0..3 {
            match Self::start_once(&etcd, &apiserver, capi) {
                Ok(server) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn start_once(etcd: &Path, apiserver: &Path, capi: CapiCrds) -> Result<Self, String> {
        let dir = new_dir()?;
        let (client_port, peer_port, secure_port) = (free_port()?, free_port()?, free_port()?);
        write_credentials(&dir)?;
        let mut etcd_child = spawn_logged(
            Command::new(etcd).args(etcd_args(&dir, client_port, peer_port)),
            &dir.join("etcd.log"),
        )?;
        let mut api_child = spawn_logged(
            Command::new(apiserver).args(apiserver_args(&dir, client_port, secure_port)),
            &dir.join("kube-apiserver.log"),
        )?;
        let pids = vec![etcd_child.id(), api_child.id()];
        start_watchdog(&dir, &pids)?;
        let url = format!("https://127.0.0.1:{secure_port}");
        let kubeconfig = dir.join("kubeconfig");
        let ca = std::fs::read(dir.join("ca.crt")).map_err(|e| format!("read ca.crt: {e}"))?;
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url, &ca))
            .map_err(|e| format!("write kubeconfig: {e}"))?;
        let server = ApiServer {
            capi,
            dir,
            kubeconfig,
            url,
            pids,
            apiserver: apiserver.to_path_buf(),
            etcd_port: client_port,
            secure_port,
        };
        wait_ready(&server, &mut etcd_child, &mut api_child)?;
        if std::env::var_os("CAPKIND_TESTENV_NO_CRDS").is_none() {
            server.block_on(server.install_crds())?;
        }
        Ok(server)
    }

    /// Kills kube-apiserver and starts it again on the same port with the same etcd, as an
    /// API server restart or upgrade looks to its clients. Returns once it answers again.
    pub fn restart_kube_apiserver(&mut self) -> Result<(), String> {
        self.stop_kube_apiserver();
        self.start_kube_apiserver()
    }

    /// Kills kube-apiserver (SIGKILL, as a crash or a lost host looks to its clients) and
    /// returns once it is gone; etcd keeps running, so [`ApiServer::start_kube_apiserver`]
    /// brings back the same objects.
    pub fn stop_kube_apiserver(&mut self) {
        let old = self.pids[1];
        let _ = Command::new("kill").args(["-9", &old.to_string()]).status();
        // Nobody reaps it (its Child handle is gone), so dead means gone or a zombie.
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
        };
        while alive(old) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts kube-apiserver again on its port with the same etcd, after
    /// [`ApiServer::stop_kube_apiserver`]. Returns once it answers, and serves the Cluster API
    /// resources again, in lists and in discovery, when they were installed (a restarted API
    /// server answers /version a moment before it serves custom resources, and lists them a
    /// moment before discovery names their group, with 404s in between).
    ///
    /// A start that exits at once is tried again (twice, a second apart): on a loaded machine
    /// the port of the killed server was once not free yet. The error names the log's last
    /// lines.
    pub fn start_kube_apiserver(&mut self) -> Result<(), String> {
        let mut attempt = 1;
        loop {
            match self.start_kube_apiserver_once() {
                Err(Exited(status)) if attempt < 3 => {
                    eprintln!(
                        "kube-apiserver exited with {status} after the restart (attempt {attempt}); {}; starting it again",
                        self.apiserver_log_tail()
                    );
                    attempt += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(Exited(status)) => {
                    return Err(format!(
                        "kube-apiserver exited with {status} after the restart, {attempt} times; {}",
                        self.apiserver_log_tail()
                    ));
                }
                Err(Other(message)) => return Err(message),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// The last lines kube-apiserver wrote, for an error.
    fn apiserver_log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        format!("the last lines of its log:\n{tail}")
    }

    fn start_kube_apiserver_once(&mut self) -> Result<(), StartError> {
        let mut api = spawn_logged(
            Command::new(&self.apiserver).args(apiserver_args(
                &self.dir,
                self.etcd_port,
                self.secure_port,
            )),
            &self.dir.join("kube-apiserver.log"),
        )
        .map_err(Other)?;
        self.pids[1] = api.id();
        let deadline = Instant::now() + Duration::from_secs(90);
        while self
            .block_on(async {
                let client = self.try_client().await?;
                client
                    .apiserver_version()
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(version) = self.capi.version()
                    && std::env::var_os("CAPKIND_TESTENV_NO_CRDS").is_none()
                {
                    let ar = capkind_api::capi::Cluster::api_resource(version);
                    kube::Api::<capkind_api::capi::Cluster>::all_with(client.clone(), &ar)
                        .list(&kube::api::ListParams::default().limit(1))
                        .await
                        .map_err(|e| e.to_string())?;
                    // Discovery of the group lags the resources themselves by a moment
                    // (404 for /apis/cluster.x-k8s.io), and a manager starting then retries.
                    capkind::manager::discovery::served_version(&client)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
            .is_err()
        {
            if let Ok(Some(status)) = api.try_wait() {
                return Err(Exited(status));
            }
            if Instant::now() > deadline {
                return Err(Other(
                    "kube-apiserver not ready within 90s after the restart".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// The stand-ins for Cluster API's CRDs it serves.
    pub fn capi(&self) -> CapiCrds {
        self.capi
    }

    /// The kubeconfig file (admin, system:masters).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory holding the environment's data, logs and credentials.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process IDs of etcd and kube-apiserver.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    /// A new client for the current tokio runtime (clients must not outlive their runtime, so
    /// each test makes its own).
    pub async fn client(&self) -> Client {
        self.try_client()
            .await
            .unwrap_or_else(|e| panic!("client for the test API server: {e}"))
    }

    async fn try_client(&self) -> Result<Client, String> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).map_err(|e| e.to_string())?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        Client::try_from(config).map_err(|e| e.to_string())
    }

    /// Runs kubectl against this API server.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("kubectl could not run ({e}); it is installed on the machine image")
            })
    }

    /// A fresh namespace for one test.
    pub async fn namespace(&self, client: &Client) -> String {
        let name = names::unique("ns");
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
                .expect("namespace");
        Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
            .create(&Default::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        name
    }

    /// Runs a future to completion on a thread of its own, so that starting the environment
    /// works from inside a test's runtime as well as outside one.
    fn block_on<T: Send>(
        &self,
        fut: impl std::future::Future<Output = Result<T, String>> + Send,
    ) -> Result<T, String> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?
                        .block_on(fut)
                })
                .join()
                .unwrap_or_else(|_| Err("the start-up thread panicked".into()))
        })
    }

    async fn install_crds(&self) -> Result<(), String> {
        install_crds_with(&self.try_client().await?, self.capi).await
    }
}

/// Installs (server-side apply) the capkind CRDs and the Cluster API stand-ins of
/// [`capi_crds`] (v1beta1), and waits until they are established.
pub async fn install_crds(client: &Client) -> Result<(), String> {
    install_crds_with(client, CapiCrds::V1Beta1).await
}

/// Like [`install_crds`], with the stand-ins for Cluster API's CRDs of `capi`.
pub async fn install_crds_with(client: &Client, capi: CapiCrds) -> Result<(), String> {
    let mut all = capkind_api::crds::all();
    all.extend(capi.version().map(capi_crds_at).unwrap_or_default());
    apply_crds(client, &all).await
}

/// Applies `crds` (server-side, as the test suite's field manager) and waits until each is
/// established; the error names the CRD and what went wrong.
pub async fn apply_crds(client: &Client, crds: &[CustomResourceDefinition]) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("capkind-test").force();
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &params, &Patch::Apply(crd))
            .await
            .map_err(|e| format!("apply CRD {name}: {e}"))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .map_err(|_| format!("CRD {name} not established within 30s"))?
            .map_err(|e| format!("wait for CRD {name}: {e}"))?;
    }
    Ok(())
}

/// Stand-ins for Cluster API's Cluster, Machine and MachinePool CRDs at v1beta1 only (as CAPI
/// v1.10 serves them, so no conversion is involved): any content is kept, with a status
/// subresource like the real ones.
pub fn capi_crds() -> Vec<CustomResourceDefinition> {
    capi_crds_at(Version::V1Beta1)
}

/// The kinds (and plurals) of Cluster API that the stand-ins serve.
const CAPI_KINDS: [(&str, &str); 3] = [
    ("Cluster", "clusters"),
    ("Machine", "machines"),
    ("MachinePool", "machinepools"),
];

/// Stand-ins for Cluster API's Cluster, Machine and MachinePool CRDs serving (and storing)
/// `version` only.
pub fn capi_crds_at(version: Version) -> Vec<CustomResourceDefinition> {
    CAPI_KINDS
        .into_iter()
        .map(|(kind, plural)| {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("{plural}.{}", capkind_api::capi::GROUP)},
                "spec": {
                    "group": capkind_api::capi::GROUP,
                    "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                              "singular": kind.to_lowercase()},
                    "scope": "Namespaced",
                    "versions": [{
                        "name": version.as_str(), "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {
                            "type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                        "subresources": {"status": {}}
                    }]
                }
            }))
            .expect("CRD")
        })
        .collect()
}

fn find_etcd() -> Result<PathBuf, String> {
    which("etcd").ok_or_else(|| {
        "etcd not found on PATH; install Debian's etcd-server (hack/install-test-deps.sh does)"
            .to_string()
    })
}

fn find_kube_apiserver() -> Result<PathBuf, String> {
    let candidates = [
        std::env::var("KUBEBUILDER_ASSETS")
            .ok()
            .map(|d| PathBuf::from(d).join("kube-apiserver")),
        which("kube-apiserver"),
        std::env::var("CAPKIND_KUBERNETES_BIN")
            .ok()
            .map(|d| PathBuf::from(d).join("kube-apiserver")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "kube-apiserver not found in $KUBEBUILDER_ASSETS, on PATH or in $CAPKIND_KUBERNETES_BIN; \
         run `eval \"$(hack/install-test-deps.sh)\"` (it builds Kubernetes from Debian's source, cached)"
                .to_string()
        })
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file())
}

fn new_dir() -> Result<PathBuf, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // etcd fsyncs a lot; memory-backed storage keeps the tests fast.
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "capkind-testenv-{}-{}",
        names::token(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(dir.join("certs"))
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> Result<u16, String> {
    // Below Linux's ephemeral range (32768-60999): the kernel never gives such a port to an
    // outgoing connection, so a kube-apiserver restarted on its port finds it free. One picked
    // by binding port 0 was once taken by a client connection while the server was down.
    for _ in 0..500 {
        let port = fastrand::u16(20000..32768);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port between 20000 and 32767 on 127.0.0.1".into())
}

fn write_credentials(dir: &Path) -> Result<(), String> {
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{},admin,admin,system:masters\n", admin_token()),
    )
    .map_err(|e| format!("write tokens: {e}"))?;
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("openssl not runnable ({e}); install Debian's openssl"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("openssl {} failed", args[0]))
        }
    };
    openssl(&["genrsa", "-out", "sa.key", "2048"])?;
    // A CA of its own and a serving certificate for loopback, so that clients verify the
    // server as they would a real cluster's (and nothing logs a bypassed certificate check).
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=capkind-test-ca",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=kube-apiserver",
    ])?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| format!("write server.ext: {e}"))?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "3650",
        "-extfile",
        "server.ext",
    ])
}

/// The bearer token of the admin user (the API server listens on loopback only).
fn admin_token() -> String {
    format!("capkind-admin-{}", names::token())
}

fn etcd_args(dir: &Path, client: u16, peer: u16) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    vec![
        "--name=capkind".into(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=capkind={peer_url}"),
    ]
}

fn apiserver_args(dir: &Path, etcd_port: u16, secure_port: u16) -> Vec<String> {
    let sa_key = dir.join("sa.key").display().to_string();
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--cert-dir={}", dir.join("certs").display()),
        format!("--tls-cert-file={}", dir.join("server.crt").display()),
        format!(
            "--tls-private-key-file={}",
            dir.join("server.key").display()
        ),
        format!("--secure-port={secure_port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--token-auth-file={}", dir.join("tokens.csv").display()),
        "--authorization-mode=RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        format!("--service-account-key-file={sa_key}"),
        format!("--service-account-signing-key-file={sa_key}"),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
    ]
}

/// Why one start of kube-apiserver did not come up.
enum StartError {
    /// It exited.
    Exited(std::process::ExitStatus),
    /// Anything else, as a message.
    Other(String),
}
use StartError::{Exited, Other};

fn spawn_logged(cmd: &mut Command, log: &Path) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    // A process group of its own: Ctrl-C in the terminal must not stop it before the
    // environment's users are done with it.
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))
}

/// A shell in its own session (so Ctrl-C to the test does not reach it) that waits for this
/// process to end, then removes everything the environment and its tests left.
fn start_watchdog(dir: &Path, pids: &[u32]) -> Result<(), String> {
    let script = r#"
parent=$1; dir=$2; token=$3; shift 3
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
kill "$@" 2>/dev/null; sleep 1; kill -9 "$@" 2>/dev/null
# A kube-apiserver started later for this environment (a restart) names its cert directory;
# matching on the directory alone would match this watchdog too.
pkill -9 -f -- "cert-dir=$dir/certs" 2>/dev/null
rm -rf "$dir"
if command -v docker >/dev/null 2>&1; then
  ids=$(docker ps -aq --filter "label=capkind.test/token=$token")
  ids="$ids $(docker ps -a --format '{{.ID}} {{.Names}}' | awk -v t="$token-" 'index($2, t) == 1 {print $1}')"
  [ -n "$(echo $ids)" ] && docker rm -f -v $ids >/dev/null 2>&1
  for n in $(docker network ls --format '{{.Name}}' | awk -v t="$token-" 'index($1, t) == 1'); do
    docker network rm "$n" >/dev/null 2>&1
  done
fi
"#;
    let mut args: Vec<std::ffi::OsString> = vec![
        std::process::id().to_string().into(),
        dir.into(),
        names::token().into(),
    ];
    args.extend(pids.iter().map(|p| p.to_string().into()));
    crate::process::watchdog("capkind-watchdog", script, args)
        .map_err(|e| format!("start the cleanup watchdog (setsid from util-linux): {e}"))
}

fn kubeconfig_yaml(url: &str, ca: &[u8]) -> String {
    use base64::Engine;
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: capkind-test\n  cluster:\n    server: {url}\n    \
         certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: \
         capkind-test\n  context:\n    cluster: capkind-test\n    user: admin\ncurrent-context: capkind-test\n",
        base64::engine::general_purpose::STANDARD.encode(ca),
        admin_token()
    )
}

fn wait_ready(server: &ApiServer, etcd: &mut Child, api: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let exited = [
            ("etcd", etcd.try_wait(), "etcd.log"),
            ("kube-apiserver", api.try_wait(), "kube-apiserver.log"),
        ]
        .into_iter()
        .find_map(|(name, state, log)| match state {
            Ok(Some(status)) => Some((name, status, log)),
            _ => None,
        });
        if let Some((name, status, log)) = exited {
            let tail = log_tail(&server.dir.join(log));
            let _ = etcd.kill();
            let _ = api.kill();
            return Err(format!(
                "{name} exited with {status}; last lines of its log:\n{tail}"
            ));
        }
        let ready = server.block_on(async {
            let client = server.try_client().await?;
            client.apiserver_version().await.map_err(|e| e.to_string())
        });
        if ready.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = log_tail(&server.dir.join("kube-apiserver.log"));
            return Err(format!(
                "kube-apiserver not ready within 90s; last lines of its log:\n{tail}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
