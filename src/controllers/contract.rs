//! The Cluster API contract checks every reconciler makes first, in this order on purpose:
//! objects marked externally managed are left alone; without an owner nothing is done (a deleted
//! object without owner just loses its finalizer); pause is honoured before anything else,
//! deletion included; the finalizer is added only once the owner exists. And the same ending:
//! an error is shown in the object's status (a Warning event when that is news) and retried.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::info;

use super::{Context, Error};

/// How soon an object that waits on something under way (an image pull) is looked at again.
pub const WAITING_LOOK: std::time::Duration = std::time::Duration::from_secs(2);

/// One object's contract checks, through its API.
pub struct Contract<'a, K> {
    api: &'a Api<K>,
    obj: &'a K,
    finalizer: &'static str,
}

impl<'a, K> Contract<'a, K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    /// The checks of `obj`, whose finalizer is `finalizer`.
    pub fn new(api: &'a Api<K>, obj: &'a K, finalizer: &'static str) -> Self {
        Self {
            api,
            obj,
            finalizer,
        }
    }

    /// Marked `cluster.x-k8s.io/managed-by`: someone else provisions it.
    pub fn externally_managed(&self) -> bool {
        crate::capi::is_externally_managed(self.obj.meta())
    }

    /// Being deleted.
    pub fn deleting(&self) -> bool {
        self.obj.meta().deletion_timestamp.is_some()
    }

    /// No owner `owner_kind` yet: wait for Cluster API to set it; a deleted object just loses
    /// its finalizer.
    pub async fn without_owner(&self, owner_kind: &str) -> Result<Action, Error> {
        if self.deleting() {
            super::remove_finalizer(self.api, self.obj, self.finalizer).await?;
        }
        info!("waiting for Cluster API to set the owner {owner_kind}");
        Ok(Action::await_change())
    }

    /// Paused: only the Paused condition is written (`status`), nothing else is touched.
    pub async fn paused<S: Serialize + PartialEq>(
        &self,
        current: Option<&S>,
        status: &S,
    ) -> Result<Action, Error> {
        super::apply_status(self.api, self.obj, current, status).await?;
        Ok(Action::await_change())
    }

    /// Whether to delete; otherwise the finalizer is in place once this returns.
    pub async fn delete_or_finalize(&self) -> Result<bool, Error> {
        if self.deleting() {
            return Ok(true);
        }
        super::add_finalizer(self.api, self.obj, self.finalizer).await?;
        Ok(false)
    }

    /// The end of a reconcile: success forgets the object's failures; an error (except a
    /// conflict, retried at once with the object as it is now) is written into the status
    /// that `failed` renders, with a Warning event when the status changed, and returned for
    /// the error policy.
    pub async fn finish<D, S: Serialize + PartialEq>(
        &self,
        ctx: &Context<D>,
        result: Result<Action, Error>,
        current: Option<&S>,
        failed: impl FnOnce(&Error) -> S,
    ) -> Result<Action, Error> {
        let error = match result {
            Ok(action) => {
                ctx.succeeded(&super::key(self.obj));
                return Ok(action);
            }
            Err(error) if error.is_conflict() => return Err(error),
            Err(error) if error.is_waiting() => {
                let st = failed(&error);
                if super::apply_status(self.api, self.obj, current, &st)
                    .await
                    .unwrap_or(false)
                {
                    info!(reason = error.reason(), "{error}");
                    ctx.event(
                        self.obj,
                        EventType::Normal,
                        error.reason(),
                        error.to_string(),
                    )
                    .await;
                }
                // The object's failures are kept: a pull that fails again is retried with the
                // backoff grown, not every few seconds.
                return Ok(Action::requeue(WAITING_LOOK));
            }
            Err(error) => error,
        };
        let st = failed(&error);
        if super::apply_status(self.api, self.obj, current, &st)
            .await
            .unwrap_or(false)
        {
            ctx.event(
                self.obj,
                EventType::Warning,
                error.reason(),
                error.to_string(),
            )
            .await;
        }
        Err(error)
    }

    /// The object's name, for logs.
    pub fn name(&self) -> String {
        self.obj.name_any()
    }
}
