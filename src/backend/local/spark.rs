//! Spark on this machine: the pinned `pyspark` venv, and the runner that
//! submits each job to the local Spark Connect server (`connect`).
//!
//! The venv lives in the cache dir, shared by every state dir, and is keyed
//! by a hash of `pyspark/requirements.txt`, so changing a pin builds a new
//! one and never mutates an old one in place. It is built under a lock in a
//! temporary directory that is renamed into place when complete, so two
//! `infra up` on an empty cache never see or delete each other's half-built
//! venv.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};

use super::connect::ConnectServer;
use crate::assets;
use crate::backend::{Journal, Spark, SparkJob};
use crate::process::{Cmd, Echo};
use crate::tools::{self, Tool};

/// Written last when a venv is complete; holds SPARK_HOME.
const READY_MARKER: &str = ".infra-ready";

/// The oldest Java that Spark 4 runs on.
const MIN_JAVA: u32 = 17;

/// The oldest Python the pins install on (numpy 2.4 needs 3.11).
pub const MIN_PYTHON: (u32, u32) = (3, 11);

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

    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
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
        let cache = self.venv.parent().context("the venv has no parent")?;
        std::fs::create_dir_all(cache)
            .with_context(|| format!("cannot create the cache dir {}", cache.display()))?;
        let _lock = lock_exclusive(&self.venv.with_extension("lock")).await?;
        // Another `infra up` may have built it while we waited.
        if let Some(home) = self.spark_home() {
            return Ok(home);
        }
        crate::ui::detail(format!(
            "creating the pyspark venv in {} (once per machine, about a minute)",
            self.venv.display()
        ));
        let python = tools::find(Tool::Python3)?;
        check_python(&python).await?;
        // Under the lock, anything left at these paths is a dead build's.
        let building = self.venv.with_extension("building");
        for stale in [&building, &self.venv] {
            if stale.exists() {
                std::fs::remove_dir_all(stale).with_context(|| {
                    format!("cannot remove the incomplete venv {}", stale.display())
                })?;
            }
        }
        // The venv is renamed into place when pip is done. Its python finds
        // site-packages from where it is started, and infra runs nothing
        // else from it (the scripts in bin/ would name the old path). The
        // marker is written after the rename, so a reader never sees a
        // marker in a venv that is still being filled.
        self.build(&building).await?;
        std::fs::rename(&building, &self.venv).with_context(|| {
            format!(
                "cannot move {} to {}",
                building.display(),
                self.venv.display()
            )
        })?;
        let home = Cmd::new(self.python())
            .args([
                "-c",
                "import os, pyspark; print(os.path.dirname(pyspark.__file__))",
            ])
            .run()
            .await
            .context("the new pyspark venv cannot import pyspark")?
            .stdout;
        let marker = self.venv.join(READY_MARKER);
        std::fs::write(&marker, home.trim())
            .with_context(|| format!("cannot write {}", marker.display()))?;
        self.spark_home()
            .with_context(|| format!("pyspark in {} has no bin/spark-submit", self.venv.display()))
    }

    async fn build(&self, dir: &Path) -> Result<()> {
        let python = tools::find(Tool::Python3)?;
        Cmd::new(&python)
            .args(["-m", "venv"])
            .arg(dir)
            .run()
            .await
            .context(
                "cannot create the pyspark venv\nhint: on Debian, `apt-get install python3-venv`",
            )?;
        let requirements = dir.join("requirements.txt");
        std::fs::write(&requirements, assets::PYSPARK_REQUIREMENTS)
            .with_context(|| format!("cannot write {}", requirements.display()))?;
        Cmd::new(dir.join("bin/python"))
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
        Ok(())
    }
}

/// Takes an exclusive `flock` on `path`, waiting (and saying so) while
/// another process holds it. The kernel releases it if we die.
async fn lock_exclusive(path: &Path) -> Result<Flock<File>> {
    let mut said = false;
    loop {
        let file = File::create(path).with_context(|| format!("cannot open {}", path.display()))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(guard) => return Ok(guard),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if !said {
                    crate::ui::detail(format!(
                        "waiting for another infra that holds {}",
                        path.display()
                    ));
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err((_, e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
}

/// Checks that `python` is new enough for the pins.
async fn check_python(python: &Path) -> Result<()> {
    let out = Cmd::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .run()
        .await
        .with_context(|| format!("cannot run {}", python.display()))?
        .stdout;
    let (major, minor) = MIN_PYTHON;
    match parse_python_version(&out) {
        Some(found) if found >= MIN_PYTHON => Ok(()),
        Some((fmaj, fmin)) => bail!(
            "the pyspark venv needs Python {major}.{minor} or newer, and {} is Python {fmaj}.{fmin}\nhint: install python3.{minor} (or newer) with venv, and put it first on PATH as python3",
            python.display()
        ),
        None => bail!(
            "cannot read the version of {} from `{}`",
            python.display(),
            out.trim()
        ),
    }
}

/// `3.11` → (3, 11).
fn parse_python_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Java's major version, or an error that says what to install.
pub async fn check_java() -> Result<u32> {
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

/// Runs each job as a Spark Connect client of the local server: the venv's
/// python runs the script with `SPARK_REMOTE` set, so the script's
/// `SparkSession.builder.getOrCreate()` connects instead of starting a JVM.
/// On Dataproc the same script runs with no `SPARK_REMOTE` and gets the
/// cluster's session.
pub struct LocalSpark {
    pub server: ConnectServer,
    pub python: PathBuf,
    pub echo: Echo,
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
        // A server that died since `up` (or since the last job) is started
        // again here, with a message, rather than failing the step.
        let endpoint = self.server.ensure_running_for_run().await?;
        let client = Cmd::new(&self.python)
            .arg(script)
            .args(&job.args)
            .env("SPARK_REMOTE", endpoint.remote())
            // Passed in the environment, never on a command line `ps` shows.
            .env("SPARK_CONNECT_AUTHENTICATE_TOKEN", &endpoint.token)
            .env_remove("PYTHONPATH")
            .env_remove("SPARK_HOME")
            .echo(self.echo);
        let run = async {
            client.run().await.with_context(|| {
                format!(
                    "Spark job {} failed (the Spark Connect server's log: {})",
                    job.name,
                    self.server.log_dir().display()
                )
            })
        };
        // pyspark retries a lost server for minutes: the server is watched
        // here, so a dead or stuck one fails the step within seconds.
        self.server.watching(&endpoint, &job.name, run).await?;
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
    fn python_versions_compare_as_numbers() {
        assert_eq!(parse_python_version("3.11\n"), Some((3, 11)));
        assert!(parse_python_version("3.9").unwrap() < MIN_PYTHON);
        assert!(parse_python_version("3.12").unwrap() >= MIN_PYTHON);
        assert!(parse_python_version("4.0").unwrap() >= MIN_PYTHON);
        assert_eq!(parse_python_version("Python 3"), None);
    }

    #[tokio::test]
    async fn a_python_older_than_the_pins_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("python3");
        std::fs::write(&fake, "#!/bin/sh\necho 3.9\n").unwrap();
        let mut perms = std::fs::metadata(&fake).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).unwrap();
        let err = check_python(&fake).await.unwrap_err().to_string();
        assert!(err.contains("needs Python 3.11 or newer"), "{err}");
        assert!(err.contains("is Python 3.9"), "{err}");
    }

    #[test]
    fn the_venv_key_follows_the_requirements() {
        assert_ne!(fnv1a(b"pyspark==4.3.0"), fnv1a(b"pyspark==4.3.1"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    }
}
