//! `infra down`: tear everything down, after asking.

use anyhow::Result;

use crate::backend::gcp::Deployment;
use crate::backend::gcp::cloud::GcpCloud;
use crate::backend::local::Local;
use crate::cli::DownArgs;
use crate::process::Echo;
use crate::settings::{Settings, TargetKind};
use crate::terraform::deploy;
use crate::ui;

pub async fn down(settings: &Settings, args: &DownArgs, echo: Echo) -> Result<()> {
    if settings.target == TargetKind::Gcp {
        return down_gcp(settings, args, echo).await;
    }
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

/// Renders (so the backend and variables match the settings), then
/// destroys everything, after deleting what Terraform doesn't own.
async fn down_gcp(settings: &Settings, args: &DownArgs, echo: Echo) -> Result<()> {
    let (values, dir) = super::gcp_root(settings)?;
    let tf = super::gcp_terraform(settings, &dir, echo)?;
    let cloud = GcpCloud::connect(settings).await?;
    let report = deploy::down(&values, &tf, &cloud, args.yes).await?;
    if report.destroyed {
        Deployment::remove(&settings.state_dir)?;
        ui::status(format!(
            "down: everything infra created in project {} is gone",
            values.project
        ));
    }
    Ok(())
}
