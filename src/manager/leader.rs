//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: a candidate takes
//! the Lease once it has seen no renewal for a lease duration (timed with its own clock, so
//! clocks need not agree); the leader renews every retry period and gives up leadership when it
//! could not renew within the renew deadline; on shutdown it releases the Lease at once.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How the election runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This candidate's identity.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

/// Leadership ended without being asked to.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader-election Lease {0}: no renewal succeeded within the renew deadline")]
pub struct Lost(String);

struct Elector {
    api: Api<Lease>,
    s: Settings,
    observed: Option<(String, Instant)>,
}

/// Campaigns until leader, then renews until `cancel` (release and return Ok) or until the Lease
/// is lost (return Err). `leading` follows the state.
pub async fn run(
    client: Client,
    s: Settings,
    leading: watch::Sender<bool>,
    cancel: CancellationToken,
) -> Result<(), Lost> {
    let mut e = Elector {
        api: Api::namespaced(client, &s.namespace),
        s,
        observed: None,
    };
    loop {
        match e.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(err) => warn!(error = %err, "leader election: could not read or write the Lease"),
        }
        if sleep_or_cancel(e.s.retry_period, &cancel).await {
            return Ok(());
        }
    }
    info!(lease = %e.s.name, identity = %e.s.identity, "became the leader");
    let _ = leading.send(true);
    let mut renewed = Instant::now();
    loop {
        if sleep_or_cancel(e.s.retry_period, &cancel).await {
            e.release().await;
            let _ = leading.send(false);
            return Ok(());
        }
        match e.try_acquire_or_renew().await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => return lose(&e, &leading),
            Err(err) => warn!(error = %err, "leader election: renewal failed"),
        }
        if renewed.elapsed() > e.s.renew_deadline {
            return lose(&e, &leading);
        }
    }
}

fn lose(e: &Elector, leading: &watch::Sender<bool>) -> Result<(), Lost> {
    let _ = leading.send(false);
    Err(Lost(format!("{}/{}", e.s.namespace, e.s.name)))
}

/// Sleeps; true when cancelled first.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = cancel.cancelled() => true,
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

impl Elector {
    /// Takes or renews the Lease; false when someone else validly holds it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let seconds = i32::try_from(self.s.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1);
        let Some(mut lease) = self.api.get_opt(&self.s.name).await? else {
            let lease = Lease {
                metadata: kube::api::ObjectMeta {
                    name: Some(self.s.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.s.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        // The record changes with every renewal; remember when we saw it change.
        let version = lease.resource_version().unwrap_or_default();
        if self.observed.as_ref().is_none_or(|(v, _)| *v != version) {
            self.observed = Some((version, Instant::now()));
        }
        let valid_for = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0),
        );
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > valid_for);
        let mine = holder == self.s.identity;
        if !mine && !holder.is_empty() && !expired {
            return Ok(false);
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.s.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine { spec.acquire_time } else { Some(now()) },
            renew_time: Some(now()),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..Default::default()
        });
        match self
            .api
            .replace(&self.s.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up so that another candidate need not wait for it to expire.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.s.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.s.identity.as_str()) {
            return;
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(now()),
            ..spec
        });
        match self
            .api
            .replace(&self.s.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = %self.s.name, "released the leader-election Lease"),
            Err(e) => warn!(error = %e, "could not release the leader-election Lease"),
        }
    }
}
