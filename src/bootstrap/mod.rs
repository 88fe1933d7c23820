//! Bootstrap data (cloud-config or Ignition, from the bootstrap Secret) turned into a [`Plan`]:
//! files to write and commands to run inside a node container, in the data's own order.
//! Pure: the KindMachine controller executes plans. Files are grouped so that each run of
//! consecutive files is one archive upload instead of one exec per file.

pub mod cloudinit;
pub mod ignition;
pub mod kubeadm;

/// Where the contract says a successful bootstrap leaves its mark.
pub const SENTINEL: &str = "/run/cluster-api/bootstrap-success.complete";
/// Written before the first command, on the node's /var volume, so that neither a restarted
/// manager nor a restarted node container (whose /run is emptied) runs a bootstrap twice.
pub const STARTED_MARKER: &str = "/var/lib/capkind/bootstrap.started";

/// What to do inside the node, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
    /// Top-level sections of the data that were not understood and are skipped.
    pub ignored: Vec<String>,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Files written together.
    WriteFiles(Vec<File>),
    /// A command, run with exec.
    Run(Vec<String>),
}

/// A file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Absolute path.
    pub path: String,
    /// Decoded content.
    pub content: Vec<u8>,
    /// Permission bits, e.g. 0o644.
    pub mode: u32,
    /// `user[:group]` when not root.
    pub owner: Option<String>,
    /// Append to an existing file instead of replacing it.
    pub append: bool,
}

/// Bootstrap data that cannot be turned into a plan. Messages name the offending field but
/// never quote the data: it holds keys and tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The `format` key names no format we know.
    #[error("unknown bootstrap data format {0:?}; expected cloud-config or ignition")]
    UnknownFormat(String),
    /// The data is not valid YAML or JSON of the expected shape.
    #[error("bootstrap data is not valid {format}: {reason}")]
    Syntax {
        format: &'static str,
        reason: String,
    },
    /// A file entry is unusable.
    #[error("bootstrap file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Parses the bootstrap Secret's `value` according to its `format` (default cloud-config), with
/// the fix-ups a kubeadm node needs inside a container ([`kubeadm::adapt`]), for a node image
/// that runs in a cgroup namespace of its own (kind v0.20 and later, the local node image).
pub fn plan(format: Option<&str>, value: &[u8]) -> Result<Plan, Error> {
    plan_for(format, value, true)
}

/// [`plan`] for a node in a private cgroup namespace (`private_cgroupns`) or in the host's
/// (images of kind v0.19 and earlier, whose kubelet keeps its default cgroups, as CAPD runs
/// them).
pub fn plan_for(format: Option<&str>, value: &[u8], private_cgroupns: bool) -> Result<Plan, Error> {
    let mut plan = match format.unwrap_or("cloud-config") {
        "cloud-config" | "" => cloudinit::plan(value),
        "ignition" => ignition::plan(value),
        other => Err(Error::UnknownFormat(other.to_string())),
    }?;
    kubeadm::adapt(&mut plan, private_cgroupns);
    Ok(plan)
}

impl Plan {
    /// Adds a file, joining the previous step when that one writes files too.
    pub(crate) fn write(&mut self, file: File) {
        match self.steps.last_mut() {
            Some(Step::WriteFiles(files)) => files.push(file),
            _ => self.steps.push(Step::WriteFiles(vec![file])),
        }
    }

    /// Adds a command.
    pub(crate) fn run(&mut self, argv: Vec<String>) {
        self.steps.push(Step::Run(argv));
    }

    /// How many exec and upload calls executing the plan costs, for progress messages.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Parses permissions written as an octal string ("0644", "644") or a number.
pub(crate) fn parse_mode(path: &str, value: Option<&serde_yaml::Value>) -> Result<u32, Error> {
    let bad = |v: &dyn std::fmt::Debug| Error::File {
        path: path.to_string(),
        reason: format!("bad permissions {v:?}"),
    };
    match value {
        None => Ok(0o644),
        Some(serde_yaml::Value::String(s)) => {
            u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| bad(s))
        }
        // A plain number is the mode itself (Ignition writes 420 for 0644).
        Some(serde_yaml::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(n)),
        Some(other) => Err(bad(other)),
    }
}

/// One file as (path, content, mode, owner, append), for compact test expectations.
#[cfg(test)]
pub(crate) type FileSummary<'a> = (&'a str, &'a [u8], u32, Option<&'a str>, bool);

#[cfg(test)]
pub(crate) fn summary(files: &[File]) -> Vec<FileSummary<'_>> {
    files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.content.as_slice(),
                f.mode,
                f.owner.as_deref(),
                f.append,
            )
        })
        .collect()
}
