//! What a kubeadm node needs to come up inside a container, applied to a plan before it runs,
//! for cloud-config (runcmd as strings and as lists) and Ignition alike. The same changes CAPD
//! makes (docs/kubeadm-in-containers.md says which setting lives here, which in the node image
//! and which in the cluster templates, and why):
//! - `kubeadm init|join` skips the preflight checks a container cannot pass;
//! - in the kubeadm configuration files, the node registration gets containerd's socket and the
//!   kubelet settings of a container node, each only where the data does not set it already;
//! - the init configuration gets a kube-proxy that leaves the host-wide conntrack table alone.

use serde_yaml::{Mapping, Value};

use super::{Plan, Step};

/// Preflight checks that cannot pass inside a container (kind and CAPD skip the same).
pub const IGNORED_PREFLIGHT_ERRORS: &str =
    "SystemVerification,Swap,FileContent--proc-sys-net-bridge-bridge-nf-call-iptables";

/// containerd's socket in kindest/node images and in the local node image.
pub const CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";

/// kubelet flags of a container node, as CAPD sets them: no image garbage collection or
/// eviction driven by the host's disk, which the node shares; swap allowed (the host's);
/// the kubelet's pods under /kubelet in every cgroup hierarchy (the node image creates it) and
/// containerd's cgroup for the runtime's stats.
pub const KUBELET_ARGS: &[(&str, &str)] = &[
    ("image-gc-high-threshold", "100"),
    (
        "eviction-hard",
        "nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%",
    ),
    ("fail-swap-on", "false"),
    ("cgroup-root", "/kubelet"),
    ("runtime-cgroups", "/system.slice/containerd.service"),
];

/// The files Cluster API's kubeadm bootstrap provider writes kubeadm's configuration to:
/// cloud-config's init and join files, and Ignition's.
const CONFIG_FILES: &[&str] = &[
    "/run/kubeadm/kubeadm.yaml",
    "/run/kubeadm/kubeadm-join-config.yaml",
    "/etc/kubeadm.yml",
];

/// The script Ignition's kubeadm unit runs.
const IGNITION_SCRIPT: &str = "/etc/kubeadm.sh";

/// The [`KUBELET_ARGS`] that only nodes in a private cgroup namespace get (kind v0.20's way;
/// CAPD leaves them out for older images).
const PRIVATE_CGROUPNS_ARGS: &[&str] = &["cgroup-root", "runtime-cgroups"];

/// Applies the container fix-ups to every kubeadm command and configuration in `plan`, for a
/// node in a cgroup namespace of its own or not (`private_cgroupns`).
pub fn adapt(plan: &mut Plan, private_cgroupns: bool) {
    for step in &mut plan.steps {
        match step {
            Step::WriteFiles(files) => {
                for f in files {
                    if CONFIG_FILES.contains(&f.path.as_str()) {
                        if let Some(fixed) = fix_config_for(&f.content, private_cgroupns) {
                            f.content = fixed;
                        }
                    } else if f.path == IGNITION_SCRIPT {
                        let text = String::from_utf8_lossy(&f.content);
                        let fixed: Vec<String> = text.split('\n').map(fix_command).collect();
                        f.content = fixed.join("\n").into_bytes();
                    }
                }
            }
            Step::Run(argv) => match argv.as_mut_slice() {
                [sh, c, line] if sh.ends_with("sh") && c == "-c" => *line = fix_command(line),
                _ => fix_argv(argv),
            },
        }
    }
}

/// A shell command line with `kubeadm init|join` skipping the preflight checks a container
/// cannot pass. pflag accumulates repeated `--ignore-preflight-errors`, so the data's own
/// flag, if any, still counts.
pub fn fix_command(line: &str) -> String {
    if line.contains(IGNORED_PREFLIGHT_ERRORS) {
        return line.to_string();
    }
    for verb in ["kubeadm init", "kubeadm join"] {
        if let Some(at) = line.find(verb) {
            let end = at + verb.len();
            let rest = &line[end..];
            // `kubeadm init phase ...` runs single phases; only whole runs have a preflight.
            if rest.starts_with(" phase") || !(rest.is_empty() || rest.starts_with(' ')) {
                continue;
            }
            return format!(
                "{} --ignore-preflight-errors={IGNORED_PREFLIGHT_ERRORS}{rest}",
                &line[..end]
            );
        }
    }
    line.to_string()
}

/// The list form of a command (`[kubeadm, init, --config, ...]`), fixed like [`fix_command`].
pub fn fix_argv(argv: &mut Vec<String>) {
    let is_kubeadm = argv
        .first()
        .is_some_and(|a| a == "kubeadm" || a.ends_with("/kubeadm"));
    let verb = argv.get(1).map(String::as_str);
    let whole_run = argv.get(2).is_none_or(|a| a != "phase");
    let done = argv.iter().any(|a| a.contains(IGNORED_PREFLIGHT_ERRORS));
    if is_kubeadm && matches!(verb, Some("init" | "join")) && whole_run && !done {
        argv.insert(
            2,
            format!("--ignore-preflight-errors={IGNORED_PREFLIGHT_ERRORS}"),
        );
    }
}

/// kubeadm's configuration (several YAML documents) with the node registration and kube-proxy
/// settings of a container node; `None` when it does not parse (kubeadm itself then says why).
pub fn fix_config(content: &[u8]) -> Option<Vec<u8>> {
    fix_config_for(content, true)
}

/// [`fix_config`] for a node in a private cgroup namespace or in the host's.
pub fn fix_config_for(content: &[u8], private_cgroupns: bool) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(content).ok()?;
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(doc).ok()?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    let kind = |d: &Value| d.get("kind").and_then(Value::as_str).map(str::to_string);
    let mut init = false;
    for doc in &mut docs {
        match kind(doc).as_deref() {
            Some("InitConfiguration") => {
                init = true;
                fix_registration(doc, private_cgroupns);
            }
            Some("JoinConfiguration") => fix_registration(doc, private_cgroupns),
            Some("KubeProxyConfiguration") => set_conntrack(doc),
            _ => {}
        }
    }
    let has_proxy = docs
        .iter()
        .any(|d| kind(d).as_deref() == Some("KubeProxyConfiguration"));
    if init && !has_proxy {
        let mut proxy: Value = serde_yaml::from_str(
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n",
        )
        .ok()?;
        set_conntrack(&mut proxy);
        docs.push(proxy);
    }
    let mut out = String::new();
    for doc in &docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(doc).ok()?);
    }
    Some(out.into_bytes())
}

/// Mutable access to `map[key]` as a mapping, created when missing; `None` when the key holds
/// something other than a mapping (left as the data has it).
fn mapping<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Mapping> {
    let map = value.as_mapping_mut()?;
    let entry = map
        .entry(Value::from(key))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if entry.is_null() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry.as_mapping_mut()
}

fn fix_registration(doc: &mut Value, private_cgroupns: bool) {
    let Some(registration) = mapping(doc, "nodeRegistration") else {
        return;
    };
    let socket = registration
        .entry(Value::from("criSocket"))
        .or_insert(Value::Null);
    if socket.as_str().is_none_or(str::is_empty) {
        *socket = Value::from(CRI_SOCKET);
    }
    let args = registration
        .entry(Value::from("kubeletExtraArgs"))
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if args.is_null() {
        *args = Value::Mapping(Mapping::new());
    }
    let wanted = KUBELET_ARGS
        .iter()
        .filter(|(name, _)| private_cgroupns || !PRIVATE_CGROUPNS_ARGS.contains(name));
    match args {
        // kubeadm v1beta2 and v1beta3: a map of flag to value.
        Value::Mapping(map) => {
            for (name, value) in wanted {
                map.entry(Value::from(*name))
                    .or_insert_with(|| Value::from(*value));
            }
        }
        // kubeadm v1beta4: a list of {name, value}.
        Value::Sequence(list) => {
            for (name, value) in wanted {
                let present = list
                    .iter()
                    .any(|a| a.get("name").and_then(Value::as_str) == Some(name));
                if !present {
                    let mut arg = Mapping::new();
                    arg.insert("name".into(), Value::from(*name));
                    arg.insert("value".into(), Value::from(*value));
                    list.push(Value::Mapping(arg));
                }
            }
        }
        _ => {}
    }
}

/// `conntrack.maxPerCore: 0`: kube-proxy then leaves `nf_conntrack_max`, a host-wide setting
/// a container cannot (and must not) change, as it is.
fn set_conntrack(doc: &mut Value) {
    if let Some(conntrack) = mapping(doc, "conntrack") {
        conntrack
            .entry(Value::from("maxPerCore"))
            .or_insert(Value::from(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IGNORE: &str = "--ignore-preflight-errors=SystemVerification,Swap,FileContent--proc-sys-net-bridge-bridge-nf-call-iptables";

    #[test]
    fn command_lines() {
        let cases = [
            (
                "kubeadm init --config /run/kubeadm/kubeadm.yaml && echo success > /run/cluster-api/bootstrap-success.complete",
                format!(
                    "kubeadm init {IGNORE} --config /run/kubeadm/kubeadm.yaml && echo success > /run/cluster-api/bootstrap-success.complete"
                ),
            ),
            (
                "kubeadm join --config /run/kubeadm/kubeadm-join-config.yaml",
                format!("kubeadm join {IGNORE} --config /run/kubeadm/kubeadm-join-config.yaml"),
            ),
            ("kubeadm init", format!("kubeadm init {IGNORE}")),
            (
                "kubeadm init phase upload-config all",
                "kubeadm init phase upload-config all".into(),
            ),
            ("kubeadm initx", "kubeadm initx".into()),
            ("echo kubeadm", "echo kubeadm".into()),
            (
                "kubeadm join --ignore-preflight-errors=ImagePull x",
                format!("kubeadm join {IGNORE} --ignore-preflight-errors=ImagePull x"),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(fix_command(line), expected, "{line}");
            assert_eq!(fix_command(&expected), expected, "not idempotent: {line}");
        }
    }

    #[test]
    fn command_lists() {
        let mut argv: Vec<String> = ["kubeadm", "join", "--config", "/run/k.yaml"]
            .map(String::from)
            .to_vec();
        fix_argv(&mut argv);
        assert_eq!(argv, ["kubeadm", "join", IGNORE, "--config", "/run/k.yaml"]);
        fix_argv(&mut argv);
        assert_eq!(argv.len(), 5, "applied twice");
        let mut phase: Vec<String> = ["/usr/bin/kubeadm", "init", "phase", "preflight"]
            .map(String::from)
            .to_vec();
        fix_argv(&mut phase);
        assert_eq!(phase.len(), 4);
        let mut other: Vec<String> = ["echo", "init"].map(String::from).to_vec();
        fix_argv(&mut other);
        assert_eq!(other, ["echo", "init"]);
    }

    fn parse(bytes: &[u8]) -> Vec<Value> {
        serde_yaml::Deserializer::from_slice(bytes)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
            .collect()
    }

    #[test]
    fn init_configuration_gets_node_and_proxy_settings_the_data_lacks() {
        let data = b"---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: ClusterConfiguration\ncontrolPlaneEndpoint: 10.0.0.2:6443\n\
---\napiVersion: kubeadm.k8s.io/v1beta2\nkind: InitConfiguration\nnodeRegistration:\n  name: n1\n  kubeletExtraArgs:\n    eviction-hard: memory.available<1%\n";
        let docs = parse(&fix_config(data).expect("fixed"));
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0]["controlPlaneEndpoint"], "10.0.0.2:6443");
        let reg = &docs[1]["nodeRegistration"];
        assert_eq!(reg["name"], "n1");
        assert_eq!(reg["criSocket"], CRI_SOCKET);
        let args = &reg["kubeletExtraArgs"];
        assert_eq!(
            args["eviction-hard"], "memory.available<1%",
            "the data's own value wins"
        );
        assert_eq!(args["cgroup-root"], "/kubelet");
        assert_eq!(args["fail-swap-on"], "false");
        assert_eq!(args["image-gc-high-threshold"], "100");
        assert_eq!(args["runtime-cgroups"], "/system.slice/containerd.service");
        assert_eq!(docs[2]["kind"], "KubeProxyConfiguration");
        assert_eq!(docs[2]["conntrack"]["maxPerCore"], 0);
        let again = fix_config(&fix_config(data).expect("fixed")).expect("fixed");
        assert_eq!(parse(&again), docs, "applying twice changes nothing");
    }

    #[test]
    fn nodes_in_the_hosts_cgroup_namespace_keep_the_kubelets_cgroups() {
        let data =
            b"apiVersion: kubeadm.k8s.io/v1beta3\nkind: JoinConfiguration\nnodeRegistration: {}\n";
        let docs = parse(&fix_config_for(data, false).expect("fixed"));
        let args = docs[0]["nodeRegistration"]["kubeletExtraArgs"]
            .as_mapping()
            .expect("map");
        let names: Vec<&str> = args.keys().filter_map(Value::as_str).collect();
        assert_eq!(
            names,
            ["image-gc-high-threshold", "eviction-hard", "fail-swap-on"]
        );
    }

    #[test]
    fn join_configuration_v1beta4_list_args_and_own_socket() {
        let data = b"apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\nnodeRegistration:\n  criSocket: unix:///run/other.sock\n  kubeletExtraArgs:\n  - name: cgroup-root\n    value: /mine\n";
        let docs = parse(&fix_config(data).expect("fixed"));
        assert_eq!(docs.len(), 1, "joins get no kube-proxy configuration");
        let reg = &docs[0]["nodeRegistration"];
        assert_eq!(reg["criSocket"], "unix:///run/other.sock");
        let args = reg["kubeletExtraArgs"].as_sequence().expect("list");
        assert_eq!(args.len(), KUBELET_ARGS.len());
        assert_eq!(args[0]["name"], "cgroup-root");
        assert_eq!(args[0]["value"], "/mine");
    }

    #[test]
    fn an_existing_kube_proxy_configuration_keeps_its_settings() {
        let data = b"kind: InitConfiguration\n---\nkind: KubeProxyConfiguration\nmode: ipvs\nconntrack:\n  maxPerCore: 5\n";
        let docs = parse(&fix_config(data).expect("fixed"));
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["mode"], "ipvs");
        assert_eq!(docs[1]["conntrack"]["maxPerCore"], 5);
    }

    #[test]
    fn unparsable_configuration_is_left_alone() {
        assert_eq!(fix_config(b"kind: [unclosed"), None);
    }

    #[test]
    fn plans_of_both_formats_are_adapted() {
        let cloud = b"write_files:\n- path: /run/kubeadm/kubeadm-join-config.yaml\n  content: |\n    kind: JoinConfiguration\nruncmd:\n- [kubeadm, join, --config, /run/kubeadm/kubeadm-join-config.yaml]\n- kubeadm join --config /x\n";
        let plan = super::super::plan(Some("cloud-config"), cloud).expect("plan");
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!("{:?}", plan.steps)
        };
        let docs = parse(&files[0].content);
        assert_eq!(docs[0]["nodeRegistration"]["criSocket"], CRI_SOCKET);
        assert!(matches!(&plan.steps[1], Step::Run(a) if a[2] == IGNORE));
        assert!(matches!(&plan.steps[2], Step::Run(a) if a[2].contains(IGNORE)));

        let ignition = br#"{"ignition": {"version": "3.3.0"}, "storage": {"files": [
            {"path": "/etc/kubeadm.sh", "mode": 448, "contents": {"source": "data:,%23!%2Fbin%2Fbash%0Akubeadm%20init%20--config%20%2Fetc%2Fkubeadm.yml%0A"}},
            {"path": "/etc/kubeadm.yml", "contents": {"source": "data:,kind%3A%20InitConfiguration%0A"}}]}}"#;
        let plan = super::super::plan(Some("ignition"), ignition).expect("plan");
        let Step::WriteFiles(files) = &plan.steps[0] else {
            panic!()
        };
        assert_eq!(
            String::from_utf8_lossy(&files[0].content),
            format!("#!/bin/bash\nkubeadm init {IGNORE} --config /etc/kubeadm.yml\n")
        );
        let docs = parse(&files[1].content);
        assert_eq!(docs[1]["kind"], "KubeProxyConfiguration");
    }
}
