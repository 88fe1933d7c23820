//! A real workload cluster, as its user reaches it: the kubeconfig Cluster API's control plane
//! provider writes, a kube-rs client, and the locally built kubectl v1.20.2 for what a person
//! types (`kubectl logs`, `kubectl exec`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// A workload cluster reached through a kubeconfig file.
pub struct Workload {
    /// The kubeconfig file.
    pub kubeconfig: PathBuf,
    /// A client for it.
    pub client: Client,
}

impl Workload {
    /// Writes `kubeconfig` into `dir` and connects with it.
    pub async fn connect(dir: &Path, kubeconfig: &str) -> Self {
        let path = dir.join("workload.kubeconfig");
        std::fs::write(&path, kubeconfig).expect("write the workload kubeconfig");
        let parsed = Kubeconfig::from_yaml(kubeconfig).expect("kubeconfig");
        let mut config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig config");
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(15));
        Self {
            kubeconfig: path,
            client: Client::try_from(config).expect("client"),
        }
    }

    /// Runs kubectl against the cluster; (success, stdout and stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(crate::kubeadm::kubernetes_binary("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .expect("run kubectl");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Waits until the Nodes `names` all exist and are Ready; returns them.
    pub async fn nodes_ready(&self, names: &[String], timeout: Duration) -> Vec<Node> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        crate::wait::until("Nodes Ready", timeout, || async {
            let mut found = Vec::new();
            for name in names {
                let node = nodes
                    .get_opt(name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or(format!("Node {name} not registered"))?;
                if !is_ready(&node) {
                    return Err(format!("Node {name} not Ready"));
                }
                found.push(node);
            }
            Ok(found)
        })
        .await
    }

    /// Creates a Pod of `image` (never pulled) on Node `node` running `script` in sh.
    pub async fn pod(&self, name: &str, node: &str, image: &str, script: &str) {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "nodeSelector": {"kubernetes.io/hostname": node},
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                "command": ["/bin/sh", "-c", script]}],
            }
        }))
        .expect("pod");
        Api::<Pod>::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .expect("create Pod");
    }

    /// Waits until Pod `name` runs and has an IP; returns the Pod.
    pub async fn pod_running(&self, name: &str, timeout: Duration) -> Pod {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), "default");
        crate::wait::until(&format!("Pod {name} Running"), timeout, || async {
            let pod = pods.get(name).await.map_err(|e| e.to_string())?;
            let status = pod.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if status.phase.as_deref() == Some("Running") && ready && status.pod_ip.is_some() {
                Ok(pod)
            } else {
                Err(format!(
                    "{:?} {:?}",
                    status.phase, status.container_statuses
                ))
            }
        })
        .await
    }
}

/// Whether the Node's Ready condition is True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The host-wide kernel settings a kubelet would change if a node could write them.
pub const HOST_SYSCTLS: [&str; 3] = [
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];

/// The host's values of [`HOST_SYSCTLS`].
pub fn host_sysctls() -> Vec<(String, String)> {
    HOST_SYSCTLS
        .iter()
        .map(|k| {
            let value = std::fs::read_to_string(format!("/proc/sys/{k}")).expect("read sysctl");
            (k.replace('/', "."), value.trim().to_string())
        })
        .collect()
}
