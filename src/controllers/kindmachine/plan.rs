//! What one reconcile of a KindMachine does next, decided from what it observed (pure): the
//! machine's [`Phase`], the [`Step`]s that get it there, and when to look again. Every wait,
//! failure and deletion path is a row in this module's tests.

use std::time::Duration;

use capkind_api::capi::{Cluster, Machine};
use capkind_api::v1beta2::{KindCluster, KindMachine};
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::bootstrap::{self, Report, State};
use super::status::{BOOTSTRAP_EXEC_SUCCEEDED, CONTAINER_PROVISIONED, reason};
use crate::controllers::Error;
use crate::docker::{Container, labels};
use crate::node;

/// Everything one reconcile looked up, read once (observe.rs).
#[derive(Clone, Debug)]
pub struct Observed {
    /// The owner Machine.
    pub machine: Machine,
    /// The cluster's name.
    pub cluster_name: String,
    /// The Cluster, when it exists.
    pub cluster: Option<Cluster>,
    /// The Cluster's KindCluster, when it exists.
    pub kind_cluster: Option<KindCluster>,
    /// The node container's name.
    pub container_name: String,
    /// The node container, when it exists.
    pub container: Option<Container>,
    /// The container's last output, when it exited by itself.
    pub console: String,
    /// Where its bootstrap stands, as far as it was looked at.
    pub progress: Progress,
    /// The bootstrap data, when it is needed: format and value of the Secret.
    pub bootstrap_data: Option<BootstrapData>,
    /// The workload cluster's Node has its provider ID already.
    pub node_done: bool,
    /// When the observation was made.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The bootstrap Secret's content, or its name when it is missing or has no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BootstrapData {
    /// `format` (when set) and `value`.
    Found {
        format: Option<String>,
        value: Vec<u8>,
    },
    /// The Secret of this name is missing or has no `value`.
    Missing(String),
}

/// How much of the bootstrap was looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Nothing: the status says it is done, or there is nothing to look at.
    NotLooked,
    /// A task waits inside the node for the next step (bootstrap::Waiter).
    Waiting,
    /// What the node reported.
    Reported(Report),
}

/// Where the machine stands, as its conditions say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No container yet: waiting for something outside the machine.
    Waiting {
        reason: &'static str,
        message: &'static str,
    },
    /// The container runs again after a stop; the bootstrap is looked at next.
    Started,
    /// The container runs and its bootstrap is under way.
    Bootstrapping { message: String },
    /// Provisioned and bootstrapped.
    Ready,
    /// The bootstrap failed, timed out or was cut short; it never runs again.
    BootstrapFailed {
        reason: &'static str,
        message: String,
    },
    /// The container died during boot (exit code and output in the message).
    Exited { message: String },
    /// Provisioned once, but its container is stopped, gone or dead: reported, not replaced.
    Lost {
        reason: &'static str,
        message: String,
    },
    /// Being deleted.
    Deleting,
}

impl Phase {
    /// The phase's name for the `capkind_machines` metric.
    pub fn metric(&self) -> &'static str {
        match self {
            Phase::Waiting { .. } => "Waiting",
            Phase::Started => "Provisioning",
            Phase::Bootstrapping { .. } => "Bootstrapping",
            Phase::Ready => "Ready",
            Phase::BootstrapFailed { .. } | Phase::Exited { .. } | Phase::Lost { .. } => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

/// One thing to do, through Docker or the API (act.rs).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create and start the node container.
    Create,
    /// Start the stopped node container.
    Start,
    /// Put the cluster's running control planes in the load balancer.
    ReconfigureLoadBalancer,
    /// Load `preLoadImages` into the node's containerd.
    PreloadImages,
    /// Start the bootstrap with this plan, and wait in the background for it to move past
    /// its first step (one exec does both).
    StartBootstrap(crate::bootstrap::Plan),
    /// Stop the bootstrap that ran past its timeout.
    StopBootstrap,
    /// Wait, in the background, for the bootstrap to move past `step`.
    Watch { step: usize, elapsed: u64 },
    /// Record the bootstrap's duration.
    RecordBootstrapTime { elapsed: u64 },
    /// Set `spec.providerID`.
    SetProviderId(String),
    /// Publish an event.
    Event {
        type_: EventType,
        reason: &'static str,
        note: String,
    },
    /// Remove the node container.
    Remove,
    /// Remove the finalizer.
    RemoveFinalizer,
}

/// When to look again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// On a change only.
    AwaitChange,
    /// After this long.
    Requeue(Duration),
    /// After the sync period.
    Sync,
}

/// What a reconcile does.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The phase to write; `None` leaves the status as it is.
    pub phase: Option<Phase>,
    /// What to do, in order.
    pub steps: Vec<Step>,
    /// Set the provider ID on the workload cluster's Node, after the status is written.
    pub node_provider_id: bool,
    /// When to look again.
    pub next: Next,
}

impl Plan {
    fn new(phase: Phase, steps: Vec<Step>, next: Next) -> Self {
        Self {
            phase: Some(phase),
            steps,
            node_provider_id: false,
            next,
        }
    }
}

/// How long a bootstrap that a task watches goes without a look (a safety net only: the task
/// wakes the machine up when the bootstrap moves).
pub const BOOTSTRAP_LOOK: Duration = Duration::from_secs(30);
/// How soon a machine is looked at again after its container exited during boot.
pub const EXITED_LOOK: Duration = Duration::from_secs(60);
/// How soon after a race (a name taken or freed meanwhile) or a start.
pub const SOON: Duration = Duration::from_secs(1);

/// The provider ID of a node: `kind://<cluster>/kind/<container>`.
pub fn provider_id(cluster: &str, container: &str) -> String {
    format!("kind://{cluster}/kind/{container}")
}

/// The owner labels of the machine's containers.
pub fn owner_of(km: &KindMachine) -> labels::Owner {
    labels::Owner {
        kind: "KindMachine".into(),
        namespace: km.namespace().unwrap_or_default(),
        name: km.name_any(),
        uid: km.uid().unwrap_or_default(),
    }
}

/// The last written condition of `type_`.
pub fn prior<'a>(
    km: &'a KindMachine,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    km.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn prior_reason<'a>(km: &'a KindMachine, type_: &str) -> &'a str {
    prior(km, type_).map_or("", |c| c.reason.as_str())
}

/// The next steps of a machine that is not being deleted.
pub fn plan(km: &KindMachine, o: &Observed) -> Result<Plan, Error> {
    let name = &o.container_name;
    if name.len() > node::MAX_HOSTNAME {
        return Err(Error::NameTooLong { name: name.clone() });
    }
    if let Some(c) = &o.container
        && !owner_of(km).owns(&c.labels)
    {
        return Err(Error::name_conflict(name, &c.labels));
    }
    if let Some(plan) = container_plan(km, o) {
        return Ok(plan);
    }
    let lb = o
        .machine
        .is_control_plane()
        .then_some(Step::ReconfigureLoadBalancer);
    if o.kind_cluster.is_none() {
        return Err(kind_cluster_missing(o));
    }
    let mut steps: Vec<Step> = o
        .container
        .is_none()
        .then_some(Step::Create)
        .into_iter()
        .chain(lb)
        .collect();
    let mut plan = bootstrap_plan(km, o)?;
    steps.append(&mut plan.steps);
    plan.steps = steps;
    Ok(plan)
}

/// The plan when the container's state decides it: lost after provisioning, dead, just
/// brought back, stopped, or not there and waiting; `None` when it runs (or is to be made).
fn container_plan(km: &KindMachine, o: &Observed) -> Option<Plan> {
    let lb = || {
        o.machine
            .is_control_plane()
            .then_some(Step::ReconfigureLoadBalancer)
    };
    let running = o.container.as_ref().is_some_and(|c| c.running);
    if !km.spec.provider_id.is_empty() && !running {
        return Some(Plan::new(
            lost(o),
            lb().into_iter().collect(),
            Next::AwaitChange,
        ));
    }
    match &o.container {
        Some(c) if node::exited_by_itself(c) => Some(exited(km, o, c)),
        Some(c) => match node::boot_grace_left(c, o.now) {
            Some(left) => Some(Plan {
                phase: None,
                steps: Vec::new(),
                node_provider_id: false,
                next: Next::Requeue(left),
            }),
            None if !c.running => {
                let steps = std::iter::once(Step::Start).chain(lb()).collect();
                Some(Plan::new(Phase::Started, steps, Next::Requeue(SOON)))
            }
            None => None,
        },
        None => wait_reason(o).map(|(reason, message)| {
            Plan::new(
                Phase::Waiting { reason, message },
                Vec::new(),
                Next::AwaitChange,
            )
        }),
    }
}

/// The name of the Cluster's KindCluster: its infrastructureRef's, else the cluster's.
pub fn kind_cluster_name(cluster: Option<&Cluster>, cluster_name: &str) -> String {
    cluster
        .and_then(|c| c.spec.infrastructure_ref.as_ref())
        .and_then(|r| r.name())
        .unwrap_or(cluster_name)
        .to_string()
}

/// The error for a Cluster whose KindCluster is not there.
pub fn kind_cluster_missing(o: &Observed) -> Error {
    Error::KindClusterNotFound {
        name: kind_cluster_name(o.cluster.as_ref(), &o.cluster_name),
    }
}

/// The steps of a machine being deleted: the status first (its finalizer goes last), the
/// container if it is ours, the load balancer without it, the finalizer.
pub fn deletion(km: &KindMachine, o: &Observed) -> Plan {
    let ours = o
        .container
        .as_ref()
        .is_some_and(|c| owner_of(km).owns(&c.labels));
    let steps = ours
        .then_some(Step::Remove)
        .into_iter()
        .chain(
            (o.machine.is_control_plane() && o.kind_cluster.is_some())
                .then_some(Step::ReconfigureLoadBalancer),
        )
        .chain(std::iter::once(Step::RemoveFinalizer))
        .collect();
    Plan::new(Phase::Deleting, steps, Next::AwaitChange)
}

/// What the machine still waits for before its container may be created.
pub fn wait_reason(o: &Observed) -> Option<(&'static str, &'static str)> {
    let cluster = o.cluster.as_ref();
    if !cluster.is_some_and(Cluster::infrastructure_ready) {
        return Some((
            reason::WAITING_FOR_CLUSTER_INFRASTRUCTURE,
            "Waiting for the cluster's infrastructure to be ready",
        ));
    }
    if o.machine.spec.bootstrap.data_secret_name.is_none() {
        return Some((
            reason::WAITING_FOR_BOOTSTRAP_DATA,
            "Waiting for the bootstrap provider to write the bootstrap data",
        ));
    }
    if !o.machine.is_control_plane() && !cluster.is_some_and(Cluster::control_plane_initialized) {
        return Some((
            reason::WAITING_FOR_CONTROL_PLANE_INITIALIZED,
            "Waiting for the control plane to be initialized",
        ));
    }
    None
}

/// A provisioned machine whose container no longer runs.
fn lost(o: &Observed) -> Phase {
    let name = &o.container_name;
    match &o.container {
        None => Phase::Lost {
            reason: reason::CONTAINER_DELETED,
            message: format!("Container {name} no longer exists"),
        },
        Some(c) if node::exited_by_itself(c) => Phase::Lost {
            reason: reason::CONTAINER_EXITED,
            message: node::exit_report(c, &o.console),
        },
        Some(c) => Phase::Lost {
            reason: reason::CONTAINER_STOPPED,
            message: format!(
                "Container {name} is not running anymore (state {})",
                c.state
            ),
        },
    }
}

/// A container that died during boot: shown, with a Warning when that is news; nothing is
/// re-created (the restart policy brings it back; its events bring the next look).
fn exited(km: &KindMachine, o: &Observed, c: &Container) -> Plan {
    let message = node::exit_report(c, &o.console);
    let news = prior(km, CONTAINER_PROVISIONED).is_none_or(|p| p.message != message);
    let steps = news
        .then(|| Step::Event {
            type_: EventType::Warning,
            reason: reason::CONTAINER_EXITED,
            note: message.clone(),
        })
        .into_iter()
        .collect();
    Plan::new(Phase::Exited { message }, steps, Next::Requeue(EXITED_LOOK))
}

/// The bootstrap's steps for a machine whose container runs (or is created by this plan).
fn bootstrap_plan(km: &KindMachine, o: &Observed) -> Result<Plan, Error> {
    let provisioned = !km.spec.provider_id.is_empty();
    let before = prior(km, BOOTSTRAP_EXEC_SUCCEEDED);
    let before_reason = before.map_or("", |c| c.reason.as_str());
    // Done is done: nothing inside the node is looked at again.
    if before_reason == reason::BOOTSTRAP_SUCCEEDED && provisioned {
        return Ok(ready(o, Vec::new()));
    }
    let state = match (&o.container, &o.progress) {
        (None, _) => State::NotStarted,
        (Some(_), Progress::Waiting) if before_reason == reason::BOOTSTRAPPING => {
            let message = before.map(|c| c.message.clone()).unwrap_or_default();
            return Ok(Plan::new(
                Phase::Bootstrapping { message },
                Vec::new(),
                Next::Requeue(BOOTSTRAP_LOOK),
            ));
        }
        (Some(_), Progress::Reported(report)) => {
            bootstrap::state(report, km.spec.bootstrap_timeout()?.as_secs())
        }
        // A waiter without a condition saying so (a status written by an older manager):
        // treated as running until it reports.
        (Some(_), _) => State::Running {
            step: 0,
            of: 0,
            elapsed: 0,
        },
    };
    from_state(km, o, state)
}

/// The plan for where the bootstrap stands.
fn from_state(km: &KindMachine, o: &Observed, state: State) -> Result<Plan, Error> {
    let provisioned = !km.spec.provider_id.is_empty();
    Ok(match state {
        State::NotStarted => start(km, o)?,
        State::Running { step, of, elapsed } => {
            let message = if step == 0 {
                "Waiting for the node's systemd to boot before the bootstrap".to_string()
            } else {
                format!("Running bootstrap step {step} of {of}")
            };
            Plan::new(
                Phase::Bootstrapping { message },
                vec![Step::Watch { step, elapsed }],
                Next::Requeue(BOOTSTRAP_LOOK),
            )
        }
        State::Succeeded { elapsed } => {
            let steps = if provisioned {
                Vec::new()
            } else {
                vec![
                    Step::RecordBootstrapTime { elapsed },
                    Step::Event {
                        type_: EventType::Normal,
                        reason: reason::BOOTSTRAP_SUCCEEDED,
                        note: format!("Bootstrap of {} succeeded", o.container_name),
                    },
                    Step::SetProviderId(provider_id(&o.cluster_name, &o.container_name)),
                ]
            };
            ready(o, steps)
        }
        State::Overdue { after } => {
            let mut plan = failed(
                km,
                reason::BOOTSTRAP_TIMED_OUT,
                format!("The bootstrap did not finish within {after}s"),
            );
            plan.steps.insert(0, Step::StopBootstrap);
            plan
        }
        State::TimedOut { after } => failed(
            km,
            reason::BOOTSTRAP_TIMED_OUT,
            format!("The bootstrap did not finish within {after}s"),
        ),
        State::Failed { message } => failed(km, reason::BOOTSTRAP_FAILED, message),
        State::Interrupted { step, of } => failed(
            km,
            reason::BOOTSTRAP_INTERRUPTED,
            format!(
                "The node container {} restarted while its bootstrap ran step {step} of {of}; \
                 a bootstrap never runs twice, so the machine stays as it is: delete the Machine to replace it",
                o.container_name
            ),
        ),
    })
}

/// Starting the bootstrap: images first (kubeadm must find them), then the plan.
fn start(km: &KindMachine, o: &Observed) -> Result<Plan, Error> {
    let data = match &o.bootstrap_data {
        Some(BootstrapData::Found { format, value }) => {
            // Images of kind v0.19 and earlier run in the host's cgroup namespace, their kubelet
            // with its default cgroups.
            let mode = node::image(
                km.spec.custom_image.as_deref(),
                o.machine.spec.version.as_deref(),
            )
            .map(|i| i.mode)
            .unwrap_or_default();
            crate::bootstrap::plan_for(format.as_deref(), value, mode.cgroupns_private())?
        }
        Some(BootstrapData::Missing(name)) => {
            return Err(Error::BootstrapSecretMissing { name: name.clone() });
        }
        None => {
            let name = o.machine.spec.bootstrap.data_secret_name.clone();
            return Err(Error::BootstrapSecretMissing {
                name: name.unwrap_or_default(),
            });
        }
    };
    let preload = (!km.spec.pre_load_images.is_empty()).then_some(Step::PreloadImages);
    let steps = preload
        .into_iter()
        .chain([Step::StartBootstrap(data)])
        .collect();
    Ok(Plan::new(
        Phase::Bootstrapping {
            message: "Bootstrap started".into(),
        },
        steps,
        Next::Requeue(BOOTSTRAP_LOOK),
    ))
}

fn ready(o: &Observed, steps: Vec<Step>) -> Plan {
    let mut plan = Plan::new(Phase::Ready, steps, Next::Sync);
    plan.node_provider_id = !o.node_done;
    plan
}

/// A bootstrap that ended badly, with a Warning the first time.
fn failed(km: &KindMachine, reason: &'static str, message: String) -> Plan {
    let news = prior_reason(km, BOOTSTRAP_EXEC_SUCCEEDED) != reason;
    let steps = news
        .then(|| Step::Event {
            type_: EventType::Warning,
            reason,
            note: message.clone(),
        })
        .into_iter()
        .collect();
    Plan::new(
        Phase::BootstrapFailed { reason, message },
        steps,
        Next::AwaitChange,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::controllers::kindmachine::bootstrap::{Failure, Word};
    use capkind_api::capi::Version;
    use serde_json::json;

    const NAME: &str = "c-m";

    fn km(provider_id: Option<&str>) -> KindMachine {
        serde_json::from_value(json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindMachine",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u1"},
            "spec": {"providerID": provider_id.unwrap_or_default(), "bootstrapTimeout": "60s"},
        }))
        .expect("KindMachine")
    }

    /// `km` with a prior condition of `type_`.
    fn with_prior(mut km: KindMachine, type_: &str, reason: &str, message: &str) -> KindMachine {
        let cond = json!({"type": type_, "status": "False", "reason": reason, "message": message,
                          "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let status = json!({"conditions": [cond]});
        km.status = Some(serde_json::from_value(status).expect("status"));
        km
    }

    fn machine(control_plane: bool, data: bool) -> Machine {
        machine_at(Version::V1Beta1, control_plane, data)
    }

    fn machine_at(version: Version, control_plane: bool, data: bool) -> Machine {
        let mut labels = BTreeMap::from([("cluster.x-k8s.io/cluster-name", "c")]);
        if control_plane {
            labels.insert("cluster.x-k8s.io/control-plane", "");
        }
        let secret = data.then_some("m-bootstrap");
        let infrastructure_ref = match version {
            Version::V1Beta1 => json!({"apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                                       "kind": "KindMachine", "name": "m", "namespace": "ns"}),
            Version::V1Beta2 => json!({"apiGroup": "infrastructure.cluster.x-k8s.io",
                                       "kind": "KindMachine", "name": "m"}),
        };
        serde_json::from_value(json!({
            "apiVersion": version.api_version(), "kind": "Machine",
            "metadata": {"name": "m", "namespace": "ns", "labels": labels},
            "spec": {"clusterName": "c", "bootstrap": {"dataSecretName": secret},
                     "infrastructureRef": infrastructure_ref},
        }))
        .expect("Machine")
    }

    fn cluster(infrastructure_ready: bool, initialized: bool) -> Cluster {
        cluster_at(Version::V1Beta1, infrastructure_ready, initialized)
    }

    /// A Cluster as core writes it in `version`.
    fn cluster_at(version: Version, infrastructure_ready: bool, initialized: bool) -> Cluster {
        let condition = |type_: &str, true_: bool| {
            json!({"type": type_, "status": if true_ { "True" } else { "False" },
                   "reason": "Because", "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let status = match version {
            Version::V1Beta1 => json!({
                "infrastructureReady": infrastructure_ready,
                "conditions": [condition("ControlPlaneInitialized", initialized)]}),
            Version::V1Beta2 => json!({
                "initialization": {"infrastructureProvisioned": infrastructure_ready,
                                   "controlPlaneInitialized": initialized},
                "conditions": [condition("ControlPlaneInitialized", initialized)]}),
        };
        serde_json::from_value(json!({
            "apiVersion": version.api_version(), "kind": "Cluster",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {}, "status": status,
        }))
        .expect("Cluster")
    }

    fn kind_cluster() -> KindCluster {
        serde_json::from_value(json!({
            "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2", "kind": "KindCluster",
            "metadata": {"name": "c", "namespace": "ns"}, "spec": {},
        }))
        .expect("KindCluster")
    }

    fn container(state: &str) -> Container {
        Container {
            name: NAME.into(),
            labels: owner_of(&km(None)).labels().into_iter().collect(),
            running: state == "running",
            state: state.into(),
            ..Default::default()
        }
    }

    fn data() -> Option<BootstrapData> {
        Some(BootstrapData::Found {
            format: Some("cloud-config".into()),
            value: b"#cloud-config\nruncmd:\n- echo hi\n".to_vec(),
        })
    }

    /// A worker of a ready cluster with no container yet and its bootstrap data at hand.
    fn observed() -> Observed {
        Observed {
            machine: machine(false, true),
            cluster_name: "c".into(),
            cluster: Some(cluster(true, true)),
            kind_cluster: Some(kind_cluster()),
            container_name: NAME.into(),
            container: None,
            console: String::new(),
            progress: Progress::NotLooked,
            bootstrap_data: data(),
            node_done: false,
            now: chrono::Utc::now(),
        }
    }

    fn running_at(o: Observed, report: Report) -> Observed {
        Observed {
            container: Some(container("running")),
            progress: Progress::Reported(report),
            bootstrap_data: None,
            ..o
        }
    }

    fn started(step: usize, elapsed: u64, word: Word) -> Report {
        Report::Started {
            elapsed,
            step,
            of: 3,
            word,
            failure: None,
        }
    }

    /// The step kinds, without their data.
    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.steps
            .iter()
            .map(|s| match s {
                Step::Create => "Create",
                Step::Start => "Start",
                Step::ReconfigureLoadBalancer => "ReconfigureLoadBalancer",
                Step::PreloadImages => "PreloadImages",
                Step::StartBootstrap(_) => "StartBootstrap",
                Step::StopBootstrap => "StopBootstrap",
                Step::Watch { .. } => "Watch",
                Step::RecordBootstrapTime { .. } => "RecordBootstrapTime",
                Step::SetProviderId(_) => "SetProviderId",
                Step::Event { reason, .. } => reason,
                Step::Remove => "Remove",
                Step::RemoveFinalizer => "RemoveFinalizer",
            })
            .collect()
    }

    #[test]
    fn no_container_before_what_it_waits_for() {
        for v in Version::ALL {
            let cases = [
                (
                    machine_at(v, false, true),
                    cluster_at(v, false, true),
                    reason::WAITING_FOR_CLUSTER_INFRASTRUCTURE,
                ),
                (
                    machine_at(v, false, false),
                    cluster_at(v, true, true),
                    reason::WAITING_FOR_BOOTSTRAP_DATA,
                ),
                (
                    machine_at(v, false, true),
                    cluster_at(v, true, false),
                    reason::WAITING_FOR_CONTROL_PLANE_INITIALIZED,
                ),
            ];
            for (machine, cluster, want) in cases {
                let o = Observed {
                    machine,
                    cluster: Some(cluster),
                    ..observed()
                };
                let plan = plan(&km(None), &o).expect("plan");
                assert!(
                    matches!(plan.phase, Some(Phase::Waiting { reason, .. }) if reason == want),
                    "{v} {want}: {plan:?}"
                );
                assert_eq!(kinds(&plan), Vec::<&str>::new());
                assert_eq!(plan.next, Next::AwaitChange);
            }
            let o = Observed {
                machine: machine_at(v, false, true),
                cluster: Some(cluster_at(v, true, true)),
                ..observed()
            };
            assert!(wait_reason(&o).is_none(), "{v}");
        }
        // A control plane does not wait for the control plane.
        let o = Observed {
            machine: machine(true, true),
            cluster: Some(cluster(true, false)),
            ..observed()
        };
        assert_eq!(
            kinds(&plan(&km(None), &o).expect("plan")),
            ["Create", "ReconfigureLoadBalancer", "StartBootstrap"]
        );
    }

    #[test]
    fn a_new_node_is_created_loaded_and_bootstrapped() {
        let plan = plan(&km(None), &observed()).expect("plan");
        assert_eq!(kinds(&plan), ["Create", "StartBootstrap"]);
        assert_eq!(
            plan.phase,
            Some(Phase::Bootstrapping {
                message: "Bootstrap started".into()
            })
        );
        assert_eq!(plan.next, Next::Requeue(BOOTSTRAP_LOOK));
        let mut preloading = km(None);
        preloading.spec.pre_load_images = vec!["busybox".into()];
        assert_eq!(
            kinds(&super::plan(&preloading, &observed()).expect("plan")),
            ["Create", "PreloadImages", "StartBootstrap"]
        );
    }

    #[test]
    fn unusable_input_is_an_error_of_its_condition() {
        use crate::controllers::kindmachine::status::condition_of;
        let missing = Observed {
            bootstrap_data: Some(BootstrapData::Missing("m-bootstrap".into())),
            ..observed()
        };
        let bad = Observed {
            bootstrap_data: Some(BootstrapData::Found {
                format: Some("no-such-format".into()),
                value: b"x".to_vec(),
            }),
            ..observed()
        };
        let no_kind_cluster = Observed {
            kind_cluster: None,
            ..observed()
        };
        let long = Observed {
            container_name: "n".repeat(65),
            ..observed()
        };
        let mut foreign = container("running");
        foreign.labels.clear();
        let taken = Observed {
            container: Some(foreign),
            ..observed()
        };
        let cases = [
            (missing, "BootstrapSecretNotFound", BOOTSTRAP_EXEC_SUCCEEDED),
            (bad, "BootstrapDataInvalid", BOOTSTRAP_EXEC_SUCCEEDED),
            (
                no_kind_cluster,
                "KindClusterNotFound",
                CONTAINER_PROVISIONED,
            ),
            (long, "ContainerNameTooLong", CONTAINER_PROVISIONED),
            (taken, "ContainerNameConflict", CONTAINER_PROVISIONED),
        ];
        for (o, reason, condition) in cases {
            let error = plan(&km(None), &o).expect_err(reason);
            assert_eq!((error.reason(), condition_of(&error)), (reason, condition));
        }
    }

    type Case = (Report, Vec<&'static str>, &'static str, Next);

    /// Each report of a running node: the steps, a part of the message, when to look again.
    fn check(cases: Vec<Case>) {
        for (report, steps, message, next) in cases {
            let mut o = running_at(observed(), report.clone());
            o.bootstrap_data = data();
            let plan = plan(&km(None), &o).expect("plan");
            assert_eq!(kinds(&plan), steps, "{report:?}");
            let shown = match &plan.phase {
                Some(Phase::Bootstrapping { message } | Phase::BootstrapFailed { message, .. }) => {
                    message
                }
                other => panic!("{report:?}: {other:?}"),
            };
            assert!(shown.contains(message), "{report:?}: {shown}");
            assert_eq!(plan.next, next, "{report:?}");
        }
    }

    #[test]
    fn a_running_bootstrap_is_watched_until_its_timeout_then_stopped() {
        let look = Next::Requeue(BOOTSTRAP_LOOK);
        check(vec![
            (started(0, 1, Word::Running), vec!["Watch"], "systemd", look),
            (
                started(2, 5, Word::Running),
                vec!["Watch"],
                "step 2 of 3",
                look,
            ),
            (
                started(2, 61, Word::Running),
                vec!["StopBootstrap", "BootstrapTimedOut"],
                "within 60s",
                Next::AwaitChange,
            ),
            (
                started(2, 61, Word::Timeout),
                vec!["BootstrapTimedOut"],
                "within 60s",
                Next::AwaitChange,
            ),
            (Report::NotStarted, vec!["StartBootstrap"], "started", look),
        ]);
    }

    #[test]
    fn an_ended_bootstrap_is_shown_and_announced() {
        let Report::Started {
            elapsed,
            step,
            of,
            word,
            ..
        } = started(2, 5, Word::Failed)
        else {
            unreachable!()
        };
        let failure = Report::Started {
            elapsed,
            step,
            of,
            word,
            failure: Some(Failure {
                code: "1".into(),
                command: "command \"kubeadm init\"".into(),
                output: "boom".into(),
            }),
        };
        let ended = |report, reason, message| (report, vec![reason], message, Next::AwaitChange);
        check(vec![
            ended(failure, "BootstrapFailed", "\"kubeadm init\" exited with 1"),
            ended(
                started(3, 5, Word::NoSentinel),
                "BootstrapFailed",
                "did not create",
            ),
            ended(
                started(2, 5, Word::Interrupted),
                "BootstrapInterrupted",
                "delete the Machine",
            ),
            ended(Report::Unreadable, "BootstrapFailed", "cannot be read"),
        ]);
    }

    #[test]
    fn a_failure_is_announced_once() {
        let o = running_at(observed(), started(2, 5, Word::Interrupted));
        let before = with_prior(
            km(None),
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::BOOTSTRAP_INTERRUPTED,
            "x",
        );
        assert_eq!(kinds(&plan(&before, &o).expect("plan")), Vec::<&str>::new());
    }

    #[test]
    fn success_sets_the_provider_id_once_and_then_nothing_is_looked_at() {
        let o = running_at(observed(), started(3, 9, Word::Succeeded));
        let plan = plan(&km(None), &o).expect("plan");
        assert_eq!(
            kinds(&plan),
            ["RecordBootstrapTime", "BootstrapSucceeded", "SetProviderId"]
        );
        assert!(
            plan.steps
                .contains(&Step::SetProviderId("kind://c/kind/c-m".into()))
        );
        assert_eq!(
            (plan.phase, plan.node_provider_id, plan.next),
            (Some(Phase::Ready), true, Next::Sync)
        );

        let done = with_prior(
            km(Some("kind://c/kind/c-m")),
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::BOOTSTRAP_SUCCEEDED,
            "ok",
        );
        let o = Observed {
            container: Some(container("running")),
            node_done: true,
            ..observed()
        };
        let plan = super::plan(&done, &o).expect("plan");
        assert_eq!(kinds(&plan), Vec::<&str>::new());
        assert_eq!(
            (plan.phase, plan.node_provider_id),
            (Some(Phase::Ready), false)
        );
    }

    #[test]
    fn a_provisioned_machine_reports_its_lost_container_and_replaces_nothing() {
        let mut died = container("restarting");
        died.exit_code = 2;
        let cases = [
            (None, reason::CONTAINER_DELETED),
            (Some(container("exited")), reason::CONTAINER_STOPPED),
            (Some(died), reason::CONTAINER_EXITED),
        ];
        for (c, want) in cases {
            for control_plane in [false, true] {
                let o = Observed {
                    container: c.clone(),
                    machine: machine(control_plane, true),
                    ..observed()
                };
                let plan = plan(&km(Some("kind://c/kind/c-m")), &o).expect("plan");
                assert!(
                    matches!(&plan.phase, Some(Phase::Lost { reason, .. }) if *reason == want),
                    "{plan:?}"
                );
                let lb: &[&str] = if control_plane {
                    &["ReconfigureLoadBalancer"]
                } else {
                    &[]
                };
                assert_eq!(kinds(&plan), lb);
                assert_eq!(plan.next, Next::AwaitChange);
            }
        }
    }

    #[test]
    fn a_container_that_died_during_boot_is_shown_not_replaced() {
        let mut died = container("restarting");
        died.exit_code = 3;
        died.restart_count = 1;
        let o = Observed {
            container: Some(died),
            console: "Failed to create inotify object\n".into(),
            ..observed()
        };
        let plan = plan(&km(None), &o).expect("plan");
        let Some(Phase::Exited { message }) = &plan.phase else {
            panic!("{plan:?}")
        };
        assert!(
            message.contains("code 3") && message.contains("inotify"),
            "{message}"
        );
        assert_eq!(kinds(&plan), ["ContainerExited"]);
        assert_eq!(plan.next, Next::Requeue(EXITED_LOOK));
        let seen = with_prior(
            km(None),
            CONTAINER_PROVISIONED,
            reason::CONTAINER_EXITED,
            message,
        );
        assert_eq!(
            kinds(&super::plan(&seen, &o).expect("plan")),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn a_container_brought_back_waits_and_a_stopped_one_is_started() {
        let mut back = container("running");
        back.restart_count = 1;
        back.started_at = Some(chrono::Utc::now());
        let o = Observed {
            container: Some(back),
            ..observed()
        };
        let plan = plan(&km(None), &o).expect("plan");
        assert_eq!((plan.phase.clone(), kinds(&plan)), (None, vec![]));
        assert!(matches!(plan.next, Next::Requeue(d) if d <= node::BOOT_GRACE));

        let o = Observed {
            container: Some(container("exited")),
            machine: machine(true, true),
            ..observed()
        };
        let plan = super::plan(&km(None), &o).expect("plan");
        assert_eq!(kinds(&plan), ["Start", "ReconfigureLoadBalancer"]);
        assert_eq!(
            (plan.phase, plan.next),
            (Some(Phase::Started), Next::Requeue(SOON))
        );
    }

    #[test]
    fn a_watched_bootstrap_is_not_looked_at() {
        let before = with_prior(
            km(None),
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::BOOTSTRAPPING,
            "Running bootstrap step 1 of 3",
        );
        let o = Observed {
            container: Some(container("running")),
            progress: Progress::Waiting,
            ..observed()
        };
        let plan = plan(&before, &o).expect("plan");
        assert_eq!(kinds(&plan), Vec::<&str>::new());
        assert_eq!(
            plan.phase,
            Some(Phase::Bootstrapping {
                message: "Running bootstrap step 1 of 3".into()
            })
        );
    }

    #[test]
    fn deletion_removes_only_our_container_then_the_finalizer() {
        let mut foreign = container("running");
        foreign.labels.clear();
        let cases: [(Option<Container>, bool, &[&str]); 4] = [
            (
                Some(container("running")),
                false,
                &["Remove", "RemoveFinalizer"],
            ),
            (
                Some(container("exited")),
                true,
                &["Remove", "ReconfigureLoadBalancer", "RemoveFinalizer"],
            ),
            (Some(foreign), false, &["RemoveFinalizer"]),
            (None, false, &["RemoveFinalizer"]),
        ];
        for (c, control_plane, want) in cases {
            let o = Observed {
                container: c,
                machine: machine(control_plane, true),
                ..observed()
            };
            let plan = deletion(&km(None), &o);
            assert_eq!(kinds(&plan), want);
            assert_eq!(
                (plan.phase, plan.next),
                (Some(Phase::Deleting), Next::AwaitChange)
            );
        }
    }
}
