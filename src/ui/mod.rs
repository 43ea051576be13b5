//! What the user sees: logging set-up, progress lines, prompts and tables.
//!
//! Progress and logs go to stderr; stdout carries only data that could be
//! piped (query results, `config`, `plan`). Colour follows the terminal and
//! `NO_COLOR`, through `anstream`. Live progress is in [`progress`].

pub mod progress;

pub use progress::Progress;

use std::io::{IsTerminal, Write};

use anstyle::{AnsiColor, Style};
use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

use crate::exit::UsageError;

/// `-q`: no status lines, details or progress; warnings and errors only.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets up stderr: logging, and live progress or plain lines; `--quiet`
/// silences everything but warnings and errors, as cargo's does.
pub fn init(verbose: u8, quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
    progress::init(verbose, quiet);
    init_logging(verbose);
}

/// The log filter for `-v` counted `verbose` times, as the README says:
/// warnings by default; `-v` adds info (every command run, with argv) and
/// child processes' output; `-vv` adds debug logs (retries, heartbeats, and
/// the libraries' own).
pub fn log_filter(verbose: u8) -> &'static str {
    match verbose {
        0 => "warn",
        1 => "info,infra::child=debug,infra::driver=debug",
        _ => "debug,infra=trace",
    }
}

/// Sets up logging to stderr with [`log_filter`]. `RUST_LOG` overrides.
pub fn init_logging(verbose: u8) {
    let default = log_filter(verbose);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // yup-oauth2 logs access tokens at debug level: never show them, not
    // even under RUST_LOG=trace.
    let filter = filter.add_directive("yup_oauth2=warn".parse().expect("a valid directive"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(anstream::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// A progress line on stderr: `==> text`.
pub fn status(text: impl std::fmt::Display) {
    if quiet() {
        return;
    }
    let style = Style::new().fg_color(Some(AnsiColor::Green.into())).bold();
    progress::suspend(|| {
        let _ = writeln!(anstream::stderr(), "{style}==>{style:#} {text}");
    });
}

/// A secondary line on stderr, indented under the last status.
pub fn detail(text: impl std::fmt::Display) {
    if quiet() {
        return;
    }
    progress::suspend(|| {
        let _ = writeln!(anstream::stderr(), "    {text}");
    });
}

/// A warning on stderr.
pub fn warn(text: impl std::fmt::Display) {
    let style = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
    progress::suspend(|| {
        let _ = writeln!(anstream::stderr(), "{style}warning:{style:#} {text}");
    });
}

/// Asks a yes/no question on the terminal. Without a terminal it refuses
/// rather than guess, and says which flag answers it.
pub fn confirm(question: &str, flag: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(UsageError(format!(
            "{question}: no terminal to ask on\nhint: pass {flag} to go ahead without asking"
        ))
        .into());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// An aligned table for people.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_header(header);
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}
