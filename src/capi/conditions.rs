//! Conditions in both Cluster API shapes, written from one description so the v1beta1 list and
//! the v1beta2 list always agree. A condition keeps its lastTransitionTime unless its status
//! changes, so recomputing an unchanged state yields an identical status (no writes, no churn).

use capkind_api::v1beta1::{Condition, ConditionSeverity, ConditionStatus};
use capkind_api::v1beta2::{Deprecated, V1Beta1Deprecated};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition as MetaCondition, Time};

/// Ready: the summary of the other conditions.
pub const READY: &str = "Ready";
/// Paused (v1beta2 list only, as Cluster API does).
pub const PAUSED: &str = "Paused";

/// The conditions while reconciliation is paused: only Paused changes (v1beta2 list).
pub fn set_paused(
    list: &mut Vec<MetaCondition>,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    set_v1beta2(list, &Cond::ok(PAUSED, "Paused", message), generation, now);
}

/// One condition as the controller decides it, before it is written in either shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    /// Condition type.
    pub type_: &'static str,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    /// CamelCase reason (also used in the v1beta1 list when the status is not True).
    pub reason: String,
    /// Human readable message; never empty.
    pub message: String,
    /// Severity for the v1beta1 list when the status is False.
    pub severity: ConditionSeverity,
}

impl Cond {
    /// Paused False: what every reconcile that is not paused writes.
    pub fn not_paused() -> Self {
        Self::not_ok(
            PAUSED,
            "NotPaused",
            "Reconciliation is not paused",
            ConditionSeverity::Info,
        )
    }

    /// A True condition.
    pub fn ok(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self::new(
            type_,
            ConditionStatus::True,
            reason,
            message,
            ConditionSeverity::Info,
        )
    }

    /// A False condition with a severity.
    pub fn not_ok(
        type_: &'static str,
        reason: &str,
        message: impl Into<String>,
        severity: ConditionSeverity,
    ) -> Self {
        Self::new(type_, ConditionStatus::False, reason, message, severity)
    }

    fn new(
        type_: &'static str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        severity: ConditionSeverity,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
            severity,
        }
    }

    /// The Ready summary of `conds`: True when all are, else the first one that is not.
    pub fn ready_summary(conds: &[Cond], ready_message: &str) -> Cond {
        match conds.iter().find(|c| c.status != ConditionStatus::True) {
            None => Cond::ok(READY, "Ready", ready_message),
            Some(c) => Cond {
                type_: READY,
                ..c.clone()
            },
        }
    }
}

/// The v1beta1 part of `status.deprecated`, created when missing.
pub fn deprecated(deprecated: &mut Option<Deprecated>) -> &mut V1Beta1Deprecated {
    deprecated
        .get_or_insert_with(Default::default)
        .v1beta1
        .get_or_insert_with(Default::default)
}

/// Writes `cond` into a v1beta1 list, keeping the transition time when the status is unchanged.
pub fn set_v1beta1(list: &mut Vec<Condition>, cond: &Cond, now: &Time) {
    let is_true = cond.status == ConditionStatus::True;
    let new = Condition {
        type_: cond.type_.to_string(),
        status: cond.status,
        severity: (!is_true).then_some(cond.severity),
        last_transition_time: now.clone(),
        reason: (!is_true).then(|| cond.reason.clone()),
        message: (!is_true).then(|| cond.message.clone()),
    };
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            let since = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                now.clone()
            };
            *old = Condition {
                last_transition_time: since,
                ..new
            };
        }
        None => list.push(new),
    }
    list.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// Writes `cond` into a v1beta2 (metav1) list, keeping the transition time when the status is
/// unchanged.
pub fn set_v1beta2(
    list: &mut Vec<MetaCondition>,
    cond: &Cond,
    generation: Option<i64>,
    now: &Time,
) {
    let new = MetaCondition {
        type_: cond.type_.to_string(),
        status: cond.status.as_str().to_string(),
        reason: cond.reason.clone(),
        message: cond.message.clone(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(old) => {
            let since = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                now.clone()
            };
            *old = MetaCondition {
                last_transition_time: since,
                ..new
            };
        }
        None => list.push(new),
    }
    list.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).expect("time"))
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        let up = Cond::ok("LoadBalancerAvailable", "Available", "up");
        set_v1beta1(&mut v1, &up, &at(10));
        set_v1beta2(&mut v2, &up, Some(1), &at(10));
        // Same status later: times kept, even with a new message.
        let up_again = Cond::ok("LoadBalancerAvailable", "Available", "still up");
        set_v1beta1(&mut v1, &up_again, &at(20));
        set_v1beta2(&mut v2, &up_again, Some(2), &at(20));
        assert_eq!(v1[0].last_transition_time, at(10));
        assert_eq!(v2[0].last_transition_time, at(10));
        assert_eq!(v2[0].message, "still up");
        assert_eq!(v2[0].observed_generation, Some(2));
        // Status flips: time moves.
        let down = Cond::not_ok(
            "LoadBalancerAvailable",
            "NotAvailable",
            "gone",
            ConditionSeverity::Warning,
        );
        set_v1beta1(&mut v1, &down, &at(30));
        set_v1beta2(&mut v2, &down, Some(2), &at(30));
        assert_eq!(v1[0].last_transition_time, at(30));
        assert_eq!(v2[0].last_transition_time, at(30));
        assert_eq!(v1[0].severity, Some(ConditionSeverity::Warning));
        assert_eq!(v1[0].reason.as_deref(), Some("NotAvailable"));
    }

    #[test]
    fn true_v1beta1_conditions_carry_no_reason_or_severity() {
        let mut v1 = Vec::new();
        set_v1beta1(&mut v1, &Cond::ok(READY, "Ready", "fine"), &at(1));
        assert_eq!(
            (v1[0].reason.clone(), v1[0].severity, v1[0].message.clone()),
            (None, None, None)
        );
    }

    #[test]
    fn ready_summary_takes_the_first_problem() {
        let ok = Cond::ok("A", "Fine", "a");
        let bad = Cond::not_ok("B", "Broken", "b is broken", ConditionSeverity::Error);
        assert_eq!(
            Cond::ready_summary(std::slice::from_ref(&ok), "all good"),
            Cond::ok(READY, "Ready", "all good")
        );
        let summary = Cond::ready_summary(&[ok, bad], "all good");
        assert_eq!(
            (summary.type_, summary.reason.as_str(), summary.status),
            (READY, "Broken", ConditionStatus::False)
        );
    }

    #[test]
    fn lists_stay_sorted_by_type() {
        let mut v2 = Vec::new();
        for t in ["Ready", "Paused", "LoadBalancerAvailable"] {
            set_v1beta2(&mut v2, &Cond::ok(t, "R", "m"), None, &at(1));
        }
        let types: Vec<&str> = v2.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["LoadBalancerAvailable", "Paused", "Ready"]);
    }
}
