//! What clusterctl and users install: the rendered components, the cluster templates, and the
//! least-privilege RBAC, against the real API server (and, for RBAC, a real lifecycle).

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use capkind::docker::ContainerRuntime;
use capkind_api::v1beta1::{KindCluster, KindMachine};
use capkind_test::clusterctl;
use capkind_test::docker::{Janitor, engine};
use capkind_test::fixtures::{
    bootstrap_secret, cluster_with_kindcluster, kind_spec, machine_spec, machine_with_kindmachine,
    mark_cluster,
};
use capkind_test::process::ManagerProcess;
use capkind_test::{ApiServer, names, shared, wait};
use k8s_openapi::api::authentication::v1::TokenRequest;
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

#[test]
fn components_render_for_clusterctl_and_pass_server_dry_run() {
    let raw = kustomize();
    for var in [
        "${CAPKIND_DOCKER_NETWORK:=kind}",
        "${CAPKIND_IMAGE_REPOSITORY:=localhost/capkind-manager}",
    ] {
        assert!(
            raw.contains(var),
            "variable {var} is not left for clusterctl"
        );
    }
    let rendered =
        clusterctl::render(&raw, &HashMap::new()).expect("defaults cover every variable");
    let objects = docs(&rendered);
    let namespaces: Vec<&serde_json::Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace")
        .collect();
    assert_eq!(
        namespaces.len(),
        1,
        "clusterctl wants exactly one Namespace"
    );
    assert_eq!(namespaces[0]["metadata"]["name"], "capkind-system");
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"]["cluster.x-k8s.io/provider"], "infrastructure-kind",
            "{} {} lacks the provider label",
            o["kind"], o["metadata"]["name"]
        );
    }
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "manager");
    assert_eq!(container["image"], "localhost/capkind-manager:v0.1.0");
    let mounts = container["volumeMounts"].to_string();
    assert!(mounts.contains("/var/run/docker.sock"), "{mounts}");
    for crd in objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
    {
        assert_eq!(
            crd["metadata"]["labels"]["cluster.x-k8s.io/v1beta1"],
            "v1beta1"
        );
    }

    // The namespace must exist for a dry run of what goes into it.
    let server = shared();
    let (ok, out) = kubectl_stdin(
        server,
        &["apply", "-f", "-"],
        &serde_yaml::to_string(namespaces[0]).expect("yaml"),
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl_stdin(server, &["apply", "--dry-run=server", "-f", "-"], &rendered);
    assert!(ok, "server dry-run refused the components:\n{out}");
    for kind in [
        "deployment.apps/capkind-controller-manager",
        "clusterrole.rbac.authorization.k8s.io/capkind-manager-role",
    ] {
        assert!(out.contains(kind), "{kind} not applied: {out}");
    }
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
            "cluster-template-topology.yaml",
            "cluster-template.yaml",
            "clusterclass-quick-start.yaml"
        ]
    );
    let mut checked = 0;
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
                if o["kind"] == "KindMachineTemplate" && file.ends_with("cluster-template.yaml") {
                    assert_eq!(
                        stored["spec"]["template"]["spec"]["customImage"].as_str(),
                        image,
                        "{set}: {out}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 12,
        "only {checked} provider objects in the templates"
    );
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
        "cluster-template-topology.yaml",
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
    let check = |vars: &HashMap<&str, &str>, image: Option<&str>, ignored: &[&str]| {
        let objects = rendered("cluster-template.yaml", vars);
        for name in ["demo-control-plane", "demo-md-0"] {
            let spec = &object(&objects, "KindMachineTemplate", name)["spec"]["template"]["spec"];
            // Unset, the key is there with no value: the provider picks kindest/node:<version>.
            assert!(spec.as_object().expect("spec").contains_key("customImage"));
            assert_eq!(spec["customImage"].as_str(), image, "{name}");
        }
        let registrations = node_registrations(&objects);
        assert_eq!(
            registrations.len(),
            3,
            "control-plane init and join, worker join: {registrations:?}"
        );
        for (at, registration) in registrations {
            assert_eq!(
                registration["ignorePreflightErrors"],
                serde_json::json!(ignored),
                "{at}"
            );
        }
    };
    check(&template_vars("ns"), None, &[]);
    check(&local_image_vars("ns"), Some(LOCAL_IMAGE), &["ImagePull"]);
    let mut vars = template_vars("ns");
    vars.insert("KUBEADM_IGNORE_PREFLIGHT_ERRORS", "ImagePull,NumCPU");
    check(&vars, None, &["ImagePull", "NumCPU"]);
}

/// A JSON pointer's tokens (RFC 6901).
fn pointer_tokens(path: &str) -> Vec<String> {
    path.strip_prefix('/')
        .expect("a JSON pointer")
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The templates of `class` the patches apply to, as the topology controller hands them over:
/// each with whether it is the control plane's and which MachineDeployment classes use it.
fn class_templates<'a>(
    class: &serde_json::Value,
    objects: &'a [serde_json::Value],
) -> Vec<(&'a serde_json::Value, bool, Vec<String>)> {
    let spec = &class["spec"];
    let by_ref = |r: &serde_json::Value| {
        objects
            .iter()
            .find(|o| {
                o["apiVersion"] == r["apiVersion"]
                    && o["kind"] == r["kind"]
                    && o["metadata"]["name"] == r["name"]
            })
            .unwrap_or_else(|| panic!("the ClusterClass refers to a missing {r}"))
    };
    let mut out = vec![
        (by_ref(&spec["infrastructure"]["ref"]), false, vec![]),
        (by_ref(&spec["controlPlane"]["ref"]), true, vec![]),
        (
            by_ref(&spec["controlPlane"]["machineInfrastructure"]["ref"]),
            true,
            vec![],
        ),
    ];
    for md in spec["workers"]["machineDeployments"]
        .as_array()
        .expect("workers")
    {
        let class_name = md["class"].as_str().expect("class").to_string();
        for r in [
            &md["template"]["bootstrap"]["ref"],
            &md["template"]["infrastructure"]["ref"],
        ] {
            out.push((by_ref(r), false, vec![class_name.clone()]));
        }
    }
    out
}

/// The templates after the ClusterClass's patches with `variables`, as Cluster API's inline
/// patches apply them: `enabledIf` (only the `{{ if .var }}true{{ end }}` form, true for a
/// non-empty value), selectors by apiVersion, kind and matchResources, `add` of a variable's
/// value, whose parent must exist.
fn patched_templates(
    class: &serde_json::Value,
    objects: &[serde_json::Value],
    variables: &serde_json::Map<String, serde_json::Value>,
) -> Vec<serde_json::Value> {
    let targets = class_templates(class, objects);
    let mut out: Vec<serde_json::Value> = targets.iter().map(|(o, _, _)| (*o).clone()).collect();
    for patch in class["spec"]["patches"].as_array().expect("patches") {
        let enabled_if = patch["enabledIf"].as_str().expect("enabledIf");
        let var = enabled_if
            .strip_prefix("{{ if .")
            .and_then(|r| r.strip_suffix(" }}true{{ end }}"))
            .unwrap_or_else(|| panic!("enabledIf of an unknown form: {enabled_if}"));
        let enabled = match &variables[var] {
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Array(a) => !a.is_empty(),
            other => panic!("{var}: {other}"),
        };
        for definition in patch["definitions"].as_array().expect("definitions") {
            let selector = &definition["selector"];
            let matching = &selector["matchResources"];
            let md_classes: Vec<&str> = matching["machineDeploymentClass"]["names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .collect();
            let mut selected = 0;
            for ((template, control_plane, classes), target) in targets.iter().zip(&mut out) {
                if template["apiVersion"] != selector["apiVersion"]
                    || template["kind"] != selector["kind"]
                    || !((*control_plane && matching["controlPlane"] == true)
                        || classes.iter().any(|c| md_classes.contains(&c.as_str())))
                {
                    continue;
                }
                selected += 1;
                for json_patch in definition["jsonPatches"].as_array().expect("jsonPatches") {
                    assert_eq!(json_patch["op"], "add");
                    let name = json_patch["valueFrom"]["variable"]
                        .as_str()
                        .expect("variable");
                    let value = variables
                        .get(name)
                        .unwrap_or_else(|| panic!("{name} is not a variable"));
                    let mut tokens = pointer_tokens(json_patch["path"].as_str().expect("path"));
                    let last = tokens.pop().expect("a key");
                    let mut parent = &mut *target;
                    for t in &tokens {
                        parent = parent.get_mut(t).unwrap_or_else(|| {
                            panic!(
                                "{} {}: no {} for patch {}",
                                template["kind"],
                                template["metadata"]["name"],
                                json_patch["path"],
                                patch["name"]
                            )
                        });
                    }
                    let parent = parent.as_object_mut().expect("an object");
                    if enabled {
                        parent.insert(last, value.clone());
                    }
                }
            }
            assert!(selected > 0, "patch {} selects nothing", patch["name"]);
        }
    }
    out
}

#[test]
fn clusterclass_takes_the_node_image_and_preflight_variables_from_the_topology() {
    let class_objects = rendered("clusterclass-quick-start.yaml", &HashMap::new());
    let class = object(&class_objects, "ClusterClass", "quick-start");
    let definitions: HashMap<String, serde_json::Value> = class["spec"]["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().expect("name").to_string(),
                v["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect();
    for (vars, image, ignored) in [
        (template_vars("ns"), None, vec![]),
        (local_image_vars("ns"), Some(LOCAL_IMAGE), vec!["ImagePull"]),
    ] {
        let cluster_objects = rendered("cluster-template-topology.yaml", &vars);
        let topology = &object(&cluster_objects, "Cluster", "demo")["spec"]["topology"];
        assert_eq!(topology["class"], "quick-start");
        // The Cluster's variables, defaulted from the class as Cluster API does.
        let mut variables: serde_json::Map<String, serde_json::Value> = definitions
            .iter()
            .map(|(name, schema)| (name.clone(), schema["default"].clone()))
            .collect();
        for v in topology["variables"].as_array().expect("variables") {
            let name = v["name"].as_str().expect("name");
            let schema = definitions
                .get(name)
                .unwrap_or_else(|| panic!("the ClusterClass has no variable {name}"));
            let type_ok = match schema["type"].as_str() {
                Some("string") => v["value"].is_string(),
                Some("array") => v["value"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|i| i.is_string())),
                other => panic!("{name}: type {other:?}"),
            };
            assert!(type_ok, "{name} = {} does not fit {schema}", v["value"]);
            variables.insert(name.to_string(), v["value"].clone());
        }
        let templates = patched_templates(class, &class_objects, &variables);
        let get = |kind: &str, name: &str| {
            templates
                .iter()
                .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("no {kind} {name}"))
        };
        for name in [
            "quick-start-control-plane",
            "quick-start-default-worker-machinetemplate",
        ] {
            assert_eq!(
                get("KindMachineTemplate", name)["spec"]["template"]["spec"]["customImage"]
                    .as_str(),
                image,
                "{name}"
            );
        }
        let registrations = node_registrations(&templates);
        assert_eq!(registrations.len(), 3, "{registrations:?}");
        for (at, registration) in registrations {
            let expected = if ignored.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::json!(ignored)
            };
            assert_eq!(registration["ignorePreflightErrors"], expected, "{at}");
        }
    }
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
    let forbidden = Api::<Pod>::all(as_manager)
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
        if kc.status.as_ref().is_some_and(|s| s.ready) {
            Ok(())
        } else {
            Err(format!("{:?}\n{}", kc.status, manager.log_tail()))
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
        if km.status.as_ref().is_some_and(|s| s.ready) {
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
    assert!(
        !manager.log_tail().contains("forbidden"),
        "the manager was refused something:\n{}",
        manager.log_tail()
    );
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
        let (health, metrics) = (
            capkind_test::http::free_port(),
            capkind_test::http::free_port(),
        );
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
            .arg(image)
            .args(["--namespace", ns, "--node-privileges", "capabilities"])
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
            if kc.status.as_ref().is_some_and(|s| s.ready) {
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
