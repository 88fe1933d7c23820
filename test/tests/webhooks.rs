//! The manager's webhooks through a real kube-apiserver calling them over TLS: conversion of
//! every kind between v1beta1 and v1beta2, defaulting, every rejection's message, a ClusterClass
//! dry run, and certificate rotation while the API server keeps calling.
//!
//! The suite has its own API server (CRD conversion is cluster-wide) and one manager serving
//! webhooks, with certificates made by the test; the webhook configurations are the shipped ones
//! (config/webhook/manifests.yaml) pointed at 127.0.0.1.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use capkind_api::{v1beta1, v1beta2};
use capkind_test::process::ManagerProcess;
use capkind_test::webhooks::{self, Certs};
use capkind_test::{ApiServer, http as probe, wait};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

struct Env {
    server: ApiServer,
    certs: Certs,
    port: u16,
    manager: ManagerProcess,
}

/// The suite's API server and manager, started on first use.
fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        std::thread::spawn(|| {
            let server = ApiServer::start().expect("own API server");
            let certs = Certs::new(&server.dir().join("webhook-certs"));
            let port = probe::free_port();
            let manager = ManagerProcess::start(
                &server,
                &[
                    &format!("--webhook-port={port}"),
                    "--webhook-host=127.0.0.1",
                    &format!("--webhook-cert-dir={}", certs.dir().display()),
                    // Nothing to reconcile here: only the webhooks are under test.
                    "--namespace=capkind-webhooks-none",
                ],
            );
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                wait::until("the manager ready", Duration::from_secs(60), || async {
                    let r = probe::get(manager.health_port, "/readyz");
                    if probe::is_ok(&r) {
                        Ok(())
                    } else {
                        Err(format!("{r}\n{}", manager.log_tail()))
                    }
                })
                .await;
                let client = server.client().await;
                webhooks::enable(&client, port, &certs.ca_pem())
                    .await
                    .expect("enable the webhooks");
            });
            Env {
                server,
                certs,
                port,
                manager,
            }
        })
        .join()
        .expect("start the suite's environment")
    })
}

async fn setup() -> (Client, String) {
    let env = env();
    let client = env.server.client().await;
    let ns = env.server.namespace(&client).await;
    (client, ns)
}

fn api_at<K: kube::Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
}

async fn create_json<K: kube::Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    obj: Value,
) -> Result<Value, String> {
    let obj: DynamicObject = serde_json::from_value(obj).expect("object");
    api_at::<K>(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .map(|o| serde_json::to_value(o).expect("json"))
        .map_err(|e| e.to_string())
}

async fn get_json<K: kube::Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    name: &str,
) -> Value {
    let obj = api_at::<K>(client, ns).get(name).await.expect("get");
    serde_json::to_value(obj).expect("json")
}

fn object(version: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": format!("infrastructure.cluster.x-k8s.io/{version}"), "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

/// Every kind created as v1beta1 reads as v1beta2 in the v1beta2 shape, and as v1beta1 again
/// exactly as it was written; status written as v1beta1 arrives in the v1beta2 places.
#[tokio::test]
async fn v1beta1_objects_read_as_v1beta2_and_back_unchanged() {
    let (client, ns) = setup().await;
    let kc_spec = json!({
        "controlPlaneEndpoint": {"host": "172.18.0.9", "port": 7443},
        "network": "kind",
        "failureDomains": {"fd-b": {"controlPlane": true, "attributes": {"rack": "2"}},
                           "fd-a": {"controlPlane": false}},
        "loadBalancer": {"imageRepository": "kindest", "imageTag": "v20230606-42a2262b"}
    });
    let km_spec = json!({
        "providerID": "kind://c/kind/c-m", "customImage": "kindest/node:v1.31.0",
        "preLoadImages": ["busybox:1.36"], "bootstrapTimeout": "90s",
        "extraMounts": [{"containerPath": "/var/run/docker.sock", "hostPath": "/var/run/docker.sock", "readOnly": false}]
    });
    let mp_spec = json!({
        "providerID": "kind://c/pool/mp", "providerIDList": ["kind://c/kind/c-mp-a"],
        "template": {"customImage": "kindest/node:v1.31.0", "bootstrapTimeout": "90s",
                     "extraMounts": [{"containerPath": "/data", "hostPath": "/srv", "readOnly": true}]}
    });
    let cases = [
        ("KindCluster", kc_spec.clone()),
        ("KindMachine", km_spec.clone()),
        (
            "KindClusterTemplate",
            json!({"template": {"metadata": {"labels": {"a": "b"}}, "spec": kc_spec}}),
        ),
        (
            "KindMachineTemplate",
            json!({"template": {"spec": km_spec}}),
        ),
        ("KindMachinePool", mp_spec.clone()),
        (
            "KindMachinePoolTemplate",
            json!({"template": {"spec": mp_spec}}),
        ),
    ];
    for (kind, spec) in cases {
        let name = kind.to_lowercase();
        let obj = object("v1beta1", kind, &name, spec.clone());
        let created = match kind {
            "KindCluster" => create_json::<v1beta1::KindCluster>(&client, &ns, obj).await,
            "KindMachine" => create_json::<v1beta1::KindMachine>(&client, &ns, obj).await,
            "KindClusterTemplate" => {
                create_json::<v1beta1::KindClusterTemplate>(&client, &ns, obj).await
            }
            "KindMachinePool" => create_json::<v1beta1::KindMachinePool>(&client, &ns, obj).await,
            "KindMachinePoolTemplate" => {
                create_json::<v1beta1::KindMachinePoolTemplate>(&client, &ns, obj).await
            }
            _ => create_json::<v1beta1::KindMachineTemplate>(&client, &ns, obj).await,
        }
        .unwrap_or_else(|e| panic!("create {kind} as v1beta1: {e}"));
        assert_eq!(
            created["spec"], spec,
            "{kind} created as v1beta1 comes back as written"
        );
        let (v1, v2) = match kind {
            "KindCluster" => (
                get_json::<v1beta1::KindCluster>(&client, &ns, &name).await,
                get_json::<v1beta2::KindCluster>(&client, &ns, &name).await,
            ),
            "KindMachine" => (
                get_json::<v1beta1::KindMachine>(&client, &ns, &name).await,
                get_json::<v1beta2::KindMachine>(&client, &ns, &name).await,
            ),
            "KindClusterTemplate" => (
                get_json::<v1beta1::KindClusterTemplate>(&client, &ns, &name).await,
                get_json::<v1beta2::KindClusterTemplate>(&client, &ns, &name).await,
            ),
            "KindMachinePool" => (
                get_json::<v1beta1::KindMachinePool>(&client, &ns, &name).await,
                get_json::<v1beta2::KindMachinePool>(&client, &ns, &name).await,
            ),
            "KindMachinePoolTemplate" => (
                get_json::<v1beta1::KindMachinePoolTemplate>(&client, &ns, &name).await,
                get_json::<v1beta2::KindMachinePoolTemplate>(&client, &ns, &name).await,
            ),
            _ => (
                get_json::<v1beta1::KindMachineTemplate>(&client, &ns, &name).await,
                get_json::<v1beta2::KindMachineTemplate>(&client, &ns, &name).await,
            ),
        };
        assert_eq!(v1["spec"], spec, "{kind} read as v1beta1");
        assert_eq!(
            v2["apiVersion"], "infrastructure.cluster.x-k8s.io/v1beta2",
            "{kind}"
        );
        assert!(
            v1["metadata"]["annotations"]
                .get(capkind_api::conversion::DATA_ANNOTATION)
                .is_none(),
            "{kind}: the conversion's own annotation shows through: {v1}"
        );
        let domains = v2["spec"]["failureDomains"]
            .as_array()
            .or_else(|| v2["spec"]["template"]["spec"]["failureDomains"].as_array());
        if let Some(domains) = domains {
            let names: Vec<&str> = domains.iter().filter_map(|d| d["name"].as_str()).collect();
            assert_eq!(names, ["fd-a", "fd-b"], "{kind}: a sorted list in v1beta2");
        }
    }
    let km = get_json::<v1beta2::KindMachine>(&client, &ns, "kindmachine").await;
    assert_eq!(km["spec"]["providerID"], "kind://c/kind/c-m");

    // Status written through v1beta1 lands where a v1beta2 reader looks, and reads back as
    // written through v1beta1.
    let status = json!({"status": {
        "ready": true,
        "addresses": [{"type": "Hostname", "address": "c-m"}],
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:00Z"}],
        "failureReason": "CreateError", "failureMessage": "example"
    }});
    let v1beta1_machines = api_at::<v1beta1::KindMachine>(&client, &ns);
    v1beta1_machines
        .patch_status(
            "kindmachine",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("status through v1beta1");
    let v2 = get_json::<v1beta2::KindMachine>(&client, &ns, "kindmachine").await;
    assert_eq!(v2["status"]["initialization"]["provisioned"], true, "{v2}");
    assert_eq!(
        v2["status"]["deprecated"]["v1beta1"]["failureReason"],
        "CreateError"
    );
    assert_eq!(
        v2["status"]["deprecated"]["v1beta1"]["conditions"][0]["type"],
        "Ready"
    );
    let v1 = get_json::<v1beta1::KindMachine>(&client, &ns, "kindmachine").await;
    for field in [
        "ready",
        "addresses",
        "conditions",
        "failureReason",
        "failureMessage",
    ] {
        assert_eq!(
            v1["status"][field], status["status"][field],
            "status.{field}"
        );
    }

    // A pool's status: ready and initialization both kept, an instance without a provider ID
    // yet, the v1beta1 conditions under deprecated.
    let status = json!({"status": {
        "ready": false, "replicas": 2, "infrastructureMachineKind": "KindMachine",
        "instances": [{"instanceName": "c-mp-a", "providerID": "kind://c/kind/c-mp-a", "ready": true},
                      {"instanceName": "c-mp-b", "ready": false}],
        "conditions": [{"type": "Ready", "status": "False", "severity": "Info", "reason": "Scaling",
                        "lastTransitionTime": "2026-11-23T10:00:00Z"}]
    }});
    api_at::<v1beta1::KindMachinePool>(&client, &ns)
        .patch_status(
            "kindmachinepool",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("pool status through v1beta1");
    let v2 = get_json::<v1beta2::KindMachinePool>(&client, &ns, "kindmachinepool").await;
    assert_eq!(v2["spec"]["providerID"], "kind://c/pool/mp");
    assert_eq!(v2["status"]["replicas"], 2, "{v2}");
    assert_eq!(v2["status"]["ready"], false);
    assert_eq!(
        v2["status"]["instances"][1],
        json!({"instanceName": "c-mp-b", "ready": false})
    );
    assert_eq!(
        v2["status"]["deprecated"]["v1beta1"]["conditions"][0]["reason"],
        "Scaling"
    );
    let v1 = get_json::<v1beta1::KindMachinePool>(&client, &ns, "kindmachinepool").await;
    for field in [
        "ready",
        "replicas",
        "infrastructureMachineKind",
        "instances",
        "conditions",
    ] {
        assert_eq!(
            v1["status"][field], status["status"][field],
            "pool status.{field}"
        );
    }
}

/// What CAPD's webhooks default, the manager's do: the endpoint port and each failure domain's
/// controlPlane.
#[tokio::test]
async fn defaults_are_filled_in_by_the_webhook() {
    let (client, ns) = setup().await;
    let created = create_json::<v1beta2::KindCluster>(
        &client,
        &ns,
        object(
            "v1beta2",
            "KindCluster",
            "c",
            json!({"failureDomains": [{"name": "fd1"}]}),
        ),
    )
    .await
    .expect("create");
    assert_eq!(created["spec"]["controlPlaneEndpoint"]["port"], 6443);
    assert_eq!(created["spec"]["failureDomains"][0]["controlPlane"], false);
    // Through v1beta1 too: the API server converts, then the v1beta2 webhook defaults.
    let created = create_json::<v1beta1::KindClusterTemplate>(
        &client,
        &ns,
        object(
            "v1beta1",
            "KindClusterTemplate",
            "ct",
            json!({"template": {"spec": {}}}),
        ),
    )
    .await
    .expect("create");
    assert_eq!(
        created["spec"]["template"]["spec"]["controlPlaneEndpoint"]["port"],
        6443
    );
    // An empty bootstrap timeout passes the schema's default; the webhook fills it in, on a
    // pool's instance template too.
    let created = create_json::<v1beta1::KindMachinePool>(
        &client,
        &ns,
        object(
            "v1beta1",
            "KindMachinePool",
            "mp",
            json!({"template": {"bootstrapTimeout": ""}}),
        ),
    )
    .await
    .expect("create");
    assert_eq!(created["spec"]["template"]["bootstrapTimeout"], "5m");
}

/// Each rejection reaches the user through the API server with the field and the reason.
#[tokio::test]
async fn every_rejection_names_the_field_and_says_why() {
    let (client, ns) = setup().await;
    let creates = [
        (
            "KindMachine",
            json!({"bootstrapTimeout": "0s"}),
            r#"spec.bootstrapTimeout: Invalid value: "0s": must be more than 0"#,
        ),
        (
            "KindMachine",
            json!({"extraMounts": [{"containerPath": "/var", "hostPath": "/srv"}]}),
            r#"spec.extraMounts[0].containerPath: Invalid value: "/var": must not be at or above /var"#,
        ),
        (
            "KindMachine",
            json!({"extraMounts": [{"containerPath": "/a/../b", "hostPath": "/srv"}]}),
            "must not contain .. segments",
        ),
        (
            "KindMachine",
            json!({"preLoadImages": ["bad image"]}),
            r#"spec.preLoadImages[0]: Invalid value: "bad image""#,
        ),
        (
            "KindCluster",
            json!({"failureDomains": [{"name": "b"}, {"name": "a"}]}),
            "spec.failureDomains: Invalid value",
        ),
        (
            "KindCluster",
            json!({"network": "host"}),
            r#"spec.network: Invalid value: "host""#,
        ),
        (
            "KindMachineTemplate",
            json!({"template": {"spec": {"bootstrapTimeout": "25h"}}}),
            r#"spec.template.spec.bootstrapTimeout: Invalid value: "25h": must be at most 24h"#,
        ),
        (
            "KindMachinePool",
            json!({"template": {"extraMounts": [{"containerPath": "/run", "hostPath": "/srv"}]}}),
            r#"spec.template.extraMounts[0].containerPath: Invalid value: "/run": must not be at or above /run"#,
        ),
        (
            "KindMachinePoolTemplate",
            json!({"template": {"spec": {"template": {"preLoadImages": ["bad image"]}}}}),
            r#"spec.template.spec.template.preLoadImages[0]: Invalid value: "bad image""#,
        ),
    ];
    for (i, (kind, spec, expected)) in creates.into_iter().enumerate() {
        let obj = object("v1beta2", kind, &format!("bad{i}"), spec.clone());
        let result = match kind {
            "KindMachine" => create_json::<v1beta2::KindMachine>(&client, &ns, obj).await,
            "KindCluster" => create_json::<v1beta2::KindCluster>(&client, &ns, obj).await,
            "KindMachinePool" => create_json::<v1beta2::KindMachinePool>(&client, &ns, obj).await,
            "KindMachinePoolTemplate" => {
                create_json::<v1beta2::KindMachinePoolTemplate>(&client, &ns, obj).await
            }
            _ => create_json::<v1beta2::KindMachineTemplate>(&client, &ns, obj).await,
        };
        let err = result.expect_err(&format!("{kind} {spec} must be refused"));
        assert!(err.contains(expected), "{kind} {spec}:\n{err}");
        assert!(err.contains("denied the request"), "{err}");
    }

    // Updates: a template's spec, a KindMachine's fields once created.
    create_json::<v1beta2::KindMachineTemplate>(
        &client,
        &ns,
        object(
            "v1beta2",
            "KindMachineTemplate",
            "mt",
            json!({"template": {"spec": {"customImage": "node:a"}}}),
        ),
    )
    .await
    .expect("template");
    let templates = api_at::<v1beta2::KindMachineTemplate>(&client, &ns);
    let change = json!({"spec": {"template": {"spec": {"customImage": "node:b"}}}});
    let err = templates
        .patch("mt", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .expect_err("a template's spec is immutable")
        .to_string();
    assert!(
        err.contains("spec.template.spec") && err.contains("immutable"),
        "{err}"
    );
    // Its metadata may change.
    let labels = json!({"metadata": {"labels": {"team": "a"}}});
    templates
        .patch("mt", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("labels on a template");

    create_json::<v1beta2::KindMachine>(
        &client,
        &ns,
        object(
            "v1beta2",
            "KindMachine",
            "m",
            json!({"customImage": "node:a"}),
        ),
    )
    .await
    .expect("machine");
    let machines = api_at::<v1beta2::KindMachine>(&client, &ns);
    let err = machines
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"customImage": "node:b"}})),
        )
        .await
        .expect_err("customImage is immutable")
        .to_string();
    assert!(
        err.contains("spec.customImage") && err.contains("immutable"),
        "{err}"
    );
    // The provider ID may be set once, as the controller does, and not changed after.
    machines
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"providerID": "kind://c/kind/c-m"}})),
        )
        .await
        .expect("providerID set once");
    let err = machines
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"providerID": "kind://c/kind/other"}})),
        )
        .await
        .expect_err("providerID changed")
        .to_string();
    assert!(
        err.contains("spec.providerID") && err.contains("immutable"),
        "{err}"
    );
    // Through v1beta1 the same rule holds (the API server converts, then asks the webhook).
    let err = api_at::<v1beta1::KindMachine>(&client, &ns)
        .patch(
            "m",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"customImage": "node:c"}})),
        )
        .await
        .expect_err("customImage through v1beta1")
        .to_string();
    assert!(err.contains("spec.customImage"), "{err}");

    // A pool's instance template may change: that is how a rollout starts.
    create_json::<v1beta2::KindMachinePool>(
        &client,
        &ns,
        object(
            "v1beta2",
            "KindMachinePool",
            "mp",
            json!({"template": {"customImage": "node:a"}}),
        ),
    )
    .await
    .expect("pool");
    let pools = api_at::<v1beta2::KindMachinePool>(&client, &ns);
    let changed = pools
        .patch(
            "mp",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"template": {"customImage": "node:b"}}})),
        )
        .await
        .expect("a pool's template changes");
    assert_eq!(changed.data["spec"]["template"]["customImage"], "node:b");
}

/// Cluster API's topology controller dry-runs template changes (server-side apply with
/// dryRun and the dry-run annotation): allowed; the same change for real is not.
#[tokio::test]
async fn a_clusterclass_dry_run_may_change_a_template() {
    let (client, ns) = setup().await;
    for kind in [
        "KindMachineTemplate",
        "KindClusterTemplate",
        "KindMachinePoolTemplate",
    ] {
        let (spec, changed) = match kind {
            "KindMachineTemplate" => (
                json!({"template": {"spec": {"customImage": "node:a"}}}),
                json!({"template": {"spec": {"customImage": "node:b"}}}),
            ),
            "KindMachinePoolTemplate" => (
                json!({"template": {"spec": {"template": {"customImage": "node:a"}}}}),
                json!({"template": {"spec": {"template": {"customImage": "node:b"}}}}),
            ),
            _ => (
                json!({"template": {"spec": {"network": "a"}}}),
                json!({"template": {"spec": {"network": "b"}}}),
            ),
        };
        let api = match kind {
            "KindMachineTemplate" => api_at::<v1beta2::KindMachineTemplate>(&client, &ns),
            "KindMachinePoolTemplate" => api_at::<v1beta2::KindMachinePoolTemplate>(&client, &ns),
            _ => api_at::<v1beta2::KindClusterTemplate>(&client, &ns),
        };
        let obj: DynamicObject =
            serde_json::from_value(object("v1beta2", kind, "t", spec)).expect("object");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("template");
        let mut apply = object("v1beta2", kind, "t", changed);
        apply["metadata"]["annotations"] = json!({"topology.cluster.x-k8s.io/dry-run": ""});
        let dry_run = PatchParams::apply("capi-topology").dry_run().force();
        let result = api.patch("t", &dry_run, &Patch::Apply(&apply)).await;
        assert!(result.is_ok(), "{kind} dry run: {result:?}");
        let real = PatchParams::apply("capi-topology").force();
        let err = api
            .patch("t", &real, &Patch::Apply(&apply))
            .await
            .expect_err("the real change")
            .to_string();
        assert!(err.contains("immutable"), "{kind}: {err}");
        let unchanged = api.get("t").await.expect("get");
        assert_eq!(
            unchanged.data["spec"]["template"]["spec"],
            object("v1beta2", kind, "t", spec_of(kind))["spec"]["template"]["spec"],
            "{kind}: the dry run changed nothing"
        );
    }
}

fn spec_of(kind: &str) -> Value {
    match kind {
        "KindMachineTemplate" => {
            json!({"template": {"spec": {"customImage": "node:a", "bootstrapTimeout": "5m"}}})
        }
        "KindMachinePoolTemplate" => {
            json!({"template": {"spec": {"template": {"customImage": "node:a", "bootstrapTimeout": "5m"}}}})
        }
        _ => {
            json!({"template": {"spec": {"network": "a", "controlPlaneEndpoint": {"port": 6443},
                   "loadBalancer": {"imageRepository": "kindest", "imageTag": "v20230606-42a2262b"}}}})
        }
    }
}

/// cert-manager renews the serving certificate: the manager serves the new one to new
/// connections without a restart, and the API server's calls keep succeeding throughout.
#[tokio::test]
async fn certificates_rotate_while_serving() {
    let (client, ns) = setup().await;
    let env = env();
    let before = webhooks::served_certificate(env.port, &env.certs.ca_pem())
        .await
        .expect("served certificate");
    let new = env.certs.rotate();
    assert_ne!(before, new);
    let started = Instant::now();
    let mut calls = 0;
    loop {
        // A call through the API server and both webhooks on every round.
        let obj = object(
            "v1beta2",
            "KindMachine",
            &format!("m{calls}"),
            json!({"customImage": "node:a"}),
        );
        create_json::<v1beta2::KindMachine>(&client, &ns, obj)
            .await
            .unwrap_or_else(|e| panic!("call {calls} during rotation: {e}"));
        calls += 1;
        let served = webhooks::served_certificate(env.port, &env.certs.ca_pem())
            .await
            .expect("served certificate");
        if served == new {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still serving the old certificate after 30 s\n{}",
            env.manager.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "new certificate served after {:?} ({calls} calls through the API server meanwhile)",
        started.elapsed()
    );
    assert!(
        env.manager
            .log_tail()
            .contains("webhook certificate reloaded"),
        "{}",
        env.manager.log_tail()
    );
}

/// The webhooks' latency as the API server measures it: p50 and p99 of the admission webhooks
/// (mutating and validating) over 200 creates and updates, and of the conversion webhook over
/// 200 reads as v1beta1, from the API server's own histograms. A figure for
/// docs/performance.md, printed; the test asserts only that every call went through them.
#[tokio::test]
async fn webhook_latency_seen_by_the_api_server() {
    let (client, ns) = setup().await;
    let before = api_server_metrics(&client).await;
    let machines = api_at::<v1beta2::KindMachine>(&client, &ns);
    let v1beta1_machines = api_at::<v1beta1::KindMachine>(&client, &ns);
    const N: usize = 100;
    for i in 0..N {
        let name = format!("lat{i}");
        create_json::<v1beta2::KindMachine>(
            &client,
            &ns,
            object(
                "v1beta2",
                "KindMachine",
                &name,
                json!({"customImage": "node:a"}),
            ),
        )
        .await
        .expect("create");
        machines
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"labels": {"round": "1"}}})),
            )
            .await
            .expect("update");
        v1beta1_machines.get(&name).await.expect("read as v1beta1");
        v1beta1_machines.get(&name).await.expect("read as v1beta1");
    }
    let after = api_server_metrics(&client).await;
    let mut report = vec![];
    for (what, family, filter) in [
        (
            "mutating",
            "apiserver_admission_webhook_admission_duration_seconds",
            "type=\"admit\"",
        ),
        (
            "validating",
            "apiserver_admission_webhook_admission_duration_seconds",
            "type=\"validating\"",
        ),
        (
            "conversion to v1beta1",
            "apiserver_crd_webhook_conversion_duration_seconds",
            "to_version=\"v1beta1\"",
        ),
    ] {
        let h = histogram(&after, family, filter).minus(&histogram(&before, family, filter));
        assert!(
            h.count >= (2 * N) as f64,
            "{what}: {} calls counted, expected at least {}",
            h.count,
            2 * N
        );
        // The API server's buckets are coarse (admission: 5 ms, 25 ms, ...; conversion: 1 ms,
        // 2 ms, ...): print the first bucket bound that holds each quantile beside the
        // interpolated value.
        report.push(format!(
            "{what} webhook: {} calls, p50 {:.1} ms (<= {} ms), p99 {:.1} ms (<= {} ms)",
            h.count,
            h.quantile(0.5) * 1000.0,
            h.bound(0.5) * 1000.0,
            h.quantile(0.99) * 1000.0,
            h.bound(0.99) * 1000.0,
        ));
    }
    println!("{}", report.join("\n"));
}

async fn api_server_metrics(client: &Client) -> String {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    client.request_text(request).await.expect("/metrics")
}

/// A Prometheus histogram summed over the series of `family` whose labels contain `filter`.
#[derive(Debug, Default)]
struct Histogram {
    /// (upper bound, cumulative count)
    buckets: Vec<(f64, f64)>,
    count: f64,
}

fn histogram(text: &str, family: &str, filter: &str) -> Histogram {
    let mut buckets: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let mut count = 0.0;
    for line in text.lines().filter(|l| l.contains(filter)) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().unwrap_or(0.0);
        if series.starts_with(&format!("{family}_bucket")) {
            let le = series
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("+Inf");
            let bound = le.parse().unwrap_or(f64::INFINITY);
            let entry = buckets.entry(le.to_string()).or_insert((bound, 0.0));
            entry.1 += value;
        } else if series.starts_with(&format!("{family}_count")) {
            count += value;
        }
    }
    let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Histogram { buckets, count }
}

impl Histogram {
    fn minus(&self, earlier: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let before = earlier
                    .buckets
                    .iter()
                    .find(|(l, _)| l == le)
                    .map_or(0.0, |(_, c)| *c);
                (*le, c - before)
            })
            .collect();
        Histogram {
            buckets,
            count: self.count - earlier.count,
        }
    }

    /// The upper bound of the first bucket holding quantile `q`.
    fn bound(&self, q: f64) -> f64 {
        let rank = q * self.count;
        self.buckets
            .iter()
            .find(|(_, c)| *c >= rank)
            .map_or(f64::INFINITY, |(le, _)| *le)
    }

    /// The quantile by linear interpolation inside the bucket, as histogram_quantile does.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut lower = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= rank {
                if le.is_infinite() {
                    return lower.0;
                }
                let width = c - lower.1;
                let into = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    0.0
                };
                return lower.0 + (le - lower.0) * into;
            }
            lower = (le, c);
        }
        lower.0
    }
}
