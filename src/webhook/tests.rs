//! The server end to end on 127.0.0.1, without an API server: reviews over HTTPS with a
//! certificate made here, and the certificate rotated the way kubelet rotates a mounted Secret.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use std::net::SocketAddr;

use rustls::pki_types::CertificateDer;

use super::testing::{Pair, post, try_post};
use super::{Metrics, Settings, start};

/// Lays out `dir` as kubelet does for a Secret volume: the files in a timestamped directory,
/// `..data` pointing at it, `tls.crt` and `tls.key` pointing into `..data`. Called again, it
/// swaps `..data` atomically.
fn kubelet_write(dir: &Path, version: &str, pair: &Pair) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir(&versioned).expect("versioned dir");
    pair.write(&versioned);
    let tmp = dir.join("..data_tmp");
    symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    for name in ["tls.crt", "tls.key"] {
        let link = dir.join(name);
        if !link.exists() {
            symlink(format!("..data/{name}"), &link).expect("file symlink");
        }
    }
}

fn conversion_review() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "ConversionReview",
        "request": {
            "uid": "c-1",
            "desiredAPIVersion": "infrastructure.cluster.x-k8s.io/v1beta1",
            "objects": [{
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                "kind": "KindCluster",
                "metadata": {"name": "c1", "namespace": "ns"},
                "spec": {},
            }],
        },
    }))
    .expect("json")
}

fn admission_review(spec: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "a-1",
            "kind": {"group": "infrastructure.cluster.x-k8s.io", "version": "v1beta2", "kind": "KindMachine"},
            "resource": {"group": "infrastructure.cluster.x-k8s.io", "version": "v1beta2", "resource": "kindmachines"},
            "name": "m1",
            "namespace": "ns",
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": {
                "apiVersion": "infrastructure.cluster.x-k8s.io/v1beta2",
                "kind": "KindMachine",
                "metadata": {"name": "m1", "namespace": "ns"},
                "spec": spec,
            },
        },
    }))
    .expect("json")
}

const MUTATE: &str = "/mutate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachine";
const VALIDATE: &str = "/validate-infrastructure-cluster-x-k8s-io-v1beta2-kindmachine";

#[tokio::test]
async fn serves_reviews_over_https_and_follows_a_rotated_certificate() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Pair::generate();
    kubelet_write(dir.path(), "1", &first);
    let metrics = Arc::new(Metrics::new());
    let stop = CancellationToken::new();
    let settings = Settings {
        addr: "127.0.0.1:0".parse().expect("addr"),
        files: super::CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        },
        reload_every: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(2),
    };
    let server = start(settings, metrics.clone(), stop.clone())
        .await
        .expect("start");
    assert!(server.listening().await);
    let addr = server.local_addr();

    // Conversion: the placeholder converter refuses, naming the object; the real one converts.
    let answer = post(addr, &first.cert_der, "/convert", conversion_review()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.served, first.cert_der);
    let review: Value = serde_json::from_slice(&answer.body).expect("review");
    assert_eq!(review["kind"], "ConversionReview");
    assert_eq!(review["response"]["uid"], "c-1");
    let result = &review["response"]["result"];
    if result["status"] == "Failure" {
        let message = result["message"].as_str().expect("message");
        assert!(
            message.starts_with(
                "converting KindCluster ns/c1 to infrastructure.cluster.x-k8s.io/v1beta1: "
            ),
            "{message}"
        );
    } else {
        assert_eq!(
            review["response"]["convertedObjects"][0]["apiVersion"],
            "infrastructure.cluster.x-k8s.io/v1beta1"
        );
    }

    // Defaulting and validation.
    let answer = post(
        addr,
        &first.cert_der,
        MUTATE,
        admission_review(json!({"bootstrapTimeout": ""})),
    )
    .await;
    let review: Value = serde_json::from_slice(&answer.body).expect("review");
    assert_eq!(
        (answer.status, &review["response"]["allowed"]),
        (200, &json!(true))
    );
    assert_eq!(review["response"]["patchType"], "JSONPatch");
    let answer = post(
        addr,
        &first.cert_der,
        VALIDATE,
        admission_review(json!({"bootstrapTimeout": "0s"})),
    )
    .await;
    let review: Value = serde_json::from_slice(&answer.body).expect("review");
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(
        review["response"]["status"]["message"],
        r#"KindMachine.infrastructure.cluster.x-k8s.io "m1" is invalid: spec.bootstrapTimeout: Invalid value: "0s": must be more than 0"#
    );

    // An undecodable body: 400 with the reason.
    let answer = post(addr, &first.cert_der, VALIDATE, b"{not json".to_vec()).await;
    assert_eq!(answer.status, 400);
    let text = String::from_utf8_lossy(&answer.body);
    assert!(
        text.starts_with("cannot decode the AdmissionReview: "),
        "{text}"
    );

    // Bodies above axum's default limit of 2 MiB reach the decoder, up to the route's limit.
    let big = post(addr, &first.cert_der, "/convert", vec![b' '; 3 << 20]).await;
    assert_eq!(big.status, 400);
    let huge = post(addr, &first.cert_der, VALIDATE, vec![b' '; 9 << 20]).await;
    assert_eq!(huge.status, 413);

    // Rotation: kubelet swaps ..data; a new connection gets the new certificate.
    let second = Pair::generate();
    kubelet_write(dir.path(), "2", &second);
    let served = wait_for_certificate(addr, &second, Duration::from_secs(5)).await;
    assert_eq!(served, second.cert_der);

    // A bad pair (a key that does not match) is refused once and the good one kept.
    let third = Pair::generate();
    let mismatched = Pair {
        key_pem: first.key_pem.clone(),
        ..third
    };
    kubelet_write(dir.path(), "3", &mismatched);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let answer = post(
        addr,
        &second.cert_der,
        VALIDATE,
        admission_review(json!({"bootstrapTimeout": "5m"})),
    )
    .await;
    assert_eq!((answer.status, &answer.served), (200, &second.cert_der));
    let text = metrics.encode();
    for line in [
        r#"capkind_webhook_certificate_reloads_total{result="success"} 1"#,
        r#"capkind_webhook_certificate_reloads_total{result="error"} 1"#,
        // The first request that saw the new certificate, and the one after the bad pair.
        &format!(r#"capkind_webhook_requests_total{{result="allowed",webhook="{VALIDATE}"}} 2"#),
        &format!(r#"capkind_webhook_requests_total{{result="denied",webhook="{VALIDATE}"}} 1"#),
        &format!(
            r#"capkind_webhook_requests_total{{result="bad_request",webhook="{VALIDATE}"}} 1"#
        ),
        &format!(r#"capkind_webhook_requests_total{{result="allowed",webhook="{MUTATE}"}} 1"#),
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }

    report_latency(addr, &second, &metrics).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.wait())
        .await
        .expect("stops in time")
        .expect("stops cleanly");
}

/// New connections until one is served `pair`'s certificate; what that one was served.
async fn wait_for_certificate(
    addr: SocketAddr,
    pair: &Pair,
    within: Duration,
) -> CertificateDer<'static> {
    let start = Instant::now();
    loop {
        // Trust only the new certificate: the handshake fails while the old one is served.
        let body = admission_review(json!({"bootstrapTimeout": "5m"}));
        if let Ok(answer) = try_post(addr, &pair.cert_der, VALIDATE, body).await {
            return answer.served;
        }
        assert!(
            start.elapsed() < within,
            "the new certificate was not served within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the time of a validation request on a new connection (handshake included) and the
/// server's own time for one, for the record; asserts only that they are sane.
async fn report_latency(addr: SocketAddr, pair: &Pair, metrics: &Metrics) {
    const N: u32 = 50;
    let before = Instant::now();
    for _ in 0..N {
        let body = admission_review(json!({"bootstrapTimeout": "5m"}));
        assert_eq!(post(addr, &pair.cert_der, VALIDATE, body).await.status, 200);
    }
    let per_request = before.elapsed() / N;
    let text = metrics.encode();
    let value = |name: &str| {
        let series = format!("{name}{{webhook=\"{VALIDATE}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series).and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or_else(|| panic!("no {series}\n{text}"))
    };
    let server_side = value("capkind_webhook_duration_seconds_sum")
        / value("capkind_webhook_duration_seconds_count");
    eprintln!(
        "webhook latency: {per_request:?} per validation request on a new TLS connection ({N} requests), {:.1} µs of it in the handler",
        server_side * 1e6
    );
    assert!(per_request < Duration::from_secs(1), "{per_request:?}");
}
