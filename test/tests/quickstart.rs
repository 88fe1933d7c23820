//! The quick start (hack/quickstart.sh runs the same binary) as a newcomer runs it: it brings up
//! a management plane, the manager and a sample cluster, reports the machines ready and the load
//! balancer's address, and on Ctrl-C (SIGINT) deletes everything and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capkind::docker::ContainerRuntime;
use capkind_test::docker::{engine, images};
use capkind_test::process::workspace_binary;
use capkind_test::wait;

/// Reads the quick start's output until a line contains `marker`; returns everything so far.
fn read_until(lines: &mpsc::Receiver<String>, seen: &mut Vec<String>, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !seen.iter().any(|l| l.contains(marker)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "the quick start never printed {marker:?}; its output:\n{}",
                seen.join("\n")
            ),
        }
    }
}

/// The word after `prefix` in the first line that has it.
fn after(seen: &[String], prefix: &str) -> String {
    seen.iter()
        .find_map(|l| l.split_once(prefix).map(|(_, rest)| rest))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {prefix:?} in:\n{}", seen.join("\n")))
        .to_string()
}

#[tokio::test]
async fn quick_start_brings_up_a_cluster_and_cleans_up_on_ctrl_c() {
    let images = images();
    let mut child = Command::new(workspace_binary("capkind-quickstart"))
        .env("CAPKIND_TEST_HAPROXY_IMAGE", &images.haproxy)
        .env("CAPKIND_TEST_NODE_IMAGE", &images.node)
        .env_remove("CAPKIND_MANAGER_BINARY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the quick start");
    let (tx, lines) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut seen = vec![];
    read_until(&lines, &mut seen, "Press Ctrl-C");
    assert!(
        seen.iter().any(|l| l.contains("all 3 machines are ready")),
        "{}",
        seen.join("\n")
    );

    // What it says is true: the load balancer answers, the containers are there.
    let url = after(&seen, "curl -k ");
    capkind_test::http::wait_for_https_body(&url, "s_server", Duration::from_secs(30)).await;
    let cluster = after(&seen, "label=io.x-k8s.kind.cluster=");
    let docker = engine().await;
    let label = [("io.x-k8s.kind.cluster", cluster.as_str())];
    assert_eq!(
        docker.list(&label).await.expect("list").len(),
        4,
        "a load balancer, a control-plane node and two workers"
    );
    let kubeconfig = std::fs::read_to_string(after(&seen, "KUBECONFIG=")).expect("kubeconfig");
    let server = after(&[kubeconfig], "server: ");

    // Ctrl-C.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 180s after Ctrl-C");
        std::thread::sleep(Duration::from_millis(200));
    };
    seen.extend(lines.try_iter());
    assert!(status.success(), "exit {status}:\n{}", seen.join("\n"));
    assert!(
        seen.iter().any(|l| l.contains("cleaned up")),
        "{}",
        seen.join("\n")
    );
    assert!(docker.list(&label).await.expect("list").is_empty());
    // The local management plane goes with it.
    wait::until(
        "the management plane stopped",
        Duration::from_secs(30),
        || async {
            let out = Command::new("curl")
                .args(["-sk", "--max-time", "2", &format!("{server}/healthz")])
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.code() != Some(7) {
                Err(format!(
                    "the API server still answers (curl exit {:?})",
                    out.status.code()
                ))
            } else {
                Ok(())
            }
        },
    )
    .await;
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(workspace_binary("capkind-quickstart"))
        .args(["--workers", "many"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--workers must be a number"), "{err}");
}

#[tokio::test]
async fn an_existing_cluster_api_crd_is_never_overwritten() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let server = tokio::task::spawn_blocking(capkind_test::ApiServer::start)
        .await
        .expect("join")
        .expect("API server");
    // Cluster API's Machine CRD, installed by someone else (kubectl create, not our stand-in).
    let name = "machines.cluster.x-k8s.io";
    let mut crd = capkind_test::capi_crds()
        .into_iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .expect("stand-in");
    crd.metadata.labels = Some([("origin".to_string(), "someone-else".to_string())].into());
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(server.client().await);
    crds.delete(name, &Default::default())
        .await
        .expect("delete");
    capkind_test::wait::deleted(&crds, name, Duration::from_secs(30)).await;
    crds.create(&Default::default(), &crd)
        .await
        .expect("create");

    let mut child = Command::new(workspace_binary("capkind-quickstart"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    // Had it gone on, it would run until Ctrl-C: give it a minute, then stop it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    if child.try_wait().expect("wait").is_none() {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    }
    let out = child.wait_with_output().expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("Cluster API's CRD {name}")), "{err}");
    let kept = crds.get(name).await.expect("CRD");
    assert_eq!(
        kept.metadata.labels.and_then(|l| l.get("origin").cloned()),
        Some("someone-else".to_string()),
        "the CRD was replaced"
    );
}
