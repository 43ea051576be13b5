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

pub use up::upload_code;

use anyhow::Result;

use crate::backend::gcp::auth;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::process::Echo;
use crate::settings::{Layer, Settings, Sources};
use crate::terraform::{RootValues, Terraform};

/// Runs the command `cli` names.
pub async fn dispatch(cli: Cli) -> Result<()> {
    let mut flags = Layer::default();
    if let Command::Run(args) = &cli.command
        && let Some(mode) = args.spark
    {
        flags.spark_mode = Some(mode);
    }
    let settings = resolve(&cli.global, flags)?;
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

/// Settings from flags (global ones, and `flags` from the subcommand),
/// `INFRA_*` variables and `infra.toml`.
fn resolve(global: &GlobalArgs, mut flags: Layer) -> Result<Settings> {
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
    auth::detect()?;
    Terraform::new(dir, &settings.cache_dir(), echo)
}

/// The root module `up` and `down` use: `terraform.root` when set (a
/// ready root, as the rehearsal's), else the one rendered from templates/.
fn gcp_root(settings: &Settings) -> Result<(RootValues, std::path::PathBuf)> {
    match &settings.terraform_root {
        Some(root) => Ok((RootValues::from_settings(settings)?, root.clone())),
        None => render::render_root(settings),
    }
}
