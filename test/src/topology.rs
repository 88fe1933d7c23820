//! Cluster API's topology controller, as far as the quick-start ClusterClass needs it, with no
//! Cluster API running: the Cluster's variables checked and defaulted against the class's
//! schemas by the real API server (a CRD made of those schemas; Cluster API validates and
//! defaults variables with the same apiextensions code), and the class's inline patches applied
//! to its templates the way Cluster API applies them. Only the forms the class uses are
//! understood; any other form panics, so a class that outgrows this fails its tests instead of
//! being half-checked.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Map, Value, json};

/// The group of the CRDs that hold a ClusterClass's variable schemas.
const GROUP: &str = "variables.capkind.test";

/// The Cluster's variables (`spec.topology.variables`) as Cluster API sees them after
/// validation and defaulting against `class`'s variable schemas; the API server's message when
/// a value does not fit. A variable the class does not define is an error, as in Cluster API.
pub async fn defaulted_variables(
    client: &Client,
    namespace: &str,
    class: &Value,
    topology: &Value,
) -> Result<Map<String, Value>, String> {
    let mut properties = Map::new();
    for v in class["spec"]["variables"].as_array().expect("variables") {
        let name = v["name"].as_str().expect("name").to_string();
        let mut schema = v["schema"]["openAPIV3Schema"].clone();
        allow_empty_string_defaults(&mut schema);
        properties.insert(name, schema);
    }
    // One CRD per set of schemas, named by their hash, so that asking again reuses it.
    let id = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        Value::Object(properties.clone())
            .to_string()
            .hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    };
    let (kind, plural) = (format!("V{id}"), format!("v{id}"));
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural,
                      "singular": plural},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": properties}}}}}],
        },
    }))
    .map_err(|e| format!("the class's variable schemas make no CRD: {e}"))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().unwrap_or_default();
    crds.patch(
        &name,
        &PatchParams::apply("capkind-test"),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(|e| format!("the API server refused the variable schemas: {e}"))?;
    let established = kube::runtime::wait::await_condition(
        crds,
        &name,
        kube::runtime::wait::conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .map_err(|_| format!("CRD {name} not established within 30s"))?
        .map_err(|e| format!("wait for CRD {name}: {e}"))?;

    let mut spec = Map::new();
    for v in topology["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().expect("name").to_string();
        spec.insert(name, v["value"].clone());
    }
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", &kind), &plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": kind,
        "metadata": {"name": "variables"}, "spec": spec,
    }))
    .expect("object");
    let params = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // The dry run may race the CRD's discovery for a moment after it is established.
    let mut tries = 0;
    let stored = loop {
        match api.create(&params, &object).await {
            Ok(stored) => break stored,
            Err(kube::Error::Api(e)) if e.code == 404 && tries < 20 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let defaulted = stored.data["spec"].as_object().cloned().unwrap_or_default();
    // Pruned: a name the class has no schema for.
    for name in spec.keys() {
        if !defaulted.contains_key(name) {
            return Err(format!("the ClusterClass has no variable {name}"));
        }
    }
    Ok(defaulted)
}

/// This API server build reads a `default: ""` of a string as null and refuses it, unless the
/// schema is nullable (docs/test-environment.md, quirks); with `nullable` it defaults to "" as
/// Cluster API's validation does. The only difference left: a null value would pass here.
fn allow_empty_string_defaults(schema: &mut Value) {
    if schema["type"] == "string" && schema["default"] == "" {
        schema["nullable"] = Value::Bool(true);
    }
    for key in ["properties"] {
        if let Some(properties) = schema.get_mut(key).and_then(Value::as_object_mut) {
            properties
                .values_mut()
                .for_each(allow_empty_string_defaults);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get_mut(key).filter(|v| v.is_object()) {
            allow_empty_string_defaults(inner);
        }
    }
}

/// Whether every worker of the Cluster's `topology` names a class of its kind (MachineDeployment
/// or MachinePool) that `class` defines, as Cluster API's Cluster webhook requires; the error
/// names the first that does not.
pub fn check_workers(class: &Value, topology: &Value) -> Result<(), String> {
    for key in ["machineDeployments", "machinePools"] {
        let classes: Vec<&Value> = class["spec"]["workers"][key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| &w["class"])
            .collect();
        for worker in topology["workers"][key].as_array().into_iter().flatten() {
            if !classes.contains(&&worker["class"]) {
                return Err(format!(
                    "workers.{key} {}: the ClusterClass has no such class in workers.{key}",
                    worker["name"]
                ));
            }
        }
    }
    Ok(())
}

/// The builtin variables Cluster API gives every patch of a Cluster named `cluster` at
/// `version` (the parts the class uses): `builtin.cluster`, `builtin.controlPlane`.
pub fn builtins(cluster: &str, namespace: &str, version: &str) -> Value {
    json!({
        "cluster": {"name": cluster, "namespace": namespace, "topology": {"version": version}},
        "controlPlane": {"version": version},
    })
}

/// Where a ClusterClass uses a template, which decides the selectors that match it and the
/// builtin variables its patches see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// `spec.infrastructure`: selected by `matchResources.infrastructureCluster`.
    InfrastructureCluster,
    /// `spec.controlPlane` and its `machineInfrastructure`: `matchResources.controlPlane`.
    ControlPlane,
    /// A class of `spec.workers.machineDeployments`: `matchResources.machineDeploymentClass`;
    /// its patches see `builtin.machineDeployment`.
    MachineDeployment,
    /// A class of `spec.workers.machinePools`: `matchResources.machinePoolClass`; its patches
    /// see `builtin.machinePool`.
    MachinePool,
}

/// One template of the class after the patches, as the topology controller would clone it for
/// its holder. A template used by several holders (one bootstrap template for a
/// MachineDeployment class and a MachinePool class) comes once for each, patched for each.
#[derive(Clone, Debug, PartialEq)]
pub struct Patched {
    pub holder: Holder,
    /// The worker class, for MachineDeployment and MachinePool templates.
    pub class: Option<String>,
    pub object: Value,
}

/// One template of a ClusterClass as the topology controller hands it to the patches.
struct Target<'a> {
    object: &'a Value,
    holder: Holder,
    class: Option<String>,
}

fn targets<'a>(class: &Value, objects: &'a [Value]) -> Vec<Target<'a>> {
    let spec = &class["spec"];
    let by_ref = |r: &Value| {
        objects
            .iter()
            .find(|o| {
                o["apiVersion"] == r["apiVersion"]
                    && o["kind"] == r["kind"]
                    && o["metadata"]["name"] == r["name"]
            })
            .unwrap_or_else(|| panic!("the ClusterClass refers to a missing {r}"))
    };
    let target = |r: &Value, holder, class: Option<&str>| Target {
        object: by_ref(r),
        holder,
        class: class.map(str::to_string),
    };
    let mut out = vec![
        target(
            &spec["infrastructure"]["ref"],
            Holder::InfrastructureCluster,
            None,
        ),
        target(&spec["controlPlane"]["ref"], Holder::ControlPlane, None),
        target(
            &spec["controlPlane"]["machineInfrastructure"]["ref"],
            Holder::ControlPlane,
            None,
        ),
    ];
    for key in spec["workers"].as_object().expect("workers").keys() {
        assert!(
            ["machineDeployments", "machinePools"].contains(&key.as_str()),
            "workers.{key} is not understood"
        );
    }
    for (key, holder) in [
        ("machineDeployments", Holder::MachineDeployment),
        ("machinePools", Holder::MachinePool),
    ] {
        for worker in spec["workers"][key].as_array().into_iter().flatten() {
            let name = worker["class"].as_str().expect("class");
            for r in [
                &worker["template"]["bootstrap"]["ref"],
                &worker["template"]["infrastructure"]["ref"],
            ] {
                out.push(target(r, holder, Some(name)));
            }
        }
    }
    out
}

/// The class's templates (from `objects`) after its inline patches, one for each place the
/// class uses it, with `variables` (the Cluster's, defaulted) and `builtin` ([`builtins`];
/// `builtin.machineDeployment` or `builtin.machinePool`, with the class and the version, is
/// added for a worker class's templates, as Cluster API does). As Cluster API: a patch applies
/// when it has no `enabledIf` or that renders to `true`; its selector matches by apiVersion,
/// kind and matchResources (controlPlane, infrastructureCluster, machineDeploymentClass and
/// machinePoolClass names, ORed); `add` takes `value`, `valueFrom.variable` (a dotted path) or
/// `valueFrom.template` (rendered, then read as YAML), and its target's parent must exist.
/// Parents are checked even when the patch is off, so that a wrong path fails every run. A
/// builtin variable this does not give (a MachinePool's name or replicas, which depend on the
/// Cluster's topology) panics rather than print `<no value>`.
pub fn patched_templates(
    class: &Value,
    objects: &[Value],
    variables: &Map<String, Value>,
    builtin: &Value,
) -> Vec<Patched> {
    let targets = targets(class, objects);
    let mut out: Vec<Patched> = targets
        .iter()
        .map(|t| Patched {
            holder: t.holder,
            class: t.class.clone(),
            object: t.object.clone(),
        })
        .collect();
    let mut globals = variables.clone();
    globals.insert("builtin".into(), builtin.clone());
    let globals = Value::Object(globals);
    for patch in class["spec"]["patches"].as_array().expect("patches") {
        let enabled = patch["enabledIf"]
            .as_str()
            .is_none_or(|e| render(e, &globals) == "true");
        for definition in patch["definitions"].as_array().expect("definitions") {
            let selector = &definition["selector"];
            let mut selected = 0;
            for (target, patched) in targets.iter().zip(&mut out) {
                if !selects(selector, target) {
                    continue;
                }
                selected += 1;
                let data = template_data(&globals, target);
                for json_patch in definition["jsonPatches"].as_array().expect("jsonPatches") {
                    let value = enabled.then(|| patch_value(json_patch, &data));
                    add(&mut patched.object, json_patch, value, &patch["name"]);
                }
            }
            assert!(selected > 0, "patch {} selects nothing", patch["name"]);
        }
    }
    out
}

/// The variables a patch of `target` sees: the globals, and the builtin of its worker class.
fn template_data(globals: &Value, target: &Target) -> Value {
    let mut data = globals.clone();
    let key = match target.holder {
        Holder::MachineDeployment => "machineDeployment",
        Holder::MachinePool => "machinePool",
        Holder::InfrastructureCluster | Holder::ControlPlane => return data,
    };
    // The version the topology reconciles towards: the Cluster's, as for the control plane.
    let version = globals["builtin"]["controlPlane"]["version"].clone();
    data["builtin"][key] = json!({"class": target.class, "version": version});
    data
}

/// The class names of a `machineDeploymentClass` or `machinePoolClass` selector.
fn class_names<'a>(matching: &'a Value, key: &str) -> Vec<&'a str> {
    let names: Vec<&str> = matching[key]["names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for name in &names {
        assert!(!name.contains('*'), "{key} name patterns: {name}");
    }
    names
}

fn selects(selector: &Value, target: &Target) -> bool {
    let matching = &selector["matchResources"];
    for key in matching.as_object().expect("matchResources").keys() {
        assert!(
            [
                "controlPlane",
                "infrastructureCluster",
                "machineDeploymentClass",
                "machinePoolClass"
            ]
            .contains(&key.as_str()),
            "matchResources.{key} is not understood"
        );
    }
    let class = target.class.as_deref().unwrap_or_default();
    let held = match target.holder {
        Holder::ControlPlane => matching["controlPlane"] == true,
        Holder::InfrastructureCluster => matching["infrastructureCluster"] == true,
        Holder::MachineDeployment => {
            class_names(matching, "machineDeploymentClass").contains(&class)
        }
        Holder::MachinePool => class_names(matching, "machinePoolClass").contains(&class),
    };
    held && target.object["apiVersion"] == selector["apiVersion"]
        && target.object["kind"] == selector["kind"]
}

/// The value one JSON patch adds, from `data` (the variables, builtin included).
fn patch_value(json_patch: &Value, data: &Value) -> Value {
    let from = &json_patch["valueFrom"];
    if !json_patch["value"].is_null() {
        json_patch["value"].clone()
    } else if let Some(path) = from["variable"].as_str() {
        lookup(data, path)
            .cloned()
            .unwrap_or_else(|| panic!("{path} is not a variable"))
    } else if let Some(template) = from["template"].as_str() {
        let text = render(template, data);
        serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("template gives no YAML: {e}\n{text}"))
    } else {
        panic!("a JSON patch of an unknown form: {json_patch}")
    }
}

/// RFC 6902 `add` of `value` (when the patch is on) into an object parent that must exist.
fn add(target: &mut Value, json_patch: &Value, value: Option<Value>, patch: &Value) {
    assert_eq!(
        json_patch["op"], "add",
        "patch {patch}: only add is understood"
    );
    let path = json_patch["path"].as_str().expect("path");
    let mut tokens: Vec<String> = path
        .strip_prefix('/')
        .expect("a JSON pointer")
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = tokens.pop().expect("a key");
    let (kind, name) = (target["kind"].clone(), target["metadata"]["name"].clone());
    let mut parent = &mut *target;
    for t in &tokens {
        parent = parent
            .get_mut(t)
            .unwrap_or_else(|| panic!("{kind} {name}: no parent for {path} of patch {patch}"));
    }
    let parent = parent
        .as_object_mut()
        .unwrap_or_else(|| panic!("{kind} {name}: the parent of {path} is no object"));
    if let Some(value) = value {
        parent.insert(last, value);
    }
}

/// The value at a dotted path (`podSecurityStandard.enabled`), if any. A builtin variable must
/// be there: Cluster API always gives the ones it defines, so a missing one is one this module
/// does not emulate (or not for that template), which would otherwise go unnoticed.
fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim_start_matches('.');
    let found = path.split('.').try_fold(data, |v, key| v.get(key));
    if path.starts_with("builtin.") {
        assert!(
            found.is_some(),
            "{path}: a builtin variable not emulated here, or not for this template"
        );
    }
    found
}

/// Go's truthiness in templates.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// Renders `text`, a Go template of the forms the class uses: `{{ .a.b }}`, and
/// `{{ if COND }}…{{ end }}` (nested), where COND is `.a.b` or
/// `semverCompare "OP vX.Y[.Z]" .a.b` (sprig's, for plain versions). A missing value prints
/// `<no value>`, as Go's does.
pub fn render(text: &str, data: &Value) -> String {
    let mut out = String::new();
    // Whether each enclosing `if` is true.
    let mut stack: Vec<bool> = vec![];
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let on = stack.iter().all(|b| *b);
        if on {
            out.push_str(&rest[..start]);
        }
        let end = start + rest[start..].find("}}").expect("a closed {{");
        let action = rest[start + 2..end].trim();
        rest = &rest[end + 2..];
        if let Some(cond) = action.strip_prefix("if ") {
            stack.push(condition(cond.trim(), data));
        } else if action == "end" {
            stack.pop().expect("an {{ end }} without an {{ if }}");
        } else if let Some(path) = action.strip_prefix('.').filter(|p| is_path(p)) {
            if on {
                out.push_str(&match lookup(data, path) {
                    None | Some(Value::Null) => "<no value>".to_string(),
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
                    Some(v) => panic!("{{{{ {action} }}}} prints {v}, which Go prints otherwise"),
                });
            }
        } else {
            panic!("a template action of an unknown form: {{{{ {action} }}}}");
        }
    }
    assert!(
        stack.is_empty(),
        "an {{{{ if }}}} without an {{{{ end }}}}: {text}"
    );
    out.push_str(rest);
    out
}

/// A dotted path of plain names (no pipeline, no function).
fn is_path(p: &str) -> bool {
    p.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

fn condition(cond: &str, data: &Value) -> bool {
    if let Some(path) = cond.strip_prefix('.').filter(|p| is_path(p)) {
        return truthy(lookup(data, path));
    }
    let args = cond
        .strip_prefix("semverCompare \"")
        .unwrap_or_else(|| panic!("a condition of an unknown form: {cond}"));
    let (constraint, path) = args
        .split_once("\" ")
        .expect("semverCompare \"constraint\" .path");
    let (op, wanted) = constraint
        .split_once(' ')
        .expect("an operator and a version");
    let version = lookup(data, path.trim())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{path} is no version"));
    let ordering = semver(version).cmp(&semver(wanted));
    match op {
        "<" => ordering.is_lt(),
        "<=" => ordering.is_le(),
        ">" => ordering.is_gt(),
        ">=" => ordering.is_ge(),
        "=" => ordering.is_eq(),
        other => panic!("semverCompare operator {other}"),
    }
}

/// `vX.Y[.Z]` as numbers, a missing part 0.
fn semver(v: &str) -> (u64, u64, u64) {
    let mut parts = v.trim_start_matches('v').split(['.', '-', '+']).map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("no version: {v}"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_template_forms() {
        let data = json!({"a": {"on": true, "off": false, "s": "x"}, "empty": "", "list": [],
                          "v": "v1.24.3"});
        let cases = [
            ("{{ .a.s }}-{{ .a.on }}", "x-true"),
            ("{{ .missing.key }}", "<no value>"),
            ("{{ if .a.on }}yes{{ end }}", "yes"),
            ("{{ if .a.off }}yes{{ end }}", ""),
            (
                "{{ if .empty }}yes{{ end }}{{ if .list }}yes{{ end }}{{ if .none.x }}yes{{ end }}",
                "",
            ),
            ("{{ if .a.on }}{{ if .a.off }}no{{ end }}in{{ end }}", "in"),
            (r#"{{ if semverCompare ">= v1.23" .v }}new{{ end }}"#, "new"),
            (r#"{{ if semverCompare "< v1.24" .v }}old{{ end }}"#, ""),
            (
                r#"v1{{ if semverCompare "< v1.25" .v }}beta1{{ end }}"#,
                "v1beta1",
            ),
        ];
        for (template, expected) in cases {
            assert_eq!(render(template, &data), expected, "{template}");
        }
    }

    #[test]
    #[should_panic(expected = "unknown form")]
    fn unknown_actions_are_refused() {
        render("{{ .a | replace \"+\" \"_\" }}", &json!({}));
    }
    /// A class with a MachineDeployment class and a MachinePool class sharing one bootstrap
    /// template, and `patches`.
    fn pool_class(patches: Value) -> (Value, Vec<Value>) {
        let r = |kind: &str, name: &str| json!({"apiVersion": "x/v1", "kind": kind, "name": name});
        let class = json!({"spec": {
            "infrastructure": {"ref": r("ClusterT", "cluster")},
            "controlPlane": {"ref": r("CPT", "cp"), "machineInfrastructure": {"ref": r("MT", "cp")}},
            "workers": {
                "machineDeployments": [{"class": "w", "template": {
                    "bootstrap": {"ref": r("BT", "boot")}, "infrastructure": {"ref": r("MT", "w")}}}],
                "machinePools": [{"class": "w", "template": {
                    "bootstrap": {"ref": r("BT", "boot")}, "infrastructure": {"ref": r("MPT", "w")}}}],
            },
            "patches": patches,
        }});
        let object = |kind: &str, name: &str| json!({"apiVersion": "x/v1", "kind": kind, "metadata": {"name": name}, "spec": {}});
        let objects = vec![
            object("ClusterT", "cluster"),
            object("CPT", "cp"),
            object("MT", "cp"),
            object("BT", "boot"),
            object("MT", "w"),
            object("MPT", "w"),
        ];
        (class, objects)
    }

    fn one_patch(kind: &str, match_resources: Value, value_from: Value) -> Value {
        json!([{"name": "p", "definitions": [{
            "selector": {"apiVersion": "x/v1", "kind": kind, "matchResources": match_resources},
            "jsonPatches": [{"op": "add", "path": "/spec/set", "valueFrom": value_from}],
        }]}])
    }

    fn patched(patches: Value) -> Vec<Patched> {
        let (class, objects) = pool_class(patches);
        patched_templates(
            &class,
            &objects,
            &Map::new(),
            &builtins("c", "ns", "v1.31.0"),
        )
    }

    /// `/spec/set` of the template of `kind` used by `holder`.
    fn set(templates: &[Patched], holder: Holder, kind: &str) -> Value {
        let t = templates
            .iter()
            .find(|t| t.holder == holder && t.object["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} of {holder:?}"));
        t.object["spec"]["set"].clone()
    }

    #[test]
    fn machine_pool_classes_are_selected_by_their_own_selector_with_their_builtin() {
        let template = json!({"template": "{{ .builtin.machinePool.class }}-{{ .builtin.machinePool.version }}"});
        let templates = patched(one_patch(
            "BT",
            json!({"machinePoolClass": {"names": ["w"]}}),
            template,
        ));
        // The shared bootstrap template: the pool's copy patched, the MachineDeployment's not.
        assert_eq!(set(&templates, Holder::MachinePool, "BT"), "w-v1.31.0");
        assert_eq!(
            set(&templates, Holder::MachineDeployment, "BT"),
            Value::Null
        );
        let pool = templates
            .iter()
            .find(|t| t.object["kind"] == "MPT")
            .expect("MPT");
        assert_eq!(pool.class.as_deref(), Some("w"));

        // ORed with machineDeploymentClass: both copies, each with its own builtin.
        let both = json!({"machineDeploymentClass": {"names": ["w"]},
                          "machinePoolClass": {"names": ["w"]}});
        let templates = patched(one_patch(
            "BT",
            both,
            json!({"variable": "builtin.cluster.name"}),
        ));
        assert_eq!(set(&templates, Holder::MachinePool, "BT"), "c");
        assert_eq!(set(&templates, Holder::MachineDeployment, "BT"), "c");
        let templates = patched(one_patch(
            "MPT",
            json!({"machinePoolClass": {"names": ["w"]}}),
            json!({"variable": "builtin.machinePool.version"}),
        ));
        assert_eq!(set(&templates, Holder::MachinePool, "MPT"), "v1.31.0");
    }

    #[test]
    #[should_panic(expected = "patch \"p\" selects nothing")]
    fn a_machine_deployment_selector_does_not_select_a_pool() {
        patched(one_patch(
            "MPT",
            json!({"machineDeploymentClass": {"names": ["w"]}}),
            json!({"variable": "builtin.cluster.name"}),
        ));
    }

    #[test]
    #[should_panic(expected = "builtin.machineDeployment.version: a builtin variable not emulated")]
    fn a_pool_has_no_machine_deployment_builtin() {
        patched(one_patch(
            "MPT",
            json!({"machinePoolClass": {"names": ["w"]}}),
            json!({"variable": "builtin.machineDeployment.version"}),
        ));
    }

    #[test]
    #[should_panic(expected = "builtin.machinePool.replicas: a builtin variable not emulated")]
    fn builtins_that_depend_on_the_topology_are_refused() {
        patched(one_patch(
            "MPT",
            json!({"machinePoolClass": {"names": ["w"]}}),
            json!({"template": "{{ .builtin.machinePool.replicas }}"}),
        ));
    }

    #[test]
    fn a_topology_names_only_worker_classes_of_its_kind() {
        let (class, _) = pool_class(json!([]));
        let workers =
            |key: &str, class: &str| json!({"workers": {key: [{"class": class, "name": "w-0"}]}});
        assert_eq!(check_workers(&class, &workers("machinePools", "w")), Ok(()));
        assert_eq!(
            check_workers(&class, &workers("machineDeployments", "w")),
            Ok(())
        );
        assert_eq!(check_workers(&class, &json!({})), Ok(()));
        let error = check_workers(&class, &workers("machinePools", "x")).expect_err("no class x");
        assert!(error.contains("machinePools \"w-0\""), "{error}");
        let (mut md_only, _) = pool_class(json!([]));
        md_only["spec"]["workers"]
            .as_object_mut()
            .expect("workers")
            .remove("machinePools");
        let error =
            check_workers(&md_only, &workers("machinePools", "w")).expect_err("no pool classes");
        assert!(
            error.contains("no such class in workers.machinePools"),
            "{error}"
        );
    }

    #[test]
    #[should_panic(expected = "matchResources.machinePoolClasses is not understood")]
    fn unknown_selectors_are_refused() {
        patched(one_patch(
            "MPT",
            json!({"machinePoolClasses": {"names": ["w"]}}),
            json!({"variable": "builtin.cluster.name"}),
        ));
    }
}
