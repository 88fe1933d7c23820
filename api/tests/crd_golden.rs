//! The committed CRDs under config/crd are exactly what the generator produces from the types.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/crd");
    for crd in capkind_api::crds::all() {
        let path = config
            .join("bases")
            .join(capkind_api::crds::file_name(&crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p capkind-api --bin crdgen`",
                path.display()
            )
        });
        let generated = capkind_api::crds::to_yaml(&crd).expect("serialize CRD");
        assert!(
            committed == generated,
            "{} is stale; run `cargo run -p capkind-api --bin crdgen` and commit the result",
            path.display()
        );
    }
    let kustomization =
        std::fs::read_to_string(config.join("kustomization.yaml")).expect("read kustomization");
    assert_eq!(
        kustomization,
        capkind_api::crds::kustomization(),
        "config/crd/kustomization.yaml is stale"
    );
}

#[test]
fn crds_follow_the_cluster_api_naming_and_contract_rules() {
    let names: Vec<String> = capkind_api::crds::all()
        .iter()
        .map(|c| c.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "kindclusters.infrastructure.cluster.x-k8s.io",
            "kindclustertemplates.infrastructure.cluster.x-k8s.io",
            "kindmachines.infrastructure.cluster.x-k8s.io",
            "kindmachinetemplates.infrastructure.cluster.x-k8s.io",
            "kindmachinepools.infrastructure.cluster.x-k8s.io",
            "kindmachinepooltemplates.infrastructure.cluster.x-k8s.io",
        ]
    );
    for crd in capkind_api::crds::all() {
        let labels = crd.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("cluster.x-k8s.io/v1beta1").map(String::as_str),
            Some("v1beta1")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.clone().unwrap_or_default(),
            ["cluster-api"]
        );
        assert!(
            crd.spec
                .names
                .list_kind
                .as_deref()
                .is_some_and(|k| k.ends_with("List"))
        );
    }
}

#[test]
fn no_enum_contains_null() {
    // A 1.20 API server misreads a whole CRD whose schema has `null` in an enum.
    fn walk(v: &serde_json::Value, path: &str) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(items)) = map.get("enum") {
                    assert!(
                        !items.iter().any(|i| i.is_null()),
                        "enum with null at {path}"
                    );
                }
                for (k, child) in map {
                    walk(child, &format!("{path}.{k}"));
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, path)),
            _ => {}
        }
    }
    for crd in capkind_api::crds::all() {
        walk(
            &serde_json::to_value(&crd).expect("json"),
            &crd.spec.names.kind,
        );
    }
}
