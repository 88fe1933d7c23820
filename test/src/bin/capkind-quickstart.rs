//! The quick start (`hack/quickstart.sh` runs it): a management plane (a local etcd and
//! kube-apiserver, unless --kubeconfig names one), the CRDs, the manager, and a sample cluster
//! with the objects Cluster API core would create (test/src/core.rs). Shows progress until every
//! machine is ready, says how to reach the load balancer, and deletes everything on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::KindMachine;
use capkind_test::core::{CONTROL_PLANE_BOOTSTRAP, CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::{engine, images};
use capkind_test::fixtures::{kind_spec, machine_spec};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};

const USAGE: &str =
    "usage: capkind-quickstart [--kubeconfig FILE] [--control-planes N] [--workers N]

Without --kubeconfig, a local etcd and kube-apiserver serve as the management cluster (they go
away on exit). With it, the capkind CRDs (and stand-ins for Cluster API's Cluster and Machine
CRDs, when Cluster API is not installed) go into that cluster; the quick start plays Cluster API
core itself, so the cluster must not run Cluster API's controllers (use clusterctl there).";

struct Options {
    kubeconfig: Option<PathBuf>,
    control_planes: usize,
    workers: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        kubeconfig: None,
        control_planes: 1,
        workers: 2,
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
            "--control-planes" => {
                o.control_planes = count(value("--control-planes")?, "--control-planes")?
            }
            "--workers" => o.workers = count(value("--workers")?, "--workers")?,
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
    Ok(o)
}

fn step(start: Instant, text: &str) {
    println!("[{:6.1}s] {text}", start.elapsed().as_secs_f64());
}

/// A one-line summary of where a KindMachine stands.
fn phase(km: &KindMachine) -> String {
    let Some(status) = &km.status else {
        return "created".into();
    };
    if status.ready {
        return "ready".into();
    }
    let conditions = status
        .v1beta2
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    ["ContainerProvisioned", "BootstrapExecSucceeded"]
        .iter()
        .filter_map(|t| conditions.iter().find(|c| c.type_ == *t))
        .find(|c| c.status != "True")
        .map_or("provisioning".into(), |c| {
            format!("{}: {}", c.reason, c.message)
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
            for name in ["clusters.cluster.x-k8s.io", "machines.cluster.x-k8s.io"] {
                let existing = crds
                    .get_opt(name)
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

#[tokio::main]
async fn main() {
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
    let mut interrupted = Box::pin(tokio::signal::ctrl_c());
    let (client, kubeconfig, dir, server) = management(options.kubeconfig, start).await?;
    let docker = engine().await;
    let images = images();
    let ns = match &server {
        Some(s) => s.namespace(&client).await,
        None => "default".to_string(),
    };

    step(
        start,
        &format!("starting the manager (log: {}/)", dir.display()),
    );
    let mut manager = ManagerProcess::start_in(&kubeconfig, &dir, &["--namespace", &ns]);
    let name = names::unique("quickstart");
    let network = names::unique("net");
    step(
        start,
        &format!(
            "creating Cluster {ns}/{name} with its KindCluster (load balancer image {})",
            images.haproxy
        ),
    );
    let core = CoreCluster::create(&client, &ns, &name, kind_spec(&network), machine_spec())
        .await
        .map_err(|e| format!("create the cluster: {e}"))?;

    let provisioning = async {
        let kc = core.infrastructure_ready(Duration::from_secs(120)).await;
        let endpoint = kc.spec.control_plane_endpoint.clone().expect("endpoint");
        step(
            start,
            &format!(
                "KindCluster ready: control-plane endpoint {}:{}",
                endpoint.host.unwrap_or_default(),
                endpoint.port
            ),
        );
        let mut machines = vec![];
        let mut shown = BTreeMap::new();
        for i in 0..options.control_planes {
            machines.push(
                core.add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
                    .await
                    .map_err(|e| e.to_string())?,
            );
            if i == 0 {
                watch_until_ready(&client, &ns, &machines, &mut shown, start).await;
                core.control_plane_initialized().await;
                step(start, "control plane initialized: workers may join");
            }
        }
        for _ in 0..options.workers {
            machines.push(
                core.add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        watch_until_ready(&client, &ns, &machines, &mut shown, start).await;
        Ok::<_, String>(machines)
    };
    let outcome = tokio::select! {
        machines = provisioning => Some(machines),
        _ = &mut interrupted => None,
    };
    match outcome {
        Some(Ok(machines)) => {
            let lb = docker
                .inspect(&format!("{name}-lb"))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the load balancer container is gone")?;
            let port = lb
                .published
                .get(&6443)
                .and_then(|p| p.first())
                .map(|p| p.host_port)
                .ok_or("the load balancer publishes no port")?;
            step(start, &format!("all {} machines are ready", machines.len()));
            println!(
                "\nThe load balancer forwards https://127.0.0.1:{port} to the control-plane nodes, where a\n\
                 stand-in API server (openssl s_server) answers:\n\
                 \x20   curl -k https://127.0.0.1:{port}/\n\
                 Look around:\n\
                 \x20   KUBECONFIG={} kubectl get cluster,kindcluster,machine,kindmachine -n {ns}\n\
                 \x20   docker ps --filter label=io.x-k8s.kind.cluster={name}\n\
                 Press Ctrl-C to delete the cluster and stop; nothing is left behind.\n",
                kubeconfig.display()
            );
            let _ = (&mut interrupted).await;
        }
        Some(Err(e)) => {
            eprintln!("provisioning failed: {e}; cleaning up");
        }
        None => {}
    }

    println!();
    step(
        start,
        "Ctrl-C: deleting the cluster the way Cluster API does (machines first)",
    );
    let deleted = tokio::time::timeout(Duration::from_secs(300), core.delete()).await;
    manager.signal("TERM");
    let _ = manager.wait_exit(Duration::from_secs(40), "SIGTERM").await;
    let left = docker
        .list(&[("io.x-k8s.kind.cluster", name.as_str())])
        .await
        .map_err(|e| e.to_string())?;
    let _ = std::process::Command::new("docker")
        .args(["network", "rm", &network])
        .output();
    match deleted {
        Ok(Ok(())) if left.is_empty() => {
            step(start, "cleaned up: no container of the cluster is left");
            drop(server);
            Ok(())
        }
        Ok(Ok(())) => Err(format!("containers left behind: {left:?}")),
        Ok(Err(e)) => Err(format!("deleting the cluster: {e}")),
        Err(_) => Err(format!(
            "the cluster was not deleted within 5 minutes; the manager's log is in {}",
            dir.display()
        )),
    }
}

/// Prints each machine's phase when it changes, until all of `names` are ready.
async fn watch_until_ready(
    client: &Client,
    ns: &str,
    names: &[String],
    shown: &mut BTreeMap<String, String>,
    start: Instant,
) {
    let api: Api<KindMachine> = Api::namespaced(client.clone(), ns);
    loop {
        let mut all_ready = true;
        for name in names {
            let now = match api.get_opt(name).await {
                Ok(Some(km)) => phase(&km),
                Ok(None) => "not created yet".into(),
                Err(e) => format!("cannot read: {e}"),
            };
            all_ready &= now == "ready";
            if shown.get(name) != Some(&now) {
                step(start, &format!("{name:<28} {now}"));
                shown.insert(name.clone(), now);
            }
        }
        if all_ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
