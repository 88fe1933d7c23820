//! Registry credentials from a Docker CLI configuration file (`config.json`), read the way the
//! Docker CLI reads it: `credHelpers` for the image's registry first, then `credsStore`, then
//! `auths` (a base64 `auth` of `user:password`, or `username` and `password`, or an
//! `identitytoken`), registry keys compared by host name, so that `https://index.docker.io/v1/`,
//! `index.docker.io` and `docker.io` all name Docker Hub. Helpers run as the CLI runs them
//! (`docker-credential-<name> get`, the server on standard input).
//!
//! No secret ever appears in an error: parse errors give a line and column, never a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use super::RegistryAuth;

/// Docker Hub's host name, and its key in a CLI configuration.
pub const DOCKER_HUB: &str = "docker.io";
/// How the Docker CLI names Docker Hub in `auths` and to credential helpers.
pub const DOCKER_HUB_SERVER: &str = "https://index.docker.io/v1/";

/// Why the credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The file exists but cannot be read.
    #[error("cannot read the Docker configuration {path}: {message}")]
    Read { path: String, message: String },
    /// The file is not a Docker CLI configuration.
    #[error("the Docker configuration {path} is not valid: {message}")]
    Parse { path: String, message: String },
    /// An `auths` entry is unusable.
    #[error("the Docker configuration {path} has an unusable entry for {registry}: {message}")]
    Entry {
        path: String,
        registry: String,
        message: String,
    },
    /// A credential helper is missing or failed.
    #[error("credential helper docker-credential-{helper} for {registry}: {message}")]
    Helper {
        helper: String,
        registry: String,
        message: String,
    },
}

/// The Docker CLI configuration file's default place: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The parts of `config.json` that say where credentials are.
#[derive(Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, rename = "identitytoken")]
    identity_token: Option<String>,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthEntry { .. }")
    }
}

/// Where credentials for one registry come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// None: pull anonymously.
    Anonymous,
    /// From the file.
    Stored(RegistryAuth),
    /// From `docker-credential-<helper>`, asked about `server`.
    Helper { helper: String, server: String },
}

impl Config {
    /// Parses `text` (the content of `path`, named in errors).
    pub fn parse(path: &str, text: &str) -> Result<Self, Error> {
        serde_json::from_str(text).map_err(|e| Error::Parse {
            path: path.to_string(),
            // Line and column only: serde's message can quote a value, which may be a secret.
            message: format!(
                "{} at line {} column {}",
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof =>
                        "not JSON",
                    _ => "not the shape of a Docker CLI config.json",
                },
                e.line(),
                e.column()
            ),
        })
    }

    /// Where the credentials for `registry` (a host name such as `docker.io` or
    /// `127.0.0.1:5000`) come from, as the Docker CLI decides.
    pub fn source(&self, path: &str, registry: &str) -> Result<Source, Error> {
        let server = server_name(registry);
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| hostname(k) == registry)
            .map(|(_, h)| h.clone())
            .or_else(|| self.creds_store.clone())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            return Ok(Source::Helper { helper, server });
        }
        let Some(entry) = self.auths.iter().find(|(k, _)| hostname(k) == registry) else {
            return Ok(Source::Anonymous);
        };
        let unusable = |message: &str| Error::Entry {
            path: path.to_string(),
            registry: registry.to_string(),
            message: message.to_string(),
        };
        let e = entry.1;
        let (mut username, mut password) = (
            e.username.clone().unwrap_or_default(),
            e.password.clone().unwrap_or_default(),
        );
        if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| unusable("\"auth\" is not base64"))?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| unusable("\"auth\" is not text"))?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| unusable("\"auth\" is not user:password"))?;
            (username, password) = (u.to_string(), p.to_string());
        }
        let identity_token = e.identity_token.clone().unwrap_or_default();
        if username.is_empty() && password.is_empty() && identity_token.is_empty() {
            return Ok(Source::Anonymous);
        }
        Ok(Source::Stored(RegistryAuth {
            server,
            username,
            password,
            identity_token,
        }))
    }
}

/// A registry key as the CLI compares it: the host name, without scheme or path, with Docker
/// Hub's several names as `docker.io`.
pub fn hostname(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        other => other.to_string(),
    }
}

/// How the CLI names a registry to the engine and to helpers.
pub fn server_name(registry: &str) -> String {
    if registry == DOCKER_HUB {
        DOCKER_HUB_SERVER.to_string()
    } else {
        registry.to_string()
    }
}

/// The registry of an image reference, as Docker resolves it: the first path component when
/// it looks like a host (has a `.` or a `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            hostname(first)
        }
        _ => DOCKER_HUB.to_string(),
    }
}

/// The reference with `:latest` added when it names neither a tag nor a digest (the engine
/// would otherwise pull every tag of the repository).
pub fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The credentials for pulling `image`, from the configuration at `path` (none when there is
/// no such file, as the CLI does), running a credential helper when the file says so.
pub async fn for_image(path: Option<&Path>, image: &str) -> Result<Option<RegistryAuth>, Error> {
    let Some(path) = path else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let text = match tokio::fs::read_to_string(path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::Read {
                path: shown,
                message: e.to_string(),
            });
        }
    };
    let registry = registry_of(image);
    match Config::parse(&shown, &text)?.source(&shown, &registry)? {
        Source::Anonymous => Ok(None),
        Source::Stored(auth) => Ok(Some(auth)),
        Source::Helper { helper, server } => run_helper(&helper, &registry, &server).await,
    }
}

/// What a helper answers to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// How long a credential helper may take.
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks `docker-credential-<helper>` for `server`'s credentials; `None` when it has none.
async fn run_helper(
    helper: &str,
    registry: &str,
    server: &str,
) -> Result<Option<RegistryAuth>, Error> {
    use tokio::io::AsyncWriteExt;
    let fail = |message: String| Error::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        message,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(format!(
                "{program} is not installed where the manager runs (not on PATH)"
            )),
            _ => fail(format!("cannot run {program}: {e}")),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot write to {program}: {e}")))?;
    }
    let out = tokio::time::timeout(HELPER_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| fail(format!("{program} did not answer in {HELPER_TIMEOUT:?}")))?
        .map_err(|e| fail(format!("{program} failed: {e}")))?;
    let said = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The protocol's answer for "nothing stored": pull anonymously, as the CLI does.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why: String = format!("{} {}", said.trim(), stderr.trim())
            .trim()
            .chars()
            .take(300)
            .collect();
        return Err(fail(format!(
            "{program} get failed ({}): {why}",
            out.status
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        fail(format!(
            "{program} get did not answer JSON with Username and Secret"
        ))
    })?;
    let (username, password, identity_token) = if answer.username == "<token>" {
        (String::new(), String::new(), answer.secret)
    } else {
        (answer.username, answer.secret, String::new())
    };
    Ok(Some(RegistryAuth {
        server: server.to_string(),
        username,
        password,
        identity_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(server: &str, username: &str, password: &str) -> Source {
        Source::Stored(RegistryAuth {
            server: server.into(),
            username: username.into(),
            password: password.into(),
            identity_token: String::new(),
        })
    }

    #[test]
    fn registries_of_references() {
        for (image, registry) in [
            ("kindest/node:v1.31.0", "docker.io"),
            ("busybox", "docker.io"),
            ("docker.io/kindest/haproxy:v1", "docker.io"),
            ("index.docker.io/library/busybox", "docker.io"),
            ("127.0.0.1:5000/capkind/node:x", "127.0.0.1:5000"),
            ("localhost/capkind-manager:v0.2.0", "localhost"),
            ("ghcr.io/org/img@sha256:abc", "ghcr.io"),
            ("capkind.local/node:tag", "capkind.local"),
        ] {
            assert_eq!(registry_of(image), registry, "{image}");
        }
    }

    #[test]
    fn references_without_tag_get_latest() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(
            with_default_tag("127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b:latest"
        );
        assert_eq!(
            with_default_tag("127.0.0.1:5000/a/b:t"),
            "127.0.0.1:5000/a/b:t"
        );
        assert_eq!(with_default_tag("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn the_cli_layout_of_auths() {
        // "alice:s3cret" and "bob:pw:with:colons"
        let text = r#"{
          "auths": {
            "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcmV0"},
            "http://127.0.0.1:5000/v2/": {"auth": "Ym9iOnB3OndpdGg6Y29sb25z"},
            "registry.example:8443": {"username": "carol", "password": "pw3"},
            "token.example": {"identitytoken": "tok"},
            "empty.example": {}
          }
        }"#;
        let c = Config::parse("c.json", text).expect("parses");
        let src = |r: &str| c.source("c.json", r).expect("source");
        assert_eq!(src("docker.io"), auth(DOCKER_HUB_SERVER, "alice", "s3cret"));
        assert_eq!(
            src("127.0.0.1:5000"),
            auth("127.0.0.1:5000", "bob", "pw:with:colons")
        );
        assert_eq!(
            src("registry.example:8443"),
            auth("registry.example:8443", "carol", "pw3")
        );
        assert_eq!(
            src("token.example"),
            Source::Stored(RegistryAuth {
                server: "token.example".into(),
                username: String::new(),
                password: String::new(),
                identity_token: "tok".into(),
            })
        );
        assert_eq!(src("empty.example"), Source::Anonymous);
        assert_eq!(src("ghcr.io"), Source::Anonymous);
    }

    #[test]
    fn helpers_come_before_auths() {
        let text = r#"{
          "auths": {"gcr.io": {"auth": "eDp5"}, "docker.io": {}},
          "credsStore": "desktop",
          "credHelpers": {"https://gcr.io": "gcloud"}
        }"#;
        let c = Config::parse("c.json", text).expect("parses");
        assert_eq!(
            c.source("c.json", "gcr.io"),
            Ok(Source::Helper {
                helper: "gcloud".into(),
                server: "gcr.io".into()
            })
        );
        assert_eq!(
            c.source("c.json", "docker.io"),
            Ok(Source::Helper {
                helper: "desktop".into(),
                server: DOCKER_HUB_SERVER.into()
            })
        );
    }

    #[test]
    fn errors_never_show_a_secret() {
        let secret = "hunter2-very-secret";
        let bad_shape =
            format!(r#"{{"auths": {{"r.example": {{"password": 5, "auth": "{secret}"}}}}}}"#);
        let bad_json = format!(r#"{{"auths": {{"r.example": {{"auth": "{secret}""#);
        let not_base64 = format!(r#"{{"auths": {{"r.example": {{"auth": "{secret}!"}}}}}}"#);
        let e1 = Config::parse("c.json", &bad_shape).expect_err("shape");
        let e2 = Config::parse("c.json", &bad_json).expect_err("json");
        let e3 = Config::parse("c.json", &not_base64)
            .expect("parses")
            .source("c.json", "r.example")
            .expect_err("base64");
        for e in [e1, e2, e3] {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
        let auth = RegistryAuth {
            server: "r".into(),
            username: "u".into(),
            password: secret.into(),
            identity_token: secret.into(),
        };
        assert!(!format!("{auth:?}").contains(secret));
    }

    #[tokio::test]
    async fn a_missing_file_means_anonymous_and_a_missing_helper_says_so() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("config.json");
        assert_eq!(for_image(Some(&path), "busybox").await, Ok(None));
        std::fs::write(&path, r#"{"credsStore": "capkind-test-absent"}"#).expect("write");
        let e = for_image(Some(&path), "busybox").await.expect_err("helper");
        assert_eq!(
            e.to_string(),
            "credential helper docker-credential-capkind-test-absent for docker.io: \
             docker-credential-capkind-test-absent is not installed where the manager runs (not on PATH)"
        );
    }
}
