//! The real Docker engine and the locally built test images.

use std::process::Command;
use std::sync::OnceLock;

use capkind::docker::{ContainerRuntime, Engine};

use crate::names;

/// The label every container a test creates directly carries; the watchdog removes them.
pub const TOKEN_LABEL: &str = "capkind.test/token";

/// The images the tests use, built from Debian packages by hack/build-images.sh.
#[derive(Clone, Debug)]
pub struct Images {
    /// The haproxy load-balancer image.
    pub haproxy: String,
    /// The node image (systemd, containerd).
    pub node: String,
    /// Static busybox alone, for Pods.
    pub busybox: String,
}

impl Images {
    /// The haproxy image split as the KindCluster spec wants it: (repository, tag), where the
    /// image is `<repository>/haproxy:<tag>`.
    pub fn haproxy_repository_and_tag(&self) -> (String, String) {
        let (repo, tag) = self.haproxy.rsplit_once(':').expect("image has a tag");
        (
            repo.trim_end_matches("/haproxy").to_string(),
            tag.to_string(),
        )
    }
}

/// The container spec the provider gives a worker node, for tests and the benchmark that create
/// nodes without a controller: the test node image, explicit capabilities (this engine refuses
/// `--privileged`), owned by a KindMachine of the same name.
pub fn worker_node_spec(
    cluster: &str,
    name: &str,
    network: &str,
) -> capkind::docker::ContainerSpec {
    let owner = capkind::docker::labels::Owner {
        kind: "KindMachine".into(),
        namespace: "test".into(),
        name: name.to_string(),
        uid: name.to_string(),
    };
    let image = images().node;
    capkind::node::container_spec(&capkind::node::Params {
        cluster,
        name,
        image: &image,
        network,
        control_plane: false,
        failure_domain: None,
        extra_mounts: &[],
        owner: &owner,
        privileges: capkind::node::Privileges::Capabilities,
        proxy_env: &[],
        image_command: &image_command(&image),
        mode: capkind::node::Mode::default(),
    })
}

/// What `image` runs by default (entrypoint, then cmd), as the provider passes it to
/// `node::Params::image_command`.
pub fn image_command(image: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "image",
            "inspect",
            "--format",
            "{{json .Config.Entrypoint}}\n{{json .Config.Cmd}}",
            image,
        ])
        .output()
        .expect("docker image inspect");
    assert!(out.status.success(), "image {image} is not in Docker");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .flat_map(|l| {
            serde_json::from_str::<Option<Vec<String>>>(l)
                .ok()
                .flatten()
                .unwrap_or_default()
        })
        .collect()
}

/// Fails the test if any of `volumes` still exists in Docker.
pub fn assert_volumes_gone<V: AsRef<str>>(volumes: &[V]) {
    for v in volumes {
        let v = v.as_ref();
        let out = Command::new("docker")
            .args(["volume", "inspect", v])
            .output()
            .expect("docker volume inspect");
        assert!(!out.status.success(), "volume {v} left behind");
    }
}

/// Connects to the Docker engine, failing the test with what is missing when it cannot.
pub async fn engine() -> Engine {
    let engine = Engine::connect(None).await.unwrap_or_else(|e| {
        panic!("the tests need the Docker engine (DOCKER_HOST or /var/run/docker.sock): {e}")
    });
    engine
        .ping()
        .await
        .unwrap_or_else(|e| panic!("the Docker engine does not answer: {e}"));
    engine
}

/// The test images: from CAPKIND_TEST_HAPROXY_IMAGE / CAPKIND_TEST_NODE_IMAGE, else built (or
/// found in Docker's cache) by hack/build-images.sh.
pub fn images() -> Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES
        .get_or_init(|| {
            if let (Ok(haproxy), Ok(node), Ok(busybox)) = (
                std::env::var("CAPKIND_TEST_HAPROXY_IMAGE"),
                std::env::var("CAPKIND_TEST_NODE_IMAGE"),
                std::env::var("CAPKIND_TEST_BUSYBOX_IMAGE"),
            ) {
                return Images {
                    haproxy,
                    node,
                    busybox,
                };
            }
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../hack/build-images.sh");
            let out = Command::new("bash")
                .arg(script)
                .output()
                .unwrap_or_else(|e| panic!("run {script}: {e}"));
            assert!(
                out.status.success(),
                "{script} failed, so the test images are missing:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let get = |key: &str| {
                stdout
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix(&format!("export {key}="))
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| panic!("{script} did not print {key}"))
            };
            Images {
                haproxy: get("CAPKIND_TEST_HAPROXY_IMAGE"),
                node: get("CAPKIND_TEST_NODE_IMAGE"),
                busybox: get("CAPKIND_TEST_BUSYBOX_IMAGE"),
            }
        })
        .clone()
}

/// The Kubernetes node image (kubelet, kubeadm and the control-plane images of v1.20.2) that
/// hack/build-node-image.sh builds and hack/install-test-deps.sh exports; panics with what to
/// run when it is not there.
pub fn kube_node_image() -> String {
    let image = std::env::var("CAPKIND_TEST_KUBE_NODE_IMAGE").unwrap_or_else(|_| {
        panic!(
            "CAPKIND_TEST_KUBE_NODE_IMAGE is not set: run `eval \"$(hack/install-test-deps.sh)\"` \
             (it builds the Kubernetes node image from Debian's packages, cached)"
        )
    });
    let present = Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        present,
        "the node image {image} is not in Docker: run hack/build-node-image.sh"
    );
    image
}

/// Removes the named containers (and their anonymous volumes), then the named networks, when
/// dropped, so a failing test leaves nothing behind even before the watchdog runs.
#[derive(Debug, Default)]
pub struct Janitor {
    containers: Vec<String>,
    networks: Vec<String>,
}

impl Janitor {
    /// Remembers a container to remove.
    pub fn track(&mut self, name: impl Into<String>) {
        self.containers.push(name.into());
    }

    /// Remembers a network to remove once its containers are gone.
    pub fn track_network(&mut self, name: impl Into<String>) {
        self.networks.push(name.into());
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&self.containers)
                .output();
        }
        if !self.networks.is_empty() {
            let _ = Command::new("docker")
                .args(["network", "rm"])
                .args(&self.networks)
                .output();
        }
    }
}

/// The labels that mark a container as this test process's.
pub fn token_label() -> (String, String) {
    (TOKEN_LABEL.to_string(), names::token())
}

/// The servers of the load balancer container `lb` and their weights, from its haproxy
/// configuration.
pub async fn lb_backends(lb: &str) -> std::collections::BTreeMap<String, String> {
    let out = engine()
        .await
        .exec(lb, &["cat", "/usr/local/etc/haproxy/haproxy.cfg"], None)
        .await
        .expect("read the haproxy configuration");
    haproxy_servers(&String::from_utf8_lossy(&out.stdout))
}

/// Like [`lb_backends`], or what kept them from being read (the container restarting, the
/// command killed by a stop), for callers that retry through restarts.
pub async fn lb_backends_now(
    lb: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let out = engine()
        .await
        .exec(lb, &["cat", "/usr/local/etc/haproxy/haproxy.cfg"], None)
        .await
        .map_err(|e| e.to_string())?;
    if out.exit_code != 0 {
        return Err(format!(
            "reading the haproxy configuration exited {}",
            out.exit_code
        ));
    }
    Ok(haproxy_servers(&String::from_utf8_lossy(&out.stdout)))
}

/// The servers (name, weight) of a haproxy configuration.
fn haproxy_servers(config: &str) -> std::collections::BTreeMap<String, String> {
    config
        .lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            match words.as_slice() {
                ["server", name, _address, rest @ ..] => {
                    let weight = rest
                        .windows(2)
                        .find(|w| w[0] == "weight")
                        .map_or("", |w| w[1]);
                    Some((name.to_string(), weight.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

/// Waits until the servers of the load balancer `lb` are exactly `expected` (name, weight).
pub async fn wait_lb_backends(lb: &str, expected: &[(&str, &str)], timeout: std::time::Duration) {
    let expected: std::collections::BTreeMap<String, String> = expected
        .iter()
        .map(|(n, w)| (n.to_string(), w.to_string()))
        .collect();
    crate::wait::until("the load balancer's backends", timeout, || async {
        let got = lb_backends(lb).await;
        if got == expected {
            Ok(())
        } else {
            Err(format!("{got:?}, expected {expected:?}"))
        }
    })
    .await;
}

/// A proxy in front of the Docker engine's socket that a test can cut (the socket disappears
/// and every open connection drops, as when the engine stops) and restore.
pub struct SocketProxy {
    /// The proxy's socket: give `unix://<path>` to the manager as its Docker host.
    pub path: std::path::PathBuf,
    state: std::sync::Arc<std::sync::Mutex<ProxyState>>,
}

#[derive(Default)]
struct ProxyState {
    listener: Option<tokio::task::JoinHandle<()>>,
    connections: Vec<tokio::task::JoinHandle<()>>,
}

impl SocketProxy {
    /// Starts proxying `path` (in `dir`) to /var/run/docker.sock; needs a multi-threaded
    /// runtime so that it keeps serving while the test blocks.
    pub fn start(dir: &std::path::Path) -> Self {
        let proxy = Self {
            path: dir.join("docker-proxy.sock"),
            state: Default::default(),
        };
        proxy.restore();
        proxy
    }

    /// Makes the engine unreachable through the proxy.
    pub fn cut(&self) {
        let mut state = self.state.lock().expect("proxy state");
        if let Some(listener) = state.listener.take() {
            listener.abort();
        }
        for c in state.connections.drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    /// Makes it reachable again.
    pub fn restore(&self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind the proxy socket");
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                let mut state = state.lock().expect("proxy state");
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(connection);
            }
        });
        self.state.lock().expect("proxy state").listener = Some(task);
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// Runs `script` with sh in `container`; its standard output, trimmed.
pub async fn sh(container: &str, script: &str) -> String {
    let out = engine()
        .await
        .exec(container, &["sh", "-c", script], None)
        .await
        .expect("exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs the docker CLI, as a user at a terminal would (`restart`, `stop`, ...); panics with its
/// error when it fails.
pub fn docker_cli(args: &[&str]) {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds image `tag` from `dockerfile` (no context: FROM an image that is here, and
/// instructions that need no files).
pub fn build_image(tag: &str, dockerfile: &str) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("docker build");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(dockerfile.as_bytes())
        .expect("write the Dockerfile");
    let out = child.wait_with_output().expect("docker build");
    assert!(
        out.status.success(),
        "docker build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The IPv4 address of container `name` on `network` (empty when it has none).
pub async fn address_on(name: &str, network: &str) -> String {
    engine()
        .await
        .inspect(name)
        .await
        .expect("inspect")
        .and_then(|c| c.networks.get(network).and_then(|n| n.ipv4.clone()))
        .unwrap_or_default()
}

/// Whether the Docker network `name` exists.
pub fn network_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["network", "inspect", name])
        .output()
        .expect("docker")
        .status
        .success()
}
