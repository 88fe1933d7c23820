//! The KindCluster controller against a real kube-apiserver, the real Docker engine and real
//! haproxy: what a Cluster API user sees of the load balancer and the control-plane endpoint.

use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::KindCluster;
use capkind_test::docker::{Janitor, engine, network_exists, token_label};
use capkind_test::fixtures::{
    cluster_with_kindcluster, kind_spec, kindcluster_condition as cond, kindcluster_owned_by,
    ready_cluster,
};
use capkind_test::{Manager, names, shared, wait};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

const FINALIZER: &str = "kindcluster.infrastructure.cluster.x-k8s.io";

struct Env {
    client: Client,
    ns: String,
    api: Api<KindCluster>,
}

async fn env() -> Env {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let api = Api::namespaced(client.clone(), &ns);
    Env { client, ns, api }
}

async fn wait_for(
    api: &Api<KindCluster>,
    name: &str,
    what: &str,
    check: impl Fn(&KindCluster) -> bool,
) -> KindCluster {
    wait::until(what, Duration::from_secs(60), || async {
        let kc = api.get(name).await.map_err(|e| e.to_string())?;
        if check(&kc) {
            Ok(kc)
        } else {
            Err(format!("{:?}", kc.status))
        }
    })
    .await
}

async fn wait_ready(api: &Api<KindCluster>, name: &str) -> KindCluster {
    wait_for(api, name, "KindCluster ready", |kc| {
        kc.provisioned() && cond(kc, "Ready").is_some_and(|c| c.status == "True")
    })
    .await
}

async fn events(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let list = Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn exec(container: &str, cmd: &[&str]) -> (i64, String) {
    let out = engine()
        .await
        .exec(container, cmd, None)
        .await
        .expect("exec");
    (
        out.exit_code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn load_balancer_is_created_configured_and_reported() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let kc = ready_cluster(&e.client, &e.ns, &mut janitor).await;
    let name = kc.name_any();
    let docker = engine().await;
    let lb = docker
        .inspect(&format!("{name}-lb"))
        .await
        .expect("inspect")
        .expect("load balancer container");
    assert!(lb.running);
    assert_eq!(lb.labels["io.x-k8s.kind.cluster"], name);
    assert_eq!(lb.labels["io.x-k8s.kind.role"], "external-load-balancer");
    assert_eq!(
        lb.labels["capkind.x-k8s.io/owner-uid"],
        kc.uid().expect("uid")
    );
    let ip = lb.networks[kc.spec.network.as_deref().expect("network")]
        .ipv4
        .clone()
        .expect("address");
    let endpoint = kc.spec.control_plane_endpoint.clone().expect("endpoint");
    assert_eq!(
        (endpoint.host.as_deref(), endpoint.port),
        (Some(ip.as_str()), Some(6443))
    );
    assert!(kc.finalizers().contains(&FINALIZER.to_string()));
    assert_eq!(
        kc.status
            .as_ref()
            .and_then(|s| s.initialization.as_ref())
            .and_then(|i| i.provisioned),
        Some(true)
    );
    for (type_, status) in [
        ("LoadBalancerAvailable", "True"),
        ("Ready", "True"),
        ("Paused", "False"),
    ] {
        let c = cond(&kc, type_).unwrap_or_else(|| panic!("no {type_} condition"));
        assert_eq!(c.status, status, "{type_}: {c:?}");
        assert!(!c.message.is_empty());
    }
    // The v1beta1 shape, kept under status.deprecated.v1beta1 (it has no Paused condition).
    let v1: Vec<(&str, &str)> = kc
        .status
        .as_ref()
        .and_then(|s| s.deprecated.as_ref())
        .expect("status.deprecated")
        .conditions()
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(v1, [("LoadBalancerAvailable", "True"), ("Ready", "True")]);

    // haproxy accepts what was written, with no backends yet, and its stats page answers.
    let (code, output) = exec(
        &lb.name,
        &["haproxy", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
    )
    .await;
    assert_eq!(code, 0, "haproxy -c: {output}");
    let (_, config) = exec(&lb.name, &["cat", "/usr/local/etc/haproxy/haproxy.cfg"]).await;
    assert!(
        config.contains("bind *:6443") && !config.contains("\n  server "),
        "{config}"
    );
    let stats_port = lb.published[&8404][0].host_port;
    let stats = wait::until("haproxy stats page", Duration::from_secs(10), || async {
        let page = capkind_test::http::get(stats_port, "/stats");
        if page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200") {
            Ok(page)
        } else {
            Err(page)
        }
    })
    .await;
    assert!(
        stats.contains("kube-apiservers"),
        "the stats page does not list the backend"
    );
    assert!(
        lb.published.contains_key(&6443),
        "the frontend port is not published"
    );
    assert!(
        events(&e.client, &e.ns, &name)
            .await
            .contains(&("Normal".into(), "LoadBalancerCreated".into()))
    );
}

#[tokio::test]
async fn nothing_happens_while_paused_and_work_resumes_after() {
    let e = env().await;
    let name = names::unique("c");
    let mut janitor = Janitor::default();
    janitor.track(format!("{name}-lb"));
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    cluster_with_kindcluster(
        &e.client,
        &e.ns,
        &name,
        true,
        kind_spec(&names::unique("net")),
    )
    .await;
    let kc = wait_for(&e.api, &name, "Paused condition", |kc| {
        cond(kc, "Paused").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(
        cond(&kc, "Paused").expect("paused").message,
        "Cluster spec.paused is set to true"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        engine()
            .await
            .inspect(&format!("{name}-lb"))
            .await
            .expect("inspect")
            .is_none(),
        "container while paused"
    );
    let kc = e.api.get(&name).await.expect("get");
    assert!(
        kc.spec.control_plane_endpoint.is_none() && kc.finalizers().is_empty(),
        "{kc:?}"
    );

    let clusters = capkind_test::capi::served_clusters(&e.client, &e.ns).await;
    clusters
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": false}})),
        )
        .await
        .expect("unpause");
    let kc = wait_ready(&e.api, &name).await;
    assert_eq!(cond(&kc, "Paused").expect("paused").status, "False");
}

#[tokio::test]
async fn deletion_removes_the_container_the_network_it_made_and_the_finalizer() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let kc = ready_cluster(&e.client, &e.ns, &mut janitor).await;
    let name = kc.name_any();
    let docker = engine().await;
    let lb = docker
        .inspect(&format!("{name}-lb"))
        .await
        .expect("inspect")
        .expect("lb");

    e.api
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    wait::deleted(&e.api, &name, Duration::from_secs(60)).await;
    assert!(
        docker.inspect(&lb.name).await.expect("inspect").is_none(),
        "load balancer left behind"
    );
    capkind_test::docker::assert_volumes_gone(&lb.volume_names);
    let network = kc.spec.network.expect("network");
    assert!(
        !network_exists(&network),
        "the network {network} the provider made is left behind"
    );
}

#[tokio::test]
async fn a_network_the_provider_did_not_make_outlives_the_cluster() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let network = names::unique("usernet");
    janitor.track_network(&network);
    let made = std::process::Command::new("docker")
        .args(["network", "create", &network])
        .output()
        .expect("docker");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let name = names::unique("c");
    janitor.track(format!("{name}-lb"));
    cluster_with_kindcluster(&e.client, &e.ns, &name, false, kind_spec(&network)).await;
    wait_ready(&e.api, &name).await;
    e.api
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    wait::deleted(&e.api, &name, Duration::from_secs(60)).await;
    assert!(
        network_exists(&network),
        "the user's network {network} was removed"
    );
}

#[tokio::test]
async fn a_foreign_container_with_the_name_is_never_touched() {
    let e = env().await;
    let name = names::unique("c");
    let lb_name = format!("{name}-lb");
    let mut janitor = Janitor::default();
    janitor.track(&lb_name);
    let (key, value) = token_label();
    let image = capkind_test::docker::images().haproxy;
    let out = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &lb_name,
            "--label",
            &format!("{key}={value}"),
            "--entrypoint",
            "sleep",
            &image,
            "600",
        ])
        .output()
        .expect("docker run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let foreign_id = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    cluster_with_kindcluster(
        &e.client,
        &e.ns,
        &name,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    let kc = wait_for(&e.api, &name, "name conflict condition", |kc| {
        cond(kc, "LoadBalancerAvailable").is_some_and(|c| c.reason == "ContainerNameConflict")
    })
    .await;
    let c = cond(&kc, "LoadBalancerAvailable").expect("condition");
    assert_eq!(c.status, "False");
    assert!(
        c.message.contains(&lb_name) && c.message.contains("does not belong"),
        "{}",
        c.message
    );
    assert_eq!(
        cond(&kc, "Ready").expect("ready").reason,
        "ContainerNameConflict"
    );
    assert!(!kc.provisioned());
    // The event follows the status write.
    wait::until("Warning event", Duration::from_secs(10), || async {
        let seen = events(&e.client, &e.ns, &name).await;
        if seen.contains(&("Warning".into(), "ContainerNameConflict".into())) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let still = engine()
        .await
        .inspect(&lb_name)
        .await
        .expect("inspect")
        .expect("foreign container");
    assert!(
        still.running && still.id == foreign_id,
        "the foreign container was touched"
    );
}

#[tokio::test]
async fn restart_safe_and_self_healing() {
    let e = env().await;
    let name = names::unique("c");
    let lb_name = format!("{name}-lb");
    let mut janitor = Janitor::default();
    janitor.track(&lb_name);
    let docker = engine().await;
    let manager = Manager::start(e.client.clone(), &e.ns).await;
    cluster_with_kindcluster(
        &e.client,
        &e.ns,
        &name,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    // Kill the manager as soon as the container exists, before it finished the cluster.
    wait::until(
        "load balancer container",
        Duration::from_secs(60),
        || async {
            docker
                .inspect(&lb_name)
                .await
                .map_err(|err| err.to_string())?
                .map(|_| ())
                .ok_or_else(|| "absent".to_string())
        },
    )
    .await;
    manager.kill();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let kc = wait_ready(&e.api, &name).await;
    let (key, value) = (capkind::docker::labels::CLUSTER, name.as_str());
    assert_eq!(
        docker.list(&[(key, value)]).await.expect("list"),
        std::slice::from_ref(&lb_name),
        "exactly one load balancer"
    );
    let endpoint = kc
        .spec
        .control_plane_endpoint
        .clone()
        .expect("endpoint")
        .host
        .expect("host");

    // Removed by hand: it comes back, at the same address.
    docker.remove(&lb_name).await.expect("remove");
    let back = wait::until("load balancer back", Duration::from_secs(60), || async {
        match docker
            .inspect(&lb_name)
            .await
            .map_err(|err| err.to_string())?
        {
            Some(c) if c.running => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(
        back.networks[kc.spec.network.as_deref().expect("network")]
            .ipv4
            .as_deref(),
        Some(endpoint.as_str()),
        "new address"
    );
    wait::until(
        "the re-created load balancer configured",
        Duration::from_secs(60),
        || async {
            let (code, config) =
                exec(&lb_name, &["cat", "/usr/local/etc/haproxy/haproxy.cfg"]).await;
            if code == 0 && config.contains("frontend control-plane") {
                Ok(())
            } else {
                Err(config)
            }
        },
    )
    .await;

    // Stopped by hand: started again.
    let out = std::process::Command::new("docker")
        .args(["stop", "-t", "1", &lb_name])
        .output()
        .expect("docker stop");
    assert!(out.status.success());
    wait::until(
        "load balancer started again",
        Duration::from_secs(60),
        || async {
            match docker
                .inspect(&lb_name)
                .await
                .map_err(|err| err.to_string())?
            {
                Some(c) if c.running && c.id == back.id => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[tokio::test]
async fn no_writes_in_a_steady_state() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let kc = ready_cluster(&e.client, &e.ns, &mut janitor).await;
    let name = kc.name_any();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = e.api.get(&name).await.expect("get").resource_version();
    // Poke it: a Cluster update and a reconcile must not write either.
    let clusters = capkind_test::capi::served_clusters(&e.client, &e.ns).await;
    clusters
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await
        .expect("poke");
    let since = unix_now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        e.api.get(&name).await.expect("get").resource_version(),
        before,
        "the KindCluster was written"
    );
    // Nor does it keep Docker busy: the poke costs one reconcile (a few calls), then silence.
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &unix_now().to_string(),
        ])
        .args([
            "--filter",
            &format!("container={name}-lb"),
            "--filter",
            "event=exec_create",
        ])
        .args(["--format", "{{.Action}}"])
        .output()
        .expect("docker events");
    let execs = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        execs <= 4,
        "{execs} exec calls into the load balancer in a steady minute"
    );
}

#[tokio::test]
async fn custom_haproxy_template_from_a_configmap() {
    let e = env().await;
    let name = names::unique("c");
    let mut janitor = Janitor::default();
    janitor.track(format!("{name}-lb"));
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let mut spec = kind_spec(&names::unique("net"));
    spec["loadBalancer"]["customHAProxyConfigTemplateRef"] = json!({"name": "lb-template"});
    cluster_with_kindcluster(&e.client, &e.ns, &name, false, spec).await;
    let kc = wait_for(&e.api, &name, "missing template reported", |kc| {
        cond(kc, "LoadBalancerAvailable").is_some_and(|c| c.reason == "HAProxyTemplateNotFound")
    })
    .await;
    assert!(
        cond(&kc, "LoadBalancerAvailable")
            .expect("c")
            .message
            .contains("lb-template")
    );

    let template = "# custom\nglobal\n  log stdout format raw local0 notice\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\nfrontend custom\n  bind *:{{ .FrontendControlPlanePort }}\n  default_backend apis\nbackend apis\n{{range $server, $backend := .BackendServers}}  server {{ $server }} {{ JoinHostPort $backend.Address $.BackendControlPlanePort }} weight {{ $backend.Weight }}\n{{end}}";
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "lb-template"}, "data": {"value": template}}),
    )
    .expect("cm");
    Api::<ConfigMap>::namespaced(e.client.clone(), &e.ns)
        .create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    // The ConfigMap is not watched; the retry with backoff picks it up.
    wait_ready(&e.api, &name).await;
    let (_, config) = exec(
        &format!("{name}-lb"),
        &["cat", "/usr/local/etc/haproxy/haproxy.cfg"],
    )
    .await;
    assert!(
        config.starts_with("# custom\n") && config.contains("frontend custom\n  bind *:6443"),
        "{config}"
    );
}

#[tokio::test]
async fn externally_managed_or_unowned_objects_are_left_alone() {
    let e = env().await;
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let unowned = names::unique("c");
    kindcluster_owned_by(
        &e.client,
        &e.ns,
        &unowned,
        None,
        kind_spec(&names::unique("net")),
    )
    .await;
    let managed = names::unique("c");
    let (_, kc) = cluster_with_kindcluster(
        &e.client,
        &e.ns,
        &managed,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    // Marked as managed elsewhere right away; it may have been reconciled once before that.
    e.api
        .patch(
            &kc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"cluster.x-k8s.io/managed-by": "other"}}}),
            ),
        )
        .await
        .expect("annotate");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kc = e.api.get(&unowned).await.expect("get");
    assert!(
        kc.finalizers().is_empty() && kc.status.is_none(),
        "an unowned KindCluster was touched: {kc:?}"
    );
    assert!(
        engine()
            .await
            .inspect(&format!("{unowned}-lb"))
            .await
            .expect("inspect")
            .is_none()
    );
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &format!("{managed}-lb")])
        .output();
}

#[tokio::test]
async fn deleted_without_owner_loses_its_finalizer() {
    let e = env().await;
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let name = names::unique("c");
    kindcluster_owned_by(
        &e.client,
        &e.ns,
        &name,
        None,
        kind_spec(&names::unique("net")),
    )
    .await;
    e.api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": [FINALIZER]}})),
        )
        .await
        .expect("add finalizer");
    e.api
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    wait::deleted(&e.api, &name, Duration::from_secs(30)).await;
}

/// The manager stopped after the new configuration was in place but before haproxy reloaded:
/// the next write must reload it, though the file already holds what it would write.
#[tokio::test]
async fn an_interrupted_reload_is_completed_by_the_next_write() {
    use capkind::loadbalancer::{self, config};
    let e = env().await;
    let mut janitor = Janitor::default();
    let manager = Manager::start(e.client.clone(), &e.ns).await;
    let kc = ready_cluster(&e.client, &e.ns, &mut janitor).await;
    manager.kill();
    let docker = engine().await;
    let lb = docker
        .inspect(&format!("{}-lb", kc.name_any()))
        .await
        .expect("inspect")
        .expect("load balancer container");
    let stats_port = lb.published[&8404][0].host_port;
    let stats_list = |server: &'static str| async move {
        let page = capkind_test::http::get(stats_port, "/stats");
        if page.contains(server) {
            Ok(())
        } else {
            Err(format!("{server} not on the stats page"))
        }
    };

    let input = config::Input {
        frontend_port: 6443,
        ipv6: false,
        backends: vec![config::Backend {
            name: "interrupted-node".into(),
            address: "127.0.0.1".into(),
            weight: 100,
        }],
    };
    let rendered = config::render(config::DEFAULT_TEMPLATE, &input).expect("render");
    // What an interrupted write leaves: the file in place, haproxy not told.
    docker
        .upload(
            &lb.name,
            "/",
            loadbalancer::tar_file(&config::CONFIG_PATH[1..], rendered.as_bytes()).expect("tar"),
        )
        .await
        .expect("upload");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stats_list("interrupted-node").await.is_err(),
        "haproxy loaded the file without being told"
    );

    let reloaded = loadbalancer::write_config(&docker, &lb.name, &rendered)
        .await
        .expect("write");
    assert!(reloaded, "the file was up to date, so nothing was reloaded");
    wait::until(
        "haproxy serving the configuration",
        Duration::from_secs(20),
        || stats_list("interrupted-node"),
    )
    .await;
    assert!(
        !loadbalancer::write_config(&docker, &lb.name, &rendered)
            .await
            .expect("write again"),
        "a loaded configuration was reloaded again"
    );
}

#[tokio::test]
async fn a_cluster_of_the_same_name_in_another_namespace_is_told_and_the_first_untouched() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    let first = ready_cluster(&e.client, &e.ns, &mut janitor).await;
    let name = first.name_any();
    let docker = engine().await;
    let lb = docker
        .inspect(&format!("{name}-lb"))
        .await
        .expect("inspect")
        .expect("lb");

    // The same name in a second namespace, watched by a second manager.
    let other_ns = shared().namespace(&e.client).await;
    let _other = Manager::start(e.client.clone(), &other_ns).await;
    let network = names::unique("net");
    janitor.track_network(&network);
    cluster_with_kindcluster(&e.client, &other_ns, &name, false, kind_spec(&network)).await;
    let second: Api<KindCluster> = Api::namespaced(e.client.clone(), &other_ns);
    let kc = wait_for(&second, &name, "the name conflict reported", |kc| {
        cond(kc, "Ready").is_some_and(|c| c.reason == "ContainerNameConflict")
    })
    .await;
    let message = cond(&kc, "Ready").expect("condition").message;
    assert!(
        message.contains(&format!("belongs to KindCluster {}/{name}", e.ns))
            && message.contains("rename this Cluster")
            && !message.contains("docker rm"),
        "{message}"
    );
    let still = docker
        .inspect(&format!("{name}-lb"))
        .await
        .expect("inspect")
        .expect("lb");
    assert_eq!(
        still.id, lb.id,
        "the first cluster's load balancer was touched"
    );
    assert!(still.running);
    assert!(
        cond(&e.api.get(&name).await.expect("first"), "Ready").is_some_and(|c| c.status == "True")
    );
}

#[tokio::test]
async fn a_name_too_long_for_a_hostname_is_a_terminal_condition_and_creates_nothing() {
    let e = env().await;
    let mut janitor = Janitor::default();
    let _manager = Manager::start(e.client.clone(), &e.ns).await;
    // Cluster API allows 63 characters (the name is a label value); `<name>-lb` then has 66.
    let prefix = names::unique("c");
    let name = format!("{prefix}-{}", "x".repeat(62 - prefix.len()));
    janitor.track(format!("{name}-lb"));
    cluster_with_kindcluster(
        &e.client,
        &e.ns,
        &name,
        false,
        kind_spec(&names::unique("net")),
    )
    .await;
    let kc = wait_for(&e.api, &name, "the name reported too long", |kc| {
        cond(kc, "Ready").is_some_and(|c| c.reason == "ContainerNameTooLong")
    })
    .await;
    let message = cond(&kc, "Ready").expect("condition").message;
    assert!(
        message.contains("at most 64") && message.contains("shorten"),
        "{message}"
    );
    assert!(
        engine()
            .await
            .inspect(&format!("{name}-lb"))
            .await
            .expect("inspect")
            .is_none()
    );
}
