//! Polling with a deadline, for conditions that become true eventually.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout` with `what`
/// and the last observation `describe` gave.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::from("never checked");
    while Instant::now() < deadline {
        match check().await {
            Ok(value) => return value,
            Err(observed) => last = observed,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
}

/// Waits until the object `name` no longer exists (its finalizers are done), or panics after
/// `timeout` naming what still holds it.
pub async fn deleted<K>(api: &kube::Api<K>, name: &str, timeout: Duration)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // The type's name, as the kind's needs a dynamic type to tell.
    let kind = std::any::type_name::<K>()
        .rsplit("::")
        .next()
        .unwrap_or("object");
    let what = format!("{kind} {name} gone");
    until(&what, timeout, || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(obj) => Err(format!("finalizers {:?}", obj.meta().finalizers)),
        }
    })
    .await
}
