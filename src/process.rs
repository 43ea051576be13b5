//! The one way `infra` runs a child process.
//!
//! terraform, spark-submit, pg_ctl, initdb, pip: every child goes through
//! [`Cmd`]. It logs argv and cwd (with secrets masked), reads stdout and
//! stderr concurrently while the child runs (a noisy child can never
//! deadlock on a full pipe), streams lines to the terminal when asked, keeps
//! the last lines for the error message, and checks the exit status.
//!
//! The child inherits `infra`'s environment (PATH, JAVA_HOME, the proxy and
//! locale variables it needs), plus the variables each caller sets with
//! [`Cmd::env`] and minus those it removes with [`Cmd::env_remove`]; the
//! caller-set ones are the only ones logged as part of the command.
//!
//! Signals: by default the child stays in our process group, so Ctrl-C in a
//! terminal reaches it directly and we never send it a second SIGINT. While
//! `infra` handles stop signals itself ([`crate::signals::armed`], during
//! `run`), each child gets a process group of its own instead, and dropping
//! the future that runs it (the run was interrupted) kills that whole group:
//! a JVM's Python workers die with it.
//!
//! A child that must not be killed mid-work (terraform: a SIGKILL loses its
//! state lock and the state it has not written yet) is marked with
//! [`Cmd::stops_on_interrupt`]. When a stop signal reaches [`guard`], such a
//! child gets exactly one SIGINT, terraform's own "stop gracefully", and is
//! awaited up to [`GRACE`] (a second signal cuts that short) before its
//! group is killed. It is in a group of its own, so the terminal's Ctrl-C
//! did not reach it, and a SIGTERM sent to `infra` alone reaches it as
//! that one SIGINT. No child starts once a stop was asked for.
//!
//! A run killed with SIGKILL cannot stop anything itself. Its children then
//! die with it all the same: each is started with `PR_SET_PDEATHSIG`
//! (SIGKILL), and each process group is listed in the run's [`Children`]
//! directory while it lives, so the next run finds any group that outlived
//! its leader (a grandchild) and kills it before it starts.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{Signal as NixSignal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::signals::{Interrupted, Signal, Signals};

/// How many trailing output lines a failure message quotes.
const TAIL_LINES: usize = 40;

/// What to do with the child's output lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Log them at debug level; show them only with `-v`.
    Quiet,
    /// Print them to stderr as they arrive.
    Stream,
    /// Never show or log stdout, and keep it out of error messages: for
    /// output that holds secrets (`terraform output -json`). stderr is
    /// logged as with `Quiet`.
    Secret,
}

/// A child process to run: program, arguments, cwd and environment.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<Arg>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    as_user: Option<String>,
    echo: Echo,
    on_line: Option<LineHook>,
    stops_on_interrupt: bool,
}

/// Called with every line the child prints (stdout and stderr), for progress.
#[derive(Clone)]
struct LineHook(std::sync::Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for LineHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LineHook")
    }
}

#[derive(Debug, Clone)]
struct Arg {
    value: OsString,
    secret: bool,
}

/// What a successful child printed.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
}

/// A child that ran and failed. Callers that need to tell a failure from a
/// missing tool or an I/O error match on this.
#[derive(Debug, thiserror::Error)]
#[error("`{argv}` {status}\n{tail}")]
pub struct Failed {
    pub argv: String,
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub tail: String,
    /// The first lines of the same output, not shown: where an exception
    /// names its cause before pages of stack frames push it out of the
    /// tail (a Spark job's `[ERROR_CLASS] message`).
    pub head: String,
}

impl Cmd {
    pub fn new(program: impl AsRef<Path>) -> Cmd {
        Cmd {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            cwd: None,
            env: Vec::new(),
            env_remove: Vec::new(),
            as_user: None,
            echo: Echo::Quiet,
            on_line: None,
            stops_on_interrupt: false,
        }
    }

    /// On a stop signal, [`guard`] sends this child one SIGINT and waits
    /// for it to stop, rather than killing it (see the module doc).
    pub fn stops_on_interrupt(mut self) -> Cmd {
        self.stops_on_interrupt = true;
        self
    }

    /// The program's file name and its first argument: `terraform apply`.
    fn short_name(&self) -> String {
        let program = self
            .program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy();
        match self.args.first() {
            Some(arg) if !arg.secret => format!("{program} {}", arg.value.to_string_lossy()),
            _ => program.into_owned(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(Arg {
            value: arg.as_ref().to_owned(),
            secret: false,
        });
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        for arg in args {
            self = self.arg(arg);
        }
        self
    }

    /// An argument that is masked in logs and error messages.
    pub fn secret_arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(Arg {
            value: arg.as_ref().to_owned(),
            secret: true,
        });
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Runs the program as another user through `runuser` (we are root).
    pub fn as_user(mut self, user: Option<&str>) -> Cmd {
        self.as_user = user.map(str::to_owned);
        self
    }

    /// Calls `hook` with each line of output as it arrives (never with
    /// stdout under [`Echo::Secret`]).
    pub fn on_line(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Cmd {
        self.on_line = Some(LineHook(std::sync::Arc::new(hook)));
        self
    }

    pub fn echo(mut self, echo: Echo) -> Cmd {
        self.echo = echo;
        self
    }

    /// The command line as logged: secrets masked, arguments quoted when needed.
    pub fn display(&self) -> String {
        let mut out = String::new();
        if let Some(user) = &self.as_user {
            let _ = write!(out, "runuser -u {user} -- ");
        }
        out.push_str(&quote(self.program.as_os_str()));
        for arg in &self.args {
            out.push(' ');
            if arg.secret {
                out.push_str("****");
            } else {
                out.push_str(&quote(&arg.value));
            }
        }
        out
    }

    fn command(&self) -> Command {
        let mut command = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        command.args(self.args.iter().map(|a| &a.value));
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if crate::signals::armed() {
            command.process_group(0);
            let parent = std::process::id() as i32;
            // SAFETY: between fork and exec the closure calls only prctl,
            // getppid and _exit (as kill), which are async-signal-safe, and
            // allocates nothing.
            unsafe {
                command.pre_exec(move || {
                    nix::sys::prctl::set_pdeathsig(NixSignal::SIGKILL)?;
                    // The parent died before the line above: too late for
                    // the kernel to tell us, so go now.
                    if nix::unistd::getppid().as_raw() != parent {
                        let _ = nix::sys::signal::raise(NixSignal::SIGKILL);
                    }
                    Ok(())
                });
            }
        }
        command
    }

    /// Runs the child to completion. A non-zero exit is a [`Failed`] error
    /// that quotes the last lines the child printed.
    pub async fn run(&self) -> Result<Output> {
        let argv = self.display();
        match &self.cwd {
            Some(dir) => tracing::info!("running {argv} (in {})", dir.display()),
            None => tracing::info!("running {argv}"),
        }
        if let Some(signal) = stopping() {
            return Err(Interrupted(signal))
                .with_context(|| format!("`{argv}` was not started: infra is stopping"));
        }
        let mut command = self.command();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start `{argv}`"))?;
        let mut group = Group {
            leader: crate::signals::armed()
                .then(|| child.id())
                .flatten()
                .map(|pid| Pid::from_raw(pid as i32)),
            listed: None,
            graceful: false,
        };
        if let Some(leader) = group.leader {
            group.listed = Children::list(leader);
            if self.stops_on_interrupt {
                lock(&GRACEFUL).push((leader.as_raw(), self.short_name()));
                group.graceful = true;
            }
        }
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (status, stdout, tail) = tokio::try_join!(
            async {
                let status = child.wait().await.context("waiting for child");
                // It exited: what it left behind on purpose (pg_ctl's
                // server) is not ours to kill.
                group.forget_graceful();
                group.leader = None;
                if let Some(listed) = group.listed.take() {
                    let _ = std::fs::remove_file(listed);
                }
                status
            },
            collect(stdout, self.echo, true, self.on_line.as_ref()),
            collect(stderr, self.echo, false, self.on_line.as_ref()),
        )
        .with_context(|| format!("running `{argv}`"))?;
        if status.success() {
            return Ok(Output { stdout: stdout.0 });
        }
        // The tail quotes stderr, and stdout too when stderr was silent.
        let lines = if tail.1.is_empty() { stdout.1 } else { tail.1 };
        Err(Failed {
            argv,
            status,
            code: status.code(),
            tail: lines.quote("its"),
            head: lines.head.join("\n"),
        }
        .into())
    }
}

/// A child's own process group, killed whole if the child is abandoned
/// before it exits.
struct Group {
    leader: Option<Pid>,
    /// Its entry in the run's [`Children`] directory.
    listed: Option<PathBuf>,
    /// Listed in [`GRACEFUL`].
    graceful: bool,
}

impl Group {
    fn forget_graceful(&mut self) {
        if std::mem::take(&mut self.graceful)
            && let Some(leader) = self.leader
        {
            lock(&GRACEFUL).retain(|(group, _)| *group != leader.as_raw());
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.forget_graceful();
        if let Some(leader) = self.leader {
            let _ = killpg(leader, NixSignal::SIGKILL);
        }
        if let Some(listed) = self.listed.take() {
            let _ = std::fs::remove_file(listed);
        }
    }
}

/// How long a child marked [`Cmd::stops_on_interrupt`] may take to stop
/// after its SIGINT before it is killed. terraform stops its providers and
/// waits for the requests in flight, then writes its state and releases
/// the lock: seconds, or a minute or two behind a slow Google operation.
pub const GRACE: Duration = Duration::from_secs(120);

/// The groups of the running children marked [`Cmd::stops_on_interrupt`],
/// with their short names.
static GRACEFUL: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

/// The signal a [`guard`] stopped on: no child starts after it.
static STOPPING: Mutex<Option<Signal>> = Mutex::new(None);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn stopping() -> Option<Signal> {
    *lock(&STOPPING)
}

/// What [`guard`] stopped when children that stop on SIGINT were running.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Stopped {
    /// Their short names: `terraform apply`.
    pub children: Vec<String>,
    /// They did not stop within [`GRACE`] (or a second signal came) and
    /// were killed.
    pub killed: bool,
    #[source]
    pub signal: Interrupted,
}

impl Stopped {
    fn describe(&self) -> String {
        let names = self
            .children
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.killed {
            format!(
                "{names} did not stop within {}s of its SIGINT (or a second signal came) and was killed",
                GRACE.as_secs()
            )
        } else {
            format!("{names} stopped cleanly after its SIGINT")
        }
    }
}

/// Runs `work` unless a stop signal comes first (or came already). Then a
/// running child marked [`Cmd::stops_on_interrupt`] gets one SIGINT and
/// `work` goes on until that child has exited, for at most [`GRACE`] or
/// until a second signal, after which the child is killed; the error is
/// [`Stopped`]. Without such a child, `work` is dropped at once, killing
/// its children, and the error is [`Interrupted`].
pub async fn guard<T>(signals: &mut Signals, work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::pin!(work);
    let signal = tokio::select! {
        biased;
        signal = signals.recv() => signal,
        result = &mut work => return result,
    };
    *lock(&STOPPING) = Some(signal);
    let graceful = lock(&GRACEFUL).clone();
    if graceful.is_empty() {
        return Err(Interrupted(signal).into());
    }
    for (group, _) in &graceful {
        tracing::info!("sending SIGINT to process group {group}");
        let _ = killpg(Pid::from_raw(*group), NixSignal::SIGINT);
    }
    let children: Vec<String> = graceful.iter().map(|(_, name)| name.clone()).collect();
    crate::ui::status(format!(
        "{}: asked `{}` to stop, waiting up to {}s (a second signal kills it at once)",
        signal.name(),
        children.join("`, `"),
        GRACE.as_secs()
    ));
    let gone = async {
        while lock(&GRACEFUL)
            .iter()
            .any(|(group, _)| graceful.iter().any(|(g, _)| g == group))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let killed = tokio::select! {
        _ = &mut work => false,
        () = gone => false,
        () = tokio::time::sleep(GRACE) => true,
        _ = signals.recv() => true,
    };
    // Dropping `work` kills whatever is left of the children's groups.
    Err(Stopped {
        children,
        killed,
        signal: Interrupted(signal),
    }
    .into())
}

/// The directory where the running `run` lists its children's process
/// groups, one file per group named by its id and holding its leader's
/// start time. Set by [`Children::adopt`].
static CHILDREN: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The process groups of a run's children, listed in a directory of the
/// state dir while they live (see the module doc).
pub struct Children;

impl Children {
    /// Kills what an earlier run, killed before it could, left alive in
    /// `dir` (waiting until it is gone), then lists this process's children
    /// there from now on. Call it holding the run lock. Returns the groups
    /// it killed.
    pub async fn adopt(dir: &Path) -> Result<Vec<i32>> {
        let killed = reap(dir).await?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_owned());
        Ok(killed)
    }

    /// Lists `leader`'s group, when a run adopted its children.
    fn list(leader: Pid) -> Option<PathBuf> {
        let dir = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let path = dir.join(leader.to_string());
        let started = start_time(leader.as_raw())?;
        std::fs::write(&path, format!("{started}\n"))
            .inspect_err(|e| tracing::warn!("cannot write {}: {e}", path.display()))
            .ok()?;
        Some(path)
    }
}

/// How long a killed group may take to be gone.
const REAP_TIMEOUT: Duration = Duration::from_secs(30);

/// Kills every group listed in `dir` that still has a live process, waits
/// until none does, and empties the list.
async fn reap(dir: &Path) -> Result<Vec<i32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(group) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let recorded = std::fs::read_to_string(&path).unwrap_or_default();
        // A live process with the group's number that started at another
        // time is someone else's: our group was empty when its pid was
        // taken again, so there is nothing of ours left.
        let reused = start_time(group).is_some_and(|t| t.to_string() != recorded.trim());
        if !reused && !group_members(group).is_empty() {
            tracing::info!("killing process group {group}, left by a run that was killed");
            let _ = killpg(Pid::from_raw(group), NixSignal::SIGKILL);
            killed.push(group);
        }
    }
    let deadline = Instant::now() + REAP_TIMEOUT;
    for &group in &killed {
        while !group_members(group).is_empty() {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "process group {group}, left by a run that was killed, is still alive {}s after SIGKILL",
                    REAP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok(killed)
}

/// The fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// When `pid` started (clock ticks since boot): with the pid, it names one
/// process for good.
fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The live (not zombie) processes in process group `group`.
fn group_members(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            stat_fields(pid).is_some_and(|f| {
                f.first().is_some_and(|state| state != "Z")
                    && f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(group)
            })
        })
        .collect()
}

/// Reads a pipe line by line: keeps all of stdout (for `output -json`) and
/// the last lines of each stream for error messages.
async fn collect(
    pipe: impl AsyncRead + Unpin,
    echo: Echo,
    keep_all: bool,
    on_line: Option<&LineHook>,
) -> Result<(String, Tail)> {
    let mut reader = BufReader::new(pipe);
    let mut all = String::new();
    let mut tail = Tail::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        if keep_all {
            all.push_str(&line);
        }
        let line = line.trim_end_matches(['\n', '\r']);
        let secret = echo == Echo::Secret && keep_all;
        match echo {
            Echo::Stream => crate::ui::progress::suspend(|| eprintln!("{line}")),
            _ if secret => continue,
            Echo::Quiet | Echo::Secret => tracing::debug!(target: "infra::child", "{line}"),
        }
        if let Some(hook) = on_line {
            (hook.0)(line);
        }
        tail.push(line);
    }
    Ok((all, tail))
}

/// The last lines of some output, for an error message: a child's stderr
/// here, a Dataproc driver's output in `backend::gcp`.
#[derive(Debug, Clone, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    /// The first [`TAIL_LINES`] lines.
    head: Vec<String>,
}

impl Tail {
    /// Keeps `line`, forgetting the oldest beyond [`TAIL_LINES`].
    pub fn push(&mut self, line: &str) {
        if self.head.len() < TAIL_LINES {
            self.head.push(line.to_owned());
        }
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// `last N lines of <whose> output:` and the lines, indented with `| `;
    /// `(no output)` when there were none.
    pub fn quote(&self, whose: &str) -> String {
        if self.lines.is_empty() {
            return "(no output)".to_owned();
        }
        let mut out = format!("last {} lines of {whose} output:", self.lines.len());
        for line in &self.lines {
            out.push_str("\n  | ");
            out.push_str(line);
        }
        out
    }
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+[]*".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_stdout_and_checks_status() {
        let out = Cmd::new("sh")
            .args(["-c", "echo hello"])
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout, "hello\n");

        let err = Cmd::new("sh")
            .args(["-c", "echo first >&2; echo boom >&2; exit 3"])
            .run()
            .await
            .unwrap_err();
        let failed = err.downcast_ref::<Failed>().expect("a Failed error");
        assert_eq!(failed.code, Some(3));
        assert!(failed.tail.contains("boom"), "{}", failed.tail);
    }

    #[tokio::test]
    async fn a_noisy_child_does_not_deadlock() {
        // Far more than a pipe buffer on both streams at once.
        let script =
            "i=0; while [ $i -lt 20000 ]; do echo line-$i; echo err-$i >&2; i=$((i+1)); done";
        let out = Cmd::new("sh").args(["-c", script]).run().await.unwrap();
        assert_eq!(out.stdout.lines().count(), 20000);
    }

    #[tokio::test]
    async fn the_caller_adds_and_removes_variables() {
        let out = Cmd::new("sh")
            .args(["-c", "echo \"$A-${HOME:-unset}\""])
            .env("A", "set")
            .env_remove("HOME")
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout.trim(), "set-unset");
    }

    #[tokio::test]
    async fn secret_stdout_is_returned_but_never_quoted() {
        let out = Cmd::new("sh")
            .args(["-c", "echo hunter2"])
            .echo(Echo::Secret)
            .run()
            .await
            .unwrap();
        assert_eq!(out.stdout, "hunter2\n");
        let err = Cmd::new("sh")
            .args(["-c", "echo hunter$((1 + 1)); exit 1"])
            .echo(Echo::Secret)
            .run()
            .await
            .unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
    }

    /// Regression (issue 21): a run killed with SIGKILL left its children
    /// running, and the resume started while they could still write.
    #[tokio::test]
    async fn the_next_run_kills_what_a_killed_run_left_in_its_groups() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        let listed = dir.path().join("children");
        std::fs::create_dir_all(&listed).unwrap();
        // A child in a group of its own, which starts a grandchild and is
        // then killed, as a run's child is when the run dies.
        let mut leader = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let group = leader.id() as i32;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(leader.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        std::fs::write(
            listed.join(group.to_string()),
            format!("{}\n", start_time(group).unwrap()),
        )
        .unwrap();
        nix::sys::signal::kill(Pid::from_raw(group), NixSignal::SIGKILL).unwrap();
        leader.wait().unwrap();
        assert_eq!(group_members(group), [grandchild], "the orphan lives on");

        let killed = Children::adopt(&listed).await.unwrap();
        assert_eq!(killed, [group]);
        assert!(group_members(group).is_empty());
        // Nothing is listed any more, and a second look kills nothing.
        assert!(listed.read_dir().unwrap().next().is_none());
        assert!(reap(&listed).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_listed_group_whose_number_was_taken_again_is_left_alone() {
        use std::os::unix::process::CommandExt as _;
        let dir = tempfile::tempdir().unwrap();
        // A live group leader whose start time is not the recorded one:
        // the number belongs to another process now.
        let mut other = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let group = other.id() as i32;
        std::fs::write(dir.path().join(group.to_string()), "1\n").unwrap();
        let killed = reap(dir.path()).await.unwrap();
        assert!(killed.is_empty());
        assert_eq!(
            group_members(group),
            [group],
            "someone else's process was killed"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn secrets_are_masked_in_the_logged_command() {
        let cmd = Cmd::new("psql")
            .arg("--host")
            .arg("x y")
            .secret_arg("hunter2");
        assert_eq!(cmd.display(), "psql --host 'x y' ****");
    }
}
