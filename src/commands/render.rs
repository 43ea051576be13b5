//! `infra render`: write the gcp target's Terraform root module, and
//! nothing else, so it can be read (or run by hand) before `up`.

use std::path::PathBuf;

use anyhow::Result;

use crate::settings::Settings;
use crate::terraform::{RootValues, render};
use crate::ui;

pub async fn render(settings: &Settings) -> Result<()> {
    let (_, dir) = render_root(settings)?;
    super::out::stdout().line(dir.display())?;
    Ok(())
}

/// Validates the settings and renders the root into `<state-dir>/terraform`.
pub(super) fn render_root(settings: &Settings) -> Result<(RootValues, PathBuf)> {
    let values = RootValues::from_settings(settings)?;
    let files = render::render(&values)?;
    let dir = render::root_dir(settings);
    render::write(&dir, &files)?;
    ui::status(format!(
        "rendered Terraform for project {} in {}",
        values.project,
        dir.display()
    ));
    Ok((values, dir))
}
