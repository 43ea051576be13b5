//! Runs the real `infra` binary in a temp dir, with a clean environment.
//!
//! Clean means: its own working directory and state dir, no `INFRA_*` or
//! `RUST_LOG` from the caller, no colour, a fixed width. The cache dir is
//! deliberately *not* per test: `HOME` is inherited, so every test shares
//! `~/.cache/infra`, which holds the pyspark venv (a few hundred MB and
//! half a minute to build) and terraform's plugin cache. Those are keyed by
//! content (the requirements' hash) and built under a lock, so sharing
//! them is safe and keeps the suite fast; nothing a test asserts on lives
//! there. A test that needs an empty cache sets `INFRA_CACHE_DIR`.
//!
//! `up`'s Spark warm-up (`spark.warm_up`) is off: it only makes the first
//! run faster, and would add its jobs to every test that calls `up`.
//! `local_target::up_warms_spark_connect_once` turns it on.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use infra::backend::local::postgres::LocalPostgres;
use sqlx::postgres::PgConnectOptions;

pub struct Env {
    pub dir: tempfile::TempDir,
    /// Extra environment for every command.
    pub vars: Vec<(String, String)>,
    /// Stop the server when the test ends, pass or fail.
    pub teardown: bool,
}

/// What a command did.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.status, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code`.
    #[track_caller]
    pub fn fails(self, code: i32) -> Run {
        assert_eq!(
            self.status, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Env {
    pub fn new() -> Env {
        let env = Env::closed();
        // When tests run as root, PostgreSQL runs as `postgres`, who must be
        // able to traverse into the state dir.
        std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        env
    }

    /// A temp dir left at mode 0700, as a home directory in a container is.
    pub fn closed() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("infra-it-")
            .tempdir()
            .unwrap();
        // Explicitly: tempfile's mode follows the umask.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Env {
            dir,
            vars: vec![("INFRA_SPARK_WARM_UP".into(), "false".into())],
            teardown: true,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    pub fn var(mut self, key: &str, value: &str) -> Env {
        self.vars.push((key.into(), value.into()));
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_infra"));
        cmd.current_dir(self.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("INFRA_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1").env("COLUMNS", "100");
        // These read no settings, and refuse a flag that chooses them.
        let settingless = ["sample", "man", "completions"];
        if !args.iter().any(|a| settingless.contains(a)) {
            cmd.arg("--state-dir").arg(self.state());
        }
        cmd.args(args);
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn infra(&self, args: &[&str]) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = self.command(args).output().unwrap();
        Run {
            status: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs `infra` with its stdout a pipe whose reader has already gone,
    /// as in `infra status | head -0`.
    pub fn infra_closed_stdout(&self, args: &[&str]) -> Run {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let Output { status, stderr, .. } = self
            .command(args)
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap();
        Run {
            status: status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// How to reach the test's PostgreSQL server.
    pub async fn db(&self) -> PgConnectOptions {
        LocalPostgres::new(&self.state(), "bootcamp", "bootcampdb", 0)
            .connect_options_running()
            .await
            .unwrap()
    }

    /// `infra sample` into `<env>/data`, with `seed` when given: the input
    /// directory for `run --data`.
    pub fn sample(&self, scale: &str, seed: Option<&str>) -> PathBuf {
        let data = self.path().join("data");
        let out = data.display().to_string();
        let mut args = vec!["sample", "--out", &out, "--scale", scale];
        if let Some(seed) = seed {
            args.extend(["--seed", seed]);
        }
        self.infra(&args).ok();
        data
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let server = LocalPostgres::new(&self.state(), "bootcamp", "bootcampdb", 0);
        if self.teardown && server.is_initialized() {
            let _ = self.infra(&["down", "--yes"]);
        }
    }
}

/// `text` as a regex that matches it literally (for insta's filters).
pub fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
