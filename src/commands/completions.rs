//! `infra completions SHELL` and `infra man`: generated from the clap
//! definitions, so they never drift from the real flags.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, Shell};

pub fn completions(shell: Shell) -> Result<()> {
    let mut command = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into memory first: `generate` panics when its writer fails, and a
    // reader that closes early (`| head`) is no failure.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "infra", &mut script);
    let mut out = super::out::stdout();
    out.write_all(&script)?;
    out.flush()?;
    Ok(())
}

pub fn man() -> Result<()> {
    let mut out = super::out::stdout();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    out.flush()?;
    Ok(())
}
