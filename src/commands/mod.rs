//! One module per verb, and the one `match` that dispatches to them.
//!
//! Commands wire settings, plan, target and pipeline together. They are the
//! only layer that prints to stdout.

mod config;
mod down;
mod plan;
mod query;
mod render;
mod run;
mod sample;
mod status;
mod up;

use anyhow::Result;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::exit::UsageError;
use crate::process::Echo;
use crate::settings::{Layer, Settings, Sources, TargetKind};
use crate::terraform::{PlanSummary, Terraform, credentials};
use crate::ui;

/// Runs the command `cli` names.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let settings = resolve(&cli.global)?;
    let echo = if cli.global.verbose > 0 {
        Echo::Stream
    } else {
        Echo::Quiet
    };
    match cli.command {
        Command::Up(args) => up::up(&settings, &args, echo).await,
        Command::Run(args) => run::run(&settings, &args, echo).await,
        Command::Down(args) => down::down(&settings, &args, echo).await,
        Command::Plan => plan::plan(&settings, echo).await,
        Command::Render => render::render(&settings).await,
        Command::Status => status::status(&settings).await,
        Command::Query(args) => query::query(&settings, &args).await,
        Command::Config => config::config(&settings),
        Command::Sample(args) => sample::sample(&args),
    }
}

/// Settings from flags, `INFRA_*` variables and `infra.toml`.
fn resolve(global: &GlobalArgs) -> Result<Settings> {
    let mut flags = Layer::default();
    if let Some(target) = global.target {
        flags.target = Some(Some(target));
    }
    if let Some(dir) = &global.state_dir {
        flags.state_dir = Some(dir.clone());
    }
    if let Some(account) = &global.impersonate_service_account {
        flags.impersonate_service_account = Some(Some(account.clone()));
    }
    let cwd = std::env::current_dir()?;
    Settings::resolve(Sources {
        config: global.config.as_deref(),
        cwd: &cwd,
        env: std::env::vars().collect(),
        flags,
    })
}

/// Checks for credentials, then finds terraform: the two things every gcp
/// verb but `render` needs before it touches Google Cloud.
fn gcp_terraform(settings: &Settings, dir: &std::path::Path, echo: Echo) -> Result<Terraform> {
    credentials::detect()?;
    Terraform::new(dir, &settings.cache_dir(), echo)
}

/// The error for a verb the GCP target does not have yet.
fn gcp_not_ready(verb: &str) -> anyhow::Error {
    UsageError(format!(
        "`infra {verb}` is not available for the gcp target yet\nhint: use `--target local`, which needs no cloud account"
    ))
    .into()
}

/// Fails unless the target is local; for verbs only the local target has so far.
fn require_local(settings: &Settings, verb: &str) -> Result<()> {
    match settings.target {
        TargetKind::Local => Ok(()),
        TargetKind::Gcp => Err(gcp_not_ready(verb)),
    }
}

/// Asks `question` on the terminal unless `yes` (the `--yes` flag) already
/// answered it. The read blocks, so it runs off the async workers.
async fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    let question = question.to_owned();
    tokio::task::spawn_blocking(move || ui::confirm(&question, "--yes")).await?
}

/// A Terraform plan on stderr, under `title`.
fn show_plan(title: &str, plan: &PlanSummary) {
    ui::status(title);
    for line in plan.to_string().lines() {
        ui::detail(line);
    }
}
