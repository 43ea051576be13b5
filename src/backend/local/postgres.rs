//! The private PostgreSQL server of the local target.
//!
//! `infra up` runs `initdb` into the state dir and starts the server on a
//! free port on 127.0.0.1 and a unix socket beside the data directory, with
//! scram-sha-256 password authentication and a generated password kept in a
//! 0600 file. PostgreSQL refuses to run as root, so when we are root the
//! server runs as the unprivileged `postgres` user, who must be able to
//! traverse every parent directory of its files. When the state dir sits
//! under a directory closed to that user (a clone in root's 0700 home, as in
//! container images), the server's files go to a `postgres`-owned directory
//! under `/var/lib/infra/` instead, recorded in `<state>/postgres.location`,
//! rather than opening up the user's directories.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::distr::{Alphanumeric, SampleString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{server, sql};
use crate::process::{Cmd, Failed};
use crate::tools::{self, Tool};

/// The unprivileged user the server runs as when `infra` runs as root.
const SERVER_USER: &str = "postgres";

/// Where the server's files go when the state dir is closed to the server user.
const OUTSIDE_BASE: &str = "/var/lib/infra";

/// The state dir's record of a server directory outside it.
pub const LOCATION_FILE: &str = "postgres.location";

/// Where a socket path must fit (`sun_path` is 108 bytes, with the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The local server's files under the state dir, and how to run it.
pub struct LocalPostgres {
    /// `<state>/postgres`, or the directory `postgres.location` names: owned
    /// by the server user; holds the data directory, the socket and the log.
    dir: PathBuf,
    /// `<state>/postgres.location`, written when `dir` is outside the state dir.
    location_file: PathBuf,
    /// `<state>/postgres/data`
    data: PathBuf,
    /// `<state>/postgres.password`, 0600, owned by the caller.
    password_file: PathBuf,
    user: String,
    database: String,
    /// The configured port; 0 picks a free one.
    port: u16,
}

/// What `status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    NotInitialized,
    Stopped,
    Running { port: u16 },
}

impl LocalPostgres {
    pub fn new(state_dir: &Path, user: &str, database: &str, port: u16) -> LocalPostgres {
        let location_file = state_dir.join(LOCATION_FILE);
        let dir = server_dir(state_dir, &location_file, server_user());
        LocalPostgres {
            data: dir.join("data"),
            dir,
            location_file,
            password_file: state_dir.join("postgres.password"),
            user: user.to_owned(),
            database: database.to_owned(),
            port,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port `database.port` asks for; 0 picks a free one.
    pub fn wanted_port(&self) -> u16 {
        self.port
    }

    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// Whether the server's files live outside the state dir.
    pub fn is_outside(&self) -> bool {
        self.location_file.parent() != self.dir.parent()
    }

    fn run_as(&self) -> Option<&'static str> {
        server_user()
    }

    fn pg_ctl(&self) -> Result<Cmd> {
        Ok(Cmd::new(tools::find(Tool::PgCtl)?)
            .as_user(self.run_as())
            .arg("-D")
            .arg(&self.data))
    }

    pub fn is_initialized(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }

    /// Whether the server is initialized, and running on which port.
    pub async fn state(&self) -> Result<ServerState> {
        if !self.is_initialized() {
            return Ok(ServerState::NotInitialized);
        }
        match self.pg_ctl()?.arg("status").run().await {
            Ok(_) if self.postmaster_died() => Ok(ServerState::Stopped),
            Ok(_) => Ok(ServerState::Running {
                port: self.configured_port()?,
            }),
            // pg_ctl status: 3 = not running, 4 = no accessible data directory.
            Err(e) if matches!(e.downcast_ref::<Failed>(), Some(f) if f.code == Some(3)) => {
                Ok(ServerState::Stopped)
            }
            Err(e) => Err(e.context("cannot tell whether the local PostgreSQL server is running")),
        }
    }

    /// Initializes the cluster if needed, starts the server if it is not
    /// running, and creates the database. Running it again reuses the server.
    pub async fn ensure_running(&self) -> Result<u16> {
        if !self.is_initialized() {
            self.init().await?;
        }
        let port = match self.state().await? {
            ServerState::Running { port } => {
                tracing::info!("reusing the PostgreSQL server on port {port}");
                port
            }
            _ => self.start().await?,
        };
        self.create_database(port).await?;
        Ok(port)
    }

    async fn init(&self) -> Result<()> {
        let initdb = tools::find(Tool::Initdb)?;
        let run_as = self.run_as();
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        // The socket lives here: only the server's user may enter.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", self.dir.display()))?;
        let socket = self.dir.join(".s.PGSQL.65535");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "the state dir's path is too long for PostgreSQL's unix socket ({} bytes, at most {MAX_SOCKET_PATH})\nhint: use a shorter --state-dir",
                socket.as_os_str().len()
            );
        }
        if let Some(user) = run_as {
            server_account(user)?;
            if self.is_outside() {
                std::fs::write(&self.location_file, format!("{}\n", self.dir.display()))
                    .with_context(|| format!("cannot write {}", self.location_file.display()))?;
                tracing::info!(
                    "the state dir is closed to the `{user}` user, so the server's files live in {}",
                    self.dir.display()
                );
            } else {
                let blocked = closed_ancestors(&self.dir);
                if !blocked.is_empty() {
                    return Err(unreachable_error(&self.dir, user, &blocked));
                }
            }
            hand_over(&self.dir, user)?;
        }

        let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
        server::write_private(&self.password_file, &password)?;
        // initdb reads the password from a file the server user can read;
        // it lives only as long as initdb runs.
        let pwfile = self.dir.join(".initdb-password");
        server::write_private(&pwfile, &password)?;
        if let Some(user) = run_as {
            hand_over(&pwfile, user)?;
        }
        let result = Cmd::new(initdb)
            .as_user(run_as)
            .arg("-D")
            .arg(&self.data)
            .arg("-U")
            .arg(&self.user)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ])
            .env("LC_ALL", "C")
            .run()
            .await;
        let _ = std::fs::remove_file(&pwfile);
        result.context("initdb failed")?;

        let conf = self.data.join("postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .with_context(|| format!("cannot open {}", conf.display()))?;
        writeln!(
            file,
            "\n# Written by infra: the server's address and port.\ninclude 'infra.conf'"
        )?;
        Ok(())
    }

    /// Whether the server's pid file names a process that has died but was
    /// never reaped: a killed server whose parent (the init of a container)
    /// does not collect zombies. `pg_ctl status` counts a zombie as running,
    /// and the server refuses to start over its pid file.
    fn postmaster_died(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.data.join("postmaster.pid")) else {
            return false;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
        else {
            return false;
        };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }

    /// Writes `infra.conf` with the port and starts the server.
    async fn start(&self) -> Result<u16> {
        if self.postmaster_died() {
            let pid_file = self.data.join("postmaster.pid");
            tracing::warn!(
                "the PostgreSQL server in {} was killed; starting it again (it recovers from its log)",
                self.data.display()
            );
            std::fs::remove_file(&pid_file)
                .with_context(|| format!("cannot remove the stale {}", pid_file.display()))?;
            // Its socket and the socket's lock file name the dead pid too.
            for entry in std::fs::read_dir(&self.dir)?.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".s.PGSQL.") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let port = self.pick_port()?;
        let conf = format!(
            "listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             # A scratch server whose source of truth is the raw CSV: favour load speed.\n\
             synchronous_commit = off\n\
             wal_level = minimal\n\
             max_wal_senders = 0\n\
             max_wal_size = '1GB'\n",
            dir = self.dir.display()
        );
        let path = self.data.join("infra.conf");
        std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(user) = self.run_as() {
            hand_over(&path, user)?;
        }
        let log = self.dir.join("server.log");
        let started = self
            .pg_ctl()?
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .run()
            .await;
        if let Err(e) = started {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(10).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(e.context(format!(
                "the local PostgreSQL server did not start on port {port}; its log ({}) ends:\n{}",
                log.display(),
                tail.join("\n")
            )));
        }
        tracing::info!("PostgreSQL is listening on 127.0.0.1:{port}");
        Ok(port)
    }

    /// The port to listen on, chosen as every local server chooses it.
    fn pick_port(&self) -> Result<u16> {
        server::pick_port(self.port, self.configured_port().ok(), "database.port")
    }

    fn configured_port(&self) -> Result<u16> {
        let path = self.data.join("infra.conf");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        text.lines()
            .find_map(|line| line.strip_prefix("port = ")?.trim().parse().ok())
            .with_context(|| format!("no port in {}", path.display()))
    }

    fn password(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.password_file).with_context(|| {
            format!(
                "cannot read the local database password from {}\nhint: run `infra up` first",
                self.password_file.display()
            )
        })?;
        Ok(text.trim().to_owned())
    }

    /// How to connect to `database` on the running server.
    pub fn connect_options(&self, port: u16) -> Result<PgConnectOptions> {
        Ok(PgConnectOptions::new()
            .host("127.0.0.1")
            .port(port)
            .username(&self.user)
            .password(&self.password()?)
            .database(&self.database)
            .ssl_mode(PgSslMode::Disable)
            .application_name("infra"))
    }

    /// How to connect to the running server, or an error that says to run `up`.
    pub async fn connect_options_running(&self) -> Result<PgConnectOptions> {
        match self.state().await? {
            ServerState::Running { port } => self.connect_options(port),
            ServerState::Stopped => bail!(
                "the local PostgreSQL server in {} is not running\nhint: run `infra up` to start it",
                self.dir.display()
            ),
            ServerState::NotInitialized => bail!(
                "the local target is not provisioned (no PostgreSQL server in {})\nhint: run `infra up` first",
                self.dir.display()
            ),
        }
    }

    async fn create_database(&self, port: u16) -> Result<()> {
        let options = self.connect_options(port)?.database("postgres");
        let mut conn = PgConnection::connect_with(&options)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL on 127.0.0.1:{port}"))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&self.database)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let sql = format!("CREATE DATABASE {}", sql::ident(&self.database));
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .with_context(|| format!("cannot create database {}", self.database))?;
        }
        conn.close().await?;
        Ok(())
    }

    /// Stops the server if it runs. Stopping a stopped server is not an error.
    pub async fn stop(&self) -> Result<()> {
        if let ServerState::Running { .. } = self.state().await? {
            self.pg_ctl()?
                .args(["-m", "fast", "-w", "stop"])
                .run()
                .await
                .context("cannot stop the local PostgreSQL server")?;
        }
        Ok(())
    }
}

/// The user the server runs as: `postgres` when we are root, else ourselves.
fn server_user() -> Option<&'static str> {
    nix::unistd::geteuid().is_root().then_some(SERVER_USER)
}

/// Where the server's files are: the recorded location, else
/// `<state>/postgres`, unless the server runs as another user who cannot
/// reach it there and it has not been initialized there already.
fn server_dir(state_dir: &Path, location_file: &Path, run_as: Option<&str>) -> PathBuf {
    if let Ok(text) = std::fs::read_to_string(location_file)
        && !text.trim().is_empty()
    {
        return PathBuf::from(text.trim());
    }
    let inside = state_dir.join("postgres");
    if run_as.is_none()
        || inside.join("data/PG_VERSION").exists()
        || closed_ancestors(&inside).is_empty()
    {
        return inside;
    }
    // The name depends only on the state dir, so the same state dir finds
    // the same directory even before the location file is written.
    let key = crc32c::crc32c(state_dir.as_os_str().as_encoded_bytes());
    Path::new(OUTSIDE_BASE).join(format!("postgres-{key:08x}"))
}

/// The server user's account, or an error that says how to get one.
fn server_account(user: &str) -> Result<nix::unistd::User> {
    nix::unistd::User::from_name(user)?.with_context(|| {
        format!(
            "PostgreSQL cannot run as root, and there is no `{user}` user to run it as\nhint: install the postgresql package (it creates the user), or run infra as a normal user"
        )
    })
}

/// The directories above `dir` that other users cannot traverse.
fn closed_ancestors(dir: &Path) -> Vec<String> {
    dir.ancestors()
        .skip(1)
        .filter(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(|d| d.display().to_string())
        .collect()
}

/// The error when the server user cannot reach its directory, which only
/// happens when the directory was recorded or initialized there earlier.
pub fn unreachable_error(dir: &Path, user: &str, blocked: &[String]) -> anyhow::Error {
    anyhow::anyhow!(
        "the `{user}` user, who runs PostgreSQL for root, cannot reach {} because these directories are closed to other users: {}\nhint: `infra down --yes` and `infra up` again keep the server's files under {OUTSIDE_BASE} instead; or `chmod o+x {}`",
        dir.display(),
        blocked.join(", "),
        blocked.join(" ")
    )
}

/// Gives `path` to the server user.
fn hand_over(path: &Path, user: &str) -> Result<()> {
    let account = server_account(user)?;
    std::os::unix::fs::chown(path, Some(account.uid.as_raw()), Some(account.gid.as_raw()))
        .with_context(|| format!("cannot give {} to the `{user}` user", path.display()))
}
