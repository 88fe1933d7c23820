//! A real container registry on a loopback port: Debian's `docker-registry` (the distribution
//! registry), plain HTTP (the Docker engine allows that for 127.0.0.0/8), storage in a
//! directory of its own, optionally behind htpasswd authentication.
//!
//! Images are put in under repositories named with this process's token
//! (`127.0.0.1:<port>/capkind-test/<token>-<name>:<tag>`) and their local tags removed, so
//! the engine has them only in the registry; the layers stay shared with the local test
//! images, so nothing is rebuilt. What a test pulls again is untagged when the registry is
//! dropped, and by a watchdog when the test process dies, which also stops the registry.
//! Nothing reads or writes the host's Docker configuration: the Docker CLI runs with a
//! `DOCKER_CONFIG` of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry; stopped, its storage and the tags it handed out removed, when dropped.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    storage: PathBuf,
    /// `<token>-r<n>`: the repositories of this registry's images start with it.
    prefix: String,
    pushed: Vec<String>,
}

/// A user and password that the registry's htpasswd file holds.
#[derive(Clone, Debug)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The password.
    pub password: String,
}

fn registry_binary() -> String {
    let bin = "docker-registry";
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{bin} is not installed: run hack/install-test-deps.sh (apt-get install docker-registry apache2-utils)"
    );
    bin.to_string()
}

impl Registry {
    /// A registry that anyone may pull from and push to.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry directory");
        let storage = dir.path().join("storage");
        Self::start_on(dir, storage, None)
    }

    /// A registry that serves what `other` holds (the same storage), to `user` only.
    pub fn start_sharing(other: &Registry, user: &User) -> Self {
        let dir = tempfile::tempdir().expect("registry directory");
        let mut registry = Self::start_on(dir, other.storage.clone(), Some(user));
        registry.prefix = other.prefix.clone();
        registry
    }

    fn start_on(dir: tempfile::TempDir, storage: PathBuf, user: Option<&User>) -> Self {
        let bin = registry_binary();
        std::fs::create_dir_all(&storage).expect("storage");
        let port = crate::http::free_port();
        let auth = user.map_or(String::new(), |u| {
            let htpasswd = dir.path().join("htpasswd");
            write_htpasswd(&htpasswd, u);
            format!(
                "auth:\n  htpasswd:\n    realm: capkind-test\n    path: {}\n",
                htpasswd.display()
            )
        });
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.display()
            ),
        )
        .expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(bin)
            .args(["serve", &config.to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        start_watchdog(child.id());
        let mut registry = Self {
            child: Some(child),
            port,
            dir,
            storage,
            prefix: crate::names::unique("r"),
            pushed: Vec::new(),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            let answer = crate::http::get(self.port, "/v2/");
            // 401 from a registry with authentication: it is up all the same.
            let status = answer.split_whitespace().nth(1).unwrap_or("");
            if answer.starts_with("HTTP/") && (status == "200" || status == "401") {
                return;
            }
            if let Some(Some(status)) = self.child.as_mut().map(|c| c.try_wait().ok().flatten()) {
                panic!("docker-registry exited ({status}):\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "docker-registry did not answer on 127.0.0.1:{} in 20 s ({answer}):\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:<port>`, how image references name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The reference of `name:tag` in this registry, under this process's repositories.
    /// Whatever a test pulls of it is untagged when the registry is dropped.
    pub fn reference(&mut self, name: &str, tag: &str) -> String {
        let reference = format!("{}/capkind-test/{}-{name}:{tag}", self.host(), self.prefix);
        if !self.pushed.contains(&reference) {
            self.pushed.push(reference.clone());
        }
        reference
    }

    /// Puts the local image `local` into the registry as `name:tag` and removes the local tag,
    /// so the engine has it only there; returns its reference.
    pub fn push(&mut self, local: &str, name: &str, tag: &str) -> String {
        let reference = self.reference(name, tag);
        docker(&["tag", local, &reference]);
        docker(&["push", &reference]);
        untag(&reference);
        assert!(
            !image_present(&reference),
            "{reference} is still in the engine"
        );
        reference
    }

    /// Stops the registry (it refuses connections from then on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The registry's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// A Docker CLI configuration (`config.json`) in `dir` that holds `user`'s credentials for
    /// this registry, in the CLI's layout (a base64 `auth`); returns its path.
    pub fn docker_config(&self, dir: &Path, user: &User) -> PathBuf {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", user.name, user.password));
        let path = dir.join("config.json");
        let config =
            serde_json::json!({"auths": {format!("http://{}", self.host()): {"auth": auth}}});
        std::fs::write(&path, config.to_string()).expect("docker config");
        path
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        for reference in &self.pushed {
            untag(reference);
        }
    }
}

/// Whether the engine has `image`.
pub fn image_present(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .env("DOCKER_CONFIG", cli_config_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn untag(reference: &str) {
    if image_present(reference) {
        docker(&["rmi", reference]);
    }
}

/// A Docker CLI configuration directory of the tests' own: the host's is neither read nor
/// changed.
fn cli_config_dir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("capkind-test-docker-cli-{}", crate::names::token()));
    std::fs::create_dir_all(&dir).expect("docker CLI config dir");
    dir
}

fn docker(args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_CONFIG", cli_config_dir())
        .output()
        .expect("run docker");
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bcrypt htpasswd line (the only kind the registry accepts), made by apache2-utils.
fn write_htpasswd(path: &Path, user: &User) {
    let out = Command::new("htpasswd")
        .args(["-nbB", &user.name, &user.password])
        .output()
        .unwrap_or_else(|e| {
            panic!("htpasswd is not installed ({e}): run hack/install-test-deps.sh (apache2-utils)")
        });
    assert!(out.status.success(), "htpasswd failed");
    std::fs::write(path, out.stdout).expect("htpasswd file");
}

/// Once this process is gone: the registry stopped, and this process's tags untagged.
fn start_watchdog(pid: u32) {
    let script = r#"
parent=$1; pid=$2; token=$3
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
kill "$pid" 2>/dev/null; sleep 1; kill -9 "$pid" 2>/dev/null
for ref in $(docker images --format '{{.Repository}}:{{.Tag}}' | grep "/capkind-test/$token-"); do
  docker rmi "$ref" >/dev/null 2>&1
done
rm -rf "$4"
"#;
    let args: [std::ffi::OsString; 4] = [
        std::process::id().to_string().into(),
        pid.to_string().into(),
        crate::names::token().into(),
        cli_config_dir().into(),
    ];
    crate::process::watchdog("capkind-registry-watchdog", script, args)
        .expect("start the registry's watchdog (setsid from util-linux)");
}
