//! `infra`: provision and run a batch analytics pipeline on Google Cloud,
//! or on this machine with no cloud account.
//!
//! # Layout
//!
//! Arrows point down only; ARCHITECTURE.md has the full map.
//!
//! ```text
//! main.rs        parse, call commands::dispatch, map the result to an exit code
//! cli            clap types: the command-line contract
//! commands/      one module per verb; the only layer that prints to stdout
//! doctor         the checks behind `infra doctor`
//! report/        a run as a self-contained HTML page (`infra report`)
//! summary        a run as a table and as the stable `--json` shape
//! settings       flags > INFRA_* env > infra.toml > defaults, resolved once
//! plan           the run as data: Step, Selection, Plan, and where data lives
//! pipeline/      each step once, against the capabilities (load, spark, warehouse)
//! record         run records and the run lock
//! backend/       the capability traits, with local/ and gcp/ implementations (the --target choice)
//! terraform/     the gcp target's Terraform: render, runner, typed outputs, up/down
//! airflow        the pipeline as an Airflow DAG (`infra dags`), from the GCP run's requests
//! sample         the deterministic sample-data generator
//! assets         sql/ and pyspark/ files compiled into the binary
//! process        the one child-process wrapper
//! signals        SIGINT, SIGTERM and SIGHUP: stop children, exit 128 + n
//! tools          finding external programs, with install hints
//! ui             progress lines, prompts, tables, logging set-up
//! exit           exit codes and the error report
//! labels         the labels that mark what a deployment owns (terraform and backend share them)
//! hold           test-only pause points (INFRA_TEST_HOLD_DIR)
//! ```

pub mod airflow;
pub mod assets;
pub mod backend;
pub mod cli;
pub mod commands;
pub mod doctor;
pub mod exit;
pub mod hold;
pub mod labels;
pub mod pipeline;
pub mod plan;
pub mod process;
pub mod record;
pub mod report;
pub mod sample;
pub mod settings;
pub mod signals;
pub mod summary;
pub mod terraform;
pub mod tools;
pub mod ui;
