//! The KindMachineTemplate controller: writes what a node of the template offers
//! (`status.capacity`: cpu and memory; `status.nodeInfo`: architecture and operating system),
//! so that the cluster autoscaler can scale a MachineDeployment from zero, as Cluster API's
//! autoscaling contract asks. A node container sets no CPU or memory limits, so a node has what
//! the Docker engine's host has. Written only when it differs: a steady state writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use capkind_api::v1beta2::{
    Architecture, KindMachineTemplate, KindMachineTemplateStatus, NodeInfo,
};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::controller::Action;
use tracing::instrument;

use super::{Context, Error, Scope, error_policy};
use crate::controllers;
use crate::docker::{ContainerRuntime, HostInfo};

/// The controller's name in logs and metrics.
const NAME: &str = "kindmachinetemplate";

/// Runs the controller until `shutdown` resolves.
pub async fn run<D: ContainerRuntime + Clone>(
    ctx: Arc<Context<D>>,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // A reconcile is one `docker info` and at most one write: two workers keep up.
    const CONCURRENCY: u16 = 2;
    ctx.metrics.set_max_workers(NAME, CONCURRENCY);
    let controller = Controller::new(
        scope.api::<KindMachineTemplate>(ctx.client.clone()),
        scope.watcher(),
    );
    super::mark_synced_when_ready(&ctx, controller.store());
    controller
        .with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(
            |t, ctx: Arc<Context<D>>| {
                let metrics = ctx.metrics.clone();
                async move { super::counted(NAME, &metrics, t, ctx, reconcile).await }
            },
            |t, error, ctx| error_policy(t.as_ref(), error, &ctx),
            ctx,
        )
        .for_each(|_| async {})
        .await;
}

/// Reconciles one KindMachineTemplate.
#[instrument(skip_all, fields(controller = NAME, controllerGroup = controllers::GROUP, controllerKind = "KindMachineTemplate", namespace = t.namespace(), name = t.name_any(), reconcileID = %controllers::reconcile_id()))]
pub async fn reconcile<D: ContainerRuntime>(
    t: Arc<KindMachineTemplate>,
    ctx: Arc<Context<D>>,
) -> Result<Action, Error> {
    let host = ctx.docker.host().await?;
    let status = status(&host);
    let api: Api<KindMachineTemplate> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    if controllers::apply_status(&api, t.as_ref(), t.status.as_ref(), &status).await? {
        tracing::info!(capacity = ?status.capacity, node_info = ?status.node_info, "capacity written");
    }
    ctx.succeeded(&controllers::key(t.as_ref()));
    Ok(Action::requeue(ctx.sync_period))
}

/// The status of a template whose nodes run on `host`; cpu and memory only when the engine
/// reports them.
pub fn status(host: &HostInfo) -> KindMachineTemplateStatus {
    let mut capacity = BTreeMap::new();
    if host.cpus > 0 {
        capacity.insert("cpu".to_string(), Quantity(host.cpus.to_string()));
    }
    if host.memory_bytes > 0 {
        capacity.insert("memory".to_string(), Quantity(binary_si(host.memory_bytes)));
    }
    let os = host.os_type.trim().to_ascii_lowercase();
    let node_info = NodeInfo {
        architecture: architecture(&host.architecture),
        operating_system: (!os.is_empty()).then_some(os),
    };
    KindMachineTemplateStatus {
        capacity,
        node_info: (node_info != NodeInfo::default()).then_some(node_info),
    }
}

/// Kubernetes' name for the architecture the engine reports (its `uname -m` or Go's name);
/// `None` for one Cluster API does not list.
fn architecture(engine: &str) -> Option<Architecture> {
    match engine {
        "x86_64" | "amd64" => Some(Architecture::Amd64),
        "aarch64" | "arm64" => Some(Architecture::Arm64),
        "s390x" => Some(Architecture::S390x),
        "ppc64le" => Some(Architecture::Ppc64le),
        _ => None,
    }
}

/// `bytes` as Kubernetes writes a binary-SI quantity: the largest of Ki, Mi, ... that divides
/// it exactly (`8232591360` is `8039640Ki`), so the value reads as `kubectl` shows it.
fn binary_si(bytes: i64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut n, mut i) = (bytes, 0);
    while n != 0 && n % 1024 == 0 && i + 1 < SUFFIXES.len() {
        n /= 1024;
        i += 1;
    }
    format!("{n}{}", SUFFIXES[i])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn host(cpus: i64, memory_bytes: i64, architecture: &str, os_type: &str) -> HostInfo {
        HostInfo {
            cpus,
            memory_bytes,
            architecture: architecture.into(),
            os_type: os_type.into(),
        }
    }

    #[test]
    fn status_is_what_the_engine_reports() {
        let cases = [
            (
                host(2, 25275990016, "x86_64", "linux"),
                json!({"capacity": {"cpu": "2", "memory": "24683584Ki"},
                       "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"}}),
            ),
            (
                host(8, 16 << 30, "aarch64", "linux"),
                json!({"capacity": {"cpu": "8", "memory": "16Gi"},
                       "nodeInfo": {"architecture": "arm64", "operatingSystem": "linux"}}),
            ),
            (
                host(4, 1000, "riscv64", "Linux"),
                json!({"capacity": {"cpu": "4", "memory": "1000"},
                       "nodeInfo": {"operatingSystem": "linux"}}),
            ),
            (host(0, 0, "", ""), json!({})),
        ];
        for (host, expected) in cases {
            let got = serde_json::to_value(status(&host)).expect("json");
            assert_eq!(got, expected, "{host:?}");
        }
    }

    #[test]
    fn binary_si_is_kubernetes_canonical_form() {
        for (bytes, expected) in [
            (0, "0"),
            (1, "1"),
            (1023, "1023"),
            (1024, "1Ki"),
            (1536, "1536"),
            (3 << 20, "3Mi"),
            (1 << 62, "4Ei"),
            (8232591360, "8039640Ki"),
        ] {
            assert_eq!(binary_si(bytes), expected, "{bytes}");
        }
    }

    #[test]
    fn architectures_as_kubernetes_names_them() {
        for (engine, expected) in [
            ("x86_64", Some(Architecture::Amd64)),
            ("amd64", Some(Architecture::Amd64)),
            ("aarch64", Some(Architecture::Arm64)),
            ("arm64", Some(Architecture::Arm64)),
            ("s390x", Some(Architecture::S390x)),
            ("ppc64le", Some(Architecture::Ppc64le)),
            ("armv7l", None),
            ("", None),
        ] {
            assert_eq!(architecture(engine), expected, "{engine}");
        }
    }

    /// Reconciles a template whose status is `current` on an engine reporting `host`; returns
    /// the requests made and the stored object afterwards.
    async fn reconciled(
        current: serde_json::Value,
        host: HostInfo,
    ) -> (Vec<String>, serde_json::Value) {
        let api = controllers::testing::FakeApi::default();
        let template = json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachineTemplate",
            "metadata": {"name": "t", "namespace": "ns"},
            "spec": {"template": {"spec": {}}},
            "status": current,
        });
        api.put(template.clone());
        let docker = crate::docker::fake::Fake::default();
        docker.set_host(host);
        let ctx = Arc::new(Context::new(
            api.client(),
            docker,
            NAME,
            std::time::Duration::from_secs(600),
        ));
        let t: KindMachineTemplate = serde_json::from_value(template).expect("template");
        reconcile(Arc::new(t), ctx).await.expect("reconcile");
        let path = controllers::testing::path(
            "infrastructure.cluster.x-k8s.io/v1beta2",
            "KindMachineTemplate",
            "ns",
            "t",
        );
        let requests = api.requests.lock().expect("requests").clone();
        (requests, api.get(&path).expect("stored"))
    }

    #[tokio::test]
    async fn a_new_or_changed_host_is_written_once_and_a_steady_one_never() {
        let two = host(2, 1 << 30, "x86_64", "linux");
        let written = json!({"capacity": {"cpu": "2", "memory": "1Gi"},
                             "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"}});
        let (requests, stored) = reconciled(json!({}), two.clone()).await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert!(
            requests[0].starts_with("PATCH") && requests[0].ends_with("/t/status"),
            "{requests:?}"
        );
        assert_eq!(stored["status"], written);

        let (requests, _) = reconciled(written.clone(), two).await;
        assert_eq!(
            requests,
            Vec::<String>::new(),
            "a steady state writes nothing"
        );

        let (requests, stored) = reconciled(written, host(4, 1 << 30, "x86_64", "linux")).await;
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(stored["status"]["capacity"]["cpu"], "4");
    }

    #[tokio::test]
    async fn an_engine_that_does_not_answer_is_a_docker_error() {
        let api = controllers::testing::FakeApi::default();
        let docker = crate::docker::fake::Fake::default();
        docker.set_unavailable(true);
        let ctx = Arc::new(Context::new(
            api.client(),
            docker,
            NAME,
            std::time::Duration::from_secs(600),
        ));
        let mut t = KindMachineTemplate::new("t", Default::default());
        t.metadata.namespace = Some("ns".into());
        let error = reconcile(Arc::new(t), ctx).await.expect_err("no engine");
        assert_eq!(error.reason(), "DockerUnavailable");
        assert!(api.requests.lock().expect("requests").is_empty());
    }
}
