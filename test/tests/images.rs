//! Images pulled from a real registry (Debian's docker-registry on a loopback port) by the
//! manager binary: a cluster whose node, load balancer and preLoadImages images exist only in
//! the registry comes up, each image pulled once; a wrong tag, a stopped registry and a
//! registry that wants credentials give their reasons; credentials from the Docker
//! configuration given to the manager work, and their password shows nowhere.

use std::time::Duration;

use capkind_api::v1beta2::{KindCluster, KindMachine};
use capkind_test::core::{CONTROL_PLANE_BOOTSTRAP, CoreCluster, Role, TRIVIAL_BOOTSTRAP};
use capkind_test::docker::{Janitor, images, sh};
use capkind_test::fixtures::{
    bootstrap_secret, cluster_with_kindcluster, is_ready, kind_spec, kindcluster_condition,
    kindmachine_condition, kindmachine_until, machine_with_kindmachine, mark_cluster,
    ready_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::registry::{Registry, User, image_present};
use capkind_test::signals::{log_problems, warnings};
use capkind_test::{names, shared, wait};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;

const READY: Duration = Duration::from_secs(180);

/// (kind/name, type, reason, note) of every event in `ns`.
async fn events(client: &Client, ns: &str) -> Vec<(String, String, String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    api.list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .map(|e| {
            let r = e.regarding.unwrap_or_default();
            (
                format!(
                    "{}/{}",
                    r.kind.unwrap_or_default(),
                    r.name.unwrap_or_default()
                ),
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// The manager for `ns`, reading registry credentials from `docker_config` (a path that need
/// not exist: then it pulls anonymously, and never reads the host's own configuration).
fn manager(ns: &str, docker_config: &str) -> ManagerProcess {
    ManagerProcess::start(
        shared(),
        &["--namespace", ns, "--docker-config", docker_config],
    )
}

/// Waits for the KindMachine's ContainerProvisioned condition to have `reason`; returns its
/// message.
async fn container_reason(kms: &Api<KindMachine>, name: &str, reason: &str) -> String {
    let km = kindmachine_until(kms, name, reason, Duration::from_secs(90), |km| {
        kindmachine_condition(km, "ContainerProvisioned").is_some_and(|c| c.reason == reason)
    })
    .await;
    kindmachine_condition(&km, "ContainerProvisioned")
        .expect("condition")
        .message
}

/// A worker Machine and KindMachine running `image`, with trivial bootstrap data.
async fn worker(client: &Client, ns: &str, cluster: &str, image: &str) -> String {
    let name = format!(
        "{cluster}-w{}",
        names::unique("").rsplit('-').next().unwrap_or("0")
    );
    bootstrap_secret(
        client,
        ns,
        &name,
        cluster,
        "cloud-config",
        TRIVIAL_BOOTSTRAP,
    )
    .await;
    machine_with_kindmachine(
        client,
        ns,
        cluster,
        &name,
        false,
        Some(&name),
        json!({"customImage": image}),
    )
    .await;
    name
}

#[tokio::test]
async fn a_cluster_whose_images_are_only_in_a_registry_comes_up() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let local = images();
    let mut registry = Registry::start();
    let (_, lb_tag) = local.haproxy_repository_and_tag();
    let lb = registry.push(&local.haproxy, "lb/haproxy", &lb_tag);
    let node = registry.push(&local.node, "node", "v1");
    let busybox = registry.push(&local.busybox, "busybox", "v1");
    let lb_repository = lb
        .strip_suffix(&format!("/haproxy:{lb_tag}"))
        .expect("repository");

    let manager = manager(&ns, "/nonexistent/capkind-test/config.json");
    let (name, network) = (names::unique("img"), names::unique("net"));
    let mut janitor = Janitor::default();
    janitor.track(format!("{name}-lb"));
    janitor.track_network(network.clone());
    let kind_spec = json!({"network": network,
        "loadBalancer": {"imageRepository": lb_repository, "imageTag": lb_tag}});
    let machine_spec = json!({"customImage": node, "preLoadImages": [busybox]});
    let core = CoreCluster::create(&client, &ns, &name, kind_spec, machine_spec)
        .await
        .expect("create the cluster");
    core.infrastructure_ready(READY).await;
    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    let cp = core
        .add_machine(Role::ControlPlane, CONTROL_PLANE_BOOTSTRAP)
        .await
        .expect("control plane");
    janitor.track(cp.clone());
    kindmachine_until(&kms, &cp, "control plane ready", READY, is_ready).await;
    core.control_plane_initialized().await;
    let w = core
        .add_machine(Role::Worker, TRIVIAL_BOOTSTRAP)
        .await
        .expect("worker");
    janitor.track(w.clone());
    kindmachine_until(&kms, &w, "worker ready", READY, is_ready).await;

    for image in [&lb, &node, &busybox] {
        assert!(image_present(image), "{image} was not pulled");
        let log = std::fs::read_to_string(&manager.log).expect("log");
        let pulls = log
            .lines()
            .filter(|l| l.contains("image pulled") && l.contains(image.as_str()))
            .count();
        assert_eq!(
            pulls,
            1,
            "{image} pulled {pulls} times:\n{}",
            manager.log_tail()
        );
    }
    // What a user saw while it pulled: PullingImage on the objects that waited.
    let seen = events(&client, &ns).await;
    for (regarding, image) in [
        (format!("KindCluster/{name}"), &lb),
        (format!("KindMachine/{cp}"), &node),
    ] {
        assert!(
            seen.iter().any(|(r, t, reason, note)| *r == regarding
                && t == "Normal"
                && reason == "PullingImage"
                && note.contains(image.as_str())),
            "no PullingImage event for {image} on {regarding}: {seen:#?}\n{}",
            std::fs::read_to_string(&manager.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(image.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // The pull of the preLoadImage is the control plane's second PullingImage event, which
    // the event recorder folds into the first (a series of 2: same object, same reason).
    let folded: Api<Event> = Api::namespaced(client.clone(), &ns);
    let series = folded
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .find(|e| {
            e.reason.as_deref() == Some("PullingImage")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(cp.as_str())
        })
        .and_then(|e| e.series.map(|s| s.count));
    assert_eq!(series, Some(2), "node image, then the preLoadImage");
    // preLoadImages reached the node's containerd.
    let loaded = sh(&cp, "ctr --namespace=k8s.io images ls -q").await;
    assert!(
        loaded.contains(&busybox),
        "{busybox} not in the node: {loaded}"
    );
    assert_eq!(warnings(&client, &ns).await, Vec::new());
    assert_eq!(log_problems(&manager.log), Vec::<String>::new());
    core.delete().await.expect("delete");
}

#[tokio::test]
async fn a_wrong_tag_and_a_stopped_registry_give_their_reasons() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let mut registry = Registry::start();
    registry.push(&images().node, "node", "v1");
    let wrong = registry.reference("node", "no-such-tag");
    let _manager = manager(&ns, "/nonexistent/capkind-test/config.json");
    let mut janitor = Janitor::default();
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    let cluster = kc.name_any();
    mark_cluster(&client, &ns, &cluster, true).await;
    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns);

    let missing = worker(&client, &ns, &cluster, &wrong).await;
    janitor.track(missing.clone());
    let message = container_reason(&kms, &missing, "ImageNotFound").await;
    assert!(
        message.starts_with(&format!(
            "pulling image {wrong} failed (no such image in the registry): manifest for {wrong} not found"
        )) && message.contains("check the image's name and tag"),
        "{message}"
    );

    registry.stop();
    let away = registry.reference("node", "v2");
    let unreachable = worker(&client, &ns, &cluster, &away).await;
    janitor.track(unreachable.clone());
    let message = container_reason(&kms, &unreachable, "ImageRegistryUnreachable").await;
    assert!(
        message.contains("the registry cannot be reached")
            && message.contains("connection refused"),
        "{message}"
    );

    // A load balancer image from there: the KindCluster says the same.
    let (lb_name, network) = (names::unique("lb"), names::unique("net"));
    janitor.track(format!("{lb_name}-lb"));
    janitor.track_network(network.clone());
    let mut spec = kind_spec(&network);
    spec["loadBalancer"]["imageRepository"] =
        json!(format!("{}/capkind-test/gone", registry.host()));
    cluster_with_kindcluster(&client, &ns, &lb_name, false, spec).await;
    let kcs: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    wait::until("LB unreachable", Duration::from_secs(90), || async {
        let kc = kcs.get(&lb_name).await.map_err(|e| e.to_string())?;
        match kindcluster_condition(&kc, "LoadBalancerAvailable") {
            Some(c) if c.reason == "ImageRegistryUnreachable" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Warnings, once each, and no container was made for either machine.
    let seen = warnings(&client, &ns).await;
    for (object, reason) in [
        (format!("KindMachine/{missing}"), "ImageNotFound"),
        (
            format!("KindMachine/{unreachable}"),
            "ImageRegistryUnreachable",
        ),
        (format!("KindCluster/{lb_name}"), "ImageRegistryUnreachable"),
    ] {
        let n = seen
            .iter()
            .filter(|w| w.regarding == object && w.reason == reason)
            .count();
        assert!(n >= 1, "no {reason} warning on {object}: {seen:#?}");
    }
    for name in [&missing, &unreachable] {
        let out = std::process::Command::new("docker")
            .args(["inspect", name.as_str()])
            .output()
            .expect("docker inspect");
        assert!(!out.status.success(), "container {name} was created");
    }
}

#[tokio::test]
async fn credentials_from_the_docker_config_pull_and_never_show() {
    let server = shared();
    let client = server.client().await;
    let local = images();
    let mut open = Registry::start();
    let password = format!("pw-{}-do-not-show", names::unique("s"));
    let user = User {
        name: "capkind".into(),
        password: password.clone(),
    };
    open.push(&local.node, "auth-a", "v1");
    open.push(&local.node, "auth-b", "v1");
    let mut secured = Registry::start_sharing(&open, &user);
    open.stop();
    let (with, without) = (
        secured.reference("auth-a", "v1"),
        secured.reference("auth-b", "v1"),
    );
    let dir = tempfile::tempdir().expect("dir");
    let config = secured.docker_config(dir.path(), &user);

    let mut janitor = Janitor::default();
    let ns_with = server.namespace(&client).await;
    let ns_without = server.namespace(&client).await;
    let manager_with = manager(&ns_with, &config.to_string_lossy());
    let manager_without = manager(&ns_without, "/nonexistent/capkind-test/config.json");

    let kc = ready_cluster(&client, &ns_with, &mut janitor).await;
    mark_cluster(&client, &ns_with, &kc.name_any(), true).await;
    let pulled = worker(&client, &ns_with, &kc.name_any(), &with).await;
    janitor.track(pulled.clone());
    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns_with);
    kindmachine_until(
        &kms,
        &pulled,
        "machine from the secured registry",
        READY,
        is_ready,
    )
    .await;

    let kc = ready_cluster(&client, &ns_without, &mut janitor).await;
    mark_cluster(&client, &ns_without, &kc.name_any(), true).await;
    let refused = worker(&client, &ns_without, &kc.name_any(), &without).await;
    janitor.track(refused.clone());
    let kms_without: Api<KindMachine> = Api::namespaced(client.clone(), &ns_without);
    let message = container_reason(&kms_without, &refused, "ImagePullUnauthorized").await;
    assert!(
        message.contains("no basic auth credentials")
            && message.contains(&format!(
                "give the manager credentials for {} in the Docker configuration it reads (--docker-config)",
                secured.host()
            )),
        "{message}"
    );
    assert!(!image_present(&without));

    // The password: not in either manager's log, not in any status or event.
    for manager in [&manager_with, &manager_without] {
        let log = std::fs::read_to_string(&manager.log).expect("log");
        assert!(
            !log.contains(&password),
            "the password is in {}",
            manager.log.display()
        );
    }
    let mut shown = Vec::new();
    for ns in [&ns_with, &ns_without] {
        let kms: Api<KindMachine> = Api::namespaced(client.clone(), ns);
        for km in kms.list(&Default::default()).await.expect("list").items {
            shown.push(serde_json::to_string(&km.status).expect("json"));
        }
        shown.extend(events(&client, ns).await.into_iter().map(|e| e.3));
    }
    assert!(shown.iter().all(|s| !s.contains(&password)), "{shown:#?}");
    let log = std::fs::read_to_string(&manager_with.log).expect("log");
    assert!(
        log.contains("pulling with credentials") && log.contains("user=capkind"),
        "the pull did not use the configuration's credentials:\n{}",
        manager_with.log_tail()
    );
}

#[tokio::test]
async fn a_credential_helper_named_by_the_config_gives_the_credentials() {
    let server = shared();
    let client = server.client().await;
    let mut open = Registry::start();
    let user = User {
        name: "helped".into(),
        password: format!("pw-{}-do-not-show", names::unique("h")),
    };
    open.push(&images().node, "helped", "v1");
    let mut secured = Registry::start_sharing(&open, &user);
    open.stop();
    let image = secured.reference("helped", "v1");

    // What `docker login` leaves with a credential store: the configuration names a helper for
    // this registry, and the manager runs docker-credential-<name> get, as the CLI does.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.json");
    let helpers = json!({"credHelpers": {secured.host(): "capkindtest"}});
    std::fs::write(&config, helpers.to_string()).expect("config");
    let helper = dir.path().join("docker-credential-capkindtest");
    let answer =
        json!({"ServerURL": secured.host(), "Username": user.name, "Secret": user.password});
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\n\
             [ \"$server\" = '{}' ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             echo '{answer}'\n",
            secured.host()
        ),
    )
    .expect("helper");
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");

    let ns = server.namespace(&client).await;
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let manager = ManagerProcess::start_in_with_env(
        server.kubeconfig(),
        server.dir(),
        &[
            "--namespace",
            &ns,
            "--docker-config",
            &config.to_string_lossy(),
        ],
        &[("PATH", &path)],
    );
    let mut janitor = Janitor::default();
    let kc = ready_cluster(&client, &ns, &mut janitor).await;
    mark_cluster(&client, &ns, &kc.name_any(), true).await;
    let machine = worker(&client, &ns, &kc.name_any(), &image).await;
    janitor.track(machine.clone());
    let kms: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    kindmachine_until(
        &kms,
        &machine,
        "machine through the helper",
        READY,
        is_ready,
    )
    .await;
    let log = std::fs::read_to_string(&manager.log).expect("log");
    assert!(log.contains("user=helped"), "{}", manager.log_tail());
    assert!(!log.contains(&user.password), "the password is in the log");
}
