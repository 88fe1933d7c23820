//! What clusterctl and users install: the rendered components, the cluster templates, and the
//! least-privilege RBAC, against the real API server (and, for RBAC, a real lifecycle).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta2::{KindCluster, KindMachine, KindMachineTemplate};
use capkind_test::clusterctl;
use capkind_test::docker::{Janitor, engine};
use capkind_test::fixtures::{
    bootstrap_secret, cluster_with_kindcluster, kind_spec, machine_spec, machine_with_kindmachine,
    mark_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::topology::{Holder, Patched};
use capkind_test::{ApiServer, names, shared, wait};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
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

/// The variables the components leave for clusterctl (each with a default), and nothing else.
const COMPONENT_VARIABLES: [&str; 8] = [
    "CAPKIND_DOCKER_HOST",
    "CAPKIND_DOCKER_NETWORK",
    "CAPKIND_IMAGE_REPOSITORY",
    "CAPKIND_IMAGE_TAG",
    "CAPKIND_LOG_FORMAT",
    "CAPKIND_MACHINE_CONCURRENCY",
    "CAPKIND_NODE_PRIVILEGES",
    "CAPKIND_NODE_START_CONCURRENCY",
];

/// The names of the `${...}` variables in `text`.
fn variables(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .split("${")
        .skip(1)
        .map(|rest| {
            let expr = &rest[..rest.find('}').expect("a closed ${")];
            expr.split([':', '=', '-'])
                .next()
                .unwrap_or(expr)
                .trim()
                .to_string()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The kinds clusterctl installs outside the target namespace.
const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// The components as clusterctl installs them with every default.
fn components() -> Vec<serde_json::Value> {
    docs(&clusterctl::render(&kustomize(), &HashMap::new()).expect("defaults cover every variable"))
}

/// The one object of `kind` in `objects`.
fn the<'a>(objects: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} expected: {found:?}");
    found[0]
}

fn crds(objects: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .collect()
}

#[test]
fn components_follow_clusterctls_rules() {
    let raw = kustomize();
    assert_eq!(
        variables(&raw),
        COMPONENT_VARIABLES,
        "variables for clusterctl"
    );
    for var in [
        "${CAPKIND_DOCKER_NETWORK:=kind}",
        "${CAPKIND_IMAGE_REPOSITORY:=localhost/capkind-manager}",
    ] {
        assert!(
            raw.contains(var),
            "variable {var} is not left for clusterctl"
        );
    }
    // kubebuilder's placeholders, which config/default's replacements must all have filled.
    for placeholder in [
        "SERVICE_NAME",
        "SERVICE_NAMESPACE",
        "CERTIFICATE_NAME",
        "CERTIFICATE_NAMESPACE",
    ] {
        assert!(!raw.contains(placeholder), "{placeholder} is left in");
    }
    let objects = components();
    assert_eq!(
        the(&objects, "Namespace")["metadata"]["name"],
        "capkind-system"
    );
    for o in &objects {
        let (kind, name) = (&o["kind"], &o["metadata"]["name"]);
        assert_eq!(
            o["metadata"]["labels"]["cluster.x-k8s.io/provider"], "infrastructure-kind",
            "{kind} {name} lacks the provider label"
        );
        let cluster_scoped = CLUSTER_SCOPED.contains(&kind.as_str().unwrap_or_default());
        assert_eq!(
            o["metadata"]["namespace"].as_str(),
            (!cluster_scoped).then_some("capkind-system"),
            "{kind} {name} is outside the provider's namespace"
        );
    }
    let container = &the(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "manager");
    assert_eq!(
        container["image"],
        format!("localhost/capkind-manager:v{}", env!("CARGO_PKG_VERSION")),
        "the default image is the workspace version's"
    );
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/var/run/docker.sock"), "{mounts}");
    for crd in crds(&objects) {
        for (label, version) in capkind_api::CONTRACT_LABELS {
            assert_eq!(crd["metadata"]["labels"][label], version);
        }
    }
}

#[tokio::test]
async fn components_pass_server_dry_run() {
    let rendered =
        clusterctl::render(&kustomize(), &HashMap::new()).expect("defaults cover every variable");
    // The namespace must exist for a dry run of what goes into it, and cert-manager's kinds
    // (stand-ins: no cert-manager runs here) for the Issuer and the Certificate.
    let server = shared();
    capkind_test::certmanager::install(&server.client().await)
        .await
        .expect("cert-manager's CRDs");
    let namespace = the(&docs(&rendered), "Namespace").clone();
    let (ok, out) = kubectl_stdin(
        server,
        &["apply", "-f", "-"],
        &serde_yaml::to_string(&namespace).expect("yaml"),
    );
    assert!(ok, "{out}");
    // The conversion webhooks' Service need not exist (nor answer) for the CRDs to be accepted.
    let (ok, out) = kubectl_stdin(server, &["apply", "--dry-run=server", "-f", "-"], &rendered);
    assert!(ok, "server dry-run refused the components:\n{out}");
    for kind in [
        "customresourcedefinition.apiextensions.k8s.io/kindclusters.infrastructure.cluster.x-k8s.io",
        "deployment.apps/capkind-controller-manager",
        "clusterrole.rbac.authorization.k8s.io/capkind-manager-role",
        "service/capkind-webhook-service",
        "issuer.cert-manager.io/capkind-selfsigned-issuer",
        "certificate.cert-manager.io/capkind-serving-cert",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/capkind-mutating-webhook-configuration",
        "validatingwebhookconfiguration.admissionregistration.k8s.io/capkind-validating-webhook-configuration",
    ] {
        assert!(out.contains(kind), "{kind} not applied: {out}");
    }
}

/// The webhook Service, as the API server is told to call it at `path`.
fn service_ref(objects: &[serde_json::Value], path: &str) -> serde_json::Value {
    let service = &the(objects, "Service")["metadata"];
    serde_json::json!({"service": {
        "name": service["name"], "namespace": service["namespace"], "path": path
    }})
}

/// cert-manager's CA injection annotation for the serving Certificate: `<namespace>/<name>`.
fn inject_ca_from(objects: &[serde_json::Value]) -> String {
    let certificate = &the(objects, "Certificate")["metadata"];
    format!(
        "{}/{}",
        certificate["namespace"].as_str().expect("namespace"),
        certificate["name"].as_str().expect("name")
    )
}

#[test]
fn the_webhook_service_reaches_the_managers_webhook_server() {
    let objects = components();
    let service = the(&objects, "Service");
    assert_eq!(service["metadata"]["name"], "capkind-webhook-service");
    assert_eq!(
        service["spec"]["ports"],
        serde_json::json!([{"port": 443, "protocol": "TCP", "targetPort": "webhook-server"}])
    );
    let pod = &the(&objects, "Deployment")["spec"]["template"];
    for (key, value) in service["spec"]["selector"].as_object().expect("selector") {
        assert_eq!(&pod["metadata"]["labels"][key], value, "selector {key}");
    }
    let container = &pod["spec"]["containers"][0];
    let webhook_port =
        serde_json::json!({"containerPort": 9443, "name": "webhook-server", "protocol": "TCP"});
    assert!(
        container["ports"]
            .as_array()
            .expect("ports")
            .contains(&webhook_port),
        "{}",
        container["ports"]
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
}

#[test]
fn the_serving_certificate_names_the_service_and_is_mounted_where_the_manager_reads_it() {
    let objects = components();
    let service = &the(&objects, "Service")["metadata"];
    let (name, ns) = (service["name"].as_str(), service["namespace"].as_str());
    let (name, ns) = (name.expect("name"), ns.expect("namespace"));
    let certificate = the(&objects, "Certificate");
    assert_eq!(certificate["metadata"]["name"], "capkind-serving-cert");
    assert_eq!(
        certificate["spec"]["dnsNames"],
        serde_json::json!([
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local")
        ])
    );
    let issuer = the(&objects, "Issuer");
    assert_eq!(
        certificate["spec"]["issuerRef"],
        serde_json::json!({"kind": "Issuer", "name": issuer["metadata"]["name"]})
    );
    assert_eq!(issuer["spec"], serde_json::json!({"selfSigned": {}}));

    // The Secret cert-manager writes, read-only where --webhook-cert-dir looks by default.
    let secret = &certificate["spec"]["secretName"];
    assert_eq!(secret, "capkind-webhook-service-cert");
    let pod = &the(&objects, "Deployment")["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| &v["secret"]["secretName"] == secret)
        .expect("a volume of the certificate's Secret");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the certificate's volume mounted");
    assert_eq!(mount["mountPath"], "/tmp/k8s-webhook-server/serving-certs");
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn the_manager_reads_registry_credentials_from_an_optional_secret() {
    let objects = components();
    let pod = &the(&objects, "Deployment")["spec"]["template"]["spec"];
    let args = pod["containers"][0]["args"].to_string();
    assert!(
        args.contains("--docker-config=/etc/capkind/docker/config.json"),
        "{args}"
    );
    let volume = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["secret"]["secretName"] == "capkind-docker-config")
        .expect("a volume of the docker-registry Secret");
    assert_eq!(
        volume["secret"]["optional"], true,
        "without it the manager still starts"
    );
    assert_eq!(volume["secret"]["items"][0]["key"], ".dockerconfigjson");
    assert_eq!(volume["secret"]["items"][0]["path"], "config.json");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("mounted");
    assert_eq!(mount["mountPath"], "/etc/capkind/docker");
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn every_crd_converts_through_the_webhook_with_cert_managers_ca() {
    let objects = components();
    let crds = crds(&objects);
    assert_eq!(crds.len(), capkind_api::crds::all().len());
    for crd in crds {
        let name = &crd["metadata"]["name"];
        assert_eq!(
            crd["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            inject_ca_from(&objects),
            "{name}"
        );
        assert_eq!(
            crd["spec"]["conversion"],
            serde_json::json!({"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"], "clientConfig": service_ref(&objects, "/convert")
            }}),
            "{name}"
        );
    }
}

#[test]
fn admission_webhooks_default_and_validate_every_kind_on_v1beta2() {
    let objects = components();
    for (kind, verb, name) in [
        (
            "MutatingWebhookConfiguration",
            "mutate",
            "capkind-mutating-webhook-configuration",
        ),
        (
            "ValidatingWebhookConfiguration",
            "validate",
            "capkind-validating-webhook-configuration",
        ),
    ] {
        let configuration = the(&objects, kind);
        assert_eq!(configuration["metadata"]["name"], name);
        assert_eq!(
            configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            inject_ca_from(&objects),
            "{kind}"
        );
        let webhooks = configuration["webhooks"].as_array().expect("webhooks");
        let crds = crds(&objects);
        assert_eq!(webhooks.len(), crds.len(), "{kind}: one webhook per kind");
        for names in crds.iter().map(|crd| &crd["spec"]["names"]) {
            // Only v1beta2: with matchPolicy Equivalent the API server converts v1beta1 first.
            let group = capkind_api::GROUP;
            let singular = names["singular"].as_str().expect("singular");
            let path = format!("/{verb}-{}-v1beta2-{singular}", group.replace('.', "-"));
            let webhook = webhooks
                .iter()
                .find(|w| w["clientConfig"]["service"]["path"] == path.as_str())
                .unwrap_or_else(|| panic!("{kind}: no webhook for {path}"));
            let expected = serde_json::json!({
                "admissionReviewVersions": ["v1"],
                "clientConfig": service_ref(&objects, &path),
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "name": webhook["name"],
                "rules": [{
                    "apiGroups": [group], "apiVersions": ["v1beta2"],
                    "operations": ["CREATE", "UPDATE"], "resources": [names["plural"]],
                }],
                "sideEffects": "None",
            });
            assert_eq!(webhook, &expected, "{kind} {path}");
        }
    }
}

/// metadata.yaml's release series (major, minor, contract), checked as clusterctl (v1.11 and
/// later) decodes it: strictly, with no field it does not know.
fn release_series() -> Vec<(u64, u64, String)> {
    let text = std::fs::read_to_string(format!("{ROOT}/metadata.yaml")).expect("metadata.yaml");
    let metadata: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = v.as_object().expect("a map").keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&metadata), ["apiVersion", "kind", "releaseSeries"]);
    assert_eq!(
        metadata["apiVersion"],
        "clusterctl.cluster.x-k8s.io/v1alpha3"
    );
    assert_eq!(metadata["kind"], "Metadata");
    metadata["releaseSeries"]
        .as_array()
        .expect("releaseSeries")
        .iter()
        .map(|s| {
            assert_eq!(keys(s), ["contract", "major", "minor"], "{s}");
            (
                s["major"].as_u64().expect("major"),
                s["minor"].as_u64().expect("minor"),
                s["contract"].as_str().expect("contract").to_string(),
            )
        })
        .collect()
}

#[test]
fn metadata_yaml_has_a_series_per_contract_and_one_for_the_workspace_version() {
    let series = release_series();
    assert_eq!(
        series,
        [(0, 1, "v1beta1".to_string()), (0, 2, "v1beta2".to_string())],
        "v1beta1 kept for 0.1, v1beta2 from 0.2 on"
    );
    // The workspace version is the default image tag and release (hack/release.sh).
    let version: Vec<u64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().expect("a number"))
        .collect();
    assert!(
        series
            .iter()
            .any(|(major, minor, _)| [*major, *minor] == version[..2]),
        "no release series for the workspace version {version:?}"
    );
}

#[test]
fn crd_contract_labels_match_metadata_yaml_and_name_served_versions() {
    let mut contracts: Vec<String> = release_series().into_iter().map(|(_, _, c)| c).collect();
    contracts.sort();
    contracts.dedup();
    for crd in crds(&components()) {
        let name = &crd["metadata"]["name"];
        let labels = crd["metadata"]["labels"].as_object().expect("labels");
        // Contract labels are `cluster.x-k8s.io/<contract>`; the provider label is not one.
        let mut labelled: Vec<&str> = labels
            .keys()
            .filter_map(|k| k.strip_prefix("cluster.x-k8s.io/"))
            .filter(|k| k.starts_with('v'))
            .collect();
        labelled.sort();
        assert_eq!(labelled, contracts, "{name}: contract labels");
        let served: Vec<&str> = crd["spec"]["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter(|v| v["served"] == true)
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        for contract in &contracts {
            let value = labels[&format!("cluster.x-k8s.io/{contract}")].as_str();
            for version in value.expect("a string").split('_') {
                assert!(
                    served.contains(&version),
                    "{name}: {contract} -> {version} is not served"
                );
            }
        }
    }
}

/// Runs hack/release.sh with `args` (version and output directory); its stderr when it fails.
fn release(args: &[&str]) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(format!("{ROOT}/hack/release.sh"))
        .args(args)
        .output()
        .expect("release script");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn release_lays_out_a_clusterctl_repository_whose_components_default_to_its_image() {
    let out = tempfile::tempdir().expect("tempdir");
    let repo = out.path().display().to_string();
    release(&["v0.2.0", &repo]).expect("release v0.2.0");
    let dir = out.path().join("infrastructure-kind/v0.2.0");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("release directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "cluster-template-development-mp.yaml",
            "cluster-template-development.yaml",
            "cluster-template-machinepool.yaml",
            "cluster-template-topology.yaml",
            "cluster-template.yaml",
            "clusterclass-quick-start.yaml",
            "infrastructure-components.yaml",
            "metadata.yaml"
        ]
    );
    let read = |path: std::path::PathBuf| std::fs::read_to_string(path).expect("read");
    assert_eq!(
        read(dir.join("metadata.yaml")),
        read(format!("{ROOT}/metadata.yaml").into())
    );
    // The release's own image by default; nothing else differs from config/default.
    let tag = |version: &str| format!("${{CAPKIND_IMAGE_TAG:={version}}}");
    let default = format!("v{}", env!("CARGO_PKG_VERSION"));
    let components = read(dir.join("infrastructure-components.yaml"));
    assert!(components.contains(&tag("v0.2.0")));
    assert_eq!(
        components,
        kustomize().replace(&tag(&default), &tag("v0.2.0"))
    );

    // Without a version: the workspace's.
    release(&["", &repo]).expect("release of the workspace version");
    assert!(
        out.path()
            .join("infrastructure-kind")
            .join(default)
            .is_dir()
    );
}

#[test]
fn release_refuses_versions_clusterctl_would_refuse() {
    let out = tempfile::tempdir().expect("tempdir");
    let repo = out.path().display().to_string();
    for (version, error) in [
        ("v0.9.0", "no release series 0.9"),
        ("0.2.0", "not a semantic version"),
    ] {
        let stderr = release(&[version, &repo]).expect_err(version);
        assert!(stderr.contains(error), "{version}: {stderr}");
    }
    assert!(!out.path().join("infrastructure-kind").exists());
}

/// The variables of a cluster on kindest/node images: only the required ones.
fn template_vars(namespace: &str) -> HashMap<&str, &str> {
    HashMap::from([
        ("CLUSTER_NAME", "demo"),
        ("NAMESPACE", namespace),
        ("KUBERNETES_VERSION", "v1.31.0"),
        ("CONTROL_PLANE_MACHINE_COUNT", "1"),
        ("WORKER_MACHINE_COUNT", "2"),
    ])
}

/// A local node image (hack/build-node-image.sh); the tag is any hash.
const LOCAL_IMAGE: &str = "capkind.local/node:v1.20.2-0123456789";

/// The variables of a cluster on the local, offline node image: its image, its version, and
/// the preflight check that cannot pass without CoreDNS's image.
fn local_image_vars(namespace: &str) -> HashMap<&str, &str> {
    let mut vars = template_vars(namespace);
    vars.insert("KUBERNETES_VERSION", "v1.20.2");
    vars.insert("KIND_NODE_IMAGE", LOCAL_IMAGE);
    vars.insert("KUBEADM_IGNORE_PREFLIGHT_ERRORS", "ImagePull");
    vars
}

fn template_text(file: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/templates/{file}")).expect("read template")
}

fn rendered(file: &str, vars: &HashMap<&str, &str>) -> Vec<serde_json::Value> {
    docs(&clusterctl::render(&template_text(file), vars).unwrap_or_else(|e| panic!("{file}: {e}")))
}

fn object<'a>(objects: &'a [serde_json::Value], kind: &str, name: &str) -> &'a serde_json::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
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
            "cluster-template-development-mp.yaml",
            "cluster-template-development.yaml",
            "cluster-template-machinepool.yaml",
            "cluster-template-topology.yaml",
            "cluster-template.yaml",
            "clusterclass-quick-start.yaml"
        ]
    );
    let (mut checked, mut pools, mut pool_templates) = (0, 0, 0);
    for (set, vars, image) in [
        ("kindest/node", template_vars(&ns), None),
        ("local image", local_image_vars(&ns), Some(LOCAL_IMAGE)),
    ] {
        for file in &files {
            let text = std::fs::read_to_string(file).expect("read");
            let rendered = clusterctl::render(&text, &vars)
                .unwrap_or_else(|e| panic!("{} ({set}): {e}", file.display()));
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
                    &["create", "--dry-run=server", "-o", "json", "-f", "-"],
                    &o.to_string(),
                );
                assert!(
                    ok,
                    "{} ({set}): {} {} refused: {out}",
                    file.display(),
                    o["kind"],
                    o["metadata"]["name"]
                );
                // What the server keeps is what Cluster API copies into each KindMachine: no
                // customImage (kindest/node for the Machine's version), or the one named.
                let stored: serde_json::Value = serde_json::Deserializer::from_str(&out)
                    .into_iter()
                    .next()
                    .expect("an object")
                    .expect("JSON");
                // A KindMachinePool keeps its instances' node fields in its spec.template.
                let node = match o["kind"].as_str() {
                    Some("KindMachineTemplate") => Some(&stored["spec"]["template"]["spec"]),
                    Some("KindMachinePool") => Some(&stored["spec"]["template"]),
                    _ => None,
                };
                let plain = ["cluster-template.yaml", "cluster-template-machinepool.yaml"]
                    .iter()
                    .any(|f| file.ends_with(f));
                if let Some(node) = node.filter(|_| plain) {
                    assert_eq!(
                        node["customImage"].as_str(),
                        image,
                        "{} {} ({set}): {out}",
                        file.display(),
                        o["kind"]
                    );
                }
                pools += usize::from(o["kind"] == "KindMachinePool");
                pool_templates += usize::from(o["kind"] == "KindMachinePoolTemplate");
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} provider objects in the templates"
    );
    // The machinepool flavor's pool and the class's pool template, with both sets of variables.
    assert_eq!((pools, pool_templates), (2, 2));
    let text =
        std::fs::read_to_string(format!("{ROOT}/templates/cluster-template.yaml")).expect("read");
    let mut vars = template_vars(&ns);
    vars.remove("KUBERNETES_VERSION");
    assert_eq!(
        clusterctl::render(&text, &vars),
        Err("value for variables [KUBERNETES_VERSION] is not set".into())
    );
}

/// Every `nodeRegistration` of the kubeadm objects in `objects`, named by where it is.
fn node_registrations(objects: &[serde_json::Value]) -> Vec<(String, serde_json::Value)> {
    let mut out = vec![];
    for o in objects {
        let spec = match o["kind"].as_str() {
            Some("KubeadmControlPlane") => &o["spec"]["kubeadmConfigSpec"],
            Some("KubeadmControlPlaneTemplate") => {
                &o["spec"]["template"]["spec"]["kubeadmConfigSpec"]
            }
            Some("KubeadmConfigTemplate") => &o["spec"]["template"]["spec"],
            Some("KubeadmConfig") => &o["spec"],
            _ => continue,
        };
        for phase in ["initConfiguration", "joinConfiguration"] {
            if !spec[phase].is_null() {
                out.push((
                    format!("{} {} {phase}", o["kind"], o["metadata"]["name"]),
                    spec[phase]["nodeRegistration"].clone(),
                ));
            }
        }
    }
    out
}

/// All object keys anywhere in `v`.
fn keys(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                keys(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
        _ => {}
    }
}

#[test]
fn templates_leave_the_container_fixups_to_the_provider() {
    use capkind::bootstrap::kubeadm::{IGNORED_PREFLIGHT_ERRORS, KUBELET_ARGS};
    for file in [
        "cluster-template.yaml",
        "cluster-template-machinepool.yaml",
        "cluster-template-topology.yaml",
        "cluster-template-development.yaml",
        "cluster-template-development-mp.yaml",
        "clusterclass-quick-start.yaml",
    ] {
        let text = template_text(file);
        assert!(
            !text.contains("KubeProxyConfiguration"),
            "{file}: kube-proxy's conntrack setting is the provider's"
        );
        for vars in [template_vars("ns"), local_image_vars("ns")] {
            let objects = rendered(file, &vars);
            let mut all = vec![];
            objects.iter().for_each(|o| keys(o, &mut all));
            // Set here, they would silently win over the provider's defaults when those change.
            for key in ["criSocket", "kubeletExtraArgs"]
                .into_iter()
                .chain(KUBELET_ARGS.iter().map(|(k, _)| *k))
            {
                assert!(!all.iter().any(|k| k == key), "{file} sets {key}");
            }
            for (at, registration) in node_registrations(&objects) {
                for ignored in registration["ignorePreflightErrors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let ignored = ignored.as_str().expect("a string");
                    assert!(
                        !IGNORED_PREFLIGHT_ERRORS.split(',').any(|p| p == ignored),
                        "{file} {at}: {ignored} is always ignored by the provider"
                    );
                }
            }
        }
    }
}

#[test]
fn cluster_template_takes_the_node_image_and_preflight_variables() {
    // Each flavor's machines: kind, name, and where their node fields are.
    let machines = [
        (
            "cluster-template.yaml",
            [
                (
                    "KindMachineTemplate",
                    "demo-control-plane",
                    "/spec/template/spec",
                ),
                ("KindMachineTemplate", "demo-md-0", "/spec/template/spec"),
            ],
        ),
        (
            "cluster-template-machinepool.yaml",
            [
                (
                    "KindMachineTemplate",
                    "demo-control-plane",
                    "/spec/template/spec",
                ),
                ("KindMachinePool", "demo-mp-0", "/spec/template"),
            ],
        ),
    ];
    let check = |vars: &HashMap<&str, &str>, image: Option<&str>, ignored: &[&str]| {
        for (flavor, machines) in &machines {
            let objects = rendered(flavor, vars);
            for (kind, name, fields) in machines {
                let spec = object(&objects, kind, name)
                    .pointer(fields)
                    .unwrap_or_else(|| panic!("{flavor} {kind} {name}: no {fields}"));
                // Unset, the key is there with no value: the provider picks
                // kindest/node:<version>.
                assert!(spec.as_object().expect("spec").contains_key("customImage"));
                assert_eq!(spec["customImage"].as_str(), image, "{flavor} {name}");
            }
            let registrations = node_registrations(&objects);
            assert_eq!(
                registrations.len(),
                3,
                "{flavor}: control-plane init and join, worker join: {registrations:?}"
            );
            for (at, registration) in registrations {
                assert_eq!(
                    registration["ignorePreflightErrors"],
                    serde_json::json!(ignored),
                    "{flavor} {at}"
                );
            }
        }
    };
    check(&template_vars("ns"), None, &[]);
    check(&local_image_vars("ns"), Some(LOCAL_IMAGE), &["ImagePull"]);
    let mut vars = template_vars("ns");
    vars.insert("KUBEADM_IGNORE_PREFLIGHT_ERRORS", "ImagePull,NumCPU");
    check(&vars, None, &["ImagePull", "NumCPU"]);
}

/// The quick-start ClusterClass and its templates.
fn class_objects() -> Vec<serde_json::Value> {
    rendered("clusterclass-quick-start.yaml", &HashMap::new())
}

/// What Cluster API makes of the Cluster in `flavor` rendered with `vars`: its variables
/// validated and defaulted by the API server against the class's schemas, the class's templates
/// patched with them, once for each place the class uses them. `edit` changes the Cluster's
/// variables first, as a user would.
async fn topology_of(
    flavor: &str,
    vars: &HashMap<&str, &str>,
    edit: impl FnOnce(&mut serde_json::Value),
) -> Result<Vec<Patched>, String> {
    let server = shared();
    let client = server.client().await;
    let class_objects = class_objects();
    let class = object(&class_objects, "ClusterClass", "quick-start");
    let cluster_objects = rendered(flavor, vars);
    let mut cluster = object(&cluster_objects, "Cluster", "demo").clone();
    let topology = &mut cluster["spec"]["topology"];
    assert_eq!(topology["class"], "quick-start", "{flavor}");
    edit(topology);
    capkind_test::topology::check_workers(class, topology)?;
    let ns = vars["NAMESPACE"];
    let variables =
        capkind_test::topology::defaulted_variables(&client, ns, class, topology).await?;
    let version = topology["version"].as_str().expect("version");
    let builtin = capkind_test::topology::builtins("demo", ns, version);
    Ok(capkind_test::topology::patched_templates(
        class,
        &class_objects,
        &variables,
        &builtin,
    ))
}

/// Sets the Cluster variable `name` to `value`, added when the Cluster does not set it.
fn set_variable(topology: &mut serde_json::Value, name: &str, value: serde_json::Value) {
    let variables = topology["variables"].as_array_mut().expect("variables");
    match variables.iter_mut().find(|v| v["name"] == name) {
        Some(v) => v["value"] = value,
        None => variables.push(serde_json::json!({"name": name, "value": value})),
    }
}

/// A template of the quick-start class where the class uses it: its holder, kind and name.
type Template = (Holder, &'static str, &'static str);

fn get(templates: &[Patched], (holder, kind, name): Template) -> &serde_json::Value {
    &templates
        .iter()
        .find(|t| {
            t.holder == holder && t.object["kind"] == kind && t.object["metadata"]["name"] == name
        })
        .unwrap_or_else(|| panic!("no {kind} {name} for a {holder:?}"))
        .object
}

/// The patched objects alone.
fn objects_of(templates: &[Patched]) -> Vec<serde_json::Value> {
    templates.iter().map(|t| t.object.clone()).collect()
}

const KCP: Template = (
    Holder::ControlPlane,
    "KubeadmControlPlaneTemplate",
    "quick-start-control-plane",
);
const WORKER_BOOTSTRAP: Template = (
    Holder::MachineDeployment,
    "KubeadmConfigTemplate",
    "quick-start-default-worker-bootstraptemplate",
);
/// The same template as the pool class's bootstrap: Cluster API makes each MachinePool's
/// KubeadmConfig from it.
const POOL_BOOTSTRAP: Template = (
    Holder::MachinePool,
    "KubeadmConfigTemplate",
    "quick-start-default-worker-bootstraptemplate",
);
const CP_MACHINE: Template = (
    Holder::ControlPlane,
    "KindMachineTemplate",
    "quick-start-control-plane",
);
const WORKER_MACHINE: Template = (
    Holder::MachineDeployment,
    "KindMachineTemplate",
    "quick-start-default-worker-machinetemplate",
);
const POOL_MACHINE: Template = (
    Holder::MachinePool,
    "KindMachinePoolTemplate",
    "quick-start-default-worker-machinepooltemplate",
);
/// Where each machine template keeps the node fields (customImage, preLoadImages): a
/// KindMachinePoolTemplate's KindMachinePool spec has them under its own `template`.
fn node_fields(machine: Template) -> &'static str {
    match machine.1 {
        "KindMachineTemplate" => "/spec/template/spec",
        "KindMachinePoolTemplate" => "/spec/template/spec/template",
        other => panic!("{other} is no machine template"),
    }
}
const CLUSTER_CONFIGURATION: &str = "/spec/template/spec/kubeadmConfigSpec/clusterConfiguration";
const PSS_FILE: &str = "/etc/kubernetes/kube-apiserver-admission-pss.yaml";

/// The value at `pointer` in `template`, or null.
fn at(templates: &[Patched], template: Template, pointer: &str) -> serde_json::Value {
    get(templates, template)
        .pointer(pointer)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn clusterclass_takes_the_node_image_and_preflight_variables_from_the_topology() {
    for flavor in [
        "cluster-template-topology.yaml",
        "cluster-template-development.yaml",
        "cluster-template-development-mp.yaml",
    ] {
        for (vars, image, ignored) in [
            (template_vars("default"), None, vec![]),
            (
                local_image_vars("default"),
                Some(LOCAL_IMAGE),
                vec!["ImagePull"],
            ),
        ] {
            let templates = topology_of(flavor, &vars, |_| {})
                .await
                .unwrap_or_else(|e| panic!("{flavor}: {e}"));
            for machine in [CP_MACHINE, WORKER_MACHINE, POOL_MACHINE] {
                let pointer = format!("{}/customImage", node_fields(machine));
                assert_eq!(
                    at(&templates, machine, &pointer).as_str(),
                    image,
                    "{flavor} {machine:?}"
                );
            }
            // Control-plane init and join, the MachineDeployment class's join and the pool
            // class's join (its own copy of the bootstrap template).
            let registrations = node_registrations(&objects_of(&templates));
            assert_eq!(registrations.len(), 4, "{registrations:?}");
            assert_eq!(
                at(
                    &templates,
                    POOL_BOOTSTRAP,
                    "/spec/template/spec/joinConfiguration/nodeRegistration"
                ),
                at(
                    &templates,
                    WORKER_BOOTSTRAP,
                    "/spec/template/spec/joinConfiguration/nodeRegistration"
                ),
                "{flavor}"
            );
            for (place, registration) in registrations {
                let expected = if ignored.is_empty() {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(ignored)
                };
                assert_eq!(
                    registration["ignorePreflightErrors"], expected,
                    "{flavor} {place}"
                );
            }
        }
    }
}

#[tokio::test]
async fn clusterclass_variables_land_where_capds_quick_start_puts_them() {
    let vars = template_vars("default");
    let flavor = "cluster-template-development.yaml";
    let kubelet_args = serde_json::json!({"v": "4", "node-labels": "tier=demo"});
    let images = serde_json::json!(["registry.example/a:1", "registry.example/b:2"]);
    let templates = topology_of(flavor, &vars, |t| {
        set_variable(t, "imageRepository", "registry.example/k8s".into());
        set_variable(t, "etcdImageTag", "3.5.15-0".into());
        set_variable(t, "coreDNSImageTag", "v1.11.3".into());
        set_variable(t, "kubeControlPlaneLogLevel", "5".into());
        set_variable(t, "kubeletExtraArgs", kubelet_args.clone());
        set_variable(t, "preLoadImages", images.clone());
        set_variable(t, "customImage", "registry.example/node:v1.31.0".into());
    })
    .await
    .expect("variables");
    let cc = |path: &str| at(&templates, KCP, &format!("{CLUSTER_CONFIGURATION}{path}"));
    assert_eq!(cc("/imageRepository"), "registry.example/k8s");
    assert_eq!(
        cc("/etcd"),
        serde_json::json!({"local": {"imageTag": "3.5.15-0"}})
    );
    assert_eq!(cc("/dns"), serde_json::json!({"imageTag": "v1.11.3"}));
    for component in ["apiServer", "controllerManager", "scheduler"] {
        assert_eq!(cc(&format!("/{component}/extraArgs/v")), "5", "{component}");
    }
    for (template, phases) in [
        (KCP, &["initConfiguration", "joinConfiguration"][..]),
        (WORKER_BOOTSTRAP, &["joinConfiguration"][..]),
        (POOL_BOOTSTRAP, &["joinConfiguration"][..]),
    ] {
        let spec = if template == KCP {
            "/spec/template/spec/kubeadmConfigSpec"
        } else {
            "/spec/template/spec"
        };
        for phase in phases {
            let pointer = format!("{spec}/{phase}/nodeRegistration/kubeletExtraArgs");
            assert_eq!(
                at(&templates, template, &pointer),
                kubelet_args,
                "{template:?} {phase}"
            );
        }
    }
    for machine in [CP_MACHINE, WORKER_MACHINE, POOL_MACHINE] {
        let fields = node_fields(machine);
        assert_eq!(
            at(&templates, machine, &format!("{fields}/preLoadImages")),
            images,
            "{machine:?}"
        );
        assert_eq!(
            at(&templates, machine, &format!("{fields}/customImage")),
            "registry.example/node:v1.31.0",
            "{machine:?}"
        );
    }
    // The pool template's other fields stay as they were: only the node fields were added.
    assert_eq!(
        at(&templates, POOL_MACHINE, "/spec/template/spec"),
        serde_json::json!({"template": {"customImage": "registry.example/node:v1.31.0",
                                        "preLoadImages": images}})
    );

    // Unset (the development flavor's own values): kubeadm's and the provider's defaults.
    let templates = topology_of(flavor, &vars, |_| {}).await.expect("variables");
    let cc = |path: &str| at(&templates, KCP, &format!("{CLUSTER_CONFIGURATION}{path}"));
    for path in ["/imageRepository", "/etcd", "/dns"] {
        assert_eq!(cc(path), serde_json::Value::Null, "{path}");
    }
    for component in ["apiServer", "controllerManager", "scheduler"] {
        assert_eq!(cc(&format!("/{component}/extraArgs/v")), "0", "{component}");
    }
    let mut all = vec![];
    templates.iter().for_each(|t| keys(&t.object, &mut all));
    for key in ["kubeletExtraArgs", "preLoadImages", "customImage"] {
        assert!(!all.iter().any(|k| k == key), "{key} set by default");
    }
}

/// The PodSecurity admission configuration the API server of `templates` reads, checked to be
/// the file the flag names, mounted read-only into the API server's Pod; None when there is
/// none.
fn admission_configuration(templates: &[Patched]) -> Option<serde_json::Value> {
    let cc = |path: &str| at(templates, KCP, &format!("{CLUSTER_CONFIGURATION}{path}"));
    let flag = cc("/apiServer/extraArgs/admission-control-config-file");
    let files = at(
        templates,
        KCP,
        "/spec/template/spec/kubeadmConfigSpec/files",
    );
    if flag.is_null() {
        assert_eq!(files, serde_json::Value::Null);
        assert_eq!(cc("/apiServer/extraVolumes"), serde_json::Value::Null);
        return None;
    }
    assert_eq!(flag, PSS_FILE);
    assert_eq!(
        cc("/apiServer/extraVolumes"),
        serde_json::json!([{"name": "admission-pss", "hostPath": PSS_FILE, "mountPath": PSS_FILE,
                            "readOnly": true, "pathType": "File"}])
    );
    let files = files.as_array().expect("files");
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0]["path"], PSS_FILE);
    let content = files[0]["content"].as_str().expect("content");
    Some(serde_yaml::from_str(content).expect("the admission configuration is YAML"))
}

#[tokio::test]
async fn clusterclass_pod_security_standard_configures_the_api_servers_admission() {
    let flavor = "cluster-template-development.yaml";
    let mut vars = template_vars("default");
    // The development flavor's default: on, baseline enforced, restricted audited and warned.
    let templates = topology_of(flavor, &vars, |_| {}).await.expect("variables");
    let config = admission_configuration(&templates).expect("PodSecurity configured");
    assert_eq!(config["kind"], "AdmissionConfiguration");
    assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
    let plugin = &config["plugins"][0];
    assert_eq!(plugin["name"], "PodSecurity");
    let pss = &plugin["configuration"];
    assert_eq!(pss["apiVersion"], "pod-security.admission.config.k8s.io/v1");
    assert_eq!(pss["kind"], "PodSecurityConfiguration");
    assert_eq!(
        pss["defaults"],
        serde_json::json!({"enforce": "baseline", "enforce-version": "latest",
                           "audit": "restricted", "audit-version": "latest",
                           "warn": "restricted", "warn-version": "latest"})
    );
    assert_eq!(
        pss["exemptions"]["namespaces"],
        serde_json::json!(["kube-system"])
    );

    // Levels of one's own; fields left out take the schema's defaults, as in Cluster API.
    let templates = topology_of(flavor, &vars, |t| {
        set_variable(
            t,
            "podSecurityStandard",
            serde_json::json!({"enforce": "restricted"}),
        );
    })
    .await
    .expect("variables");
    let pss = &admission_configuration(&templates).expect("on")["plugins"][0]["configuration"];
    assert_eq!(pss["defaults"]["enforce"], "restricted");
    assert_eq!(pss["defaults"]["audit"], "restricted");
    assert_eq!(pss["defaults"]["warn"], "restricted");

    // Off by the flavor's variable; off without the variable (the topology flavor).
    vars.insert("POD_SECURITY_STANDARD_ENABLED", "false");
    let templates = topology_of(flavor, &vars, |_| {}).await.expect("variables");
    assert_eq!(admission_configuration(&templates), None);
    let templates = topology_of(
        "cluster-template-topology.yaml",
        &template_vars("default"),
        |_| {},
    )
    .await
    .expect("variables");
    assert_eq!(admission_configuration(&templates), None);

    // The configuration's version follows the Kubernetes version; none before v1.23, whose
    // API servers have no PodSecurity admission.
    for (version, api_version) in [
        (
            "v1.24.17",
            Some("pod-security.admission.config.k8s.io/v1beta1"),
        ),
        ("v1.25.0", Some("pod-security.admission.config.k8s.io/v1")),
        (
            "v1.23.0",
            Some("pod-security.admission.config.k8s.io/v1beta1"),
        ),
        ("v1.22.9", None),
        ("v1.20.2", None),
    ] {
        let mut vars = template_vars("default");
        vars.insert("KUBERNETES_VERSION", version);
        let templates = topology_of(flavor, &vars, |_| {}).await.expect("variables");
        let config = admission_configuration(&templates);
        let got = config
            .as_ref()
            .map(|c| &c["plugins"][0]["configuration"]["apiVersion"]);
        assert_eq!(got.and_then(|v| v.as_str()), api_version, "{version}");
    }

    // What Cluster API refuses, the API server refuses here too.
    for (name, value, error) in [
        (
            "podSecurityStandard",
            serde_json::json!({"enforce": "strict"}),
            "Unsupported value",
        ),
        (
            "podSecurityStandard",
            serde_json::json!({"enabled": "yes"}),
            "must be of type boolean",
        ),
        (
            "kubeletExtraArgs",
            serde_json::json!({"v": 4}),
            "must be of type string",
        ),
        (
            "preLoadImages",
            serde_json::json!("one"),
            "must be of type array",
        ),
        (
            "noSuchVariable",
            serde_json::json!(""),
            "has no variable noSuchVariable",
        ),
    ] {
        let result = topology_of(flavor, &template_vars("default"), |t| {
            set_variable(t, name, value.clone());
        })
        .await;
        let error_text = result.expect_err(name);
        assert!(error_text.contains(error), "{name} = {value}: {error_text}");
    }
}

#[tokio::test]
async fn patched_machine_templates_pass_server_dry_run() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    let templates = topology_of(
        "cluster-template-development.yaml",
        &template_vars(&ns),
        |t| {
            set_variable(t, "customImage", "registry.example/node:v1.31.0".into());
            set_variable(
                t,
                "preLoadImages",
                serde_json::json!(["registry.example/a:1"]),
            );
        },
    )
    .await
    .expect("variables");
    for machine in [CP_MACHINE, WORKER_MACHINE, POOL_MACHINE] {
        let mut o = get(&templates, machine).clone();
        o["metadata"]["namespace"] = serde_json::json!(ns);
        let (ok, out) = kubectl_stdin(
            server,
            &["create", "--dry-run=server", "-o", "json", "-f", "-"],
            &o.to_string(),
        );
        assert!(ok, "{machine:?} refused: {out}");
        let stored: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        // Where the server keeps them is where the controllers read them.
        for (field, value) in [
            (
                "customImage",
                serde_json::json!("registry.example/node:v1.31.0"),
            ),
            ("preLoadImages", serde_json::json!(["registry.example/a:1"])),
        ] {
            let pointer = format!("{}/{field}", node_fields(machine));
            assert_eq!(
                stored.pointer(&pointer),
                Some(&value),
                "{machine:?}: the server kept {field}: {out}"
            );
        }
    }
    // The stored pool template is what the KindMachinePool controller reads.
    let pool: capkind_api::v1beta2::KindMachinePoolTemplate = {
        let mut o = get(&templates, POOL_MACHINE).clone();
        o["metadata"]["namespace"] = serde_json::json!(ns);
        serde_json::from_value(dry_run(server, &o).expect("dry run")).expect("a pool template")
    };
    let machine = pool.spec.template.spec.template.machine_spec();
    assert_eq!(
        machine.custom_image.as_deref(),
        Some("registry.example/node:v1.31.0")
    );
    assert_eq!(machine.pre_load_images, ["registry.example/a:1"]);
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
    let forbidden = Api::<Pod>::all(as_manager.clone())
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
        if kc.provisioned() {
            Ok(())
        } else {
            Err(format!("{:?}\n{}", kc.status, manager.log_tail()))
        }
    })
    .await;
    // A template's capacity for the autoscaler (status of kindmachinetemplates).
    let kmts: Api<KindMachineTemplate> = Api::namespaced(admin.clone(), &ns);
    let template: KindMachineTemplate = serde_json::from_value(serde_json::json!({
        "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachineTemplate",
        "metadata": {"name": format!("{cluster}-md")},
        "spec": {"template": {"spec": machine_spec()}},
    }))
    .expect("template");
    kmts.create(&PostParams::default(), &template)
        .await
        .expect("create template");
    wait::until("template capacity", Duration::from_secs(60), || async {
        let t = kmts
            .get(&format!("{cluster}-md"))
            .await
            .map_err(|e| e.to_string())?;
        match t.status {
            Some(s) if !s.capacity.is_empty() => Ok(()),
            other => Err(format!("{other:?}\n{}", manager.log_tail())),
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
        if km.provisioned() {
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
    assert_pool_rights(&as_manager).await;
    // Once it runs its controllers, nothing is refused. (Before, API discovery of a token
    // made a moment ago may be refused once and asked again; that is not the Role's doing.)
    let log = std::fs::read_to_string(&manager.log).expect("manager log");
    let running = log
        .split_once("controllers started")
        .map(|(_, after)| after)
        .expect("the controllers started");
    assert!(
        !running.contains("forbidden"),
        "the manager was refused something:\n{running}"
    );
}

/// What the KindMachinePool controller calls, as the API server answers the manager's token:
/// the lifecycle above does not run a pool yet, so the rights are asked for one by one.
async fn assert_pool_rights(as_manager: &kube::Client) {
    let infra = capkind_api::GROUP;
    let rights = [
        (
            infra,
            "kindmachinepools",
            "",
            &["get", "list", "watch", "patch"][..],
        ),
        (infra, "kindmachinepools", "status", &["patch"][..]),
        (infra, "kindmachinepools", "finalizers", &["update"][..]),
        (
            infra,
            "kindmachines",
            "",
            &["create", "delete", "list", "watch", "patch"][..],
        ),
        (
            "cluster.x-k8s.io",
            "machinepools",
            "",
            &["get", "list", "watch"][..],
        ),
        (
            "cluster.x-k8s.io",
            "machines",
            "",
            &["list", "watch", "delete"][..],
        ),
    ];
    let reviews: Api<SelfSubjectAccessReview> = Api::all(as_manager.clone());
    for (group, resource, subresource, verbs) in rights {
        for verb in verbs {
            let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
                "spec": {"resourceAttributes": {
                    "group": group, "resource": resource, "subresource": subresource, "verb": verb,
                }}
            }))
            .expect("review");
            // The API server's RBAC cache may lag the role just applied by a moment.
            let what = format!("the role lets the manager {verb} {resource}/{subresource}");
            wait::until(&what, Duration::from_secs(10), || async {
                let answer = reviews
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(|e| e.to_string())?;
                match answer.status {
                    Some(s) if s.allowed => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
    }
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
        let (health, metrics, webhook) = (
            capkind_test::http::free_port(),
            capkind_test::http::free_port(),
            capkind_test::http::free_port(),
        );
        // Serving certificates where cert-manager's Secret is mounted in a cluster, so the
        // image starts with its default webhook settings but the port.
        let certs = capkind_test::webhooks::Certs::new(&server.dir().join(format!("{name}-certs")));
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
            .args([
                "-v",
                &format!(
                    "{}:/tmp/k8s-webhook-server/serving-certs:ro",
                    certs.dir().display()
                ),
            ])
            .arg(image)
            .args(["--namespace", ns, "--node-privileges", "capabilities"])
            .arg(format!("--webhook-port={webhook}"))
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
            if kc.provisioned() {
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

/// Where Cluster API's e2e config finds the flavors its specs use (hack/e2e-templates.sh).
const E2E_DATA: &str = "test/e2e/data/infrastructure-kind/main";

/// A CNI manifest, as the e2e config's CNI variable names one (any YAML does for these checks).
const CNI_MANIFEST: &str =
    "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: kindnet\n  namespace: kube-system\n";

/// What Cluster API's e2e framework does to each template when it lays out the clusterctl
/// repository (RegisterClusterResourceSetConfigMapTransformation): the line
/// `data: ${CNI_RESOURCES}` becomes the manifest, indented, under `data.resources`.
fn inject_cni(text: &str, manifest: &str) -> String {
    let mut data = String::from("data:\n  resources: |\n");
    for line in manifest.split('\n') {
        data.push_str(&format!("    {line}\n"));
    }
    text.replace("data: ${CNI_RESOURCES}", &data)
}

fn dry_run(server: &ApiServer, o: &serde_json::Value) -> Result<serde_json::Value, String> {
    let (ok, out) = kubectl_stdin(
        server,
        &["create", "--dry-run=server", "-o", "json", "-f", "-"],
        &o.to_string(),
    );
    if ok {
        Ok(serde_json::from_str(&out).expect("JSON"))
    } else {
        Err(out)
    }
}

#[test]
fn e2e_flavors_are_committed_as_hack_e2e_templates_writes_them() {
    let out = tempfile::tempdir().expect("tempdir");
    let run = Command::new("bash")
        .arg(format!("{ROOT}/hack/e2e-templates.sh"))
        .arg(out.path())
        .output()
        .expect("e2e-templates.sh");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let listing = |dir: &std::path::Path| {
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("directory")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    };
    let committed = std::path::Path::new(ROOT).join(E2E_DATA);
    assert_eq!(
        listing(out.path()),
        [
            "cluster-template-machine-pool.yaml",
            "cluster-template-topology.yaml",
            "cluster-template.yaml",
            "clusterclass-quick-start.yaml"
        ]
    );
    assert_eq!(listing(&committed), listing(out.path()));
    for file in listing(out.path()) {
        let read = |dir: &std::path::Path| std::fs::read_to_string(dir.join(&file)).expect("read");
        assert!(
            read(&committed) == read(out.path()),
            "{E2E_DATA}/{file} is stale: run hack/e2e-templates.sh"
        );
    }
}

#[tokio::test]
async fn e2e_flavors_deliver_the_cni_through_a_cluster_resource_set() {
    let server = shared();
    let client = server.client().await;
    let ns = server.namespace(&client).await;
    capkind_test::addons::install(&client)
        .await
        .expect("ClusterResourceSet CRD");
    let vars = template_vars(&ns);
    let read = |file: &str| std::fs::read_to_string(format!("{ROOT}/{E2E_DATA}/{file}"));
    let class = read("clusterclass-quick-start.yaml").expect("read");
    assert_eq!(
        clusterctl::render(&class, &HashMap::new()).as_deref(),
        Ok(class.as_str())
    );
    // Each e2e flavor and its template: Cluster API's MachinePoolSpec asks for machine-pool.
    for (flavor, template) in [
        ("cluster-template.yaml", "cluster-template.yaml"),
        (
            "cluster-template-topology.yaml",
            "cluster-template-topology.yaml",
        ),
        (
            "cluster-template-machine-pool.yaml",
            "cluster-template-machinepool.yaml",
        ),
    ] {
        let text = read(flavor).expect("read");
        assert_eq!(
            text.matches("data: ${CNI_RESOURCES}").count(),
            1,
            "{flavor}: the framework replaces every one"
        );
        assert!(text.contains("\ndata: ${CNI_RESOURCES}\n"), "{flavor}");
        let rendered_text = clusterctl::render(&inject_cni(&text, CNI_MANIFEST), &vars)
            .unwrap_or_else(|e| panic!("{flavor}: {e}"));
        let objects = docs(&rendered_text);
        let cluster = object(&objects, "Cluster", "demo");
        let labels = &cluster["metadata"]["labels"];
        assert_eq!(
            labels,
            &serde_json::json!({"cni": "demo-crs-0"}),
            "{flavor}"
        );

        // Apart from the label and the two objects of the CNI, the flavor is the template.
        let mut own: Vec<serde_json::Value> = objects
            .iter()
            .filter(|o| {
                !["ConfigMap", "ClusterResourceSet"]
                    .contains(&o["kind"].as_str().unwrap_or_default())
            })
            .cloned()
            .collect();
        for o in &mut own {
            if o["kind"] == "Cluster" {
                o["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .remove("labels");
            }
        }
        assert_eq!(own, rendered(template, &vars), "{flavor}");

        let crs = the(&objects, "ClusterResourceSet");
        let config_map = the(&objects, "ConfigMap");
        assert_eq!(crs["spec"]["clusterSelector"]["matchLabels"], *labels);
        assert_eq!(
            crs["spec"]["resources"],
            serde_json::json!([{"name": config_map["metadata"]["name"], "kind": "ConfigMap"}])
        );
        assert_eq!(crs["spec"]["strategy"], "ApplyOnce");
        assert_eq!(
            config_map["data"],
            serde_json::json!({"resources": CNI_MANIFEST})
        );

        // The ConfigMap and the kind objects against their real schemas; the Cluster against
        // the stand-in (its metadata, the label's syntax); the ClusterResourceSet against its
        // stand-in's schema, which must keep every field; the MachinePool against its
        // stand-in. The test environment has no CRDs for the kubeadm providers' kinds nor
        // MachineDeployment: those alone are left out.
        let (checked, absent): (Vec<_>, Vec<_>) = objects.iter().partition(|o| {
            ["ConfigMap", "ClusterResourceSet", "Cluster", "MachinePool"]
                .contains(&o["kind"].as_str().unwrap_or_default())
                || o["apiVersion"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("infrastructure.cluster.x-k8s.io/"))
        });
        let mut absent: Vec<&str> = absent.iter().filter_map(|o| o["kind"].as_str()).collect();
        absent.sort();
        let expected_absent: &[&str] = match flavor {
            "cluster-template.yaml" => &[
                "KubeadmConfigTemplate",
                "KubeadmControlPlane",
                "MachineDeployment",
            ],
            "cluster-template-machine-pool.yaml" => &["KubeadmConfig", "KubeadmControlPlane"],
            _ => &[],
        };
        assert_eq!(absent, expected_absent, "{flavor}");
        for o in checked {
            let stored = dry_run(server, o).unwrap_or_else(|e| {
                panic!(
                    "{flavor}: {} {} refused: {e}",
                    o["kind"], o["metadata"]["name"]
                )
            });
            if o["kind"] == "ClusterResourceSet" {
                assert_eq!(stored["spec"], o["spec"], "{flavor}: nothing pruned");
            }
        }
        let mut wrong = crs.clone();
        wrong["spec"]["resources"][0]["kind"] = "Deployment".into();
        let refused = dry_run(server, &wrong).expect_err("a Deployment is no CRS resource");
        assert!(refused.contains("Unsupported value"), "{refused}");
    }
}

/// Runs the local kubeadm (v1.20.2) with `args` and a scratch root (`--rootfs`, a chroot: it
/// writes there, and no init system is found there, so nothing is started); its output.
fn kubeadm_in(root: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(capkind_test::kubeadm::kubernetes_binary("kubeadm"))
        .args(args)
        .arg("--rootfs")
        .arg(root)
        .output()
        .expect("kubeadm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubeadm {args:?}: {text}");
    text
}

/// A container's command line in a static Pod manifest kubeadm wrote under `root`.
fn static_pod(root: &std::path::Path, name: &str) -> serde_json::Value {
    let path = root.join(format!("etc/kubernetes/manifests/{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_yaml::from_str(&text).expect("manifest")
}

fn has_flag(pod: &serde_json::Value, flag: &str) -> bool {
    pod["spec"]["containers"][0]["command"]
        .as_array()
        .expect("command")
        .iter()
        .any(|a| a == flag)
}

#[tokio::test]
async fn kubeadm_builds_the_control_plane_the_clusterclass_variables_describe() {
    let templates = topology_of(
        "cluster-template-development.yaml",
        &template_vars("default"),
        |t| {
            set_variable(t, "imageRepository", "registry.example/k8s".into());
            set_variable(t, "etcdImageTag", "3.5.15-0".into());
            set_variable(t, "coreDNSImageTag", "v1.11.3".into());
            set_variable(t, "kubeControlPlaneLogLevel", "5".into());
            set_variable(
                t,
                "kubeletExtraArgs",
                serde_json::json!({"v": "4", "node-labels": "tier=demo"}),
            );
        },
    )
    .await
    .expect("variables");
    // The kubeadm configuration Cluster API's bootstrap provider writes from the control
    // plane's template (the same field names in kubeadm's v1beta2 for what the class sets),
    // with kubeadm's own version: the topology's v1.31.0 turns PodSecurity on, this kubeadm
    // builds v1.20.2. The advertise address is only written into the manifests.
    let spec = &get(&templates, KCP)["spec"]["template"]["spec"]["kubeadmConfigSpec"];
    let mut cluster = spec["clusterConfiguration"].clone();
    cluster["apiVersion"] = capkind_test::kubeadm::KUBEADM_API_VERSION.into();
    cluster["kind"] = "ClusterConfiguration".into();
    cluster["kubernetesVersion"] = capkind_test::kubeadm::KUBERNETES_VERSION.into();
    let mut init = spec["initConfiguration"].clone();
    init["apiVersion"] = capkind_test::kubeadm::KUBEADM_API_VERSION.into();
    init["kind"] = "InitConfiguration".into();
    init["localAPIEndpoint"] = serde_json::json!({"advertiseAddress": "192.0.2.10"});
    init["nodeRegistration"]["name"] = "demo-control-plane-a".into();
    let config = format!(
        "{}---\n{}",
        serde_yaml::to_string(&init).expect("yaml"),
        serde_yaml::to_string(&cluster).expect("yaml")
    );
    // Then the provider's fix-ups, as on the node.
    let config = capkind::bootstrap::kubeadm::fix_config(config.as_bytes()).expect("fixed");
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::write(root.path().join("kubeadm.yaml"), &config).expect("write");

    kubeadm_in(
        root.path(),
        &[
            "init",
            "phase",
            "control-plane",
            "all",
            "--config",
            "/kubeadm.yaml",
        ],
    );
    let apiserver = static_pod(root.path(), "kube-apiserver");
    assert!(has_flag(
        &apiserver,
        &format!("--admission-control-config-file={PSS_FILE}")
    ));
    let mount =
        serde_json::json!({"mountPath": PSS_FILE, "name": "admission-pss", "readOnly": true});
    let volume = serde_json::json!({"hostPath": {"path": PSS_FILE, "type": "File"}, "name": "admission-pss"});
    assert!(
        apiserver["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .contains(&mount),
        "{apiserver}"
    );
    assert!(
        apiserver["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .contains(&volume),
        "{apiserver}"
    );
    for component in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        let pod = static_pod(root.path(), component);
        assert!(has_flag(&pod, "--v=5"), "{component}: {pod}");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            format!("registry.example/k8s/{component}:v1.20.2")
        );
    }

    kubeadm_in(
        root.path(),
        &[
            "init",
            "phase",
            "kubelet-start",
            "--config",
            "/kubeadm.yaml",
        ],
    );
    let flags = std::fs::read_to_string(root.path().join("var/lib/kubelet/kubeadm-flags.env"))
        .expect("kubeadm-flags.env");
    // The class's flags, and the provider's where the class names none.
    for flag in [
        "--v=4",
        "--node-labels=tier=demo",
        "--cgroup-root=/kubelet",
        "--fail-swap-on=false",
    ] {
        assert!(flags.contains(flag), "{flag}: {flags}");
    }

    let images = kubeadm_in(
        root.path(),
        &["config", "images", "list", "--config", "/kubeadm.yaml"],
    );
    for image in [
        "registry.example/k8s/etcd:3.5.15-0",
        "registry.example/k8s/coredns:v1.11.3",
    ] {
        assert!(images.lines().any(|l| l == image), "{image}: {images}");
    }
}

/// Cluster API's e2e configuration (`E2EConfig` of sigs.k8s.io/cluster-api/test/framework/
/// clusterctl), with only the fields it has: a misspelt key fails to parse, as it would be
/// ignored there.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct E2eConfig {
    management_cluster_name: String,
    images: Vec<E2eImage>,
    providers: Vec<E2eProvider>,
    variables: HashMap<String, String>,
    intervals: HashMap<String, Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct E2eImage {
    name: String,
    load_behavior: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct E2eProvider {
    name: String,
    #[serde(rename = "type")]
    type_: String,
    versions: Vec<E2eVersion>,
    #[serde(default)]
    files: Vec<E2eFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct E2eVersion {
    name: String,
    value: String,
    #[serde(rename = "type")]
    type_: String,
    contract: String,
    #[serde(default)]
    replacements: Vec<serde_json::Value>,
    #[serde(default)]
    files: Vec<E2eFile>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct E2eFile {
    source_path: String,
    #[serde(default)]
    target_name: Option<String>,
}

/// Whether `text` is a Go duration as Ginkgo intervals take them (`4m`, `10s`, `1h30m`).
fn is_go_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// `path` without `.` and `..` components (the files need not exist).
fn normalized(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn e2e_config_names_existing_files_and_its_components_and_templates_render() {
    let config_path = format!("{ROOT}/test/e2e/config/capkind.yaml");
    let text = std::fs::read_to_string(&config_path).expect("test/e2e/config/capkind.yaml");
    let config: E2eConfig = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("{config_path} is not an E2EConfig: {e}"));
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));

    // The release the configuration points at, laid out as `hack/release.sh` (no arguments)
    // lays it out in ./out, here in a directory of the test's own.
    let out = tempfile::tempdir().expect("tempdir");
    release(&[&version, &out.path().display().to_string()]).expect("release");
    let config_dir = normalized(&std::path::Path::new(&config_path).join(".."));
    let repo_out = normalized(&std::path::Path::new(ROOT).join("out"));
    let resolve = |path: &str| -> std::path::PathBuf {
        let p = normalized(&config_dir.join(path));
        match p.strip_prefix(&repo_out) {
            Ok(inside) => out.path().join(inside),
            Err(_) => p,
        }
    };

    // What Cluster API's E2EConfig.Validate() checks.
    assert!(!config.management_cluster_name.is_empty());
    for image in &config.images {
        assert!(
            ["mustLoad", "tryLoad"].contains(&image.load_behavior.as_str()),
            "{}: loadBehavior {}",
            image.name,
            image.load_behavior
        );
    }
    for (key, interval) in &config.intervals {
        assert!(
            (1..=2).contains(&interval.len()) && interval.iter().all(|i| is_go_duration(i)),
            "interval {key}: {interval:?}"
        );
    }
    let of_type = |t: &str| -> Vec<&E2eProvider> {
        config.providers.iter().filter(|p| p.type_ == t).collect()
    };
    let names = |t: &str| -> Vec<&str> { of_type(t).iter().map(|p| p.name.as_str()).collect() };
    assert_eq!(names("CoreProvider"), ["cluster-api"]);
    assert_eq!(names("BootstrapProvider"), ["kubeadm"]);
    assert_eq!(names("ControlPlaneProvider"), ["kubeadm"]);
    assert_eq!(names("InfrastructureProvider"), ["kind"]);

    let mut local_files = Vec::new();
    for provider in &config.providers {
        assert!(
            provider.files.is_empty(),
            "{}: files per version",
            provider.name
        );
        for v in &provider.versions {
            let what = format!("{} {} {}", provider.type_, provider.name, v.name);
            assert!(["url", "kustomize"].contains(&v.type_.as_str()), "{what}");
            assert!(
                ["v1beta1", "v1beta2"].contains(&v.contract.as_str()),
                "{what}"
            );
            for r in &v.replacements {
                assert!(r["old"].is_string() && r["new"].is_string(), "{what}: {r}");
            }
            let marker = "{go://sigs.k8s.io/cluster-api@v1.14}";
            if v.value.starts_with("https://") {
                // Cluster API's own releases, resolved and fetched by its framework.
                assert_eq!(v.name, marker, "{what}");
                assert!(v.value.contains(marker), "{what}: {}", v.value);
            } else {
                let path = resolve(&v.value);
                assert!(path.is_file(), "{what}: {} does not exist", path.display());
                local_files.push((what.clone(), path));
            }
            for f in &v.files {
                let path = resolve(&f.source_path);
                assert!(path.is_file(), "{what}: {} does not exist", path.display());
                if let Some(target) = &f.target_name {
                    assert!(!target.is_empty(), "{what}");
                }
            }
        }
    }

    // capkind's provider: this workspace's release (components and metadata), its contract as
    // metadata.yaml says, and every e2e flavor (a new one must be added here too).
    let kind = of_type("InfrastructureProvider")[0];
    assert_eq!(kind.versions.len(), 1);
    let release_v = &kind.versions[0];
    assert_eq!(release_v.name, version);
    let (major, minor) = {
        let mut parts = version.trim_start_matches('v').split('.');
        let n = |p: Option<&str>| p.and_then(|s| s.parse::<u64>().ok()).expect("version");
        (n(parts.next()), n(parts.next()))
    };
    let series = release_series();
    let contract = series
        .iter()
        .find(|(ma, mi, _)| (*ma, *mi) == (major, minor))
        .map(|(_, _, c)| c.as_str());
    assert_eq!(Some(release_v.contract.as_str()), contract);
    let release_dir = out.path().join("infrastructure-kind").join(&version);
    assert_eq!(
        resolve(&release_v.value),
        release_dir.join("infrastructure-components.yaml")
    );
    let flavors_dir = std::path::Path::new(ROOT).join(E2E_DATA);
    let mut flavors: Vec<String> = std::fs::read_dir(&flavors_dir)
        .expect("e2e flavors")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    flavors.sort();
    let mut named = Vec::new();
    for f in &release_v.files {
        let path = resolve(&f.source_path);
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        if name == "metadata.yaml" {
            assert_eq!(
                path,
                release_dir.join("metadata.yaml"),
                "the release's metadata"
            );
        } else {
            assert_eq!(
                path.parent().map(normalized),
                Some(normalized(&flavors_dir)),
                "{}: not an e2e flavor",
                f.source_path
            );
            named.push(name);
        }
    }
    named.sort();
    assert_eq!(
        named, flavors,
        "the e2e flavors and those the e2e config names"
    );

    // The components render with the configuration's variables and run the image it loads.
    let vars: HashMap<&str, &str> = config
        .variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let components = std::fs::read_to_string(resolve(&release_v.value)).expect("components");
    let objects = docs(&clusterctl::render(&components, &vars).expect("components render"));
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("the manager's Deployment");
    let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image");
    let loaded = config
        .images
        .iter()
        .find(|i| i.load_behavior == "mustLoad")
        .expect("a mustLoad image");
    assert_eq!(image, loaded.name);

    // Each cluster template renders with the configuration's variables and those the specs
    // set themselves (clusterctl generate cluster's flags); the configuration's Kubernetes
    // versions have published kindest/node images.
    let mut spec_vars = vars.clone();
    for (k, v) in [
        ("CLUSTER_NAME", "e2e"),
        ("NAMESPACE", "e2e"),
        ("CONTROL_PLANE_MACHINE_COUNT", "1"),
        ("WORKER_MACHINE_COUNT", "1"),
    ] {
        spec_vars.insert(k, v);
    }
    let mut templates = 0;
    for f in &release_v.files {
        let name = f.source_path.rsplit('/').next().unwrap_or_default();
        if !name.starts_with("cluster-template") {
            continue;
        }
        // As the framework lays it out: the CNI manifest in place of ${CNI_RESOURCES}.
        let text = std::fs::read_to_string(resolve(&f.source_path)).expect("template");
        let rendered = clusterctl::render(&inject_cni(&text, CNI_MANIFEST), &spec_vars)
            .unwrap_or_else(|e| panic!("{name} with the e2e variables: {e}"));
        let objects = docs(&rendered);
        for kind in ["Cluster", "ClusterResourceSet"] {
            assert!(
                objects.iter().any(|o| o["kind"] == kind),
                "{name}: no {kind}"
            );
        }
        templates += 1;
    }
    assert!(templates >= 2, "{templates} cluster templates");
    for key in [
        "KUBERNETES_VERSION",
        "KUBERNETES_VERSION_MANAGEMENT",
        "KUBERNETES_VERSION_UPGRADE_FROM",
        "KUBERNETES_VERSION_UPGRADE_TO",
    ] {
        let v = vars.get(key).unwrap_or_else(|| panic!("{key} not set"));
        // A version some kind release published an image of, so that it can be pulled.
        let image = capkind::node::image(None, Some(v))
            .expect("node image")
            .reference;
        assert!(
            image.starts_with(&format!("kindest/node:{v}@sha256:")),
            "{key}: {image} is not a published kindest/node image"
        );
    }

    // Cluster API's own providers: the metadata the configuration gives them covers v1.14.
    let metadata = resolve("../data/shared/v1.14/metadata.yaml");
    let metadata: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(metadata).expect("metadata")).expect("yaml");
    assert_eq!(metadata["kind"], "Metadata");
    assert!(
        metadata["releaseSeries"]
            .as_array()
            .expect("releaseSeries")
            .iter()
            .any(|s| s["major"] == 1 && s["minor"] == 14 && s["contract"] == "v1beta2"),
        "{metadata}"
    );
    for key in ["CNI", "KUBETEST_CONFIGURATION", "AUTOSCALER_WORKLOAD"] {
        let v = vars.get(key).unwrap_or_else(|| panic!("{key} not set"));
        assert!(
            v.starts_with("./data/"),
            "{key}: Cluster API's test/e2e/data"
        );
    }
    assert!(local_files.len() == 1, "{local_files:?}");
}

#[test]
fn go_durations_as_ginkgo_reads_intervals() {
    for ok in ["4m", "10s", "1h30m", "1.5s", "200ms"] {
        assert!(is_go_duration(ok), "{ok}");
    }
    for bad in ["", "4", "m", "ten seconds", "4 m", "-1s"] {
        assert!(!is_go_duration(bad), "{bad}");
    }
}
