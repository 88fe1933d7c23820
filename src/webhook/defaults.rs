//! Defaulting: what the mutating webhooks fill in, as pure functions over the v1beta2 types,
//! and the JSON patch that takes a request's object to its defaulted form.
//!
//! The CRD schema defaults most fields already (the API server applies those before calling
//! webhooks); these are the defaults the schema cannot give: a whole object made up
//! (`controlPlaneEndpoint: {port: 6443}`), an empty string replaced, and fields of list items.

use capkind_api::v1beta2::{
    ApiEndpoint, DEFAULT_API_SERVER_PORT, DEFAULT_BOOTSTRAP_TIMEOUT, DEFAULT_LB_IMAGE_REPOSITORY,
    DEFAULT_LB_IMAGE_TAG, KindClusterSpec, KindMachinePoolSpec, KindMachineSpec,
};
use json_patch::{Patch, PatchOperation};

use super::kinds::Object;

/// Fills in a KindCluster's defaults: the control-plane port 6443 (making the endpoint
/// `{port: 6443}` when there is none, as the controller fills in the host), the load-balancer
/// image when empty, and `controlPlane: false` on failure domains that do not say.
pub fn kind_cluster_spec(spec: &mut KindClusterSpec) {
    let endpoint = spec
        .control_plane_endpoint
        .get_or_insert_with(ApiEndpoint::default);
    endpoint.port.get_or_insert(DEFAULT_API_SERVER_PORT);
    let lb = &mut spec.load_balancer;
    if lb.image_repository.is_empty() {
        lb.image_repository = DEFAULT_LB_IMAGE_REPOSITORY.to_string();
    }
    if lb.image_tag.is_empty() {
        lb.image_tag = DEFAULT_LB_IMAGE_TAG.to_string();
    }
    for fd in &mut spec.failure_domains {
        fd.control_plane.get_or_insert(false);
    }
}

/// Fills in a KindMachine's defaults: a bootstrap timeout of 5m when empty.
pub fn kind_machine_spec(spec: &mut KindMachineSpec) {
    bootstrap_timeout(&mut spec.bootstrap_timeout);
}

/// Fills in a KindMachinePool's defaults: those of a KindMachine on its instances' template.
pub fn kind_machine_pool_spec(spec: &mut KindMachinePoolSpec) {
    bootstrap_timeout(&mut spec.template.bootstrap_timeout);
}

fn bootstrap_timeout(timeout: &mut String) {
    if timeout.is_empty() {
        *timeout = DEFAULT_BOOTSTRAP_TIMEOUT.to_string();
    }
}

/// Defaults an object of any served kind; templates get the defaults of the object they stamp
/// out, on `spec.template.spec`.
pub fn object(object: &mut Object) {
    match object {
        Object::KindCluster(o) => kind_cluster_spec(&mut o.spec),
        Object::KindClusterTemplate(o) => kind_cluster_spec(&mut o.spec.template.spec),
        Object::KindMachine(o) => kind_machine_spec(&mut o.spec),
        Object::KindMachineTemplate(o) => kind_machine_spec(&mut o.spec.template.spec),
        Object::KindMachinePool(o) => kind_machine_pool_spec(&mut o.spec),
        Object::KindMachinePoolTemplate(o) => kind_machine_pool_spec(&mut o.spec.template.spec),
    }
}

/// The patch from the request's `spec` (as sent, `None` when absent) to the defaulted spec.
///
/// Only additions and replacements: the types leave empty values out when they serialize
/// (an empty `providerID`, an empty list), which a diff would read as removals that change
/// nothing. Through an API server, which applies the schema defaults first, what is left is
/// exactly what [`object`] changed, and an object already defaulted gets an empty patch.
pub fn spec_patch(
    raw_spec: Option<&serde_json::Value>,
    defaulted_spec: &serde_json::Value,
) -> Patch {
    let before = match raw_spec {
        Some(spec) => serde_json::json!({ "spec": spec }),
        None => serde_json::json!({}),
    };
    let after = serde_json::json!({ "spec": defaulted_spec });
    let ops = json_patch::diff(&before, &after)
        .0
        .into_iter()
        .filter(|op| !matches!(op, PatchOperation::Remove(_)))
        .collect();
    Patch(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::kinds::Kind;
    use serde_json::json;

    fn cluster(value: serde_json::Value) -> KindClusterSpec {
        serde_json::from_value(value).expect("a KindCluster spec")
    }

    #[test]
    fn kind_cluster_defaults() {
        let full = json!({
            "controlPlaneEndpoint": {"host": "10.0.0.2", "port": 7443},
            "loadBalancer": {"imageRepository": "r", "imageTag": "t"},
            "failureDomains": [{"name": "a", "controlPlane": true}],
        });
        let cases = [
            (
                json!({}),
                json!({
                    "controlPlaneEndpoint": {"port": 6443},
                    "loadBalancer": {"imageRepository": "kindest", "imageTag": "v20230606-42a2262b"},
                }),
            ),
            (
                json!({
                    "controlPlaneEndpoint": {"host": "10.0.0.2"},
                    "loadBalancer": {"imageRepository": "", "imageTag": ""},
                    "failureDomains": [{"name": "a"}, {"name": "b", "controlPlane": true}],
                }),
                json!({
                    "controlPlaneEndpoint": {"host": "10.0.0.2", "port": 6443},
                    "loadBalancer": {"imageRepository": "kindest", "imageTag": "v20230606-42a2262b"},
                    "failureDomains": [{"name": "a", "controlPlane": false}, {"name": "b", "controlPlane": true}],
                }),
            ),
            (full.clone(), full),
        ];
        for (input, expected) in cases {
            let mut spec = cluster(input.clone());
            kind_cluster_spec(&mut spec);
            assert_eq!(
                serde_json::to_value(&spec).expect("json"),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn kind_machine_defaults() {
        let cases = [("", "5m"), ("90s", "90s")];
        for (input, expected) in cases {
            let mut spec = KindMachineSpec {
                bootstrap_timeout: input.into(),
                ..Default::default()
            };
            kind_machine_spec(&mut spec);
            assert_eq!(spec.bootstrap_timeout, expected, "{input:?}");
        }
    }

    #[test]
    fn kind_machine_pool_defaults() {
        let cases = [
            (json!({}), json!({"template": {"bootstrapTimeout": "5m"}})),
            (
                json!({"template": {"bootstrapTimeout": ""}}),
                json!({"template": {"bootstrapTimeout": "5m"}}),
            ),
            (
                json!({"providerIDList": ["a"], "template": {"bootstrapTimeout": "90s"}}),
                json!({"providerIDList": ["a"], "template": {"bootstrapTimeout": "90s"}}),
            ),
        ];
        for (input, expected) in cases {
            let mut spec: KindMachinePoolSpec =
                serde_json::from_value(input.clone()).expect("a KindMachinePool spec");
            kind_machine_pool_spec(&mut spec);
            assert_eq!(
                serde_json::to_value(&spec).expect("json"),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn templates_get_the_defaults_on_their_template_spec() {
        let mut o = Object::from_value(
            Kind::KindMachineTemplate,
            json!({"metadata": {"name": "t"}, "spec": {"template": {"spec": {"bootstrapTimeout": ""}}}}),
        )
        .expect("template");
        object(&mut o);
        assert_eq!(
            o.spec_value(),
            json!({"template": {"spec": {"bootstrapTimeout": "5m"}}})
        );
        let mut c = Object::from_value(
            Kind::KindClusterTemplate,
            json!({"metadata": {"name": "t"}, "spec": {"template": {"spec": {}}}}),
        )
        .expect("template");
        object(&mut c);
        assert_eq!(
            c.spec_value()
                .pointer("/template/spec/controlPlaneEndpoint"),
            Some(&json!({"port": 6443}))
        );
        let mut p = Object::from_value(
            Kind::KindMachinePoolTemplate,
            json!({"metadata": {"name": "t"}, "spec": {"template": {"spec": {"template": {"bootstrapTimeout": ""}}}}}),
        )
        .expect("template");
        object(&mut p);
        assert_eq!(
            p.spec_value(),
            json!({"template": {"spec": {"template": {"bootstrapTimeout": "5m"}}}})
        );
    }

    #[test]
    fn patches_add_only_what_defaulting_changed() {
        let defaulted = |raw: &serde_json::Value| {
            let mut spec = cluster(raw.clone());
            kind_cluster_spec(&mut spec);
            serde_json::to_value(&spec).expect("json")
        };
        let lb = json!({"imageRepository": "kindest", "imageTag": "v20230606-42a2262b"});
        let cases = [
            // As the API server sends it: schema defaults applied, the endpoint missing.
            (
                json!({"loadBalancer": lb, "failureDomains": [{"name": "a"}]}),
                json!([
                    {"op": "add", "path": "/spec/controlPlaneEndpoint", "value": {"port": 6443}},
                    {"op": "add", "path": "/spec/failureDomains/0/controlPlane", "value": false},
                ]),
            ),
            (
                json!({"controlPlaneEndpoint": {"host": "h"}, "loadBalancer": {"imageRepository": "", "imageTag": "t"}}),
                json!([
                    {"op": "add", "path": "/spec/controlPlaneEndpoint/port", "value": 6443},
                    {"op": "replace", "path": "/spec/loadBalancer/imageRepository", "value": "kindest"},
                ]),
            ),
            // Already defaulted, with empty values the types leave out: no patch.
            (
                json!({"controlPlaneEndpoint": {"port": 6443}, "loadBalancer": lb, "failureDomains": [], "network": "kind"}),
                json!([]),
            ),
        ];
        for (raw, expected) in cases {
            let patch = spec_patch(Some(&raw), &defaulted(&raw));
            assert_eq!(
                serde_json::to_value(&patch).expect("json"),
                expected,
                "{raw}"
            );
        }
    }

    #[test]
    fn a_missing_spec_is_added_whole() {
        let patch = spec_patch(None, &json!({"bootstrapTimeout": "5m"}));
        assert_eq!(
            serde_json::to_value(&patch).expect("json"),
            json!([{"op": "add", "path": "/spec", "value": {"bootstrapTimeout": "5m"}}])
        );
    }
}
