//! The bootstrap inside a real node container, without a controller: the script put in place by
//! one upload and started by the exec of the first waiter (or by one of its own), and the waiter
//! that wakes the machine when a step ends. The waiter must block on the script's step lock (no
//! polling inside the node) and must not be held up by a daemon that a step left running, and
//! of racing starts only one runs the bootstrap.

use std::time::Duration;

use capkind::controllers::kindmachine::bootstrap::{self, State};
use capkind::docker::ContainerRuntime;
use capkind_test::docker::{Janitor, engine, worker_node_spec};
use capkind_test::names;

/// Step 1 leaves a daemon behind, step 2 waits for the test to let it go, step 3 writes the
/// sentinel.
const BOOTSTRAP: &str = "#cloud-config\nruncmd:\n\
- 'sleep 600 >/dev/null 2>&1 < /dev/null &'\n\
- 'while [ ! -f /tmp/go ]; do sleep 0.2; done'\n\
- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";

/// The waiter's limit: a wake well before it was caused by the script, not by the limit.
const LIMIT: u64 = 120;

/// A waiter on `step` (with `launch`, one that starts the uploaded script first): the wake,
/// and where it leaves what it saw.
fn woken(
    docker: &capkind::docker::Engine,
    container: &str,
    step: usize,
    launch: bool,
) -> (tokio::sync::oneshot::Receiver<()>, bootstrap::Waiter) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = bootstrap::Waiter::default();
    let started = waiter.watch(docker, container, step, LIMIT, launch, move || {
        let _ = tx.send(());
    });
    assert!(started, "no waiter started");
    assert_eq!(waiter.take(container), bootstrap::Seen::Waiting);
    (rx, waiter)
}

/// Waits for the wake of a waiter on `step` (well before its limit) and returns the state it
/// saw.
async fn next_state(
    docker: &capkind::docker::Engine,
    container: &str,
    step: usize,
    launch: bool,
) -> State {
    let (wake, waits) = woken(docker, container, step, launch);
    awoken(wake, step).await;
    seen(docker, container, &waits).await
}

/// A running node container, removed by `janitor`, with the plan of cloud-config `data`
/// uploaded (not started).
async fn node(docker: &capkind::docker::Engine, janitor: &mut Janitor, data: &str) -> String {
    let network = names::unique("bootnet");
    docker.ensure_network(&network).await.expect("network");
    let name = names::unique("boot");
    janitor.track(&name);
    janitor.track_network(&network);
    let spec = worker_node_spec("bootstrap-test", &name, &network);
    docker.create(&spec).await.expect("create");
    docker.start(&name).await.expect("start");
    let plan = capkind::bootstrap::plan(Some("cloud-config"), data.as_bytes()).expect("plan");
    bootstrap::Node::new(docker, &name)
        .upload(&plan)
        .await
        .expect("upload the bootstrap");
    name
}

async fn awoken(wake: tokio::sync::oneshot::Receiver<()>, step: usize) {
    tokio::time::timeout(Duration::from_secs(LIMIT / 2), wake)
        .await
        .unwrap_or_else(|_| panic!("no wake within {}s while at step {step}", LIMIT / 2))
        .expect("wake sent");
}

async fn seen(
    _docker: &capkind::docker::Engine,
    container: &str,
    waiter: &bootstrap::Waiter,
) -> State {
    let bootstrap::Seen::Returned(report) = waiter.take(container) else {
        panic!("the waiter left nothing it saw");
    };
    bootstrap::state(&report, 600)
}

/// A look of the test's own.
async fn observe(docker: &capkind::docker::Engine, container: &str) -> State {
    let report = bootstrap::Node::new(docker, container)
        .probe()
        .await
        .expect("probe");
    bootstrap::state(&report, 600)
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
    let mut janitor = Janitor::default();
    let name = node(&docker, &mut janitor, BOOTSTRAP).await;
    // The first waiter starts the script. Step 0 (waiting for systemd) ends, steps 1 and 2
    // follow; step 2 waits for /tmp/go.
    let mut step = 0;
    let mut launch = true;
    let reached_step_2 = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let state = next_state(&docker, &name, step, std::mem::take(&mut launch)).await;
            match state {
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
    assert!(
        matches!(
            observe(&docker, &name).await,
            State::Running { step: 2, .. }
        ),
        "a look of its own disagrees with the waiter"
    );

    // While step 2 runs, the waiter sleeps on the lock: no wake, and no poll loop in the node.
    let (mut wake, waits) = woken(&docker, &name, 2, false);
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
        !processes.lines().any(|l| l.trim() == "sleep 1"),
        "the waiter polls:\n{processes}"
    );

    // Step 2 ends, step 3 writes the sentinel: the waiter wakes although step 1's daemon lives.
    sh(&docker, &name, "touch /tmp/go").await;
    awoken(wake, 2).await;
    let mut state = seen(&docker, &name, &waits).await;
    if let State::Running { step, .. } = state {
        // Woken by the end of step 2; step 3 takes a moment.
        state = next_state(&docker, &name, step, false).await;
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

/// Step 1 counts its runs in a file on the node's /var volume.
const COUNTED: &str = "#cloud-config\nruncmd:\n\
- echo run >> /var/capkind-runs\n\
- mkdir -p /run/cluster-api && echo success > /run/cluster-api/bootstrap-success.complete\n";

#[tokio::test]
async fn of_racing_starts_only_one_runs_the_bootstrap() {
    let docker = engine().await;
    let mut janitor = Janitor::default();
    let name = node(&docker, &mut janitor, COUNTED).await;
    let node = bootstrap::Node::new(&docker, &name);
    // Two starts with execs of their own (as where no waiter can start one) and a waiter
    // that starts one, at once: two managers, or one restarted right after it started one.
    let (wake, waits) = woken(&docker, &name, 0, true);
    let (a, b) = tokio::join!(node.start(), node.start());
    a.expect("start");
    b.expect("start");
    awoken(wake, 0).await;
    let mut state = seen(&docker, &name, &waits).await;
    for _ in 0..30 {
        if !matches!(state, State::Running { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        state = observe(&docker, &name).await;
    }
    assert!(
        matches!(state, State::Succeeded { .. }),
        "bootstrap ended as {state:?}"
    );
    // Started again once it ended: nothing runs.
    node.start().await.expect("start again");
    let (wake, waits) = woken(&docker, &name, 0, true);
    awoken(wake, 0).await;
    let again = seen(&docker, &name, &waits).await;
    assert!(matches!(again, State::Succeeded { .. }), "{again:?}");
    assert_eq!(sh(&docker, &name, "cat /var/capkind-runs").await, "run\n");
}
