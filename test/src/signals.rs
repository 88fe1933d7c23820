//! What a user sees of the provider's health: Warning events in a namespace and WARN or ERROR
//! lines in a manager's log. A clean run has none of either.

use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::Api;

/// One Warning event: the object it is about, its reason and its note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// `Kind/name` of the object.
    pub regarding: String,
    /// The event's reason.
    pub reason: String,
    /// The event's note.
    pub note: String,
}

/// Every Warning event recorded in `namespace`.
pub async fn warnings(client: &Client, namespace: &str) -> Vec<Warning> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| Warning {
            regarding: e
                .regarding
                .map(|r| {
                    format!(
                        "{}/{}",
                        r.kind.unwrap_or_default(),
                        r.name.unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
        })
        .collect()
}

/// The WARN and ERROR lines of a manager's log (text or JSON format).
pub fn log_problems(log: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.contains(" WARN ")
                || l.contains(" ERROR ")
                || l.contains("\"level\":\"WARN\"")
                || l.contains("\"level\":\"ERROR\"")
        })
        .map(str::to_string)
        .collect()
}
