//! The KindMachine's status as a pure function of the object and the reconcile's findings.

use capkind_api::v1beta1::{
    ConditionSeverity, Initialization, KindMachine, KindMachineStatus, MachineAddress,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::capi::conditions::{self, Cond, PAUSED};

/// The node container's condition type.
pub const CONTAINER_PROVISIONED: &str = "ContainerProvisioned";
/// The bootstrap's condition type.
pub const BOOTSTRAP_EXEC_SUCCEEDED: &str = "BootstrapExecSucceeded";

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
    let not_paused = Cond::not_ok(
        PAUSED,
        "NotPaused",
        "Reconciliation is not paused",
        ConditionSeverity::Info,
    );
    let v1beta2 = st.v1beta2.get_or_insert_with(Default::default);
    for cond in [&f.container, &f.bootstrap, &ready, &not_paused] {
        conditions::set_v1beta2(&mut v1beta2.conditions, cond, km.metadata.generation, now);
    }
    for cond in [&f.container, &f.bootstrap, &ready] {
        conditions::set_v1beta1(&mut st.conditions, cond, now);
    }
    if ready.status == capkind_api::v1beta1::ConditionStatus::True {
        st.ready = true;
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

/// The phase of a machine for the `capkind_machines` metric.
pub fn phase(f: &Findings) -> &'static str {
    use capkind_api::v1beta1::ConditionStatus::True;
    let failed = |c: &Cond| c.severity == ConditionSeverity::Warning && c.status != True;
    match (&f.container, &f.bootstrap) {
        (c, b) if c.status == True && b.status == True => "Ready",
        (c, b) if failed(c) || failed(b) => "Failed",
        (c, _) if c.reason == "Deleting" => "Deleting",
        (_, b) if b.reason == "Bootstrapping" => "Bootstrapping",
        (c, _) if c.status == True => "Provisioning",
        _ => "Waiting",
    }
}

/// The status while paused: only the Paused condition changes.
pub fn paused(km: &KindMachine, message: &str, now: &Time) -> KindMachineStatus {
    let mut st = km.status.clone().unwrap_or_default();
    let v1beta2 = st.v1beta2.get_or_insert_with(Default::default);
    conditions::set_v1beta2(
        &mut v1beta2.conditions,
        &Cond::ok(PAUSED, "Paused", message),
        km.metadata.generation,
        now,
    );
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use capkind_api::v1beta1::{KindMachineSpec, MachineAddressType};

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
        let c = st
            .v1beta2
            .as_ref()
            .and_then(|v| v.conditions.iter().find(|c| c.type_ == t))
            .expect(t);
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
        assert!(!st.ready);
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
        assert!(st.ready);
        assert_eq!(
            st.initialization.as_ref().and_then(|i| i.provisioned),
            Some(true)
        );
        assert_eq!(v2(&st, "Ready"), ("True".into(), "Ready".into()));
        assert_eq!(v2(&st, "Paused"), ("False".into(), "NotPaused".into()));
        assert_eq!(st.addresses.len(), 1);
        let v1: Vec<&str> = st.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            v1,
            [BOOTSTRAP_EXEC_SUCCEEDED, CONTAINER_PROVISIONED, "Ready"]
        );

        // The container goes away later: the problem shows, provisioning is not undone.
        km.status = Some(st);
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
        assert!(st.ready);
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
