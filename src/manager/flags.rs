//! The manager's command line, with the environment variables CAPI managers conventionally read.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::node::Privileges;
use crate::webhook::CertFiles;

/// cluster-api-provider-kind: Cluster API infrastructure from Docker containers, as kind does.
// A flag given twice takes its last value, as with Go's flag package: a wrapper can pass
// defaults (say --webhook-port=0) that the arguments after them override.
#[derive(Parser, Debug, Clone)]
#[command(name = "capkind", version, about, args_override_self = true)]
pub struct Flags {
    /// Watch only this namespace (all namespaces when empty).
    #[arg(long, env = "CAPKIND_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Reconcile only objects whose label cluster.x-k8s.io/watch-filter has this value.
    #[arg(long, env = "CAPKIND_WATCH_FILTER", default_value = "")]
    pub watch_filter: String,
    /// Run only while holding the leader-election Lease.
    #[arg(long, env = "CAPKIND_LEADER_ELECT")]
    pub leader_elect: bool,
    /// How long a Lease stays valid without renewal.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub leader_elect_retry_period: Duration,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "controller-leader-election-capkind")]
    pub leader_election_id: String,
    /// Namespace of the Lease (default: the pod's namespace, else default).
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub leader_election_namespace: String,
    /// Address of /healthz and /readyz, e.g. :9440.
    #[arg(long, default_value = ":9440", value_parser = address)]
    pub health_addr: SocketAddr,
    /// Address of /metrics, e.g. :8080.
    #[arg(long, default_value = ":8080", value_parser = address)]
    pub metrics_addr: SocketAddr,
    /// How many KindClusters are reconciled at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub kindcluster_concurrency: u16,
    /// How many KindMachines are reconciled at once. A reconcile that creates a node holds its
    /// worker through Docker's create and start (seconds each when many nodes boot), so fewer
    /// workers than machines being created queues the rest behind them.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub kindmachine_concurrency: u16,
    /// How many node containers Docker creates or starts at once; 0: no limit beyond
    /// `--kindmachine-concurrency` (every machine being reconciled makes its node at once).
    /// The rest wait their turn without holding anything.
    #[arg(long, default_value_t = 0)]
    pub node_start_concurrency: u16,
    /// How many KindMachinePools are reconciled at once (each reconcile only lists, creates
    /// and deletes objects; the instances' containers are the KindMachine workers' job).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub kindmachinepool_concurrency: u16,
    /// How often healthy objects are looked at again without a change, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = duration)]
    pub sync_period: Duration,
    /// Average requests per second to the API server.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_qps: u32,
    /// Requests allowed in a burst to the API server.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_api_burst: u32,
    /// The Docker engine (unix:///var/run/docker.sock, tcp://...); DOCKER_HOST when empty.
    #[arg(long, env = "DOCKER_HOST", default_value = "")]
    pub docker_host: String,
    /// The Docker CLI configuration (config.json) whose registry credentials pull missing
    /// images, read as the Docker CLI reads it (auths, credsStore, credHelpers); default
    /// $DOCKER_CONFIG/config.json, else ~/.docker/config.json. A missing file: anonymous pulls.
    #[arg(long, env = "CAPKIND_DOCKER_CONFIG", default_value = "")]
    pub docker_config: String,
    /// The Docker network of KindClusters that name none.
    #[arg(long, env = "CAPKIND_DOCKER_NETWORK", default_value = "kind")]
    pub docker_network: String,
    /// How node containers get their rights: privileged (as kind and CAPD) or capabilities
    /// (for engines that refuse --privileged; see docs/docker-engine.md).
    #[arg(long, env = "CAPKIND_NODE_PRIVILEGES", value_enum, default_value_t = Privileges::Privileged)]
    pub node_privileges: Privileges,
    /// Log format.
    #[arg(long, env = "CAPKIND_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More detail in the logs: -v debug, -vv trace (capkind's own logs), -vvv everything.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbosity: u8,
    /// How long in-flight reconciles may take to finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// Port of the webhook server (conversion, defaulting, validation); 0 turns it off.
    #[arg(long, default_value_t = 9443)]
    pub webhook_port: u16,
    /// IP address the webhook server listens on; all addresses when empty.
    #[arg(long, default_value = "", value_parser = host)]
    pub webhook_host: IpAddr,
    /// Directory of the webhook server's certificate and key (the mounted Secret).
    #[arg(long, default_value = "/tmp/k8s-webhook-server/serving-certs")]
    pub webhook_cert_dir: PathBuf,
    /// File name of the webhook server's certificate in --webhook-cert-dir.
    #[arg(long, default_value = "tls.crt")]
    pub webhook_cert_name: String,
    /// File name of the webhook server's private key in --webhook-cert-dir.
    #[arg(long, default_value = "tls.key")]
    pub webhook_key_name: String,
}

/// Log output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Flags {
    /// Checks what one flag alone cannot say.
    pub fn validate(&self) -> Result<(), String> {
        if self.leader_elect_renew_deadline >= self.leader_elect_lease_duration {
            return Err(
                "--leader-elect-renew-deadline must be shorter than --leader-elect-lease-duration"
                    .into(),
            );
        }
        if self.leader_elect_retry_period >= self.leader_elect_renew_deadline {
            return Err(
                "--leader-elect-retry-period must be shorter than --leader-elect-renew-deadline"
                    .into(),
            );
        }
        if self.docker_network.is_empty() {
            return Err("--docker-network must not be empty".into());
        }
        self.check_webhook_files()
    }

    /// The Docker CLI configuration to read registry credentials from.
    pub fn docker_config_path(&self) -> Option<PathBuf> {
        match self.docker_config.as_str() {
            "" => crate::docker::credentials::default_path(),
            path => Some(PathBuf::from(path)),
        }
    }

    /// The webhook server's certificate and key, when it runs (--webhook-port not 0).
    pub fn webhook_files(&self) -> Option<CertFiles> {
        (self.webhook_port != 0).then(|| CertFiles {
            cert: self.webhook_cert_dir.join(&self.webhook_cert_name),
            key: self.webhook_cert_dir.join(&self.webhook_key_name),
        })
    }

    /// The webhook server's address, when it runs.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        (self.webhook_port != 0).then(|| SocketAddr::new(self.webhook_host, self.webhook_port))
    }

    /// Without its certificate the webhook server cannot start: say so at once, and how to fix it.
    fn check_webhook_files(&self) -> Result<(), String> {
        let Some(files) = self.webhook_files() else {
            return Ok(());
        };
        for (what, path) in [("certificate", &files.cert), ("key", &files.key)] {
            if let Err(e) = std::fs::read(path) {
                return Err(format!(
                    "cannot read the webhook {what} {}: {e}; point --webhook-cert-dir (with \
                     --webhook-cert-name and --webhook-key-name) at the serving certificate, or \
                     set --webhook-port=0 to run without webhooks",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    capkind_api::duration::parse(s).map_err(|e| e.to_string())
}

/// An IP address; empty for all addresses (IPv4; Linux's IPv6 `::` takes IPv4 too).
fn host(s: &str) -> Result<IpAddr, String> {
    if s.is_empty() {
        return Ok(IpAddr::from([0, 0, 0, 0]));
    }
    s.parse().map_err(|_| {
        format!("invalid address {s:?}: expected an IP address such as 127.0.0.1 or ::")
    })
}

/// `:8080` (all interfaces), `127.0.0.1:8080` or `[::1]:8080`.
fn address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("invalid address {s:?}: expected host:port or :port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("capkind").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_follow_cluster_api() {
        let f = parse(&[]).expect("defaults");
        assert_eq!(f.health_addr, "0.0.0.0:9440".parse().expect("addr"));
        assert_eq!(f.metrics_addr, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!((f.kube_api_qps, f.kube_api_burst), (100, 200));
        assert_eq!(f.leader_elect_lease_duration, Duration::from_secs(15));
        assert_eq!(f.sync_period, Duration::from_secs(600));
        assert_eq!(
            f.webhook_addr(),
            Some("0.0.0.0:9443".parse().expect("addr"))
        );
        assert_eq!(
            f.webhook_files(),
            Some(CertFiles {
                cert: "/tmp/k8s-webhook-server/serving-certs/tls.crt".into(),
                key: "/tmp/k8s-webhook-server/serving-certs/tls.key".into(),
            })
        );
        let without_webhooks = parse(&["--webhook-port=0"]).expect("parses");
        assert_eq!(without_webhooks.webhook_addr(), None);
        assert!(without_webhooks.validate().is_ok());
    }

    #[test]
    fn the_last_value_of_a_flag_wins() {
        let f = parse(&["--webhook-port=0", "--webhook-port", "9444", "-v", "-v"]).expect("parses");
        assert_eq!((f.webhook_port, f.verbosity), (9444, 2));
    }

    #[test]
    fn the_webhook_certificate_must_be_readable_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let dir_arg = format!("--webhook-cert-dir={}", dir.path().display());
        let f = parse(&[&dir_arg, "--webhook-host=127.0.0.1"]).expect("parses");
        assert_eq!(
            f.validate().expect_err("refused"),
            format!(
                "cannot read the webhook certificate {}/tls.crt: No such file or directory (os error 2); \
                 point --webhook-cert-dir (with --webhook-cert-name and --webhook-key-name) at the \
                 serving certificate, or set --webhook-port=0 to run without webhooks",
                dir.path().display()
            )
        );
        std::fs::write(dir.path().join("tls.crt"), "pem").expect("write");
        let error = f.validate().expect_err("refused");
        assert!(
            error.starts_with(&format!(
                "cannot read the webhook key {}/tls.key: ",
                dir.path().display()
            )),
            "{error}"
        );
        std::fs::write(dir.path().join("tls.key"), "pem").expect("write");
        assert!(f.validate().is_ok());
        assert_eq!(
            f.webhook_addr(),
            Some("127.0.0.1:9443".parse().expect("addr"))
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--sync-period", "soon"][..],
            &["--health-addr", "nowhere"],
            &["--kindmachine-concurrency", "0"],
            &["--node-privileges", "root"],
            &["--log-format", "xml"],
            &["--webhook-port", "65536"],
            &["--webhook-host", "localhost:9443"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
        let f = parse(&["--leader-elect-renew-deadline", "20s"]).expect("parses");
        assert!(
            f.validate()
                .expect_err("refused")
                .contains("--leader-elect-renew-deadline")
        );
    }
}
