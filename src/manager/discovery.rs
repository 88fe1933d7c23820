//! Which version of Cluster API's core group (cluster.x-k8s.io) the provider reads Cluster and
//! Machine through: the newest the management cluster serves, found by API discovery once at
//! start-up. CAPI v1.10 serves v1beta1 only; v1.11 to v1.15 serve v1beta2 (stored) and v1beta1
//! (deprecated, to be removed), so v1beta2 when served, else v1beta1.

use std::time::Duration;

use capkind_api::capi::{Cluster, GROUP, Machine, Version};
use kube::Client;
use kube::error::DiscoveryError;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why no version can be read through.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The management cluster serves neither version of Cluster and Machine.
    #[error(
        "Cluster API's CRDs ({GROUP} Cluster, Machine) are not installed{served}; run clusterctl init"
    )]
    NotInstalled {
        /// What the group serves instead, if anything (`" (... serves ...)"`).
        served: String,
    },
    /// Discovery itself failed (the API server did not answer, or refused).
    #[error("API discovery of {GROUP}: {0}")]
    Kube(#[from] kube::Error),
}

/// The version to read Cluster and Machine through, asked once.
pub async fn served_version(client: &Client) -> Result<Version, Error> {
    let group = match kube::discovery::group(client, GROUP).await {
        Ok(group) => group,
        Err(kube::Error::Discovery(DiscoveryError::MissingApiGroup(_))) => {
            return Err(Error::NotInstalled {
                served: String::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let served: Vec<(String, Vec<String>)> = group
        .versions()
        .map(|v| {
            let kinds = group.versioned_resources(v).into_iter();
            (v.to_string(), kinds.map(|(ar, _)| ar.kind).collect())
        })
        .collect();
    Version::newest_serving(&served, &[Cluster::KIND, Machine::KIND]).ok_or_else(|| {
        Error::NotInstalled {
            served: describe(&served),
        }
    })
}

/// Whether the management cluster serves Cluster API's MachinePool at `version` (core's
/// MachinePool feature, on by default); without it the KindMachinePool controller stays off.
pub async fn serves_machine_pools(client: &Client, version: Version) -> Result<bool, Error> {
    let group = kube::discovery::group(client, GROUP).await?;
    Ok(group
        .versioned_resources(version.as_str())
        .iter()
        .any(|(ar, _)| ar.kind == capkind_api::capi::MachinePool::KIND))
}

/// The version to read through, asked until the API server answers; `None` when shut down
/// first. A cluster without Cluster API is an error at once: nothing can be reconciled there.
pub async fn capi_version(
    client: &Client,
    cancel: &CancellationToken,
) -> Result<Option<Version>, Error> {
    let mut delay = Duration::from_secs(1);
    let mut failures = 0;
    loop {
        match served_version(client).await {
            Ok(version) => {
                info!(
                    %version,
                    "reading Cluster API's Cluster and Machine as {}, the newest version served",
                    version.api_version()
                );
                return Ok(Some(version));
            }
            Err(e @ Error::NotInstalled { .. }) => return Err(e),
            // A token or binding made a moment ago may be refused once: a warning only when
            // it lasts (about 3 s).
            Err(e) if failures < 2 => {
                failures += 1;
                info!(error = %e, retry_in = ?delay, "cannot tell which Cluster API version is served yet")
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "cannot tell which Cluster API version is served yet")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// What a group that serves neither version of both kinds does serve, for the error.
fn describe(served: &[(String, Vec<String>)]) -> String {
    let versions: Vec<String> = served
        .iter()
        .map(|(version, kinds)| format!("{version}: {}", kinds.join(", ")))
        .collect();
    format!(" (the API server serves {GROUP} {})", versions.join("; "))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{Value, json};

    use super::*;

    /// What the Cluster API group serves: (version, kinds).
    type Served<'a> = &'a [(&'a str, &'a [&'a str])];

    /// A client whose API server answers discovery with `groups` for the Cluster API group, and
    /// 404 for anything else; it records the paths asked.
    fn client(groups: Served<'_>, asked: Arc<Mutex<Vec<String>>>) -> Client {
        let versions: Vec<Value> = groups
            .iter()
            .map(|(v, _)| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v}))
            .collect();
        let mut answers: Vec<(String, Value)> = vec![(
            "/apis".into(),
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": if versions.is_empty() {
                vec![json!({"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]})]
            } else {
                vec![json!({"name": GROUP, "versions": versions,
                            "preferredVersion": versions[0]})]
            }}),
        )];
        for (version, kinds) in groups {
            let resources: Vec<Value> = kinds
                .iter()
                .map(|k| {
                    json!({"name": format!("{}s", k.to_lowercase()), "singularName": "",
                           "namespaced": true, "kind": k, "verbs": ["get", "list", "watch"]})
                })
                .collect();
            answers.push((
                format!("/apis/{GROUP}/{version}"),
                json!({"kind": "APIResourceList", "apiVersion": "v1",
                       "groupVersion": format!("{GROUP}/{version}"), "resources": resources}),
            ));
        }
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let path = req.uri().path().to_string();
            asked.lock().expect("asked").push(path.clone());
            let answer = answers
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, a)| a.clone());
            let (code, body) = match answer {
                Some(body) => (200, body),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            };
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(
                            serde_json::to_vec(&body).expect("json"),
                        ))
                        .expect("response"),
                )
            }
        });
        Client::new(service, "default")
    }

    #[tokio::test]
    async fn the_newest_version_served_is_read_through() {
        const CORE: &[&str] = &["Cluster", "Machine", "MachineSet"];
        let cases: [(&str, Served<'_>, Result<Version, &str>); 4] = [
            ("CAPI v1.10", &[("v1beta1", CORE)], Ok(Version::V1Beta1)),
            (
                "CAPI v1.11 to v1.15",
                &[("v1beta2", CORE), ("v1beta1", CORE)],
                Ok(Version::V1Beta2),
            ),
            (
                "no Cluster API",
                &[],
                Err(
                    "Cluster API's CRDs (cluster.x-k8s.io Cluster, Machine) are not installed; run clusterctl init",
                ),
            ),
            (
                "the group without Machine",
                &[("v1beta2", &["Cluster", "ClusterClass"])],
                Err(
                    "Cluster API's CRDs (cluster.x-k8s.io Cluster, Machine) are not installed (the API server serves cluster.x-k8s.io v1beta2: Cluster, ClusterClass); run clusterctl init",
                ),
            ),
        ];
        for (case, groups, expected) in cases {
            let asked = Arc::default();
            let got = served_version(&client(groups, Arc::clone(&asked))).await;
            let got = got.map_err(|e| e.to_string());
            assert_eq!(
                got,
                expected.map_err(str::to_string),
                "{case}: asked {asked:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_api_server_that_does_not_answer_is_asked_again_until_shut_down() {
        // Nothing listens there: every request fails.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop.cancel();
        });
        let got = capi_version(&client, &cancel).await.expect("no error");
        assert_eq!(got, None);
    }
}
