//! `infra up`: provision the target, then upload pyspark/ to the code bucket.

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;

use crate::assets;
use crate::cli::UpArgs;
use crate::settings::Settings;
use crate::target::Bucket;
use crate::target::local::Local;
use crate::ui;

pub async fn up(settings: &Settings, args: &UpArgs) -> Result<()> {
    super::require_local(settings, "up")?;
    let local = Local::new(settings);
    let actions = local.plan_up().await?;
    ui::status(format!("local target in {}", local.state_dir().display()));
    for action in &actions {
        let mark = if action.needed { "+" } else { "=" };
        ui::detail(format!("{mark} {}", action.description));
    }
    ui::detail(format!(
        "~ upload {} PySpark scripts to the code bucket (skipping unchanged ones)",
        assets::PYSPARK_SCRIPTS.len()
    ));
    if args.dry_run {
        return Ok(());
    }
    local.up().await?;
    let uploaded = upload_code(local.buckets().code.as_ref()).await?;
    ui::status(format!(
        "up: local target ready; {uploaded} script(s) uploaded to {}",
        local.buckets().code.uri("")
    ));
    Ok(())
}

/// Uploads the PySpark scripts, skipping those whose bytes are unchanged.
/// Returns how many were uploaded.
pub async fn upload_code(code: &dyn Bucket) -> Result<usize> {
    let mut uploaded = 0;
    for (key, contents) in assets::PYSPARK_SCRIPTS {
        if code.exists(key).await? {
            let mut existing = Vec::new();
            code.get(key).await?.read_to_end(&mut existing).await?;
            if existing == contents.as_bytes() {
                continue;
            }
        }
        code.put(key, &mut contents.as_bytes())
            .await
            .with_context(|| format!("cannot upload {key} to the code bucket"))?;
        uploaded += 1;
    }
    Ok(uploaded)
}
