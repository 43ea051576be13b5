//! Dataproc's documented limits on the cluster `run` creates, checked by
//! `plan`, `up` and `run` before anything is sent, so a bad setting fails
//! in one line here instead of in `clusters.create` minutes into a run.
//!
//! - `idleDeleteTtl`: "Minimum value is 5 minutes; maximum value is 14
//!   days"; `autoDeleteTtl`: "Minimum value is 10 minutes; maximum value
//!   is 14 days" (dataproc.v1.json, `LifecycleConfig`);
//! - primary workers: `STANDARD` is a "Standard dataproc cluster with a
//!   minimum of two primary workers" (`ClusterConfig.ClusterType`); infra
//!   makes standard clusters only;
//! - `imageVersion` "must be one of the supported Image Versions"
//!   (`SoftwareConfig`): the published ones are vendored, with their
//!   sources and date, in `vendor/dataproc/image-versions.txt`.

use anyhow::{Result, bail};

use crate::settings::{Settings, env_var};

/// The vendored list of published image versions.
pub const IMAGE_VERSIONS: &str = include_str!("../../../../vendor/dataproc/image-versions.txt");

const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * MINUTE;
/// `idleDeleteTtl` bounds, in seconds.
pub const IDLE_TTL: (u64, u64) = (5 * MINUTE, 14 * DAY);
/// `autoDeleteTtl` bounds, in seconds.
pub const AUTO_DELETE_TTL: (u64, u64) = (10 * MINUTE, 14 * DAY);
/// Primary workers of a standard cluster.
pub const MIN_WORKERS: u32 = 2;

/// Each published image version and the Spark it ships ("-" unknown).
pub fn published() -> impl Iterator<Item = (&'static str, &'static str)> {
    IMAGE_VERSIONS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            Some((fields.next()?, fields.next().unwrap_or("-")))
        })
}

/// Whether Dataproc publishes `version`: a listed version, or its line
/// (`3.0`, `3.0-debian12`) when a listed version belongs to it.
pub fn is_published(version: &str) -> bool {
    published().any(|(listed, _)| listed == version) || is_line(version)
}

/// `major.minor` or `major.minor-os` of a listed version.
fn is_line(version: &str) -> bool {
    let (number, os) = match version.split_once('-') {
        Some((number, os)) => (number, Some(os)),
        None => (version, None),
    };
    if number.matches('.').count() != 1 {
        return false;
    }
    published().any(|(listed, _)| {
        let Some((listed_number, listed_os)) = listed.split_once('-') else {
            return false;
        };
        let same_line = listed_number == number || listed_number.starts_with(&format!("{number}."));
        same_line && os.is_none_or(|os| listed_os == os || listed_os.ends_with(&format!("-{os}")))
    })
}

/// Checks the Dataproc settings against Google's documented limits.
pub fn check(settings: &Settings) -> Result<()> {
    let bound = |key: &str, value: u64, (min, max): (u64, u64), what: &str| -> Result<()> {
        if !(min..=max).contains(&value) {
            bail!(
                "invalid `{key}` = {value}: Dataproc's {what} must be {min} to {max} seconds (5 minutes or 10 minutes, to 14 days)\nhint: set `{key}` in infra.toml or {}",
                env_var(key)
            );
        }
        Ok(())
    };
    bound(
        "dataproc.idle_ttl_secs",
        u64::from(settings.dataproc_idle_ttl_secs),
        IDLE_TTL,
        "idleDeleteTtl",
    )?;
    bound(
        "dataproc.max_age_secs",
        u64::from(settings.dataproc_max_age_secs),
        AUTO_DELETE_TTL,
        "autoDeleteTtl",
    )?;
    if settings.dataproc_workers < MIN_WORKERS {
        bail!(
            "invalid `dataproc.workers` = {}: a standard Dataproc cluster has at least {MIN_WORKERS} primary workers\nhint: set `dataproc.workers` in infra.toml or {}",
            settings.dataproc_workers,
            env_var("dataproc.workers")
        );
    }
    let image = &settings.dataproc_image_version;
    if !is_published(image) {
        let newest: Vec<&str> = published().take(4).map(|(v, _)| v).collect();
        bail!(
            "invalid `dataproc.image_version` = `{image}`: Dataproc publishes no such image (the newest: {}; vendor/dataproc/image-versions.txt lists them with their sources)\nhint: set `dataproc.image_version` in infra.toml or {}",
            newest.join(", "),
            env_var("dataproc.image_version")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_versions_and_their_lines_are_accepted() {
        for version in [
            "3.0",
            "3.0-debian12",
            "3.0-ubuntu24",
            "3.0-rocky9",
            "2.2-debian12",
            "2.2",
        ] {
            assert!(is_published(version), "{version}");
        }
        for version in [
            "3.0.2-debian13",
            "3.0-debian13",
            "3.0.2-debian12",
            "3.1",
            "4.0-debian12",
            "3.0-debian11",
            "latest",
            "",
        ] {
            assert!(!is_published(version), "{version}");
        }
    }

    /// The default image runs the Spark line the local pyspark is pinned
    /// to, so the PySpark tests run what the cluster runs.
    #[test]
    fn the_default_image_is_published_and_ships_the_local_spark_line() {
        let default = crate::settings::testing::resolve("", &[], Default::default()).unwrap();
        let pin = include_str!("../../../../pyspark/requirements.txt")
            .lines()
            .find_map(|l| l.strip_prefix("pyspark=="))
            .unwrap();
        let line = pin.rsplit_once('.').unwrap().0;
        let spark = published()
            .find(|(v, _)| *v == default.dataproc_image_version)
            .map(|(_, spark)| spark);
        assert!(
            spark.is_some_and(|s| s.starts_with(&format!("{line}."))),
            "the default image ships Spark {spark:?}, the local pin is {pin}"
        );
    }
}
