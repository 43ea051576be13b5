//! `infra sample`: deterministic sample inputs.

use anyhow::Result;

use crate::cli::SampleArgs;
use crate::exit::UsageError;
use crate::plan::keys;
use crate::{sample, ui};

pub fn sample(args: &SampleArgs) -> Result<()> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        return Err(UsageError(format!(
            "--scale must be above 0 and at most 100, not {}",
            args.scale
        ))
        .into());
    }
    let existing: Vec<String> = [keys::PURCHASES_CSV, keys::REVIEWS_CSV]
        .iter()
        .map(|name| args.out.join(name))
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    if !existing.is_empty() && !args.force {
        return Err(UsageError(format!(
            "{} already exist(s): `infra sample` does not overwrite input files\nhint: pass --force to replace them, or choose a new --out directory",
            existing.join(", ")
        ))
        .into());
    }
    let written = sample::write(&args.out, args.scale, args.seed)?;
    ui::status(format!(
        "wrote {} purchase rows and {} reviews to {}",
        written.purchases,
        written.reviews,
        args.out.display()
    ));
    Ok(())
}
