//! One reconcile of a KindMachine: the contract checks, then observe → plan → act → status.

use std::sync::Arc;

use capkind_api::v1beta2::{KindMachine, MachineAddress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::{Span, instrument};

use super::Machines;
use super::act::{self, Outcome};
use super::observe::{self, Owners};
use super::plan::{self, Next, Observed, Phase, Plan};
use super::status::{self, Findings, problem};
use crate::controllers::contract::Contract;
use crate::controllers::{self, Error};
use crate::docker::{Container, ContainerRuntime};

/// The KindMachine finalizer.
pub const FINALIZER: &str = "kindmachine.infrastructure.cluster.x-k8s.io";

/// Reconciles one KindMachine.
#[instrument(skip_all, fields(controller = "kindmachine", controllerGroup = controllers::GROUP, controllerKind = "KindMachine", namespace = km.namespace(), name = km.name_any(), reconcileID = %controllers::reconcile_id(), cluster))]
pub async fn reconcile<D: ContainerRuntime + Clone>(
    km: Arc<KindMachine>,
    m: Arc<Machines<D>>,
) -> Result<Action, Error> {
    let api: Api<KindMachine> =
        Api::namespaced(m.ctx.client.clone(), &km.namespace().unwrap_or_default());
    let contract = Contract::new(&api, km.as_ref(), FINALIZER);
    if contract.externally_managed() {
        return Ok(Action::await_change());
    }
    let Some(owners) = observe::owners(&m, &km).await? else {
        return contract.without_owner("Machine").await;
    };
    Span::current().record("cluster", owners.cluster_name.as_str());
    let paused = owners.cluster.as_ref().is_some_and(|c| c.is_paused());
    if let Some(message) = crate::capi::paused_message(paused, &km.metadata, "KindMachine") {
        let st = status::paused(&km, &message, &now());
        return contract.paused(km.status.as_ref(), &st).await;
    }
    let failure_domain = owners.machine.spec.failure_domain.clone();
    let container = crate::node::container_name(&owners.cluster_name, &owners.machine.name_any());
    let result = steps(&m, &km, &api, &contract, owners).await;
    contract
        .finish(&m.ctx, result, km.status.as_ref(), |error| {
            failed(&km, error, &container, failure_domain)
        })
        .await
}

/// Observe, plan, act, status.
async fn steps<D: ContainerRuntime + Clone>(
    m: &Machines<D>,
    km: &KindMachine,
    api: &Api<KindMachine>,
    contract: &Contract<'_, KindMachine>,
    owners: Owners,
) -> Result<Action, Error> {
    // The finalizer is written while the machine is looked at (reads only): nothing is made
    // before both are done.
    let (deleting, o) = tokio::try_join!(
        contract.delete_or_finalize(),
        observe::observe(m, km, owners)
    )?;
    let plan = if deleting {
        plan::deletion(km, &o)
    } else {
        plan::plan(km, &o)?
    };
    if deleting {
        // Written first: the finalizer's removal, the last step, may end the object.
        write(m, api, km, &o, &plan, None).await?;
    }
    let mut news = act::News::new(!deleting);
    let acted = act::act(m, km, api, &o, &plan, &mut news).await;
    let container = match acted {
        Ok(Outcome::Done(container)) => container,
        Ok(Outcome::Again(next)) => {
            news.publish(m, km).await;
            return Ok(action(m, next));
        }
        Err(e) => {
            news.publish(m, km).await;
            return Err(e);
        }
    };
    if deleting {
        return Ok(Action::await_change());
    }
    let written = write(m, api, km, &o, &plan, container.as_deref()).await;
    news.publish(m, km).await;
    let addresses = written?;
    // After the status: the machine is ready whether or not its Node has registered yet.
    if plan.node_provider_id
        && let Some(addresses) = addresses
        && !act::node_provider_id(m, km, &o, &addresses).await
    {
        // The Node registers once kubeadm is done; look again without holding a worker.
        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
    }
    Ok(action(m, plan.next))
}

fn action<D>(m: &Machines<D>, next: Next) -> Action {
    match next {
        Next::AwaitChange => Action::await_change(),
        Next::Requeue(after) => Action::requeue(after),
        Next::Sync => Action::requeue(m.ctx.sync_period),
    }
}

/// Writes the plan's phase (with the node's addresses when its container runs) once, unless
/// nothing changed; returns the addresses.
async fn write<D>(
    m: &Machines<D>,
    api: &Api<KindMachine>,
    km: &KindMachine,
    o: &Observed,
    plan: &Plan,
    container: Option<&Container>,
) -> Result<Option<Vec<MachineAddress>>, Error> {
    let Some(phase) = &plan.phase else {
        return Ok(None);
    };
    let runs = matches!(
        phase,
        Phase::Started | Phase::Bootstrapping { .. } | Phase::Ready | Phase::BootstrapFailed { .. }
    );
    let addresses = match (container, &o.kind_cluster) {
        (Some(c), Some(kc)) if runs => Some(act::addresses(c, &m.ctx.network(kc))?),
        _ => None,
    };
    let (container_cond, bootstrap) =
        status::conditions(phase, &o.container_name, status::bootstrap_before(km));
    let findings = Findings {
        container: container_cond,
        bootstrap,
        addresses: addresses.clone(),
        failure_domain: o.machine.spec.failure_domain.clone(),
    };
    m.ctx
        .metrics
        .machine_phase(&controllers::key(km), Some(phase.metric()));
    let st = status::status(km, &findings, &now());
    controllers::apply_status(api, km, km.status.as_ref(), &st).await?;
    Ok(addresses)
}

/// The status that shows `error` in the condition it belongs to.
fn failed(
    km: &KindMachine,
    error: &Error,
    container: &str,
    failure_domain: Option<String>,
) -> capkind_api::v1beta2::KindMachineStatus {
    let shown = if error.is_waiting() {
        status::waiting(
            status::condition_of(error),
            error.reason(),
            error.to_string(),
        )
    } else {
        problem(
            status::condition_of(error),
            error.reason(),
            error.to_string(),
        )
    };
    let before = status::bootstrap_before(km);
    let (container, bootstrap) = if shown.type_ == status::BOOTSTRAP_EXEC_SUCCEEDED {
        (status::container_before(km, container), shown)
    } else {
        (shown, before)
    };
    let findings = Findings {
        container,
        bootstrap,
        addresses: None,
        failure_domain,
    };
    status::status(km, &findings, &now())
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}
