//! One module per verb, and the one `match` that dispatches to them.
//!
//! Commands wire settings, plan, target and pipeline together. They are the
//! only layer that prints to stdout.

mod completions;
mod config;
mod dags;
mod doctor;
mod down;
mod out;
mod plan;
mod query;
mod render;
mod report;
mod run;
mod sample;
mod status;
mod up;
mod warmup;

use anyhow::Result;

use crate::backend::gcp::auth;
use crate::cli::{Cli, Command, GlobalArgs};
use crate::exit::UsageError;
use crate::process::Echo;
use crate::settings::{Layer, Settings, Sources};
use crate::terraform::{PlanSummary, RootValues, Terraform};
use crate::ui;

/// Runs the command `cli` names.
pub async fn dispatch(cli: Cli) -> Result<()> {
    // These need no settings: a broken infra.toml must not block them.
    match &cli.command {
        Command::Completions(args) => {
            refuse_settings_flags(&cli.global, "completions")?;
            return out::finish(completions::completions(args.shell));
        }
        Command::Man(args) => {
            refuse_settings_flags(&cli.global, "man")?;
            return out::finish(completions::man(args.command.as_deref()));
        }
        Command::Sample(_) => refuse_settings_flags(&cli.global, "sample")?,
        _ => {}
    }
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
    let result = match cli.command {
        Command::Up(args) => up::up(&settings, &args, echo).await,
        Command::Run(args) => run::run(&settings, &args, echo).await,
        Command::Down(args) => down::down(&settings, &args, echo).await,
        Command::Plan(args) => plan::plan(&settings, echo, args.json).await,
        Command::Render => render::render(&settings).await,
        Command::Dags(args) => dags::dags(&settings, &args),
        Command::Status(args) => status::status(&settings, args.json).await,
        Command::Report(args) => report::report(&settings, &args).await,
        Command::Doctor => doctor::doctor(&settings).await,
        Command::Completions(_) | Command::Man(_) => unreachable!("handled above"),
        Command::Query(args) => query::query(&settings, &args).await,
        Command::Config => config::config(&settings),
        Command::Sample(args) => sample::sample(&args),
    };
    out::finish(result)
}

/// `sample`, `man` and `completions` read no settings: a global flag that
/// chooses one (`--target`, `--config`, `--state-dir`,
/// `--impersonate-service-account`) would be silently ignored, so it is a
/// usage error. `-v` and `-q` still apply.
fn refuse_settings_flags(global: &GlobalArgs, verb: &str) -> Result<()> {
    let given = [
        ("--target", global.target.is_some()),
        ("--config", global.config.is_some()),
        ("--state-dir", global.state_dir.is_some()),
        (
            "--impersonate-service-account",
            global.impersonate_service_account.is_some(),
        ),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(UsageError(format!(
            "`infra {verb}` takes no {flag}: it reads no settings and acts the same on every target\nhint: drop {flag}"
        ))
        .into()),
        None => Ok(()),
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
    let env = infra_vars()?;
    // Named outright, a state dir or config file is not searched for.
    let named = global.config.is_some()
        || flags.state_dir.is_some()
        || env.iter().any(|(name, _)| name == "INFRA_STATE_DIR");
    let base = if named {
        cwd.clone()
    } else {
        match project_root(&cwd) {
            Some((root, found)) => {
                tracing::info!("using {} (found from {})", found.display(), cwd.display());
                root
            }
            None => {
                tracing::info!(
                    "no .infra or infra.toml in {} or above: using {} (--state-dir names another)",
                    cwd.display(),
                    cwd.join(".infra").display()
                );
                cwd.clone()
            }
        }
    };
    if let Some(dir) = flags.state_dir.as_mut()
        && dir.is_relative()
    {
        // A relative --state-dir is relative to where the user typed it.
        *dir = cwd.join(&*dir);
    }
    let settings = Settings::resolve(Sources {
        config: global.config.as_deref(),
        cwd: &base,
        env,
        flags,
    })?;
    tracing::debug!(
        "resolved settings: target {}, state dir {}",
        settings.target,
        settings.state_dir.display()
    );
    Ok(settings)
}

/// The nearest directory, `cwd` or above, that holds a `.infra` state dir
/// or an `infra.toml`, as git and cargo find theirs; with what was found.
fn project_root(cwd: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    cwd.ancestors().find_map(|dir| {
        ["infra.toml", ".infra"]
            .iter()
            .map(|name| dir.join(name))
            .find(|path| {
                if path.ends_with(".infra") {
                    path.is_dir()
                } else {
                    path.is_file()
                }
            })
            .map(|found| (dir.to_path_buf(), found))
    })
}

/// The `INFRA_*` variables, read with `vars_os`: a variable that is not
/// UTF-8 (a file name in Latin-1, say) must not crash `infra`. One that
/// names a setting is an error that names it; any other is not ours.
fn infra_vars() -> Result<Vec<(String, String)>> {
    let settings: Vec<String> = crate::settings::KEYS
        .iter()
        .map(|(key, _)| crate::settings::env_var(key))
        .collect();
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("INFRA_")) else {
            continue;
        };
        if let Some(warning) = crate::settings::unknown_env_var(name) {
            ui::warn(warning);
        }
        match value.into_string() {
            Ok(value) => vars.push((name.to_owned(), value)),
            Err(value) if settings.iter().any(|s| s == name) => {
                return Err(UsageError(format!(
                    "{name} is not valid UTF-8: `{}`",
                    value.to_string_lossy()
                ))
                .into());
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// Checks for credentials, then finds terraform: the two things every gcp
/// verb but `render` needs before it touches Google Cloud.
fn gcp_terraform(settings: &Settings, dir: &std::path::Path, echo: Echo) -> Result<Terraform> {
    auth::detect()?;
    Terraform::new(dir, &settings.cache_dir(), echo)
}

/// The root module `up` and `down` use: `terraform.root` when set (a
/// ready root, as the rehearsal's), else the one rendered from templates/.
/// `settings` with `operator` resolved: who runs `up` gets Token Creator on
/// the pipeline's account, so Terraform must know who that is.
async fn with_operator(
    settings: &Settings,
    cloud: &crate::backend::gcp::cloud::GcpCloud,
) -> Result<Settings> {
    let operator = cloud.operator(settings).await?;
    ui::detail(format!(
        "operator (granted Token Creator on the pipeline account): {operator}"
    ));
    let mut settings = settings.clone();
    settings.values.operator = Some(operator);
    Ok(settings)
}

fn gcp_root(settings: &Settings) -> Result<(RootValues, std::path::PathBuf)> {
    match &settings.terraform_root {
        Some(root) => Ok((RootValues::from_settings(settings)?, root.clone())),
        None => render::render_root(settings),
    }
}

/// What a verb is doing now, for the message when a signal stops it.
struct Phase(std::sync::Mutex<&'static str>);

impl Phase {
    fn new(first: &'static str) -> Phase {
        Phase(std::sync::Mutex::new(first))
    }

    fn set(&self, now: &'static str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    fn get(&self) -> &'static str {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `err` as the user should read it when a signal stopped `verb` (an
/// [`crate::exit::Interrupted`] in its chain): what it stopped, what stays
/// done, and how to go on. terraform killed after its grace time may
/// still hold its state lock, and only then is `terraform force-unlock`
/// named. Any other error is returned as it is.
fn stopped(
    err: anyhow::Error,
    verb: &str,
    phase: &Phase,
    stays: &str,
    resume: &str,
) -> anyhow::Error {
    if !err.chain().any(|e| e.is::<crate::exit::Interrupted>()) {
        return err;
    }
    let killed_terraform = err
        .chain()
        .filter_map(|e| e.downcast_ref::<crate::process::Stopped>())
        .any(|s| s.killed && s.children.iter().any(|c| c.starts_with("terraform")));
    let mut text = format!(
        "{verb} stopped while {}: {stays}\nhint: {resume}",
        phase.get()
    );
    if killed_terraform {
        text.push_str(
            "\nhint: terraform was killed, so its state lock may still be held: if the next \
             terraform command says the state is locked, and no other terraform runs, \
             `terraform force-unlock <LOCK_ID>` in the root module's directory is the last resort",
        );
    }
    err.context(text)
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
