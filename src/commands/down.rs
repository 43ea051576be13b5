//! `infra down`: tear everything down, after asking.

use anyhow::Result;

use crate::cli::DownArgs;
use crate::settings::Settings;
use crate::target::local::Local;
use crate::ui;

pub async fn down(settings: &Settings, args: &DownArgs) -> Result<()> {
    super::require_local(settings, "down")?;
    let local = Local::new(settings);
    let doomed = local.plan_down();
    if doomed.is_empty() {
        ui::status(format!(
            "nothing to remove in {}",
            local.state_dir().display()
        ));
        return Ok(());
    }
    ui::status("down will stop the local PostgreSQL server and delete:");
    for path in &doomed {
        ui::detail(path.display());
    }
    if !args.yes && !ui::confirm("Delete all of this?", "--yes")? {
        ui::status("nothing deleted");
        return Ok(());
    }
    local.down().await?;
    ui::status("down: local target removed");
    Ok(())
}
