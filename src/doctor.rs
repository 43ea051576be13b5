//! `infra doctor`: is everything the target needs here?
//!
//! Each [`Check`] says what it looked at, what it found, and for a gap the
//! command that fixes it. The checks only look: they install, start and
//! change nothing, so `doctor` is safe to run anywhere, any time.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::gcp::auth::{self, Found, TokenSource as _};
use crate::backend::gcp::{Clients, Endpoints};
use crate::backend::local::postgres::LocalPostgres;
use crate::backend::local::spark::{self, SparkRuntime};
use crate::process::Cmd;
use crate::settings::{Settings, TargetKind, env_var};
use crate::tools::{self, Tool};

/// Free space the local target wants: the pyspark venv (~0.5 GiB), the
/// data and its copies in the buckets, PostgreSQL and Spark's scratch.
const MIN_FREE_BYTES: u64 = 2 << 30;

/// The oldest terraform the gcp target's root module accepts.
/// Write-only attributes (`password_wo`) and ephemeral resources: 1.11.
const MIN_TERRAFORM: (u32, u32) = (1, 11);

/// One thing checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub status: Status,
    /// What was found: a path, a version, an amount.
    pub found: String,
    /// How to fix a gap.
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Missing,
    /// Not checked from here (no network, say); not counted as a gap.
    Skipped,
}

impl Check {
    fn ok(name: &str, found: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: Status::Ok,
            found: found.into(),
            fix: None,
        }
    }

    fn skipped(name: &str, found: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: Status::Skipped,
            found: found.into(),
            fix: None,
        }
    }

    fn missing(name: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            status: Status::Missing,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }

    /// A check from an error whose message ends in a `hint:` line.
    fn from_error(name: &str, e: &anyhow::Error) -> Check {
        let text = format!("{e:#}");
        match text.split_once("\nhint: ") {
            Some((found, fix)) => Check::missing(name, found, fix),
            None => Check::missing(name, text, "see the message above"),
        }
    }
}

/// Every check for the settings' target.
pub async fn run(settings: &Settings) -> Vec<Check> {
    match settings.target {
        TargetKind::Local => local(settings).await,
        TargetKind::Gcp => gcp(settings).await,
    }
}

async fn local(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(
        match tools::find(Tool::Initdb).and_then(|_| tools::find(Tool::PgCtl)) {
            Ok(pg_ctl) => Check::ok("PostgreSQL server", dir_of(&pg_ctl)),
            Err(e) => Check::from_error("PostgreSQL server", &e.into()),
        },
    );
    checks.push(match spark::check_java().await {
        Ok(major) => Check::ok("Java 17 or newer", format!("Java {major}")),
        Err(e) => Check::from_error("Java 17 or newer", &e),
    });
    let runtime = SparkRuntime::new(&settings.cache_dir());
    checks.push(match runtime.spark_home() {
        Some(_) => Check::ok("pyspark venv", runtime.venv().display().to_string()),
        None => match tools::find(Tool::Python3) {
            Ok(_) => Check::missing(
                "pyspark venv",
                format!("not built ({})", runtime.venv().display()),
                "run `infra up`: it builds the venv once, in about a minute (pip needs to reach PyPI)",
            ),
            Err(e) => Check::from_error("pyspark venv", &e.into()),
        },
    });
    let path_check = "state dir path";
    checks.push(
        match crate::backend::local::check_state_dir(&settings.state_dir) {
            Ok(()) => Check::ok(path_check, settings.state_dir.display().to_string()),
            Err(e) => Check::from_error(path_check, &e),
        },
    );
    checks.push(disk(&settings.state_dir, "free disk (state dir)"));
    checks.push(disk(&settings.cache_dir(), "free disk (cache dir)"));
    checks.push(port(settings).await);
    if nix::unistd::geteuid().is_root() {
        checks.push(match nix::unistd::User::from_name("postgres") {
            Ok(Some(_)) => Check::ok(
                "`postgres` user (runs the server for root)",
                "present",
            ),
            _ => Check::missing(
                "`postgres` user (runs the server for root)",
                "absent",
                "install the postgresql package (it creates the user), or run infra as a normal user",
            ),
        });
    }
    checks
}

fn dir_of(path: &Path) -> String {
    path.parent().unwrap_or(path).display().to_string()
}

/// Free space where `dir` is, or would be created.
fn disk(dir: &Path, name: &str) -> Check {
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.blocks_available() * stat.fragment_size();
            let found = format!("{} free in {}", gib(free), existing.display());
            if free >= MIN_FREE_BYTES {
                Check::ok(name, found)
            } else {
                Check::missing(
                    name,
                    found,
                    format!(
                        "free at least {} there, or point {} elsewhere",
                        gib(MIN_FREE_BYTES),
                        if name.contains("cache") {
                            "cache_dir (INFRA_CACHE_DIR)"
                        } else {
                            "--state-dir"
                        }
                    ),
                )
            }
        }
        Err(e) => Check::missing(
            name,
            format!("cannot read free space of {}: {e}", existing.display()),
            "check that the directory is readable",
        ),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
}

/// The database port: free, or already our server's.
async fn port(settings: &Settings) -> Check {
    let name = "PostgreSQL port on 127.0.0.1";
    let server = LocalPostgres::new(
        &settings.state_dir,
        &settings.database_user,
        &settings.database_name,
        settings.database_port,
    );
    if let Ok(crate::backend::local::postgres::ServerState::Running { port }) = server.state().await
    {
        return Check::ok(name, format!("{port}, in use by this state dir's server"));
    }
    let wanted = settings.database_port;
    match TcpListener::bind(("127.0.0.1", wanted)) {
        Ok(listener) if wanted == 0 => Check::ok(
            name,
            format!(
                "any free port (e.g. {})",
                listener.local_addr().map_or(0, |a| a.port())
            ),
        ),
        Ok(_) => Check::ok(name, format!("{wanted} is free")),
        Err(_) if wanted == 0 => Check::missing(
            name,
            "cannot listen on 127.0.0.1",
            "check the loopback interface (`ip link set lo up`)",
        ),
        Err(_) => Check::missing(
            name,
            format!("{wanted} is in use by another program"),
            format!(
                "stop it, or set database.port ({}) to another port, or to 0 to pick a free one",
                env_var("database.port")
            ),
        ),
    }
}

async fn gcp(settings: &Settings) -> Vec<Check> {
    let credentials = match auth::detect() {
        Ok(found) => Check::ok("Google Cloud credentials", describe(&found)),
        Err(e) => Check::from_error("Google Cloud credentials", &e),
    };
    let apis = match &settings.project {
        Some(project) if credentials.status == Status::Ok => required_apis(settings, project).await,
        _ => Check::skipped(
            "required APIs",
            "not checked: needs credentials and a project",
        ),
    };
    let project = match &settings.project {
        Some(project) => Check::ok("project", project.clone()),
        None => Check::missing(
            "project",
            "not set",
            format!("set `project` in infra.toml or {}", env_var("project")),
        ),
    };
    let token = if credentials.status == Status::Ok {
        token(settings).await
    } else {
        Check::skipped("a token", "not asked: no credentials")
    };
    let identified = credentials.status == Status::Ok && token.status == Status::Ok;
    let mut checks = vec![terraform().await, credentials, token, project, apis];
    if let Some(project) = settings.project.as_deref().filter(|_| identified) {
        checks.extend(identities(settings, project).await);
    }
    checks
}

/// Asks the credentials for an access token, as every gcp verb will, and
/// says whose it is: a file that names an account but cannot yield a token
/// (a deleted key, a token endpoint out of reach) is a gap here, not at
/// the first API call.
async fn token(settings: &Settings) -> Check {
    let name = "a token";
    let sources = auth::AdcSources::from_env();
    let asked = async {
        let adc = auth::application_default(&sources).await?;
        let identity = adc
            .description
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        match settings.impersonate_service_account.as_deref() {
            Some(email) => {
                let tokens = auth::for_settings(
                    &[email],
                    &sources,
                    &settings.endpoints_iam_credentials,
                    settings.project.as_deref().unwrap_or_default(),
                )
                .await?;
                tokens.token().await?;
                Ok::<_, anyhow::Error>(format!("{email}, impersonated by {identity}"))
            }
            None => {
                adc.token().await?;
                Ok(identity)
            }
        }
    };
    match tokio::time::timeout(API_CHECK_TIMEOUT, asked).await {
        Ok(Ok(identity)) => Check::ok(name, format!("for {identity}")),
        Ok(Err(e)) => {
            let text = format!("{e:#}");
            let cause = text.split("\nhint: ").next().unwrap_or_default();
            Check::missing(
                name,
                format!("the credentials gave none: {}", cause.replace('\n', " ")),
                "`gcloud auth application-default login`, or point GOOGLE_APPLICATION_CREDENTIALS at a key that works",
            )
        }
        Err(_) => Check::missing(
            name,
            format!("none within {} s", API_CHECK_TIMEOUT.as_secs()),
            "check the network, then `gcloud auth application-default login`",
        ),
    }
}

/// Who `up` and `run` act as (docs/iam.md), and whether the operator can
/// mint the pipeline account's tokens, which `run_as = pipeline` needs.
async fn identities(settings: &Settings, project: &str) -> Vec<Check> {
    let up = "up and down act as";
    let operator = async {
        crate::backend::gcp::cloud::GcpCloud::connect(settings)
            .await?
            .operator(settings)
            .await
    };
    let up = match tokio::time::timeout(API_CHECK_TIMEOUT, operator).await {
        Ok(Ok(member)) => Check::ok(up, member),
        Ok(Err(e)) => Check::from_error(up, &e),
        Err(_) => Check::skipped(
            up,
            format!("not checked: no answer within {API_CHECK_TIMEOUT:?}"),
        ),
    };
    let name = "run acts as";
    let run = match settings.run_as {
        crate::settings::RunAs::Caller => {
            Check::ok(name, "the same credentials (run_as = \"caller\")")
        }
        crate::settings::RunAs::Pipeline => match crate::backend::gcp::Gcp::load(settings) {
            // Nothing to check before `up`: it is a plan, not a gap.
            Err(_) => Check::ok(
                name,
                format!(
                    "the pipeline's service account, once `infra up` has made it in {project} and granted you Token Creator on it"
                ),
            ),
            Ok(gcp) => {
                let email = gcp.deployment.service_account_email.clone();
                let minted = async { gcp.clients().await?.http.token_check().await };
                match tokio::time::timeout(API_CHECK_TIMEOUT, minted).await {
                    Ok(Ok(())) => Check::ok(
                        name,
                        format!("serviceAccount:{email} (impersonation works)"),
                    ),
                    Ok(Err(e)) => Check::missing(
                        name,
                        format!(
                            "serviceAccount:{email}, but impersonation fails: {}",
                            e.to_string().lines().next().unwrap_or_default()
                        ),
                        "run `infra up`: it grants you roles/iam.serviceAccountTokenCreator on that account (docs/iam.md), or set run_as = \"caller\"",
                    ),
                    Err(_) => Check::skipped(
                        name,
                        format!(
                            "serviceAccount:{email}: not checked, no answer within {API_CHECK_TIMEOUT:?}"
                        ),
                    ),
                }
            }
        },
    };
    vec![up, run]
}

/// How long the APIs check waits for Service Usage before giving up:
/// doctor must answer promptly on a machine with no route to Google.
const API_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of the APIs the deployment enables are still off. Only a gap
/// when Service Usage says so; an unreachable API is a skip, not a fail.
async fn required_apis(settings: &Settings, project: &str) -> Check {
    let name = "required APIs";
    let apis = crate::terraform::leftovers::enabled_apis();
    let endpoints = Endpoints::from_settings(settings);
    let asked = async {
        let impersonate: Vec<&str> = settings
            .impersonate_service_account
            .as_deref()
            .into_iter()
            .collect();
        let clients = Clients::connect(project, &settings.region, &impersonate, &endpoints).await?;
        clients.serviceusage.not_enabled(&apis).await
    };
    match tokio::time::timeout(API_CHECK_TIMEOUT, asked).await {
        Ok(Ok(off)) if off.is_empty() => Check::ok(name, format!("all {} enabled", apis.len())),
        Ok(Ok(off)) => Check::missing(
            name,
            format!(
                "{} of {} not enabled: {}",
                off.len(),
                apis.len(),
                off.join(", ")
            ),
            format!(
                "`infra up` enables them, or `gcloud services enable --project {project} {}`",
                off.join(" ")
            ),
        ),
        Ok(Err(e)) => {
            let text = format!("{e:#}");
            let cause = text.split("\nhint: ").next().unwrap_or_default();
            Check::skipped(name, format!("not checked: {}", cause.replace('\n', " ")))
        }
        Err(_) => Check::skipped(
            name,
            format!(
                "not checked: no answer from {} in {} s",
                settings.endpoints_serviceusage,
                API_CHECK_TIMEOUT.as_secs()
            ),
        ),
    }
}

async fn terraform() -> Check {
    let name = "terraform 1.11 or newer";
    let program = match tools::find(Tool::Terraform) {
        Ok(program) => program,
        Err(e) => return Check::from_error(name, &e.into()),
    };
    let version = Cmd::new(&program)
        .args(["version", "-json"])
        .env("CHECKPOINT_DISABLE", "1")
        .run()
        .await
        .ok()
        .and_then(|out| {
            let json: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
            json["terraform_version"].as_str().map(str::to_owned)
        });
    let Some(version) = version else {
        return Check::missing(
            name,
            format!("{} does not report its version", program.display()),
            "reinstall terraform from https://developer.hashicorp.com/terraform/install",
        );
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= MIN_TERRAFORM {
        Check::ok(name, format!("{version} at {}", program.display()))
    } else {
        Check::missing(
            name,
            format!("{version} at {}", program.display()),
            "install Terraform 1.11 or newer from https://developer.hashicorp.com/terraform/install",
        )
    }
}

/// Where credentials come from, and their kind (`type` in the file).
fn describe(found: &Found) -> String {
    let kind = |path: &PathBuf| {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|json| json["type"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unreadable".to_owned())
    };
    match found {
        Found::EnvFile(path) => format!(
            "{} from GOOGLE_APPLICATION_CREDENTIALS ({})",
            kind(path),
            path.display()
        ),
        Found::Gcloud(path) => {
            format!("{} from gcloud ({})", kind(path), path.display())
        }
        Found::MetadataServer => "the metadata server of this Google Cloud machine".to_owned(),
    }
}
