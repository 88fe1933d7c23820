//! Runs bootstrap plans inside node containers, in the background so that a long kubeadm run
//! never holds a reconcile worker. One task per container; its state is kept here and every
//! change wakes the KindMachine's reconcile. A started-marker inside the node outlives the
//! manager: after a restart a bootstrap is never run a second time, only awaited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capkind_api::v1beta1::KindMachine;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::bootstrap::{self, File, Plan, Step};
use crate::docker::{self, ContainerRuntime};

/// Where a bootstrap stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Running step `step` of `of`.
    Running { step: usize, of: usize },
    /// Finished and the sentinel exists.
    Succeeded { seconds: u64 },
    /// A step failed or the sentinel is missing; the message is safe to show.
    Failed { message: String },
    /// Did not finish within the timeout.
    TimedOut { after: Duration },
}

/// The bootstrap tasks of one manager.
#[derive(Clone)]
pub struct Runner {
    states: Arc<Mutex<HashMap<String, State>>>,
    handles: Arc<Mutex<HashMap<String, tokio::task::AbortHandle>>>,
    wake: mpsc::UnboundedSender<ObjectRef<KindMachine>>,
}

impl Runner {
    /// A runner and the stream of KindMachines to reconcile when a bootstrap moves on.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<ObjectRef<KindMachine>>) {
        let (wake, woken) = mpsc::unbounded_channel();
        (Self { states: Arc::default(), handles: Arc::default(), wake }, woken)
    }

    /// The state of the bootstrap of `container`, if this manager ran one.
    pub fn state(&self, container: &str) -> Option<State> {
        self.states.lock().ok()?.get(container).cloned()
    }

    /// Starts running `plan` in `container`, unless a task for it exists already.
    pub fn start<D: ContainerRuntime + Clone>(
        &self,
        docker: D,
        container: &str,
        plan: Plan,
        timeout: Duration,
        machine: ObjectRef<KindMachine>,
    ) {
        let Ok(mut states) = self.states.lock() else { return };
        if states.contains_key(container) {
            return;
        }
        states.insert(container.to_string(), State::Running { step: 0, of: plan.len() });
        drop(states);
        let runner = self.clone();
        let name = container.to_string();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let progress = |step| runner.set(&name, State::Running { step, of: plan.len() }, &machine);
            let state = match tokio::time::timeout(timeout, run(&docker, &name, &plan, progress)).await {
                Ok(Ok(())) => State::Succeeded { seconds: started.elapsed().as_secs() },
                Ok(Err(message)) => State::Failed { message },
                Err(_) => State::TimedOut { after: timeout },
            };
            runner.set(&name, state, &machine);
        });
        if let Ok(mut handles) = self.handles.lock() {
            handles.insert(container.to_string(), task.abort_handle());
        }
    }

    /// Stops the bootstrap of `container` (the machine is being deleted) and forgets it.
    pub fn cancel(&self, container: &str) {
        if let Some(handle) = self.handles.lock().ok().and_then(|mut h| h.remove(container)) {
            handle.abort();
        }
        if let Ok(mut states) = self.states.lock() {
            states.remove(container);
        }
    }

    fn set(&self, container: &str, state: State, machine: &ObjectRef<KindMachine>) {
        if let Ok(mut states) = self.states.lock()
            && states.contains_key(container)
        {
            states.insert(container.to_string(), state);
        }
        let _ = self.wake.send(machine.clone());
    }
}

/// Runs the plan: marker first, then each step, then the sentinel check.
async fn run<D: ContainerRuntime>(docker: &D, container: &str, plan: &Plan, progress: impl Fn(usize)) -> Result<(), String> {
    let marker = format!("mkdir -p /run/cluster-api && date +%s > {}", bootstrap::STARTED_MARKER);
    exec_ok(docker, container, &["sh", "-c", &marker]).await?;
    for (i, step) in plan.steps.iter().enumerate() {
        progress(i + 1);
        match step {
            Step::WriteFiles(files) => write_files(docker, container, files).await?,
            Step::Run(argv) => {
                let args: Vec<&str> = argv.iter().map(String::as_str).collect();
                let out = docker.exec(container, &args, None).await.map_err(|e| e.to_string())?;
                if out.exit_code != 0 {
                    return Err(format!(
                        "command {} exited with {}: {}",
                        redact(&shell_words(argv)),
                        out.exit_code,
                        redact(&tail(&out.stdout, &out.stderr))
                    ));
                }
            }
        }
    }
    let check = docker.exec(container, &["test", "-f", bootstrap::SENTINEL], None).await.map_err(|e| e.to_string())?;
    if check.exit_code != 0 {
        return Err(format!("the bootstrap ran to its end but did not create {}", bootstrap::SENTINEL));
    }
    Ok(())
}

async fn exec_ok<D: ContainerRuntime>(docker: &D, container: &str, argv: &[&str]) -> Result<(), String> {
    let out = docker.exec(container, argv, None).await.map_err(|e| e.to_string())?;
    if out.exit_code != 0 {
        return Err(format!("{} exited with {}: {}", argv.join(" "), out.exit_code, redact(&tail(&out.stdout, &out.stderr))));
    }
    Ok(())
}

/// One archive upload for the files; appends and owners need one more exec for the group.
async fn write_files<D: ContainerRuntime>(docker: &D, container: &str, files: &[File]) -> Result<(), String> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut script = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let at = if f.append { format!("run/capkind/append/{i}") } else { f.path[1..].to_string() };
        let mut header = tar::Header::new_gnu();
        header.set_size(f.content.len() as u64);
        header.set_mode(f.mode);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, &at, f.content.as_slice()).map_err(|e| format!("packing {}: {e}", f.path))?;
        if f.append {
            script.push(format!("mkdir -p \"$(dirname '{0}')\" && cat /{at} >> '{0}' && rm /{at}", f.path));
        }
        if let Some(owner) = &f.owner {
            script.push(format!("chown '{owner}' '{}'", f.path));
        }
    }
    let bytes = archive.into_inner().map_err(|e| format!("packing files: {e}"))?;
    docker.upload(container, "/", bytes).await.map_err(|e: docker::Error| e.to_string())?;
    if !script.is_empty() {
        exec_ok(docker, container, &["sh", "-c", &script.join(" && ")]).await?;
    }
    Ok(())
}

/// What an earlier run of the manager left in a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Earlier {
    /// No bootstrap was ever started in this container.
    NotStarted,
    /// A bootstrap started and the sentinel exists.
    Succeeded,
    /// A bootstrap started this many seconds ago and has not created the sentinel yet.
    Unfinished { seconds_ago: u64 },
}

/// Reads the started-marker and the sentinel inside `container`.
pub async fn earlier<D: ContainerRuntime>(docker: &D, container: &str) -> Result<Earlier, docker::Error> {
    let script = format!(
        "test -f {m} || exit 3; test -f {s} && exit 0; echo $(( $(date +%s) - $(cat {m}) ))",
        m = bootstrap::STARTED_MARKER,
        s = bootstrap::SENTINEL
    );
    let out = docker.exec(container, &["sh", "-c", &script], None).await?;
    Ok(match out.exit_code {
        3 => Earlier::NotStarted,
        _ if out.stdout.is_empty() => Earlier::Succeeded,
        _ => Earlier::Unfinished { seconds_ago: String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0) },
    })
}

fn shell_words(argv: &[String]) -> String {
    match argv {
        [sh, c, script] if sh.ends_with("sh") && c == "-c" => script.clone(),
        _ => argv.join(" "),
    }
}

/// The last lines of a command's output, at most 1 KiB.
fn tail(stdout: &[u8], stderr: &[u8]) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(stdout), String::from_utf8_lossy(stderr));
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let joined = lines[lines.len().saturating_sub(10)..].join("\n");
    let cut = joined.char_indices().rev().nth(1023).map_or(0, |(i, _)| i);
    joined[cut..].to_string()
}

/// Hides the values of kubeadm's secret flags (tokens, certificate keys).
pub fn redact(text: &str) -> String {
    const SECRET_FLAGS: [&str; 4] = ["--token", "--certificate-key", "--discovery-token", "--tls-bootstrap-token"];
    let mut out = Vec::new();
    let mut hide_next = false;
    for word in text.split(' ') {
        if hide_next {
            out.push("[redacted]".to_string());
            hide_next = false;
            continue;
        }
        match SECRET_FLAGS.iter().find(|f| word.starts_with(*f)) {
            Some(flag) if word.len() > flag.len() && word.as_bytes()[flag.len()] == b'=' => out.push(format!("{flag}=[redacted]")),
            Some(flag) if word.len() == flag.len() => {
                out.push(word.to_string());
                hide_next = true;
            }
            _ => out.push(word.to_string()),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact("kubeadm join 1.2.3.4:6443 --token abc.def --certificate-key=123 --v=5"),
            "kubeadm join 1.2.3.4:6443 --token [redacted] --certificate-key=[redacted] --v=5"
        );
        assert_eq!(redact("echo --tokenizer x"), "echo --tokenizer x");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let out: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let t = tail(out.as_bytes(), b"error: boom\n");
        assert!(t.ends_with("line 30\nerror: boom") && !t.contains("line 20\n"), "{t}");
    }
}
