//! An in-memory [`ContainerRuntime`] for unit tests of reconciles: containers, networks and
//! images kept in a map, exec results scripted by what the command contains, every call
//! recorded, and the engine switchable to unavailable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;

use super::{
    Container, ContainerEvent, ContainerRuntime, ContainerSpec, Error, ExecOutput, HostInfo,
    Network, NetworkAddress, PullFailure, RegistryAuth, Result,
};

/// The fake engine; clones share their state.
#[derive(Clone, Default)]
pub struct Fake {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, Container>,
    networks: BTreeMap<String, Network>,
    images: BTreeMap<String, Vec<String>>,
    /// Images a pull brings (with their command), or the failure it meets.
    registry: BTreeMap<String, std::result::Result<Vec<String>, PullFailure>>,
    /// Holds pulls until it is opened (a `watch` of whether they may finish).
    pull_gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// (what the command contains, its output), first match wins.
    exec: Vec<(String, ExecOutput)>,
    calls: Vec<String>,
    unavailable: bool,
    /// Containers die as they start (a bad entry point, a host out of inotify instances).
    die_on_start: bool,
    next_address: u8,
    host: HostInfo,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `image` present, with `command` as its entry point.
    pub fn with_image(self, image: &str, command: &[&str]) -> Self {
        let command = command.iter().map(|s| s.to_string()).collect();
        self.state().images.insert(image.to_string(), command);
        self
    }

    /// From now on every container dies as it starts, as the restart policy then shows it:
    /// not running, restarted once, exit code 1.
    pub fn die_on_start(&self) {
        self.state().die_on_start = true;
    }

    /// Reports `host` as the engine's host.
    pub fn set_host(&self, host: HostInfo) {
        self.state().host = host;
    }

    /// Makes a pull of `image` succeed (bringing `command` as its entry point) or fail.
    pub fn in_registry(
        self,
        image: &str,
        outcome: std::result::Result<&[&str], PullFailure>,
    ) -> Self {
        let outcome = outcome.map(|c| c.iter().map(|s| s.to_string()).collect());
        self.state().registry.insert(image.to_string(), outcome);
        self
    }

    /// Holds every pull until the returned sender sends `true`.
    pub fn hold_pulls(&self) -> tokio::sync::watch::Sender<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.state().pull_gate = Some(rx);
        tx
    }

    /// Answers commands that contain `part` with `stdout` and exit code `code`.
    pub fn on_exec(&self, part: &str, code: i64, stdout: &str) {
        let out = ExecOutput {
            exit_code: code,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
        };
        self.state().exec.insert(0, (part.to_string(), out));
    }

    /// Makes every call fail as an unreachable engine does, or answer again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    /// The calls made so far (`create c-m`, `exec c-m`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// The container `name`, if any.
    pub fn container(&self, name: &str) -> Option<Container> {
        self.state().containers.get(name).cloned()
    }

    /// Changes the container `name` as `change` says (a crash, a stop by hand).
    pub fn change(&self, name: &str, change: impl FnOnce(&mut Container)) {
        if let Some(c) = self.state().containers.get_mut(name) {
            change(c);
        }
    }

    fn call(&self, what: String) -> Result<()> {
        let mut state = self.state();
        state.calls.push(what.clone());
        if state.unavailable {
            return Err(Error::Unavailable {
                what,
                message: "connection refused".into(),
            });
        }
        Ok(())
    }

    fn missing(what: &str, name: &str) -> Error {
        Error::NotFound {
            what: format!("{what} {name}"),
            message: "no such object".into(),
        }
    }
}

impl ContainerRuntime for Fake {
    async fn ping(&self) -> Result<()> {
        self.call("ping".into())
    }

    async fn host(&self) -> Result<HostInfo> {
        self.call("info".into())?;
        Ok(self.state().host.clone())
    }

    async fn image_exists(&self, image: &str) -> Result<bool> {
        self.call(format!("inspect_image {image}"))?;
        Ok(self.state().images.contains_key(image))
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<()> {
        let who = auth.map_or("", |a| a.username.as_str());
        self.call(format!("pull_image {image} {who}").trim_end().to_string())?;
        let gate = self.state().pull_gate.clone();
        if let Some(mut gate) = gate {
            let _ = gate.wait_for(|open| *open).await;
        }
        let mut state = self.state();
        match state.registry.get(image).cloned() {
            Some(Ok(command)) => {
                state.images.insert(image.to_string(), command);
                Ok(())
            }
            Some(Err(failure)) => Err(Error::Pull {
                image: image.to_string(),
                failure,
                message: "scripted failure".into(),
            }),
            None => Err(Error::Pull {
                image: image.to_string(),
                failure: PullFailure::NotFound,
                message: "manifest unknown".into(),
            }),
        }
    }

    async fn image_command(&self, image: &str) -> Result<Option<Vec<String>>> {
        self.call(format!("inspect_image {image}"))?;
        Ok(self.state().images.get(image).cloned())
    }

    async fn ensure_network(&self, name: &str) -> Result<Network> {
        self.call(format!("ensure_network {name}"))?;
        let mut state = self.state();
        let network = state
            .networks
            .entry(name.to_string())
            .or_insert_with(|| Network {
                id: format!("id-{name}"),
                name: name.to_string(),
                subnets: vec!["172.18.0.0/16".into()],
            });
        Ok(network.clone())
    }

    async fn remove_network(&self, name: &str) -> Result<bool> {
        self.call(format!("remove_network {name}"))?;
        Ok(self.state().networks.remove(name).is_some())
    }

    async fn free_address(&self, network: &str) -> Result<Option<String>> {
        self.call(format!("free_address {network}"))?;
        let mut state = self.state();
        state.next_address += 1;
        Ok(Some(format!("172.18.255.{}", 255 - state.next_address)))
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        self.call(format!("create {}", spec.name))?;
        let mut state = self.state();
        if state.containers.contains_key(&spec.name) {
            return Err(Error::Conflict {
                what: format!("create container {}", spec.name),
                message: "name in use".into(),
            });
        }
        let address = NetworkAddress {
            ipv4: spec.ipv4_address.clone(),
            ipv6: None,
        };
        let container = Container {
            id: format!("id-{}", spec.name),
            name: spec.name.clone(),
            image: spec.image.clone(),
            labels: spec.labels.clone(),
            state: "created".into(),
            networks: BTreeMap::from([(spec.network.clone(), address)]),
            ..Default::default()
        };
        state.containers.insert(spec.name.clone(), container);
        Ok(format!("id-{}", spec.name))
    }

    async fn start(&self, name: &str) -> Result<()> {
        self.call(format!("start {name}"))?;
        let mut state = self.state();
        let c = state
            .containers
            .get_mut(name)
            .ok_or_else(|| Self::missing("container", name))?;
        c.running = true;
        c.state = "running".into();
        c.started_at = Some(chrono::Utc::now());
        if state.die_on_start
            && let Some(c) = state.containers.get_mut(name)
        {
            c.running = false;
            c.state = "exited".into();
            c.exit_code = 1;
            c.restart_count = 1;
        }
        Ok(())
    }

    async fn inspect(&self, name: &str) -> Result<Option<Container>> {
        self.call(format!("inspect {name}"))?;
        Ok(self.state().containers.get(name).cloned())
    }

    async fn list(&self, labels: &[(&str, &str)]) -> Result<Vec<String>> {
        self.call("list".into())?;
        Ok(self
            .state()
            .containers
            .values()
            .filter(|c| {
                labels
                    .iter()
                    .all(|(k, v)| c.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|c| c.name.clone())
            .collect())
    }

    async fn remove(&self, name: &str) -> Result<()> {
        self.call(format!("remove {name}"))?;
        self.state().containers.remove(name);
        Ok(())
    }

    async fn exec(&self, name: &str, cmd: &[&str], _stdin: Option<Vec<u8>>) -> Result<ExecOutput> {
        self.call(format!("exec {name}"))?;
        let state = self.state();
        // As Docker: 404 for a container that is not there, 409 for one that does not run.
        if !state.containers.contains_key(name) {
            return Err(Self::missing("container", name));
        }
        if !state.containers.get(name).is_some_and(|c| c.running) {
            return Err(Error::Conflict {
                what: format!("exec in {name}"),
                message: "container is not running".into(),
            });
        }
        let line = cmd.join(" ");
        Ok(state
            .exec
            .iter()
            .find(|(part, _)| line.contains(part.as_str()))
            .map(|(_, out)| out.clone())
            .unwrap_or_default())
    }

    async fn pipe_image(&self, image: &str, container: &str, _cmd: &[&str]) -> Result<ExecOutput> {
        self.call(format!("pipe_image {image} {container}"))?;
        Ok(ExecOutput::default())
    }

    async fn upload(&self, name: &str, path: &str, _tar: Vec<u8>) -> Result<()> {
        self.call(format!("upload {name} {path}"))
    }

    fn container_events(
        &self,
        _labels: &[(&str, &str)],
    ) -> BoxStream<'static, Result<ContainerEvent>> {
        Box::pin(futures::stream::pending())
    }

    async fn logs_tail(&self, name: &str, _lines: usize) -> Result<String> {
        self.call(format!("logs {name}"))?;
        Ok(String::new())
    }

    async fn kill(&self, name: &str, signal: &str) -> Result<()> {
        self.call(format!("kill {signal} {name}"))
    }
}
