//! What a pool should do next, as a pure function of its instances and what its MachinePool
//! wants: which instances to add (and in which failure domain) and which to remove.
//!
//! - Scaling up adds every missing instance at once.
//! - A changed template (the KindMachinePool's or the MachinePool's Kubernetes version) rolls
//!   one instance at a time: a new one first, then, once it is ready, an outdated one goes.
//! - Scaling down removes instances whose Machine carries core's delete annotation first, then
//!   outdated ones, then the newest.
//! - Never below the wanted number of ready instances by removing a ready one: a ready instance
//!   goes only while enough others are ready, and an up-to-date one only while there are more
//!   up-to-date ones than wanted (except those core asked to delete).

use std::collections::BTreeMap;

/// One instance of the pool, as the reconcile found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Instance {
    /// The KindMachine's name (and its Machine's).
    pub name: String,
    /// When the KindMachine was created (RFC 3339 sorts by time).
    pub created: String,
    /// Made from the pool's current template and Kubernetes version.
    pub current: bool,
    /// Provisioned: the node runs and its bootstrap succeeded.
    pub ready: bool,
    /// The KindMachine or its Machine is being deleted.
    pub deleting: bool,
    /// Its Machine carries core's delete annotation.
    pub delete_requested: bool,
    /// Core made its Machine.
    pub has_machine: bool,
    /// The failure domain it was placed in.
    pub failure_domain: Option<String>,
}

/// One step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A new instance, in this failure domain.
    Add {
        /// Where to place it.
        failure_domain: Option<String>,
    },
    /// Remove an instance (through its Machine, so core drains the node, when it has one).
    Remove {
        /// The instance.
        name: String,
        /// Why, for the event.
        why: &'static str,
    },
}

/// Why an instance is removed.
pub mod why {
    /// Its Machine carries core's delete annotation.
    pub const REQUESTED: &str = "its Machine carries cluster.x-k8s.io/delete-machine";
    /// It was made from an older template.
    pub const OUTDATED: &str = "it was made from an older template";
    /// The pool has more instances than wanted.
    pub const EXCESS: &str = "the pool scales down";
}

/// The steps towards `wanted` instances spread over `domains`.
pub fn plan(instances: &[Instance], wanted: usize, domains: &[String]) -> Vec<Step> {
    let live: Vec<&Instance> = instances.iter().filter(|i| !i.deleting).collect();
    let total = live.len();
    let current = live.iter().filter(|i| i.current).count();
    let rolling = live.iter().any(|i| !i.current);
    let missing = wanted.saturating_sub(current);
    // While rolling, one instance above the wanted number at a time.
    let adds = if rolling {
        missing.min((wanted + 1).saturating_sub(total))
    } else {
        missing
    };
    let mut steps = Vec::new();
    let mut per_domain: BTreeMap<&str, usize> = domains.iter().map(|d| (d.as_str(), 0)).collect();
    for i in &live {
        if let Some(n) = i
            .failure_domain
            .as_deref()
            .and_then(|d| per_domain.get_mut(d))
        {
            *n += 1;
        }
    }
    for _ in 0..adds {
        // The least used domain, the first listed among equals.
        let domain = domains
            .iter()
            .min_by_key(|d| per_domain.get(d.as_str()).copied().unwrap_or(0))
            .cloned();
        if let Some(n) = domain.as_deref().and_then(|d| per_domain.get_mut(d)) {
            *n += 1;
        }
        steps.push(Step::Add {
            failure_domain: domain,
        });
    }

    let mut excess = total.saturating_sub(wanted);
    let mut ready = live.iter().filter(|i| i.ready).count();
    let mut current_left = current;
    let mut candidates = live.clone();
    // Requested first, then outdated (not ready before ready, oldest first), then current
    // ones, newest first.
    candidates.sort_by(|a, b| {
        let class = |i: &Instance| (!i.delete_requested, i.current, i.current || i.ready);
        class(a).cmp(&class(b)).then_with(|| {
            if a.current {
                b.created.cmp(&a.created)
            } else {
                a.created.cmp(&b.created)
            }
        })
    });
    for i in candidates {
        if excess == 0 {
            break;
        }
        // Core makes the Machine of a new instance a moment after it; removing the instance
        // before would race core's creation of it.
        if !i.has_machine {
            continue;
        }
        if !i.delete_requested
            && ((i.ready && ready <= wanted) || (i.current && current_left <= wanted))
        {
            continue;
        }
        let why = if i.delete_requested {
            why::REQUESTED
        } else if !i.current {
            why::OUTDATED
        } else {
            why::EXCESS
        };
        steps.push(Step::Remove {
            name: i.name.clone(),
            why,
        });
        excess -= 1;
        ready -= usize::from(i.ready);
        current_left -= usize::from(i.current);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, created: u32, current: bool, ready: bool) -> Instance {
        Instance {
            name: name.into(),
            created: format!("2026-12-01T00:00:{created:02}Z"),
            current,
            ready,
            has_machine: true,
            ..Instance::default()
        }
    }

    fn removed(steps: &[Step]) -> Vec<&str> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Remove { name, .. } => Some(name.as_str()),
                Step::Add { .. } => None,
            })
            .collect()
    }

    fn added(steps: &[Step]) -> Vec<Option<&str>> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Add { failure_domain } => Some(failure_domain.as_deref()),
                Step::Remove { .. } => None,
            })
            .collect()
    }

    #[test]
    fn scaling_up_adds_every_missing_instance_spread_over_the_domains() {
        let domains = vec!["fd1".to_string(), "fd2".to_string(), "fd3".to_string()];
        let mut a = instance("a", 1, true, true);
        a.failure_domain = Some("fd1".into());
        let steps = plan(&[a], 5, &domains);
        assert_eq!(
            added(&steps),
            [Some("fd2"), Some("fd3"), Some("fd1"), Some("fd2")]
        );
        assert!(removed(&steps).is_empty());
        assert_eq!(added(&plan(&[], 2, &[])), [None, None], "no domains: none");
    }

    #[test]
    fn scaling_down_removes_the_newest_and_the_requested_first() {
        let instances: Vec<Instance> = (0..5)
            .map(|n| instance(&format!("i{n}"), n, true, true))
            .collect();
        assert_eq!(removed(&plan(&instances, 2, &[])), ["i4", "i3", "i2"]);
        let mut requested = instances.clone();
        requested[0].delete_requested = true;
        assert_eq!(removed(&plan(&requested, 3, &[])), ["i0", "i4"]);
        assert!(plan(&instances, 5, &[]).is_empty(), "steady: nothing to do");
        assert_eq!(removed(&plan(&instances, 0, &[])).len(), 5, "to zero");
    }

    #[test]
    fn a_new_instance_is_not_removed_before_core_made_its_machine() {
        let mut young = instance("young", 9, true, false);
        young.has_machine = false;
        let steps = plan(&[instance("old", 1, true, true), young], 1, &[]);
        assert!(removed(&steps).is_empty(), "{steps:?}");
    }

    #[test]
    fn a_rollout_goes_one_at_a_time_and_never_below_the_wanted_ready_count() {
        let old: Vec<Instance> = (0..3)
            .map(|n| instance(&format!("old{n}"), n, false, true))
            .collect();
        // First, one new instance next to the three old ones.
        let steps = plan(&old, 3, &[]);
        assert_eq!((added(&steps).len(), removed(&steps).len()), (1, 0));
        // While it bootstraps: nothing more.
        let mut with_new = old.clone();
        with_new.push(instance("new0", 10, true, false));
        assert!(plan(&with_new, 3, &[]).is_empty());
        // Once it is ready the oldest goes, and no new one is added yet.
        with_new[3].ready = true;
        assert_eq!(removed(&plan(&with_new, 3, &[])), ["old0"]);
        assert!(added(&plan(&with_new, 3, &[])).is_empty());
        // The old one on its way out: the next new one.
        with_new[0].deleting = true;
        let steps = plan(&with_new, 3, &[]);
        assert_eq!((added(&steps).len(), removed(&steps).len()), (1, 0));
    }

    #[test]
    fn an_outdated_instance_that_is_not_ready_goes_before_a_ready_one() {
        let instances = vec![
            instance("old-ready", 1, false, true),
            instance("old-broken", 2, false, false),
            instance("new", 3, true, true),
        ];
        assert_eq!(removed(&plan(&instances, 2, &[])), ["old-broken"]);
    }

    #[test]
    fn instances_being_deleted_are_replaced() {
        let mut gone = instance("gone", 1, true, true);
        gone.deleting = true;
        let steps = plan(&[gone, instance("b", 2, true, true)], 2, &[]);
        assert_eq!(added(&steps).len(), 1);
        assert!(removed(&steps).is_empty());
    }
}
