//! The quick start (`hack/quickstart.sh` runs it): a management plane (a local etcd and
//! kube-apiserver, unless --kubeconfig names one), the CRDs, the manager, and a cluster built
//! the way Cluster API builds one: by default a real kubeadm v1.20.2 cluster (test/src/
//! kubeadm_cluster.rs plays core, CABPK and KCP), with --stand-in the small stand-in bootstrap
//! (a few seconds per machine, no Kubernetes). Shows each machine's progress, says how to reach
//! the cluster (a kubeconfig and the `kubectl get nodes` that works with it), and deletes
//! everything on Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::KindMachine;
use capkind_test::core::{CONTROL_PLANE_BOOTSTRAP, CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::{engine, images};
use capkind_test::fixtures::{kind_spec, machine_spec};
use capkind_test::kubeadm_cluster::{KubeadmCluster, MACHINE_TIMEOUT};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names};
use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Mutex, watch};

const USAGE: &str = "usage: capkind-quickstart [--name NAME] [--control-planes N] [--workers N] [--stand-in] [--kubeconfig FILE]

Creates the cluster NAME (default demo): a real Kubernetes v1.20.2 cluster made with kubeadm in
node containers, 1 control plane and 1 worker unless told otherwise, behind a load balancer. When
every Node is Ready it prints a kubeconfig and the kubectl command to use it; Ctrl-C deletes the
cluster and stops.

--stand-in   the stand-in bootstrap instead of kubeadm: a few seconds per machine, no Kubernetes
             in the cluster (the control planes answer TLS on 6443 with openssl s_server).

Without --kubeconfig, a local etcd and kube-apiserver serve as the management cluster (they go
away on exit). With it, the capkind CRDs (and stand-ins for Cluster API's Cluster, Machine and
MachinePool CRDs, when Cluster API is not installed) go into that cluster; the quick start plays
Cluster API core itself, so the cluster must not run Cluster API's controllers (use clusterctl there).";

/// How long the Nodes may take to be Ready once their machines are (the kubelet registers, the
/// pod network is configured), on 2 busy cores.
const NODE_TIMEOUT: Duration = Duration::from_secs(300);

struct Options {
    kubeconfig: Option<PathBuf>,
    name: String,
    control_planes: usize,
    workers: usize,
    stand_in: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        kubeconfig: None,
        name: "demo".into(),
        control_planes: 1,
        workers: 1,
        stand_in: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let count = |v: String, name: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n <= 20)
                .ok_or(format!("{name} must be a number from 0 to 20, not {v:?}"))
        };
        match arg.as_str() {
            "--kubeconfig" => o.kubeconfig = Some(PathBuf::from(value("--kubeconfig")?)),
            "--name" => o.name = value("--name")?,
            "--control-planes" => {
                o.control_planes = count(value("--control-planes")?, "--control-planes")?
            }
            "--workers" => o.workers = count(value("--workers")?, "--workers")?,
            "--stand-in" => o.stand_in = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.control_planes == 0 {
        return Err("--control-planes must be at least 1".into());
    }
    let n = &o.name;
    let dns_label = !n.is_empty()
        && n.len() <= 40
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !dns_label {
        return Err(format!(
            "--name must be a DNS label of at most 40 characters (a-z, 0-9, '-', starting with a letter), not {n:?}"
        ));
    }
    Ok(o)
}

fn step(start: Instant, text: &str) {
    println!("[{:6.1}s] {text}", start.elapsed().as_secs_f64());
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Where a KindMachine stands: a one-line summary, and the failure when its bootstrap failed
/// (the provider does not run a failed bootstrap again, as Cluster API's contract has it).
fn phase(km: &KindMachine) -> (String, Option<String>) {
    if km.metadata.deletion_timestamp.is_some() {
        return ("deleting".into(), None);
    }
    let Some(status) = &km.status else {
        return ("created".into(), None);
    };
    if km.provisioned() {
        return ("ready".into(), None);
    }
    let conditions = &status.conditions;
    let Some(c) = ["ContainerProvisioned", "BootstrapExecSucceeded"]
        .iter()
        .filter_map(|t| conditions.iter().find(|c| c.type_ == *t))
        .find(|c| c.status != "True")
    else {
        return ("provisioning".into(), None);
    };
    // A failed command's message is the command, then the last lines of its output: the line
    // that says what went wrong is the one to show.
    let mut lines = c.message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let error = c
        .message
        .lines()
        .map(str::trim)
        .find(|l| l.contains("[ERROR") || l.starts_with("error"));
    let text = match error {
        Some(e) => format!("{}: {}", c.reason, e),
        None => format!("{}: {first}", c.reason),
    };
    let text = match text.char_indices().nth(140) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    };
    let failed = (c.reason == "BootstrapFailed").then(|| c.message.clone());
    (text, failed)
}

/// Prints each machine of cluster `name` when its phase changes, with how long it has existed,
/// and when it is gone; sends the first bootstrap failure to `failures`, and what it has shown
/// to `shown_to`. Runs until aborted.
fn watch_machines(
    client: Client,
    ns: String,
    name: String,
    start: Instant,
    failures: tokio::sync::mpsc::UnboundedSender<String>,
    shown_to: watch::Sender<BTreeMap<String, String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<KindMachine> = Api::namespaced(client, &ns);
        let lp = ListParams::default().labels(&format!("cluster.x-k8s.io/cluster-name={name}"));
        let mut shown: BTreeMap<String, (String, Instant)> = BTreeMap::new();
        let line = |machine: &str, since: Instant, text: &str| {
            let age = format!("{}s", since.elapsed().as_secs());
            step(start, &format!("{machine:<16} {age:>5}  {text}"));
        };
        loop {
            if let Ok(list) = api.list(&lp).await {
                let mut present = BTreeSet::new();
                for km in &list.items {
                    let machine = km.name_any();
                    let (now, failed) = phase(km);
                    present.insert(machine.clone());
                    let (last, since) = shown
                        .entry(machine.clone())
                        .or_insert_with(|| (String::new(), Instant::now()));
                    if *last != now {
                        line(&machine, *since, &now);
                        if let Some(message) = failed {
                            let _ = failures
                                .send(format!("the bootstrap of {machine} failed:\n{message}"));
                        }
                        *last = now;
                    }
                }
                for (machine, (last, since)) in shown.iter_mut() {
                    if !present.contains(machine) && last != "deleted" {
                        line(machine, *since, "deleted");
                        *last = "deleted".into();
                    }
                }
                shown_to.send_replace(
                    shown
                        .iter()
                        .map(|(m, (phase, _))| (m.clone(), phase.clone()))
                        .collect(),
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

/// The management cluster: a client, the kubeconfig, and the local API server when there is one.
async fn management(
    kubeconfig: Option<PathBuf>,
    start: Instant,
) -> Result<(Client, PathBuf, PathBuf, Option<ApiServer>), String> {
    match kubeconfig {
        None => {
            step(
                start,
                "starting a local management plane (etcd, kube-apiserver)",
            );
            let server = tokio::task::spawn_blocking(ApiServer::start)
                .await
                .map_err(|e| e.to_string())??;
            let client = server.client().await;
            let (kubeconfig, dir) = (
                server.kubeconfig().to_path_buf(),
                server.dir().to_path_buf(),
            );
            Ok((client, kubeconfig, dir, Some(server)))
        }
        Some(path) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            let config = Kubeconfig::read_from(&path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            let config =
                kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            let client = Client::try_from(config).map_err(|e| e.to_string())?;
            let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
                Api::all(client.clone());
            // The stand-ins for Cluster API's CRDs are applied with force: only over stand-ins.
            for stand_in in capkind_test::capi_crds() {
                let name = stand_in.metadata.name.clone().unwrap_or_default();
                let existing = crds
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("reach the cluster in {}: {e}", path.display()))?;
                let ours = |crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
                    crd.managed_fields()
                        .iter()
                        .any(|f| f.manager.as_deref() == Some("capkind-test"))
                };
                if existing.is_some_and(|crd| !ours(&crd)) {
                    return Err(format!(
                        "this cluster has Cluster API's CRD {name}: install capkind there with clusterctl (README)"
                    ));
                }
            }
            step(start, "installing the CRDs");
            capkind_test::install_crds(&client).await?;
            let dir = std::env::temp_dir().join(names::unique("capkind-quickstart"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            Ok((client, path, dir, None))
        }
    }
}

/// The Kubernetes node image, checked before anything starts (the shared helper panics).
fn kube_node_image() -> Result<String, String> {
    let image = std::env::var("CAPKIND_TEST_KUBE_NODE_IMAGE").map_err(|_| {
        "CAPKIND_TEST_KUBE_NODE_IMAGE is not set: run the quick start with hack/quickstart.sh \
         (it builds the Kubernetes node image, cached), or use --stand-in"
            .to_string()
    })?;
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        return Err(format!(
            "the node image {image} is not in Docker: run hack/build-node-image.sh (hack/quickstart.sh does)"
        ));
    }
    Ok(image)
}

/// The kubectl to tell a person to type: `kubectl` when one is on PATH, else the locally built
/// one; the first of them that runs `args` successfully (so the printed line works).
fn kubectl_candidates() -> Vec<String> {
    let mut candidates = vec![];
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("kubectl").is_file()));
    if on_path {
        candidates.push("kubectl".to_string());
    }
    if let Some(dir) = std::env::var_os("CAPKIND_KUBERNETES_BIN") {
        let local = Path::new(&dir).join("kubectl");
        if local.is_file() {
            candidates.push(local.display().to_string());
        }
    }
    candidates
}

/// Runs `line` with sh, as a person would paste it; (success, stdout and stderr).
fn sh(line: &str) -> (bool, String) {
    match std::process::Command::new("sh").args(["-c", line]).output() {
        Ok(out) => (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// The cluster being built, for deletion.
enum Built {
    Real(Box<KubeadmCluster>),
    StandIn(CoreCluster),
}

impl Built {
    fn core(&self) -> &CoreCluster {
        match self {
            Built::Real(kc) => &kc.core,
            Built::StandIn(core) => core,
        }
    }
}

/// What the quick start says once the cluster is up.
struct Done {
    text: String,
    /// The workload kubeconfig written for the person, removed on exit.
    kubeconfig: Option<PathBuf>,
}

struct Setup {
    client: Client,
    ns: String,
    name: String,
    network: String,
    dir: PathBuf,
    management_kubeconfig: PathBuf,
    control_planes: usize,
    workers: usize,
    start: Instant,
    /// What the machine watcher has printed: machine -> phase.
    shown: watch::Receiver<BTreeMap<String, String>>,
    /// Set when the quick start is stopping: provisioning goes no further than the Cluster.
    stopping: std::sync::atomic::AtomicBool,
}

impl Setup {
    /// Waits (a moment at most) until the watcher has printed every one of `machines` ready,
    /// so that the lines come in the order things happened.
    async fn shown_ready(&self, machines: &[String]) {
        let mut shown = self.shown.clone();
        let all_shown = shown.wait_for(|s| {
            machines
                .iter()
                .all(|m| s.get(m).is_some_and(|p| p == "ready"))
        });
        let _ = tokio::time::timeout(Duration::from_secs(3), all_shown).await;
    }

    /// The lines that show the management side, for both modes.
    fn look_around(&self, kubectl: &str) -> String {
        format!(
            "Look around the management cluster:\n\
             \x20   KUBECONFIG={} {kubectl} get cluster,kindcluster,machine,kindmachine -n {}\n\
             \x20   docker ps --filter label=io.x-k8s.kind.cluster={}\n\
             Press Ctrl-C to delete the cluster and stop; nothing is left behind.\n",
            self.management_kubeconfig.display(),
            self.ns,
            self.name
        )
    }
}

/// Builds a real kubeadm cluster as Cluster API would: the first control plane with `kubeadm
/// init`, then the workers and (one at a time, as KCP does) further control planes; waits for
/// every Node to be Ready and checks the kubectl line it prints.
async fn provision_real(
    s: Arc<Setup>,
    slot: Arc<Mutex<Option<Built>>>,
    created: watch::Sender<bool>,
) -> Result<Done, String> {
    let mut guard = slot.lock().await;
    let kc = KubeadmCluster::create(&s.client, &s.ns, &s.name, &s.network, &[]).await;
    *guard = Some(Built::Real(Box::new(kc)));
    let _ = created.send(true);
    if s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("stopped".into());
    }
    let Some(Built::Real(kc)) = guard.as_mut() else {
        unreachable!("just stored")
    };
    let endpoint = kc.config.control_plane_endpoint.clone();
    step(
        s.start,
        &format!(
            "load balancer ready: control-plane endpoint {endpoint}; cluster CA and keys stored as Secrets"
        ),
    );
    step(
        s.start,
        &format!(
            "creating {}-cp-0, the first control plane: it runs kubeadm init",
            s.name
        ),
    );
    let (cp0, mut workload) = kc.init(&s.dir).await;
    step(
        s.start,
        "control plane initialized (admin kubeconfig Secret and join token created): the others join",
    );
    let mut all = vec![cp0];
    for _ in 0..s.workers {
        all.push(kc.add_worker().await);
    }
    for _ in 1..s.control_planes {
        let cp = kc.add_control_plane().await;
        kc.ready(&cp).await;
        all.push(cp);
    }
    for m in &all {
        kc.ready(m).await;
    }
    s.shown_ready(&all).await;
    step(
        s.start,
        &format!(
            "all {} are ready (kubeadm done); waiting for their Nodes to be Ready",
            plural(all.len(), "machine", "machines")
        ),
    );
    let nodes = workload.nodes_ready(&all, NODE_TIMEOUT).await;
    let versions: BTreeSet<String> = nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.node_info.as_ref())
        .map(|i| i.kubelet_version.clone())
        .collect();
    let version = versions.into_iter().collect::<Vec<_>>().join(", ");
    step(
        s.start,
        &format!(
            "all {} are Ready (Kubernetes {version})",
            plural(all.len(), "Node", "Nodes")
        ),
    );

    let path = s.dir.join(format!("{}.kubeconfig", s.name));
    std::fs::rename(&workload.kubeconfig, &path)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    workload.kubeconfig = path.clone();
    // The line printed is one that worked just now, with every Node listed Ready.
    let mut tried = vec![];
    let mut working = None;
    for kubectl in kubectl_candidates() {
        let line = format!("{kubectl} --kubeconfig {} get nodes", path.display());
        let (ok, out) = sh(&line);
        let ready = out
            .lines()
            .skip(1)
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ok && ready == all.len() {
            working = Some((kubectl, line));
            break;
        }
        tried.push(format!("{line}:\n{out}"));
    }
    let (kubectl, line) = working.ok_or(format!(
        "no kubectl lists the Nodes Ready (install kubectl, or run hack/quickstart.sh): {}",
        tried.join("\n")
    ))?;
    let text = format!(
        "\nThe cluster {name} is up: Kubernetes {version}, {cps} and {ws}, every Node Ready {secs:.0}s after the start.\n\
         Its API server is https://{endpoint}, the load balancer's address on the Docker network {net},\n\
         which this host reaches directly. Its kubeconfig is {kubeconfig}:\n\
         \x20   {line}\n\
         There is no CoreDNS (Debian packages none, so kubeadm's CoreDNS addon is skipped); a CNI for the pod\n\
         network (capkind-cni) is built into the local node image.\n{look}",
        name = s.name,
        cps = plural(s.control_planes, "control plane", "control planes"),
        ws = plural(s.workers, "worker", "workers"),
        secs = s.start.elapsed().as_secs_f64(),
        net = s.network,
        kubeconfig = path.display(),
        look = s.look_around(&kubectl),
    );
    Ok(Done {
        text,
        kubeconfig: Some(path),
    })
}

/// The stand-in bootstrap (no Kubernetes): control planes answer TLS on 6443 with openssl's
/// s_server, workers only write the sentinel.
async fn provision_stand_in(
    s: Arc<Setup>,
    slot: Arc<Mutex<Option<Built>>>,
    created: watch::Sender<bool>,
) -> Result<Done, String> {
    let mut guard = slot.lock().await;
    let core = CoreCluster::create(
        &s.client,
        &s.ns,
        &s.name,
        kind_spec(&s.network),
        machine_spec(),
    )
    .await
    .map_err(|e| format!("create the cluster: {e}"))?;
    *guard = Some(Built::StandIn(core));
    let _ = created.send(true);
    if s.stopping.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("stopped".into());
    }
    let core = guard.as_ref().expect("just stored").core();
    let kc = core.infrastructure_ready(MACHINE_TIMEOUT).await;
    let endpoint = kc.spec.control_plane_endpoint.clone().expect("endpoint");
    step(
        s.start,
        &format!(
            "load balancer ready: control-plane endpoint {}:{}",
            endpoint.host.clone().unwrap_or_default(),
            endpoint.port()
        ),
    );
    let machines: Api<KindMachine> = Api::namespaced(s.client.clone(), &s.ns);
    let ready = |name: String| {
        let machines = machines.clone();
        async move {
            capkind_test::fixtures::kindmachine_until(
                &machines,
                &name,
                "KindMachine ready",
                MACHINE_TIMEOUT,
                capkind_test::fixtures::is_ready,
            )
            .await;
        }
    };
    let mut all = vec![];
    for i in 0..s.control_planes {
        let m = core
            .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
            .await
            .map_err(|e| e.to_string())?;
        all.push(m.clone());
        if i == 0 {
            ready(m).await;
            core.control_plane_initialized().await;
            step(s.start, "control plane initialized: workers may join");
        }
    }
    for _ in 0..s.workers {
        all.push(
            core.add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    for m in &all {
        ready(m.clone()).await;
    }
    s.shown_ready(&all).await;
    step(
        s.start,
        &format!("all {} are ready", plural(all.len(), "machine", "machines")),
    );
    let lb = engine()
        .await
        .inspect(&format!("{}-lb", s.name))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the load balancer container is gone")?;
    let port = lb
        .published
        .get(&6443)
        .and_then(|p| p.first())
        .map(|p| p.host_port)
        .ok_or("the load balancer publishes no port")?;
    let kubectl = kubectl_candidates()
        .into_iter()
        .next()
        .unwrap_or("kubectl".into());
    let text = format!(
        "\nThe stand-in cluster {} is up (no Kubernetes in it: stand-in bootstrap). The load balancer forwards\n\
         https://127.0.0.1:{port} to the control-plane nodes, where a stand-in API server (openssl s_server) answers:\n\
         \x20   curl -k https://127.0.0.1:{port}/\n{}",
        s.name,
        s.look_around(&kubectl),
    );
    Ok(Done {
        text,
        kubeconfig: None,
    })
}

/// SIGINT (Ctrl-C) or SIGTERM, whichever comes first; its name.
async fn stop_signal(int: &mut Signal, term: &mut Signal) -> &'static str {
    tokio::select! {
        _ = int.recv() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

/// The message of a provisioning task that panicked (the shared helpers panic on timeouts).
fn join_error(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "it panicked".into())
}

#[tokio::main]
async fn main() {
    // A person reads this: what failed and where, without a backtrace.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(options).await {
        eprintln!("quick start failed: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options) -> Result<(), String> {
    let start = Instant::now();
    // Registered now, so Ctrl-C at any time from here on is handled (not the default exit).
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let node_image = if options.stand_in {
        images().node
    } else {
        kube_node_image()?
    };
    let (client, management_kubeconfig, dir, server) =
        management(options.kubeconfig, start).await?;
    let docker = engine().await;
    let name = options.name.clone();
    let label = [("io.x-k8s.kind.cluster", name.as_str())];
    let existing = docker.list(&label).await.map_err(|e| e.to_string())?;
    if !existing.is_empty() {
        return Err(format!(
            "a cluster named {name} already has containers ({}): delete them with \
             `docker rm -f -v {}`, or choose another --name",
            existing.join(", "),
            existing.join(" ")
        ));
    }
    let network = name.clone();
    let network_existed = docker_network_exists(&network);
    let ns = "default".to_string();
    ensure_namespace(&client, &ns).await?;
    if let Some(signal) = stop_signal(&mut int, &mut term).now_or_never() {
        step(
            start,
            &format!("{signal}: stopping before creating anything"),
        );
        return Ok(());
    }

    step(
        start,
        &format!("starting the manager (log: {}/)", dir.display()),
    );
    let mut manager = ManagerProcess::start_in(&management_kubeconfig, &dir, &["--namespace", &ns]);
    let kind = if options.stand_in {
        "stand-in machines, no Kubernetes"
    } else {
        "kubeadm v1.20.2"
    };
    step(
        start,
        &format!(
            "creating Cluster {ns}/{name} ({kind}): {}, {}, load balancer on the Docker network {network}",
            plural(options.control_planes, "control plane", "control planes"),
            plural(options.workers, "worker", "workers"),
        ),
    );
    step(
        start,
        &format!(
            "images: node {node_image}, load balancer {}",
            images().haproxy
        ),
    );
    let (failures_tx, mut failures) = tokio::sync::mpsc::unbounded_channel();
    let (shown_tx, shown) = watch::channel(BTreeMap::new());
    let watcher = watch_machines(
        client.clone(),
        ns.clone(),
        name.clone(),
        start,
        failures_tx,
        shown_tx,
    );
    let setup = Arc::new(Setup {
        client: client.clone(),
        ns: ns.clone(),
        name: name.clone(),
        network: network.clone(),
        dir: dir.clone(),
        management_kubeconfig,
        control_planes: options.control_planes,
        workers: options.workers,
        start,
        shown,
        stopping: Default::default(),
    });
    let slot: Arc<Mutex<Option<Built>>> = Arc::new(Mutex::new(None));
    let (created_tx, mut created) = watch::channel(false);
    let mut task = if options.stand_in {
        tokio::spawn(provision_stand_in(setup.clone(), slot.clone(), created_tx))
    } else {
        tokio::spawn(provision_real(setup.clone(), slot.clone(), created_tx))
    };

    let mut failed = None;
    let mut kubeconfig = None;
    let why = tokio::select! {
        outcome = &mut task => {
            match outcome.map_err(join_error).and_then(|r| r) {
                Ok(done) => {
                    print!("{}", done.text);
                    kubeconfig = done.kubeconfig;
                    stop_signal(&mut int, &mut term).await
                }
                Err(e) => {
                    eprintln!("provisioning failed: {e}");
                    failed = Some(e);
                    "provisioning failed"
                }
            }
        }
        Some(failure) = failures.recv() => {
            task.abort();
            let _ = (&mut task).await;
            eprintln!("provisioning failed: {failure}");
            failed = Some(failure);
            "provisioning failed"
        }
        signal = stop_signal(&mut int, &mut term) => {
            setup.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
            // The Cluster's objects are made in one go; wait for them so all of it is deleted.
            if !*created.borrow() {
                step(start, &format!("{signal}: waiting until the Cluster's objects exist, to delete them"));
                let _ = tokio::time::timeout(Duration::from_secs(60), created.wait_for(|c| *c)).await;
            }
            task.abort();
            if let Err(e) = (&mut task).await
                && !e.is_cancelled()
            {
                eprintln!("provisioning failed: {}", join_error(e));
            }
            signal
        }
    };

    println!();
    step(
        start,
        &format!("{why}: deleting the cluster the way Cluster API does (machines first)"),
    );
    let built = slot.lock().await.take();
    let deleted = match &built {
        Some(built) => {
            let core = built.core();
            tokio::time::timeout(Duration::from_secs(300), core.delete())
                .await
                .map_err(|_| {
                    format!(
                        "the cluster was not deleted within 5 minutes; the manager's log is in {}",
                        dir.display()
                    )
                })
                .and_then(|r| r.map_err(|e| format!("deleting the cluster: {e}")))
        }
        None if server.is_some() => Err(
            "the cluster was never completely created (its objects go with the management plane)"
                .to_string(),
        ),
        None => Err(format!(
            "the cluster was never completely created: delete what is left of Cluster {ns}/{name} \
             in the management cluster by hand"
        )),
    };
    // The Secrets Cluster API's providers would own (cluster CA and keys, bootstrap data, the
    // kubeconfig), whatever is left of them.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let _ = secrets
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels(&format!("cluster.x-k8s.io/cluster-name={name}")),
        )
        .await;
    manager.signal("TERM");
    let _ = manager.wait_exit(Duration::from_secs(40), "SIGTERM").await;
    watcher.abort();
    let mut left = docker.list(&label).await.map_err(|e| e.to_string())?;
    if deleted.is_err() && !left.is_empty() {
        // The provider could not finish: remove the containers directly.
        eprintln!(
            "removing the cluster's containers directly: {}",
            left.join(", ")
        );
        for c in &left {
            let _ = docker.remove(c).await;
        }
        if !network_existed {
            let _ = std::process::Command::new("docker")
                .args(["network", "rm", &network])
                .output();
        }
        left = docker.list(&label).await.map_err(|e| e.to_string())?;
    }
    if let Some(path) = &kubeconfig {
        let _ = std::fs::remove_file(path);
    }
    let network_left = !network_existed && docker_network_exists(&network);
    let result = match (deleted, failed) {
        _ if !left.is_empty() => Err(format!("containers left behind: {left:?}")),
        _ if network_left => Err(format!("the Docker network {network} was left behind")),
        (Err(e), _) => Err(e),
        (Ok(()), Some(e)) => {
            step(
                start,
                "cleaned up after the failure: no container or network of the cluster is left",
            );
            Err(e)
        }
        (Ok(()), None) => {
            let gone = match &kubeconfig {
                Some(p) => format!(", {} removed", p.display()),
                None => String::new(),
            };
            step(
                start,
                &format!("cleaned up: no container or network of the cluster is left{gone}"),
            );
            Ok(())
        }
    };
    drop(server);
    result
}

fn docker_network_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["network", "inspect", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Creates namespace `ns` unless it exists (a bare kube-apiserver has no controller-manager
/// to create `default`).
async fn ensure_namespace(client: &Client, ns: &str) -> Result<(), String> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
        .map_err(|e| e.to_string())?;
    match api.create(&Default::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(format!("create namespace {ns}: {e}")),
    }
}
