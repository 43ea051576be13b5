//! The command-line contract: clap types, nothing else.
//!
//! Later work and acceptance checks rely on these names and flags; change
//! them only on purpose, and update the `--help` snapshot tests with them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::Step;
use crate::settings::{SparkMode, TargetKind};

#[derive(Debug, Parser)]
#[command(
    name = "infra",
    version,
    about = "Provision and run the batch analytics pipeline, on Google Cloud or on this machine",
    long_about = None,
    after_help = "Examples:\n  infra up                      provision the local target\n  infra run --data ./sample     load the sample data and run steps 0-4\n  infra query 'SELECT count(*) FROM bootcamp.user_behavior_metric'\n  infra --target gcp plan       show what `up` and `run` would do on GCP",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Shown apart, after each command's own options.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Where to run [default: gcp when a project is configured, else local]
    #[arg(long, global = true, value_enum)]
    pub target: Option<TargetKind>,

    /// Configuration file [default: the nearest infra.toml, here or above]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Directory for everything infra creates locally [default: the nearest .infra, here or above]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Service account to impersonate for Google Cloud calls
    #[arg(long, global = true, value_name = "EMAIL")]
    pub impersonate_service_account: Option<String>,

    /// Show more: every command run and child process output (-vv adds debug logs)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only warnings and errors on stderr (data on stdout is unchanged)
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Provision the target, then upload pyspark/ to the code bucket
    #[command(
        after_help = "Examples:\n  infra up\n  infra up --dry-run\n  infra --target gcp up --yes"
    )]
    Up(UpArgs),

    /// Run the pipeline (steps 0-4)
    #[command(
        after_help = "Steps:\n  0 load_purchases   create bootcampdb.user_purchase and load user_purchase.csv\n  1 dump_purchases   dump the table to the staging bucket as CSV\n  2 tokenize         pyspark/tokenizer.py: positive_review per review\n  3 user_behavior    pyspark/user_behavior.py: the user_behavior_metric table\n  4 load_warehouse   load the metric into the warehouse\n\nExamples:\n  infra run --data ./sample     copy the inputs into the raw bucket, then run\n  infra run --from 3            resume the last run at step 3\n  infra run --only tokenize     run step 2 alone, as part of the last run"
    )]
    Run(RunArgs),

    /// Tear everything down
    #[command(
        after_help = "The run history (runs/ and reports/) stays unless --purge is given.\n\nExamples:\n  infra down\n  infra down --dry-run\n  infra down --yes --purge"
    )]
    Down(DownArgs),

    /// Print what `up` and `run` would do, changing nothing
    #[command(
        after_help = "Examples:\n  infra plan\n  infra --target gcp plan\n  infra plan --json | jq '.run[].name'"
    )]
    Plan(JsonArgs),

    /// Write the gcp target's Terraform root module and print its directory
    #[command(
        after_help = "Writes <state-dir>/terraform from the resolved configuration; the same configuration gives byte-identical files. Only the project is required.\n\nExamples:\n  INFRA_PROJECT=my-project infra render\n  infra --config prod.toml render && less .infra/terraform/terraform.tfvars"
    )]
    Render,

    /// Write the pipeline as an Airflow DAG for the gcp deployment and print its directory
    #[command(
        after_help = "The DAG runs what `infra run --target gcp` runs, with the Google provider's operators, on the deployment `infra up` made; `airflow.schedule` sets its schedule (manual by default). `infra up` uploads it to the code bucket's dags/ folder, which Airflow reads.\n\nExamples:\n  infra --target gcp dags\n  infra --target gcp dags -o ./dags"
    )]
    Dags(DagsArgs),

    /// What is provisioned, and the last run's steps with row counts
    #[command(
        after_help = "Examples:\n  infra status\n  infra status --json | jq .last_run.outcome"
    )]
    Status(JsonArgs),

    /// Query the warehouse
    #[command(
        after_help = "Examples:\n  infra query 'SELECT * FROM bootcamp.user_behavior_metric ORDER BY customer_id LIMIT 5'\n  infra query --format csv 'SELECT customer_id, amount_spent FROM bootcamp.user_behavior_metric' > metric.csv"
    )]
    Query(QueryArgs),

    /// Print the resolved configuration
    #[command(
        after_help = "Examples:\n  infra config\n  INFRA_SPARK_MASTER='local[2]' infra config"
    )]
    Config,

    /// Write a run's report: a self-contained HTML page with its timeline,
    /// row counts, rejection reasons and the metric
    #[command(
        after_help = "Without RUN_ID, the last run. The page needs no network: charts are inline SVG.\n\nExamples:\n  infra report\n  infra report 20260102T030405Z-1a2b -o run.html"
    )]
    Report(ReportArgs),

    /// Check that everything the target needs is here, with a fix for each gap
    #[command(
        after_help = "Exits 1 if anything is missing.\n\nExamples:\n  infra doctor\n  infra --target gcp doctor"
    )]
    Doctor,

    /// Print a shell completion script
    #[command(
        after_help = "Examples:\n  infra completions bash > ~/.local/share/bash-completion/completions/infra\n  infra completions zsh > \"${fpath[1]}/_infra\"\n  infra completions fish > ~/.config/fish/completions/infra.fish"
    )]
    Completions(CompletionsArgs),

    /// Print a man page (roff): infra(1), or infra-COMMAND(1)
    #[command(
        after_help = "Examples:\n  infra man > infra.1 && man ./infra.1\n  infra man run > infra-run.1 && man ./infra-run.1"
    )]
    Man(ManArgs),

    /// Write deterministic sample input data
    #[command(
        after_help = "Examples:\n  infra sample --out ./sample\n  infra sample --out ./small --scale 0.01 --seed 7"
    )]
    Sample(SampleArgs),
}

#[derive(Debug, Args)]
pub struct DagsArgs {
    /// Directory to write the DAG folder to [default: <state-dir>/airflow/dags]
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Apply without asking
    #[arg(long, short)]
    pub yes: bool,

    /// Print the plan and stop
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Copy DIR/user_purchase.csv and DIR/movie_review.csv into the raw bucket first
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Resume the last run at this step (number or name)
    #[arg(long, value_name = "STEP", conflicts_with = "only", value_parser = StepParser, hide_possible_values = true)]
    pub from: Option<Step>,

    /// Run only this step (number or name), as part of the last run
    #[arg(long, value_name = "STEP", value_parser = StepParser, hide_possible_values = true)]
    pub only: Option<Step>,

    /// Print the steps (on gcp, with every request they would send) and stop
    #[arg(long)]
    pub dry_run: bool,

    /// How the gcp target runs steps 2 and 3 [default: the `spark.mode` setting, cluster]
    #[arg(long, value_enum, value_name = "MODE")]
    pub spark: Option<SparkMode>,

    /// Print the run's summary as JSON on stdout (see the README)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON on stdout instead of text (see the README)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run [default: the last one]
    #[arg(value_name = "RUN_ID")]
    pub run_id: Option<String>,

    /// Where to write the page [default: <state-dir>/reports/<RUN_ID>.html]
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print [default: infra(1), the overview]
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Delete without asking
    #[arg(long, short)]
    pub yes: bool,

    /// Delete the run history too (runs/ and reports/), which `down` keeps
    #[arg(long)]
    pub purge: bool,

    /// Print what would be stopped and deleted, and stop
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL to run
    pub sql: String,

    /// Output format; rows are written as they come, never held whole
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write at most N rows [default: 1000 for the table, no limit otherwise]
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, for people
    Table,
    /// RFC 4180 with a header row
    Csv,
    /// An array of objects, for scripts
    Json,
    /// One JSON object per line (JSON Lines), for streams
    Jsonl,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Directory to write user_purchase.csv and movie_review.csv into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Size relative to the real dataset (541,909 purchases, 100,000 reviews)
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,

    /// Random seed: the same seed and scale give byte-identical files
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Overwrite input files that already exist in DIR
    #[arg(long)]
    pub force: bool,
}

/// Parses a step by number or name, and lists both for shell completion
/// (`run --from <TAB>`).
#[derive(Debug, Clone, Copy)]
pub struct StepParser;

impl clap::builder::TypedValueParser for StepParser {
    type Value = Step;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Step, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|e: String| {
            let arg = arg.map_or_else(|| "STEP".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{text}' for '{arg}': {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        const NUMBERS: [&str; 5] = ["0", "1", "2", "3", "4"];
        Some(Box::new(Step::ALL.into_iter().flat_map(|step| {
            [
                clap::builder::PossibleValue::new(NUMBERS[step.number()]),
                clap::builder::PossibleValue::new(step.name()),
            ]
        })))
    }
}
