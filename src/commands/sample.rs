//! `infra sample`: deterministic sample inputs.

use anyhow::{Result, bail};

use crate::cli::SampleArgs;
use crate::{sample, ui};

pub fn sample(args: &SampleArgs) -> Result<()> {
    if !(args.scale > 0.0 && args.scale <= 100.0) {
        bail!(
            "--scale must be above 0 and at most 100, not {}",
            args.scale
        );
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
