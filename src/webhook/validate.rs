//! Validation: what the CRD schema cannot say, as pure functions over the v1beta2 types that
//! return Kubernetes-style field errors (and warnings).
//!
//! - Create and update: the bootstrap timeout parses and lies in (0, 24h]; mounts are clean
//!   absolute paths, unique, and keep off the paths the provider itself uses inside a node;
//!   failure domains are named, unique and sorted; the Docker network name is one Docker
//!   accepts; images look like image references; a KindMachinePool's instance template follows
//!   the KindMachine rules and its `providerIDList` has at most 10000 non-empty entries.
//! - Update: a template's `spec.template.spec` is immutable (except in a ClusterClass dry run);
//!   a KindMachine's spec is immutable except that `providerID` may be set once. A
//!   KindMachinePool's spec may change: a new instance template is how a rollout starts.
//! - On update, an error the stored object already had does not block the update (ratcheting),
//!   so that an object written before a rule existed can still get its finalizer removed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capkind_api::duration;
use capkind_api::v1beta2::{
    FailureDomain, KindClusterSpec, KindMachinePoolSpec, KindMachineSpec, Mount,
};

use super::defaults;
use super::field::FieldError;
use super::kinds::{Kind, Object};

/// The annotation Cluster API's topology controller puts on the objects of a dry run
/// (`topology.IsDryRunRequest`).
pub const DRY_RUN_ANNOTATION: &str = "topology.cluster.x-k8s.io/dry-run";

/// The longest bootstrap timeout: a bootstrap that has not finished in a day will not.
pub const MAX_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The most provider IDs a pool lists (the InfraMachinePool contract's limit).
pub const MAX_PROVIDER_IDS: usize = 10000;

/// The errors that reject a request and the warnings that go back to the client with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Field errors; the request is refused when there is any.
    pub errors: Vec<FieldError>,
    /// Warnings shown to the client (kubectl prints them).
    pub warnings: Vec<String>,
}

impl Verdict {
    fn error(&mut self, error: Option<FieldError>) {
        self.errors.extend(error);
    }
}

/// The checks of a new object.
pub fn create(object: &Object) -> Verdict {
    spec(object)
}

/// The checks of an update from `old` to `new`; `dry_run` is the request's `dryRun`.
pub fn update(old: &Object, new: &Object, dry_run: bool) -> Verdict {
    let mut verdict = spec(new);
    let before = spec(old);
    verdict.errors.retain(|e| !before.errors.contains(e));
    // The stored object was defaulted when written; defaults added since must not count as a
    // change, so both sides are compared in their defaulted form.
    let (mut old, mut new) = (old.clone(), new.clone());
    defaults::object(&mut old);
    defaults::object(&mut new);
    let exempt = is_dry_run_request(dry_run, new.metadata().annotations.as_ref());
    verdict.errors.extend(match (&old, &new) {
        (Object::KindMachine(o), Object::KindMachine(n)) => kind_machine_update(&o.spec, &n.spec),
        (Object::KindMachineTemplate(o), Object::KindMachineTemplate(n)) => template_update(
            Kind::KindMachineTemplate,
            &o.spec.template.spec,
            &n.spec.template.spec,
            exempt,
        ),
        (Object::KindClusterTemplate(o), Object::KindClusterTemplate(n)) => template_update(
            Kind::KindClusterTemplate,
            &o.spec.template.spec,
            &n.spec.template.spec,
            exempt,
        ),
        (Object::KindMachinePoolTemplate(o), Object::KindMachinePoolTemplate(n)) => {
            template_update(
                Kind::KindMachinePoolTemplate,
                &o.spec.template.spec,
                &n.spec.template.spec,
                exempt,
            )
        }
        _ => Vec::new(),
    });
    verdict
}

fn spec(object: &Object) -> Verdict {
    match object {
        Object::KindCluster(o) => kind_cluster_spec(&o.spec, "spec"),
        Object::KindClusterTemplate(o) => {
            kind_cluster_spec(&o.spec.template.spec, "spec.template.spec")
        }
        Object::KindMachine(o) => kind_machine_spec(&o.spec, "spec"),
        Object::KindMachineTemplate(o) => {
            kind_machine_spec(&o.spec.template.spec, "spec.template.spec")
        }
        Object::KindMachinePool(o) => kind_machine_pool_spec(&o.spec, "spec"),
        Object::KindMachinePoolTemplate(o) => {
            kind_machine_pool_spec(&o.spec.template.spec, "spec.template.spec")
        }
    }
}

/// Whether a request is a ClusterClass dry run (CAPI's `topology.IsDryRunRequest`): `dryRun`
/// set and the object annotated with [`DRY_RUN_ANNOTATION`].
pub fn is_dry_run_request(dry_run: bool, annotations: Option<&BTreeMap<String, String>>) -> bool {
    dry_run && annotations.is_some_and(|a| a.contains_key(DRY_RUN_ANNOTATION))
}

/// A KindCluster spec (or a template's), its fields under `base`.
pub fn kind_cluster_spec(spec: &KindClusterSpec, base: &str) -> Verdict {
    let mut v = Verdict::default();
    if let Some(network) = &spec.network {
        v.error(network_name(network, format!("{base}.network")));
    }
    v.errors.extend(failure_domains(
        &spec.failure_domains,
        &format!("{base}.failureDomains"),
    ));
    v
}

/// A KindMachine spec (or a template's), its fields under `base`.
pub fn kind_machine_spec(spec: &KindMachineSpec, base: &str) -> Verdict {
    let mut v = Verdict::default();
    v.error(bootstrap_timeout(
        &spec.bootstrap_timeout,
        format!("{base}.bootstrapTimeout"),
    ));
    if let Some(image) = &spec.custom_image {
        let path = format!("{base}.customImage");
        v.error(image_reference(image, &path));
        if image_problem(image).is_none() && !has_tag_or_digest(image) {
            v.warnings.push(format!(
                "{path}: {image:?} names no tag, so Docker takes :latest, which can change under a running cluster"
            ));
        }
    }
    for (i, image) in spec.pre_load_images.iter().enumerate() {
        v.error(image_reference(
            image,
            &format!("{base}.preLoadImages[{i}]"),
        ));
    }
    v.errors
        .extend(mounts(&spec.extra_mounts, &format!("{base}.extraMounts")));
    v
}

/// A KindMachinePool spec (or a template's), its fields under `base`: the instances' template by
/// the KindMachine rules, and the provider ID list.
pub fn kind_machine_pool_spec(spec: &KindMachinePoolSpec, base: &str) -> Verdict {
    let mut v = kind_machine_spec(&spec.template.machine_spec(), &format!("{base}.template"));
    v.errors.extend(provider_id_list(
        &spec.provider_id_list,
        &format!("{base}.providerIDList"),
    ));
    v
}

fn provider_id_list(ids: &[String], base: &str) -> Vec<FieldError> {
    let too_many = (ids.len() > MAX_PROVIDER_IDS)
        .then(|| FieldError::too_many(base, ids.len(), MAX_PROVIDER_IDS));
    let empty = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| id.is_empty())
        .map(|(i, _)| {
            FieldError::required(format!("{base}[{i}]"), "a provider ID must not be empty")
        });
    too_many.into_iter().chain(empty).collect()
}

fn bootstrap_timeout(value: &str, path: String) -> Option<FieldError> {
    let detail = match duration::parse(value) {
        Err(_) => "must be a duration such as 5m, 90s or 1h30m",
        Ok(d) if d.is_zero() => "must be more than 0",
        Ok(d) if d > MAX_BOOTSTRAP_TIMEOUT => "must be at most 24h",
        Ok(_) => return None,
    };
    Some(FieldError::invalid(path, &value, detail))
}

/// Not empty and no whitespace: the rest is Docker's to judge when it pulls.
fn image_problem(image: &str) -> Option<&'static str> {
    if image.is_empty() {
        Some("must not be empty")
    } else if image.chars().any(char::is_whitespace) {
        Some("must not contain whitespace")
    } else {
        None
    }
}

fn image_reference(image: &str, path: &str) -> Option<FieldError> {
    image_problem(image).map(|p| {
        FieldError::invalid(
            path,
            &image,
            format!("must be an image reference such as kindest/node:v1.31.0: {p}"),
        )
    })
}

fn has_tag_or_digest(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.contains(':') || image.contains('@')
}

/// Docker's rule for network names, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; `host` and `none` are
/// Docker's own networks, which give a container no address on a network of its own.
fn network_name(name: &str, path: String) -> Option<FieldError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !(first_ok && rest_ok) {
        return Some(FieldError::invalid(
            path,
            &name,
            "must be a Docker network name: a letter or digit, then letters, digits, '_', '.' or '-'",
        ));
    }
    matches!(name, "host" | "none").then(|| {
        FieldError::invalid(
            path,
            &name,
            "is a network of Docker's own that gives nodes no address of their own; name a user-defined network",
        )
    })
}

fn failure_domains(domains: &[FailureDomain], base: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, fd) in domains.iter().enumerate() {
        let path = format!("{base}[{i}].name");
        if fd.name.is_empty() {
            errors.push(FieldError::required(path, "a failure domain needs a name"));
        } else if !seen.insert(fd.name.as_str()) {
            errors.push(FieldError::duplicate(path, &fd.name));
        }
    }
    let names: Vec<&str> = domains.iter().map(|fd| fd.name.as_str()).collect();
    if let Some(w) = names.windows(2).find(|w| w[0] > w[1]) {
        errors.push(FieldError::invalid(
            base,
            &names,
            format!(
                "must be sorted by name: {:?} must come before {:?}",
                w[1], w[0]
            ),
        ));
    }
    errors
}

/// A path the provider uses inside every node, which a mount must not cover.
struct Reserved {
    path: &'static str,
    /// A mount below the path is refused too (it belongs to capkind alone).
    below_too: bool,
    what: &'static str,
}

/// Kept in step with src/node (the /var volume, the /tmp and /run tmpfs, /lib/modules) and the
/// bootstrap's directories (src/controllers/kindmachine/bootstrap.rs). Below /var, /run and
/// /tmp mounts are fine (kind users mount /var/local-path-provisioner, for one); at or above
/// them a mount would hide what the node needs.
const RESERVED: [Reserved; 6] = [
    Reserved {
        path: "/var",
        below_too: false,
        what: "the node's own volume (containerd's images, the kubelet's and etcd's data)",
    },
    Reserved {
        path: "/run",
        below_too: false,
        what: "the node's tmpfs for systemd and the bootstrap",
    },
    Reserved {
        path: "/tmp",
        below_too: false,
        what: "the node's tmpfs",
    },
    Reserved {
        path: "/lib/modules",
        below_too: false,
        what: "mounted read-only from the host for the kernel modules",
    },
    Reserved {
        path: "/var/lib/capkind",
        below_too: true,
        what: "where capkind keeps the node's bootstrap state",
    },
    Reserved {
        path: "/run/capkind",
        below_too: true,
        what: "where capkind's bootstrap script keeps its locks while it runs",
    },
];

/// Why `path` is not a clean absolute path (what Go's `path.Clean` would leave unchanged).
fn path_problem(path: &str) -> Option<&'static str> {
    if !path.starts_with('/') {
        Some("must be an absolute path")
    } else if path.len() > 1 && path.ends_with('/') {
        Some("must not end with /")
    } else if path.contains("//") {
        Some("must not contain //")
    } else if path.split('/').any(|s| s == "..") {
        Some("must not contain .. segments")
    } else if path.split('/').any(|s| s == ".") {
        Some("must not contain . segments")
    } else {
        None
    }
}

fn container_path_problem(path: &str) -> Option<String> {
    if let Some(p) = path_problem(path) {
        return Some(p.to_string());
    }
    if path == "/" {
        return Some("must not be /, the node's root".to_string());
    }
    let covers = |r: &Reserved| {
        let at_or_above = r.path == path || r.path.starts_with(&format!("{path}/"));
        at_or_above || (r.below_too && path.starts_with(&format!("{}/", r.path)))
    };
    RESERVED.iter().find(|r| covers(r)).map(|r| {
        let relation = if r.below_too {
            "at, above or under"
        } else {
            "at or above"
        };
        format!("must not be {relation} {}, {}", r.path, r.what)
    })
}

fn mounts(mounts: &[Mount], base: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let container = format!("{base}[{i}].containerPath");
        if let Some(why) = container_path_problem(&m.container_path) {
            errors.push(FieldError::invalid(container, &m.container_path, why));
        } else if !seen.insert(m.container_path.as_str()) {
            errors.push(FieldError::duplicate(container, &m.container_path));
        }
        if let Some(why) = path_problem(&m.host_path) {
            errors.push(FieldError::invalid(
                format!("{base}[{i}].hostPath"),
                &m.host_path,
                why,
            ));
        }
    }
    errors
}

/// A spec's top-level fields as JSON.
fn fields(spec: &impl serde::Serialize) -> BTreeMap<String, serde_json::Value> {
    match serde_json::to_value(spec) {
        Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// The fields that differ between two specs, with their new values (null when removed).
fn changed_fields(
    old: &impl serde::Serialize,
    new: &impl serde::Serialize,
) -> BTreeMap<String, serde_json::Value> {
    let (old, new) = (fields(old), fields(new));
    old.keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| (k.clone(), new.get(k).cloned().unwrap_or_default()))
        .collect()
}

/// A KindMachine's spec may not change, except `providerID` from empty to a value (the
/// controller sets it once the node runs).
pub fn kind_machine_update(old: &KindMachineSpec, new: &KindMachineSpec) -> Vec<FieldError> {
    changed_fields(old, new)
        .into_iter()
        .filter(|(field, _)| !(field == "providerID" && old.provider_id.is_empty()))
        .map(|(field, value)| {
            let detail = if field == "providerID" {
                "field is immutable once set"
            } else {
                "field is immutable"
            };
            FieldError::invalid(format!("spec.{field}"), &value, detail)
        })
        .collect()
}

/// A template's `spec.template.spec` may not change, except in a ClusterClass dry run
/// (`dry_run_exempt`), where the topology controller checks what a rebase would do.
pub fn template_update<S: serde::Serialize + PartialEq>(
    kind: Kind,
    old: &S,
    new: &S,
    dry_run_exempt: bool,
) -> Vec<FieldError> {
    if dry_run_exempt || old == new {
        return Vec::new();
    }
    let user = match kind {
        Kind::KindClusterTemplate | Kind::KindMachinePoolTemplate => "the ClusterClass",
        _ => "the MachineDeployment or control plane",
    };
    vec![FieldError::invalid(
        "spec.template.spec",
        &changed_fields(old, new),
        format!(
            "{} spec.template.spec is immutable; create a new template and point {user} at it",
            kind.as_str()
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine(spec: serde_json::Value) -> KindMachineSpec {
        serde_json::from_value(spec).expect("a KindMachine spec")
    }

    fn cluster(spec: serde_json::Value) -> KindClusterSpec {
        serde_json::from_value(spec).expect("a KindCluster spec")
    }

    fn messages(v: &Verdict) -> Vec<String> {
        v.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn bootstrap_timeouts() {
        let cases = [
            ("5m", None),
            ("24h", None),
            ("1h30m", None),
            (
                "5 m",
                Some(
                    r#"spec.bootstrapTimeout: Invalid value: "5 m": must be a duration such as 5m, 90s or 1h30m"#,
                ),
            ),
            (
                "",
                Some(
                    r#"spec.bootstrapTimeout: Invalid value: "": must be a duration such as 5m, 90s or 1h30m"#,
                ),
            ),
            (
                "0s",
                Some(r#"spec.bootstrapTimeout: Invalid value: "0s": must be more than 0"#),
            ),
            (
                "24h1s",
                Some(r#"spec.bootstrapTimeout: Invalid value: "24h1s": must be at most 24h"#),
            ),
        ];
        for (timeout, expected) in cases {
            let v = kind_machine_spec(&machine(json!({"bootstrapTimeout": timeout})), "spec");
            assert_eq!(
                messages(&v),
                Vec::from_iter(expected.map(String::from)),
                "{timeout:?}"
            );
        }
    }

    #[test]
    fn images() {
        let cases = [
            (
                json!({"customImage": "kindest/node:v1.31.0", "preLoadImages": ["busybox:1.36"]}),
                vec![],
            ),
            (
                json!({"customImage": "", "preLoadImages": ["ok:1", "bad image"]}),
                vec![
                    r#"spec.customImage: Invalid value: "": must be an image reference such as kindest/node:v1.31.0: must not be empty"#,
                    r#"spec.preLoadImages[1]: Invalid value: "bad image": must be an image reference such as kindest/node:v1.31.0: must not contain whitespace"#,
                ],
            ),
        ];
        for (spec, expected) in cases {
            let v = kind_machine_spec(&machine(spec.clone()), "spec");
            assert_eq!(messages(&v), expected, "{spec}");
            assert!(v.warnings.is_empty(), "{spec}: {:?}", v.warnings);
        }
    }

    #[test]
    fn an_image_without_a_tag_is_allowed_with_a_warning() {
        for (image, warns) in [
            ("registry:5000/node", true),
            ("registry:5000/node:v1", false),
            ("node@sha256:abc", false),
        ] {
            let v = kind_machine_spec(&machine(json!({"customImage": image})), "spec");
            assert!(v.errors.is_empty(), "{image}");
            let expected = format!(
                "spec.customImage: {image:?} names no tag, so Docker takes :latest, which can change under a running cluster"
            );
            assert_eq!(
                v.warnings,
                Vec::from_iter(warns.then_some(expected)),
                "{image}"
            );
        }
    }

    #[test]
    fn mounts() {
        let m = |container: &str, host: &str| json!({"containerPath": container, "hostPath": host});
        let cases = [
            (
                vec![
                    m("/data", "/srv/data"),
                    m("/var/local-path-provisioner", "/"),
                    m("/run/foo", "/tmp/x"),
                ],
                vec![],
            ),
            (
                vec![m("data", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "data": must be an absolute path"#,
                ],
            ),
            (
                vec![m("/data/", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/data/": must not end with /"#,
                ],
            ),
            (
                vec![m("/a//b", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/a//b": must not contain //"#,
                ],
            ),
            (
                vec![m("/a/../b", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/a/../b": must not contain .. segments"#,
                ],
            ),
            (
                vec![m("/a/./b", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/a/./b": must not contain . segments"#,
                ],
            ),
            (
                vec![m("/", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/": must not be /, the node's root"#,
                ],
            ),
            (
                vec![m("/var", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/var": must not be at or above /var, the node's own volume (containerd's images, the kubelet's and etcd's data)"#,
                ],
            ),
            (
                vec![m("/lib", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/lib": must not be at or above /lib/modules, mounted read-only from the host for the kernel modules"#,
                ],
            ),
            (
                vec![m("/var/lib", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/var/lib": must not be at, above or under /var/lib/capkind, where capkind keeps the node's bootstrap state"#,
                ],
            ),
            (
                vec![m("/var/lib/capkind/state", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/var/lib/capkind/state": must not be at, above or under /var/lib/capkind, where capkind keeps the node's bootstrap state"#,
                ],
            ),
            (
                vec![m("/run", "/x")],
                vec![
                    r#"spec.extraMounts[0].containerPath: Invalid value: "/run": must not be at or above /run, the node's tmpfs for systemd and the bootstrap"#,
                ],
            ),
            (
                vec![m("/data", "/x"), m("/data", "/y")],
                vec![r#"spec.extraMounts[1].containerPath: Duplicate value: "/data""#],
            ),
            (
                vec![m("/data", "srv/../x")],
                vec![
                    r#"spec.extraMounts[0].hostPath: Invalid value: "srv/../x": must be an absolute path"#,
                ],
            ),
            (
                vec![m("/data", "/srv/../x")],
                vec![
                    r#"spec.extraMounts[0].hostPath: Invalid value: "/srv/../x": must not contain .. segments"#,
                ],
            ),
        ];
        for (mounts, expected) in cases {
            let spec = machine(json!({"extraMounts": mounts}));
            let v = kind_machine_spec(&spec, "spec");
            assert_eq!(messages(&v), expected, "{mounts:?}");
        }
    }

    #[test]
    fn template_fields_are_named_under_spec_template_spec() {
        let v = kind_machine_spec(
            &machine(json!({"bootstrapTimeout": "0s"})),
            "spec.template.spec",
        );
        assert_eq!(
            messages(&v),
            [r#"spec.template.spec.bootstrapTimeout: Invalid value: "0s": must be more than 0"#]
        );
    }

    fn pool(spec: serde_json::Value) -> KindMachinePoolSpec {
        serde_json::from_value(spec).expect("a KindMachinePool spec")
    }

    #[test]
    fn pools_follow_the_kind_machine_rules_on_their_template() {
        let spec = pool(json!({"template": {
            "bootstrapTimeout": "0s",
            "customImage": "my/node",
            "preLoadImages": ["bad image"],
            "extraMounts": [{"containerPath": "/var", "hostPath": "/srv"}],
        }}));
        let v = kind_machine_pool_spec(&spec, "spec");
        assert_eq!(
            messages(&v),
            [
                r#"spec.template.bootstrapTimeout: Invalid value: "0s": must be more than 0"#,
                r#"spec.template.preLoadImages[0]: Invalid value: "bad image": must be an image reference such as kindest/node:v1.31.0: must not contain whitespace"#,
                r#"spec.template.extraMounts[0].containerPath: Invalid value: "/var": must not be at or above /var, the node's own volume (containerd's images, the kubelet's and etcd's data)"#,
            ]
        );
        assert_eq!(
            v.warnings,
            [
                r#"spec.template.customImage: "my/node" names no tag, so Docker takes :latest, which can change under a running cluster"#
            ]
        );
        let v = kind_machine_pool_spec(
            &pool(json!({"template": {"bootstrapTimeout": "25h"}})),
            "spec.template.spec",
        );
        assert_eq!(
            messages(&v),
            [
                r#"spec.template.spec.template.bootstrapTimeout: Invalid value: "25h": must be at most 24h"#
            ]
        );
    }

    #[test]
    fn provider_id_lists() {
        let ids = |n: usize| {
            (0..n)
                .map(|i| format!("kind://c/kind/n{i}"))
                .collect::<Vec<_>>()
        };
        let cases = [
            (ids(0), vec![]),
            (ids(MAX_PROVIDER_IDS), vec![]),
            (
                ids(MAX_PROVIDER_IDS + 1),
                vec![
                    "spec.providerIDList: Too many: 10001: must have at most 10000 items"
                        .to_string(),
                ],
            ),
            (
                vec!["kind://c/kind/a".into(), String::new(), String::new()],
                vec![
                    "spec.providerIDList[1]: Required value: a provider ID must not be empty"
                        .to_string(),
                    "spec.providerIDList[2]: Required value: a provider ID must not be empty"
                        .into(),
                ],
            ),
        ];
        for (list, expected) in cases {
            let spec = KindMachinePoolSpec {
                provider_id_list: list.clone(),
                ..Default::default()
            };
            assert_eq!(
                messages(&kind_machine_pool_spec(&spec, "spec")),
                expected,
                "{}",
                list.len()
            );
        }
    }

    #[test]
    fn a_pools_spec_may_change_and_its_templates_may_not() {
        let pool_object = |image: &str, ids: serde_json::Value| {
            object(
                Kind::KindMachinePool,
                json!({"providerID": "kind://c/pool/p", "providerIDList": ids,
                       "template": {"customImage": image}}),
                json!({}),
            )
        };
        let old = pool_object("node:a", json!([]));
        let new = pool_object("node:b", json!(["kind://c/kind/n"]));
        assert_eq!(update(&old, &new, false), Verdict::default());

        let template = |image: &str, annotations: serde_json::Value| {
            object(
                Kind::KindMachinePoolTemplate,
                json!({"template": {"spec": {"template": {"customImage": image}}}}),
                annotations,
            )
        };
        assert_eq!(
            messages(&update(
                &template("node:a", json!({})),
                &template("node:b", json!({})),
                false
            )),
            [
                r#"spec.template.spec: Invalid value: {"template":{"bootstrapTimeout":"5m","customImage":"node:b"}}: KindMachinePoolTemplate spec.template.spec is immutable; create a new template and point the ClusterClass at it"#
            ]
        );
        let dry = json!({DRY_RUN_ANNOTATION: ""});
        assert_eq!(
            update(
                &template("node:a", json!({})),
                &template("node:b", dry),
                true
            ),
            Verdict::default()
        );
    }

    #[test]
    fn networks_and_failure_domains() {
        let fd =
            |names: &[&str]| json!(names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
        let cases = [
            (
                json!({"network": "kind", "failureDomains": fd(&["a", "b", "c"])}),
                vec![],
            ),
            (json!({"network": "my_net.1-x"}), vec![]),
            (
                json!({"network": "-kind"}),
                vec![
                    r#"spec.network: Invalid value: "-kind": must be a Docker network name: a letter or digit, then letters, digits, '_', '.' or '-'"#,
                ],
            ),
            (
                json!({"network": "my net"}),
                vec![
                    r#"spec.network: Invalid value: "my net": must be a Docker network name: a letter or digit, then letters, digits, '_', '.' or '-'"#,
                ],
            ),
            (
                json!({"network": "host"}),
                vec![
                    r#"spec.network: Invalid value: "host": is a network of Docker's own that gives nodes no address of their own; name a user-defined network"#,
                ],
            ),
            (
                json!({"failureDomains": fd(&["b", "a"])}),
                vec![
                    r#"spec.failureDomains: Invalid value: ["b","a"]: must be sorted by name: "a" must come before "b""#,
                ],
            ),
            (
                json!({"failureDomains": fd(&["a", "a", ""])}),
                vec![
                    r#"spec.failureDomains[1].name: Duplicate value: "a""#,
                    "spec.failureDomains[2].name: Required value: a failure domain needs a name",
                    r#"spec.failureDomains: Invalid value: ["a","a",""]: must be sorted by name: "" must come before "a""#,
                ],
            ),
        ];
        for (spec, expected) in cases {
            let v = kind_cluster_spec(&cluster(spec.clone()), "spec");
            assert_eq!(messages(&v), expected, "{spec}");
        }
    }

    fn object(kind: Kind, spec: serde_json::Value, annotations: serde_json::Value) -> Object {
        let value = json!({"metadata": {"name": "o", "annotations": annotations}, "spec": spec});
        Object::from_value(kind, value).expect("object")
    }

    #[test]
    fn kind_machine_updates() {
        let base = json!({"customImage": "kindest/node:v1.31.0", "bootstrapTimeout": "5m"});
        let with = |patch: serde_json::Value| {
            let mut spec = base.clone();
            json_patch::merge(&mut spec, &patch);
            spec
        };
        let cases = [
            (
                base.clone(),
                with(json!({"providerID": "kind://c/kind/m"})),
                vec![],
            ),
            (
                with(json!({"providerID": "kind://c/kind/m"})),
                with(json!({"providerID": "kind://c/kind/n"})),
                vec![
                    r#"spec.providerID: Invalid value: "kind://c/kind/n": field is immutable once set"#,
                ],
            ),
            (
                base.clone(),
                with(json!({"customImage": "kindest/node:v1.32.0", "bootstrapTimeout": "10m"})),
                vec![
                    r#"spec.bootstrapTimeout: Invalid value: "10m": field is immutable"#,
                    r#"spec.customImage: Invalid value: "kindest/node:v1.32.0": field is immutable"#,
                ],
            ),
            // The stored object predates the default: not a change.
            (
                json!({"bootstrapTimeout": ""}),
                json!({"bootstrapTimeout": "5m"}),
                vec![],
            ),
        ];
        for (old, new, expected) in cases {
            let (o, n) = (
                object(Kind::KindMachine, old.clone(), json!({})),
                object(Kind::KindMachine, new.clone(), json!({})),
            );
            assert_eq!(messages(&update(&o, &n, false)), expected, "{old} -> {new}");
        }
    }

    #[test]
    fn template_specs_are_immutable_except_in_dry_runs() {
        let dry = json!({DRY_RUN_ANNOTATION: ""});
        let machine_template = |timeout: &str, annotations: &serde_json::Value| {
            object(
                Kind::KindMachineTemplate,
                json!({"template": {"spec": {"bootstrapTimeout": timeout}}}),
                annotations.clone(),
            )
        };
        let changed = r#"spec.template.spec: Invalid value: {"bootstrapTimeout":"10m"}: KindMachineTemplate spec.template.spec is immutable; create a new template and point the MachineDeployment or control plane at it"#;
        let cases = [
            (
                machine_template("5m", &json!({})),
                machine_template("5m", &json!({"new": "label"})),
                false,
                vec![],
            ),
            (
                machine_template("5m", &json!({})),
                machine_template("10m", &json!({})),
                false,
                vec![changed],
            ),
            // Annotated but not a dry run, and a dry run not annotated: both refused.
            (
                machine_template("5m", &json!({})),
                machine_template("10m", &dry),
                false,
                vec![changed],
            ),
            (
                machine_template("5m", &json!({})),
                machine_template("10m", &json!({})),
                true,
                vec![changed],
            ),
            (
                machine_template("5m", &json!({})),
                machine_template("10m", &dry),
                true,
                vec![],
            ),
        ];
        for (i, (old, new, dry_run, expected)) in cases.into_iter().enumerate() {
            assert_eq!(messages(&update(&old, &new, dry_run)), expected, "case {i}");
        }
        let cluster_template = |network: &str| {
            object(
                Kind::KindClusterTemplate,
                json!({"template": {"spec": {"network": network}}}),
                json!({}),
            )
        };
        assert_eq!(
            messages(&update(
                &cluster_template("a"),
                &cluster_template("b"),
                false
            )),
            [
                r#"spec.template.spec: Invalid value: {"network":"b"}: KindClusterTemplate spec.template.spec is immutable; create a new template and point the ClusterClass at it"#
            ]
        );
    }

    #[test]
    fn updates_are_not_blocked_by_errors_the_stored_object_already_had() {
        let unsorted = json!({"failureDomains": [{"name": "b"}, {"name": "a"}]});
        let old = object(Kind::KindCluster, unsorted.clone(), json!({}));
        let new = object(Kind::KindCluster, unsorted, json!({"finalizer": "gone"}));
        assert_eq!(update(&old, &new, false), Verdict::default());
        let worse = object(
            Kind::KindCluster,
            json!({"failureDomains": [{"name": "b"}, {"name": "a"}], "network": "a b"}),
            json!({}),
        );
        assert_eq!(
            messages(&update(&old, &worse, false)),
            [
                r#"spec.network: Invalid value: "a b": must be a Docker network name: a letter or digit, then letters, digits, '_', '.' or '-'"#
            ]
        );
        assert_eq!(messages(&create(&new)).len(), 1);
    }
}
