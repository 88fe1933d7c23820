//! What clusterctl and users install: the rendered components, the cluster templates, and the
//! least-privilege RBAC, against the real API server (and, for RBAC, a real lifecycle).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::{KindCluster, KindMachine};
use capkind_test::clusterctl;
use capkind_test::docker::{Janitor, engine};
use capkind_test::fixtures::{
    bootstrap_secret, cluster_with_kindcluster, kind_spec, machine_spec, machine_with_kindmachine,
    mark_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names, shared, wait};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn kustomize() -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/config/default")])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn docs(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn kubectl_stdin(server: &ApiServer, args: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", server.kubeconfig())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn components_render_for_clusterctl_and_pass_server_dry_run() {
    let raw = kustomize();
    for var in [
        "${CAPKIND_DOCKER_NETWORK:=kind}",
        "${CAPKIND_IMAGE_REPOSITORY:=localhost/capkind-manager}",
    ] {
        assert!(
            raw.contains(var),
            "variable {var} is not left for clusterctl"
        );
    }
    let rendered =
        clusterctl::render(&raw, &HashMap::new()).expect("defaults cover every variable");
    let objects = docs(&rendered);
    let namespaces: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .collect();
    assert_eq!(
        namespaces.len(),
        1,
        "clusterctl wants exactly one Namespace"
    );
    assert_eq!(namespaces[0]["metadata"]["name"], "capkind-system");
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"]["cluster.x-k8s.io/provider"], "infrastructure-kind",
            "{} {} lacks the provider label",
            o["kind"], o["metadata"]["name"]
        );
    }
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "manager");
    assert_eq!(container["image"], "localhost/capkind-manager:v0.1.0");
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/var/run/docker.sock"), "{mounts}");
    for crd in objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            crd["metadata"]["labels"]["cluster.x-k8s.io/v1beta1"],
            "v1beta1"
        );
    }

    // The namespace must exist for a dry run of what goes into it.
    let server = shared();
    let (ok, out) = kubectl_stdin(
        server,
        &["apply", "-f", "-"],
        &serde_yaml::to_string(namespaces[0]).expect("yaml"),
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl_stdin(server, &["apply", "--dry-run=server", "-f", "-"], &rendered);
    assert!(ok, "server dry-run refused the components:\n{out}");
    for kind in [
        "deployment.apps/capkind-controller-manager",
        "clusterrole.rbac.authorization.k8s.io/capkind-manager-role",
    ] {
        assert!(out.contains(kind), "{kind} not applied: {out}");
    }
}

fn template_vars(namespace: &str) -> HashMap<&str, &str> {
    HashMap::from([
        ("CLUSTER_NAME", "demo"),
        ("NAMESPACE", namespace),
        ("KUBERNETES_VERSION", "v1.31.0"),
        ("CONTROL_PLANE_MACHINE_COUNT", "1"),
        ("WORKER_MACHINE_COUNT", "2"),
    ])
}

#[tokio::test]
async fn templates_render_and_their_kind_objects_pass_server_dry_run() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut files: Vec<_> = std::fs::read_dir(format!("{ROOT}/templates"))
        .expect("templates")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "cluster-template-topology.yaml",
            "cluster-template.yaml",
            "clusterclass-quick-start.yaml"
        ]
    );
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let rendered = clusterctl::render(&text, &template_vars(&ns))
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let objects = docs(&rendered);
        assert!(!objects.is_empty());
        if file.ends_with("clusterclass-quick-start.yaml") {
            assert_eq!(rendered, text, "a ClusterClass file must not use variables");
        }
        for o in objects.iter().filter(|o| {
            o["apiVersion"]
                .as_str()
                .is_some_and(|v| v.starts_with("infrastructure.cluster.x-k8s.io/"))
        }) {
            let mut o = o.clone();
            o["metadata"]["namespace"] = serde_json::json!(ns);
            let (ok, out) = kubectl_stdin(
                server,
                &["create", "--dry-run=server", "-f", "-"],
                &o.to_string(),
            );
            assert!(
                ok,
                "{}: {} {} refused: {out}",
                file.display(),
                o["kind"],
                o["metadata"]["name"]
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 6,
        "only {checked} provider objects in the templates"
    );
    let text =
        std::fs::read_to_string(format!("{ROOT}/templates/cluster-template.yaml")).expect("read");
    let mut vars = template_vars(&ns);
    vars.remove("KUBERNETES_VERSION");
    assert_eq!(
        clusterctl::render(&text, &vars),
        Err("value for variables [KUBERNETES_VERSION] is not set".into())
    );
}

#[tokio::test]
async fn the_manager_needs_no_more_than_its_role() {
    // An API server of its own: this manager watches every namespace.
    let server = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .expect("join")
        .expect("API server");
    let admin = server.client().await;
    let rendered = clusterctl::render(&kustomize(), &HashMap::new()).expect("render");
    let rbac: Vec<serde_json::Value> = docs(&rendered)
        .into_iter()
        .filter(|o| {
            [
                "Namespace",
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .collect();
    let yaml: String = rbac
        .iter()
        .map(|o| format!("---\n{}", serde_yaml::to_string(o).expect("yaml")))
        .collect();
    let (ok, out) = kubectl_stdin(&server, &["apply", "-f", "-"], &yaml);
    assert!(ok, "{out}");

    // A token for the manager's ServiceAccount, in a kubeconfig of its own.
    let sa: Api<ServiceAccount> = Api::namespaced(admin.clone(), "capkind-system");
    let request: TokenRequest =
        serde_json::from_value(serde_json::json!({"spec": {"audiences": []}})).expect("request");
    let token = sa
        .create_token_request("capkind-manager", &PostParams::default(), &request)
        .await
        .expect("token");
    let token = token.status.expect("status").token.expect("token");
    let kubeconfig = server.dir().join("manager-kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: m\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: m}}\ncurrent-context: c\n",
            server.url(),
            server.dir().join("ca.crt").display()
        ),
    )
    .expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("read"),
        &Default::default(),
    )
    .await
    .expect("config");
    let as_manager = kube::Client::try_from(config).expect("client");
    let forbidden = Api::<Pod>::all(as_manager)
        .list(&Default::default())
        .await
        .expect_err("pods are outside the role");
    assert!(forbidden.to_string().contains("forbidden"), "{forbidden}");

    // The manager, with only that token, through a whole cluster and machine lifecycle.
    let manager = ManagerProcess::start_with_kubeconfig(
        &server,
        &kubeconfig,
        &[
            "--leader-elect",
            "--leader-election-namespace",
            "capkind-system",
        ],
    );
    let ns = server.namespace(&admin).await;
    let mut janitor = Janitor::default();
    let cluster = names::unique("c");
    janitor.track(format!("{cluster}-lb"));
    cluster_with_kindcluster(
        &admin,
        &ns,
        &cluster,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    let kcs: Api<KindCluster> = Api::namespaced(admin.clone(), &ns);
    wait::until("KindCluster ready", Duration::from_secs(60), || async {
        let kc = kcs.get(&cluster).await.map_err(|e| e.to_string())?;
        if kc.status.as_ref().is_some_and(|s| s.ready) {
            Ok(())
        } else {
            Err(format!("{:?}\n{}", kc.status, manager.log_tail()))
        }
    })
    .await;
    mark_cluster(&admin, &ns, &cluster, true).await;
    let machine = format!("{cluster}-cp");
    janitor.track(machine.clone());
    let data = "#cloud-config\nruncmd:\n- mkdir -p /run/cluster-api && echo ok > /run/cluster-api/bootstrap-success.complete\n";
    bootstrap_secret(&admin, &ns, &machine, &cluster, "cloud-config", data).await;
    machine_with_kindmachine(
        &admin,
        &ns,
        &cluster,
        &machine,
        true,
        Some(&machine),
        machine_spec(),
    )
    .await;
    let kms: Api<KindMachine> = Api::namespaced(admin.clone(), &ns);
    wait::until("KindMachine ready", Duration::from_secs(90), || async {
        let km = kms.get(&machine).await.map_err(|e| e.to_string())?;
        if km.status.as_ref().is_some_and(|s| s.ready) {
            Ok(())
        } else {
            Err(format!("{:?}\n{}", km.status, manager.log_tail()))
        }
    })
    .await;
    kms.delete(&machine, &DeleteParams::default())
        .await
        .expect("delete machine");
    kcs.delete(&cluster, &DeleteParams::default())
        .await
        .expect("delete cluster");
    wait::until("everything deleted", Duration::from_secs(60), || async {
        let left = (
            kms.get_opt(&machine).await.map_err(|e| e.to_string())?,
            kcs.get_opt(&cluster).await.map_err(|e| e.to_string())?,
        );
        if left.0.is_none() && left.1.is_none() {
            Ok(())
        } else {
            Err(manager.log_tail())
        }
    })
    .await;
    assert!(
        engine()
            .await
            .inspect(&machine)
            .await
            .expect("inspect")
            .is_none()
    );
    assert!(
        !manager.log_tail().contains("forbidden"),
        "the manager was refused something:\n{}",
        manager.log_tail()
    );
}

/// Builds the manager image with hack/build-manager-image.sh and `extra` arguments, from the
/// binary the tests use.
fn build_image(extra: &[&str]) -> String {
    let image = format!("capkind-manager:{}", names::unique("img"));
    let binary = capkind_test::process::binary();
    let out = Command::new("bash")
        .arg(format!("{ROOT}/hack/build-manager-image.sh"))
        .args(extra)
        .args([&image, &binary.display().to_string()])
        .output()
        .expect("build script");
    assert!(
        out.status.success(),
        "image build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    image
}

/// The manager image running as a container against the test API server, as the Deployment
/// runs it: unprivileged, with the Docker socket's group.
struct ManagerContainer {
    name: String,
    image: String,
    health: u16,
    _janitor: Janitor,
}

impl ManagerContainer {
    fn run(server: &ApiServer, image: &str, ns: &str) -> Self {
        let name = names::unique("manager");
        let mut janitor = Janitor::default();
        janitor.track(&name);
        let socket_group = std::fs::metadata("/var/run/docker.sock")
            .map(|m| std::os::unix::fs::MetadataExt::gid(&m))
            .expect("socket");
        let (health, metrics) = (
            capkind_test::http::free_port(),
            capkind_test::http::free_port(),
        );
        let run = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--network", "host"])
            .args(["--user", "65532"])
            .args(["--group-add", &socket_group.to_string()])
            .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
            .args([
                "-v",
                &format!("{}:/kubeconfig:ro", server.kubeconfig().display()),
                "-e",
                "KUBECONFIG=/kubeconfig",
            ])
            .arg(image)
            .args(["--namespace", ns, "--node-privileges", "capabilities"])
            .arg(format!("--health-addr=127.0.0.1:{health}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
            .output()
            .expect("docker run");
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        Self {
            name,
            image: image.to_string(),
            health,
            _janitor: janitor,
        }
    }

    fn logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.name])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    async fn wait_probes(&self) {
        for path in ["/healthz", "/readyz"] {
            wait::until(path, Duration::from_secs(30), || async {
                let r = capkind_test::http::get(self.health, path);
                if capkind_test::http::is_ok(&r) {
                    Ok(())
                } else {
                    Err(format!("{r}\n{}", self.logs()))
                }
            })
            .await;
        }
    }

    fn inspect(&self, format: &str) -> String {
        let out = Command::new("docker")
            .args(["inspect", "-f", format, &self.name])
            .output()
            .expect("inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for ManagerContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[tokio::test]
async fn the_image_builds_offline_runs_unprivileged_and_reconciles() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let image = build_image(&[]);
    let manager = ManagerContainer::run(server, &image, &ns);
    manager.wait_probes().await;
    let mut janitor = Janitor::default();
    let cluster = names::unique("c");
    janitor.track(format!("{cluster}-lb"));
    cluster_with_kindcluster(
        &client,
        &ns,
        &cluster,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    let kcs: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    wait::until(
        "KindCluster ready through the mounted socket",
        Duration::from_secs(60),
        || async {
            let kc = kcs.get(&cluster).await.map_err(|e| e.to_string())?;
            if kc.status.as_ref().is_some_and(|s| s.ready) {
                Ok(())
            } else {
                Err(manager.logs())
            }
        },
    )
    .await;
    assert_eq!(manager.inspect("{{.Config.User}}"), "65532");
}

#[tokio::test]
async fn the_dev_image_restarts_the_manager_when_tilt_syncs_a_new_binary() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let image = build_image(&["--dev"]);
    let manager = ManagerContainer::run(server, &image, &ns);
    manager.wait_probes().await;
    let started = |logs: &str| logs.matches("controllers started").count();
    assert_eq!(started(&manager.logs()), 1, "{}", manager.logs());

    // What Tilt's live update does: a tar stream of the changed file, extracted in the
    // container by its own (unprivileged) user.
    let stripped = std::env::temp_dir().join(names::unique("manager"));
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(capkind_test::process::binary())
        .status()
        .expect("strip");
    assert!(status.success());
    let binary = std::fs::read(&stripped).expect("binary");
    let _ = std::fs::remove_file(&stripped);
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 60,
    );
    header.set_cksum();
    archive
        .append_data(&mut header, "capkind/manager", binary.as_slice())
        .expect("tar");
    let archive = archive.into_inner().expect("tar");
    let mut sync = Command::new("docker")
        .args([
            "exec",
            "-i",
            &manager.name,
            "tar",
            "-C",
            "/",
            "-x",
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker exec tar");
    std::io::Write::write_all(&mut sync.stdin.take().expect("stdin"), &archive).expect("sync");
    let out = sync.wait_with_output().expect("tar");
    assert!(
        out.status.success(),
        "the live update's tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    wait::until(
        "the manager restarted with the synced binary",
        Duration::from_secs(30),
        || async {
            let logs = manager.logs();
            if logs.contains("changed; restarting the manager") && started(&logs) == 2 {
                Ok(())
            } else {
                Err(logs)
            }
        },
    )
    .await;
    manager.wait_probes().await;
    assert_eq!(manager.inspect("{{.State.Running}}"), "true");

    // SIGTERM reaches the manager through the wrapper; it stops cleanly.
    let stop = Command::new("docker")
        .args(["stop", "-t", "30", &manager.name])
        .output()
        .expect("docker stop");
    assert!(stop.status.success());
    assert_eq!(
        manager.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        manager.logs()
    );
}
