//! Properties of the v1beta1 <-> v1beta2 conversion on arbitrary objects of every kind: both
//! round trips give back the object exactly, without the conversion-data annotation; JSON
//! conversion agrees with the typed one; and a change made between the two conversions shows,
//! whatever the annotation held.

use std::collections::BTreeMap;

use capkind_api::conversion::{self, DATA_ANNOTATION};
use capkind_api::{v1beta1, v1beta2};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    Condition as MetaCondition, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::jiff::Timestamp;
use kube::core::object::{HasSpec, HasStatus};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde::Serialize;
use serde_json::Value;

const V1: &str = "infrastructure.cluster.x-k8s.io/v1beta1";
const V2: &str = "infrastructure.cluster.x-k8s.io/v1beta2";

// ---- Strategies. Small collections keep the suite to a few seconds.

/// Any string, often empty or from a tiny alphabet so that map keys and names collide.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ab]{1,2}", "(?s).{0,6}"]
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..3)
}

/// Whole seconds between 1970 and 2100: Kubernetes writes times to the second.
fn time() -> impl Strategy<Value = Time> {
    (0i64..4_102_444_800).prop_map(|s| Time(Timestamp::from_second(s).expect("in range")))
}

fn owner_reference() -> impl Strategy<Value = OwnerReference> {
    (text(), text(), text(), text(), option::of(any::<bool>())).prop_map(
        |(api_version, kind, name, uid, controller)| OwnerReference {
            api_version,
            kind,
            name,
            uid,
            controller,
            block_owner_deletion: None,
        },
    )
}

/// Object metadata with annotations of all sorts except the conversion's own.
fn object_meta() -> impl Strategy<Value = ObjectMeta> {
    (
        option::of(text()),
        option::of(text()),
        option::of(map()),
        option::of(map()),
        option::of(text()),
        option::of(text()),
        option::of(any::<i64>()),
        option::of(vec(owner_reference(), 0..2)),
        option::of(vec(text(), 0..2)),
        option::of(time()),
    )
        .prop_map(
            |(name, namespace, labels, annotations, uid, rv, generation, owners, fins, created)| {
                ObjectMeta {
                    name,
                    namespace,
                    labels,
                    annotations,
                    uid,
                    resource_version: rv,
                    generation,
                    owner_references: owners,
                    finalizers: fins,
                    creation_timestamp: created,
                    ..ObjectMeta::default()
                }
            },
        )
}

fn template_meta() -> impl Strategy<Value = v1beta1::ObjectMeta> {
    (map(), map()).prop_map(|(labels, annotations)| v1beta1::ObjectMeta {
        labels,
        annotations,
    })
}

fn v1beta1_condition() -> impl Strategy<Value = v1beta1::Condition> {
    use v1beta1::{ConditionSeverity as Sev, ConditionStatus as St};
    let status = prop_oneof![Just(St::True), Just(St::False), Just(St::Unknown)];
    let severity = option::of(prop_oneof![
        Just(Sev::Error),
        Just(Sev::Warning),
        Just(Sev::Info)
    ]);
    (
        text(),
        status,
        severity,
        time(),
        option::of(text()),
        option::of(text()),
    )
        .prop_map(
            |(type_, status, severity, last_transition_time, reason, message)| v1beta1::Condition {
                type_,
                status,
                severity,
                last_transition_time,
                reason,
                message,
            },
        )
}

fn meta_condition() -> impl Strategy<Value = MetaCondition> {
    (
        text(),
        text(),
        text(),
        text(),
        option::of(any::<i64>()),
        time(),
    )
        .prop_map(
            |(type_, status, reason, message, observed_generation, last_transition_time)| {
                MetaCondition {
                    type_,
                    status,
                    reason,
                    message,
                    observed_generation,
                    last_transition_time,
                }
            },
        )
}

fn initialization() -> impl Strategy<Value = Option<v1beta1::Initialization>> {
    option::of(
        option::of(any::<bool>()).prop_map(|provisioned| v1beta1::Initialization { provisioned }),
    )
}

fn v1beta2_status() -> impl Strategy<Value = Option<v1beta1::V1Beta2Status>> {
    option::of(
        vec(meta_condition(), 0..3).prop_map(|conditions| v1beta1::V1Beta2Status { conditions }),
    )
}

fn deprecated() -> impl Strategy<Value = Option<v1beta2::Deprecated>> {
    let fields = (
        vec(v1beta1_condition(), 0..3),
        option::of(text()),
        option::of(text()),
    )
        .prop_map(
            |(conditions, failure_reason, failure_message)| v1beta2::V1Beta1Deprecated {
                conditions,
                failure_reason,
                failure_message,
            },
        );
    option::of(option::of(fields).prop_map(|v1beta1| v1beta2::Deprecated { v1beta1 }))
}

fn load_balancer() -> impl Strategy<Value = v1beta1::LoadBalancerSpec> {
    let reference = option::of(text().prop_map(|name| v1beta1::LocalObjectReference { name }));
    (text(), text(), reference).prop_map(|(image_repository, image_tag, reference)| {
        v1beta1::LoadBalancerSpec {
            image_repository,
            image_tag,
            custom_haproxy_config_template_ref: reference,
        }
    })
}

fn v1beta1_failure_domains()
-> impl Strategy<Value = Option<BTreeMap<String, v1beta1::FailureDomainSpec>>> {
    let domain = (any::<bool>(), option::of(map())).prop_map(|(control_plane, attributes)| {
        v1beta1::FailureDomainSpec {
            control_plane,
            attributes,
        }
    });
    option::of(btree_map(text(), domain, 0..3))
}

fn v1beta2_failure_domains() -> impl Strategy<Value = Vec<v1beta2::FailureDomain>> {
    let domain = (text(), option::of(any::<bool>()), option::of(map())).prop_map(
        |(name, control_plane, attributes)| v1beta2::FailureDomain {
            name,
            control_plane,
            attributes,
        },
    );
    vec(domain, 0..3)
}

fn v1beta1_cluster_spec() -> impl Strategy<Value = v1beta1::KindClusterSpec> {
    let endpoint = (option::of(text()), any::<i32>())
        .prop_map(|(host, port)| v1beta1::ApiEndpoint { host, port });
    (
        option::of(endpoint),
        load_balancer(),
        option::of(text()),
        v1beta1_failure_domains(),
    )
        .prop_map(|(endpoint, load_balancer, network, failure_domains)| {
            v1beta1::KindClusterSpec {
                control_plane_endpoint: endpoint,
                load_balancer,
                network,
                failure_domains,
            }
        })
}

fn v1beta2_cluster_spec() -> impl Strategy<Value = v1beta2::KindClusterSpec> {
    let endpoint = (option::of(text()), option::of(any::<i32>()))
        .prop_map(|(host, port)| v1beta2::ApiEndpoint { host, port });
    (
        option::of(endpoint),
        load_balancer(),
        option::of(text()),
        v1beta2_failure_domains(),
    )
        .prop_map(|(endpoint, load_balancer, network, failure_domains)| {
            v1beta2::KindClusterSpec {
                control_plane_endpoint: endpoint,
                load_balancer,
                network,
                failure_domains,
            }
        })
}

fn v1beta1_cluster_status() -> impl Strategy<Value = v1beta1::KindClusterStatus> {
    (
        any::<bool>(),
        initialization(),
        v1beta1_failure_domains(),
        vec(v1beta1_condition(), 0..3),
        v1beta2_status(),
        option::of(text()),
        option::of(text()),
        option::of(any::<i64>()),
    )
        .prop_map(
            |(ready, initialization, failure_domains, conditions, v1beta2, reason, message, og)| {
                v1beta1::KindClusterStatus {
                    ready,
                    initialization,
                    failure_domains,
                    conditions,
                    v1beta2,
                    failure_reason: reason,
                    failure_message: message,
                    observed_generation: og,
                }
            },
        )
}

fn v1beta2_cluster_status() -> impl Strategy<Value = v1beta2::KindClusterStatus> {
    (
        initialization(),
        v1beta2_failure_domains(),
        vec(meta_condition(), 0..3),
        option::of(any::<i64>()),
        deprecated(),
    )
        .prop_map(
            |(initialization, failure_domains, conditions, og, deprecated)| {
                v1beta2::KindClusterStatus {
                    initialization,
                    failure_domains,
                    conditions,
                    observed_generation: og,
                    deprecated,
                }
            },
        )
}

fn mounts() -> impl Strategy<Value = Vec<v1beta1::Mount>> {
    let mount = (text(), text(), any::<bool>()).prop_map(|(container_path, host_path, ro)| {
        v1beta1::Mount {
            container_path,
            host_path,
            read_only: ro,
        }
    });
    vec(mount, 0..2)
}

fn addresses() -> impl Strategy<Value = Vec<v1beta1::MachineAddress>> {
    use v1beta1::MachineAddressType as T;
    let type_ = prop_oneof![
        Just(T::Hostname),
        Just(T::ExternalIP),
        Just(T::InternalIP),
        Just(T::ExternalDNS),
        Just(T::InternalDNS),
    ];
    vec(
        (type_, text()).prop_map(|(type_, address)| v1beta1::MachineAddress { type_, address }),
        0..3,
    )
}

fn v1beta1_machine_spec() -> impl Strategy<Value = v1beta1::KindMachineSpec> {
    (
        option::of(text()),
        option::of(text()),
        vec(text(), 0..2),
        mounts(),
        text(),
    )
        .prop_map(
            |(provider_id, custom_image, images, extra_mounts, timeout)| v1beta1::KindMachineSpec {
                provider_id,
                custom_image,
                pre_load_images: images,
                extra_mounts,
                bootstrap_timeout: timeout,
            },
        )
}

fn v1beta2_machine_spec() -> impl Strategy<Value = v1beta2::KindMachineSpec> {
    (
        text(),
        option::of(text()),
        vec(text(), 0..2),
        mounts(),
        text(),
    )
        .prop_map(
            |(provider_id, custom_image, images, extra_mounts, timeout)| v1beta2::KindMachineSpec {
                provider_id,
                custom_image,
                pre_load_images: images,
                extra_mounts,
                bootstrap_timeout: timeout,
            },
        )
}

fn v1beta1_machine_status() -> impl Strategy<Value = v1beta1::KindMachineStatus> {
    (
        (
            any::<bool>(),
            initialization(),
            addresses(),
            option::of(text()),
        ),
        (
            vec(v1beta1_condition(), 0..3),
            v1beta2_status(),
            option::of(text()),
            option::of(text()),
            option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |((ready, initialization, addresses, failure_domain), rest)| {
                let (conditions, v1beta2, failure_reason, failure_message, og) = rest;
                v1beta1::KindMachineStatus {
                    ready,
                    initialization,
                    addresses,
                    failure_domain,
                    conditions,
                    v1beta2,
                    failure_reason,
                    failure_message,
                    observed_generation: og,
                }
            },
        )
}

fn v1beta2_machine_status() -> impl Strategy<Value = v1beta2::KindMachineStatus> {
    (
        initialization(),
        addresses(),
        option::of(text()),
        vec(meta_condition(), 0..3),
        option::of(any::<i64>()),
        deprecated(),
    )
        .prop_map(
            |(initialization, addresses, failure_domain, conditions, og, deprecated)| {
                v1beta2::KindMachineStatus {
                    initialization,
                    addresses,
                    failure_domain,
                    conditions,
                    observed_generation: og,
                    deprecated,
                }
            },
        )
}

fn pool_template_fields()
-> impl Strategy<Value = (Option<String>, Vec<String>, Vec<v1beta1::Mount>, String)> {
    (option::of(text()), vec(text(), 0..2), mounts(), text())
}

fn v1beta1_pool_spec() -> impl Strategy<Value = v1beta1::KindMachinePoolSpec> {
    (
        option::of(text()),
        vec(text(), 0..3),
        pool_template_fields(),
    )
        .prop_map(
            |(provider_id, provider_id_list, (custom_image, images, extra_mounts, timeout))| {
                v1beta1::KindMachinePoolSpec {
                    provider_id,
                    provider_id_list,
                    template: v1beta1::KindMachinePoolMachineTemplate {
                        custom_image,
                        pre_load_images: images,
                        extra_mounts,
                        bootstrap_timeout: timeout,
                    },
                }
            },
        )
}

fn v1beta2_pool_spec() -> impl Strategy<Value = v1beta2::KindMachinePoolSpec> {
    (text(), vec(text(), 0..3), pool_template_fields()).prop_map(
        |(provider_id, provider_id_list, (custom_image, images, extra_mounts, timeout))| {
            v1beta2::KindMachinePoolSpec {
                provider_id,
                provider_id_list,
                template: v1beta2::KindMachinePoolMachineTemplate {
                    custom_image,
                    pre_load_images: images,
                    extra_mounts,
                    bootstrap_timeout: timeout,
                },
            }
        },
    )
}

fn v1beta1_pool_instances() -> impl Strategy<Value = Vec<v1beta1::KindMachinePoolInstance>> {
    let instance = (
        text(),
        option::of(text()),
        option::of(text()),
        any::<bool>(),
        addresses(),
    )
        .prop_map(|(instance_name, provider_id, version, ready, addresses)| {
            v1beta1::KindMachinePoolInstance {
                instance_name,
                provider_id,
                version,
                ready,
                addresses,
            }
        });
    vec(instance, 0..3)
}

fn v1beta2_pool_instances() -> impl Strategy<Value = Vec<v1beta2::KindMachinePoolInstance>> {
    let instance = (
        text(),
        text(),
        option::of(text()),
        any::<bool>(),
        addresses(),
    )
        .prop_map(|(instance_name, provider_id, version, ready, addresses)| {
            v1beta2::KindMachinePoolInstance {
                instance_name,
                provider_id,
                version,
                ready,
                addresses,
            }
        });
    vec(instance, 0..3)
}

fn v1beta1_pool_status() -> impl Strategy<Value = v1beta1::KindMachinePoolStatus> {
    (
        (
            any::<bool>(),
            initialization(),
            any::<i32>(),
            option::of(text()),
            v1beta1_pool_instances(),
        ),
        (
            vec(v1beta1_condition(), 0..3),
            v1beta2_status(),
            option::of(text()),
            option::of(text()),
            option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |((ready, initialization, replicas, machine_kind, instances), rest)| {
                let (conditions, v1beta2, failure_reason, failure_message, og) = rest;
                v1beta1::KindMachinePoolStatus {
                    ready,
                    initialization,
                    replicas,
                    infrastructure_machine_kind: machine_kind,
                    instances,
                    conditions,
                    v1beta2,
                    failure_reason,
                    failure_message,
                    observed_generation: og,
                }
            },
        )
}

fn v1beta2_pool_status() -> impl Strategy<Value = v1beta2::KindMachinePoolStatus> {
    (
        (
            initialization(),
            any::<bool>(),
            any::<i32>(),
            option::of(text()),
            v1beta2_pool_instances(),
        ),
        (
            vec(meta_condition(), 0..3),
            option::of(any::<i64>()),
            deprecated(),
        ),
    )
        .prop_map(
            |((initialization, ready, replicas, machine_kind, instances), rest)| {
                let (conditions, og, deprecated) = rest;
                v1beta2::KindMachinePoolStatus {
                    initialization,
                    ready,
                    replicas,
                    infrastructure_machine_kind: machine_kind,
                    instances,
                    conditions,
                    observed_generation: og,
                    deprecated,
                }
            },
        )
}

fn capacity() -> impl Strategy<Value = BTreeMap<String, Quantity>> {
    btree_map(text(), text().prop_map(Quantity), 0..3)
}

fn v1beta1_kind_cluster() -> impl Strategy<Value = v1beta1::KindCluster> {
    (
        object_meta(),
        v1beta1_cluster_spec(),
        option::of(v1beta1_cluster_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta1::KindCluster {
            metadata,
            spec,
            status,
        })
}

fn v1beta2_kind_cluster() -> impl Strategy<Value = v1beta2::KindCluster> {
    (
        object_meta(),
        v1beta2_cluster_spec(),
        option::of(v1beta2_cluster_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta2::KindCluster {
            metadata,
            spec,
            status,
        })
}

fn v1beta1_kind_cluster_template() -> impl Strategy<Value = v1beta1::KindClusterTemplate> {
    (object_meta(), template_meta(), v1beta1_cluster_spec()).prop_map(|(metadata, tm, spec)| {
        v1beta1::KindClusterTemplate {
            metadata,
            spec: v1beta1::KindClusterTemplateSpec {
                template: v1beta1::KindClusterTemplateResource { metadata: tm, spec },
            },
        }
    })
}

fn v1beta2_kind_cluster_template() -> impl Strategy<Value = v1beta2::KindClusterTemplate> {
    (object_meta(), template_meta(), v1beta2_cluster_spec()).prop_map(|(metadata, tm, spec)| {
        v1beta2::KindClusterTemplate {
            metadata,
            spec: v1beta2::KindClusterTemplateSpec {
                template: v1beta2::KindClusterTemplateResource { metadata: tm, spec },
            },
        }
    })
}

fn v1beta1_kind_machine() -> impl Strategy<Value = v1beta1::KindMachine> {
    (
        object_meta(),
        v1beta1_machine_spec(),
        option::of(v1beta1_machine_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta1::KindMachine {
            metadata,
            spec,
            status,
        })
}

fn v1beta2_kind_machine() -> impl Strategy<Value = v1beta2::KindMachine> {
    (
        object_meta(),
        v1beta2_machine_spec(),
        option::of(v1beta2_machine_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta2::KindMachine {
            metadata,
            spec,
            status,
        })
}

fn v1beta1_kind_machine_template() -> impl Strategy<Value = v1beta1::KindMachineTemplate> {
    let node_info = option::of(
        (
            option::of(prop_oneof![
                Just(v1beta1::Architecture::Amd64),
                Just(v1beta1::Architecture::Arm64),
                Just(v1beta1::Architecture::S390x),
                Just(v1beta1::Architecture::Ppc64le),
            ]),
            option::of(text()),
        )
            .prop_map(|(architecture, operating_system)| v1beta1::NodeInfo {
                architecture,
                operating_system,
            }),
    );
    let status = option::of((capacity(), node_info).prop_map(|(capacity, node_info)| {
        v1beta1::KindMachineTemplateStatus {
            capacity,
            node_info,
        }
    }));
    (
        object_meta(),
        template_meta(),
        v1beta1_machine_spec(),
        status,
    )
        .prop_map(
            |(metadata, tm, spec, status)| v1beta1::KindMachineTemplate {
                metadata,
                spec: v1beta1::KindMachineTemplateSpec {
                    template: v1beta1::KindMachineTemplateResource { metadata: tm, spec },
                },
                status,
            },
        )
}

fn v1beta2_kind_machine_template() -> impl Strategy<Value = v1beta2::KindMachineTemplate> {
    let node_info = option::of(
        (
            option::of(prop_oneof![
                Just(v1beta2::Architecture::Amd64),
                Just(v1beta2::Architecture::Arm64),
                Just(v1beta2::Architecture::S390x),
                Just(v1beta2::Architecture::Ppc64le),
            ]),
            option::of(text()),
        )
            .prop_map(|(architecture, operating_system)| v1beta2::NodeInfo {
                architecture,
                operating_system,
            }),
    );
    let status = option::of((capacity(), node_info).prop_map(|(capacity, node_info)| {
        v1beta2::KindMachineTemplateStatus {
            capacity,
            node_info,
        }
    }));
    (
        object_meta(),
        template_meta(),
        v1beta2_machine_spec(),
        status,
    )
        .prop_map(
            |(metadata, tm, spec, status)| v1beta2::KindMachineTemplate {
                metadata,
                spec: v1beta2::KindMachineTemplateSpec {
                    template: v1beta2::KindMachineTemplateResource { metadata: tm, spec },
                },
                status,
            },
        )
}

fn v1beta1_kind_machine_pool() -> impl Strategy<Value = v1beta1::KindMachinePool> {
    (
        object_meta(),
        v1beta1_pool_spec(),
        option::of(v1beta1_pool_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta1::KindMachinePool {
            metadata,
            spec,
            status,
        })
}

fn v1beta2_kind_machine_pool() -> impl Strategy<Value = v1beta2::KindMachinePool> {
    (
        object_meta(),
        v1beta2_pool_spec(),
        option::of(v1beta2_pool_status()),
    )
        .prop_map(|(metadata, spec, status)| v1beta2::KindMachinePool {
            metadata,
            spec,
            status,
        })
}

fn v1beta1_kind_machine_pool_template() -> impl Strategy<Value = v1beta1::KindMachinePoolTemplate> {
    (object_meta(), template_meta(), v1beta1_pool_spec()).prop_map(|(metadata, tm, spec)| {
        v1beta1::KindMachinePoolTemplate {
            metadata,
            spec: v1beta1::KindMachinePoolTemplateSpec {
                template: v1beta1::KindMachinePoolTemplateResource { metadata: tm, spec },
            },
        }
    })
}

fn v1beta2_kind_machine_pool_template() -> impl Strategy<Value = v1beta2::KindMachinePoolTemplate> {
    (object_meta(), template_meta(), v1beta2_pool_spec()).prop_map(|(metadata, tm, spec)| {
        v1beta2::KindMachinePoolTemplate {
            metadata,
            spec: v1beta2::KindMachinePoolTemplateSpec {
                template: v1beta2::KindMachinePoolTemplateResource { metadata: tm, spec },
            },
        }
    })
}

// ---- Helpers.

/// The comparable parts of an object (the kinds themselves derive no PartialEq).
trait Parts {
    type Out: PartialEq + std::fmt::Debug;
    fn parts(&self) -> Self::Out;
}

macro_rules! parts {
    ($($kind:ty),* ; with status) => {$(
        impl Parts for $kind {
            type Out = (ObjectMeta, <$kind as HasSpec>::Spec, Option<<$kind as HasStatus>::Status>);
            fn parts(&self) -> Self::Out {
                (self.metadata.clone(), self.spec.clone(), self.status.clone())
            }
        }
    )*};
    ($($kind:ty),*) => {$(
        impl Parts for $kind {
            type Out = (ObjectMeta, <$kind as HasSpec>::Spec);
            fn parts(&self) -> Self::Out {
                (self.metadata.clone(), self.spec.clone())
            }
        }
    )*};
}

parts!(
    v1beta1::KindCluster,
    v1beta2::KindCluster,
    v1beta1::KindMachine,
    v1beta2::KindMachine,
    v1beta1::KindMachineTemplate,
    v1beta2::KindMachineTemplate,
    v1beta1::KindMachinePool,
    v1beta2::KindMachinePool;
    with status
);
parts!(
    v1beta1::KindClusterTemplate,
    v1beta2::KindClusterTemplate,
    v1beta1::KindMachinePoolTemplate,
    v1beta2::KindMachinePoolTemplate
);

fn json(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("encode")
}

fn annotated(metadata: &ObjectMeta) -> bool {
    metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DATA_ANNOTATION))
}

/// The metadata as a conversion leaves it once it drops the annotation.
fn without_annotation(mut metadata: ObjectMeta) -> ObjectMeta {
    if let Some(annotations) = metadata.annotations.as_mut()
        && annotations.remove(DATA_ANNOTATION).is_some()
        && annotations.is_empty()
    {
        metadata.annotations = None;
    }
    metadata
}

/// Both round trips of one kind, typed and through JSON.
macro_rules! round_trips {
    ($name:ident, $v1:expr, $v2:expr, $up:path, $down:path) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(200))]

                #[test]
                fn v1beta1_there_and_back(object in $v1) {
                    let up = $up(object.clone());
                    let back = $down(up.clone());
                    prop_assert!(!annotated(&back.metadata));
                    prop_assert_eq!(back.parts(), object.parts());

                    let json_up = conversion::convert(json(&object), V2).expect("convert up");
                    prop_assert_eq!(&json_up, &json(&up));
                    let json_back = conversion::convert(json_up, V1).expect("convert down");
                    prop_assert_eq!(json_back, json(&object));
                }

                #[test]
                fn v1beta2_there_and_back(object in $v2) {
                    let down = $down(object.clone());
                    let back = $up(down.clone());
                    prop_assert!(!annotated(&back.metadata));
                    prop_assert_eq!(back.parts(), object.parts());

                    let json_down = conversion::convert(json(&object), V1).expect("convert down");
                    prop_assert_eq!(&json_down, &json(&down));
                    let json_back = conversion::convert(json_down, V2).expect("convert up");
                    prop_assert_eq!(json_back, json(&object));
                }
            }
        }
    };
}

round_trips!(
    kind_cluster,
    v1beta1_kind_cluster(),
    v1beta2_kind_cluster(),
    conversion::kind_cluster_to_v1beta2,
    conversion::kind_cluster_to_v1beta1
);
round_trips!(
    kind_cluster_template,
    v1beta1_kind_cluster_template(),
    v1beta2_kind_cluster_template(),
    conversion::kind_cluster_template_to_v1beta2,
    conversion::kind_cluster_template_to_v1beta1
);
round_trips!(
    kind_machine,
    v1beta1_kind_machine(),
    v1beta2_kind_machine(),
    conversion::kind_machine_to_v1beta2,
    conversion::kind_machine_to_v1beta1
);
round_trips!(
    kind_machine_template,
    v1beta1_kind_machine_template(),
    v1beta2_kind_machine_template(),
    conversion::kind_machine_template_to_v1beta2,
    conversion::kind_machine_template_to_v1beta1
);
round_trips!(
    kind_machine_pool,
    v1beta1_kind_machine_pool(),
    v1beta2_kind_machine_pool(),
    conversion::kind_machine_pool_to_v1beta2,
    conversion::kind_machine_pool_to_v1beta1
);
round_trips!(
    kind_machine_pool_template,
    v1beta1_kind_machine_pool_template(),
    v1beta2_kind_machine_pool_template(),
    conversion::kind_machine_pool_template_to_v1beta2,
    conversion::kind_machine_pool_template_to_v1beta1
);

/// A new provisioned state and generation, different from the old generation.
fn change() -> impl Strategy<Value = (Option<bool>, i64)> {
    (option::of(any::<bool>()), any::<i64>())
}

fn changed_generation(old: Option<i64>, new: i64) -> i64 {
    if old == Some(new) {
        new.wrapping_add(1)
    } else {
        new
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The controller (a v1beta2 client) updates a KindCluster a v1beta1 client wrote: a
    /// v1beta1 reader sees the update, and the annotation of the first write plays no part.
    #[test]
    fn a_kind_cluster_changed_in_v1beta2_reads_changed_in_v1beta1(
        object in v1beta1_kind_cluster(),
        (provisioned, generation) in change(),
    ) {
        let mut up = conversion::kind_cluster_to_v1beta2(object);
        let status = up.status.get_or_insert_default();
        let generation = changed_generation(status.observed_generation, generation);
        status.initialization = Some(v1beta2::Initialization { provisioned });
        status.observed_generation = Some(generation);

        let down = conversion::kind_cluster_to_v1beta1(up.clone());
        let status = down.status.clone().expect("status");
        prop_assert_eq!(status.ready, provisioned == Some(true));
        prop_assert_eq!(status.initialization, Some(v1beta1::Initialization { provisioned }));
        prop_assert_eq!(status.observed_generation, Some(generation));

        let mut expected = up;
        expected.metadata = without_annotation(expected.metadata);
        prop_assert_eq!(conversion::kind_cluster_to_v1beta2(down).parts(), expected.parts());
    }

    /// The same for a KindMachine, whose spec.providerID the controller sets too.
    #[test]
    fn a_kind_machine_changed_in_v1beta2_reads_changed_in_v1beta1(
        object in v1beta1_kind_machine(),
        (provisioned, generation) in change(),
        provider_id in "kind://[a-z]{1,4}/kind/[a-z]{1,4}",
    ) {
        let mut up = conversion::kind_machine_to_v1beta2(object);
        up.spec.provider_id = provider_id.clone();
        let status = up.status.get_or_insert_default();
        let generation = changed_generation(status.observed_generation, generation);
        status.initialization = Some(v1beta2::Initialization { provisioned });
        status.observed_generation = Some(generation);

        let down = conversion::kind_machine_to_v1beta1(up.clone());
        prop_assert_eq!(down.spec.provider_id.as_deref(), Some(provider_id.as_str()));
        let status = down.status.clone().expect("status");
        prop_assert_eq!(status.ready, provisioned == Some(true));
        prop_assert_eq!(status.initialization, Some(v1beta1::Initialization { provisioned }));
        prop_assert_eq!(status.observed_generation, Some(generation));

        let mut expected = up;
        expected.metadata = without_annotation(expected.metadata);
        prop_assert_eq!(conversion::kind_machine_to_v1beta2(down).parts(), expected.parts());
    }

    /// The same for a KindMachinePool: the controller sets its provider IDs, replicas and
    /// ready and provisioned in step.
    #[test]
    fn a_kind_machine_pool_changed_in_v1beta2_reads_changed_in_v1beta1(
        object in v1beta1_kind_machine_pool(),
        (provisioned, generation) in change(),
        ids in vec("kind://[a-z]{1,4}/kind/[a-z]{1,4}", 0..3),
        replicas in 0i32..10,
    ) {
        let mut up = conversion::kind_machine_pool_to_v1beta2(object);
        up.spec.provider_id_list = ids.clone();
        let status = up.status.get_or_insert_default();
        let generation = changed_generation(status.observed_generation, generation);
        status.ready = provisioned == Some(true);
        status.initialization = Some(v1beta2::Initialization { provisioned });
        status.replicas = replicas;
        status.observed_generation = Some(generation);

        let down = conversion::kind_machine_pool_to_v1beta1(up.clone());
        prop_assert_eq!(&down.spec.provider_id_list, &ids);
        let status = down.status.clone().expect("status");
        prop_assert_eq!(status.ready, provisioned == Some(true));
        prop_assert_eq!(status.initialization, Some(v1beta1::Initialization { provisioned }));
        prop_assert_eq!(status.replicas, replicas);
        prop_assert_eq!(status.observed_generation, Some(generation));

        let mut expected = up;
        expected.metadata = without_annotation(expected.metadata);
        prop_assert_eq!(conversion::kind_machine_pool_to_v1beta2(down).parts(), expected.parts());
    }
}
