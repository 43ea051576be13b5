//! The local target: the whole pipeline on one machine, no cloud account.
//!
//! Buckets are directories under the state dir, the database is a private
//! PostgreSQL server `infra` starts there, Spark runs from the pyspark wheel,
//! and the warehouse is an embedded DuckDB file.
//!
//! ```text
//! <state>/raw/ staging/ code/     the buckets
//! <state>/postgres/               the server (data/, socket, log, dumps in
//!                                 flight), or, as root under a directory
//!                                 closed to `postgres`,
//!                                 /var/lib/infra/postgres-<id>/ named in
//! <state>/postgres.location
//! <state>/postgres.password       0600
//! <state>/spark/                  the Spark Connect server (token, port, pid, log)
//! <state>/warehouse.duckdb        the warehouse
//! <state>/runs/                   run records (owned by the pipeline)
//! <state>/tmp/                    scratch: Spark's local dir, rejects in flight
//! <cache>/pyspark-venv-<hash>/    the Spark runtime, shared by state dirs
//! ```

pub mod bucket;
pub mod connect;
pub mod database;
pub mod duckdb;
pub mod heartbeat;
pub mod postgres;
pub mod server;
pub mod spark;
pub mod sql;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::backend::{Buckets, Target};
use crate::process::Echo;
use crate::settings::Settings;
use bucket::LocalBucket;
use connect::ConnectServer;
use database::LocalDatabase;
use duckdb::DuckDbWarehouse;
use postgres::{LocalPostgres, ServerState};
use spark::{LocalSpark, SparkRuntime};

/// The bucket directories, by role.
pub const BUCKET_ROLES: [&str; 3] = ["raw", "staging", "code"];

/// Everything `down` removes from the state dir, besides the run records.
const OWNED: [&str; 10] = [
    "raw",
    "staging",
    "code",
    "postgres",
    postgres::LOCATION_FILE,
    "postgres.password",
    "spark",
    "warehouse.duckdb",
    "warehouse.duckdb.wal",
    "tmp",
];

/// Refuses a state dir whose path the local target's tools cannot carry:
/// `spark-daemon.sh` (Spark's own script, which starts the Spark Connect
/// server) writes its log to an unquoted path, so a space makes the server
/// exit before it logs anything, and the buckets reach Spark as `file://`
/// URIs, where `#`, `?` and `%` mean something else. Refused up front, with
/// the reason, rather than failing half-way through `up` or `run`.
pub fn check_state_dir(dir: &Path) -> Result<()> {
    let Some(text) = dir.to_str() else {
        return Err(crate::exit::UsageError(format!(
            "the state dir {} is not valid UTF-8, which Spark cannot read as a file:// URI\nhint: choose another directory with --state-dir (or `state_dir` in infra.toml)",
            dir.display()
        ))
        .into());
    };
    let bad = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '#' | '?' | '%'));
    if let Some(c) = bad {
        let what = match c {
            ' ' => "a space".to_owned(),
            c if c.is_whitespace() || c.is_control() => format!("the character {c:?}"),
            c => format!("`{c}`"),
        };
        return Err(crate::exit::UsageError(format!(
            "the state dir `{text}` holds {what}, which the local target cannot use: Spark's start-up script breaks on whitespace, and `#`, `?` and `%` change the meaning of the file:// URIs Spark reads\nhint: choose a path without them with --state-dir (or `state_dir` in infra.toml)"
        ))
        .into());
    }
    Ok(())
}

pub struct Local {
    state_dir: PathBuf,
    postgres: LocalPostgres,
    runtime: SparkRuntime,
    settings: Settings,
}

/// One thing `up` will do, or found already done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub description: String,
    pub needed: bool,
}

impl Local {
    pub fn new(settings: &Settings) -> Local {
        let state_dir = settings.state_dir.clone();
        Local {
            postgres: LocalPostgres::new(
                &state_dir,
                &settings.database_user,
                &settings.database_name,
                settings.database_port,
            ),
            runtime: SparkRuntime::new(&settings.cache_dir()),
            state_dir,
            settings: settings.clone(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn postgres(&self) -> &LocalPostgres {
        &self.postgres
    }

    /// The buckets; building them touches nothing.
    pub fn buckets(&self) -> Buckets {
        let bucket = |role: &str| Box::new(LocalBucket::new(role, self.state_dir.join(role)));
        Buckets {
            raw: bucket("raw"),
            staging: bucket("staging"),
            code: bucket("code"),
        }
    }

    /// The Spark Connect server, with the runtime as it is now.
    pub fn spark_server(&self) -> ConnectServer {
        ConnectServer::new(
            &self.state_dir,
            self.runtime.spark_home(),
            self.runtime.python(),
            self.settings.spark_connect_port,
            &self.settings.spark_master,
            &self.settings.spark_driver_memory,
            &self.settings.spark_properties,
        )
        .heartbeat_timeout(secs(self.settings.spark_heartbeat_timeout_secs))
    }

    pub fn warehouse(&self) -> DuckDbWarehouse {
        DuckDbWarehouse::new(self.state_dir.join("warehouse.duckdb")).lock_wait(
            std::time::Duration::from_secs(self.settings.warehouse_lock_wait_secs.into()),
        )
    }

    /// What `up` would do, found by looking, changing nothing.
    pub async fn plan_up(&self) -> Result<Vec<Action>> {
        let mut actions = Vec::new();
        for role in BUCKET_ROLES {
            let dir = self.state_dir.join(role);
            actions.push(Action {
                description: format!("bucket {role}: directory {}", dir.display()),
                needed: !dir.is_dir(),
            });
        }
        let server = match self.postgres.state().await {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!("{e:#}");
                ServerState::NotInitialized
            }
        };
        actions.push(match server {
            ServerState::NotInitialized => Action {
                description: format!(
                    "PostgreSQL: initdb into {} and start it on {} on 127.0.0.1",
                    self.postgres.dir().display(),
                    match self.postgres.wanted_port() {
                        0 => "a free port".to_owned(),
                        port => format!("port {port}"),
                    }
                ),
                needed: true,
            },
            ServerState::Stopped => Action {
                description: format!(
                    "PostgreSQL: start the server in {}",
                    self.postgres.dir().display()
                ),
                needed: true,
            },
            ServerState::Running { port } => Action {
                description: format!("PostgreSQL: reuse the server on 127.0.0.1:{port}"),
                needed: false,
            },
        });
        actions.push(Action {
            description: format!(
                "database {} owned by user {}",
                self.settings.database_name, self.settings.database_user
            ),
            needed: !matches!(server, ServerState::Running { .. }),
        });
        actions.push(Action {
            description: format!(
                "Spark runtime: pyspark venv in {}",
                self.runtime.venv().display()
            ),
            needed: self.runtime.spark_home().is_none(),
        });
        let spark_server = self.spark_server();
        actions.push(match spark_server.state()? {
            connect::ServerState::Running { port, .. }
                if !spark_server.started_with_current_settings() =>
            {
                Action {
                    description: format!(
                        "Spark Connect: restart the server on 127.0.0.1:{port}: the Spark settings changed since it started"
                    ),
                    needed: true,
                }
            }
            connect::ServerState::Running { port, .. } => Action {
                description: format!("Spark Connect: reuse the server on 127.0.0.1:{port}"),
                needed: false,
            },
            _ => Action {
                description:
                    "Spark Connect: start a server on a free port on 127.0.0.1, with a token"
                        .to_owned(),
                needed: true,
            },
        });
        if self.settings.spark_warm_up {
            actions.push(Action {
                description: "Spark Connect: warm it up with both jobs on a small sample (not an error if it fails)"
                    .to_owned(),
                // A restarted server is cold again.
                needed: !spark_server.is_warm()? || !spark_server.started_with_current_settings(),
            });
        }
        Ok(actions)
    }

    /// Provisions the local target. Running it again reuses what is there.
    /// `phase` hears what it is doing, as words for "up stopped while …".
    pub async fn up(&self, phase: &(dyn Fn(&'static str) + Sync)) -> Result<()> {
        // Spark's Java is checked before anything is created: a machine that
        // cannot run the pipeline should not be left half provisioned.
        phase("checking Java");
        spark::check_java().await?;
        phase("creating the bucket directories");
        for role in BUCKET_ROLES.into_iter().chain(["tmp"]) {
            let dir = self.state_dir.join(role);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        phase("setting up PostgreSQL (initdb, then starting the server)");
        let port = self.postgres.ensure_running().await?;
        crate::ui::detail(format!(
            "PostgreSQL on 127.0.0.1:{port}, database {}",
            self.settings.database_name
        ));
        phase("building the pyspark runtime");
        self.runtime.ensure().await?;
        phase("starting the Spark Connect server");
        let endpoint = self.spark_server().ensure_running().await?;
        crate::ui::detail(format!("Spark Connect on 127.0.0.1:{}", endpoint.port));
        Ok(())
    }

    /// The capabilities as a plan sees them: buckets and names, nothing
    /// started or connected (the local target sends no requests to preview).
    pub fn plan_target(&self) -> Target {
        Target {
            buckets: self.buckets(),
            database: Box::new(
                self.database(
                    sqlx::postgres::PgConnectOptions::new_without_pgpass()
                        .host("127.0.0.1")
                        .database(&self.settings.database_name)
                        .username(&self.settings.database_user),
                ),
            ),
            spark: Box::new(self.spark(Echo::Quiet)),
            warehouse: Box::new(self.warehouse()),
        }
    }

    /// The server writes its dumps into its own directory.
    fn database(&self, options: sqlx::postgres::PgConnectOptions) -> LocalDatabase {
        LocalDatabase {
            options,
            export_dir: self.postgres.dir().to_path_buf(),
            deadlines: database::Deadlines {
                connect: secs(self.settings.database_connect_timeout_secs),
                statement: secs(self.settings.database_statement_timeout_secs),
            },
        }
    }

    fn spark(&self, echo: Echo) -> LocalSpark {
        LocalSpark {
            server: self.spark_server(),
            python: self.runtime.python(),
            echo,
        }
    }

    /// The capabilities, once provisioned. Errors say to run `up` when not.
    pub async fn target(&self, echo: Echo) -> Result<Target> {
        check_state_dir(&self.state_dir)?;
        let options = self.postgres.connect_options_running().await?;
        Ok(Target {
            buckets: self.buckets(),
            database: Box::new(self.database(options)),
            spark: Box::new(self.spark(echo)),
            warehouse: Box::new(self.warehouse()),
        })
    }

    /// What `down` would remove, found by looking: with `purge`, the run
    /// history (`runs/`, `reports/`) too.
    pub fn plan_down(&self, purge: bool) -> Vec<PathBuf> {
        let outside = self
            .postgres
            .is_outside()
            .then(|| self.postgres.dir().to_owned());
        let history = purge.then(|| [self.state_dir.join("runs"), self.state_dir.join("reports")]);
        OWNED
            .iter()
            .map(|name| self.state_dir.join(name))
            .chain(history.into_iter().flatten())
            .chain(outside)
            .filter(|path| path.exists())
            .collect()
    }

    /// Stops the server and removes everything `up` and `run` created, but
    /// for the run history unless `purge`. The shared pyspark venv stays:
    /// it belongs to the cache, not this state dir.
    /// `phase` hears what it is doing, as `up`'s does.
    pub async fn down(&self, purge: bool, phase: &(dyn Fn(&'static str) + Sync)) -> Result<()> {
        if self.postgres.is_initialized() {
            phase("stopping PostgreSQL");
            self.postgres.stop().await?;
        }
        phase("stopping the Spark Connect server");
        self.spark_server().stop().await?;
        phase("deleting the state dir's files");
        for path in self.plan_down(purge) {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove {}", path.display()))?;
        }
        // The state dir itself goes too, unless something else lives there.
        let _ = std::fs::remove_dir(&self.state_dir);
        Ok(())
    }

    /// Lines for `infra status`: what is provisioned.
    /// How to open psql on the running server: a `postgresql://` URL, with
    /// the password read from its file by the shell. The password itself
    /// is never printed.
    pub fn psql_command(&self, port: u16) -> String {
        format!(
            "PGPASSWORD=\"$(cat '{}')\" psql postgresql://{}@127.0.0.1:{port}/{}",
            self.postgres.password_file().display(),
            self.settings.database_user,
            self.settings.database_name
        )
    }

    pub async fn status(&self) -> Result<Vec<(String, String)>> {
        let mut lines = Vec::new();
        for role in BUCKET_ROLES {
            let dir = self.state_dir.join(role);
            let state = if dir.is_dir() {
                dir.display().to_string()
            } else {
                "absent".into()
            };
            lines.push((format!("bucket {role}"), state));
        }
        let (server, psql) = match self.postgres.state().await? {
            ServerState::NotInitialized => ("not initialized".to_owned(), None),
            ServerState::Stopped => ("stopped".to_owned(), None),
            ServerState::Running { port } => (
                format!("running on 127.0.0.1:{port}"),
                Some(self.psql_command(port)),
            ),
        };
        lines.push(("postgres".into(), server));
        if let Some(psql) = psql {
            lines.push(("psql".into(), psql));
        }
        let venv = match self.runtime.spark_home() {
            Some(_) => self.runtime.venv().display().to_string(),
            None => "not built".into(),
        };
        lines.push(("spark venv".into(), venv));
        let server = self.spark_server();
        let connect = match server.state()? {
            connect::ServerState::NotStarted => "not started".to_owned(),
            connect::ServerState::Dead => format!(
                "not running (crashed?; `infra run` restarts it; log in {})",
                server.log_dir().display()
            ),
            connect::ServerState::Running { pid, port } => {
                format!("running on 127.0.0.1:{port} (pid {pid})")
            }
        };
        lines.push(("spark connect".into(), connect));
        let warehouse = self.warehouse();
        let state = if warehouse.path().exists() {
            warehouse.path().display().to_string()
        } else {
            "absent".into()
        };
        lines.push(("warehouse".into(), state));
        Ok(lines)
    }
}

/// A setting in seconds as a duration.
fn secs(value: u32) -> std::time::Duration {
    std::time::Duration::from_secs(u64::from(value))
}
