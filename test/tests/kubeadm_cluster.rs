//! Real Kubernetes: kubeadm v1.20.2 clusters built in node containers by the manager binary,
//! with the bootstrap data in the shape Cluster API's kubeadm bootstrap and control-plane
//! providers write (test/src/kubeadm.rs) and Cluster API core played by test/src/core.rs.
//!
//! One lifecycle, in the order a user lives it: 1 control plane + 2 workers, every Node Ready
//! through the load balancer from the host with the provider IDs of its KindMachines, a Pod on
//! one worker answering a Pod on the other, `kubectl logs` and `exec`; a worker restarted with
//! `docker restart` Ready again without a second bootstrap; the control plane scaled to three
//! (etcd with three members, the API answering while one control-plane container is stopped);
//! a host reboot (every container stopped and started again in another order: same addresses,
//! etcd healthy, Pods answering, nothing bootstrapped again); back to one control plane, as
//! the control plane provider does it; the Cluster deleted with nothing left; and the host's
//! kernel settings untouched throughout. Then a kubeadm that fails.

use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_test::core::Role;
use capkind_test::docker::{
    Janitor, address_on, docker_cli, engine, images, network_exists, sh, wait_lb_backends,
};
use capkind_test::fixtures::{is_ready, kindmachine_condition};
use capkind_test::kubeadm::init_cloud_config;
use capkind_test::kubeadm_cluster::{INIT_ARGS, KubeadmCluster, MACHINE_TIMEOUT, node};
use capkind_test::process::ManagerProcess;
use capkind_test::signals::{log_problems, warnings};
use capkind_test::workload::host_sysctls;
use capkind_test::{names, shared, wait};
use kube::api::Api;

/// Nodes Ready a little after their kubeadm is done.
const NODE_TIMEOUT: Duration = Duration::from_secs(240);

/// etcdctl on control-plane node `on`, against its own etcd member.
fn etcdctl(args: &str) -> String {
    format!(
        "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt \
         --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key \
         {args} 2>&1"
    )
}

/// etcd's members (id, name), asked on control-plane node `on` once its etcd answers.
async fn etcd_members(on: &str) -> Vec<(String, String)> {
    wait::until(
        &format!("etcd's member list on {on}"),
        NODE_TIMEOUT,
        || async {
            let list = sh(on, &etcdctl("member list")).await;
            let members: Vec<(String, String)> = list
                .lines()
                .filter_map(|l| {
                    let fields: Vec<&str> = l.split(", ").collect();
                    (fields.len() >= 3 && fields[1] == "started")
                        .then(|| (fields[0].to_string(), fields[2].to_string()))
                })
                .collect();
            if members.is_empty() {
                Err(list)
            } else {
                Ok(members)
            }
        },
    )
    .await
}

#[tokio::test]
async fn kubeadm_cluster_lifecycle() {
    let sysctls = host_sysctls();
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let manager = ManagerProcess::start(server, &["--namespace", &ns]);
    let mut janitor = Janitor::default();
    let name = names::unique("k");
    let network = names::unique("net");
    janitor.track_network(&network);
    for m in ["cp-0", "cp-1", "cp-2", "md-3", "md-4"] {
        janitor.track(format!("{name}-{m}"));
    }
    janitor.track(format!("{name}-lb"));
    let mut real = KubeadmCluster::create(&client, &ns, &name, &network, &[images().busybox]).await;

    // The first control plane: kubeadm init, then the kubeconfig the control plane provider
    // writes, the token CABPK creates for joins, and core's ControlPlaneInitialized.
    let (cp0, workload) = real.init(server.dir()).await;
    workload
        .nodes_ready(std::slice::from_ref(&cp0), NODE_TIMEOUT)
        .await;

    // Two workers; every Node Ready, reached through the load balancer's endpoint from the
    // host, with its KindMachine's provider ID.
    let workers = [real.add_worker().await, real.add_worker().await];
    for w in &workers {
        real.ready(w).await;
    }
    let mut all = vec![cp0.clone()];
    all.extend(workers.iter().cloned());
    let nodes = workload.nodes_ready(&all, NODE_TIMEOUT).await;
    for n in &nodes {
        let node_name = n.metadata.name.clone().expect("name");
        let id = wait::until("provider ID on the Node", NODE_TIMEOUT, || async {
            let km = real
                .machines
                .get(&node_name)
                .await
                .map_err(|e| e.to_string())?;
            let node = Api::<k8s_openapi::api::core::v1::Node>::all(workload.client.clone())
                .get(&node_name)
                .await
                .map_err(|e| e.to_string())?;
            let on_node = node.spec.and_then(|s| s.provider_id);
            match (km.spec.provider_id, on_node) {
                (a, Some(b)) if !a.is_empty() && a == b => Ok(a),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(id, format!("kind://{name}/kind/{node_name}"));
    }

    // A Pod on one worker answers a Pod on the other, by Pod IP across nodes.
    let image = images().busybox;
    workload
        .pod(
            "web",
            &workers[0],
            &image,
            "echo serving; hostname > /www/index.html; exec httpd -f -p 8080 -h /www",
        )
        .await;
    workload
        .pod("client", &workers[1], &image, "exec sleep 3600")
        .await;
    let web = workload.pod_running("web", NODE_TIMEOUT).await;
    workload.pod_running("client", NODE_TIMEOUT).await;
    let answer = |ip: String| {
        let workload = &workload;
        async move {
            wait::until(
                "web answers client across nodes",
                Duration::from_secs(60),
                || async {
                    // (busybox's static wget crashes; nc speaks the HTTP request itself.)
                    let request =
                        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} 8080");
                    let (ok, out) =
                        workload.kubectl(&["exec", "client", "--", "sh", "-c", &request]);
                    if ok && out.contains(" 200 ") && out.trim_end().ends_with("web") {
                        Ok(())
                    } else {
                        Err(out)
                    }
                },
            )
            .await
        }
    };
    answer(web.status.clone().and_then(|s| s.pod_ip).expect("ip")).await;
    let (ok, logs) = workload.kubectl(&["logs", "web"]);
    assert!(ok && logs.contains("serving"), "kubectl logs: {logs}");

    // A MachinePool next to the workers: its instance joins as a real Node with its
    // KindMachine's provider ID, which the KindMachinePool lists; scaled to zero, it goes.
    let pool = real
        .core
        .add_pool(
            "pool",
            1,
            "v1.20.2",
            &real.worker_join_data(),
            serde_json::json!({"template": capkind_test::kubeadm_cluster::machine_spec(&[])}),
        )
        .await
        .expect("MachinePool");
    let instance = wait::until("the pool's instance", NODE_TIMEOUT, || async {
        let kms = pool.instances().await.map_err(|e| e.to_string())?;
        match kms.as_slice() {
            [km] => Ok(kube::ResourceExt::name_any(km)),
            other => Err(format!("{} instances", other.len())),
        }
    })
    .await;
    let km = real.ready(&instance).await;
    let mut with_pool = all.clone();
    with_pool.push(instance.clone());
    workload.nodes_ready(&with_pool, NODE_TIMEOUT).await;
    wait::until("the pool's provider IDs", NODE_TIMEOUT, || async {
        let kmp = pool
            .kind_pools()
            .get(&pool.name)
            .await
            .map_err(|e| e.to_string())?;
        if kmp.spec.provider_id_list == [km.spec.provider_id.clone()] && kmp.provisioned() {
            Ok(())
        } else {
            Err(format!("{:?}", kmp.spec))
        }
    })
    .await;
    let node = Api::<k8s_openapi::api::core::v1::Node>::all(workload.client.clone())
        .get(&instance)
        .await
        .expect("the pool's Node");
    assert_eq!(
        node.spec.and_then(|s| s.provider_id),
        Some(km.spec.provider_id.clone())
    );
    pool.scale(0).await.expect("scale the pool to zero");
    wait::until("the pool's instance gone", NODE_TIMEOUT, || async {
        match engine().await.inspect(&instance).await {
            Ok(None) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Core deletes a removed instance's Node; the stand-in leaves that to the test.
    workload.kubectl(&["delete", "node", "--ignore-not-found", &instance]);
    pool.delete(NODE_TIMEOUT).await.expect("delete the pool");

    // A worker restarted: Ready again, its Pods answering again, its bootstrap not run again.
    let marker = "cat /var/lib/capkind/bootstrap.started";
    let started = sh(&workers[0], marker).await;
    docker_cli(&["restart", &workers[0]]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    workload.nodes_ready(&all, NODE_TIMEOUT).await;
    let web = workload.pod_running("web", NODE_TIMEOUT).await;
    answer(web.status.and_then(|s| s.pod_ip).expect("ip")).await;
    assert_eq!(sh(&workers[0], marker).await, started, "bootstrapped again");
    let km = real.ready(&workers[0]).await;
    assert!(is_ready(&km));

    // The control plane scaled to three: joins through the load balancer, three etcd members.
    let cp1 = real.add_control_plane().await;
    real.ready(&cp1).await;
    let cp2 = real.add_control_plane().await;
    real.ready(&cp2).await;
    all.extend([cp1.clone(), cp2.clone()]);
    workload.nodes_ready(&all, NODE_TIMEOUT).await;
    let members = etcd_members(&cp0).await;
    assert_eq!(members.len(), 3, "etcd members: {members:?}");
    wait_lb_backends(
        &real.lb,
        &[(&cp0, "100"), (&cp1, "100"), (&cp2, "100")],
        NODE_TIMEOUT,
    )
    .await;

    // The API keeps answering through the load balancer while a control-plane node is down.
    docker_cli(&["stop", "-t", "5", &cp1]);
    for _ in 0..5 {
        let (ok, out) = workload.kubectl(&["get", "nodes", "-o", "name"]);
        // An API server answering with etcd's transient error during its election answered.
        assert!(
            ok || out.contains("etcdserver: leader changed"),
            "the API did not answer with {cp1} stopped: {out}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    docker_cli(&["start", &cp1]);
    workload.nodes_ready(&all, NODE_TIMEOUT).await;

    // A host reboot: every container stopped, then started again, the nodes one by one in
    // another order (the manager, which runs elsewhere, starts the load balancer again as soon
    // as it sees it stopped). The containers are on their old addresses, the load balancer has
    // every control plane, etcd's three members are healthy, the machines run again, the Pods
    // answer across nodes again and no node was bootstrapped again.
    let everything: Vec<String> = std::iter::once(real.lb.clone())
        .chain(all.iter().cloned())
        .collect();
    let mut before = Vec::new();
    let mut markers = Vec::new();
    for c in &everything {
        before.push(address_on(c, &network).await);
    }
    for n in &all {
        markers.push(sh(n, marker).await);
    }
    let mut stop = vec!["stop", "-t", "10"];
    stop.extend(everything.iter().map(String::as_str));
    docker_cli(&stop);
    for n in all.iter().rev() {
        docker_cli(&["start", n]);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    docker_cli(&["start", &real.lb]);
    let mut after = Vec::new();
    for c in &everything {
        after.push(address_on(c, &network).await);
    }
    assert_eq!(
        after, before,
        "addresses after the reboot of {everything:?}"
    );
    wait_lb_backends(
        &real.lb,
        &[(&cp0, "100"), (&cp1, "100"), (&cp2, "100")],
        NODE_TIMEOUT,
    )
    .await;
    wait::until("etcd healthy after the reboot", NODE_TIMEOUT, || async {
        let health = sh(&cp0, &etcdctl("endpoint health --cluster")).await;
        if health.matches("is healthy").count() == 3 {
            Ok(())
        } else {
            Err(health)
        }
    })
    .await;
    for n in &all {
        capkind_test::fixtures::kindmachine_until(
            &real.machines,
            n,
            "the machine running again",
            NODE_TIMEOUT,
            |km| kindmachine_condition(km, "Ready").is_some_and(|c| c.status == "True"),
        )
        .await;
    }
    workload.nodes_ready(&all, NODE_TIMEOUT).await;
    let web = workload.pod_running("web", NODE_TIMEOUT).await;
    workload.pod_running("client", NODE_TIMEOUT).await;
    answer(web.status.and_then(|s| s.pod_ip).expect("ip")).await;
    for (n, started) in all.iter().zip(&markers) {
        assert_eq!(&sh(n, marker).await, started, "{n} bootstrapped again");
    }

    // Back to one, oldest first, as the control plane provider does it: the Machine is marked
    // deleted (the load balancer drains it), its etcd member removed, its Node deleted, then
    // its KindMachine goes (and it leaves the load balancer).
    for (gone, left) in [(&cp0, vec![&cp1, &cp2]), (&cp1, vec![&cp2])] {
        real.core
            .start_deleting_machine(gone)
            .await
            .expect("delete Machine");
        let mut draining = vec![(gone.as_str(), "0")];
        draining.extend(left.iter().map(|m| (m.as_str(), "100")));
        wait_lb_backends(&real.lb, &draining, NODE_TIMEOUT).await;
        let id = etcd_members(left[0])
            .await
            .into_iter()
            .find(|(_, member)| member == gone.as_str())
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no etcd member of {gone}"));
        // As the control plane provider: only once etcd is healthy (a member that restarted a
        // moment ago may not have caught up; etcd refuses to lose quorum).
        wait::until("etcd member removed", NODE_TIMEOUT, || async {
            let removed = sh(left[0], &etcdctl(&format!("member remove {id}"))).await;
            if removed.contains("removed") {
                Ok(())
            } else {
                Err(removed)
            }
        })
        .await;
        // Removing the member that led etcd makes it elect another; a write in that moment gets
        // "leader changed", which the control plane provider retries.
        wait::until(
            "the leaving Node deleted",
            Duration::from_secs(60),
            || async {
                match workload.kubectl(&["delete", "node", "--ignore-not-found", gone]) {
                    (true, _) => Ok(()),
                    (false, out) => Err(out),
                }
            },
        )
        .await;
        real.core
            .finish_deleting_machine(gone)
            .await
            .expect("delete KindMachine");
        let remaining: Vec<(&str, &str)> = left.iter().map(|m| (m.as_str(), "100")).collect();
        wait_lb_backends(&real.lb, &remaining, NODE_TIMEOUT).await;
        all.retain(|n| n != gone);
        wait::until(
            "the API answering after a control plane left",
            Duration::from_secs(60),
            || async {
                match workload.kubectl(&["get", "nodes", "-o", "name"]) {
                    (true, _) => Ok(()),
                    (false, out) => Err(out),
                }
            },
        )
        .await;
    }
    assert_eq!(etcd_members(&cp2).await.len(), 1);
    workload.nodes_ready(&all, NODE_TIMEOUT).await;

    // Deleted: nothing left; no warning on the way; the host's kernel settings as they were.
    let docker_engine = engine().await;
    let mut volumes = vec![];
    for c in docker_engine
        .list(&[("io.x-k8s.kind.cluster", name.as_str())])
        .await
        .expect("list")
    {
        volumes.extend(
            docker_engine
                .inspect(&c)
                .await
                .expect("inspect")
                .expect("container")
                .volume_names,
        );
    }
    real.core.delete().await.expect("delete the cluster");
    let left = docker_engine
        .list(&[("io.x-k8s.kind.cluster", name.as_str())])
        .await
        .expect("list");
    assert!(left.is_empty(), "containers left: {left:?}");
    capkind_test::docker::assert_volumes_gone(&volumes);
    assert!(!network_exists(&network), "network {network} left behind");
    assert_eq!(
        host_sysctls(),
        sysctls,
        "the host's kernel settings changed"
    );
    assert_eq!(warnings(&client, &ns).await, [], "Warning events");
    assert_eq!(
        log_problems(&manager.log),
        Vec::<String>::new(),
        "WARN or ERROR lines in the manager's log"
    );
}

/// A `kubeadm init` that fails its preflight (no container runtime at the configured socket):
/// the machine reports the command, its exit code and the last lines of kubeadm's output, each
/// a whole line of what kubeadm printed, in its condition and a Warning event; and no key of
/// the cluster's PKI (all in the bootstrap data) shows up in a condition, an event or the log.
#[tokio::test]
async fn a_failing_kubeadm_init_is_reported_whole_and_without_secrets() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let manager = ManagerProcess::start(server, &["--namespace", &ns]);
    let mut janitor = Janitor::default();
    let name = names::unique("kf");
    let network = names::unique("net");
    janitor.track_network(&network);
    janitor.track(format!("{name}-lb"));
    janitor.track(format!("{name}-cp-0"));
    let real = KubeadmCluster::create(&client, &ns, &name, &network, &[]).await;
    let mut broken = node(true);
    broken.cri_socket = "unix:///run/no-such-runtime.sock".into();
    let data = init_cloud_config(&real.config, &broken, &real.pki, INIT_ARGS);
    let cp = real
        .core
        .add_machine(Role::ControlPlane, &data)
        .await
        .expect("control-plane machine");

    let km = capkind_test::fixtures::kindmachine_until(
        &real.machines,
        &cp,
        "bootstrap failure",
        MACHINE_TIMEOUT,
        |km| {
            kindmachine_condition(km, "BootstrapExecSucceeded")
                .is_some_and(|c| c.reason == "BootstrapFailed")
        },
    )
    .await;
    let status = km.status.clone().expect("status");
    let message = kindmachine_condition(&km, "BootstrapExecSucceeded")
        .map(|c| c.message)
        .expect("condition");
    let lines: Vec<&str> = message.lines().collect();
    assert!(
        lines[0].starts_with("command \"kubeadm init --ignore-preflight-errors=")
            && lines[0].ends_with(" exited with 1; the last lines of its output:"),
        "{message}"
    );
    // Every line after the first is a whole line of what kubeadm printed in the node.
    let log = sh(&cp, "cat /var/lib/capkind/state/bootstrap.log").await;
    let printed: Vec<&str> = log.lines().collect();
    for line in &lines[1..] {
        assert!(
            printed.contains(line),
            "not a whole line of kubeadm's output: {line:?}\n{log}"
        );
    }
    assert!(
        message.contains("[ERROR CRI]") || message.contains("container runtime"),
        "kubeadm's reason is missing: {message}"
    );
    assert!(!is_ready(&km));

    let warning = wait::until(
        "the BootstrapFailed event",
        Duration::from_secs(30),
        || async {
            warnings(&client, &ns)
                .await
                .into_iter()
                .find(|w| w.reason == "BootstrapFailed")
                .ok_or_else(|| "none".to_string())
        },
    )
    .await;
    assert!(warning.note.len() <= 1024);
    assert_eq!(warning.note.lines().next(), Some(lines[0]));

    // No key material anywhere a user or a log collector sees.
    let keys = [
        &real.pki.ca,
        &real.pki.etcd,
        &real.pki.front_proxy,
        &real.pki.service_account,
    ];
    let shown = format!(
        "{}\n{:?}\n{}",
        serde_json::to_string(&status).expect("json"),
        warnings(&client, &ns).await,
        std::fs::read_to_string(&manager.log).expect("log"),
    );
    for pair in keys {
        for line in pair.key().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line), "key material leaked");
        }
    }
    assert!(!shown.contains("PRIVATE KEY"), "a PEM block leaked");
}
