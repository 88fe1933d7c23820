//! The test environment cleans up after itself: when a test process panics (or ends in any
//! way), its etcd, kube-apiserver, manager, directory, ports and Docker containers are gone
//! shortly after.

use std::process::Command;
use std::time::{Duration, Instant};

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("testenv-probe did not print {key}=; it printed:\n{out}"))
}

fn eventually(what: &str, mut gone: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !gone() {
        assert!(
            Instant::now() < deadline,
            "{what} still there 20s after the test process ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_panicking_test_process_leaves_nothing_behind() {
    let image = capkind_test::docker::images().haproxy;
    let out = Command::new(env!("CARGO_BIN_EXE_testenv-probe"))
        .args(["--panic", "--container", &image, "--manager"])
        .output()
        .expect("run testenv-probe");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the probe was meant to panic");
    assert!(
        stderr.contains("panicking on purpose"),
        "the probe failed for another reason:\n{stderr}"
    );

    let dir = field(&stdout, "dir").to_string();
    let pids: Vec<String> = field(&stdout, "pids")
        .split(',')
        .map(str::to_string)
        .collect();
    let url = field(&stdout, "url").to_string();
    let container = field(&stdout, "container").to_string();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    let manager = field(&stdout, "manager").to_string();

    // The manager first: it was never dropped, so only its watchdog can stop it.
    eventually(&format!("manager process {manager}"), || {
        !std::path::Path::new(&format!("/proc/{manager}")).exists()
    });

    for pid in &pids {
        eventually(&format!("process {pid}"), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
    eventually(&format!("directory {dir}"), || {
        !std::path::Path::new(&dir).exists()
    });
    let port = url.rsplit(':').next().expect("port");
    eventually(&format!("listener on {port}"), || {
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err()
    });
    eventually(&format!("container {container}"), || {
        !Command::new("docker")
            .args(["inspect", &container])
            .output()
            .expect("docker")
            .status
            .success()
    });
}
