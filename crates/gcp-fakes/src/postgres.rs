//! The PostgreSQL server behind the Cloud SQL Admin fake: a scratch
//! cluster in the stand-ins' work dir, reached only through a unix socket
//! there (the Admin API is the only way in, as for a private-IP instance),
//! driven with `psql`. PostgreSQL refuses to run as root, so when we are
//! root, `initdb` and `pg_ctl` run as `postgres` through `runuser`.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use anyhow::{Context, Result, bail};
use tokio::process::Command;

const SERVER_USER: &str = "postgres";

/// The user Cloud SQL runs CSV exports as: `instances.export` has no user
/// field (sqladmin.v1.json `ExportContext`, unlike `ImportContext.importUser`),
/// and Cloud SQL for PostgreSQL's system user for CSV import and export is
/// `cloudsqlimportexport` (the system users table of "About PostgreSQL
/// users and roles", https://cloud.google.com/sql/docs/postgres/users#cloud_sql_system_users_and_roles,
/// which we could read only as others quote it; `\du` on an instance shows
/// it as "Create role, Create DB", member of `cloudsqlsuperuser`, no
/// superuser). It owns nothing of ours, so it reads a table only through a
/// grant: the stand-in runs exports as such a role.
pub const EXPORT_USER: &str = "cloudsqlimportexport";

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
}

/// Finds PostgreSQL's server programs: on PATH, else Debian's versioned dirs.
fn bin_dir() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("PostgreSQL is not installed (no initdb)\nhint: apt-get install postgresql")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program args…`, as the server user when we are root.
fn server_command(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", SERVER_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Runs `cmd`, capturing its output; on failure, the error quotes its stderr.
pub async fn run(cmd: &mut Command, what: &str) -> Result<Output> {
    cmd.stdout(Stdio::piped());
    run_with_stdout(cmd, what).await
}

/// [`run`] for a command whose stdout the caller has set (a file).
/// Tokio's `output()` would replace it with a pipe.
pub async fn run_with_stdout(cmd: &mut Command, what: &str) -> Result<Output> {
    let child = cmd
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    let output = child
        .wait_with_output()
        .await
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

impl Postgres {
    /// Initializes a cluster in `dir/data` (if needed) and starts it,
    /// listening on a unix socket in `dir` only. `dir`'s parents must be
    /// traversable by the server user.
    pub async fn start(dir: &Path) -> Result<Postgres> {
        let pg = Postgres {
            dir: dir.to_owned(),
            bin: bin_dir()?,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        if is_root() {
            let user = nix::unistd::User::from_name(SERVER_USER)?
                .context("as root, PostgreSQL runs as user `postgres`, which does not exist\nhint: apt-get install postgresql")?;
            nix::unistd::chown(dir, Some(user.uid), Some(user.gid))?;
        }
        let data = dir.join("data");
        if !data.join("PG_VERSION").is_file() {
            run(
                server_command(&pg.bin.join("initdb"))
                    .arg("-D")
                    .arg(&data)
                    .args([
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-instructions",
                    ])
                    .env("LC_ALL", "C"),
                "initdb",
            )
            .await?;
        }
        let options: OsString = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off -c synchronous_commit=off",
            dir.display()
        )
        .into();
        run(
            server_command(&pg.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(options)
                .arg("-l")
                .arg(dir.join("server.log"))
                .args(["-w", "start"]),
            "pg_ctl start",
        )
        .await?;
        Ok(pg)
    }

    /// `psql` connected to `database`, stopping at the first error.
    pub fn psql(&self, database: &str, user: &str) -> Command {
        let psql = if self.bin.join("psql").is_file() {
            self.bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let mut cmd = Command::new(psql);
        cmd.arg("-h").arg(&self.dir).args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-U",
            user,
        ]);
        cmd
    }

    /// Creates a database and a role (no password: the socket trusts), if
    /// missing, and the export user [`EXPORT_USER`].
    pub async fn ensure_database(&self, database: &str, user: &str) -> Result<()> {
        for role in [user, EXPORT_USER] {
            self.ensure_role(role).await?;
        }
        let exists = run(
            self.psql("postgres", "postgres").args([
                "-tA",
                "-c",
                &format!("SELECT 1 FROM pg_database WHERE datname = '{database}'"),
            ]),
            "psql",
        )
        .await?;
        if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
            run(
                self.psql("postgres", "postgres").args([
                    "-c",
                    &format!("CREATE DATABASE \"{database}\" OWNER \"{user}\""),
                ]),
                "CREATE DATABASE",
            )
            .await?;
        }
        Ok(())
    }

    /// A login role with no superuser rights, if missing.
    async fn ensure_role(&self, user: &str) -> Result<()> {
        let exists = run(
            self.psql("postgres", "postgres").args([
                "-tA",
                "-c",
                &format!("SELECT 1 FROM pg_roles WHERE rolname = '{user}'"),
            ]),
            "psql",
        )
        .await?;
        if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
            run(
                self.psql("postgres", "postgres")
                    .args(["-c", &format!("CREATE ROLE \"{user}\" LOGIN")]),
                "CREATE ROLE",
            )
            .await?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", SERVER_USER, "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
