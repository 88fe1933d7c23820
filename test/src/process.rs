//! The real manager binary as a separate process, as operators run it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::ApiServer;
use crate::http;

/// The `capkind` binary: `$CAPKIND_MANAGER_BINARY`, else the one built next to the running
/// executable.
pub fn binary() -> PathBuf {
    match std::env::var_os("CAPKIND_MANAGER_BINARY") {
        Some(path) => PathBuf::from(path),
        None => workspace_binary("capkind"),
    }
}

/// A binary of this workspace, built next to the running executable (cargo test builds every
/// workspace binary; test binaries live one level deeper, in deps/).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("binary directory");
    [dir.join(name), dir.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no {name} binary next to {}: build it with `cargo build --workspace --bins`",
                exe.display()
            )
        })
}

/// A running manager; killed when dropped, or once the process that started it has ended
/// (one kept in a `static` is never dropped).
pub struct ManagerProcess {
    /// The process.
    pub child: Child,
    /// Port of /healthz and /readyz.
    pub health_port: u16,
    /// Port of /metrics.
    pub metrics_port: u16,
    /// Where its logs go.
    pub log: PathBuf,
}

impl ManagerProcess {
    /// Starts the manager against `server` with extra `args`, nodes with explicit capabilities
    /// (this engine refuses --privileged).
    pub fn start(server: &ApiServer, args: &[&str]) -> Self {
        Self::start_with_kubeconfig(server, server.kubeconfig(), args)
    }

    /// Like [`ManagerProcess::start`], with another identity's kubeconfig.
    pub fn start_with_kubeconfig(
        server: &ApiServer,
        kubeconfig: &std::path::Path,
        args: &[&str],
    ) -> Self {
        Self::start_in(kubeconfig, server.dir(), args)
    }

    /// Starts the manager with `kubeconfig`, its log in `log_dir`, in a process group of its
    /// own (Ctrl-C in a terminal does not reach it; whoever started it stops it).
    pub fn start_in(
        kubeconfig: &std::path::Path,
        log_dir: &std::path::Path,
        args: &[&str],
    ) -> Self {
        Self::start_in_with_env(kubeconfig, log_dir, args, &[])
    }

    /// [`ManagerProcess::start_in`] with more environment variables (`PATH`, ...).
    pub fn start_in_with_env(
        kubeconfig: &std::path::Path,
        log_dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let (health_port, metrics_port) = (http::free_port(), http::free_port());
        let log = log_dir.join(format!("manager-{}.log", crate::names::unique("m")));
        let out = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(binary());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .env("KUBECONFIG", kubeconfig)
            .env("CAPKIND_NODE_PRIVILEGES", "capabilities")
            .envs(env.iter().copied())
            .arg(format!("--health-addr=127.0.0.1:{health_port}"))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"))
            // No webhooks unless a test asks (a later --webhook-port wins).
            .arg("--webhook-port=0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start the manager");
        stop_when_gone(child.id(), health_port);
        Self {
            child,
            health_port,
            metrics_port,
            log,
        }
    }

    /// The text of /metrics.
    pub fn metrics(&self) -> String {
        http::get(self.metrics_port, "/metrics")
    }

    /// The value of a metric line starting with `series` (name and labels), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Waits until metric `series` is at least `at_least` (a counter moves when the work it
    /// counts has returned, a moment after what that work wrote); panics after `timeout`
    /// with the value and the manager's log.
    pub async fn wait_metric(&self, series: &str, at_least: f64, timeout: std::time::Duration) {
        crate::wait::until(&format!("{series} >= {at_least}"), timeout, || async {
            let n = self.metric(series);
            if n >= at_least {
                Ok(())
            } else {
                Err(format!("{n}\n{}", self.log_tail()))
            }
        })
        .await;
    }

    /// Sends a signal (`TERM`, `KILL`, ...).
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
    }

    /// Waits for the process to end, or panics after `timeout` with its log.
    pub async fn wait_exit(
        &mut self,
        timeout: std::time::Duration,
        after: &str,
    ) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "still running {timeout:?} after {after}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A shell in a session of its own that stops the manager listening on `health_port` once
/// this process has ended, however it ends: a manager held by a suite's `static` is never
/// dropped, and one left running keeps its Docker event streams and retries against an API
/// server that is gone. It ends without doing anything when the manager ends first. The
/// manager is found by its health address, not its pid, which another process may have by
/// then (the pid only tells the loop when to stop); the pattern is built inside the script,
/// so it does not match the watchdog itself.
fn stop_when_gone(pid: u32, health_port: u16) {
    let script = r#"
parent=$1; pid=$2; port=$3
own="--health-addr=127.0.0.1:$port"
while kill -0 "$parent" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
kill -0 "$parent" 2>/dev/null && exit 0
pkill -TERM -f -- "$own" 2>/dev/null || exit 0
sleep 2
pkill -KILL -f -- "$own" 2>/dev/null
"#;
    let args = [std::process::id(), pid, u32::from(health_port)].map(|a| a.to_string());
    watchdog("capkind-manager-watchdog", script, args)
        .expect("start the manager's watchdog (setsid from util-linux)");
}

/// Starts `script` in `sh` as `name`, with `args` as `$1`, `$2`, ..., in a session of its own
/// (Ctrl-C to the test does not reach it) and without standard streams. It is not waited for:
/// a watchdog outlives this process on purpose, to clean up after it.
pub fn watchdog<S: AsRef<std::ffi::OsStr>>(
    name: &str,
    script: &str,
    args: impl IntoIterator<Item = S>,
) -> std::io::Result<()> {
    Command::new("setsid")
        .args(["sh", "-c", script, name])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| ())
}
