//! Runs the `terraform` binary on one root module, through [`Cmd`].
//!
//! Every call is non-interactive and independent of the user's terraform
//! set-up: `-input=false` where the subcommand takes it, `TF_INPUT=0`,
//! `TF_IN_AUTOMATION=1`, `CHECKPOINT_DISABLE=1`, and our own CLI config
//! file (the machines point `TF_CLI_CONFIG_FILE` at a file that doesn't
//! exist) with a plugin cache under infra's cache dir. `TF_CLI_ARGS*` are
//! removed so an ambient `-auto-approve` can't sneak in.
//!
//! The sequence is `init`, `plan -out=FILE`, then `apply FILE`: what is
//! applied is exactly what was shown. `show -json` and `output -json` can
//! print secrets, so their stdout is [`Echo::Secret`]: parsed, never logged.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::process::{Cmd, Echo};
use crate::tools::{self, Tool};
use crate::ui;

use super::outputs::Outputs;

/// Variables that change how terraform parses its command line.
const AMBIENT_VARS: &[&str] = &[
    "TF_CLI_ARGS",
    "TF_CLI_ARGS_init",
    "TF_CLI_ARGS_plan",
    "TF_CLI_ARGS_apply",
    "TF_CLI_ARGS_show",
    "TF_CLI_ARGS_output",
    "TF_PLUGIN_CACHE_DIR",
    "TF_DATA_DIR",
    "TF_WORKSPACE",
];

/// terraform, bound to one root module directory.
#[derive(Debug, Clone)]
pub struct Terraform {
    program: PathBuf,
    dir: PathBuf,
    cli_config: PathBuf,
    echo: Echo,
}

/// What a plan would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        })
    }
}

/// One resource a plan changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub action: Action,
    pub address: String,
}

/// The resources a saved plan changes, in terraform's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanSummary {
    pub changes: Vec<Change>,
}

impl PlanSummary {
    /// True when applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (to add, to change, to destroy), counted as terraform counts them:
    /// a replacement is one add and one destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |actions: &[Action]| {
            self.changes
                .iter()
                .filter(|c| actions.contains(&c.action))
                .count()
        };
        (
            count(&[Action::Create, Action::Replace]),
            count(&[Action::Update]),
            count(&[Action::Delete, Action::Replace]),
        )
    }

    /// Parses `terraform show -json PLANFILE`. Only addresses and actions
    /// are read; planned values (which can hold secrets) are skipped.
    pub fn from_show_json(json: &str) -> Result<PlanSummary> {
        #[derive(Deserialize)]
        struct Plan {
            #[serde(default)]
            resource_changes: Vec<ResourceChange>,
        }
        #[derive(Deserialize)]
        struct ResourceChange {
            address: String,
            change: ChangeActions,
        }
        #[derive(Deserialize)]
        struct ChangeActions {
            actions: Vec<String>,
        }
        let plan: Plan =
            serde_json::from_str(json).context("`terraform show -json` printed no plan")?;
        let changes = plan
            .resource_changes
            .into_iter()
            .filter_map(|rc| {
                let actions: Vec<&str> = rc.change.actions.iter().map(String::as_str).collect();
                let action = match actions.as_slice() {
                    ["create"] => Action::Create,
                    ["update"] => Action::Update,
                    ["delete"] => Action::Delete,
                    ["delete", "create"] | ["create", "delete"] => Action::Replace,
                    // no-op, read, forget: nothing is created or destroyed.
                    _ => return None,
                };
                Some(Change {
                    action,
                    address: rc.address,
                })
            })
            .collect();
        Ok(PlanSummary { changes })
    }
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("No changes: the infrastructure matches the configuration.");
        }
        for change in &self.changes {
            let mark = match change.action {
                Action::Create => "+",
                Action::Update => "~",
                Action::Replace => "-/+",
                Action::Delete => "-",
            };
            writeln!(f, "{mark:>3} {}", change.address)?;
        }
        let (add, change, destroy) = self.counts();
        write!(
            f,
            "Plan: {add} to add, {change} to change, {destroy} to destroy."
        )
    }
}

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Plan to destroy everything.
    pub destroy: bool,
    /// `-var name=value` overrides of terraform.tfvars.
    pub vars: Vec<(String, String)>,
    /// `-target=ADDRESS`: plan only these resources (and what they depend on).
    pub targets: Vec<String>,
}

impl Terraform {
    /// Finds `terraform` (a missing one says how to install it) and writes
    /// its CLI config under `cache_dir`.
    pub fn new(dir: &Path, cache_dir: &Path, echo: Echo) -> Result<Terraform> {
        let program = tools::find(Tool::Terraform)?;
        Terraform::with_program(program, dir, cache_dir, echo)
    }

    /// Like [`Terraform::new`] with the binary given.
    pub fn with_program(
        program: PathBuf,
        dir: &Path,
        cache_dir: &Path,
        echo: Echo,
    ) -> Result<Terraform> {
        let tf_cache = cache_dir.join("terraform");
        let plugins = tf_cache.join("plugin-cache");
        std::fs::create_dir_all(&plugins)
            .with_context(|| format!("cannot create {}", plugins.display()))?;
        let cli_config = tf_cache.join("terraformrc");
        let text = format!(
            "# Written by infra: the CLI config its terraform calls use.\nplugin_cache_dir   = {}\ndisable_checkpoint = true\n",
            super::render::hcl_string(&plugins.to_string_lossy())
        );
        if std::fs::read_to_string(&cli_config).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&cli_config, text)
                .with_context(|| format!("cannot write {}", cli_config.display()))?;
        }
        Ok(Terraform {
            program,
            dir: dir.to_path_buf(),
            cli_config,
            echo,
        })
    }

    /// The same terraform and CLI config, bound to another root.
    pub fn for_dir(&self, dir: &Path) -> Terraform {
        Terraform {
            dir: dir.to_path_buf(),
            ..self.clone()
        }
    }

    /// The root module directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn cmd(&self, subcommand: &str) -> Cmd {
        let mut cmd = Cmd::new(&self.program)
            .arg(subcommand)
            .cwd(&self.dir)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .echo(self.echo)
            // A killed terraform keeps its state lock and loses the state
            // it has not written: on a signal it gets SIGINT and time.
            .stops_on_interrupt();
        for var in AMBIENT_VARS {
            cmd = cmd.env_remove(var);
        }
        // terraform runs in the root module's directory, where a relative
        // path the user gave from theirs names nothing.
        let cwd = std::env::current_dir().ok();
        if let Some(path) =
            cwd.and_then(|cwd| absolute_credentials(std::env::var_os(CREDENTIALS_VAR), &cwd))
        {
            cmd = cmd.env(CREDENTIALS_VAR, path);
        }
        cmd
    }

    /// `terraform init`: backend, modules and providers. `-reconfigure`
    /// because the backend block is rendered from settings (state bucket,
    /// prefix, impersonation): when they change between runs, a plain init
    /// stops with "Backend configuration changed". The state stays where
    /// the settings point; nothing is migrated.
    pub async fn init(&self) -> Result<()> {
        self.cmd("init")
            .args(["-input=false", "-no-color", "-reconfigure"])
            .run()
            .await
            .with_context(|| format!("`terraform init` failed in {}", self.dir.display()))?;
        Ok(())
    }

    /// `terraform plan -out=PLAN_FILE`, then what the plan would change.
    /// The plan file is relative to the root directory.
    pub async fn plan(&self, plan_file: &str, options: &PlanOptions) -> Result<PlanSummary> {
        let mut cmd = self
            .cmd("plan")
            .args(["-input=false", "-no-color", "-lock-timeout=60s"])
            .arg(format!("-out={plan_file}"));
        if options.destroy {
            cmd = cmd.arg("-destroy");
        }
        for (name, value) in &options.vars {
            cmd = cmd.arg("-var").arg(format!("{name}={value}"));
        }
        for target in &options.targets {
            cmd = cmd.arg(format!("-target={target}"));
        }
        cmd.run()
            .await
            .with_context(|| format!("`terraform plan` failed in {}", self.dir.display()))?;
        let shown = self
            .cmd("show")
            .args(["-json", "-no-color", plan_file])
            .echo(Echo::Secret)
            .run()
            .await
            .with_context(|| {
                format!(
                    "`terraform show` of {plan_file} failed in {}",
                    self.dir.display()
                )
            })?;
        PlanSummary::from_show_json(&shown.stdout)
            .with_context(|| format!("cannot read plan {}", self.dir.join(plan_file).display()))
    }

    /// `terraform apply PLAN_FILE`, with a count of resources done (it can
    /// take many minutes); the output streams when progress is plain lines.
    /// The plan file holds a state snapshot, so it is removed afterwards.
    pub async fn apply(&self, plan_file: &str) -> Result<()> {
        let total = self.planned_operations(plan_file).await;
        let progress = ui::Progress::count("terraform apply", total, "resources");
        let echo = match ui::progress::mode() {
            ui::progress::Mode::Live => self.echo,
            ui::progress::Mode::Plain => Echo::Stream,
        };
        let counter = progress.clone();
        let result = self
            .cmd("apply")
            .args(["-input=false", "-no-color", "-lock-timeout=60s", plan_file])
            .echo(echo)
            .on_line(move |line| {
                if completes_a_resource(line) {
                    counter.inc(1);
                }
            })
            .run()
            .await;
        progress.finish();
        let result = result.with_context(|| {
            format!(
                "`terraform apply` of {plan_file} failed in {}",
                self.dir.display()
            )
        });
        self.discard(plan_file);
        result.map(drop)
    }

    /// How many resource operations applying `plan_file` will report done
    /// (a replacement is two); 0 if the plan cannot be read.
    async fn planned_operations(&self, plan_file: &str) -> u64 {
        let shown = self
            .cmd("show")
            .args(["-json", "-no-color", plan_file])
            .echo(Echo::Secret)
            .run()
            .await;
        match shown.map(|out| PlanSummary::from_show_json(&out.stdout)) {
            Ok(Ok(plan)) => {
                let (add, change, destroy) = plan.counts();
                (add + change + destroy) as u64
            }
            _ => 0,
        }
    }

    /// `terraform state list`: the addresses of every resource in state.
    pub async fn state_list(&self) -> Result<Vec<String>> {
        let out = self
            .cmd("state")
            .args(["list", "-no-color"])
            .run()
            .await
            .with_context(|| format!("`terraform state list` failed in {}", self.dir.display()))?;
        Ok(out.stdout.lines().map(str::to_owned).collect())
    }

    /// Removes a saved plan that will not be applied.
    pub fn discard(&self, plan_file: &str) {
        let _ = std::fs::remove_file(self.dir.join(plan_file));
    }

    /// `terraform output -json`, parsed. The JSON holds the password, so it
    /// is never logged.
    pub async fn outputs(&self) -> Result<Outputs> {
        let out = self
            .cmd("output")
            .args(["-json", "-no-color"])
            .echo(Echo::Secret)
            .run()
            .await
            .with_context(|| format!("`terraform output` failed in {}", self.dir.display()))?;
        Outputs::from_json(&out.stdout)
            .with_context(|| format!("reading the outputs of {}", self.dir.display()))
    }
}

/// Whether an apply output line reports one resource operation finished:
/// `module.x.google_y.z: Creation complete after 3s [id=…]`.
fn completes_a_resource(line: &str) -> bool {
    [
        ": Creation complete after ",
        ": Modifications complete after ",
        ": Destruction complete after ",
    ]
    .iter()
    .any(|marker| line.contains(marker))
}

const CREDENTIALS_VAR: &str = "GOOGLE_APPLICATION_CREDENTIALS";

/// `GOOGLE_APPLICATION_CREDENTIALS` made absolute against `cwd`, when it is
/// set and relative; `None` when it needs no change.
fn absolute_credentials(value: Option<std::ffi::OsString>, cwd: &Path) -> Option<PathBuf> {
    let path = PathBuf::from(value.filter(|v| !v.is_empty())?);
    path.is_relative().then(|| cwd.join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 13): a relative key path was found by `infra` but
    /// not by terraform, which runs in the root module's directory.
    #[test]
    fn a_relative_credentials_path_reaches_terraform_absolute() {
        let cwd = Path::new("/home/me/project");
        assert_eq!(
            absolute_credentials(Some("keys/sa.json".into()), cwd),
            Some(PathBuf::from("/home/me/project/keys/sa.json"))
        );
        assert_eq!(absolute_credentials(Some("/abs/sa.json".into()), cwd), None);
        assert_eq!(absolute_credentials(Some("".into()), cwd), None);
        assert_eq!(absolute_credentials(None, cwd), None);
    }

    #[test]
    fn plan_json_becomes_a_summary() {
        let json = r#"{"format_version":"1.2","resource_changes":[
            {"address":"module.a.x.one","change":{"actions":["create"],"after":{"secret":"hunter2"}}},
            {"address":"x.two","change":{"actions":["no-op"]}},
            {"address":"x.three","change":{"actions":["update"]}},
            {"address":"x.four","change":{"actions":["delete","create"]}},
            {"address":"x.five","change":{"actions":["delete"]}},
            {"address":"data.x.six","change":{"actions":["read"]}}
        ]}"#;
        let summary = PlanSummary::from_show_json(json).unwrap();
        assert_eq!(summary.counts(), (2, 1, 2));
        let text = summary.to_string();
        assert_eq!(
            text,
            "  + module.a.x.one\n  ~ x.three\n-/+ x.four\n  - x.five\nPlan: 2 to add, 1 to change, 2 to destroy."
        );
        assert!(!format!("{summary:?}").contains("hunter2"));
    }

    #[test]
    fn a_plan_without_changes_says_so() {
        let summary = PlanSummary::from_show_json(r#"{"format_version":"1.2"}"#).unwrap();
        assert!(summary.is_empty());
        assert!(summary.to_string().starts_with("No changes"));
    }
}
