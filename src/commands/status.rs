//! `infra status`: what is provisioned, and the last run's steps.

use anyhow::Result;

use serde::Serialize;

use crate::backend::local::Local;
use crate::record::Records;
use crate::settings::Settings;
use crate::summary;

pub async fn status(settings: &Settings, json: bool) -> Result<()> {
    super::require_local(settings, "status")?;
    let local = Local::new(settings);
    let resources = local.status().await?;
    let last = Records::new(local.state_dir()).latest()?;
    if json {
        let view = StatusJson {
            schema: summary::SCHEMA,
            target: "local",
            state_dir: local.state_dir().display().to_string(),
            resources: resources
                .into_iter()
                .map(|(name, state)| ResourceJson { name, state })
                .collect(),
            last_run: last.as_ref().map(|run| summary::json(run, None)),
        };
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("target: local ({})", local.state_dir().display());
    for (what, state) in resources {
        println!("  {what:<12} {state}");
    }
    match last {
        Some(run) => println!("\n{}", summary::table(&run)),
        None => println!("\nno runs yet"),
    }
    Ok(())
}

/// `status --json`.
#[derive(Serialize)]
struct StatusJson {
    schema: u32,
    target: &'static str,
    state_dir: String,
    resources: Vec<ResourceJson>,
    last_run: Option<summary::RunJson>,
}

#[derive(Serialize)]
struct ResourceJson {
    name: String,
    state: String,
}
