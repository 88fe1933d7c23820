//! The cluster's load balancer: an haproxy container in front of the control-plane nodes.
//!
//! `config` renders the configuration (pure). This module describes the container and writes a
//! configuration into it: checked by haproxy first, read back and compared (a short write must
//! not be taken for a good one), and reloaded with SIGHUP only when the content changed.

pub mod config;

use std::collections::BTreeMap;

use crate::docker::{self, ContainerRuntime, ContainerSpec, PortMapping, labels};

/// The port clients use: the control-plane endpoint's port, 6443 by default.
pub fn frontend_port(kc: &capkind_api::v1beta2::KindCluster) -> u16 {
    let port = kc
        .spec
        .control_plane_endpoint
        .as_ref()
        .map_or(capkind_api::v1beta2::DEFAULT_API_SERVER_PORT, |e| e.port());
    u16::try_from(port).unwrap_or(6443)
}

/// The load balancer's container name for a cluster, as kind and CAPD name it.
pub fn container_name(cluster: &str) -> String {
    format!("{cluster}-lb")
}

/// The load-balancer container: haproxy in master-worker mode (so SIGHUP reloads), on the
/// cluster's network, its frontend and statistics ports published on the host's loopback.
pub fn container_spec(
    cluster: &str,
    image: &str,
    network: &str,
    frontend_port: u16,
    ipv4_address: Option<String>,
    owner: &labels::Owner,
) -> ContainerSpec {
    let mut all_labels = BTreeMap::from([
        (labels::CLUSTER.to_string(), cluster.to_string()),
        (
            labels::ROLE.to_string(),
            labels::ROLE_LOAD_BALANCER.to_string(),
        ),
    ]);
    all_labels.extend(owner.labels());
    let name = container_name(cluster);
    ContainerSpec {
        hostname: name.clone(),
        name,
        image: image.to_string(),
        labels: all_labels,
        cmd: Some(
            ["haproxy", "-W", "-db", "-f", config::CONFIG_PATH]
                .map(String::from)
                .to_vec(),
        ),
        network: network.to_string(),
        ipv4_address,
        restart_unless_stopped: true,
        ports: [frontend_port, config::STATS_PORT]
            .into_iter()
            .map(|port| PortMapping {
                container_port: port,
                host_ip: "127.0.0.1".into(),
                host_port: 0,
            })
            .collect(),
        ..Default::default()
    }
}

/// The cluster's API servers as haproxy backends: its running control-plane containers with
/// their address on `network`, at weight 100, or 0 for the `draining` ones.
pub async fn backends<D: ContainerRuntime>(
    docker: &D,
    cluster: &str,
    network: &str,
    draining: &[String],
) -> Result<Vec<config::Backend>, docker::Error> {
    let mut backends = Vec::new();
    for name in docker
        .list(&[
            (labels::CLUSTER, cluster),
            (labels::ROLE, labels::ROLE_CONTROL_PLANE),
        ])
        .await?
    {
        let Some(c) = docker.inspect(&name).await? else {
            continue;
        };
        let Some(address) = c
            .networks
            .get(network)
            .and_then(|n| n.ipv4.clone())
            .filter(|_| c.running)
        else {
            continue;
        };
        let weight = if draining.contains(&name) { 0 } else { 100 };
        backends.push(config::Backend {
            name,
            address,
            weight,
        });
    }
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(backends)
}

/// Why a configuration could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Talking to Docker failed.
    #[error(transparent)]
    Docker(#[from] docker::Error),
    /// haproxy refused the rendered configuration.
    #[error("haproxy refused the configuration: {0}")]
    Invalid(String),
    /// The configuration could not be packed for upload.
    #[error("packing the configuration: {0}")]
    Archive(#[from] std::io::Error),
    /// The file read back differs from what was written.
    #[error("the configuration read back from {container} differs from what was written")]
    ReadBack { container: String },
    /// The container stopped (a restart) or was removed (its KindCluster is being deleted)
    /// while its configuration was being written; it is written again when the container
    /// starts or is created again.
    #[error("the load balancer {container} stopped or went while its configuration was written")]
    NotRunning { container: String },
}

/// A Docker refusal because the container does not run (stopped, restarting, removed) as
/// [`Error::NotRunning`]; other errors as they are.
fn not_running(container: &str) -> impl Fn(docker::Error) -> Error + '_ {
    // Docker answers 409 for a container that is stopped, 500 for one that exited a moment ago,
    // 404 for one removed meanwhile.
    move |e| match e {
        docker::Error::NotFound { .. } => Error::NotRunning {
            container: container.to_string(),
        },
        docker::Error::Conflict { ref message, .. } | docker::Error::Engine { ref message, .. }
            if message.contains("is not running") || message.contains("is restarting") =>
        {
            Error::NotRunning {
                container: container.to_string(),
            }
        }
        other => Error::Docker(other),
    }
}

/// Puts `config` in place in the load balancer `container` and reloads haproxy. Returns whether
/// anything changed; a configuration already in place and loaded is neither written nor
/// reloaded. After each reload a copy of the loaded configuration is kept beside it, so that a
/// manager stopped between writing the file and reloading haproxy reloads it next time instead
/// of finding the file up to date and leaving haproxy on the old configuration.
///
/// Both controllers write here, for the same container, at the same time: writes to one load
/// balancer are taken one at a time in this process, and each stages its file under a name of
/// its own, so that no writer (not even another manager process) moves or checks another's.
pub async fn write_config<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    config: &str,
) -> Result<bool, Error> {
    let lock = writer_lock(container);
    let _one_at_a_time = lock.lock().await;
    let began = chrono::Utc::now();
    let stopped = not_running(container);
    let (current, loaded) = read_config(docker, container).await.map_err(&stopped)?;
    if current.as_deref() == Some(config) && loaded.as_deref() == Some(config) {
        return Ok(false);
    }
    if current.as_deref() != Some(config) {
        let staged = staging_path();
        docker
            .upload(container, "/", tar_file(&staged[1..], config.as_bytes())?)
            .await
            .map_err(&stopped)?;
        let script = format!(
            "haproxy -c -q -f {staged} && mv {staged} {} || {{ rc=$?; rm -f {staged}; exit $rc; }}",
            config::CONFIG_PATH
        );
        let checked = docker
            .exec(container, &["sh", "-c", &script], None)
            .await
            .map_err(&stopped)?;
        if checked.exit_code != 0 {
            let mut message = String::from_utf8_lossy(&checked.stderr).trim().to_string();
            if message.is_empty() {
                message = String::from_utf8_lossy(&checked.stdout).trim().to_string();
            }
            // A check cut short by a restart is not haproxy's verdict: haproxy says why it
            // refuses, and exits with 1 or 2, not as a killed process (128 + signal).
            let cut_short = checked.exit_code >= 128
                || message.is_empty()
                || message.contains("OCI runtime exec failed");
            if cut_short || restarted_since(docker, container, began).await? {
                return Err(Error::NotRunning {
                    container: container.to_string(),
                });
            }
            return Err(Error::Invalid(message));
        }
        let back = read_config(docker, container).await.map_err(&stopped)?.0;
        if back.as_deref() != Some(config) {
            // A restart between the write and the read (the read killed with the container, or
            // run in one that has just started again) is not a short write: the start brings
            // the next write. A file just moved in place that cannot be read is such a case.
            if back.is_none() || restarted_since(docker, container, began).await? {
                return Err(Error::NotRunning {
                    container: container.to_string(),
                });
            }
            return Err(Error::ReadBack {
                container: container.to_string(),
            });
        }
    }
    docker.kill(container, "HUP").await.map_err(&stopped)?;
    let keep = format!("cp {0} {0}.loaded", config::CONFIG_PATH);
    docker
        .exec(container, &["sh", "-c", &keep], None)
        .await
        .map_err(&stopped)?;
    Ok(true)
}

/// Whether `container` is gone, stopped, or started again since `began` (with a second's
/// margin for the daemon's clock): then a command of the write may have been cut short.
async fn restarted_since<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    began: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    Ok(docker.inspect(container).await?.is_none_or(|c| {
        !c.running
            || c.started_at
                .is_some_and(|at| at + chrono::Duration::seconds(1) >= began)
    }))
}

/// The lock that orders this process's writes to the load balancer `container`.
fn writer_lock(container: &str) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::LazyLock<
        std::sync::Mutex<BTreeMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks.entry(container.to_string()).or_default().clone()
}

/// A staging file name no other write uses: this process's id and a counter.
fn staging_path() -> String {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.new.{}.{n}", config::CONFIG_PATH, std::process::id())
}

/// The configuration file, and the copy of the one haproxy last loaded (when known), in one
/// exec.
async fn read_config<D: ContainerRuntime>(
    docker: &D,
    container: &str,
) -> Result<(Option<String>, Option<String>), docker::Error> {
    let script = format!(
        "cat {0} || exit 1; printf '\\000'; cat {0}.loaded 2>/dev/null; true",
        config::CONFIG_PATH
    );
    let out = docker.exec(container, &["sh", "-c", &script], None).await?;
    if out.exit_code != 0 {
        return Ok((None, None));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(match text.split_once('\0') {
        Some((current, loaded)) => (
            Some(current.to_string()),
            (!loaded.is_empty()).then(|| loaded.to_string()),
        ),
        None => (Some(text.into_owned()), None),
    })
}

/// A tar archive holding one file (mode 0644, owned by root).
pub fn tar_file(path: &str, content: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append_data(&mut header, path, content)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::fake::Fake;

    #[tokio::test]
    async fn a_load_balancer_removed_meanwhile_is_not_an_error_of_the_writer() {
        // The KindCluster's deletion removed it while a machine's reconcile wrote backends;
        // the writer skips it (a new one is configured when it is created).
        let docker = Fake::default();
        let err = write_config(&docker, "c-lb", "global\n")
            .await
            .expect_err("no container");
        assert!(
            matches!(err, Error::NotRunning { ref container } if container == "c-lb"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_read_back_lost_to_a_restart_is_not_a_short_write() {
        // The fake's exec answers every command with nothing: the file read back is empty.
        let docker = Fake::default();
        let owner = labels::Owner {
            kind: "KindCluster".into(),
            namespace: "ns".into(),
            name: "c".into(),
            uid: "u".into(),
        };
        let spec = container_spec("c", "haproxy:test", "net", 6443, None, &owner);
        docker.create(&spec).await.expect("create");
        docker.start("c-lb").await.expect("start");
        // Up since long before the write: the read-back really differs.
        docker.change("c-lb", |c| {
            c.started_at = Some(chrono::Utc::now() - chrono::Duration::hours(1));
        });
        let err = write_config(&docker, "c-lb", "global\n")
            .await
            .expect_err("short write");
        assert!(matches!(err, Error::ReadBack { .. }), "{err:?}");
        // Started again while the configuration was written: the start brings the next write.
        docker.change("c-lb", |c| c.started_at = Some(chrono::Utc::now()));
        let err = write_config(&docker, "c-lb", "global\n")
            .await
            .expect_err("restarted");
        assert!(matches!(err, Error::NotRunning { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn haproxy_refusing_is_told_and_a_killed_check_is_not() {
        let docker = Fake::default();
        let owner = labels::Owner {
            kind: "KindCluster".into(),
            namespace: "ns".into(),
            name: "c".into(),
            uid: "u".into(),
        };
        let spec = container_spec("c", "haproxy:test", "net", 6443, None, &owner);
        docker.create(&spec).await.expect("create");
        docker.start("c-lb").await.expect("start");
        docker.change("c-lb", |c| {
            c.started_at = Some(chrono::Utc::now() - chrono::Duration::hours(1));
        });
        docker.on_exec("haproxy -c", 1, "[ALERT] parsing: unknown keyword 'bogus'");
        let err = write_config(&docker, "c-lb", "bogus\n")
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::Invalid(ref m) if m.contains("unknown keyword 'bogus'")),
            "{err:?}"
        );
        // Killed with its container (SIGTERM from a docker restart), the check said nothing.
        docker.on_exec("haproxy -c", 143, "");
        let err = write_config(&docker, "c-lb", "global\n")
            .await
            .expect_err("cut short");
        assert!(matches!(err, Error::NotRunning { .. }), "{err:?}");
    }
}
