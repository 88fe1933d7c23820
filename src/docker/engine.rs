//! The real [`ContainerRuntime`]: the Docker Engine API through bollard.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointIpamConfig, EndpointSettings,
    ExecConfig, HostConfig, HostConfigCgroupnsModeEnum, Ipam, IpamConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::AsyncWriteExt;

use super::address::{self, Subnet};
use super::{
    Container, ContainerEvent, ContainerRuntime, ContainerSpec, Error, ExecOutput, HostInfo,
    HostSettings, Network, NetworkAddress, PublishedPort, PullFailure, RegistryAuth, Result,
    labels,
};

/// A connection to a Docker engine.
#[derive(Clone, Debug)]
pub struct Engine {
    docker: Docker,
    addresses: Arc<Mutex<Addresses>>,
}

/// Fixed addresses handed out by [`ContainerRuntime::free_address`] and not yet seen on a
/// container, so that concurrent creations on one network never pick the same one.
#[derive(Debug, Default)]
struct Addresses {
    /// (network, address) -> when it was handed out.
    handed_out: HashMap<(String, Ipv4Addr), Instant>,
    /// Networks whose subnet Docker did not let us choose: no fixed addresses there.
    dynamic_only: HashSet<String>,
}

/// How long a handed-out address stays reserved: long enough for the container that takes it
/// to be created (from then on the container itself shows it).
const HANDED_OUT_FOR: Duration = Duration::from_secs(60);

impl Engine {
    /// Connects to `host` (`unix:///var/run/docker.sock`, `tcp://...`), or to DOCKER_HOST or the
    /// default socket when `None`, and negotiates the API version so older engines answer.
    pub async fn connect(host: Option<&str>) -> Result<Self> {
        // An empty DOCKER_HOST (a manifest variable left at its default) means the local socket.
        let from_env = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        let docker = match host
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .or(from_env)
        {
            Some(h) => Docker::connect_with_host(&h),
            None => Docker::connect_with_socket_defaults(),
        }
        .map_err(|e| classify("connect", e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| classify("negotiate API version", e))?;
        Ok(Self {
            docker,
            addresses: Arc::default(),
        })
    }
}

impl Engine {
    /// Every IPv4 address on `network` that a container holds or will take when it starts:
    /// running ones and the fixed addresses of stopped or created ones, whoever made them.
    async fn addresses_on(&self, network: &str) -> Result<BTreeSet<Ipv4Addr>> {
        let found = self.list_all("network", vec![network.to_string()]).await?;
        Ok(found
            .into_iter()
            .filter_map(|c| c.network_settings?.networks?.remove(network))
            .flat_map(|ep| {
                let fixed = ep.ipam_config.and_then(|i| i.ipv4_address);
                [fixed, ep.ip_address]
            })
            .flatten()
            .filter_map(|a| a.parse().ok())
            .collect())
    }

    /// Gives no fixed addresses on `network` from now on.
    fn dynamic_only(&self, network: &str) {
        if let Ok(mut a) = self.addresses.lock() {
            a.dynamic_only.insert(network.to_string());
        }
    }

    /// Every container, running or not, that matches the filter `key` with one of `values`.
    async fn list_all(
        &self,
        key: &str,
        values: Vec<String>,
    ) -> Result<Vec<bollard::models::ContainerSummary>> {
        let filters = HashMap::from([(key.to_string(), values)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| classify(format!("list containers by {key}"), e))
    }

    async fn subnets_in_use(&self) -> Result<Vec<String>> {
        let networks = self
            .docker
            .list_networks(None)
            .await
            .map_err(|e| classify("list networks", e))?;
        Ok(networks
            .into_iter()
            .flat_map(|n| n.ipam.and_then(|i| i.config).unwrap_or_default())
            .filter_map(|c| c.subnet)
            .collect())
    }

    /// Creates network `name` on a subnet of our choosing: Docker keeps a container's fixed
    /// address (how a load balancer comes back on its old address) only on such networks.
    /// Whoever creates a network at the same moment may pick the same free subnet; Docker then
    /// refuses the second ("Pool overlaps"), which looks again and picks another.
    async fn create_network(&self, name: &str) -> Result<()> {
        let what = || format!("network {name}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let taken = self.subnets_in_use().await?;
            let request = NetworkCreateRequest {
                name: name.to_string(),
                driver: Some("bridge".to_string()),
                labels: Some(HashMap::from([(
                    labels::NETWORK_CREATED_BY.to_string(),
                    labels::CREATED_BY_CAPKIND.to_string(),
                )])),
                ipam: free_subnet(&taken).map(|subnet| Ipam {
                    config: Some(vec![IpamConfig {
                        // Docker's allocator keeps to the lower half; fixed addresses (see
                        // `address`) take the upper.
                        ip_range: Subnet::parse(&subnet).and_then(Subnet::lower_half),
                        subnet: Some(subnet),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            };
            match self
                .docker
                .create_network(request)
                .await
                .map_err(|e| classify(what(), e))
            {
                Ok(_) => return Ok(()),
                // Someone else created it between our inspect and create.
                Err(Error::Conflict { .. }) => return Ok(()),
                // "Pool overlaps with other one on this address space", or "networks have
                // overlapping IPv4" when two creates raced.
                Err(Error::Engine { message, .. })
                    if message.contains("overlap") && attempt < 5 =>
                {
                    tracing::debug!(
                        network = name,
                        attempt,
                        "subnet taken meanwhile; choosing again"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                Err(other) => return Err(other),
            }
        }
    }
}

impl Engine {
    /// Leaves one network named `name` where there are several that the provider created.
    /// Docker 20.10 does not refuse a second network of a name through its API, and a create
    /// whose answer was lost (a manager killed, the socket cut) can land after another
    /// manager's inspect found nothing: then every lookup by name fails as ambiguous. The one
    /// kept is the same for every manager: one with containers, else the oldest (then the
    /// smallest ID); the others, empty, are removed. Networks someone else made are left.
    async fn settle_duplicates(&self, name: &str) -> Result<()> {
        let what = || format!("network {name}");
        let options = bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([(
                "name".to_string(),
                vec![name.to_string()],
            )])),
        };
        let found: Vec<_> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| classify(what(), e))?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .collect();
        if found.len() < 2 {
            return Ok(());
        }
        let ours = |labels: &Option<HashMap<String, String>>| {
            labels
                .as_ref()
                .and_then(|l| l.get(labels::NETWORK_CREATED_BY))
                .map(String::as_str)
                == Some(labels::CREATED_BY_CAPKIND)
        };
        if !found.iter().all(|n| ours(&n.labels)) {
            return Ok(());
        }
        // The list leaves out attached containers; an inspect by ID has them.
        let mut candidates = Vec::new();
        for n in &found {
            let id = n.id.clone().unwrap_or_default();
            let inspect = self
                .docker
                .inspect_network(&id, None)
                .await
                .map_err(|e| classify(what(), e))?;
            let empty = inspect.containers.as_ref().is_none_or(|c| c.is_empty());
            candidates.push((empty, n.created.clone().unwrap_or_default(), id));
        }
        candidates.sort();
        for (empty, _, id) in candidates.into_iter().skip(1) {
            if !empty {
                continue;
            }
            tracing::info!(network = name, id, "removing a duplicate of the network");
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) => match classify(what(), e) {
                    Error::NotFound { .. } => {}
                    other => return Err(other),
                },
            }
        }
        Ok(())
    }
}

/// The first private /16 (172.18-31, then 10.89-99) that overlaps none of `taken`.
fn free_subnet(taken: &[String]) -> Option<String> {
    let parse = |cidr: &str| -> Option<(u32, u32)> {
        let (addr, bits) = cidr.split_once('/')?;
        let addr: std::net::Ipv4Addr = addr.parse().ok()?;
        let bits: u32 = bits.parse().ok()?;
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits.min(32))
        };
        Some((u32::from(addr) & mask, mask))
    };
    let taken: Vec<(u32, u32)> = taken.iter().filter_map(|c| parse(c)).collect();
    let candidates = (18..=31)
        .map(|b| format!("172.{b}.0.0/16"))
        .chain((89..=99).map(|b| format!("10.{b}.0.0/16")));
    candidates.into_iter().find(|candidate| {
        let Some((net, mask)) = parse(candidate) else {
            return false;
        };
        taken.iter().all(|(t_net, t_mask)| {
            let common = mask & t_mask;
            net & common != t_net & common
        })
    })
}

impl Engine {
    /// Runs `cmd` in `container`, streaming `input` to its standard input while its output is
    /// read (so neither side can block the other), and returns output and exit code.
    async fn exec_attached(
        &self,
        container: &str,
        cmd: &[&str],
        input: Option<BoxStream<'_, Result<bytes::Bytes>>>,
        what: String,
    ) -> Result<ExecOutput> {
        let unavailable = |e: std::io::Error| Error::Unavailable {
            what: what.clone(),
            message: e.to_string(),
        };
        let config = ExecConfig {
            attach_stdin: Some(input.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(container, config)
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let options = StartExecOptions {
            detach: false,
            tty: false,
            output_capacity: None,
        };
        let started = self
            .docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(|e| classify(what.clone(), e))?;
        let StartExecResults::Attached {
            mut output,
            input: mut stdin,
        } = started
        else {
            return Err(Error::Unavailable {
                what,
                message: "exec did not attach".into(),
            });
        };
        let reader = tokio::spawn(async move {
            let mut out = ExecOutput::default();
            while let Some(Ok(chunk)) = output.next().await {
                match chunk {
                    bollard::container::LogOutput::StdOut { message } => {
                        out.stdout.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        out.stderr.extend_from_slice(&message)
                    }
                    _ => {}
                }
            }
            out
        });
        if let Some(mut input) = input {
            while let Some(chunk) = input.next().await {
                stdin.write_all(&chunk?).await.map_err(unavailable)?;
            }
        }
        let _ = stdin.shutdown().await;
        let mut out = reader.await.map_err(|e| Error::Unavailable {
            what: what.clone(),
            message: e.to_string(),
        })?;
        let inspect = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| classify(what, e))?;
        out.exit_code = inspect.exit_code.unwrap_or(-1);
        Ok(out)
    }
}

/// Maps a bollard error onto the provider's four kinds.
fn classify(what: impl Into<String>, err: BollardError) -> Error {
    let what = what.into();
    match err {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound { what, message },
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => Error::Conflict { what, message },
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Error::Engine {
            what,
            status: status_code,
            message,
        },
        other => Error::Unavailable {
            what,
            message: other.to_string(),
        },
    }
}

/// A failed pull: the registry's answer as the engine relays it (in the stream, or as the
/// answer to the request), classified; an engine that does not answer stays `Unavailable`.
fn pull_error(image: &str, err: BollardError) -> Error {
    let (status, message) = match err {
        BollardError::DockerStreamError { error } => (None, error),
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => (Some(status_code), message),
        other => return classify(format!("pull image {image}"), other),
    };
    let failure = match PullFailure::classify(&message) {
        PullFailure::Other if status == Some(404) => PullFailure::NotFound,
        f => f,
    };
    Error::Pull {
        image: image.to_string(),
        failure,
        message,
    }
}

/// The engine's form of a registry's credentials.
fn credentials(auth: &RegistryAuth) -> DockerCredentials {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    DockerCredentials {
        username: some(&auth.username),
        password: some(&auth.password),
        identitytoken: some(&auth.identity_token),
        serveraddress: some(&auth.server),
        ..Default::default()
    }
}

fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut port_bindings = HashMap::new();
    for p in &spec.ports {
        port_bindings
            .entry(format!("{}/tcp", p.container_port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let binds = spec
        .binds
        .iter()
        .map(|b| {
            format!(
                "{}:{}{}",
                b.host_path,
                b.container_path,
                if b.read_only { ":ro" } else { "" }
            )
        })
        .collect::<Vec<_>>();
    let endpoint = EndpointSettings {
        ipam_config: spec.ipv4_address.clone().map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip),
            ..Default::default()
        }),
        ..Default::default()
    };
    ContainerCreateBody {
        hostname: Some(if spec.hostname.is_empty() {
            spec.name.clone()
        } else {
            spec.hostname.clone()
        }),
        image: Some(spec.image.clone()),
        labels: Some(spec.labels.clone().into_iter().collect()),
        env: Some(spec.env.clone()),
        cmd: spec.cmd.clone(),
        entrypoint: spec.entrypoint.clone(),
        tty: Some(spec.tty),
        exposed_ports: Some(port_bindings.keys().cloned().collect()),
        volumes: Some(spec.volumes.clone()),
        host_config: Some(HostConfig {
            privileged: Some(spec.privileged),
            cap_add: Some(spec.cap_add.clone()),
            device_cgroup_rules: Some(spec.device_cgroup_rules.clone()),
            masked_paths: spec.unmask_system_paths.then(Vec::new),
            readonly_paths: spec.unmask_system_paths.then(Vec::new),
            security_opt: Some(spec.security_opt.clone()),
            tmpfs: Some(spec.tmpfs.clone().into_iter().collect()),
            binds: Some(binds),
            port_bindings: Some(port_bindings),
            cgroupns_mode: Some(if spec.cgroupns_private {
                HostConfigCgroupnsModeEnum::PRIVATE
            } else {
                HostConfigCgroupnsModeEnum::HOST
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(if spec.restart_unless_stopped {
                    RestartPolicyNameEnum::UNLESS_STOPPED
                } else {
                    RestartPolicyNameEnum::NO
                }),
                maximum_retry_count: None,
            }),
            network_mode: Some(spec.network.clone()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(spec.network.clone(), endpoint)])),
        }),
        ..Default::default()
    }
}

fn container_from(inspect: ContainerInspectResponse) -> Container {
    let config = inspect.config.unwrap_or_default();
    let state = inspect.state.unwrap_or_default();
    let settings = inspect.network_settings.unwrap_or_default();
    let host = inspect.host_config.unwrap_or_default();
    let non_empty = |s: Option<String>| s.filter(|v| !v.is_empty());
    let networks = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .map(|(name, ep)| {
            (
                name,
                NetworkAddress {
                    ipv4: non_empty(ep.ip_address),
                    ipv6: non_empty(ep.global_ipv6_address),
                },
            )
        })
        .collect();
    let mut published: BTreeMap<u16, Vec<PublishedPort>> = BTreeMap::new();
    for (key, bindings) in settings.ports.unwrap_or_default() {
        let Some(port) = key.strip_suffix("/tcp").and_then(|p| p.parse().ok()) else {
            continue;
        };
        for b in bindings.unwrap_or_default() {
            if let Some(host_port) = b.host_port.and_then(|p| p.parse().ok()) {
                published.entry(port).or_default().push(PublishedPort {
                    host_ip: b.host_ip.unwrap_or_default(),
                    host_port,
                });
            }
        }
    }
    Container {
        id: inspect.id.unwrap_or_default(),
        name: inspect
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        // Docker counts a container waiting for its restart policy as running.
        running: state.running.unwrap_or(false) && !state.restarting.unwrap_or(false),
        started_at: state
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
            .filter(|t| t.timestamp() > 0),
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        exit_code: state.exit_code.unwrap_or_default(),
        restart_count: inspect.restart_count.unwrap_or_default(),
        error: state.error.unwrap_or_default(),
        networks,
        published,
        volume_names: inspect
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.name)
            .collect(),
        host: HostSettings {
            privileged: host.privileged.unwrap_or(false),
            cap_add: host.cap_add.unwrap_or_default(),
            security_opt: host.security_opt.unwrap_or_default(),
            tmpfs: host.tmpfs.unwrap_or_default().into_iter().collect(),
            binds: host.binds.unwrap_or_default(),
            cgroupns_mode: host
                .cgroupns_mode
                .map(|m| m.to_string())
                .unwrap_or_default(),
            restart_policy: host
                .restart_policy
                .and_then(|r| r.name)
                .map(|n| n.to_string())
                .unwrap_or_default(),
        },
    }
}

impl ContainerRuntime for Engine {
    async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| classify("ping", e))
    }

    async fn host(&self) -> Result<HostInfo> {
        let info = self.docker.info().await.map_err(|e| classify("info", e))?;
        Ok(HostInfo {
            cpus: info.ncpu.unwrap_or_default(),
            memory_bytes: info.mem_total.unwrap_or_default(),
            architecture: info.architecture.unwrap_or_default(),
            os_type: info.os_type.unwrap_or_default(),
        })
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) => match classify(format!("inspect image {image}"), e) {
                Error::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<()> {
        let reference = super::credentials::with_default_tag(image);
        let options = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut progress = self
            .docker
            .create_image(Some(options), None, auth.map(credentials));
        // The progress itself is not kept: the engine reports the end, or why not.
        while let Some(item) = progress.next().await {
            item.map_err(|e| pull_error(image, e))?;
        }
        Ok(())
    }

    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => {
                let config = inspect.config.unwrap_or_default();
                let mut command = config.entrypoint.unwrap_or_default();
                command.extend(config.cmd.unwrap_or_default());
                Ok(Some(command))
            }
            Err(e) => match classify(format!("inspect image {image}"), e) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn ensure_network(&self, name: &str) -> Result<Network> {
        let what = || format!("network {name}");
        let inspect = match self.docker.inspect_network(name, None).await {
            Ok(n) => n,
            Err(e) => match classify(what(), e) {
                Error::NotFound { .. } => {
                    self.create_network(name).await?;
                    self.settle_duplicates(name).await?;
                    self.docker
                        .inspect_network(name, None)
                        .await
                        .map_err(|e| classify(what(), e))?
                }
                Error::Engine { message, .. } if message.contains("ambiguous") => {
                    self.settle_duplicates(name).await?;
                    self.docker
                        .inspect_network(name, None)
                        .await
                        .map_err(|e| classify(what(), e))?
                }
                other => return Err(other),
            },
        };
        let subnets = inspect
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet)
            .collect();
        Ok(Network {
            id: inspect.id.unwrap_or_default(),
            name: inspect.name.unwrap_or_default(),
            subnets,
        })
    }

    async fn free_address(&self, network: &str) -> Result<Option<String>> {
        if self
            .addresses
            .lock()
            .is_ok_and(|a| a.dynamic_only.contains(network))
        {
            return Ok(None);
        }
        // The network and what holds addresses on it, side by side: two round trips to a
        // busy engine cost one. The containers are looked at for nothing only when the
        // network takes no fixed addresses, which is then remembered.
        let inspect = async {
            self.docker
                .inspect_network(network, None)
                .await
                .map_err(|e| classify(format!("network {network}"), e))
        };
        let (inspect, mut taken) = tokio::try_join!(inspect, self.addresses_on(network))?;
        let ours = inspect.labels.as_ref().is_some_and(|l| {
            l.get(labels::NETWORK_CREATED_BY).map(String::as_str)
                == Some(labels::CREATED_BY_CAPKIND)
        });
        let Some(ipv4) = inspect
            .ipam
            .and_then(|i| i.config)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.subnet.as_deref().and_then(Subnet::parse).is_some())
        else {
            return Ok(None);
        };
        // Docker shows a gateway for a subnet it chose itself (where it refuses fixed
        // addresses), none for one given by hand without a gateway (as ours are).
        if !ours && ipv4.gateway.is_some() {
            self.dynamic_only(network);
            return Ok(None);
        }
        let Ok(mut addresses) = self.addresses.lock() else {
            return Ok(None);
        };
        addresses
            .handed_out
            .retain(|_, at| at.elapsed() < HANDED_OUT_FOR);
        taken.extend(
            addresses
                .handed_out
                .keys()
                .filter(|(n, _)| n == network)
                .map(|(_, ip)| *ip),
        );
        let picked = address::pick(
            ipv4.subnet.as_deref().unwrap_or_default(),
            ipv4.ip_range.as_deref(),
            ipv4.gateway.as_deref(),
            &taken,
        );
        if let Some(ip) = picked {
            addresses
                .handed_out
                .insert((network.to_string(), ip), Instant::now());
        }
        Ok(picked.map(|ip| ip.to_string()))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
            .map_err(|e| classify(format!("create container {}", spec.name), e))?;
        Ok(created.id)
    }

    async fn start(&self, name: &str) -> Result<()> {
        let result = self
            .docker
            .start_container(name, None)
            .await
            .map_err(|e| classify(format!("start container {name}"), e));
        // A network that takes no fixed address after all: the next container there goes
        // without one.
        if let Err(Error::Engine { message, .. }) = &result
            && message.contains("user specified IP address is supported")
            && let Ok(Some(c)) = self.inspect(name).await
        {
            tracing::debug!(container = name, %message, "no fixed addresses on its network");
            for network in c.networks.keys() {
                self.dynamic_only(network);
            }
        }
        result
    }

    async fn inspect(&self, name: &str) -> Result<Option<Container>> {
        match self.docker.inspect_container(name, None).await {
            Ok(c) => Ok(Some(container_from(c))),
            Err(e) => match classify(format!("inspect container {name}"), e) {
                Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        let label_filters: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let found = self.list_all("label", label_filters).await?;
        Ok(found
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    async fn remove_network(&self, name: &str) -> Result<bool> {
        let what = || format!("network {name}");
        let network = match self.docker.inspect_network(name, None).await {
            Ok(n) => n,
            Err(e) => match classify(what(), e) {
                Error::NotFound { .. } => return Ok(false),
                other => return Err(other),
            },
        };
        let ours = network
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::NETWORK_CREATED_BY))
            .is_some_and(|v| v == labels::CREATED_BY_CAPKIND);
        let in_use = network.containers.as_ref().is_some_and(|c| !c.is_empty());
        if !ours || in_use {
            return Ok(false);
        }
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(true),
            Err(e) => match classify(what(), e) {
                // Gone already, or a container joined it meanwhile: not ours to remove now.
                Error::NotFound { .. } => Ok(false),
                Error::Engine { status: 403, .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    async fn remove(&self, name: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match classify(format!("remove container {name}"), e) {
                Error::NotFound { .. } => Ok(()),
                // A removal started earlier (by a manager that was stopped meanwhile) is still
                // under way in the engine: it is done when the container is gone.
                Error::Conflict { what, message } if message.contains("already in progress") => {
                    for _ in 0..100 {
                        if self.inspect(name).await?.is_none() {
                            return Ok(());
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(Error::Conflict { what, message })
                }
                other => Err(other),
            },
        }
    }

    async fn exec(&self, name: &str, cmd: &[&str], stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        let what = format!(
            "exec {:?} in {name}",
            cmd.first().copied().unwrap_or_default()
        );
        let input =
            stdin.map(|data| futures::stream::once(async { Ok(bytes::Bytes::from(data)) }).boxed());
        self.exec_attached(name, cmd, input, what).await
    }

    async fn pipe_image(&self, image: &str, container: &str, cmd: &[&str]) -> Result<ExecOutput> {
        let what = format!("load image {image} into {container}");
        let export = self
            .docker
            .export_image(image)
            .map(|chunk| chunk.map_err(|e| classify("export image", e)))
            .boxed();
        self.exec_attached(container, cmd, Some(export), what).await
    }

    async fn upload(&self, name: &str, path: &str, tar: Vec<u8>) -> Result<()> {
        let options = UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .upload_to_container(name, Some(options), bollard::body_full(tar.into()))
            .await
            .map_err(|e| classify(format!("upload to {name}:{path}"), e))
    }

    fn container_events(
        &self,
        labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<ContainerEvent>> {
        // Lifecycle changes only: the provider's own exec calls produce exec_* events, which
        // would otherwise trigger a reconcile after every reconcile.
        let actions = [
            "create", "start", "restart", "stop", "die", "kill", "oom", "pause", "unpause",
            "destroy", "rename",
        ];
        let mut filters = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            ("event".to_string(), actions.map(String::from).to_vec()),
        ]);
        if !labels.is_empty() {
            filters.insert(
                "label".to_string(),
                labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            );
        }
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        self.docker
            .events(Some(options))
            .map(|event| {
                let event = event.map_err(|e| classify("watch container events", e))?;
                let mut labels: BTreeMap<String, String> = event
                    .actor
                    .and_then(|a| a.attributes)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let name = labels.remove("name").unwrap_or_default();
                Ok(ContainerEvent {
                    action: event.action.unwrap_or_default(),
                    name,
                    labels,
                })
            })
            .boxed()
    }

    async fn logs_tail(&self, name: &str, lines: usize) -> Result<String> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut stream = self.docker.logs(name, Some(options));
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| classify(format!("logs of {name}"), e))?;
            text.extend_from_slice(chunk.as_ref());
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let options = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        self.docker
            .kill_container(name, Some(options))
            .await
            .map_err(|e| classify(format!("signal {signal} to {name}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::free_subnet;

    #[test]
    fn free_subnet_avoids_overlaps() {
        assert_eq!(free_subnet(&[]).as_deref(), Some("172.18.0.0/16"));
        let taken = [
            "172.17.0.0/16",
            "172.18.0.0/16",
            "172.19.5.0/24",
            "fc00::/64",
        ]
        .map(String::from);
        assert_eq!(free_subnet(&taken).as_deref(), Some("172.20.0.0/16"));
        assert_eq!(
            free_subnet(&["172.16.0.0/12".to_string()]).as_deref(),
            Some("10.89.0.0/16")
        );
        assert_eq!(free_subnet(&["0.0.0.0/0".to_string()]), None);
    }
}
