//! Runs a bootstrap plan inside the node itself, so that it neither holds a reconcile worker nor
//! depends on the manager staying alive: all files and a generated script go in with one archive
//! upload, the script is started detached, and reconciles read its progress from files in
//! /var/lib/capkind/state. The staged files hold keys; the script deletes them when it ends.
//!
//! Never twice: the started-marker and the state live on the node's /var volume, which a
//! container restart keeps, so a manager restarted in the middle finds the script where it is
//! and a node restarted in the middle reports the bootstrap as interrupted instead of running
//! it again. What only lives while the script runs (its pid, the step locks, a "running" flag)
//! is on the tmpfs /run, which the restart empties: that is how an interrupted script is told
//! from a running one.

use crate::bootstrap::{self, File, Plan, Step};
use crate::docker::{self, ContainerRuntime};
use crate::report::redact;

/// Where the script keeps its state: the step, the outcome, the failing step, the log.
const DIR: &str = "/var/lib/capkind/state";
/// What lives only while the script runs (tmpfs: emptied when the node container restarts).
const RUN: &str = "/run/capkind";
/// Where files are uploaded to. Docker's archive upload cannot write into tmpfs mounts such as
/// /run, so uploads go to the /var volume and the script puts each file in place from inside.
const STAGE: &str = "/var/lib/capkind/bootstrap";

/// Where a bootstrap stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Never started in this container.
    NotStarted,
    /// Running step `step` of `of` for `elapsed` seconds.
    Running {
        step: usize,
        of: usize,
        elapsed: u64,
    },
    /// Ran to its end, after `elapsed` seconds, and the sentinel exists.
    Succeeded { elapsed: u64 },
    /// A step failed or the sentinel is missing; the message is safe to show.
    Failed { message: String },
    /// Stopped after the timeout.
    TimedOut { after: u64 },
    /// Cut short at step `step` of `of` by a restart of the node container; never re-run.
    Interrupted { step: usize, of: usize },
}

/// The archive that puts `plan`'s files and the script that carries it out in the node (one
/// upload to `/`); the script then runs with `sh` + [`script_path`].
pub fn archive(plan: &Plan) -> Result<Vec<u8>, docker::Error> {
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |path: String, mode: u32, content: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_cksum();
        archive.append_data(&mut header, path, content)
    };
    let archived = (|| {
        let mut n = 0;
        for step in &plan.steps {
            if let Step::WriteFiles(files) = step {
                for f in files {
                    add(format!("{}/files/{n}", &STAGE[1..]), 0o600, &f.content)?;
                    n += 1;
                }
            }
        }
        add(
            format!("{}/bootstrap.sh", &STAGE[1..]),
            0o700,
            script(plan).as_bytes(),
        )?;
        add(
            format!("{}/steps.txt", &STAGE[1..]),
            0o600,
            descriptions(plan).as_bytes(),
        )
    })();
    let packing = |e: std::io::Error| docker::Error::Engine {
        what: "pack bootstrap files".into(),
        status: 0,
        message: e.to_string(),
    };
    archived.map_err(packing)?;
    archive.into_inner().map_err(packing)
}

/// The directory of the started-marker.
fn marker_dir() -> &'static str {
    bootstrap::STARTED_MARKER
        .rsplit_once('/')
        .map_or("/", |(dir, _)| dir)
}

/// Where [`archive`] puts the script.
pub fn script_path() -> String {
    format!("{STAGE}/bootstrap.sh")
}

/// Starts `plan` in `container`: one upload, one exec.
pub async fn start<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    plan: &Plan,
) -> Result<(), docker::Error> {
    let bytes = archive(plan)?;
    docker.upload(container, "/", bytes).await?;
    // The lock of step 0 is taken here, before the script runs, and handed down to it on fd 9,
    // so that a waiter started right after this exec always finds it held. The marker is
    // created exclusively (noclobber: O_EXCL), so of two launchers racing (a manager stopped
    // right after it started one, and its successor) only one goes on.
    let launch = format!(
        "mkdir -p /run/cluster-api {DIR} {RUN} {marker_dir} && {{ (set -C; date +%s > {m}) 2>/dev/null || exit 0; }} && : > {RUN}/bootstrap.running && \
         echo 0 > {DIR}/bootstrap.step && exec 9> {lock0} && {{ ! command -v flock >/dev/null || flock -x 9; }} && \
         setsid sh {script} > {DIR}/bootstrap.log 2>&1 < /dev/null &",
        m = bootstrap::STARTED_MARKER,
        marker_dir = marker_dir(),
        lock0 = step_lock(0),
        script = script_path()
    );
    let out = docker.exec(container, &["sh", "-c", &launch], None).await?;
    if out.exit_code != 0 {
        return Err(docker::Error::Engine {
            what: format!("start bootstrap in {container}"),
            status: 0,
            message: format!("exit code {}", out.exit_code),
        });
    }
    Ok(())
}

/// Reads where the bootstrap of `container` stands; stops it when it ran past `timeout_secs`.
pub async fn observe<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    timeout_secs: u64,
) -> Result<State, docker::Error> {
    let out = docker
        .exec(container, &["sh", "-c", &probe()], None)
        .await?;
    interpret(
        docker,
        container,
        timeout_secs,
        &String::from_utf8_lossy(&out.stdout),
    )
    .await
}

/// The shell commands that print where the bootstrap stands, for [`interpret`].
fn probe() -> String {
    format!(
        "test -f {m} || {{ echo none; exit 0; }}; \
         s=$(cat {DIR}/bootstrap.status 2>/dev/null) || {{ test -f {RUN}/bootstrap.running && s=running || s=interrupted; }}; \
         t=$(cat {m}); now=$(date +%s); n=$(cat {DIR}/bootstrap.step 2>/dev/null); of=$(wc -l < {STAGE}/steps.txt 2>/dev/null); \
         echo \"$(( now - ${{t:-$now}} )) ${{n:-0}} ${{s:-running}} ${{of:-0}}\"; \
         if [ -f {DIR}/bootstrap.failed ]; then read n code < {DIR}/bootstrap.failed; \
         echo \"$code\"; sed -n \"${{n}}p\" {STAGE}/steps.txt; tail -n 40 {DIR}/bootstrap.log | cut -c -2000; fi",
        m = bootstrap::STARTED_MARKER
    )
}

/// The state that [`probe`]'s output `text` tells; stops a bootstrap that ran past
/// `timeout_secs`.
pub async fn interpret<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    timeout_secs: u64,
    text: &str,
) -> Result<State, docker::Error> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("none").split_whitespace().collect();
    let (elapsed, step, status, of) = match head.as_slice() {
        [elapsed, step, status, of] => (
            elapsed.parse().unwrap_or(0),
            step.parse().unwrap_or(0),
            *status,
            of.parse().unwrap_or(0),
        ),
        ["none"] => return Ok(State::NotStarted),
        _ => {
            return Ok(State::Failed {
                message: format!(
                    "the bootstrap was started but its state in {DIR} and {STAGE} cannot be read"
                ),
            });
        }
    };
    Ok(match status {
        "succeeded" => State::Succeeded { elapsed },
        "timeout" => State::TimedOut {
            after: timeout_secs,
        },
        "interrupted" => State::Interrupted { step, of },
        "nosentinel" => State::Failed {
            message: format!(
                "the bootstrap ran to its end but did not create {}",
                bootstrap::SENTINEL
            ),
        },
        "failed" => {
            let code = lines.next().unwrap_or_default().to_string();
            let command = lines.next().unwrap_or_default().to_string();
            let output: Vec<&str> = lines.collect();
            State::Failed {
                message: failure_message(&command, &code, &output.join("\n")),
            }
        }
        _ if elapsed > timeout_secs => {
            stop(docker, container).await?;
            State::TimedOut {
                after: timeout_secs,
            }
        }
        _ => State::Running { step, of, elapsed },
    })
}

/// What a user reads of a failed step: the command and its exit code, then its last lines of
/// output as a terminal shows them (whole lines, secrets hidden).
fn failure_message(command: &str, code: &str, output: &str) -> String {
    let tail = crate::report::last_lines(output, crate::report::OUTPUT_LINES, false);
    let message = if tail.is_empty() {
        format!("{command} exited with {code} and printed nothing")
    } else {
        format!(
            "{command} exited with {code}; the last lines of its output:\n{}",
            tail.join("\n")
        )
    };
    crate::report::fit(&redact(&message), crate::report::CONDITION_MESSAGE_LIMIT)
}

/// The containers with a bootstrap waiter: `None` while it waits, then what it saw (the
/// output of [`probe`]) until a reconcile takes it with [`take_seen`].
pub type Waits =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Option<String>>>>;

/// What a reconcile finds about a container's waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// None runs, and nothing it saw is left.
    Nothing,
    /// One waits inside the node.
    Waiting,
    /// One returned and saw this (the output of the state probe).
    Returned(String),
}

/// Takes what the waiter of `container` saw, if it returned; leaves a waiting one in place.
pub fn take_seen(waits: &Waits, container: &str) -> Seen {
    let Ok(mut waits) = waits.lock() else {
        return Seen::Nothing;
    };
    match waits.get(container) {
        None => Seen::Nothing,
        Some(None) => Seen::Waiting,
        Some(Some(_)) => waits
            .remove(container)
            .flatten()
            .map_or(Seen::Nothing, Seen::Returned),
    }
}

/// The lock file the script holds while it runs step `step` (0: waiting for systemd).
fn step_lock(step: usize) -> String {
    format!("{RUN}/step-{step}.lock")
}

/// Waits, in a task of its own and inside the node, until the bootstrap of `container` is past
/// step `step` or has ended (or `limit_secs` pass), then reads where it stands, keeps that in
/// `waits` for the next reconcile ([`take_seen`]) and sends `wake`; one such task per
/// container. A change is thus seen at once instead of at the next look, for the price of one
/// exec, and while the task waits, reconciles need not look inside the node at all.
///
/// The wait costs nothing inside the node: the script holds an exclusive lock on a file per
/// step, and the waiter blocks on a shared lock of the same file (`flock`, util-linux, in every
/// kindest/node image). Only where `flock` is missing, or for a bootstrap started without the
/// locks, does it poll once a second with shell builtins (a 50-node cluster of pollers forking
/// `cat` and `sleep` ten times a second took a core of a 2-core machine).
pub fn wake_on_progress<D: ContainerRuntime + Clone>(
    docker: &D,
    container: &str,
    step: usize,
    limit_secs: u64,
    waits: &Waits,
    wake: impl FnOnce() + Send + 'static,
) {
    let Ok(mut active) = waits.lock() else {
        return;
    };
    if matches!(active.get(container), Some(None)) {
        return;
    }
    active.insert(container.to_string(), None);
    drop(active);
    let (docker, container, waits) = (docker.clone(), container.to_string(), waits.clone());
    let wait = format!(
        "if [ ! -f {DIR}/bootstrap.status ]; then \
         if command -v flock >/dev/null && test -f {lock}; then flock -s -w {limit} {lock} true; \
         else i=0; while [ ! -f {DIR}/bootstrap.status ] && [ -f {RUN}/bootstrap.running ] && read s < {DIR}/bootstrap.step && [ \"$s\" = {step} ] && [ $i -lt {limit} ]; do \
         sleep 1; i=$((i+1)); done; fi; fi; {probe}",
        lock = step_lock(step),
        limit = limit_secs.max(1),
        probe = probe()
    );
    tokio::spawn(async move {
        let outcome = docker.exec(&container, &["sh", "-c", &wait], None).await;
        let seen = match &outcome {
            Ok(out) => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
            Err(_) => {
                // The container went away or Docker failed; look again soon, not in a loop.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                None
            }
        };
        if let Ok(mut active) = waits.lock() {
            match seen {
                Some(text) => active.insert(container, Some(text)),
                None => active.remove(&container),
            };
        }
        wake();
    });
}

/// Stops a running bootstrap and records that it timed out.
async fn stop<D: ContainerRuntime>(docker: &D, container: &str) -> Result<(), docker::Error> {
    let kill = format!(
        "kill -TERM -$(cat {RUN}/bootstrap.pid) 2>/dev/null; sleep 1; kill -KILL -$(cat {RUN}/bootstrap.pid) 2>/dev/null; \
         echo timeout > {DIR}/.bootstrap.status && mv {DIR}/.bootstrap.status {DIR}/bootstrap.status"
    );
    docker
        .exec(container, &["sh", "-c", &kill], None)
        .await
        .map(|_| ())
}

/// The script that carries out the plan inside the node. Each step records its number; the
/// first failure records the step and exit code and ends the script.
fn script(plan: &Plan) -> String {
    let mut s = format!(
        "#!/bin/sh\n# Generated by cluster-api-provider-kind from the bootstrap data.\n\
         mkdir -p {DIR} {RUN}\n\
         echo $$ > {RUN}/bootstrap.pid\n\
         trap 'rm -rf {STAGE}/files' EXIT\n\
         # State files are replaced whole (write, then rename), so a look never reads half of one.\n\
         put() {{ echo \"$2\" > {DIR}/.$1 && mv {DIR}/.$1 {DIR}/$1; }}\n\
         fail() {{ put bootstrap.failed \"$1 $2\"; put bootstrap.status failed; exit 0; }}\n\
         # fd 9 holds the lock of the current step (step 0's comes from the launcher).\n\
         next_step() {{ exec 8> \"$2\"; if command -v flock >/dev/null; then flock -x 8; fi; \
         put bootstrap.step \"$1\"; exec 9>&8 8>&-; }}\n\
         # Wait until systemd has booted the node (kindest/node images run systemd); its bus\n\
         # appears a moment after the container starts.\n\
         if command -v systemctl >/dev/null 2>&1; then i=0; while [ $i -lt 600 ]; do\n\
           case \"$(systemctl is-system-running --wait 2>/dev/null)\" in running|degraded) break;; esac\n\
           i=$((i+1)); sleep 0.1; done; fi\n"
    );
    let mut n = 0;
    for (i, step) in plan.steps.iter().enumerate() {
        let number = i + 1;
        // The next step's lock is taken before the step number is written and the previous
        // lock let go, so a waiter never wakes to a step number that has not moved.
        s.push_str(&format!(
            "next_step {number} {lock}\n",
            lock = step_lock(number)
        ));
        // Commands get no lock descriptor: a daemon they leave behind must not hold a step.
        match step {
            Step::WriteFiles(files) => {
                for f in files {
                    s.push_str(&format!(
                        "{{ {}; }} 8>&- 9>&- || fail {number} $?\n",
                        place(f, n)
                    ));
                    n += 1;
                }
            }
            Step::Run(argv) => {
                let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
                s.push_str(&format!(
                    "{} 8>&- 9>&- || fail {number} $?\n",
                    words.join(" ")
                ));
            }
        }
    }
    s.push_str(&format!(
        "if [ -f {} ]; then put bootstrap.status succeeded; else put bootstrap.status nosentinel; fi\n",
        bootstrap::SENTINEL
    ));
    s
}

/// Shell commands that put staged file `n` in place.
fn place(f: &File, n: usize) -> String {
    let path = quote(&f.path);
    let redirect = if f.append { ">>" } else { ">" };
    let mut cmd = format!(
        "mkdir -p \"$(dirname {path})\" && cat {STAGE}/files/{n} {redirect} {path} && chmod {:o} {path}",
        f.mode
    );
    if let Some(owner) = &f.owner {
        cmd.push_str(&format!(" && chown {} {path}", quote(owner)));
    }
    cmd
}

/// One line per step, for failure messages: the command, or the files written.
fn descriptions(plan: &Plan) -> String {
    plan.steps
        .iter()
        .map(|step| match step {
            Step::WriteFiles(files) => {
                format!(
                    "writing {}",
                    files
                        .iter()
                        .map(|f| f.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
            Step::Run(argv) => match argv.as_slice() {
                [sh, c, script] if sh.ends_with("sh") && c == "-c" => format!("command {script:?}"),
                _ => format!("command {:?}", argv.join(" ")),
            },
        })
        .map(|line| redact(&line.replace('\n', " ")) + "\n")
        .collect()
}

/// Single-quotes a word for sh.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_have_the_command_and_whole_last_lines_without_secrets() {
        let output: String = (1..=40)
            .map(|i| format!("[phase] line {i}\n"))
            .chain([
                "[bootstrap-token] Using token: abcdef.0123456789abcdef\n".to_string(),
                "\n".into(),
            ])
            .collect();
        let message = failure_message("command \"kubeadm init\"", "1", &output);
        let expected: Vec<String> = std::iter::once(
            "command \"kubeadm init\" exited with 1; the last lines of its output:".to_string(),
        )
        .chain((32..=40).map(|i| format!("[phase] line {i}")))
        .chain(std::iter::once(
            "[bootstrap-token] Using token: [redacted]".to_string(),
        ))
        .collect();
        assert_eq!(message.lines().collect::<Vec<_>>(), expected);
        assert_eq!(
            failure_message("command \"false\"", "1", ""),
            "command \"false\" exited with 1 and printed nothing"
        );
    }

    #[test]
    fn script_keeps_the_plan_order_and_quotes_words() {
        let plan = bootstrap::cloudinit::plan(
            b"runcmd:\n- echo it's first\nwrite_files:\n- path: /etc/a b\n  content: x\n  owner: nobody\n  permissions: '0600'\n  append: true\nruncmd2: []\n",
        )
        .expect("plan");
        let s = script(&plan);
        let step1 = s.find("next_step 1 /run/capkind/step-1.lock\n").expect(&s);
        let run = s
            .find("'/bin/sh' '-c' 'echo it'\\''s first' 8>&- 9>&- || fail 1 $?")
            .expect(&s);
        let step2 = s.find("next_step 2 /run/capkind/step-2.lock\n").expect(&s);
        let write = s
            .find("cat /var/lib/capkind/bootstrap/files/0 >> '/etc/a b' && chmod 600 '/etc/a b' && chown 'nobody' '/etc/a b'; } 8>&- 9>&- || fail 2 $?")
            .expect(&s);
        assert!(step1 < run && run < step2 && step2 < write, "{s}");
        assert_eq!(
            descriptions(&plan),
            "command \"echo it's first\"\nwriting /etc/a b\n"
        );
    }
}
