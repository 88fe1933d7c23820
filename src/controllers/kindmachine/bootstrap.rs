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

/// The words in which the script and the probe say where a bootstrap stands (the content of
/// `bootstrap.status`, or what the probe infers without it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word {
    /// The script runs (or is about to).
    Running,
    /// It ran to its end and the sentinel exists.
    Succeeded,
    /// A step failed.
    Failed,
    /// It ran to its end but the sentinel is missing.
    NoSentinel,
    /// It was stopped after the timeout.
    Timeout,
    /// It was cut short by a restart of the node container.
    Interrupted,
}

impl Word {
    /// The word as the script writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Word::Running => "running",
            Word::Succeeded => "succeeded",
            Word::Failed => "failed",
            Word::NoSentinel => "nosentinel",
            Word::Timeout => "timeout",
            Word::Interrupted => "interrupted",
        }
    }

    /// Every word.
    pub const ALL: [Word; 6] = [
        Word::Running,
        Word::Succeeded,
        Word::Failed,
        Word::NoSentinel,
        Word::Timeout,
        Word::Interrupted,
    ];

    /// The word `s` is, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// What the node reports about its bootstrap: the probe's output, parsed (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// No bootstrap was ever started in this container.
    NotStarted,
    /// One was started `elapsed` seconds ago; it is at step `step` of `of`.
    Started {
        elapsed: u64,
        step: usize,
        of: usize,
        word: Word,
        /// The failing step's exit code, description and last output, when `word` is Failed.
        failure: Option<Failure>,
    },
    /// One was started, but what the node says cannot be read.
    Unreadable,
}

/// A failed step as the node reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Exit code.
    pub code: String,
    /// The step's description (`command "..."`, `writing ...`).
    pub command: String,
    /// Its last lines of output.
    pub output: String,
}

/// Where a bootstrap stands, given its timeout.
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
    /// Still running after `after` seconds, its timeout: the caller stops it.
    Overdue { after: u64 },
    /// Ran to its end, after `elapsed` seconds, and the sentinel exists.
    Succeeded { elapsed: u64 },
    /// A step failed or the sentinel is missing; the message is safe to show.
    Failed { message: String },
    /// Stopped after the timeout.
    TimedOut { after: u64 },
    /// Cut short at step `step` of `of` by a restart of the node container; never re-run.
    Interrupted { step: usize, of: usize },
}

/// Parses what [`probe`] printed.
pub fn parse(text: &str) -> Report {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap_or("none").split_whitespace().collect();
    let (elapsed, step, word, of) = match head.as_slice() {
        ["none"] => return Report::NotStarted,
        [elapsed, step, word, of] => match (Word::parse(word), elapsed.parse(), of.parse()) {
            (Some(word), Ok(elapsed), Ok(of)) => (elapsed, step.parse().unwrap_or(0), word, of),
            _ => return Report::Unreadable,
        },
        _ => return Report::Unreadable,
    };
    let failure = (word == Word::Failed).then(|| Failure {
        code: lines.next().unwrap_or_default().to_string(),
        command: lines.next().unwrap_or_default().to_string(),
        output: lines.collect::<Vec<_>>().join("\n"),
    });
    Report::Started {
        elapsed,
        step,
        of,
        word,
        failure,
    }
}

/// The state a report tells, for a bootstrap allowed `timeout_secs` (pure).
pub fn state(report: &Report, timeout_secs: u64) -> State {
    let Report::Started {
        elapsed,
        step,
        of,
        word,
        failure,
    } = report
    else {
        return match report {
            Report::NotStarted => State::NotStarted,
            _ => State::Failed {
                message: format!(
                    "the bootstrap was started but its state in {DIR} and {STAGE} cannot be read"
                ),
            },
        };
    };
    let (elapsed, step, of) = (*elapsed, *step, *of);
    match word {
        Word::Succeeded => State::Succeeded { elapsed },
        Word::Timeout => State::TimedOut {
            after: timeout_secs,
        },
        Word::Interrupted => State::Interrupted { step, of },
        Word::NoSentinel => State::Failed {
            message: format!(
                "the bootstrap ran to its end but did not create {}",
                bootstrap::SENTINEL
            ),
        },
        Word::Failed => {
            let f = failure.clone().unwrap_or(Failure {
                code: String::new(),
                command: String::new(),
                output: String::new(),
            });
            State::Failed {
                message: failure_message(&f.command, &f.code, &f.output),
            }
        }
        Word::Running if elapsed > timeout_secs => State::Overdue {
            after: timeout_secs,
        },
        Word::Running => State::Running { step, of, elapsed },
    }
}

/// The bootstrap protocol with one node container: start a plan, probe where it stands, stop
/// it. Waiting for its progress without holding a reconcile is [`Waiter`]'s.
pub struct Node<'a, D> {
    docker: &'a D,
    container: &'a str,
}

impl<'a, D: ContainerRuntime> Node<'a, D> {
    /// The bootstrap of `container`.
    pub fn new(docker: &'a D, container: &'a str) -> Self {
        Self { docker, container }
    }

    /// Puts `plan` in the node (one upload), to be started by a waiter or by [`Node::start`].
    pub async fn upload(&self, plan: &Plan) -> Result<(), docker::Error> {
        upload(self.docker, self.container, plan).await
    }

    /// Starts the uploaded plan with one exec. Of two racing starts only one runs.
    pub async fn start(&self) -> Result<(), docker::Error> {
        start(self.docker, self.container).await
    }

    /// Asks the node where its bootstrap stands.
    pub async fn probe(&self) -> Result<Report, docker::Error> {
        let out = self
            .docker
            .exec(self.container, &["sh", "-c", &probe()], None)
            .await?;
        Ok(parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Stops a running bootstrap and records that it timed out.
    pub async fn stop(&self) -> Result<(), docker::Error> {
        stop(self.docker, self.container).await
    }
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

/// Puts `plan`'s files and script in `container` (one upload); [`launch`] starts it.
async fn upload<D: ContainerRuntime>(
    docker: &D,
    container: &str,
    plan: &Plan,
) -> Result<(), docker::Error> {
    docker.upload(container, "/", archive(plan)?).await
}

/// The shell commands that start the uploaded script, detached; they do nothing where a
/// bootstrap was started before (its marker exists), and fail only where the node's
/// directories cannot be written. Everything but the script itself runs in the foreground:
/// the lock of step 0 is taken before the script starts and handed down to it on fd 9, so
/// that a wait that begins once these commands returned always finds it held. The marker is
/// created exclusively (noclobber: O_EXCL), so of two launchers racing (a manager stopped
/// right after it started one, and its successor) only one goes on.
fn launch() -> String {
    format!(
        "mkdir -p /run/cluster-api {DIR} {RUN} {marker_dir} && \
         if (set -C; date +%s > {m}) 2>/dev/null; then \
         : > {RUN}/bootstrap.running && echo 0 > {DIR}/bootstrap.step && exec 9> {lock0} && \
         {{ ! command -v flock >/dev/null || flock -x 9; }} && \
         {{ setsid sh {script} > {DIR}/bootstrap.log 2>&1 < /dev/null & }} && exec 9>&-; fi",
        m = bootstrap::STARTED_MARKER,
        marker_dir = marker_dir(),
        lock0 = step_lock(0),
        script = script_path()
    )
}

/// Starts the uploaded script with an exec of its own (where no waiter can start it).
async fn start<D: ContainerRuntime>(docker: &D, container: &str) -> Result<(), docker::Error> {
    let out = docker
        .exec(container, &["sh", "-c", &launch()], None)
        .await?;
    if out.exit_code != 0 {
        return Err(docker::Error::Engine {
            what: format!("start bootstrap in {container}"),
            status: 0,
            message: format!("exit code {}", out.exit_code),
        });
    }
    Ok(())
}

/// The shell commands that print where the bootstrap stands, for [`parse`].
fn probe() -> String {
    format!(
        "test -f {m} || {{ echo none; exit 0; }}; \
         s=$(cat {DIR}/bootstrap.status 2>/dev/null) || {{ test -f {RUN}/bootstrap.running && s={running} || s={interrupted}; }}; \
         t=$(cat {m}); now=$(date +%s); n=$(cat {DIR}/bootstrap.step 2>/dev/null); of=$(wc -l < {STAGE}/steps.txt 2>/dev/null); \
         echo \"$(( now - ${{t:-$now}} )) ${{n:-0}} ${{s:-{running}}} ${{of:-0}}\"; \
         if [ -f {DIR}/bootstrap.failed ]; then read n code < {DIR}/bootstrap.failed; \
         echo \"$code\"; sed -n \"${{n}}p\" {STAGE}/steps.txt; tail -n 40 {DIR}/bootstrap.log | cut -c -2000; fi",
        m = bootstrap::STARTED_MARKER,
        running = Word::Running.as_str(),
        interrupted = Word::Interrupted.as_str(),
    )
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

/// The lock file the script holds while it runs step `step` (0: waiting for systemd).
fn step_lock(step: usize) -> String {
    format!("{RUN}/step-{step}.lock")
}

/// What a reconcile finds about a container's waiter.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// None runs, and nothing it saw is left.
    Nothing,
    /// One waits inside the node.
    Waiting,
    /// One returned and saw this.
    Returned(Report),
}

/// Tasks that wait, each inside one node, until its bootstrap moves on, then keep what they saw
/// for the next reconcile and wake the machine up. A change is thus seen at once instead of at
/// the next look, for the price of one exec, and while a task waits, reconciles need not look
/// inside the node at all. The tasks belong to the controller: [`Waiter::shut_down`] stops them.
///
/// The wait costs nothing inside the node: the script holds an exclusive lock on a file per
/// step, and the waiter blocks on a shared lock of the same file (`flock`, util-linux, in every
/// kindest/node image). Only where `flock` is missing, or for a bootstrap started without the
/// locks, does it poll once a second with shell builtins (a 50-node cluster of pollers forking
/// `cat` and `sleep` ten times a second took a core of a 2-core machine).
#[derive(Clone, Default)]
pub struct Waiter {
    /// Container -> `None` while its task waits, then what it saw until taken.
    seen: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Option<Report>>>>,
    tasks: tokio_util::task::TaskTracker,
    stop: tokio_util::sync::CancellationToken,
}

impl Waiter {
    /// Takes what the task of `container` saw, if it returned; leaves a waiting one in place.
    pub fn take(&self, container: &str) -> Seen {
        let Ok(mut seen) = self.seen.lock() else {
            return Seen::Nothing;
        };
        match seen.get(container) {
            None => Seen::Nothing,
            Some(None) => Seen::Waiting,
            Some(Some(_)) => seen
                .remove(container)
                .flatten()
                .map_or(Seen::Nothing, Seen::Returned),
        }
    }

    /// Forgets `container` (its machine is gone).
    pub fn forget(&self, container: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(container);
        }
    }

    /// Starts a task that waits until the bootstrap of `container` is past step `step` or has
    /// ended (or `limit_secs` pass), then calls `wake`; `false` when one waits already or the
    /// waiter shuts down. Steps that end within a second of the one before are waited
    /// through, so a quick run of steps (files, short commands) wakes the machine once, at
    /// its end, not once per step. With `launch`, the same exec first starts the uploaded
    /// script ([`launch`]): one exec per node instead of two.
    pub fn watch<D: ContainerRuntime + Clone>(
        &self,
        docker: &D,
        container: &str,
        step: usize,
        limit_secs: u64,
        launch: bool,
        wake: impl FnOnce() + Send + 'static,
    ) -> bool {
        let Ok(mut active) = self.seen.lock() else {
            return false;
        };
        if matches!(active.get(container), Some(None)) || self.stop.is_cancelled() {
            return false;
        }
        active.insert(container.to_string(), None);
        drop(active);
        let (docker, container, seen) = (docker.clone(), container.to_string(), self.seen.clone());
        // Where the launch fails, nothing is waited for: the probe says what is there.
        let launch = if launch {
            format!("{} && ", self::launch())
        } else {
            String::new()
        };
        let wait = format!(
            "{launch}if [ ! -f {DIR}/bootstrap.status ]; then \
             if command -v flock >/dev/null && test -f {lock}; then flock -s -w {limit} {lock} true; \
             n=0; while [ ! -f {DIR}/bootstrap.status ] && [ $n -lt 50 ] && read s < {DIR}/bootstrap.step && \
             test -f {RUN}/step-$s.lock && flock -s -w 1 {RUN}/step-$s.lock true; do n=$((n+1)); done; \
             else i=0; while [ ! -f {DIR}/bootstrap.status ] && [ -f {RUN}/bootstrap.running ] && read s < {DIR}/bootstrap.step && [ \"$s\" = {step} ] && [ $i -lt {limit} ]; do \
             sleep 1; i=$((i+1)); done; fi; fi; {probe}",
            lock = step_lock(step),
            limit = limit_secs.max(1),
            probe = probe()
        );
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let cmd = ["sh", "-c", wait.as_str()];
            let outcome = tokio::select! {
                outcome = docker.exec(&container, &cmd, None) => outcome,
                () = stop.cancelled() => return,
            };
            let report = match &outcome {
                Ok(out) => Some(parse(&String::from_utf8_lossy(&out.stdout))),
                Err(_) => {
                    // The container went away or Docker failed; look again soon, not in a loop.
                    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                    None
                }
            };
            if let Ok(mut active) = seen.lock() {
                match report {
                    Some(report) => active.insert(container, Some(report)),
                    None => active.remove(&container),
                };
            }
            wake();
        });
        true
    }

    /// Stops every task and waits until they are gone.
    pub async fn shut_down(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Stops a running bootstrap and records that it timed out.
async fn stop<D: ContainerRuntime>(docker: &D, container: &str) -> Result<(), docker::Error> {
    let kill = format!(
        "kill -TERM -$(cat {RUN}/bootstrap.pid) 2>/dev/null; sleep 1; kill -KILL -$(cat {RUN}/bootstrap.pid) 2>/dev/null; \
         echo {timeout} > {DIR}/.bootstrap.status && mv {DIR}/.bootstrap.status {DIR}/bootstrap.status",
        timeout = Word::Timeout.as_str()
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
         fail() {{ put bootstrap.failed \"$1 $2\"; put bootstrap.status {failed}; exit 0; }}\n\
         # fd 9 holds the lock of the current step (step 0's comes from the launcher).\n\
         next_step() {{ exec 8> \"$2\"; if command -v flock >/dev/null; then flock -x 8; fi; \
         put bootstrap.step \"$1\"; exec 9>&8 8>&-; }}\n\
         # Wait until systemd has booted the node (kindest/node images run systemd); its bus\n\
         # appears a moment after the container starts.\n\
         if command -v systemctl >/dev/null 2>&1; then i=0; while [ $i -lt 600 ]; do\n\
           case \"$(systemctl is-system-running --wait 2>/dev/null)\" in running|degraded) break;; esac\n\
           i=$((i+1)); sleep 0.1; done; fi\n",
        failed = Word::Failed.as_str()
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
        "if [ -f {} ]; then put bootstrap.status {}; else put bootstrap.status {}; fi\n",
        bootstrap::SENTINEL,
        Word::Succeeded.as_str(),
        Word::NoSentinel.as_str()
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
    fn what_the_node_reports_is_parsed() {
        let started = |elapsed, step, of, word| Report::Started {
            elapsed,
            step,
            of,
            word,
            failure: None,
        };
        let cases = [
            ("none\n", Report::NotStarted),
            ("", Report::NotStarted),
            ("12 2 running 3\n", started(12, 2, 3, Word::Running)),
            ("40 3 succeeded 3\n", started(40, 3, 3, Word::Succeeded)),
            ("5 1 interrupted 3\n", started(5, 1, 3, Word::Interrupted)),
            ("61 2 timeout 3\n", started(61, 2, 3, Word::Timeout)),
            ("9 3 nosentinel 3\n", started(9, 3, 3, Word::NoSentinel)),
            (
                "7 2 failed 3\n1\ncommand \"kubeadm init\"\nline a\nline b\n",
                Report::Started {
                    elapsed: 7,
                    step: 2,
                    of: 3,
                    word: Word::Failed,
                    failure: Some(Failure {
                        code: "1".into(),
                        command: "command \"kubeadm init\"".into(),
                        output: "line a\nline b".into(),
                    }),
                },
            ),
            ("7 2 exploded 3\n", Report::Unreadable),
            ("garbage\n", Report::Unreadable),
            ("x 2 running 3\n", Report::Unreadable),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text:?}");
        }
        for word in Word::ALL {
            assert_eq!(Word::parse(word.as_str()), Some(word));
        }
    }

    #[test]
    fn the_state_of_a_report_depends_on_the_timeout() {
        let running = |elapsed| Report::Started {
            elapsed,
            step: 2,
            of: 3,
            word: Word::Running,
            failure: None,
        };
        assert_eq!(
            state(&running(60), 60),
            State::Running {
                step: 2,
                of: 3,
                elapsed: 60
            }
        );
        assert_eq!(state(&running(61), 60), State::Overdue { after: 60 });
        assert_eq!(state(&Report::NotStarted, 60), State::NotStarted);
        assert!(matches!(
            state(&Report::Unreadable, 60),
            State::Failed { .. }
        ));
    }

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
