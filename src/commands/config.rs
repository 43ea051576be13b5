//! `infra config`: the resolved settings, as TOML on stdout.

use std::io::Write;

use anyhow::Result;

use crate::settings::Settings;

pub fn config(settings: &Settings) -> Result<()> {
    write!(super::out::stdout(), "{}", settings.to_toml()?)?;
    Ok(())
}
