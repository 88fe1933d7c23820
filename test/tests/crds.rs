//! The CRDs against a real kube-apiserver: they install, valid objects of every kind round-trip
//! (with defaults and status writes), invalid ones are refused with a message naming the field,
//! unknown fields are pruned, and kubectl explains the fields.

use capkind_api::v1beta2::{
    KindCluster, KindClusterTemplate, KindMachine, KindMachinePool, KindMachinePoolTemplate,
    KindMachineTemplate,
};
use capkind_test::shared;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

async fn setup() -> (Client, String) {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    (client, ns)
}

fn dynamic<K: Resource<DynamicType = ()>>(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<K>(&()))
}

async fn create<K: Resource<DynamicType = ()>>(
    client: &Client,
    ns: &str,
    obj: Value,
) -> Result<Value, String> {
    let obj: DynamicObject = serde_json::from_value(obj).expect("object");
    dynamic::<K>(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .map(|o| serde_json::to_value(o).expect("json"))
        .map_err(|e| e.to_string())
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn crds_install_with_contract_label_and_are_established() {
    let server = shared();
    let crds: Api<CustomResourceDefinition> = Api::all(server.client().await);
    let listed = crds
        .list(&ListParams::default().labels("cluster.x-k8s.io/v1beta1=v1beta1"))
        .await
        .expect("list");
    let mut names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "kindclusters.infrastructure.cluster.x-k8s.io",
            "kindclustertemplates.infrastructure.cluster.x-k8s.io",
            "kindmachinepools.infrastructure.cluster.x-k8s.io",
            "kindmachinepooltemplates.infrastructure.cluster.x-k8s.io",
            "kindmachines.infrastructure.cluster.x-k8s.io",
            "kindmachinetemplates.infrastructure.cluster.x-k8s.io",
        ]
    );
    for crd in &listed.items {
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        assert!(established, "{:?} is not established", crd.metadata.name);
    }

    // What a user runs: server-side apply of the committed files, then kubectl explain.
    let bases = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/crd/bases");
    let out = server.kubectl(&["apply", "--server-side", "-f", bases]);
    assert!(
        out.status.success(),
        "kubectl apply --server-side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API server republishes its OpenAPI document a moment after a CRD changes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let out = loop {
        let out = server.kubectl(&["explain", "kindmachine.spec.extraMounts"]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Host paths bind-mounted into the node container"),
        "{text}"
    );
    assert!(
        text.contains("Absolute path inside the container"),
        "{text}"
    );
    let out = server.kubectl(&["get", "cluster-api", "-A"]);
    assert!(
        out.status.success(),
        "the cluster-api category is not usable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn kindcluster_round_trips_with_defaults_and_status() {
    let (client, ns) = setup().await;
    let created = create::<KindCluster>(
        &client,
        &ns,
        object(
            "KindCluster",
            "c1",
            json!({
                "failureDomains": [{"name": "fd1", "controlPlane": true, "attributes": {"rack": "1"}}]
            }),
        ),
    )
    .await
    .expect("valid KindCluster");
    assert!(
        created["spec"].get("network").is_none(),
        "the network defaults in the manager"
    );
    assert_eq!(
        created["spec"]["loadBalancer"]["imageRepository"],
        "kindest"
    );
    assert_eq!(
        created["spec"]["loadBalancer"]["imageTag"],
        "v20230606-42a2262b"
    );
    assert_eq!(created["spec"]["failureDomains"][0]["controlPlane"], true);

    let api: Api<KindCluster> = Api::namespaced(client.clone(), &ns);
    let status = json!({"status": {
        "initialization": {"provisioned": true},
        "failureDomains": [{"name": "fd1", "controlPlane": true}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "Load balancer is running",
                        "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 1}],
        "deprecated": {"v1beta1": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T10:00:00Z"}]}},
        "observedGeneration": 1
    }});
    api.patch_status("c1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let got = api.get("c1").await.expect("get");
    let st = got.status.expect("status");
    assert_eq!(st.initialization.and_then(|i| i.provisioned), Some(true));
    assert_eq!(st.conditions[0].reason, "Ready");
    assert_eq!(
        st.deprecated.expect("deprecated").conditions()[0].type_,
        "Ready"
    );
    assert_eq!(got.spec.control_plane_endpoint, None);

    // The status subresource: a write to the main resource does not change status.
    let mut edited = api.get("c1").await.expect("get");
    edited.status.as_mut().expect("status").initialization = None;
    edited.spec.network = Some("other".into());
    let replaced = api
        .replace("c1", &PostParams::default(), &edited)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.network.as_deref(), Some("other"));
    assert!(
        replaced.provisioned(),
        "status changed through the main resource"
    );
}

#[tokio::test]
async fn kindmachine_round_trips_with_defaults_and_status() {
    let (client, ns) = setup().await;
    let created = create::<KindMachine>(&client, &ns, object("KindMachine", "m1", json!({
        "customImage": "kindest/node:v1.31.0",
        "preLoadImages": ["busybox:1.36"],
        "extraMounts": [{"containerPath": "/var/run/docker.sock", "hostPath": "/var/run/docker.sock"}]
    })))
    .await
    .expect("valid KindMachine");
    assert_eq!(created["spec"]["bootstrapTimeout"], "5m");
    assert_eq!(created["spec"]["extraMounts"][0]["readOnly"], false);

    let api: Api<KindMachine> = Api::namespaced(client.clone(), &ns);
    let got = api.get("m1").await.expect("typed get");
    assert_eq!(
        got.spec.bootstrap_timeout().expect("parses"),
        std::time::Duration::from_secs(300)
    );
    let status = json!({"status": {
        "initialization": {"provisioned": true},
        "addresses": [{"type": "Hostname", "address": "c-m1"}, {"type": "InternalIP", "address": "172.18.0.3"}],
        "failureDomain": "fd1",
        "deprecated": {"v1beta1": {"failureReason": "CreateError", "failureMessage": "example"}}
    }});
    api.patch_status("m1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let st = api.get("m1").await.expect("get").status.expect("status");
    assert_eq!(st.addresses.len(), 2);
    assert_eq!(st.failure_domain.as_deref(), Some("fd1"));
    let v1beta1 = st.deprecated.and_then(|d| d.v1beta1).expect("v1beta1");
    assert_eq!(v1beta1.failure_reason.as_deref(), Some("CreateError"));
}

#[tokio::test]
async fn kindmachinepool_round_trips_with_defaults_and_status() {
    let (client, ns) = setup().await;
    let created = create::<KindMachinePool>(
        &client,
        &ns,
        object(
            "KindMachinePool",
            "mp",
            json!({
                "providerIDList": ["kind://c/kind/c-mp-a"],
                "template": {"customImage": "kindest/node:v1.31.0",
                             "extraMounts": [{"containerPath": "/data", "hostPath": "/srv"}]}
            }),
        ),
    )
    .await
    .expect("valid KindMachinePool");
    assert_eq!(created["spec"]["template"]["bootstrapTimeout"], "5m");
    assert_eq!(
        created["spec"]["template"]["extraMounts"][0]["readOnly"],
        false
    );
    // Without a template at all, the schema's default gives one.
    let bare =
        create::<KindMachinePool>(&client, &ns, object("KindMachinePool", "bare", json!({})))
            .await
            .expect("an empty KindMachinePool");
    assert_eq!(bare["spec"]["template"]["bootstrapTimeout"], "5m");

    let api: Api<KindMachinePool> = Api::namespaced(client.clone(), &ns);
    let status = json!({"status": {
        "initialization": {"provisioned": true},
        "ready": true,
        "replicas": 1,
        "infrastructureMachineKind": "KindMachine",
        "instances": [{"instanceName": "c-mp-a", "providerID": "kind://c/kind/c-mp-a", "version": "v1.31.0",
                       "ready": true, "addresses": [{"type": "InternalIP", "address": "172.18.0.4"}]}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "1 of 1 ready",
                        "lastTransitionTime": "2026-11-23T10:00:00Z"}],
        "observedGeneration": 1
    }});
    api.patch_status("mp", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let got = api.get("mp").await.expect("typed get");
    assert!(got.provisioned());
    assert_eq!(
        got.spec.template.machine_spec().custom_image.as_deref(),
        Some("kindest/node:v1.31.0")
    );
    let st = got.status.expect("status");
    assert!(st.ready);
    assert_eq!(st.replicas, 1);
    assert_eq!(
        st.infrastructure_machine_kind.as_deref(),
        Some("KindMachine")
    );
    assert_eq!(st.instances[0].provider_id, "kind://c/kind/c-mp-a");
    assert_eq!(st.instances[0].addresses.len(), 1);

    let err = api
        .patch_status(
            "mp",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": -1}})),
        )
        .await
        .expect_err("negative replicas")
        .to_string();
    assert!(err.contains("status.replicas"), "{err}");
}

#[tokio::test]
async fn templates_round_trip() {
    let (client, ns) = setup().await;
    let mt = create::<KindMachineTemplate>(&client, &ns, object("KindMachineTemplate", "mt", json!({
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"bootstrapTimeout": "90s"}}
    })))
    .await
    .expect("valid KindMachineTemplate");
    assert_eq!(mt["spec"]["template"]["spec"]["bootstrapTimeout"], "90s");
    assert_eq!(mt["spec"]["template"]["metadata"]["labels"]["a"], "b");
    let api: Api<KindMachineTemplate> = Api::namespaced(client.clone(), &ns);
    let status = json!({"status": {"capacity": {"cpu": "2", "memory": "24Gi"},
                                   "nodeInfo": {"architecture": "arm64", "operatingSystem": "linux"}}});
    api.patch_status("mt", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    let got = api.get("mt").await.expect("get");
    let got = got.status.expect("status");
    assert_eq!(got.capacity["memory"].0, "24Gi");
    let node_info = got.node_info.expect("nodeInfo");
    assert_eq!(
        node_info.architecture,
        Some(capkind_api::v1beta2::Architecture::Arm64)
    );
    assert_eq!(node_info.operating_system.as_deref(), Some("linux"));
    // Only the architectures Cluster API names.
    let wrong = json!({"status": {"nodeInfo": {"architecture": "x86_64"}}});
    let err = api
        .patch_status("mt", &PatchParams::default(), &Patch::Merge(&wrong))
        .await
        .expect_err("x86_64 is not a Kubernetes architecture")
        .to_string();
    assert!(
        err.contains("status.nodeInfo.architecture") && err.contains("Unsupported value"),
        "{err}"
    );

    let ct = create::<KindClusterTemplate>(
        &client,
        &ns,
        object(
            "KindClusterTemplate",
            "ct",
            json!({
                "template": {"spec": {"loadBalancer": {"imageTag": "custom"}}}
            }),
        ),
    )
    .await
    .expect("valid KindClusterTemplate");
    assert_eq!(
        ct["spec"]["template"]["spec"]["loadBalancer"]["imageTag"],
        "custom"
    );
    assert_eq!(
        ct["spec"]["template"]["spec"]["loadBalancer"]["imageRepository"],
        "kindest"
    );
    let mpt = create::<KindMachinePoolTemplate>(&client, &ns, object("KindMachinePoolTemplate", "mpt", json!({
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"template": {"preLoadImages": ["busybox:1.36"]}}}
    })))
    .await
    .expect("valid KindMachinePoolTemplate");
    assert_eq!(
        mpt["spec"]["template"]["spec"]["template"]["bootstrapTimeout"],
        "5m"
    );
    assert_eq!(mpt["spec"]["template"]["metadata"]["labels"]["a"], "b");

    let typed: Api<KindClusterTemplate> = Api::namespaced(client, &ns);
    assert_eq!(
        typed
            .get("ct")
            .await
            .expect("get")
            .spec
            .template
            .spec
            .network,
        None
    );
}

#[tokio::test]
async fn invalid_specs_are_refused_naming_the_field() {
    let (client, ns) = setup().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "KindCluster",
            json!({"controlPlaneEndpoint": {"host": "1.2.3.4", "port": 0}}),
            "spec.controlPlaneEndpoint.port",
        ),
        (
            "KindCluster",
            json!({"controlPlaneEndpoint": {"host": "1.2.3.4", "port": 70000}}),
            "spec.controlPlaneEndpoint.port",
        ),
        (
            "KindCluster",
            json!({"controlPlaneEndpoint": {"host": ""}}),
            "spec.controlPlaneEndpoint.host",
        ),
        ("KindCluster", json!({"network": ""}), "spec.network"),
        (
            "KindCluster",
            json!({"loadBalancer": {"customHAProxyConfigTemplateRef": {}}}),
            "spec.loadBalancer.customHAProxyConfigTemplateRef.name",
        ),
        (
            "KindMachine",
            json!({"extraMounts": [{"containerPath": "var/lib/x", "hostPath": "/tmp"}]}),
            "containerPath",
        ),
        (
            "KindMachine",
            json!({"extraMounts": [{"containerPath": "/x", "hostPath": "tmp"}]}),
            "hostPath",
        ),
        (
            "KindMachine",
            json!({"bootstrapTimeout": "5 minutes"}),
            "spec.bootstrapTimeout",
        ),
        (
            "KindMachine",
            json!({"bootstrapTimeout": "10d"}),
            "spec.bootstrapTimeout",
        ),
        ("KindMachine", json!({"providerID": ""}), "spec.providerID"),
        (
            "KindMachineTemplate",
            json!({"template": {"spec": {"extraMounts": [{"containerPath": "rel", "hostPath": "/h"}]}}}),
            "spec.template.spec.extraMounts",
        ),
        (
            "KindClusterTemplate",
            json!({"template": {"spec": {"controlPlaneEndpoint": {"port": 0}}}}),
            "spec.template.spec.controlPlaneEndpoint.port",
        ),
        (
            "KindMachinePool",
            json!({"providerIDList": [""]}),
            "spec.providerIDList",
        ),
        (
            "KindMachinePool",
            json!({"template": {"extraMounts": [{"containerPath": "rel", "hostPath": "/h"}]}}),
            "spec.template.extraMounts",
        ),
        (
            "KindMachinePool",
            json!({"template": {"bootstrapTimeout": "5 minutes"}}),
            "spec.template.bootstrapTimeout",
        ),
        (
            "KindMachinePoolTemplate",
            json!({"template": {"spec": {"template": {"customImage": ""}}}}),
            "spec.template.spec.template.customImage",
        ),
    ];
    for (i, (kind, spec, field)) in cases.into_iter().enumerate() {
        let obj = object(kind, &format!("bad{i}"), spec.clone());
        let result = match kind {
            "KindCluster" => create::<KindCluster>(&client, &ns, obj).await,
            "KindMachine" => create::<KindMachine>(&client, &ns, obj).await,
            "KindMachineTemplate" => create::<KindMachineTemplate>(&client, &ns, obj).await,
            "KindMachinePool" => create::<KindMachinePool>(&client, &ns, obj).await,
            "KindMachinePoolTemplate" => create::<KindMachinePoolTemplate>(&client, &ns, obj).await,
            _ => create::<KindClusterTemplate>(&client, &ns, obj).await,
        };
        let err = result.expect_err(&format!("{kind} with {spec} must be refused"));
        assert!(
            err.contains(field),
            "{kind} {spec}: the error does not name {field}: {err}"
        );
        assert!(
            err.contains("Invalid") || err.contains("invalid") || err.contains("Required"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn invalid_status_enums_are_refused_naming_the_field() {
    let (client, ns) = setup().await;
    create::<KindMachine>(&client, &ns, object("KindMachine", "m", json!({})))
        .await
        .expect("create");
    let api: Api<KindMachine> = Api::namespaced(client, &ns);
    let cases = [
        (
            json!({"status": {"addresses": [{"type": "PublicIP", "address": "1.2.3.4"}]}}),
            "status.addresses",
        ),
        (
            json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "Ready", "message": "",
                                              "lastTransitionTime": "2026-11-23T10:00:00Z"}]}}),
            "status.conditions",
        ),
        (
            json!({"status": {"deprecated": {"v1beta1": {"conditions": [{"type": "Ready", "status": "False", "severity": "Fatal", "lastTransitionTime": "2026-11-23T10:00:00Z"}]}}}}),
            "status.deprecated.v1beta1.conditions",
        ),
    ];
    for (patch, field) in cases {
        let err = api
            .patch_status("m", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect_err(&format!("{patch} must be refused"))
            .to_string();
        assert!(
            err.contains(field) && err.contains("Unsupported value"),
            "{patch}: {err}"
        );
    }
}

#[tokio::test]
async fn unknown_fields_are_pruned() {
    let (client, ns) = setup().await;
    let created = create::<KindMachine>(
        &client,
        &ns,
        object(
            "KindMachine",
            "m",
            json!({
                "customImage": "x", "bootstrapped": true, "nested": {"a": 1}
            }),
        ),
    )
    .await
    .expect("create");
    assert_eq!(created["spec"]["customImage"], "x");
    assert!(
        created["spec"].get("bootstrapped").is_none(),
        "unknown field kept: {created}"
    );
    assert!(
        created["spec"].get("nested").is_none(),
        "unknown field kept: {created}"
    );
}
