//! `infra completions SHELL` and `infra man [COMMAND]`: generated from the
//! clap definitions, so they never drift from the real flags.
//!
//! Each man page, infra(1) and one per command (infra-run(1), …, as
//! infra(1)'s COMMANDS section names them), ends with EXIT STATUS from
//! [`crate::exit::CODES`], ENVIRONMENT from [`crate::settings::KEYS`] and
//! FILES from [`FILES`]: the tables the code itself uses, so a new exit
//! code or setting is documented where it is defined.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::{Cli, Shell};
use crate::exit::UsageError;

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

pub fn man(command: Option<&str>) -> Result<()> {
    let page = page(command)?;
    let mut out = super::out::stdout();
    out.write_all(&page)?;
    out.flush()?;
    Ok(())
}

/// The files and directories infra reads and writes, for FILES.
pub const FILES: &[(&str, &str)] = &[
    (
        "infra.toml",
        "the configuration: the nearest one, in the current directory or above, unless --config names another",
    ),
    (
        ".infra/",
        "the state dir: everything infra creates locally, found like infra.toml unless --state-dir or INFRA_STATE_DIR names it",
    ),
    (
        ".infra/runs/",
        "the run history: one JSON record per run, the step logs, and run.lock, the lock that up, run and down take",
    ),
    (".infra/reports/", "the HTML pages `infra report` writes"),
    (
        ".infra/terraform/",
        "the gcp target's Terraform root module, as `infra render` writes it",
    ),
    (
        ".infra/gcp/outputs.json",
        "what `infra up --target gcp` created: the names run, status and query use (no secret)",
    ),
];

/// Variables infra reads that are no setting.
const OTHER_VARIABLES: &[(&str, &str)] = &[
    (
        "GOOGLE_APPLICATION_CREDENTIALS",
        "the credentials file for Google Cloud (else gcloud's application-default credentials)",
    ),
    ("NO_COLOR", "when set, no colour on stderr"),
];

/// The page of `command` (infra(1) when `None`), as roff.
fn page(command: Option<&str>) -> Result<Vec<u8>> {
    let mut cli = Cli::command();
    cli.build();
    let cmd = match command {
        None => cli,
        Some(name) => cli.find_subcommand(name).cloned().ok_or_else(|| {
            let names: Vec<_> = Cli::command()
                .get_subcommands()
                .map(|c| c.get_name().to_owned())
                .collect();
            UsageError(format!(
                "no command `{name}`: `infra man` has a page for {}",
                names.join(", ")
            ))
        })?,
    };
    let has_subcommands = cmd.has_subcommands();
    let has_extra = cmd.get_after_help().is_some() || cmd.get_after_long_help().is_some();
    let man = clap_mangen::Man::new(cmd);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if has_subcommands {
        man.render_subcommands_section(&mut out)?;
    }
    if has_extra {
        man.render_extra_section(&mut out)?;
    }
    sections().to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// EXIT STATUS, ENVIRONMENT and FILES, from the tables the code uses.
fn sections() -> Roff {
    let mut roff = Roff::default();
    let entry = |roff: &mut Roff, term: String, text: String| {
        roff.control("TP", []);
        roff.text([bold(term)]);
        roff.text([roman(text)]);
    };
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in crate::exit::CODES {
        entry(&mut roff, (*code).to_owned(), (*meaning).to_owned());
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Every setting of infra.toml has a variable; flags override variables, which override infra.toml, which overrides the defaults.",
    )]);
    for (key, doc) in crate::settings::KEYS {
        entry(
            &mut roff,
            crate::settings::env_var(key),
            format!("{doc} (infra.toml: {key})"),
        );
    }
    for (name, doc) in OTHER_VARIABLES {
        entry(&mut roff, (*name).to_owned(), (*doc).to_owned());
    }
    roff.control("SH", ["FILES"]);
    for (path, doc) in FILES {
        entry(&mut roff, (*path).to_owned(), (*doc).to_owned());
    }
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 21): infra(1) named infra-run(1) and the other
    /// pages, which did not exist, and had no EXIT STATUS, ENVIRONMENT or
    /// FILES. Every page now has all three, with every exit code and every
    /// setting's variable.
    #[test]
    fn every_command_has_a_page_with_exit_status_environment_and_files() {
        let overview = String::from_utf8(page(None).unwrap()).unwrap();
        let mut names = vec![None];
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name().to_owned();
            assert!(
                overview.contains(&format!("infra\\-{name}(1)")),
                "infra(1) does not name infra-{name}(1)"
            );
            names.push(Some(name));
        }
        for name in names {
            let text = String::from_utf8(page(name.as_deref()).unwrap()).unwrap();
            let title = match &name {
                Some(name) => format!("\n.TH infra-{name} 1 "),
                None => "\n.TH infra 1 ".to_owned(),
            };
            assert!(text.contains(&title), "{name:?}: {}", &text[..200]);
            for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH FILES"] {
                assert!(text.contains(section), "{name:?} has no {section}");
            }
            for (code, _) in crate::exit::CODES {
                assert!(
                    text.contains(&format!("\\fB{code}\\fR")),
                    "{name:?}: exit {code}"
                );
            }
            for (key, _) in crate::settings::KEYS {
                let var = crate::settings::env_var(key).replace('_', "\\_");
                assert!(
                    text.contains(&var) || text.contains(&crate::settings::env_var(key)),
                    "{name:?}: {key}"
                );
            }
        }
        assert!(page(Some("no-such")).is_err());
    }
}
