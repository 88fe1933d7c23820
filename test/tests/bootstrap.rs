//! The bootstrap inside a real node container, without a controller: the script started by one
//! upload and one exec, and the waiter that wakes the machine when a step ends. The waiter must
//! block on the script's step lock (no polling inside the node) and must not be held up by a
//! daemon that a step left running.

use std::time::Duration;

use capkind::controllers::kindmachine::bootstrap::{self, State};
use capkind::docker::{ContainerRuntime, labels::Owner};
use capkind::node::{self, Privileges};
use capkind_test::docker::{Janitor, engine, images};
use capkind_test::names;

/// Step 1 leaves a daemon behind, step 2 waits for the test to let it go, step 3 writes the
/// sentinel.
const BOOTSTRAP: &str = "#cloud-config\nruncmd:\n\
- 'sleep 600 >/dev/null 2>&1 < /dev/null &'\n\
- 'while [ ! -f /tmp/go ]; do sleep 0.2; done'\n\
- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";

/// The waiter's limit: a wake well before it was caused by the script, not by the limit.
const LIMIT: u64 = 120;

async fn woken(
    docker: &capkind::docker::Engine,
    container: &str,
    step: usize,
) -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waits = std::sync::Arc::default();
    bootstrap::wake_on_progress(docker, container, step, LIMIT, &waits, move || {
        let _ = tx.send(());
    });
    rx
}

async fn sh(docker: &capkind::docker::Engine, container: &str, script: &str) -> String {
    let out = docker
        .exec(container, &["sh", "-c", script], None)
        .await
        .expect("exec");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_waiter_blocks_on_the_step_lock_and_wakes_when_the_step_ends() {
    let docker = engine().await;
    let network = names::unique("bootnet");
    docker.ensure_network(&network).await.expect("network");
    let name = names::unique("boot");
    let mut janitor = Janitor::default();
    janitor.track(&name);
    janitor.track_network(&network);
    let owner = Owner {
        kind: "KindMachine".into(),
        namespace: "test".into(),
        name: name.clone(),
        uid: name.clone(),
    };
    let spec = node::container_spec(&node::Params {
        cluster: "bootstrap-test",
        name: &name,
        image: &images().node,
        network: &network,
        control_plane: false,
        failure_domain: None,
        extra_mounts: &[],
        owner: &owner,
        privileges: Privileges::Capabilities,
        proxy_env: &[],
    });
    docker.create(&spec).await.expect("create");
    docker.start(&name).await.expect("start");

    let plan = capkind::bootstrap::plan(Some("cloud-config"), BOOTSTRAP.as_bytes()).expect("plan");
    bootstrap::start(&docker, &name, &plan)
        .await
        .expect("start the bootstrap");
    // Step 0 (waiting for systemd) ends, steps 1 and 2 follow; step 2 waits for /tmp/go.
    let mut step = 0;
    let reached_step_2 = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            tokio::time::timeout(
                Duration::from_secs(LIMIT / 2),
                woken(&docker, &name, step).await,
            )
            .await
            .unwrap_or_else(|_| panic!("no wake within {}s of step {step}", LIMIT / 2))
            .expect("wake sent");
            match bootstrap::observe(&docker, &name, 600)
                .await
                .expect("observe")
            {
                State::Running { step: 2, .. } => return,
                State::Running { step: s, .. } => {
                    assert!(s > step, "woken at step {s} after waiting on step {step}");
                    step = s;
                }
                other => panic!("unexpected state {other:?} before /tmp/go exists"),
            }
        }
    })
    .await;
    assert!(reached_step_2.is_ok(), "step 2 not reached within 90s");

    // While step 2 runs, the waiter sleeps on the lock: no wake, and no poll loop in the node.
    let mut wake = woken(&docker, &name, 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        wake.try_recv().is_err(),
        "woken although step 2 has not ended"
    );
    let processes = sh(&docker, &name, "ps -eo args").await;
    assert!(
        processes.contains("flock -s -w"),
        "the waiter is not waiting on the step lock:\n{processes}"
    );
    assert!(
        !processes.contains("sleep 1"),
        "the waiter polls:\n{processes}"
    );

    // Step 2 ends, step 3 writes the sentinel: the waiter wakes although step 1's daemon lives.
    sh(&docker, &name, "touch /tmp/go").await;
    tokio::time::timeout(Duration::from_secs(LIMIT / 2), &mut wake)
        .await
        .expect("no wake within 60s of the step's end")
        .expect("wake sent");
    let mut state = bootstrap::observe(&docker, &name, 600)
        .await
        .expect("observe");
    if let State::Running { step, .. } = state {
        // Woken by the end of step 2; step 3 takes a moment.
        tokio::time::timeout(
            Duration::from_secs(LIMIT / 2),
            woken(&docker, &name, step).await,
        )
        .await
        .expect("no wake at the end of the script")
        .expect("wake sent");
        state = bootstrap::observe(&docker, &name, 600)
            .await
            .expect("observe");
    }
    assert!(
        matches!(state, State::Succeeded { .. }),
        "bootstrap ended as {state:?}"
    );
    let processes = sh(&docker, &name, "ps -eo args").await;
    assert!(
        processes.contains("sleep 600"),
        "step 1's daemon should still run:\n{processes}"
    );
}
