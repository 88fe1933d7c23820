//! KindMachineTemplate status for the cluster autoscaler's scale from zero: the manager binary
//! writes `status.capacity` and `status.nodeInfo` from what the real Docker engine reports, puts
//! them back when someone changes them, and writes nothing in a steady state.

use std::process::Command;
use std::time::Duration;

use capkind_api::v1beta2::KindMachineTemplate;
use capkind_test::fixtures::machine_spec;
use capkind_test::process::ManagerProcess;
use capkind_test::{names, shared, wait};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// What `docker info` says, read with the Docker CLI (not through the provider's own code).
struct DockerInfo {
    cpus: i64,
    memory_bytes: i64,
    architecture: String,
    os_type: String,
}

fn docker_info() -> DockerInfo {
    let out = Command::new("docker")
        .args([
            "info",
            "--format",
            "{{.NCPU}} {{.MemTotal}} {{.Architecture}} {{.OSType}}",
        ])
        .output()
        .unwrap_or_else(|e| panic!("the Docker CLI (docker) is needed for this test: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "docker info: {text}");
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [cpus, memory, architecture, os_type] = fields[..] else {
        panic!("docker info: {text}");
    };
    DockerInfo {
        cpus: cpus.parse().expect("NCPU"),
        memory_bytes: memory.parse().expect("MemTotal"),
        architecture: architecture.into(),
        os_type: os_type.into(),
    }
}

/// Bytes in a binary-SI or plain quantity (`24683584Ki`, `16Gi`, `1000`).
fn bytes(quantity: &str) -> i64 {
    let suffixes = [
        ("Ki", 1),
        ("Mi", 2),
        ("Gi", 3),
        ("Ti", 4),
        ("Pi", 5),
        ("Ei", 6),
    ];
    for (suffix, power) in suffixes {
        if let Some(n) = quantity.strip_suffix(suffix) {
            return n.parse::<i64>().expect("number") << (10 * power);
        }
    }
    quantity.parse().expect("number")
}

async fn status_of(api: &Api<KindMachineTemplate>, name: &str) -> Value {
    let t = api.get(name).await.expect("get");
    serde_json::to_value(&t.status).expect("json")
}

#[tokio::test]
async fn the_manager_writes_capacity_and_node_info_once_and_restores_them() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let manager = ManagerProcess::start(server, &["--namespace", &ns]);
    let api: Api<KindMachineTemplate> = Api::namespaced(client.clone(), &ns);
    let name = names::unique("t");
    let template: KindMachineTemplate = serde_json::from_value(json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachineTemplate",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"spec": machine_spec()}},
    }))
    .expect("template");
    api.create(&PostParams::default(), &template)
        .await
        .expect("create");

    let status = wait::until("status.capacity", Duration::from_secs(30), || async {
        let status = status_of(&api, &name).await;
        if status["capacity"].is_object() {
            Ok(status)
        } else {
            Err(format!("{status}\n{}", manager.log_tail()))
        }
    })
    .await;
    let info = docker_info();
    assert_eq!(status["capacity"]["cpu"], info.cpus.to_string(), "{status}");
    let memory = status["capacity"]["memory"].as_str().expect("memory");
    assert_eq!(bytes(memory), info.memory_bytes, "{status}");
    let architecture = match info.architecture.as_str() {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        status["nodeInfo"],
        json!({"architecture": architecture, "operatingSystem": info.os_type}),
        "{status}"
    );

    // A reconcile that finds the status current writes nothing: a label change reconciles
    // (counted), and the resourceVersion stays the label's.
    let reconciles =
        "controller_runtime_reconcile_total{controller=\"kindmachinetemplate\",result=\"success\"}";
    let before = manager.metric(reconciles);
    let labelled = api
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .expect("label");
    wait::until(
        "a reconcile after the label",
        Duration::from_secs(30),
        || async {
            let n = manager.metric(reconciles);
            if n > before {
                Ok(())
            } else {
                Err(format!("{n} reconciles\n{}", manager.log_tail()))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let steady = api.get(&name).await.expect("get");
    assert_eq!(
        steady.resource_version(),
        labelled.resource_version(),
        "a steady template was written: {:?}",
        steady.status
    );

    // A status changed by someone else is put back.
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"capacity": {"cpu": "999"}}})),
    )
    .await
    .expect("change the status");
    wait::until("the capacity restored", Duration::from_secs(30), || async {
        let now = status_of(&api, &name).await;
        if now == status {
            Ok(())
        } else {
            Err(format!("{now}\n{}", manager.log_tail()))
        }
    })
    .await;
}
