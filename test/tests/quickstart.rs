//! The quick start (hack/quickstart.sh runs the same binary) as a newcomer runs it: it brings up
//! a management plane, the manager and a real kubeadm cluster called demo (1 control plane, 1
//! worker), and prints a kubeconfig and a `kubectl get nodes` line that works and lists every
//! Node Ready; what else it prints is checked against reality. On Ctrl-C (SIGINT) it deletes
//! everything and exits 0. The stand-in bootstrap (--stand-in) still brings up machines whose
//! load balancer answers, and cleans up the same way.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capkind::docker::ContainerRuntime;
use capkind_test::docker::{Janitor, engine, images, network_exists};
use capkind_test::process::workspace_binary;
use capkind_test::{names, wait};

/// A running quick start and what it printed (stdout and stderr, line by line).
struct QuickStart {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl QuickStart {
    fn start(args: &[&str]) -> Self {
        let images = images();
        let mut child = Command::new(workspace_binary("capkind-quickstart"))
            .args(args)
            .env("CAPKIND_TEST_HAPROXY_IMAGE", &images.haproxy)
            .env("CAPKIND_TEST_NODE_IMAGE", &images.node)
            .env("CAPKIND_TEST_BUSYBOX_IMAGE", &images.busybox)
            .env_remove("CAPKIND_MANAGER_BINARY")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the quick start");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines,
            seen: vec![],
        }
    }

    fn output(&self) -> String {
        self.seen.join("\n")
    }

    /// Reads the output until a line contains `marker`.
    fn read_until(&mut self, marker: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.seen.iter().any(|l| l.contains(marker)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "the quick start never printed {marker:?} (within {timeout:?}); its output:\n{}",
                    self.output()
                ),
            }
        }
    }

    fn has(&self, text: &str) -> bool {
        self.seen.iter().any(|l| l.contains(text))
    }

    /// The word after `prefix` in the first line that has it.
    fn after(&self, prefix: &str) -> String {
        after(&self.seen, prefix)
    }

    /// The first line (trimmed) that contains `text`: a command to run as printed.
    fn line_with(&self, text: &str) -> String {
        self.seen
            .iter()
            .map(|l| l.trim())
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no line with {text:?} in:\n{}", self.output()))
            .to_string()
    }

    /// Ctrl-C, then waits for the exit; the rest of the output is read.
    fn ctrl_c(&mut self, timeout: Duration) -> ExitStatus {
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {timeout:?} after Ctrl-C:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        // The reader threads end with the pipes.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }
}

impl Drop for QuickStart {
    /// A failed test still stops the quick start the way a person would, so it cleans up.
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(180);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The word after `prefix` in the first line that has it.
fn after(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{}", lines.join("\n")))
        .to_string()
}

/// Runs `line` with sh exactly as printed; (success, stdout and stderr).
fn sh(line: &str) -> (bool, String) {
    let out = Command::new("sh")
        .args(["-c", line])
        .output()
        .expect("run sh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Waits until the management plane's API server at `server` no longer answers.
async fn management_plane_stopped(server: &str) {
    wait::until(
        "the management plane stopped",
        Duration::from_secs(30),
        || async {
            let out = Command::new("curl")
                .args(["-sk", "--max-time", "2", &format!("{server}/healthz")])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.code() != Some(7) {
                Err(format!(
                    "the API server still answers (curl exit {:?})",
                    out.status.code()
                ))
            } else {
                Ok(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn quick_start_brings_up_a_real_cluster_and_cleans_up_on_ctrl_c() {
    let started = Instant::now();
    let mut janitor = Janitor::default();
    let mut qs = QuickStart::start(&[]);
    // Past its checks (no cluster demo exists already), it creates containers: ours to clean up
    // should the test fail.
    qs.read_until("creating Cluster default/demo", Duration::from_secs(120));
    for c in ["demo-lb", "demo-cp-0", "demo-md-1"] {
        janitor.track(c);
    }
    janitor.track_network("demo");
    qs.read_until("Press Ctrl-C", Duration::from_secs(900));
    let up = started.elapsed();
    assert!(qs.has("1 control plane, 1 worker"), "{}", qs.output());
    assert!(qs.has("all 2 machines are ready"), "{}", qs.output());
    assert!(
        qs.has("all 2 Nodes are Ready (Kubernetes v1.20.2)"),
        "{}",
        qs.output()
    );

    // The printed kubectl line, run exactly as printed: every Node listed, every one Ready.
    let get_nodes = qs.line_with(" get nodes");
    let (ok, out) = sh(&get_nodes);
    assert!(ok, "{get_nodes}:\n{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let nodes: BTreeSet<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(
        nodes,
        BTreeSet::from(["demo-cp-0", "demo-md-1"]),
        "{get_nodes}:\n{out}"
    );
    assert!(rows.iter().all(|r| r[1] == "Ready"), "{get_nodes}:\n{out}");

    // The containers: a load balancer, a control plane, a worker.
    let docker = engine().await;
    let label = [("io.x-k8s.kind.cluster", "demo")];
    let mut containers = docker.list(&label).await.expect("list");
    containers.sort();
    assert_eq!(containers, ["demo-cp-0", "demo-lb", "demo-md-1"]);

    // The API server it names is the load balancer's address on the Docker network demo, and
    // the kubeconfig's server.
    let kubeconfig = qs.after("--kubeconfig ");
    let server = after(
        &[std::fs::read_to_string(&kubeconfig).expect("the printed kubeconfig")],
        "server: ",
    );
    let lb = docker
        .inspect("demo-lb")
        .await
        .expect("inspect")
        .expect("the load balancer");
    let lb_ip = lb
        .networks
        .get("demo")
        .and_then(|n| n.ipv4.clone())
        .expect("the load balancer on the network demo");
    assert_eq!(server, format!("https://{lb_ip}:6443"));
    assert_eq!(qs.after("Its API server is ").trim_end_matches(','), server);

    // No CoreDNS, as it says.
    let kube_system =
        get_nodes.replace(" get nodes", " get deployments,pods -n kube-system -o name");
    let (ok, out) = sh(&kube_system);
    assert!(
        ok && out.contains("kube-apiserver-demo-cp-0"),
        "{kube_system}:\n{out}"
    );
    assert!(!out.contains("coredns"), "{kube_system}:\n{out}");

    // The management side, as printed.
    let look = qs.line_with("KUBECONFIG=");
    let (ok, out) = sh(&look);
    assert!(
        ok && out.contains("kindmachine.infrastructure.cluster.x-k8s.io/demo-cp-0")
            && out.contains("machine.cluster.x-k8s.io/demo-md-1"),
        "{look}:\n{out}"
    );
    let ps = qs.line_with("docker ps --filter");
    let (ok, out) = sh(&ps);
    assert!(ok && out.contains("demo-md-1"), "{ps}:\n{out}");
    let management =
        std::fs::read_to_string(qs.after("KUBECONFIG=")).expect("the management kubeconfig");
    let management_server = after(&[management], "server: ");

    // Ctrl-C: everything goes, and it says so.
    let status = qs.ctrl_c(Duration::from_secs(300));
    assert!(status.success(), "exit {status}:\n{}", qs.output());
    assert!(qs.has("cleaned up"), "{}", qs.output());
    assert!(docker.list(&label).await.expect("list").is_empty());
    assert!(!network_exists("demo"), "the network demo was left behind");
    assert!(
        !std::path::Path::new(&kubeconfig).exists(),
        "{kubeconfig} was left behind"
    );
    management_plane_stopped(&management_server).await;
    println!(
        "quick start: every Node Ready {up:?} after the start; the whole test {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_stand_in_quick_start_brings_up_machines_and_cleans_up_on_ctrl_c() {
    let name = names::unique("standin");
    let mut janitor = Janitor::default();
    let mut qs = QuickStart::start(&["--stand-in", "--name", &name, "--workers", "2"]);
    qs.read_until("creating Cluster", Duration::from_secs(120));
    for c in ["lb", "cp-0", "md-1", "md-2"] {
        janitor.track(format!("{name}-{c}"));
    }
    janitor.track_network(&name);
    qs.read_until("Press Ctrl-C", Duration::from_secs(400));
    assert!(qs.has("all 3 machines are ready"), "{}", qs.output());

    // What it says is true: the load balancer answers, the containers are there.
    let url = qs.after("curl -k ");
    capkind_test::http::wait_for_https_body(&url, "s_server", Duration::from_secs(30)).await;
    assert_eq!(qs.after("label=io.x-k8s.kind.cluster="), name);
    let docker = engine().await;
    let label = [("io.x-k8s.kind.cluster", name.as_str())];
    assert_eq!(
        docker.list(&label).await.expect("list").len(),
        4,
        "a load balancer, a control-plane node and two workers"
    );
    let management =
        std::fs::read_to_string(qs.after("KUBECONFIG=")).expect("the management kubeconfig");
    let server = after(&[management], "server: ");

    let status = qs.ctrl_c(Duration::from_secs(180));
    assert!(status.success(), "exit {status}:\n{}", qs.output());
    assert!(qs.has("cleaned up"), "{}", qs.output());
    assert!(docker.list(&label).await.expect("list").is_empty());
    assert!(!network_exists(&name), "the network {name} was left behind");
    // The local management plane goes with it.
    management_plane_stopped(&server).await;
}

#[test]
fn bad_arguments_are_named() {
    for (args, says) in [
        (&["--workers", "many"][..], "--workers must be a number"),
        (&["--name", "My_Cluster"][..], "--name must be a DNS label"),
        (
            &["--control-planes", "0"][..],
            "--control-planes must be at least 1",
        ),
    ] {
        let out = Command::new(workspace_binary("capkind-quickstart"))
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn an_existing_cluster_api_crd_is_never_overwritten() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = tokio::task::spawn_blocking(capkind_test::ApiServer::start)
        .await
        .expect("join")
        .expect("API server");
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(server.client().await);
    // Each of Cluster API's CRDs the quick start has a stand-in for (Cluster, Machine,
    // MachinePool), installed by someone else (kubectl create, not our stand-in), in turn.
    for stand_in in capkind_test::capi_crds() {
        let name = stand_in.metadata.name.clone().expect("name");
        let mut crd = stand_in.clone();
        crd.metadata.labels = Some([("origin".to_string(), "someone-else".to_string())].into());
        crds.delete(&name, &Default::default())
            .await
            .expect("delete");
        capkind_test::wait::deleted(&crds, &name, Duration::from_secs(30)).await;
        crds.create(&Default::default(), &crd)
            .await
            .expect("create");

        let mut child = Command::new(workspace_binary("capkind-quickstart"))
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        // Had it gone on, it would run until Ctrl-C: give it a minute, then stop it.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        if child.try_wait().expect("wait").is_none() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
        }
        let out = child.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&format!("Cluster API's CRD {name}")), "{err}");
        let kept = crds.get(&name).await.expect("CRD");
        assert_eq!(
            kept.metadata.labels.and_then(|l| l.get("origin").cloned()),
            Some("someone-else".to_string()),
            "the CRD {name} was replaced"
        );
        // The stand-in back, for the next one.
        crds.delete(&name, &Default::default())
            .await
            .expect("delete");
        capkind_test::wait::deleted(&crds, &name, Duration::from_secs(30)).await;
        capkind_test::apply_crds(&server.client().await, &[stand_in])
            .await
            .expect("the stand-in again");
    }
}
