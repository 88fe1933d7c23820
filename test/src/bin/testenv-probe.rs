//! Starts a test environment and reports it, for the harness's own tests and for people:
//!
//! - `testenv-probe`: prints `dir=`, `pids=`, `url=` and `kubeconfig=` lines, then holds the
//!   environment until standard input closes (so `testenv-probe </dev/null` exits at once, and a
//!   person can use the kubeconfig while it waits on a terminal).
//! - `testenv-probe --panic`: prints the same lines, then panics: the environment must still be
//!   cleaned up.
//! - `--container IMAGE`: also starts a container labelled with this process's token and prints
//!   `container=NAME`; the watchdog must remove it.
//! - `--manager`: also starts a manager against the environment and never drops it (as a
//!   suite's `static` keeps one) and prints `manager=PID`; its watchdog must stop it.

use std::io::{Read, Write};

fn main() {
    let server = capkind_test::ApiServer::start().unwrap_or_else(|e| panic!("start: {e}"));
    let pids: Vec<String> = server.pids().iter().map(|p| p.to_string()).collect();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "dir={}", server.dir().display());
    let _ = writeln!(out, "pids={}", pids.join(","));
    let _ = writeln!(out, "url={}", server.url());
    let _ = writeln!(out, "kubeconfig={}", server.kubeconfig().display());
    let args: Vec<String> = std::env::args().collect();
    if let Some(image) = args
        .iter()
        .position(|a| a == "--container")
        .and_then(|i| args.get(i + 1))
    {
        let name = capkind_test::names::unique("probe");
        let (key, value) = capkind_test::docker::token_label();
        let status = std::process::Command::new("docker")
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--label",
                &format!("{key}={value}"),
            ])
            .args(["--entrypoint", "sleep", image, "600"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("docker run");
        assert!(status.success(), "docker run {image} failed");
        let _ = writeln!(out, "container={name}");
    }
    if args.iter().any(|a| a == "--manager") {
        let manager = capkind_test::process::ManagerProcess::start(&server, &[]);
        let _ = writeln!(out, "manager={}", manager.child.id());
        std::mem::forget(manager);
    }
    let _ = out.flush();
    drop(out);
    if args.iter().any(|a| a == "--panic") {
        panic!("testenv-probe: panicking on purpose with the environment running");
    }
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
