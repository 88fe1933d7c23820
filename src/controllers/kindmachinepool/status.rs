//! The KindMachinePool's status as a pure function of the pool and what the reconcile found.

use capkind_api::v1beta2::{
    ConditionStatus, INSTANCE_KIND, Initialization, KindMachinePool, KindMachinePoolInstance,
    KindMachinePoolStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::capi::conditions::{self, Cond};
use crate::controllers::kindmachine::status::waiting;

/// The condition type that says whether every wanted instance is ready.
pub const REPLICAS_READY: &str = "ReplicasReady";

/// The reasons of ReplicasReady.
pub mod reason {
    /// Every wanted instance is ready.
    pub const REPLICAS_READY: &str = "ReplicasReady";
    /// No instance before the MachinePool has bootstrap data.
    pub const WAITING_FOR_BOOTSTRAP_DATA: &str = "WaitingForBootstrapData";
    /// Instances are being added or bootstrapped.
    pub const SCALING_UP: &str = "ScalingUp";
    /// Instances are being removed.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Instances made from an older template are being replaced.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// The pool is being deleted.
    pub const DELETING: &str = "Deleting";
}

/// What the reconcile found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// How many instances the MachinePool wants.
    pub wanted: usize,
    /// Instances that are not being deleted, sorted by name.
    pub instances: Vec<KindMachinePoolInstance>,
    /// How many of them were made from an older template.
    pub outdated: usize,
    /// Whether the MachinePool's bootstrap data is still missing.
    pub waiting_for_bootstrap_data: bool,
}

/// ReplicasReady for `f`.
pub fn replicas_ready(f: &Findings) -> Cond {
    let total = f.instances.len();
    let ready = f.instances.iter().filter(|i| i.ready).count();
    let wanted = f.wanted;
    if f.waiting_for_bootstrap_data {
        return waiting(
            REPLICAS_READY,
            reason::WAITING_FOR_BOOTSTRAP_DATA,
            "Waiting for the MachinePool's bootstrap data (spec.template.spec.bootstrap.dataSecretName)",
        );
    }
    let mut message = format!("{ready} of {wanted} instances ready, {total} in the pool");
    if f.outdated > 0 {
        message.push_str(&format!(", {} made from an older template", f.outdated));
    }
    if ready >= wanted && total == wanted {
        return Cond::ok(REPLICAS_READY, reason::REPLICAS_READY, message);
    }
    let why = if f.outdated > 0 {
        reason::ROLLING_OUT
    } else if total > wanted {
        reason::SCALING_DOWN
    } else {
        reason::SCALING_UP
    };
    waiting(REPLICAS_READY, why, message)
}

/// The status after a reconcile that was not paused.
pub fn status(pool: &KindMachinePool, f: &Findings, now: &Time) -> KindMachinePoolStatus {
    let replicas = replicas_ready(f);
    let ready = replicas.status == ConditionStatus::True;
    let mut st = showing(pool, replicas, now);
    conditions::set_v1beta2(
        &mut st.conditions,
        &Cond::not_paused(),
        pool.metadata.generation,
        now,
    );
    st.ready = ready;
    if st.ready {
        st.initialization = Some(Initialization {
            provisioned: Some(true),
        });
    }
    st.replicas = i32::try_from(f.instances.len()).unwrap_or(i32::MAX);
    st.infrastructure_machine_kind = Some(INSTANCE_KIND.to_string());
    st.instances = f.instances.clone();
    st.observed_generation = pool.metadata.generation;
    st
}

/// ReplicasReady while the pool is deleted and `left` instances are still there.
pub fn deleting(left: usize) -> Cond {
    waiting(
        REPLICAS_READY,
        reason::DELETING,
        format!("Deleting the pool: {left} instances left"),
    )
}

/// The status as it was, with ReplicasReady (and so Ready) set to `replicas`: for an error,
/// or a deletion under way.
pub fn showing(pool: &KindMachinePool, replicas: Cond, now: &Time) -> KindMachinePoolStatus {
    let mut st = pool.status.clone().unwrap_or_default();
    let ready = Cond::ready_summary(
        std::slice::from_ref(&replicas),
        "Every wanted instance is ready",
    );
    for cond in [&replicas, &ready] {
        conditions::set_v1beta2(&mut st.conditions, cond, pool.metadata.generation, now);
    }
    let v1beta1 = conditions::deprecated(&mut st.deprecated);
    for cond in [&replicas, &ready] {
        conditions::set_v1beta1(&mut v1beta1.conditions, cond, now);
    }
    st
}

/// The status while paused: only the Paused condition changes.
pub fn paused(pool: &KindMachinePool, message: &str, now: &Time) -> KindMachinePoolStatus {
    let mut st = pool.status.clone().unwrap_or_default();
    conditions::set_paused(&mut st.conditions, message, pool.metadata.generation, now);
    st
}

/// The sorted provider IDs of the instances that have one.
pub fn provider_ids(instances: &[KindMachinePoolInstance]) -> Vec<String> {
    let mut ids: Vec<String> = instances
        .iter()
        .filter(|i| !i.provider_id.is_empty())
        .map(|i| i.provider_id.clone())
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    fn instance(name: &str, ready: bool) -> KindMachinePoolInstance {
        KindMachinePoolInstance {
            instance_name: name.into(),
            provider_id: if ready {
                format!("kind://c/kind/c-{name}")
            } else {
                String::new()
            },
            ready,
            ..KindMachinePoolInstance::default()
        }
    }

    #[test]
    fn ready_once_every_wanted_instance_is_and_provisioned_stays() {
        let pool = KindMachinePool::new("p", Default::default());
        let f = Findings {
            wanted: 2,
            instances: vec![instance("a", true), instance("b", false)],
            ..Findings::default()
        };
        let st = status(&pool, &f, &at(1));
        assert!(!st.ready);
        assert_eq!(st.replicas, 2);
        assert_eq!(
            st.infrastructure_machine_kind.as_deref(),
            Some("KindMachine")
        );
        let cond = st.conditions.iter().find(|c| c.type_ == REPLICAS_READY);
        let cond = cond.expect("ReplicasReady");
        assert_eq!(
            (cond.reason.as_str(), cond.message.as_str()),
            (reason::SCALING_UP, "1 of 2 instances ready, 2 in the pool")
        );
        let mut pool = pool;
        let all = Findings {
            wanted: 2,
            instances: vec![instance("a", true), instance("b", true)],
            ..Findings::default()
        };
        pool.status = Some(status(&pool, &all, &at(2)));
        assert!(pool.provisioned());
        assert!(pool.status.as_ref().is_some_and(|s| s.ready));
        // Scaling up later: no longer ready, but provisioned stays.
        let more = Findings { wanted: 3, ..all };
        let st = status(&pool, &more, &at(3));
        assert!(!st.ready);
        assert_eq!(st.initialization.and_then(|i| i.provisioned), Some(true));
        assert_eq!(
            provider_ids(&st.instances),
            ["kind://c/kind/c-a", "kind://c/kind/c-b"]
        );
    }

    #[test]
    fn the_reason_says_what_the_pool_is_doing() {
        let cases = [
            (3, vec![true, true], 0, false, reason::SCALING_UP),
            (1, vec![true, true], 0, false, reason::SCALING_DOWN),
            (2, vec![true, true, false], 2, false, reason::ROLLING_OUT),
            (0, vec![], 0, false, reason::REPLICAS_READY),
            (2, vec![], 0, true, reason::WAITING_FOR_BOOTSTRAP_DATA),
        ];
        for (wanted, ready, outdated, waiting, want) in cases {
            let f = Findings {
                wanted,
                instances: ready
                    .iter()
                    .enumerate()
                    .map(|(n, r)| instance(&n.to_string(), *r))
                    .collect(),
                outdated,
                waiting_for_bootstrap_data: waiting,
            };
            assert_eq!(replicas_ready(&f).reason, want, "{f:?}");
        }
    }
}
