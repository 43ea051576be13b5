//! `gcp-fakes`: runs the rehearsal's stand-ins until told to stop, and
//! reports on a rehearsal's request log. `scripts/rehearse` drives it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gcp_fakes::report;
use gcp_fakes::stack::{Names, Stack, StackConfig};

#[derive(Parser)]
#[command(about = "Stand-ins for the Google Cloud APIs infra calls (for the cloud rehearsal)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every stand-in on 127.0.0.1, write their environment to
    /// ENV_FILE, and serve until SIGINT or SIGTERM.
    Serve {
        /// Google's discovery documents (googleapiclient/discovery_cache/documents).
        #[arg(long)]
        documents: PathBuf,
        /// Work dir: PostgreSQL's data, job dirs, DuckDB.
        #[arg(long)]
        work: PathBuf,
        /// spark-submit of a pyspark install.
        #[arg(long)]
        spark_submit: PathBuf,
        /// The fake-gcs-server binary (default: the test venv's).
        #[arg(long)]
        fake_gcs_server: Option<PathBuf>,
        #[arg(long, default_value = "rehearsal-project")]
        project: String,
        #[arg(long, default_value = "us-central1")]
        region: String,
        #[arg(long, default_value = "local[2]")]
        spark_master: String,
        /// Seconds a Dataproc cluster stays CREATING here.
        #[arg(long, default_value_t = 1.0)]
        cluster_startup: f64,
        /// The request log (JSON lines).
        #[arg(long)]
        log: PathBuf,
        /// Where to write `export NAME=value` lines for infra.
        #[arg(long)]
        env_file: PathBuf,
    },
    /// Print the cluster-minutes and the API methods of a request log;
    /// fail if any request broke the contract or a job was submitted twice.
    Report {
        log: PathBuf,
        /// A real cluster's start-up, in seconds.
        #[arg(long, default_value_t = 90.0)]
        startup: f64,
        /// The stand-in's start-up the log was made with.
        #[arg(long, default_value_t = 1.0)]
        cluster_startup: f64,
        /// Nodes per cluster (1 master + 2 workers).
        #[arg(long, default_value_t = 3)]
        nodes: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report {
            log,
            startup,
            cluster_startup,
            nodes,
        } => report_cmd(&log, startup, cluster_startup, nodes),
        Command::Serve {
            documents,
            work,
            spark_submit,
            fake_gcs_server,
            project,
            region,
            spark_master,
            cluster_startup,
            log,
            env_file,
        } => tokio::runtime::Runtime::new()
            .context("cannot start the runtime")
            .and_then(|rt| {
                rt.block_on(async {
                    let config = StackConfig {
                        documents,
                        fake_gcs_binary: match fake_gcs_server {
                            Some(path) => path,
                            None => gcp_fakes::venv::fake_gcs_binary()?,
                        },
                        work,
                        spark_submit,
                        spark_master,
                        names: Names::for_project(&project, &region),
                        revoke: gcp_fakes::iam::Iam::revoked_from_env(),
                        cluster_startup: Duration::from_secs_f64(cluster_startup),
                        log: Some(log),
                    };
                    serve(config, env_file).await
                })
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gcp-fakes: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: StackConfig, env_file: PathBuf) -> Result<()> {
    let stack = Stack::start(&config).await?;
    let credentials = config.work.join("TEST-ONLY-credentials.json");
    stack.write_credentials(&credentials)?;
    let mut env = String::new();
    for (k, v) in stack.env(&credentials) {
        env.push_str(&format!("export {k}='{v}'\n"));
    }
    std::fs::write(&env_file, env)
        .with_context(|| format!("cannot write {}", env_file.display()))?;
    eprintln!("gcp-fakes: ready; environment in {}", env_file.display());
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("gcp-fakes: stopping");
    stack.stop();
    Ok(())
}

fn report_cmd(log: &PathBuf, startup: f64, standin: f64, nodes: u32) -> Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let summary = report::summarize(&text)?;
    print!("{}", report::render(&summary, startup, standin, nodes));
    let twice: Vec<&String> = summary
        .submits
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    if !summary.violations.is_empty() {
        anyhow::bail!(
            "requests broke the discovery contract:\n{}",
            summary.violations.join("\n")
        );
    }
    if !twice.is_empty() {
        eprintln!("note: jobs submitted more than once (retries re-attach with 409): {twice:?}");
    }
    Ok(())
}
