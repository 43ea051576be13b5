//! `infra config`: the resolved settings, as TOML on stdout.

use anyhow::Result;

use crate::settings::Settings;

pub fn config(settings: &Settings) -> Result<()> {
    print!("{}", settings.to_toml()?);
    Ok(())
}
