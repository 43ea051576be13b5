//! `infra doctor`: prints each check with ✓ or ✗ and a fix, and fails if
//! anything is missing.

use std::fmt::Write as _;
use std::io::Write;

use anstyle::{AnsiColor, Style};
use anyhow::Result;

use crate::doctor::{self, Status};
use crate::settings::Settings;

pub async fn doctor(settings: &Settings) -> Result<()> {
    let checks = doctor::run(settings).await;
    // Styled text, stripped unless stdout takes colour (a terminal, and no
    // NO_COLOR), then written through the one stdout writer.
    let mut out = String::new();
    writeln!(out, "{} target:", settings.target)?;
    let width = checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(0);
    let green = Style::new().fg_color(Some(AnsiColor::Green.into())).bold();
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let grey = Style::new().fg_color(Some(AnsiColor::BrightBlack.into()));
    for check in &checks {
        let (mark, style) = match check.status {
            Status::Ok => ("✓", green),
            Status::Missing => ("✗", red),
            Status::Skipped => ("-", grey),
        };
        writeln!(
            out,
            "  {style}{mark}{style:#} {:<width$}  {}",
            check.name, check.found
        )?;
        if let Some(fix) = &check.fix {
            writeln!(out, "      fix: {fix}")?;
        }
    }
    let missing = checks
        .iter()
        .filter(|c| c.status == Status::Missing)
        .count();
    let skipped = checks
        .iter()
        .filter(|c| c.status == Status::Skipped)
        .count();
    match (missing, skipped) {
        (0, 0) => writeln!(
            out,
            "everything the {} target needs is here",
            settings.target
        )?,
        (0, _) => writeln!(
            out,
            "nothing the {} target needs is missing; {skipped} check(s) could not be made from here",
            settings.target
        )?,
        _ => {}
    }
    let text = if super::out::colour() {
        out
    } else {
        anstream::adapter::strip_str(&out).to_string()
    };
    let mut stdout = super::out::stdout();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    if missing == 0 {
        return Ok(());
    }
    anyhow::bail!(
        "{missing} thing{} missing for the {} target; the fixes are above",
        if missing == 1 { " is" } else { "s are" },
        settings.target
    )
}
