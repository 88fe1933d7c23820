//! The manager's command line, with the environment variables CAPI managers conventionally read.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

use crate::node::Privileges;

/// cluster-api-provider-kind: Cluster API infrastructure from Docker containers, as kind does.
#[derive(Parser, Debug, Clone)]
#[command(name = "capkind", version, about)]
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
    /// How many KindMachines are reconciled at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    pub kindmachine_concurrency: u16,
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
        Ok(())
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    capkind_api::duration::parse(s).map_err(|e| e.to_string())
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
        assert!(f.validate().is_ok());
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--sync-period", "soon"][..],
            &["--health-addr", "nowhere"],
            &["--kindmachine-concurrency", "0"],
            &["--node-privileges", "root"],
            &["--log-format", "xml"],
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
