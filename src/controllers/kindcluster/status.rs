//! The KindCluster's status as a pure function of the object and what the reconcile found.

use capkind_api::v1beta2::{ConditionSeverity, Initialization, KindCluster, KindClusterStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::capi::conditions::{self, Cond, READY};

/// The load balancer's condition type.
pub const LOAD_BALANCER_AVAILABLE: &str = "LoadBalancerAvailable";

/// The reasons of LoadBalancerAvailable (errors add theirs: `Error::reason`).
pub mod reason {
    /// The load balancer runs and is configured.
    pub const AVAILABLE: &str = "Available";
    /// It is being removed with the KindCluster.
    pub const DELETING: &str = "Deleting";
}

/// What the reconcile found about the load balancer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadBalancer {
    /// Running, configured, reachable at this address.
    Available { container: String, address: String },
    /// Not available, with a reason and message for people.
    Unavailable { reason: String, message: String },
    /// Not available yet, waiting on something under way (an image being pulled).
    Pending { reason: String, message: String },
    /// Being removed with the KindCluster.
    Deleting,
}

/// The status after a reconcile that was not paused.
pub fn status(kc: &KindCluster, lb: &LoadBalancer, now: &Time) -> KindClusterStatus {
    let mut st = kc.status.clone().unwrap_or_default();
    let lb_cond = match lb {
        LoadBalancer::Available { container, address } => Cond::ok(
            LOAD_BALANCER_AVAILABLE,
            reason::AVAILABLE,
            format!("Load balancer {container} is running at {address}"),
        ),
        LoadBalancer::Unavailable { reason, message } => Cond::not_ok(
            LOAD_BALANCER_AVAILABLE,
            reason,
            message.clone(),
            ConditionSeverity::Warning,
        ),
        LoadBalancer::Pending { reason, message } => Cond::not_ok(
            LOAD_BALANCER_AVAILABLE,
            reason,
            message.clone(),
            ConditionSeverity::Info,
        ),
        LoadBalancer::Deleting => Cond::not_ok(
            LOAD_BALANCER_AVAILABLE,
            reason::DELETING,
            "Removing the load balancer",
            ConditionSeverity::Info,
        ),
    };
    let ready = Cond::ready_summary(
        std::slice::from_ref(&lb_cond),
        "The cluster's infrastructure is ready",
    );
    let not_paused = Cond::not_paused();
    for cond in [&lb_cond, &ready, &not_paused] {
        conditions::set_v1beta2(&mut st.conditions, cond, kc.metadata.generation, now);
    }
    // Cluster API keeps Paused in the v1beta2 list only.
    let v1beta1 = conditions::deprecated(&mut st.deprecated);
    for cond in [&lb_cond, &ready] {
        conditions::set_v1beta1(&mut v1beta1.conditions, cond, now);
    }
    if matches!(lb, LoadBalancer::Available { .. }) {
        st.initialization = Some(Initialization {
            provisioned: Some(true),
        });
    }
    st.failure_domains = kc.spec.failure_domains.clone();
    st.observed_generation = kc.metadata.generation;
    st
}

/// The status while reconciliation is paused: only the Paused condition changes.
pub fn paused(kc: &KindCluster, message: &str, now: &Time) -> KindClusterStatus {
    let mut st = kc.status.clone().unwrap_or_default();
    conditions::set_paused(&mut st.conditions, message, kc.metadata.generation, now);
    st
}

/// Whether the Ready condition is True (v1beta2 list).
pub fn is_ready(st: &KindClusterStatus) -> bool {
    st.conditions
        .iter()
        .any(|c| c.type_ == READY && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::conditions::PAUSED;
    use capkind_api::v1beta2::{FailureDomain, KindClusterSpec};

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn kc() -> KindCluster {
        let mut kc = KindCluster::new("c", KindClusterSpec::default());
        kc.metadata.generation = Some(3);
        kc.spec.failure_domains = vec![FailureDomain {
            name: "fd1".to_string(),
            control_plane: Some(true),
            attributes: None,
        }];
        kc
    }

    fn cond<'a>(
        st: &'a KindClusterStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        st.conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect(type_)
    }

    #[test]
    fn available_load_balancer_makes_the_cluster_ready() {
        let lb = LoadBalancer::Available {
            container: "c-lb".into(),
            address: "172.18.0.2".into(),
        };
        let st = status(&kc(), &lb, &at(1));
        assert!(st.initialization.as_ref().and_then(|i| i.provisioned) == Some(true));
        assert_eq!(
            st.initialization.as_ref().and_then(|i| i.provisioned),
            Some(true)
        );
        assert_eq!(st.failure_domains, kc().spec.failure_domains);
        assert_eq!(st.observed_generation, Some(3));
        assert_eq!(cond(&st, READY).status, "True");
        assert_eq!(
            cond(&st, LOAD_BALANCER_AVAILABLE).message,
            "Load balancer c-lb is running at 172.18.0.2"
        );
        assert_eq!(cond(&st, PAUSED).status, "False");
        assert!(is_ready(&st));
        let v1: Vec<&str> = st
            .deprecated
            .as_ref()
            .expect("deprecated")
            .conditions()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(v1, [LOAD_BALANCER_AVAILABLE, READY]);
    }

    #[test]
    fn recomputing_a_steady_state_changes_nothing() {
        let lb = LoadBalancer::Available {
            container: "c-lb".into(),
            address: "172.18.0.2".into(),
        };
        let mut obj = kc();
        obj.status = Some(status(&obj, &lb, &at(1)));
        assert_eq!(
            status(&obj, &lb, &at(99)),
            obj.status.clone().expect("status")
        );
    }

    #[test]
    fn a_problem_is_reported_and_ready_stays_provisioned() {
        let lb = LoadBalancer::Available {
            container: "c-lb".into(),
            address: "172.18.0.2".into(),
        };
        let mut obj = kc();
        obj.status = Some(status(&obj, &lb, &at(1)));
        let broken = LoadBalancer::Unavailable {
            reason: "DockerUnavailable".into(),
            message: "engine down".into(),
        };
        let st = status(&obj, &broken, &at(5));
        assert_eq!(
            st.initialization.as_ref().and_then(|i| i.provisioned),
            Some(true),
            "provisioning is never undone"
        );
        assert_eq!(cond(&st, READY).reason, "DockerUnavailable");
        assert_eq!(cond(&st, READY).status, "False");
        assert_eq!(
            cond(&st, LOAD_BALANCER_AVAILABLE).last_transition_time,
            at(5)
        );
        let v1 = st
            .deprecated
            .as_ref()
            .expect("deprecated")
            .conditions()
            .iter()
            .find(|c| c.type_ == READY)
            .expect("v1beta1 Ready");
        assert_eq!(v1.severity, Some(ConditionSeverity::Warning));
        assert_eq!(v1.message.as_deref(), Some("engine down"));
    }

    #[test]
    fn deleting_and_paused() {
        let st = status(&kc(), &LoadBalancer::Deleting, &at(1));
        assert_eq!(cond(&st, READY).reason, "Deleting");
        assert!(st.initialization.is_none());
        let mut obj = kc();
        obj.status = Some(st);
        let p = paused(&obj, "Cluster spec.paused is set to true", &at(2));
        assert_eq!(cond(&p, PAUSED).status, "True");
        assert_eq!(
            cond(&p, PAUSED).message,
            "Cluster spec.paused is set to true"
        );
        assert_eq!(
            cond(&p, READY).reason,
            "Deleting",
            "pause leaves the other conditions alone"
        );
    }
}
