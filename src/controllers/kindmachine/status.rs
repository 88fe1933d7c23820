//! The KindMachine's status as a pure function of the object and the reconcile's findings:
//! the condition types and their reasons, the phase rendered into both condition shapes.

use capkind_api::v1beta2::{
    ConditionSeverity, Initialization, KindMachine, KindMachineStatus, MachineAddress,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::Phase;
use crate::capi::conditions::{self, Cond};

/// The node container's condition type.
pub const CONTAINER_PROVISIONED: &str = "ContainerProvisioned";
/// The bootstrap's condition type.
pub const BOOTSTRAP_EXEC_SUCCEEDED: &str = "BootstrapExecSucceeded";

/// The reasons of ContainerProvisioned and BootstrapExecSucceeded (errors add theirs:
/// `Error::reason`).
pub mod reason {
    /// ContainerProvisioned: no container before the cluster's infrastructure is ready.
    pub const WAITING_FOR_CLUSTER_INFRASTRUCTURE: &str = "WaitingForClusterInfrastructure";
    /// ContainerProvisioned: no container before the bootstrap data exists.
    pub const WAITING_FOR_BOOTSTRAP_DATA: &str = "WaitingForBootstrapData";
    /// ContainerProvisioned: no worker before the control plane is initialized.
    pub const WAITING_FOR_CONTROL_PLANE_INITIALIZED: &str = "WaitingForControlPlaneInitialized";
    /// ContainerProvisioned: the container runs.
    pub const PROVISIONED: &str = "Provisioned";
    /// ContainerProvisioned: the container of a provisioned machine is gone.
    pub const CONTAINER_DELETED: &str = "ContainerDeleted";
    /// ContainerProvisioned: the container of a provisioned machine was stopped.
    pub const CONTAINER_STOPPED: &str = "ContainerStopped";
    /// ContainerProvisioned: the container died by itself.
    pub const CONTAINER_EXITED: &str = "ContainerExited";
    /// ContainerProvisioned: the machine is being deleted.
    pub const DELETING: &str = "Deleting";
    /// BootstrapExecSucceeded: no container to run the bootstrap in yet.
    pub const WAITING_FOR_CONTAINER: &str = "WaitingForContainer";
    /// BootstrapExecSucceeded: the bootstrap runs.
    pub const BOOTSTRAPPING: &str = "Bootstrapping";
    /// BootstrapExecSucceeded: it ran to completion.
    pub const BOOTSTRAP_SUCCEEDED: &str = "BootstrapSucceeded";
    /// BootstrapExecSucceeded: a step failed or the sentinel is missing.
    pub const BOOTSTRAP_FAILED: &str = "BootstrapFailed";
    /// BootstrapExecSucceeded: it ran past its timeout.
    pub const BOOTSTRAP_TIMED_OUT: &str = "BootstrapTimedOut";
    /// BootstrapExecSucceeded: a restart of the node cut it short.
    pub const BOOTSTRAP_INTERRUPTED: &str = "BootstrapInterrupted";
}

/// The condition an error of a KindMachine reconcile belongs to.
pub fn condition_of(error: &crate::controllers::Error) -> &'static str {
    use crate::controllers::Error;
    match error {
        Error::BootstrapData(_)
        | Error::BootstrapSecretMissing { .. }
        | Error::BadTimeout(_)
        | Error::PreloadFailed { .. } => BOOTSTRAP_EXEC_SUCCEEDED,
        // preLoadImages are pulled once the container runs, before the bootstrap.
        Error::ImagePulling { preload: true, .. } | Error::ImagePull { preload: true, .. } => {
            BOOTSTRAP_EXEC_SUCCEEDED
        }
        _ => CONTAINER_PROVISIONED,
    }
}

/// The conditions of `phase` for the container `name`; `bootstrap_before` is the bootstrap's
/// condition as last written, kept where the phase says nothing new about it.
pub fn conditions(phase: &Phase, name: &str, bootstrap_before: Cond) -> (Cond, Cond) {
    use Phase::*;
    let container = match phase {
        Waiting { reason, message } => waiting(CONTAINER_PROVISIONED, reason, *message),
        Exited { message } => problem(CONTAINER_PROVISIONED, reason::CONTAINER_EXITED, message),
        Lost { reason, message } => problem(CONTAINER_PROVISIONED, reason, message),
        Deleting => waiting(
            CONTAINER_PROVISIONED,
            reason::DELETING,
            format!("Removing container {name}"),
        ),
        Started | Bootstrapping { .. } | Ready | BootstrapFailed { .. } => Cond::ok(
            CONTAINER_PROVISIONED,
            reason::PROVISIONED,
            format!("Container {name} is running"),
        ),
    };
    let bootstrap = match phase {
        Waiting { .. } => waiting(
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::WAITING_FOR_CONTAINER,
            "Waiting for the node container",
        ),
        Exited { .. } => waiting(
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::WAITING_FOR_CONTAINER,
            "Waiting for the node container to run",
        ),
        Bootstrapping { message } => {
            waiting(BOOTSTRAP_EXEC_SUCCEEDED, reason::BOOTSTRAPPING, message)
        }
        Ready => Cond::ok(
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::BOOTSTRAP_SUCCEEDED,
            "The bootstrap data ran to completion",
        ),
        BootstrapFailed { reason, message } => problem(BOOTSTRAP_EXEC_SUCCEEDED, reason, message),
        Started | Lost { .. } | Deleting => bootstrap_before,
    };
    (container, bootstrap)
}

/// ContainerProvisioned while the bootstrap has an error: as last written when it said the
/// container `name` runs; otherwise the bootstrap data is what the container waits for.
pub fn container_before(km: &KindMachine, name: &str) -> Cond {
    match super::plan::prior(km, CONTAINER_PROVISIONED) {
        Some(c) if c.status == "True" => Cond::ok(CONTAINER_PROVISIONED, &c.reason, &c.message),
        _ => waiting(
            CONTAINER_PROVISIONED,
            reason::WAITING_FOR_BOOTSTRAP_DATA,
            format!(
                "Container {name} waits for usable bootstrap data (see {BOOTSTRAP_EXEC_SUCCEEDED})"
            ),
        ),
    }
}

/// The bootstrap condition as last written, so that an unrelated error does not reset it.
pub fn bootstrap_before(km: &KindMachine) -> Cond {
    match super::plan::prior(km, BOOTSTRAP_EXEC_SUCCEEDED) {
        Some(c) if c.status == "True" => Cond::ok(BOOTSTRAP_EXEC_SUCCEEDED, &c.reason, &c.message),
        Some(c) => waiting(BOOTSTRAP_EXEC_SUCCEEDED, &c.reason, c.message.clone()),
        None => waiting(
            BOOTSTRAP_EXEC_SUCCEEDED,
            reason::WAITING_FOR_CONTAINER,
            "Waiting for the node container",
        ),
    }
}

/// What the reconcile found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    /// ContainerProvisioned.
    pub container: Cond,
    /// BootstrapExecSucceeded.
    pub bootstrap: Cond,
    /// The node's addresses, when the container runs.
    pub addresses: Option<Vec<MachineAddress>>,
    /// The Machine's failure domain.
    pub failure_domain: Option<String>,
}

/// A condition that waits on something else (not an error).
pub fn waiting(type_: &'static str, reason: &str, message: impl Into<String>) -> Cond {
    Cond::not_ok(type_, reason, message, ConditionSeverity::Info)
}

/// A condition that reports a problem.
pub fn problem(type_: &'static str, reason: &str, message: impl Into<String>) -> Cond {
    Cond::not_ok(type_, reason, message, ConditionSeverity::Warning)
}

/// The status after a reconcile that was not paused.
pub fn status(km: &KindMachine, f: &Findings, now: &Time) -> KindMachineStatus {
    let mut st = km.status.clone().unwrap_or_default();
    let ready = Cond::ready_summary(
        &[f.container.clone(), f.bootstrap.clone()],
        "The node is provisioned and bootstrapped",
    );
    let not_paused = Cond::not_paused();
    for cond in [&f.container, &f.bootstrap, &ready, &not_paused] {
        conditions::set_v1beta2(&mut st.conditions, cond, km.metadata.generation, now);
    }
    let v1beta1 = conditions::deprecated(&mut st.deprecated);
    for cond in [&f.container, &f.bootstrap, &ready] {
        conditions::set_v1beta1(&mut v1beta1.conditions, cond, now);
    }
    if ready.status == capkind_api::v1beta2::ConditionStatus::True {
        st.initialization = Some(Initialization {
            provisioned: Some(true),
        });
    }
    if let Some(addresses) = &f.addresses {
        st.addresses = addresses.clone();
    }
    st.failure_domain = f.failure_domain.clone();
    st.observed_generation = km.metadata.generation;
    st
}

/// The status while paused: only the Paused condition changes.
pub fn paused(km: &KindMachine, message: &str, now: &Time) -> KindMachineStatus {
    let mut st = km.status.clone().unwrap_or_default();
    conditions::set_paused(&mut st.conditions, message, km.metadata.generation, now);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use capkind_api::v1beta2::{KindMachineSpec, MachineAddressType};

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn findings(container: Cond, bootstrap: Cond) -> Findings {
        Findings {
            container,
            bootstrap,
            addresses: None,
            failure_domain: Some("fd1".into()),
        }
    }

    fn v2(st: &KindMachineStatus, t: &str) -> (String, String) {
        let c = st.conditions.iter().find(|c| c.type_ == t).expect(t);
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn waiting_then_bootstrapping_then_ready() {
        let mut km = KindMachine::new("m", KindMachineSpec::default());
        let wait = findings(
            waiting(
                CONTAINER_PROVISIONED,
                "WaitingForBootstrapData",
                "Waiting for the bootstrap data",
            ),
            waiting(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "WaitingForContainer",
                "Waiting for the container",
            ),
        );
        let st = status(&km, &wait, &at(1));
        assert!(st.initialization.is_none());
        assert_eq!(
            v2(&st, "Ready"),
            ("False".into(), "WaitingForBootstrapData".into())
        );
        assert_eq!(st.failure_domain.as_deref(), Some("fd1"));

        km.status = Some(st);
        let mut done = findings(
            Cond::ok(CONTAINER_PROVISIONED, "Provisioned", "Container c-m runs"),
            Cond::ok(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "BootstrapSucceeded",
                "Bootstrap finished in 3s",
            ),
        );
        done.addresses = Some(vec![MachineAddress {
            type_: MachineAddressType::InternalIP,
            address: "172.18.0.3".into(),
        }]);
        let st = status(&km, &done, &at(2));
        assert!(st.initialization.as_ref().and_then(|i| i.provisioned) == Some(true));
        assert_eq!(
            st.initialization.as_ref().and_then(|i| i.provisioned),
            Some(true)
        );
        assert_eq!(v2(&st, "Ready"), ("True".into(), "Ready".into()));
        assert_eq!(v2(&st, "Paused"), ("False".into(), "NotPaused".into()));
        assert_eq!(st.addresses.len(), 1);
        let v1: Vec<&str> = st
            .deprecated
            .as_ref()
            .expect("deprecated")
            .conditions()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            v1,
            [BOOTSTRAP_EXEC_SUCCEEDED, CONTAINER_PROVISIONED, "Ready"]
        );

        km.status = Some(st);
        a_lost_container_does_not_undo_provisioning(km);
    }

    /// The container goes away later: the problem shows, provisioning is not undone.
    fn a_lost_container_does_not_undo_provisioning(km: KindMachine) {
        let lost = findings(
            problem(
                CONTAINER_PROVISIONED,
                "ContainerDeleted",
                "Container c-m no longer exists",
            ),
            Cond::ok(
                BOOTSTRAP_EXEC_SUCCEEDED,
                "BootstrapSucceeded",
                "Bootstrap finished in 3s",
            ),
        );
        let st = status(&km, &lost, &at(3));
        assert!(st.initialization.as_ref().and_then(|i| i.provisioned) == Some(true));
        assert_eq!(
            v2(&st, "Ready"),
            ("False".into(), "ContainerDeleted".into())
        );
        assert_eq!(
            st.addresses.len(),
            1,
            "addresses are kept when not observed"
        );
    }
}
