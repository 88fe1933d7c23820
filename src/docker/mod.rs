//! The Docker engine as the provider sees it: containers, networks, exec and file upload.
//!
//! [`ContainerRuntime`] is the one interface the controllers use; [`Engine`] (in `engine.rs`) is
//! its real implementation over bollard, and the only code that imports bollard. The domain
//! types here carry just what the provider needs, so controllers never see bollard's models.

pub mod address;
pub mod credentials;
mod engine;
#[cfg(test)]
pub mod fake;
mod instrumented;
pub mod labels;

use std::collections::BTreeMap;
use std::future::Future;

use futures::stream::BoxStream;

pub use engine::Engine;
pub use instrumented::Instrumented;

/// Everything that can go wrong talking to Docker, classified once.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named object does not exist.
    #[error("{what} not found: {message}")]
    NotFound { what: String, message: String },
    /// The request conflicts with the engine's state (name in use, port allocated, ...).
    #[error("{what}: conflict: {message}")]
    Conflict { what: String, message: String },
    /// The engine could not be reached or did not answer.
    #[error("Docker engine unavailable during {what}: {message}")]
    Unavailable { what: String, message: String },
    /// Any other refusal from the engine.
    #[error("{what}: Docker answered {status}: {message}")]
    Engine {
        what: String,
        status: u16,
        message: String,
    },
    /// The engine could not pull an image (the message is the engine's or the registry's).
    #[error("pulling image {image} failed ({}): {message}", failure.describe())]
    Pull {
        image: String,
        failure: PullFailure,
        message: String,
    },
}

/// Why a pull failed, as far as the engine's message tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullFailure {
    /// The registry has no such repository or tag.
    NotFound,
    /// The registry wants credentials, or refused the ones given.
    Unauthorized,
    /// The registry could not be reached (refused, no such host, timed out, TLS).
    Unreachable,
    /// Anything else (a bad reference, a full disk, ...).
    Other,
}

impl PullFailure {
    /// The failure from the engine's message (Docker 20.10 and later, distribution and
    /// Docker Hub wordings).
    pub fn classify(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| m.contains(w));
        if any(&[
            "no basic auth credentials",
            "unauthorized",
            "authentication required",
            "denied",
            "incorrect username or password",
        ]) {
            PullFailure::Unauthorized
        } else if any(&["manifest unknown", "not found", "name unknown"]) {
            PullFailure::NotFound
        } else if any(&[
            "dial tcp",
            "connection refused",
            "no such host",
            "i/o timeout",
            "timeout",
            "connection reset",
            "tls:",
            "x509:",
            "http response to https client",
            "network is unreachable",
            "no route to host",
        ]) {
            PullFailure::Unreachable
        } else {
            PullFailure::Other
        }
    }

    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            PullFailure::NotFound => "no such image in the registry",
            PullFailure::Unauthorized => "the registry refused access",
            PullFailure::Unreachable => "the registry cannot be reached",
            PullFailure::Other => "the engine refused",
        }
    }
}

/// Credentials for one registry, as the engine takes them for a pull. Its `Debug` shows no
/// secret, so that it can never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry, as the Docker CLI names it (`https://index.docker.io/v1/` for Docker Hub).
    pub server: String,
    /// User name (empty with an identity token).
    pub username: String,
    /// Password or access token.
    pub password: String,
    /// An OAuth identity token (what `docker login` stores for some registries).
    pub identity_token: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Error {
    /// True when the object in question does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Result of a Docker call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A container to create.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerSpec {
    /// Container name (also used as the hostname when `hostname` is empty).
    pub name: String,
    /// Hostname inside the container.
    pub hostname: String,
    /// Image reference.
    pub image: String,
    /// Labels on the container.
    pub labels: BTreeMap<String, String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Overrides the image's command when set.
    pub cmd: Option<Vec<String>>,
    /// The entrypoint, when not the image's.
    pub entrypoint: Option<Vec<String>>,
    /// Docker network to attach to.
    pub network: String,
    /// A fixed IPv4 address on that network (to come back on the same address).
    pub ipv4_address: Option<String>,
    /// Run privileged (all capabilities and devices).
    pub privileged: bool,
    /// Capabilities to add, e.g. `SYS_ADMIN` (for engines that refuse `privileged`).
    pub cap_add: Vec<String>,
    /// Device cgroup rules, e.g. `a *:* rwm` (all devices).
    pub device_cgroup_rules: Vec<String>,
    /// Leave /proc and /sys unmasked and writable, as `privileged` would.
    pub unmask_system_paths: bool,
    /// Security options such as `seccomp=unconfined`.
    pub security_opt: Vec<String>,
    /// tmpfs mounts: path -> options.
    pub tmpfs: BTreeMap<String, String>,
    /// Anonymous volumes at these paths (removed with the container).
    pub volumes: Vec<String>,
    /// Bind mounts from the host.
    pub binds: Vec<Bind>,
    /// Give the container its own cgroup namespace.
    pub cgroupns_private: bool,
    /// Restart the container when the engine restarts (unless stopped by hand).
    pub restart_unless_stopped: bool,
    /// Allocate a TTY (kind does, so systemd logs to the console).
    pub tty: bool,
    /// Published ports.
    pub ports: Vec<PortMapping>,
}

/// A bind mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub container_path: String,
    /// Mount read-only.
    pub read_only: bool,
}

/// A container TCP port published on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// TCP port in the container.
    pub container_port: u16,
    /// Host address to listen on, e.g. 127.0.0.1 or 0.0.0.0.
    pub host_ip: String,
    /// Host port; 0 lets Docker pick a free one.
    pub host_port: u16,
}

/// What the provider knows about an existing container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Container {
    /// Container ID.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Image as given at creation.
    pub image: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Whether it is running (not while the restart policy is bringing it back).
    pub running: bool,
    /// When it last started; `None` when it never did.
    pub started_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Docker's state word: created, running, exited, ...
    pub state: String,
    /// Exit code of the last run (0 while running or never run).
    pub exit_code: i64,
    /// How often the restart policy restarted it after it exited by itself (a stop, a
    /// `docker restart` or the engine starting again does not count).
    pub restart_count: i64,
    /// Why the engine could not run it, when it could not (e.g. an entry point missing).
    pub error: String,
    /// Addresses per network: network name -> (IPv4, IPv6).
    pub networks: BTreeMap<String, NetworkAddress>,
    /// Published ports: container TCP port -> host ports.
    pub published: BTreeMap<u16, Vec<PublishedPort>>,
    /// Anonymous and named volumes mounted in the container.
    pub volume_names: Vec<String>,
    /// Host configuration as the engine recorded it (for checks and diagnostics).
    pub host: HostSettings,
}

/// The container's address on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkAddress {
    /// IPv4 address, if any.
    pub ipv4: Option<String>,
    /// Global IPv6 address, if any.
    pub ipv6: Option<String>,
}

/// A host address and port a container port is published on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPort {
    /// Host address.
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
}

/// The parts of a container's host configuration the provider checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSettings {
    /// Privileged.
    pub privileged: bool,
    /// Added capabilities.
    pub cap_add: Vec<String>,
    /// Security options.
    pub security_opt: Vec<String>,
    /// tmpfs mounts.
    pub tmpfs: BTreeMap<String, String>,
    /// Bind mounts as `host:container[:ro]`.
    pub binds: Vec<String>,
    /// Cgroup namespace mode: private or host.
    pub cgroupns_mode: String,
    /// Restart policy name.
    pub restart_policy: String,
}

/// The result of a command run inside a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code of the command.
    pub exit_code: i64,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// A Docker network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Network {
    /// Network ID.
    pub id: String,
    /// Network name.
    pub name: String,
    /// Subnets of the network, IPv4 and IPv6.
    pub subnets: Vec<String>,
}

/// What the engine's host offers a container that sets no limits (`docker info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// CPUs (`NCPU`).
    pub cpus: i64,
    /// Memory in bytes (`MemTotal`).
    pub memory_bytes: i64,
    /// The machine architecture as the engine reports it (`x86_64`, `aarch64`, ...).
    pub architecture: String,
    /// The operating system containers run (`linux`).
    pub os_type: String,
}

/// Something happened to a container (created, started, died, destroyed, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerEvent {
    /// The event's action, e.g. `die` or `destroy`.
    pub action: String,
    /// The container's name.
    pub name: String,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
}

/// The operations the provider performs on a container engine.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Checks that the engine answers.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// The CPUs, memory, architecture and OS of the engine's host.
    fn host(&self) -> impl Future<Output = Result<HostInfo>> + Send;
    /// Whether an image is present locally.
    fn image_exists(&self, image: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Pulls `image` into the engine, with `auth` for its registry when given; returns once
    /// the engine has it.
    fn pull_image(
        &self,
        image: &str,
        auth: Option<&RegistryAuth>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The command a container of the image runs by default (its entrypoint, then its cmd);
    /// `None` when the image is not present locally.
    fn image_command(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<Option<Vec<String>>>> + Send;
    /// Returns the network, creating it (bridge, IPv4) when missing.
    fn ensure_network(&self, name: &str) -> impl Future<Output = Result<Network>> + Send;
    /// Removes the network if the provider created it and no container is attached to it;
    /// whether it was removed. A network someone else made (kind's own `kind`, a user's) is
    /// never touched.
    fn remove_network(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// A free IPv4 address on the network for a container to keep across restarts (see
    /// [`address`]), reserved for a minute so that concurrent creations get different ones;
    /// `None` when the network has no IPv4 subnet, is full, or takes no fixed addresses.
    fn free_address(&self, network: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Creates a container; returns its ID.
    fn create(&self, spec: &ContainerSpec) -> impl Future<Output = Result<String>> + Send;
    /// Starts a created or stopped container.
    fn start(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Inspects a container; `None` when it does not exist.
    fn inspect(&self, name: &str) -> impl Future<Output = Result<Option<Container>>> + Send;
    /// Names of all containers (running or not) carrying every given label.
    fn list(&self, labels: &[(&str, &str)]) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Removes a container and its anonymous volumes; absent is not an error.
    fn remove(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Runs a command in a running container, feeding `stdin` when given.
    fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<ExecOutput>> + Send;
    /// Streams `docker save <image>` from the engine into the standard input of `cmd` run in
    /// `container` (e.g. `ctr images import -`), without holding the image in memory.
    fn pipe_image(
        &self,
        image: &str,
        container: &str,
        cmd: &[&str],
    ) -> impl Future<Output = Result<ExecOutput>> + Send;
    /// Extracts a tar archive into the container at `path`.
    fn upload(
        &self,
        name: &str,
        path: &str,
        tar: Vec<u8>,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Lifecycle events (create, start, stop, die, destroy, ...) of containers carrying every
    /// given label, from now on. The stream ends when the connection to the engine does;
    /// callers reconnect.
    fn container_events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<ContainerEvent>>;
    /// The last `lines` lines of the container's output (standard output and error, or its
    /// console), as text.
    fn logs_tail(&self, name: &str, lines: usize) -> impl Future<Output = Result<String>> + Send;
    /// Sends a signal (e.g. `HUP`) to the container's main process.
    fn kill(&self, name: &str, signal: &str) -> impl Future<Output = Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::PullFailure::{self, *};

    #[test]
    fn pull_failures_from_what_engines_and_registries_say() {
        // Docker 20.10 with the distribution registry 2.8 (seen here), and Docker Hub's.
        let table: &[(&str, PullFailure)] = &[
            (
                "manifest for 127.0.0.1:5901/x/busybox:nope not found: manifest unknown: manifest unknown",
                NotFound,
            ),
            (
                "Get \"http://127.0.0.1:5909/v2/\": dial tcp 127.0.0.1:5909: connect: connection refused",
                Unreachable,
            ),
            (
                "Head \"http://127.0.0.1:5902/v2/x/busybox/manifests/t1\": no basic auth credentials",
                Unauthorized,
            ),
            ("unauthorized: authentication required", Unauthorized),
            (
                "pull access denied for nosuch/image, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
                Unauthorized,
            ),
            (
                "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host",
                Unreachable,
            ),
            (
                "Get \"https://reg.example/v2/\": net/http: TLS handshake timeout",
                Unreachable,
            ),
            ("invalid reference format", Other),
        ];
        for (message, expected) in table {
            assert_eq!(PullFailure::classify(message), *expected, "{message}");
        }
    }
}
