//! The local target's long-lived Spark Connect server.
//!
//! Starting Spark costs about 5 s per `spark-submit`, more than the jobs
//! themselves on sample data. `infra up` therefore starts one Spark Connect
//! server (from the pinned pyspark wheel) as it starts PostgreSQL, and `run`
//! sends both jobs to it, as the GCP target sends both to one warm cluster.
//!
//! - It listens on 127.0.0.1 only (Spark's default is every interface), on
//!   a port chosen like PostgreSQL's: `spark.connect_port`, else the last
//!   one if still free, else a free one.
//! - Clients must present a generated token (Spark's pre-shared-key
//!   authentication). The token lives in a 0600 file and reaches the
//!   server and the jobs through the environment, never a command line.
//! - `spark-daemon.sh` (what Spark's own `start-connect-server.sh` calls)
//!   detaches it and writes its pid file; `down` stops it.
//! - `run` finds a server that died, or that no longer answers, and starts
//!   a fresh one, saying so. While a job runs, the server is watched
//!   (`heartbeat`): a server that dies or stops answering fails the step
//!   within seconds, with the end of its log, instead of leaving the
//!   pyspark client retrying.
//!
//! ```text
//! <state>/spark/            0700
//!   token                   0600, the pre-shared key
//!   port                    the port it was started on
//!   warm                    the pid of the server `up` last warmed up
//!   pid/ log/               spark-daemon.sh's pid file and the server's log
//! ```

use std::collections::BTreeMap;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::distr::{Alphanumeric, SampleString};

use super::heartbeat::{self, Lost};
use super::server;
use crate::process::Cmd;

/// The server's main class, as `start-connect-server.sh` starts it.
const SERVER_CLASS: &str = "org.apache.spark.sql.connect.service.SparkConnectServer";

/// `SPARK_IDENT_STRING`: part of the pid and log file names.
const IDENT: &str = "infra";

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a stopping server may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a killed server may take to go.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// `spark.heartbeat_timeout_secs`'s default.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `infra` runs the server, and with what.
pub struct ConnectServer {
    dir: PathBuf,
    spark_home: Option<PathBuf>,
    python: PathBuf,
    /// The configured port; 0 picks a free one.
    port: u16,
    master: String,
    driver_memory: String,
    /// Applied after [`small_job_defaults`], so the user's win.
    properties: BTreeMap<String, String>,
    /// Spark's scratch space (`spark.local.dir`).
    scratch: PathBuf,
    /// How long the server may leave heartbeats unanswered.
    heartbeat: Duration,
}

/// How a client reaches the running server.
#[derive(Clone)]
pub struct Endpoint {
    pub pid: i32,
    pub port: u16,
    pub token: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("pid", &self.pid)
            .field("port", &self.port)
            .field("token", &"****")
            .finish()
    }
}

impl Endpoint {
    /// `SPARK_REMOTE` for the jobs. pyspark sends a token without TLS only
    /// to a host named `localhost` (gRPC local credentials).
    pub fn remote(&self) -> String {
        format!("sc://localhost:{}", self.port)
    }
}

/// What `status` and `up` see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Never started in this state dir, or stopped by `down`.
    NotStarted,
    /// Was started, and its process is gone (crashed, killed, rebooted).
    Dead,
    Running {
        pid: i32,
        port: u16,
    },
}

/// Spark settings for jobs of a few million rows on one machine: few
/// shuffle partitions (not 200, which wrote 200 files for a thousand rows),
/// adaptive execution to coalesce them further, no web UI, no progress bar.
pub fn small_job_defaults() -> BTreeMap<String, String> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    [
        ("spark.sql.shuffle.partitions", cores.max(2).to_string()),
        ("spark.default.parallelism", cores.max(2).to_string()),
        ("spark.sql.adaptive.enabled", "true".into()),
        (
            "spark.sql.adaptive.coalescePartitions.enabled",
            "true".into(),
        ),
        ("spark.ui.enabled", "false".into()),
        ("spark.ui.showConsoleProgress", "false".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl ConnectServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state_dir: &Path,
        spark_home: Option<PathBuf>,
        python: PathBuf,
        port: u16,
        master: &str,
        driver_memory: &str,
        properties: &BTreeMap<String, String>,
    ) -> ConnectServer {
        ConnectServer {
            dir: state_dir.join("spark"),
            spark_home,
            python,
            port,
            master: master.to_owned(),
            driver_memory: driver_memory.to_owned(),
            properties: properties.clone(),
            scratch: state_dir.join("tmp/spark"),
            heartbeat: HEARTBEAT_TIMEOUT,
        }
    }

    /// How long the server may leave heartbeats unanswered before it is
    /// taken for stuck (`spark.heartbeat_timeout_secs`).
    pub fn heartbeat_timeout(mut self, limit: Duration) -> ConnectServer {
        self.heartbeat = limit;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("log")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir
            .join("pid")
            .join(format!("spark-{IDENT}-{SERVER_CLASS}-1.pid"))
    }

    fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    fn port_file(&self) -> PathBuf {
        self.dir.join("port")
    }

    fn warm_file(&self) -> PathBuf {
        self.dir.join("warm")
    }

    /// Whether the running server has run `up`'s warm-up jobs. The mark
    /// is the server's pid, so a server started again (by `run`, after a
    /// crash) reads as cold.
    pub fn is_warm(&self) -> Result<bool> {
        let ServerState::Running { pid, .. } = self.state()? else {
            return Ok(false);
        };
        Ok(std::fs::read_to_string(self.warm_file())
            .is_ok_and(|text| text.trim() == pid.to_string()))
    }

    /// Marks the running server as warmed up (see [`is_warm`](Self::is_warm)).
    pub fn mark_warm(&self) -> Result<()> {
        if let ServerState::Running { pid, .. } = self.state()? {
            std::fs::write(self.warm_file(), format!("{pid}\n"))
                .with_context(|| format!("cannot write {}", self.warm_file().display()))?;
        }
        Ok(())
    }

    /// The settings the running server was started with.
    fn args_file(&self) -> PathBuf {
        self.dir.join("args")
    }

    /// spark-submit's arguments for the server, but for the port: what the
    /// settings ask for now. A running server started with others is
    /// restarted by `up` and `run`.
    fn server_args(&self) -> Vec<String> {
        let mut conf = small_job_defaults();
        conf.extend(self.properties.clone());
        for (key, value) in [
            ("spark.connect.grpc.binding.address", "127.0.0.1".to_owned()),
            ("spark.local.dir", self.scratch.display().to_string()),
            ("spark.driver.host", "127.0.0.1".to_owned()),
            ("spark.driver.bindAddress", "127.0.0.1".to_owned()),
        ] {
            conf.insert(key.to_owned(), value);
        }
        let mut args = vec![
            "--name".to_owned(),
            "infra Spark Connect server".to_owned(),
            "--master".to_owned(),
            self.master.clone(),
            "--driver-memory".to_owned(),
            self.driver_memory.clone(),
        ];
        for (key, value) in conf {
            args.push("--conf".to_owned());
            args.push(format!("{key}={value}"));
        }
        args
    }

    /// Whether the running server was started with the settings asked for
    /// now; when not, `up` and `run` restart it (and `up`'s plan says so).
    pub fn started_with_current_settings(&self) -> bool {
        std::fs::read_to_string(self.args_file())
            .is_ok_and(|text| text == self.server_args().join("\n"))
    }

    /// Whether the server runs, found by looking (pid file, process, port).
    pub fn state(&self) -> Result<ServerState> {
        let Some(pid) = self.pid()? else {
            return Ok(ServerState::NotStarted);
        };
        if !is_server_process(pid) {
            return Ok(ServerState::Dead);
        }
        Ok(ServerState::Running {
            pid,
            port: self.recorded_port()?,
        })
    }

    fn pid(&self) -> Result<Option<i32>> {
        let path = self.pid_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{} does not hold a pid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn recorded_port(&self) -> Result<u16> {
        let path = self.port_file();
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a port", path.display()))
    }

    fn token(&self) -> Result<String> {
        let path = self.token_file();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read the Spark Connect token from {}\nhint: run `infra up` first",
                path.display()
            )
        })?;
        Ok(text.trim().to_owned())
    }

    /// For `up`: starts the server unless it runs, and waits until it
    /// accepts connections. Running it again reuses the server.
    pub async fn ensure_running(&self) -> Result<Endpoint> {
        match self.state()? {
            ServerState::Running { .. } if !self.started_with_current_settings() => {
                crate::ui::detail(
                    "the Spark settings changed since the Spark Connect server started: restarting it",
                );
                self.stop().await?;
                self.start().await
            }
            ServerState::Running { pid, port } => {
                if !heartbeat::answers(port, self.heartbeat).await {
                    crate::ui::warn(format!(
                        "the local Spark Connect server (pid {pid}) answered no heartbeat for {}s{}: stopping it and starting a fresh one",
                        self.heartbeat.as_secs(),
                        stopped_note(pid)
                    ));
                    self.stop().await?;
                    return self.start().await;
                }
                tracing::info!("reusing the Spark Connect server on port {port}");
                Ok(Endpoint {
                    pid,
                    port,
                    token: self.token()?,
                })
            }
            ServerState::NotStarted | ServerState::Dead => self.start().await,
        }
    }

    /// For `run`: like [`ensure_running`](Self::ensure_running), but a
    /// server that is gone although `up` started it is restarted with a
    /// message, and a state dir that was never provisioned is an error.
    pub async fn ensure_running_for_run(&self) -> Result<Endpoint> {
        match self.state()? {
            ServerState::Running { .. } => self.ensure_running().await,
            ServerState::Dead => {
                crate::ui::warn(format!(
                    "the local Spark Connect server is not running (it crashed or was killed; its log is in {}): starting it again",
                    self.log_dir().display()
                ));
                self.start().await
            }
            ServerState::NotStarted => {
                if !self.token_file().is_file() {
                    bail!(
                        "the local Spark Connect server was never started in {}\nhint: run `infra up` first",
                        self.dir.display()
                    );
                }
                crate::ui::warn("the local Spark Connect server is stopped: starting it again");
                self.start().await
            }
        }
    }

    async fn start(&self) -> Result<Endpoint> {
        let spark_home = self
            .spark_home
            .as_ref()
            .context("the pyspark venv is not built yet\nhint: run `infra up` first")?;
        for dir in [
            &self.dir,
            &self.dir.join("pid"),
            &self.log_dir(),
            &self.scratch,
        ] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", self.dir.display()))?;
        let token = match self.token() {
            Ok(token) if !token.is_empty() => token,
            _ => {
                let token = Alphanumeric.sample_string(&mut rand::rng(), 40);
                server::write_private(&self.token_file(), &token)?;
                token
            }
        };
        let _ = std::fs::remove_file(self.pid_file());
        let port = self.pick_port()?;
        std::fs::write(self.port_file(), format!("{port}\n"))
            .with_context(|| format!("cannot write {}", self.port_file().display()))?;
        let args = self.server_args();
        std::fs::write(self.args_file(), args.join("\n"))
            .with_context(|| format!("cannot write {}", self.args_file().display()))?;

        let started = Instant::now();
        let mut cmd = Cmd::new(spark_home.join("sbin/spark-daemon.sh"))
            .args(["submit", SERVER_CLASS, "1"])
            .args(&args)
            .arg("--conf")
            .arg(format!("spark.connect.grpc.binding.port={port}"));
        cmd = cmd
            .env("SPARK_HOME", spark_home)
            .env("SPARK_PID_DIR", self.dir.join("pid"))
            .env("SPARK_LOG_DIR", self.log_dir())
            .env("SPARK_IDENT_STRING", IDENT)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env("SPARK_CONNECT_AUTHENTICATE_TOKEN", &token)
            .env("PYSPARK_PYTHON", &self.python)
            .env_remove("SPARK_REMOTE")
            .env_remove("PYTHONPATH");
        cmd.run()
            .await
            .context("cannot start the local Spark Connect server")?;
        let pid = self.wait_ready(port).await?;
        tracing::info!(
            "Spark Connect is listening on 127.0.0.1:{port} after {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Ok(Endpoint { pid, port, token })
    }

    /// Waits until the server answers a heartbeat on `port`, and returns
    /// its pid, or fails with the end of its log when its process dies or
    /// [`START_TIMEOUT`] passes.
    async fn wait_ready(&self, port: u16) -> Result<i32> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let pid = self.pid()?.filter(|pid| is_server_process(*pid));
            if let Some(pid) = pid
                && heartbeat::answers(port, Duration::from_secs(1)).await
            {
                return Ok(pid);
            }
            if pid.is_none() || Instant::now() > deadline {
                let why = if pid.is_some() {
                    format!(
                        "did not answer within {}s{}",
                        START_TIMEOUT.as_secs(),
                        pid.map(stopped_note).unwrap_or_default()
                    )
                } else {
                    "exited".to_owned()
                };
                if let Some(pid) = pid {
                    kill_and_wait(pid).await;
                }
                bail!(
                    "the local Spark Connect server on port {port} {why}; its log ends:\n{}",
                    self.log_tail(15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `work` (a job, the server's client) while watching the server
    /// at `endpoint`. If the server dies or stops answering first, `work`
    /// is dropped (which stops the client), a stuck server is killed so
    /// that the next run starts a fresh one, and the error says which, with
    /// the end of the server's log.
    pub async fn watching<T>(
        &self,
        endpoint: &Endpoint,
        job: &str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let pid = endpoint.pid;
        let lost = tokio::select! {
            done = work => match done {
                // A client that gave up because its server died: the
                // server's death is the cause to report.
                Err(_) if !is_server_process(pid) => Lost::Died,
                done => return done,
            },
            lost = heartbeat::watch(pid, endpoint.port, self.heartbeat, is_server_process) => lost,
        };
        let what = match lost {
            Lost::Died => {
                format!("the local Spark Connect server (pid {pid}) died while Spark job {job} ran")
            }
            Lost::Silent(limit) => {
                let note = stopped_note(pid);
                kill_and_wait(pid).await;
                format!(
                    "the local Spark Connect server (pid {pid}) answered no heartbeat for {}s{note} while Spark job {job} ran, so it was killed",
                    limit.as_secs()
                )
            }
        };
        bail!(
            "{what}; its log ends:\n{}\nhint: the next `infra run` starts a fresh server; `spark.heartbeat_timeout_secs` sets how long it may stay silent",
            self.log_tail(15)
        )
    }

    fn log_tail(&self, lines: usize) -> String {
        let newest = std::fs::read_dir(self.log_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|ext| ext == "out"))
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        let Some(path) = newest else {
            return "  | (no log)".to_owned();
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        let mut out = format!("  ({})", path.display());
        for line in tail.into_iter().rev() {
            out.push_str("\n  | ");
            out.push_str(line);
        }
        out
    }

    /// The port to listen on, chosen as every local server chooses it.
    fn pick_port(&self) -> Result<u16> {
        server::pick_port(self.port, self.recorded_port().ok(), "spark.connect_port")
    }

    /// Stops the server if it runs: SIGTERM, then SIGKILL after a grace
    /// period. Stopping a stopped server is not an error.
    pub async fn stop(&self) -> Result<()> {
        if let ServerState::Running { pid, .. } = self.state()? {
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, Signal::SIGTERM);
            // A stopped server acts on SIGTERM only once continued.
            let _ = kill(pid, Signal::SIGCONT);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while is_server_process(pid.as_raw()) {
                if Instant::now() > deadline {
                    tracing::warn!("the Spark Connect server ignored SIGTERM; killing it");
                    let _ = kill(pid, Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }
}

/// ` (its process is stopped)` when `pid` is stopped (SIGSTOP, a
/// debugger), for messages about a server that does not answer.
fn stopped_note(pid: i32) -> String {
    match heartbeat::process_state(pid) {
        Some('T' | 't') => " (its process is stopped)".to_owned(),
        _ => String::new(),
    }
}

/// Kills the server `pid` (SIGKILL works on a stopped process too) and
/// waits a bounded time for it to go.
async fn kill_and_wait(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let deadline = Instant::now() + KILL_TIMEOUT;
    while is_server_process(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `pid` is alive and is a Spark Connect server (not a recycled pid).
fn is_server_process(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .windows(SERVER_CLASS.len())
            .any(|w| w == SERVER_CLASS.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_never_prints_its_token() {
        let endpoint = Endpoint {
            pid: 1,
            port: 15002,
            token: "s3cret".into(),
        };
        assert_eq!(endpoint.remote(), "sc://localhost:15002");
        assert!(!format!("{endpoint:?}").contains("s3cret"));
    }

    #[test]
    fn small_job_defaults_keep_shuffles_small_and_the_ui_off() {
        let d = small_job_defaults();
        let partitions: usize = d["spark.sql.shuffle.partitions"].parse().unwrap();
        assert!((2..200).contains(&partitions), "{partitions}");
        assert_eq!(d["spark.ui.enabled"], "false");
        assert_eq!(d["spark.sql.adaptive.enabled"], "true");
    }

    #[test]
    fn a_state_dir_without_a_server_reads_as_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let server = ConnectServer::new(
            dir.path(),
            None,
            PathBuf::from("python3"),
            0,
            "local[*]",
            "1g",
            &BTreeMap::new(),
        );
        assert_eq!(server.state().unwrap(), ServerState::NotStarted);
        // A pid file whose process is not a Spark Connect server is dead.
        std::fs::create_dir_all(server.dir().join("pid")).unwrap();
        std::fs::write(server.pid_file(), format!("{}\n", std::process::id())).unwrap();
        assert_eq!(server.state().unwrap(), ServerState::Dead);
        // Nor is a dead server warm, whatever its mark says.
        std::fs::write(server.warm_file(), format!("{}\n", std::process::id())).unwrap();
        assert!(!server.is_warm().unwrap());
    }
}
