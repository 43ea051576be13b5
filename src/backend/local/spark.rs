//! Spark on this machine: `spark-submit --master local[*]` from a venv
//! with the pinned `pyspark` wheel.
//!
//! The venv lives in the cache dir, shared by every state dir, and is keyed
//! by a hash of `pyspark/requirements.txt`, so changing a pin builds a new
//! one and never mutates an old one in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;

use crate::assets;
use crate::backend::{Journal, Spark, SparkJob};
use crate::process::{Cmd, Echo};
use crate::tools::{self, Tool};

/// Written last when a venv is complete; holds SPARK_HOME.
const READY_MARKER: &str = ".infra-ready";

/// The oldest Java that Spark 4 runs on.
const MIN_JAVA: u32 = 17;

/// The pyspark venv for the pinned requirements.
pub struct SparkRuntime {
    venv: PathBuf,
}

impl SparkRuntime {
    pub fn new(cache_dir: &Path) -> SparkRuntime {
        let key = fnv1a(assets::PYSPARK_REQUIREMENTS.as_bytes());
        SparkRuntime {
            venv: cache_dir.join(format!("pyspark-venv-{key:016x}")),
        }
    }

    pub fn venv(&self) -> &Path {
        &self.venv
    }

    /// SPARK_HOME of a complete venv, or `None` when it is not built yet.
    pub fn spark_home(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(self.venv.join(READY_MARKER)).ok()?;
        Some(PathBuf::from(text.trim())).filter(|home| home.join("bin/spark-submit").is_file())
    }

    /// Builds the venv if needed and checks Java. Cheap when both are there.
    pub async fn ensure(&self) -> Result<PathBuf> {
        check_java().await?;
        if let Some(home) = self.spark_home() {
            return Ok(home);
        }
        crate::ui::detail(format!(
            "creating the pyspark venv in {} (once per machine, about a minute)",
            self.venv.display()
        ));
        let python = tools::find(Tool::Python3)?;
        if self.venv.exists() {
            std::fs::remove_dir_all(&self.venv).with_context(|| {
                format!("cannot remove the incomplete venv {}", self.venv.display())
            })?;
        }
        Cmd::new(&python)
            .args(["-m", "venv"])
            .arg(&self.venv)
            .run()
            .await
            .context(
                "cannot create the pyspark venv\nhint: on Debian, `apt-get install python3-venv`",
            )?;
        let requirements = self.venv.join("requirements.txt");
        std::fs::write(&requirements, assets::PYSPARK_REQUIREMENTS)?;
        let venv_python = self.venv.join("bin/python");
        Cmd::new(&venv_python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-r",
            ])
            .arg(&requirements)
            .run()
            .await
            .context("cannot install pyspark into the venv (pip needs to reach PyPI)")?;
        let home = Cmd::new(&venv_python)
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .run()
            .await?
            .stdout;
        std::fs::write(self.venv.join(READY_MARKER), home.trim())?;
        self.spark_home()
            .with_context(|| format!("pyspark in {} has no bin/spark-submit", self.venv.display()))
    }
}

/// Java's major version, or an error that says what to install.
async fn check_java() -> Result<u32> {
    let java = tools::find(Tool::Java)?;
    // `--version` prints to stdout; Java 8 and older do not know it.
    let version = Cmd::new(&java)
        .arg("--version")
        .run()
        .await
        .with_context(|| {
            format!(
                "{} does not answer `--version`: Spark needs Java {MIN_JAVA} or newer\nhint: `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME",
                java.display()
            )
        })?
        .stdout;
    let major = parse_java_major(&version)
        .with_context(|| format!("cannot read Java's version from `{}`", version.trim()))?;
    if major < MIN_JAVA {
        bail!(
            "Spark needs Java {MIN_JAVA} or newer, and {} is Java {major}\nhint: `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME",
            java.display()
        );
    }
    Ok(major)
}

/// `openjdk 17.0.15 2025-04-15` → 17; `java 1.8.0_392` → 8.
fn parse_java_major(version: &str) -> Option<u32> {
    let number = version.split_whitespace().nth(1)?;
    let mut parts = number.split(['.', '_', '-', '+']);
    match parts.next()?.parse().ok()? {
        1 => parts.next()?.parse().ok(),
        major => Some(major),
    }
}

/// Runs jobs with the venv's `spark-submit`.
pub struct LocalSpark {
    /// `None` until `infra up` has built the venv.
    pub spark_home: Option<PathBuf>,
    pub python: PathBuf,
    pub master: String,
    pub driver_memory: String,
    pub properties: BTreeMap<String, String>,
    pub echo: Echo,
    /// Spark's scratch space (`spark.local.dir`), under the state dir.
    pub scratch: PathBuf,
}

#[async_trait]
impl Spark for LocalSpark {
    async fn submit(&self, job: &SparkJob, _journal: &dyn Journal) -> Result<()> {
        let script = job.script.strip_prefix("file://").with_context(|| {
            format!(
                "the local Spark runner needs a file:// script, not {}",
                job.script
            )
        })?;
        let spark_home = self
            .spark_home
            .as_ref()
            .context("the pyspark venv is not built yet\nhint: run `infra up` first")?;
        std::fs::create_dir_all(&self.scratch)?;
        let mut cmd = Cmd::new(spark_home.join("bin/spark-submit"))
            .args(["--master", &self.master])
            .args(["--driver-memory", &self.driver_memory])
            .args(["--name", &format!("infra-{}", job.name)])
            .arg("--conf")
            .arg(format!("spark.local.dir={}", self.scratch.display()))
            .args(["--conf", "spark.ui.enabled=false"]);
        for (key, value) in &self.properties {
            cmd = cmd.arg("--conf").arg(format!("{key}={value}"));
        }
        cmd.arg(script)
            .args(&job.args)
            .env("SPARK_HOME", spark_home)
            .env("PYSPARK_PYTHON", &self.python)
            .env("PYSPARK_DRIVER_PYTHON", &self.python)
            .env("SPARK_LOCAL_IP", "127.0.0.1")
            .env_remove("PYTHONPATH")
            .echo(self.echo)
            .run()
            .await
            .with_context(|| format!("Spark job {} failed", job.name))?;
        Ok(())
    }
}

/// FNV-1a, 64-bit: a stable cache key (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions_parse_old_and_new_style() {
        assert_eq!(
            parse_java_major("openjdk 17.0.15 2025-04-15\nOpenJDK Runtime"),
            Some(17)
        );
        assert_eq!(parse_java_major("java 21 2023-09-19 LTS"), Some(21));
        assert_eq!(parse_java_major("openjdk 1.8.0_392"), Some(8));
        assert_eq!(parse_java_major("nonsense"), None);
    }

    #[test]
    fn the_venv_key_follows_the_requirements() {
        assert_ne!(fnv1a(b"pyspark==4.3.0"), fnv1a(b"pyspark==4.3.1"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
